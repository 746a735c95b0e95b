/**
 * Tasks through the gateway, on every replica: it records the tasks clients start (records.ts), runs
 * the ones the server cannot run itself, and answers polls, answers and cancels wherever they land.
 *
 * Who can reach a task:
 * - A task the server runs itself (`runner: "backend"`) on a server every replica reaches over HTTP:
 *   any replica asks the server about it directly, by the server's task id kept in the record.
 * - The same on a stdio server: only the process the starting replica spawned knows the task, so that
 *   replica keeps the record current as the task progresses (it polls its server), other replicas
 *   answer polls from the record, and an answer (`tasks/update`) or a cancel that lands elsewhere is
 *   passed to it through the store's messages (Redis pub/sub with several replicas).
 * - A task the gateway runs (`runner: "gateway"`: the server answers calls directly): the starting
 *   replica runs the call through the ordinary chain and writes the outcome into the record; a cancel
 *   that lands elsewhere reaches it by the same messages and aborts the call.
 * A replica that dies takes the tasks it alone could reach with it: their records stay as last written.
 */
import { randomUUID } from "node:crypto";
import { type BackendTask, normalized, type TaskMethod, taskOfAnswer } from "../backends/mcp/tasks.ts";
import { describeError } from "../core/errors.ts";
import type { Backend, Principal, Store, Unsubscribe } from "../core/types.ts";
import type { Logger } from "../observability/logger.ts";
import {
  isTerminal,
  TASK_STATUSES,
  type TaskChange,
  type TaskError,
  type TaskRecord,
  TaskRecords,
  type TaskSettings,
  type TaskStatus,
} from "./records.ts";

/** A backend that runs tool calls as tasks of its own (an MCP server; see backends/mcp/tasks.ts). */
export interface TaskBackend {
  offersTasks(): boolean;
  readonly sharedByReplicas: boolean;
  taskRequest(
    method: TaskMethod,
    params: Record<string, unknown>,
    signal?: AbortSignal,
  ): Promise<Record<string, unknown>>;
}

export function isTaskBackend(backend: Backend | undefined): backend is Backend & TaskBackend {
  return backend !== undefined && "taskRequest" in backend && "offersTasks" in backend;
}

/** How a call the gateway runs as a task ended: its result, or the protocol error that failed it. */
export type TaskOutcome =
  | { readonly kind: "result"; readonly result: Record<string, unknown> }
  | { readonly kind: "error"; readonly error: TaskError };

export interface GatewayTasksDeps {
  readonly store: Store;
  readonly logger: Logger;
  readonly backend: (server: string) => Backend | undefined;
  readonly settings: () => TaskSettings;
}

interface TaskMessage {
  readonly op: "cancel" | "update";
  readonly taskId: string;
  readonly replica: string;
  readonly inputResponses?: Record<string, unknown>;
}

const CHANNEL = "tasks";
const RELATED_TASK_META = "io.modelcontextprotocol/related-task";

export class GatewayTasks {
  readonly records: TaskRecords;
  /** This process, as records name it: replicas may share a configured name, never this id. */
  readonly replica = randomUUID();
  readonly #deps: GatewayTasksDeps;
  /** Calls this replica runs as tasks, by task id. */
  readonly #running = new Map<string, AbortController>();
  /** Server tasks this replica keeps the records of (stdio servers), by task id. */
  readonly #watched = new Map<string, NodeJS.Timeout>();
  #unsubscribe: Unsubscribe | undefined;

  constructor(deps: GatewayTasksDeps) {
    this.#deps = deps;
    this.records = new TaskRecords(deps.store, deps.settings);
  }

  async start(): Promise<void> {
    this.#unsubscribe = await this.#deps.store.subscribe(CHANNEL, (message) => this.#onMessage(message));
  }

  async close(): Promise<void> {
    for (const controller of this.#running.values()) controller.abort(new Error("the gateway is closing"));
    for (const timer of this.#watched.values()) clearTimeout(timer);
    this.#watched.clear();
    await this.#unsubscribe?.();
  }

  /** Records a task the server created for a call, and keeps track of it (see the module comment). */
  async adopt(owner: Principal, server: string, tool: string, task: BackendTask): Promise<TaskRecord> {
    const record = await this.records.create(owner, {
      server,
      tool,
      runner: "backend",
      backendTaskId: task.taskId,
      replica: this.replica,
      ...changeFrom(task),
    });
    this.#watchIfOnlyHere(record);
    // A task that asks at once is reported without its questions (a CreateTaskResult has none): they
    // are read now, so that a poll on a replica that cannot ask the server finds them.
    return record.status === "input_required" ? this.#refresh(record) : record;
  }

  /**
   * Starts `run` as a task of this replica and returns its record at once. When the server answers
   * the call with a task of its own, the record follows that task from then on.
   */
  async runHere(
    owner: Principal,
    server: string,
    tool: string,
    run: (signal: AbortSignal) => Promise<TaskOutcome>,
  ): Promise<TaskRecord> {
    const record = await this.records.create(owner, {
      server,
      tool,
      runner: "gateway",
      replica: this.replica,
    });
    const controller = new AbortController();
    this.#running.set(record.taskId, controller);
    void run(controller.signal)
      .then(async (outcome) => {
        if (controller.signal.aborted) return undefined;
        if (outcome.kind === "error") return this.records.update(record.taskId, failed(outcome.error));
        const task = taskOfAnswer(outcome.result);
        if (task === undefined) return this.records.update(record.taskId, completed(outcome.result));
        const adopted = await this.records.update(record.taskId, {
          runner: "backend",
          backendTaskId: task.taskId,
          ...changeFrom(task),
        });
        if (adopted) this.#watchIfOnlyHere(adopted);
        return adopted;
      })
      .catch((error: unknown) => {
        this.#deps.logger.warn(
          { err: describeError(error), task: record.taskId },
          "could not record a task's end",
        );
      })
      .finally(() => this.#running.delete(record.taskId));
    return record;
  }

  /** The owner's task, as current as this replica can make it; undefined for anyone else. */
  async get(taskId: string, principal: Principal): Promise<TaskRecord | undefined> {
    const record = await this.records.get(taskId, principal);
    return record && this.#refresh(record);
  }

  async list(principal: Principal): Promise<TaskRecord[]> {
    return this.records.list(principal);
  }

  /** Passes the client's answers to the task's questions on; false when there is no such task. */
  async update(
    taskId: string,
    principal: Principal,
    inputResponses: Record<string, unknown>,
  ): Promise<boolean> {
    const record = await this.records.get(taskId, principal);
    if (record === undefined) return false;
    if (record.runner === "backend" && !isTerminal(record.status)) {
      if (this.#reaches(record)) await this.#ask(record, "tasks/update", { inputResponses });
      else await this.#publish({ op: "update", taskId, replica: record.replica, inputResponses });
    }
    return true;
  }

  /** Cancels the owner's task (a finished one stays as it is); undefined when there is no such task. */
  async cancel(taskId: string, principal: Principal): Promise<TaskRecord | undefined> {
    const record = await this.records.get(taskId, principal);
    if (record === undefined || isTerminal(record.status)) return record;
    // Recorded first: the outcome of the call the cancel then stops is dropped (a finished task is final).
    const cancelled = (await this.records.update(taskId, { status: "cancelled" })) ?? record;
    if (record.runner === "backend" && this.#reaches(record)) await this.#ask(record, "tasks/cancel", {});
    else if (record.replica === this.replica) this.#abortHere(taskId);
    else await this.#publish({ op: "cancel", taskId, replica: record.replica });
    return cancelled;
  }

  /** Waits until the owner's task has finished (2025-era `tasks/result`); undefined if there is none. */
  async untilDone(
    taskId: string,
    principal: Principal,
    signal: AbortSignal,
  ): Promise<TaskRecord | undefined> {
    for (;;) {
      const record = await this.get(taskId, principal);
      if (record === undefined || isTerminal(record.status)) return record;
      await pause(record.pollIntervalMs, signal);
    }
  }

  /** Whether this replica may ask the task's server about it (see the module comment). */
  #reaches(record: TaskRecord): boolean {
    const backend = this.#deps.backend(record.server);
    return isTaskBackend(backend) && (backend.sharedByReplicas || record.replica === this.replica);
  }

  async #refresh(record: TaskRecord): Promise<TaskRecord> {
    if (record.runner !== "backend" || isTerminal(record.status) || !this.#reaches(record)) return record;
    try {
      const task = normalized(await this.#ask(record, "tasks/get", {}));
      return (await this.records.update(record.taskId, changeFrom(task))) ?? record;
    } catch (error) {
      // The server cannot say right now; the record still holds what it said last.
      this.#deps.logger.debug(
        { err: describeError(error), task: record.taskId },
        "could not poll a server's task",
      );
      return record;
    }
  }

  #ask(record: TaskRecord, method: TaskMethod, params: Record<string, unknown>) {
    const backend = this.#deps.backend(record.server);
    if (!isTaskBackend(backend)) throw new Error(`server "${record.server}" runs no tasks`);
    return backend.taskRequest(method, { ...params, taskId: record.backendTaskId });
  }

  /** On a stdio server, only this replica can follow the task: it polls and writes the record. */
  #watchIfOnlyHere(record: TaskRecord): void {
    const backend = this.#deps.backend(record.server);
    if (!isTaskBackend(backend) || backend.sharedByReplicas || isTerminal(record.status)) return;
    const tick = async () => {
      // A record that expired (or cannot be read) ends the watch: no one can poll it any more.
      const kept = await this.records.read(record.taskId).catch(() => undefined);
      const now = kept && (await this.#refresh(kept));
      if (now === undefined || isTerminal(now.status) || !this.#watched.has(record.taskId)) {
        this.#watched.delete(record.taskId);
        return;
      }
      schedule();
    };
    // A store that fails a read or write ends the watch too (polls then read what was written last).
    const schedule = () => {
      const next = () => void tick().catch(() => this.#watched.delete(record.taskId));
      this.#watched.set(record.taskId, setTimeout(next, record.pollIntervalMs).unref());
    };
    schedule();
  }

  #abortHere(taskId: string): void {
    this.#running.get(taskId)?.abort(new Error("the task was cancelled"));
  }

  async #publish(message: TaskMessage): Promise<void> {
    await this.#deps.store.publish(CHANNEL, JSON.stringify(message));
  }

  #onMessage(raw: string): void {
    let message: TaskMessage;
    try {
      message = JSON.parse(raw) as TaskMessage;
    } catch {
      return;
    }
    if (message.replica !== this.replica) return;
    void this.#carryOut(message).catch((error: unknown) => {
      this.#deps.logger.warn(
        { err: describeError(error), task: message.taskId },
        "could not pass on a task request",
      );
    });
  }

  async #carryOut(message: TaskMessage): Promise<void> {
    const record = await this.records.read(message.taskId);
    if (record === undefined) return;
    if (message.op === "cancel") {
      if (record.runner === "backend") await this.#ask(record, "tasks/cancel", {});
      else this.#abortHere(record.taskId);
      return;
    }
    await this.#ask(record, "tasks/update", { inputResponses: message.inputResponses ?? {} });
    await this.#refresh(record);
  }
}

/** What a server's report of its task changes in the record. */
function changeFrom(task: BackendTask): TaskChange {
  const status = (TASK_STATUSES as readonly string[]).includes(task.status)
    ? (task.status as TaskStatus)
    : "working";
  return {
    status,
    ...(task.statusMessage ? { statusMessage: task.statusMessage } : {}),
    ...(task.result ? { result: withoutTaskMeta(task.result) } : {}),
    ...(task.error ? { error: task.error } : {}),
    ...(task.inputRequests ? { inputRequests: task.inputRequests } : {}),
  };
}

function completed(result: Record<string, unknown>): TaskChange {
  return { status: "completed", result: withoutTaskMeta(result) };
}

function failed(error: TaskError): TaskChange {
  return { status: "failed", error, statusMessage: error.message };
}

/** The result as the task's own: the wire's result type and a related-task note are the gateway's to set. */
function withoutTaskMeta(result: Record<string, unknown>): Record<string, unknown> {
  const { resultType: _resultType, ...rest } = result;
  const meta = rest._meta as Record<string, unknown> | undefined;
  if (meta === undefined || !(RELATED_TASK_META in meta)) return rest;
  const { [RELATED_TASK_META]: _related, ...others } = meta;
  const { _meta: _dropped, ...bare } = rest;
  return Object.keys(others).length > 0 ? { ...bare, _meta: others } : bare;
}

function pause(ms: number, signal: AbortSignal): Promise<void> {
  return new Promise((resolve, reject) => {
    if (signal.aborted) return reject(signal.reason);
    const timer = setTimeout(() => {
      signal.removeEventListener("abort", stop);
      resolve();
    }, ms);
    const stop = () => {
      clearTimeout(timer);
      reject(signal.reason);
    };
    signal.addEventListener("abort", stop, { once: true });
  });
}
