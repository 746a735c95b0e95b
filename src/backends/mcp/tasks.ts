/**
 * A server's own tasks, as the gateway sees them through its connection: which servers run tool calls
 * as tasks, how a task-creating answer is recognized, and the task requests (`tasks/get`,
 * `tasks/update`, `tasks/cancel`) sent to the server for a task it runs.
 *
 * Two wire shapes reach the gateway: a 2026-07-28 server that offers the tasks extension
 * (`io.modelcontextprotocol/tasks`) answers a call with a flat CreateTaskResult (`resultType: "task"`),
 * and the SDK's decoder refuses that result type; a 2025-11-25 server nests it under `task`. Both are
 * rewritten, as the response arrives, into a tool result that carries the server's task under
 * BACKEND_TASK_META, so that the call returns through the gateway's chain like any other and the task
 * layer (src/tasks/) takes it from there.
 */
import { CLIENT_CAPABILITIES_META_KEY, type Client } from "@modelcontextprotocol/client";
import { z } from "zod";
import type { CallerChannel, Tool } from "../../core/types.ts";

export const TASKS_EXTENSION = "io.modelcontextprotocol/tasks";

/** Where a rewritten task-creating answer carries the server's task. Never reaches a client. */
export const BACKEND_TASK_META = "io.switchboard/backend-task";

/** The task fields a server reports, in 2026-07-28 names (a 2025 server's `ttl` becomes `ttlMs`). */
export interface BackendTask {
  readonly taskId: string;
  readonly status: string;
  readonly statusMessage?: string;
  readonly ttlMs?: number | null;
  readonly pollIntervalMs?: number;
  /** tasks/get only: the finished call's result, its protocol error, or the questions it waits on. */
  readonly result?: Record<string, unknown>;
  readonly error?: { readonly code: number; readonly message: string; readonly data?: unknown };
  readonly inputRequests?: Record<string, unknown>;
}

function isObject(value: unknown): value is Record<string, unknown> {
  return typeof value === "object" && value !== null && !Array.isArray(value);
}

/** The task of a task-creating answer in either era's shape; undefined for any other answer. */
export function taskOfAnswer(result: unknown): BackendTask | undefined {
  if (!isObject(result)) return undefined;
  const marked = isObject(result._meta) ? result._meta[BACKEND_TASK_META] : undefined;
  if (isObject(marked) && typeof marked.taskId === "string") return marked as unknown as BackendTask;
  if (result.resultType === "task" && typeof result.taskId === "string") return normalized(result);
  if (isObject(result.task) && typeof result.task.taskId === "string" && !("content" in result))
    return normalized(result.task);
  return undefined;
}

/** A task in either era's field names, in 2026-07-28 names. */
export function normalized(raw: Record<string, unknown>): BackendTask {
  const { ttl, pollInterval, resultType: _resultType, ...rest } = raw;
  return {
    ...(rest as unknown as BackendTask),
    ...(rest.ttlMs === undefined && ttl !== undefined ? { ttlMs: ttl as number | null } : {}),
    ...(rest.pollIntervalMs === undefined && typeof pollInterval === "number"
      ? { pollIntervalMs: pollInterval }
      : {}),
  };
}

/**
 * A response to rewrite before the SDK decodes it: a task-creating answer becomes a complete tool
 * result carrying the task (see the module comment). Anything else is returned as it came.
 */
export function withTaskMarked<R extends { result: unknown }>(response: R): R {
  const task = taskOfAnswer(response.result);
  if (task === undefined) return response;
  const marked = { content: [], _meta: { [BACKEND_TASK_META]: task } };
  const modern = isObject(response.result) && response.result.resultType !== undefined;
  return { ...response, result: modern ? { ...marked, resultType: "complete" } : marked };
}

/**
 * How the server runs tool calls as tasks: "extension", the 2026-07-28 tasks extension (declared in
 * `server/discover`, or in `initialize` by a server that speaks both); "2025", the 2025-11-25 `tasks`
 * capability (a `task` param on the call, `tasks/get`, `tasks/result`, `tasks/cancel`); undefined for a
 * server without tasks.
 */
export function taskStyle(client: Client): "extension" | "2025" | undefined {
  const capabilities = client.getServerCapabilities() as
    | { extensions?: Record<string, unknown>; tasks?: { requests?: { tools?: { call?: unknown } } } }
    | undefined;
  if (capabilities?.extensions?.[TASKS_EXTENSION] !== undefined) return "extension";
  if (client.getProtocolEra() === "legacy" && capabilities?.tasks?.requests?.tools?.call !== undefined)
    return "2025";
  return undefined;
}

export function offersTasks(client: Client): boolean {
  return taskStyle(client) !== undefined;
}

/**
 * A call on a 2025-era connection from a client that takes tasks. The connection is shared by every
 * client, so its capabilities cannot say whether this one does: a server with the extension is told in
 * the request's own capabilities (`_meta`), as on 2026-07-28; a 2025-11-25 server gets a `task` param
 * for a tool it runs as a task (`execution.taskSupport`), which is how its clients ask.
 */
export function withTasksDeclared(
  params: Record<string, unknown>,
  client: Client,
  caller: CallerChannel | undefined,
  tools: readonly Tool[],
): Record<string, unknown> {
  const declared = (caller?.capabilities ?? {}) as { extensions?: Record<string, unknown> };
  if (declared.extensions?.[TASKS_EXTENSION] === undefined) return params;
  const style = taskStyle(client);
  if (style === "2025") {
    const support = tools.find((tool) => tool.name === params.name)?.execution?.taskSupport;
    return support === "optional" || support === "required" ? { ...params, task: {} } : params;
  }
  if (style !== "extension") return params;
  const meta = { ...(params._meta as Record<string, unknown> | undefined) };
  meta[CLIENT_CAPABILITIES_META_KEY] = { ...declared, extensions: { [TASKS_EXTENSION]: {} } };
  return { ...params, _meta: meta };
}

const AnyResult = z.looseObject({});

export type TaskMethod = "tasks/get" | "tasks/update" | "tasks/cancel";

type Options = { signal?: AbortSignal; timeout: number };

/**
 * Sends a task request for a task the server runs, in the server's own terms. The extension's methods
 * are gated on the request's declared capabilities, so the request declares the extension itself. A
 * 2025-11-25 server reports a finished task's result through `tasks/result`, which is read into the
 * task as the extension inlines it; it has no `tasks/update` (its tasks ask their questions as requests
 * of their own), so answers to it are dropped.
 */
export async function taskRequest(
  client: Client,
  method: TaskMethod,
  params: Record<string, unknown>,
  options: Options,
): Promise<Record<string, unknown>> {
  if (taskStyle(client) !== "2025") {
    const meta = { _meta: { [CLIENT_CAPABILITIES_META_KEY]: { extensions: { [TASKS_EXTENSION]: {} } } } };
    return send(client, method, { ...params, ...meta }, options);
  }
  if (method === "tasks/update") return {};
  const task = await send(client, method, { taskId: params.taskId }, options);
  if (method !== "tasks/get" || (task.status !== "completed" && task.status !== "failed")) return task;
  try {
    return { ...task, result: await send(client, "tasks/result", { taskId: params.taskId }, options) };
  } catch (error) {
    const { code, message } = error as { code?: unknown; message?: unknown };
    return { ...task, error: { code: typeof code === "number" ? code : -32603, message: String(message) } };
  }
}

async function send(
  client: Client,
  method: string,
  params: Record<string, unknown>,
  options: Options,
): Promise<Record<string, unknown>> {
  const result = await client.request({ method, params } as never, AnyResult as never, {
    timeout: options.timeout,
    ...(options.signal ? { signal: options.signal } : {}),
  });
  return result as Record<string, unknown>;
}
