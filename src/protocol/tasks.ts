/**
 * Tasks at the gateway's client side, in both eras, over the gateway's task records (src/tasks/):
 *
 * - 2026-07-28: the tasks extension (`io.modelcontextprotocol/tasks`), declared in `server/discover`.
 *   The server decides which calls become tasks: a call from a client that declared the extension
 *   reaches its server with the extension declared, and when the server answers with a task of its
 *   own, the client gets a task of the gateway's (`resultType: "task"`) that stands for it. A server
 *   without tasks answers such calls directly. `tasks/get` (with the result, the error or the open
 *   questions inlined), `tasks/update` (answers to those questions) and `tasks/cancel`.
 * - 2025-11-25: the `tasks` capability. The client decides: a `tools/call` with a `task` param is
 *   answered at once with a CreateTaskResult, and the call runs on, as a task of its server when the
 *   server takes the call as one, else as an ordinary call through the chain that the gateway runs and
 *   records. `tasks/get`, `tasks/result` (waits for the end), `tasks/list` and `tasks/cancel`.
 *
 * A task is its owner's: another principal is answered as for a task that does not exist (-32602).
 */
import {
  CLIENT_CAPABILITIES_META_KEY,
  MissingRequiredClientCapabilityError,
  ProtocolError,
  ProtocolErrorCode,
  type Server,
  type ServerContext,
} from "@modelcontextprotocol/server";
import { z } from "zod";
import { TASKS_EXTENSION, taskOfAnswer } from "../backends/mcp/tasks.ts";
import type { CallerChannel, Principal } from "../core/types.ts";
import type { Gateway } from "../gateway/gateway.ts";
import type { TaskRecord } from "../tasks/records.ts";
import type { TaskOutcome } from "../tasks/service.ts";
import { toJsonRpcError, toProtocolError } from "./json-rpc-errors.ts";
import { envelopeOf } from "./rounds.ts";

const RELATED_TASK_META = "io.modelcontextprotocol/related-task";

/**
 * Carries a 2025-11-25 CreateTaskResult past the SDK's check of `tools/call` results, which knows
 * only tool results on a 2025-era instance; the gateway's server answers with it (sdk-server.ts).
 */
export class TaskCreated extends Error {
  constructor(readonly result: Record<string, unknown>) {
    super("task created");
  }
}

/** Whether a 2026-07-28 request's client declared the tasks extension (in the request's capabilities). */
export function requestTakesTasks(ctx: ServerContext): boolean {
  const declared = envelopeOf(ctx)[CLIENT_CAPABILITIES_META_KEY] as
    | { extensions?: Record<string, unknown> }
    | undefined;
  return declared?.extensions?.[TASKS_EXTENSION] !== undefined;
}

/** Declares tasks to the instance's client, in its era's terms. */
export function declareTasks(server: Server, era: "modern" | "legacy"): void {
  server.registerCapabilities(
    era === "modern"
      ? ({ extensions: { [TASKS_EXTENSION]: {} } } as never)
      : { tasks: { list: {}, cancel: {}, requests: { tools: { call: {} } } } },
  );
}

/** The fields of a task both eras name alike. */
function taskFields(record: TaskRecord) {
  return {
    taskId: record.taskId,
    status: record.status,
    ...(record.statusMessage ? { statusMessage: record.statusMessage } : {}),
    createdAt: record.createdAt,
    lastUpdatedAt: record.lastUpdatedAt,
  };
}

/** The 2026-07-28 task fields every task message carries. */
function taskInfo(record: TaskRecord) {
  return { ...taskFields(record), ttlMs: record.ttlMs, pollIntervalMs: record.pollIntervalMs };
}

/** The 2026-07-28 CreateTaskResult: flat, with neither result nor questions yet. */
export function createTaskResult(record: TaskRecord): Record<string, unknown> {
  return { resultType: "task", ...taskInfo(record) };
}

/** The 2025-11-25 Task: `ttl` and `pollInterval` in ms. */
function legacyTask(record: TaskRecord) {
  return { ...taskFields(record), ttl: record.ttlMs, pollInterval: record.pollIntervalMs };
}

/**
 * A 2026-07-28 call's answer as its client gets it: a task of the server's becomes one of the
 * gateway's; anything else is returned as it is (undefined).
 */
export async function asGatewayTask(
  gateway: Gateway,
  principal: Principal,
  toolName: string,
  result: unknown,
): Promise<Record<string, unknown> | undefined> {
  const task = taskOfAnswer(result);
  if (task === undefined) return undefined;
  const route = gateway.catalog.tool(toolName);
  const record = await gateway.tasks.adopt(principal, route?.server ?? "", route?.tool ?? toolName, task);
  return createTaskResult(record);
}

/**
 * A 2025-11-25 call made as a task: recorded and answered at once; `run` carries it out through the
 * ordinary chain, on this replica (see tasks/service.ts).
 */
export async function startLegacyTask(
  gateway: Gateway,
  principal: Principal,
  toolName: string,
  run: (channel: CallerChannel, signal: AbortSignal) => Promise<unknown>,
): Promise<Record<string, unknown>> {
  const route = gateway.catalog.tool(toolName);
  const record = await gateway.tasks.runHere(
    principal,
    route?.server ?? "",
    route?.tool ?? toolName,
    async (signal): Promise<TaskOutcome> => {
      try {
        return { kind: "result", result: (await run(taskChannel(), signal)) as Record<string, unknown> };
      } catch (error) {
        return { kind: "error", error: toJsonRpcError(error, gateway.logger) };
      }
    },
  );
  return { task: legacyTask(record) };
}

/**
 * The client of a call that runs as a task: none is there to ask while it runs, so questions are
 * refused (as by a client without the capability) and the server answers roots from its config. It
 * declares the tasks extension, so that a server with tasks runs the call as one of its own.
 */
function taskChannel(): CallerChannel {
  const refuse = () =>
    Promise.reject(
      new ProtocolError(
        ProtocolErrorCode.MethodNotFound,
        "The client cannot be asked while the call runs as a task.",
      ),
    );
  return {
    capabilities: { extensions: { [TASKS_EXTENSION]: {} } } as never,
    createMessage: refuse,
    elicit: refuse,
    listRoots: async () => undefined,
    log: () => false,
  };
}

const TaskIdParams = z.looseObject({ taskId: z.string() });
const UpdateParams = z.looseObject({
  taskId: z.string(),
  inputResponses: z.record(z.string(), z.unknown()).optional(),
});
const ListParams = z.looseObject({ cursor: z.string().optional() });

function unknownTask(taskId: string): ProtocolError {
  return new ProtocolError(
    ProtocolErrorCode.InvalidParams,
    `Unknown task "${taskId}": it never existed, expired, or belongs to someone else. Start the call again.`,
  );
}

/** Answers the task methods of the instance's era (see the module comment). */
export function serveTasks(
  server: Server,
  gateway: Gateway,
  era: "modern" | "legacy",
  principalOf: (ctx: ServerContext) => Principal,
): void {
  const tasks = gateway.tasks;
  /** A failure (the store's, a server's) maps to a JSON-RPC error in the one place that maps them. */
  const handle = <P extends z.ZodType>(
    method: string,
    params: P,
    answer: (params: z.infer<P>, ctx: ServerContext) => Promise<Record<string, unknown>>,
  ) =>
    server.setRequestHandler(
      method as never,
      { params } as never,
      (async (p: z.infer<P>, ctx: ServerContext) => {
        try {
          return await answer(p, ctx);
        } catch (error) {
          throw toProtocolError(error, gateway.logger);
        }
      }) as never,
    );
  const owned = async (taskId: string, ctx: ServerContext) => {
    const record = await tasks.get(taskId, principalOf(ctx));
    if (record === undefined) throw unknownTask(taskId);
    return record;
  };
  if (era === "modern") {
    const requireExtension = (ctx: ServerContext, method: string) => {
      if (requestTakesTasks(ctx)) return;
      throw new MissingRequiredClientCapabilityError(
        { requiredCapabilities: { extensions: { [TASKS_EXTENSION]: {} } } } as never,
        `${method} needs the ${TASKS_EXTENSION} extension; declare it in the request's client capabilities.`,
      );
    };
    handle("tasks/get", TaskIdParams, async ({ taskId }, ctx) => {
      requireExtension(ctx, "tasks/get");
      const record = await owned(taskId, ctx);
      return {
        ...taskInfo(record),
        ...(record.result ? { result: record.result } : {}),
        ...(record.error ? { error: record.error } : {}),
        ...(record.inputRequests ? { inputRequests: record.inputRequests } : {}),
      };
    });
    handle("tasks/update", UpdateParams, async ({ taskId, inputResponses }, ctx) => {
      requireExtension(ctx, "tasks/update");
      const answers =
        inputResponses ?? (ctx.mcpReq.inputResponses as Record<string, unknown> | undefined) ?? {};
      if (!(await tasks.update(taskId, principalOf(ctx), answers))) throw unknownTask(taskId);
      return {};
    });
    handle("tasks/cancel", TaskIdParams, async ({ taskId }, ctx) => {
      requireExtension(ctx, "tasks/cancel");
      if ((await tasks.cancel(taskId, principalOf(ctx))) === undefined) throw unknownTask(taskId);
      return {};
    });
    return;
  }
  handle("tasks/get", TaskIdParams, async ({ taskId }, ctx) => legacyTask(await owned(taskId, ctx)));
  handle("tasks/list", ListParams, async (_params, ctx) => ({
    tasks: (await tasks.list(principalOf(ctx))).map(legacyTask),
  }));
  handle("tasks/cancel", TaskIdParams, async ({ taskId }, ctx) => {
    const record = await tasks.cancel(taskId, principalOf(ctx));
    if (record === undefined) throw unknownTask(taskId);
    return legacyTask(record);
  });
  handle("tasks/result", TaskIdParams, async ({ taskId }, ctx) => {
    const record = await tasks.untilDone(taskId, principalOf(ctx), ctx.mcpReq.signal);
    if (record === undefined) throw unknownTask(taskId);
    const related = { _meta: { [RELATED_TASK_META]: { taskId } } };
    if (record.status === "completed" && record.result) return { ...record.result, ...related };
    if (record.status === "failed" && record.error)
      throw new ProtocolError(record.error.code, record.error.message, record.error.data);
    throw new ProtocolError(
      ProtocolErrorCode.InvalidRequest,
      `Task "${taskId}" was ${record.status}; it has no result.`,
    );
  });
}
