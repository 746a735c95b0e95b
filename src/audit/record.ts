/**
 * What the audit log keeps about one tool call, what a sink promises, and the group-commit queue and
 * queued-sink base class both sinks (JSONL file, PostgreSQL) are built on.
 */
import { describeError } from "../core/errors.ts";
import type { RequestKind } from "../core/types.ts";
import type { Logger } from "../observability/logger.ts";

export const AUDIT_OUTCOMES = ["ok", "tool_error", "error", "denied", "rate_limited", "invalid"] as const;

/**
 * - ok: the tool answered;
 * - tool_error: the tool answered with `isError` (its own failure);
 * - error: the gateway or the backend failed (timeout, unavailable, open circuit…);
 * - denied: access control refused the call;
 * - rate_limited: a rate limit refused it;
 * - invalid: unknown tool or arguments that fail validation.
 */
export type AuditOutcome = (typeof AUDIT_OUTCOMES)[number];

/** Where the answer came from: the backend, the cache, a fallback (`fallback:<what>`), or another source. */
export type AuditSource = "backend" | "cache" | `fallback:${string}` | (string & {});

export interface AuditRecord {
  /** When the call started, ISO 8601 UTC. */
  readonly time: string;
  readonly requestId: string;
  /** The principal's id. */
  readonly principal: string;
  readonly roles?: readonly string[];
  /** The backend's config name. */
  readonly server: string;
  /**
   * The tool as the client named it (the exposed, prefixed name); for the other request kinds, the
   * prompt's exposed name, or the URI of the resource read.
   */
  readonly tool: string;
  /** The request kind when it is not a tool call: "resources/read", "prompts/get", "completion/complete". */
  readonly kind?: Exclude<RequestKind, "tools/call">;
  /** The arguments after redaction; absent when the log is configured with `omitArguments`. */
  readonly arguments?: Readonly<Record<string, unknown>>;
  readonly outcome: AuditOutcome;
  /** Why the call failed, for every outcome but ok. */
  readonly error?: string;
  readonly durationMs: number;
  readonly source: AuditSource;
  readonly transport?: "stdio" | "http";
  /** Which gateway replica handled the call, when several share a sink. */
  readonly replica?: string;
  /**
   * Who the call went upstream as, when its server takes each caller's own credentials (`auth` of
   * type passthrough or exchange: the subject of the token sent; per-principal: the principal id, or
   * `role:<role>` for a role's credential). Absent when the gateway's own credentials were used.
   */
  readonly upstreamAs?: string;
}

const OUTCOMES: ReadonlySet<string> = new Set(AUDIT_OUTCOMES);

/** Whether a parsed JSON value has the shape of a record (the fields the reader filters on). */
export function isAuditRecord(value: unknown): value is AuditRecord {
  if (typeof value !== "object" || value === null || Array.isArray(value)) return false;
  const r = value as Record<string, unknown>;
  return (
    typeof r.time === "string" &&
    typeof r.requestId === "string" &&
    typeof r.principal === "string" &&
    typeof r.server === "string" &&
    typeof r.tool === "string" &&
    typeof r.outcome === "string" &&
    OUTCOMES.has(r.outcome) &&
    typeof r.durationMs === "number" &&
    typeof r.source === "string"
  );
}

export type AuditDurability = "sync" | "batched";

export interface SinkHealth {
  /** e.g. "file:/var/log/switchboard/audit.jsonl" or "postgres:public.switchboard_audit". */
  readonly name: string;
  readonly durability: AuditDurability;
  /** Records accepted and not yet committed (including those waiting for a retry). */
  readonly pending: number;
  readonly committed: number;
  /** Records given up on: buffer overflow, or still pending when the sink closed. */
  readonly dropped: number;
  /** Commit attempts that failed since the last success. */
  readonly consecutiveFailures: number;
  readonly lastError?: string;
  readonly lastErrorAt?: string;
}

export interface AuditSink {
  readonly name: string;
  /**
   * Sync durability: resolves once the record is durable (fsync'd, committed), rejects when the sink
   * cannot make it so now (the record is kept and retried in the background all the same).
   * Batched: resolves at once and never rejects.
   */
  write(record: AuditRecord): Promise<void>;
  /** Commits everything accepted so far; rejects when some of it could not be committed. */
  flush(): Promise<void>;
  /** Flushes, then releases the file or the pool. Records still pending after that are reported lost. */
  close(): Promise<void>;
  health(): SinkHealth;
}

// ---------------------------------------------------------------------------------------------------
// Group commit

export interface CommitQueueOptions<T> {
  /** Names the sink in logs and errors. */
  readonly name: string;
  readonly durability: AuditDurability;
  /** Makes items durable, in order, all or nothing as far as the caller can tell. */
  readonly commit: (items: readonly T[]) => Promise<void>;
  /** Batched mode: how often pending items are committed. */
  readonly flushIntervalMs: number;
  /** Most items per commit; batched mode also commits early once this many are pending. */
  readonly maxBatch: number;
  /** Most items held while the sink fails; beyond it the oldest are dropped (and reported). */
  readonly maxPending: number;
  readonly logger: Logger;
  /** Backoff between retries of a failing sink, doubling from `retryMinMs` to `retryMaxMs`. */
  readonly retryMinMs?: number;
  readonly retryMaxMs?: number;
}

interface Waiter {
  resolve(): void;
  reject(error: Error): void;
}

interface Pending<T> {
  readonly item: T;
  waiter: Waiter | undefined;
}

/**
 * Least time between two log lines of a sink about the same trouble: the count of dropped records,
 * logged again while records keep being dropped, and an outage, which a sync sink meets once per call.
 */
const REPORT_INTERVAL_MS = 10_000;

/**
 * Ordered, bounded, retried commits, one at a time.
 *
 * Sync mode is a group commit: items that arrive while a commit is under way wait for the next one,
 * which takes them all, so N concurrent callers cost one fsync (one INSERT) per round instead of N.
 * Each caller's promise settles with the commit that covers its item. A round starts as soon as a
 * caller waits, whatever the backoff, so an outage costs each round one failed attempt, never a wait
 * for a timer, and the first round after the sink recovers succeeds.
 *
 * Batched mode commits on an interval (and early when a batch is full); failures are retried with
 * backoff and items are held, up to `maxPending`.
 *
 * In both modes a failed commit puts its items back at the head of the queue: they are retried, in
 * order, before anything newer. A commit that failed after writing part of its items may therefore
 * write some of them twice (at least once, never lost while the process lives).
 */
export class CommitQueue<T> {
  readonly #options: CommitQueueOptions<T>;
  #pending: Pending<T>[] = [];
  #inFlight = 0;
  #running: Promise<void> | undefined;
  #interval: NodeJS.Timeout | undefined;
  #retryTimer: NodeJS.Timeout | undefined;
  #retryAt = 0;
  #failures = 0;
  #failureReportedAt = 0;
  #committed = 0;
  #dropped = 0;
  #droppedUnreported = 0;
  #dropReportTimer: NodeJS.Timeout | undefined;
  #lastError: string | undefined;
  #lastErrorAt: string | undefined;
  #closed = false;

  constructor(options: CommitQueueOptions<T>) {
    this.#options = options;
    if (options.durability === "batched") {
      this.#interval = setInterval(() => this.#onInterval(), options.flushIntervalMs);
      // The audit log must never be what keeps a gateway that is shutting down alive.
      this.#interval.unref();
    }
  }

  get closed(): boolean {
    return this.#closed;
  }

  add(item: T): Promise<void> {
    const { durability, name } = this.#options;
    if (this.#closed) {
      if (durability === "sync") {
        return Promise.reject(
          new Error(
            `audit sink ${name} is closed: the record was not written (the gateway is shutting down)`,
          ),
        );
      }
      this.#drop(1, "the sink is closed");
      return Promise.resolve();
    }
    if (this.#pending.length >= this.#options.maxPending) this.#dropOldest();
    if (durability === "batched") {
      this.#pending.push({ item, waiter: undefined });
      if (this.#pending.length >= this.#options.maxBatch && Date.now() >= this.#retryAt) this.#kick();
      return Promise.resolve();
    }
    return new Promise<void>((resolve, reject) => {
      this.#pending.push({ item, waiter: { resolve, reject } });
      this.#kick();
    });
  }

  /** Commits everything pending now; rejects with the last error when something is left over. */
  async flush(): Promise<void> {
    await this.#running;
    if (this.#pending.length > 0) {
      this.#kick();
      await this.#running;
    }
    if (this.#pending.length > 0) {
      throw new Error(
        `audit sink ${this.#options.name}: ${this.#pending.length} records are not committed yet: ${this.#lastError ?? "unknown error"}`,
      );
    }
  }

  /** Stops the timers and makes one last attempt; whatever is still pending then is lost, loudly. */
  async close(): Promise<void> {
    if (this.#closed) return;
    this.#closed = true;
    clearInterval(this.#interval);
    clearTimeout(this.#retryTimer);
    await this.flush().catch(() => undefined);
    if (this.#pending.length > 0) {
      const lost = this.#pending.splice(0);
      const error = new Error(
        `audit sink ${this.#options.name} closed with ${lost.length} records it could not commit: ${this.#lastError ?? "unknown error"}`,
      );
      for (const entry of lost) entry.waiter?.reject(error);
      this.#dropped += lost.length;
      this.#options.logger.error(
        { sink: this.#options.name, lost: lost.length, err: this.#lastError },
        "audit records lost at shutdown: the sink could not be reached",
      );
    }
    clearTimeout(this.#dropReportTimer);
    this.#reportDrops();
  }

  health(): Omit<SinkHealth, "name" | "durability"> {
    return {
      pending: this.#pending.length + this.#inFlight,
      committed: this.#committed,
      dropped: this.#dropped,
      consecutiveFailures: this.#failures,
      ...(this.#lastError === undefined ? {} : { lastError: this.#lastError }),
      ...(this.#lastErrorAt === undefined ? {} : { lastErrorAt: this.#lastErrorAt }),
    };
  }

  #onInterval(): void {
    if (this.#pending.length > 0 && Date.now() >= this.#retryAt) this.#kick();
  }

  #kick(): void {
    if (this.#running) return;
    this.#running = this.#run().finally(() => {
      this.#running = undefined;
      // Callers that arrived while the last round was finishing would otherwise wait for a timer.
      if (this.#hasWaiters()) this.#kick();
    });
  }

  #hasWaiters(): boolean {
    return this.#pending.some((entry) => entry.waiter !== undefined);
  }

  async #run(): Promise<void> {
    while (this.#pending.length > 0) {
      const batch = this.#pending.splice(0, this.#options.maxBatch);
      this.#inFlight = batch.length;
      try {
        await this.#options.commit(batch.map((entry) => entry.item));
      } catch (error) {
        this.#inFlight = 0;
        this.#failed(batch, error);
        // Sync callers that arrived meanwhile get their own attempt now; otherwise wait for the retry.
        if (this.#hasWaiters()) continue;
        return;
      }
      this.#inFlight = 0;
      this.#succeeded(batch);
    }
  }

  #succeeded(batch: readonly Pending<T>[]): void {
    if (this.#failures > 0) {
      this.#options.logger.info(
        { sink: this.#options.name, afterFailures: this.#failures },
        "audit sink recovered",
      );
    }
    this.#failures = 0;
    this.#retryAt = 0;
    clearTimeout(this.#retryTimer);
    this.#retryTimer = undefined;
    this.#committed += batch.length;
    for (const entry of batch) entry.waiter?.resolve();
  }

  #failed(batch: Pending<T>[], error: unknown): void {
    this.#failures++;
    this.#lastError = describeError(error);
    this.#lastErrorAt = new Date().toISOString();
    const rejection = new Error(
      `audit sink ${this.#options.name} could not commit the record: ${this.#lastError}`,
      { cause: error },
    );
    // Back at the head, in order: the records are still owed to the log.
    this.#pending.unshift(...batch);
    // Every sync caller waiting is told now, not only those of this batch: one waiting behind a full
    // batch would otherwise have the same failing batch retried at once, over and over, for it.
    for (const entry of this.#pending) {
      entry.waiter?.reject(rejection);
      entry.waiter = undefined;
    }
    while (this.#pending.length > this.#options.maxPending) this.#dropOldest();
    const min = this.#options.retryMinMs ?? 100;
    const max = this.#options.retryMaxMs ?? 30_000;
    const base = Math.min(max, min * 2 ** Math.min(this.#failures - 1, 20));
    const delay = Math.round(base / 2 + Math.random() * (base / 2));
    this.#retryAt = Date.now() + delay;
    this.#reportFailure(delay);
    clearTimeout(this.#retryTimer);
    if (this.#closed) return;
    this.#retryTimer = setTimeout(() => {
      this.#retryTimer = undefined;
      this.#kick();
    }, delay);
    this.#retryTimer.unref();
  }

  /**
   * The first failure of an outage is an error; after it, one line at most every REPORT_INTERVAL_MS.
   * A sync sink tries once per call, so an outage under load would otherwise write a line per call and
   * bury everything else in the log.
   */
  #reportFailure(retryInMs: number): void {
    const now = Date.now();
    if (this.#failures > 1 && now - this.#failureReportedAt < REPORT_INTERVAL_MS) return;
    this.#failureReportedAt = now;
    this.#options.logger[this.#failures === 1 ? "error" : "warn"](
      {
        sink: this.#options.name,
        err: this.#lastError,
        pending: this.#pending.length,
        failures: this.#failures,
        retryInMs,
      },
      "audit sink commit failed; records are kept and retried",
    );
  }

  #dropOldest(): void {
    const entry = this.#pending.shift();
    if (entry === undefined) return;
    entry.waiter?.reject(
      new Error(
        `audit sink ${this.#options.name} dropped the record: more than ${this.#options.maxPending} are waiting for a sink that fails (${this.#lastError ?? "no error yet"})`,
      ),
    );
    this.#drop(1, "the buffer of records waiting for a failing sink is full");
  }

  /** Counts dropped records and logs them at once, then at most every 10 s while drops go on. */
  #drop(count: number, reason: string): void {
    this.#dropped += count;
    this.#droppedUnreported += count;
    if (this.#dropReportTimer !== undefined) return;
    this.#reportDrops(reason);
    this.#dropReportTimer = setTimeout(() => {
      this.#dropReportTimer = undefined;
      this.#reportDrops(reason);
    }, REPORT_INTERVAL_MS);
    this.#dropReportTimer.unref();
  }

  #reportDrops(reason?: string): void {
    if (this.#droppedUnreported === 0) return;
    this.#options.logger.error(
      {
        sink: this.#options.name,
        dropped: this.#droppedUnreported,
        droppedTotal: this.#dropped,
        reason,
        err: this.#lastError,
      },
      `AUDIT RECORDS DROPPED: ${this.#droppedUnreported} records were not written to ${this.#options.name}`,
    );
    this.#droppedUnreported = 0;
  }
}

// ---------------------------------------------------------------------------------------------------
// A sink on a commit queue

export interface QueuedSinkOptions {
  /** Names the sink in logs, errors and health. */
  readonly name: string;
  readonly durability: AuditDurability;
  readonly flushIntervalMs: number;
  readonly maxBatch: number;
  readonly maxPending: number;
  readonly logger: Logger;
}

/**
 * The part of an AuditSink that is the same whatever the records go to: accepting them onto a
 * CommitQueue, flushing, closing (the queue first, then what it commits to) and reporting health.
 * Both sinks (JSONL file, PostgreSQL) extend it, so that they keep the same promises in the same way;
 * each says only how a record is queued, how a batch is committed and what is released at the end.
 */
export abstract class QueuedSink<T> implements AuditSink {
  readonly name: string;
  readonly #durability: AuditDurability;
  readonly #queue: CommitQueue<T>;
  #closing: Promise<void> | undefined;

  protected constructor(options: QueuedSinkOptions) {
    this.name = options.name;
    this.#durability = options.durability;
    this.#queue = new CommitQueue<T>({
      name: options.name,
      durability: options.durability,
      // Called only once records arrive, after the subclass's constructor has run.
      commit: (items) => this.commit(items),
      flushIntervalMs: options.flushIntervalMs,
      maxBatch: options.maxBatch,
      maxPending: options.maxPending,
      logger: options.logger,
    });
  }

  /** What the queue holds for a record; taken at once, as the caller may reuse its objects. */
  protected abstract queued(record: AuditRecord): T;
  /** Makes a batch durable (see CommitQueueOptions.commit). */
  protected abstract commit(items: readonly T[]): Promise<void>;
  /** Releases the file or the pool, once the queue has closed. */
  protected abstract release(): Promise<void>;

  write(record: AuditRecord): Promise<void> {
    return this.#queue.add(this.queued(record));
  }

  flush(): Promise<void> {
    return this.#queue.flush();
  }

  close(): Promise<void> {
    this.#closing ??= (async () => {
      await this.#queue.close();
      await this.release();
    })();
    return this.#closing;
  }

  health(): SinkHealth {
    return { name: this.name, durability: this.#durability, ...this.#queue.health() };
  }
}
