/**
 * The gateway's own record of each task a client started, kept in the store (config `store`): in
 * memory on one replica, in Redis when several share it, so that a client may poll, answer or cancel
 * its task on any replica. A record names its owner (the principal that started it), the server and,
 * when the server runs the call as a task of its own, that task's id; it holds the status, and the
 * result once the task is done. It expires `resultTtlMs` after its last change.
 *
 * Only the owner sees a record: for anyone else `get` answers as for a task that does not exist, so a
 * task id reveals nothing to another principal. Ids are 192 random bits: they cannot be guessed.
 */
import { createHash, randomBytes } from "node:crypto";
import type { Principal, Store } from "../core/types.ts";

export const TASK_STATUSES = ["working", "input_required", "completed", "failed", "cancelled"] as const;
export type TaskStatus = (typeof TASK_STATUSES)[number];

const TERMINAL: ReadonlySet<TaskStatus> = new Set(["completed", "failed", "cancelled"]);

export function isTerminal(status: TaskStatus): boolean {
  return TERMINAL.has(status);
}

export interface TaskError {
  readonly code: number;
  readonly message: string;
  readonly data?: unknown;
}

export interface TaskRecord {
  readonly taskId: string;
  /** The id of the principal that started it: the only one who may see it. */
  readonly owner: string;
  /** The server that runs the call, and the tool as that server names it. */
  readonly server: string;
  readonly tool: string;
  /**
   * "backend": the server runs the call as a task of its own (`backendTaskId`); "gateway": the server
   * answers calls directly, and the replica `replica` runs it and writes the outcome here.
   */
  readonly runner: "backend" | "gateway";
  readonly backendTaskId?: string;
  /** The replica that started it: it holds the call (a gateway-run task) or the server's process. */
  readonly replica: string;
  readonly status: TaskStatus;
  readonly statusMessage?: string;
  /** When completed: the tool's result, as a client would have got it from the call. */
  readonly result?: Record<string, unknown>;
  /** When failed: the protocol error that ended it. */
  readonly error?: TaskError;
  /** When input_required: the questions the task waits on, by key. */
  readonly inputRequests?: Record<string, unknown>;
  /** ISO 8601. */
  readonly createdAt: string;
  readonly lastUpdatedAt: string;
  /** How long the task stays readable after its last change, in ms. */
  readonly ttlMs: number;
  readonly pollIntervalMs: number;
}

export type TaskChange = Partial<
  Pick<
    TaskRecord,
    "status" | "statusMessage" | "result" | "error" | "inputRequests" | "backendTaskId" | "runner"
  >
>;

/** Config `gateway.tasks`, read at each use: a reload applies to the tasks started after it. */
export interface TaskSettings {
  /** How long a record is kept after its last change. */
  readonly resultTtlMs: number;
  /** How often clients are told to poll. */
  readonly pollIntervalMs: number;
}

const KEY = "task:";
const OWNER_INDEX = "tasks-of:";
/** The most tasks `list` returns for one owner (newest first); older ones stay readable by id. */
const LIST_LIMIT = 100;

export class TaskRecords {
  readonly #store: Store;
  readonly #settings: () => TaskSettings;
  readonly #now: () => number;

  constructor(store: Store, settings: () => TaskSettings, now: () => number = Date.now) {
    this.#store = store;
    this.#settings = settings;
    this.#now = now;
  }

  /** A new record, readable at once on every replica (a client may poll as soon as it has the id). */
  async create(
    owner: Principal,
    fields: Pick<TaskRecord, "server" | "tool" | "runner" | "replica"> & TaskChange,
  ): Promise<TaskRecord> {
    const now = this.#iso();
    const record: TaskRecord = {
      status: "working",
      ...fields,
      taskId: randomBytes(24).toString("base64url"),
      owner: owner.id,
      createdAt: now,
      lastUpdatedAt: now,
      ttlMs: this.#settings().resultTtlMs,
      pollIntervalMs: this.#settings().pollIntervalMs,
    };
    await this.#write(record);
    await this.#index(owner.id, record.taskId);
    return record;
  }

  /** The record, if it exists and `principal` owns it; undefined otherwise, whichever the reason. */
  async get(taskId: string, principal: Principal): Promise<TaskRecord | undefined> {
    const record = await this.read(taskId);
    return record?.owner === principal.id ? record : undefined;
  }

  /** The record whoever owns it: for the replica that runs the task, never for a client's request. */
  async read(taskId: string): Promise<TaskRecord | undefined> {
    if (typeof taskId !== "string" || taskId.length === 0 || taskId.length > 200) return undefined;
    const raw = await this.#store.get(KEY + taskId);
    if (raw === undefined) return undefined;
    try {
      return JSON.parse(raw) as TaskRecord;
    } catch {
      return undefined;
    }
  }

  /**
   * Applies a change. A finished task stays as it finished (completed, failed or cancelled are final;
   * a late result after a cancel is dropped); undefined when there is no such record.
   */
  async update(taskId: string, change: TaskChange): Promise<TaskRecord | undefined> {
    const record = await this.read(taskId);
    if (record === undefined) return undefined;
    if (isTerminal(record.status)) return record;
    const next: TaskRecord = { ...record, ...change, lastUpdatedAt: this.#iso() };
    const cleaned = cleanFor(next);
    await this.#write(cleaned);
    return cleaned;
  }

  /** The owner's tasks that are still kept, newest first. */
  async list(principal: Principal): Promise<TaskRecord[]> {
    const ids = await this.#indexOf(principal.id);
    const records = await Promise.all(ids.map((id) => this.get(id, principal)));
    return records.filter((r): r is TaskRecord => r !== undefined);
  }

  async #write(record: TaskRecord): Promise<void> {
    await this.#store.set(KEY + record.taskId, JSON.stringify(record), { ttlMs: record.ttlMs });
  }

  /**
   * The owner's task ids, newest first, for `tasks/list`. Updated under a store lock, so that tasks
   * two replicas start at once are both listed.
   */
  async #index(owner: string, taskId: string): Promise<void> {
    const key = OWNER_INDEX + ownerKey(owner);
    const lock = await this.#lockFor(key);
    try {
      const ids = [taskId, ...(await this.#indexOf(owner))].slice(0, LIST_LIMIT);
      await this.#store.set(key, JSON.stringify(ids), { ttlMs: this.#settings().resultTtlMs });
    } finally {
      await lock?.release();
    }
  }

  async #lockFor(key: string) {
    const deadline = Date.now() + 2_000;
    for (;;) {
      const lock = await this.#store.lock(key, 2_000);
      // Past the deadline the index is written unlocked: a lost entry costs a listing, not the task.
      if (lock || Date.now() > deadline) return lock;
      await this.#store.waitForUnlock(key, deadline - Date.now());
    }
  }

  async #indexOf(owner: string): Promise<string[]> {
    const raw = await this.#store.get(OWNER_INDEX + ownerKey(owner));
    try {
      const ids = raw === undefined ? [] : (JSON.parse(raw) as unknown);
      return Array.isArray(ids) ? ids.filter((id): id is string => typeof id === "string") : [];
    } catch {
      return [];
    }
  }

  #iso(): string {
    return new Date(this.#now()).toISOString();
  }
}

/** What a status carries: a result only when completed, an error only when failed, questions only when asked. */
function cleanFor(record: TaskRecord): TaskRecord {
  const { result, error, inputRequests, ...rest } = record;
  return {
    ...rest,
    ...(record.status === "completed" && result ? { result } : {}),
    ...(record.status === "failed" && error ? { error } : {}),
    ...(record.status === "input_required" && inputRequests ? { inputRequests } : {}),
  };
}

/** Principal ids are free text; the index key holds a digest of one. */
function ownerKey(owner: string): string {
  return createHash("sha256").update(owner).digest("base64url");
}
