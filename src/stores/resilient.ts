/**
 * A shared store (Redis) with the replica's own memory behind it, so that a Redis outage is a
 * decision per use instead of a gateway outage:
 *
 * - "fail-open": the operation is served by local memory. Entries and locks become per replica, and
 *   so do rate limits (each replica allows the full limit). Pub/sub reaches this replica only.
 * - "fail-closed": the operation rejects with a `store_unavailable` GatewayError that says so.
 *
 * Only `store_unavailable` failures count as an outage; anything else (a nonsense bucket, an abort)
 * reaches the caller unchanged.
 *
 * Recovery is automatic: the Redis store reconnects by itself, and when it reports healthy again the
 * local entries and buckets are dropped (they may be older than what other replicas wrote meanwhile)
 * and the invalidations and deletes made during the outage are replayed to Redis, in both modes, so
 * that an entry a write invalidated while Redis was away is not served once it is back.
 */
import { EventEmitter } from "node:events";
import { describeError, GatewayError } from "../core/errors.ts";
import type {
  HealthResult,
  MaybePromise,
  Store,
  StoreLock,
  StoreMessageHandler,
  Unsubscribe,
} from "../core/types.ts";
import { DEFAULT_STORE_ERROR_MODE, type StoreErrorMode, type StoreUse } from "./config.ts";
import type { BucketSpec, TakeOptions, TakeResult } from "./contract.ts";
import type { StoreEventMap } from "./events.ts";
import { createMemoryStore, type MemoryStore } from "./memory.ts";

export const STORE_USES: readonly StoreUse[] = Object.freeze(["entries", "rateLimits", "locks", "pubsub"]);

/** Per-use modes from the config's `onStoreError`: one for all, or one per use (default: the config's). */
export function storeErrorModes(
  onStoreError: StoreErrorMode | Partial<Record<StoreUse, StoreErrorMode>> | undefined,
): Record<StoreUse, StoreErrorMode> {
  const modes = {} as Record<StoreUse, StoreErrorMode>;
  for (const use of STORE_USES) {
    modes[use] =
      typeof onStoreError === "string" ? onStoreError : (onStoreError?.[use] ?? DEFAULT_STORE_ERROR_MODE);
  }
  return modes;
}

/** What the wrapper needs of the shared store: the contract, plus its events. */
export interface PrimaryStore extends Store {
  /** Resolves once connected; rejects when the first attempt fails or times out. */
  ready?(): Promise<void>;
  on<K extends keyof StoreEventMap>(event: K, listener: (...args: StoreEventMap[K]) => void): unknown;
  off<K extends keyof StoreEventMap>(event: K, listener: (...args: StoreEventMap[K]) => void): unknown;
}

export interface ResilientStoreOptions {
  readonly primary: PrimaryStore;
  /** One mode for every use, or one per use. Default: DEFAULT_STORE_ERROR_MODE (stores/config.ts). */
  readonly onStoreError?: StoreErrorMode | Partial<Record<StoreUse, StoreErrorMode>>;
  /**
   * Makes the local memory store for entries and buckets; called again for a fresh one each time the
   * primary recovers. Default `createMemoryStore()`. (Locks and local pub/sub live in a store of their
   * own, whose handler errors are reported like the primary's: `listenerError`.)
   */
  readonly local?: () => MemoryStore;
  /**
   * Most invalidated tags and deleted keys remembered during an outage, to replay on recovery; beyond
   * that, entries they should have dropped stay until their TTL (reported in `health().data`).
   * Default 10 000.
   */
  readonly maxPendingInvalidations?: number;
}

export class ResilientStore extends EventEmitter<StoreEventMap> implements Store {
  readonly shared = true;
  readonly primary: PrimaryStore;
  readonly modes: Readonly<Record<StoreUse, StoreErrorMode>>;
  readonly #makeLocal: () => MemoryStore;
  readonly #maxPending: number;
  #local: MemoryStore;
  // Locks and local subscriptions outlive an outage (a lock taken locally is released locally), so
  // they are not in #local, which is replaced on every recovery.
  readonly #coordination: MemoryStore;
  readonly #pendingTags = new Set<string>();
  readonly #pendingDeletes = new Set<string>();
  #droppedInvalidations = 0;
  #fallbacks = 0;
  #replaying: Promise<void> | undefined;
  #closed = false;
  readonly #onState = (health: HealthResult) => {
    if (health.status === "healthy") {
      this.#local = this.#makeLocal();
      void this.replayPending();
    }
    this.emit("state", this.health());
  };
  readonly #onSkipped = (event: StoreEventMap["skipped"][0]) => this.emit("skipped", event);
  readonly #onListenerError = (event: StoreEventMap["listenerError"][0]) => {
    if (this.listenerCount("listenerError") > 0) this.emit("listenerError", event);
    else {
      process.emitWarning(
        `A store message handler for channel "${event.channel}" threw: ${describeError(event.error)}`,
        { code: "SWITCHBOARD_STORE_LISTENER" },
      );
    }
  };

  constructor(options: ResilientStoreOptions) {
    super();
    this.primary = options.primary;
    this.modes = Object.freeze(storeErrorModes(options.onStoreError));
    this.#makeLocal = options.local ?? (() => createMemoryStore());
    this.#maxPending = options.maxPendingInvalidations ?? 10_000;
    this.#local = this.#makeLocal();
    // Holds no entries or buckets: the smallest bounds keep it cheap.
    this.#coordination = createMemoryStore({
      maxEntries: 1,
      maxBuckets: 1,
      onListenerError: (event) => this.#onListenerError(event),
    });
    this.primary.on("state", this.#onState);
    this.primary.on("skipped", this.#onSkipped);
    this.primary.on("listenerError", this.#onListenerError);
  }

  get(key: string): Promise<string | undefined> {
    return this.#use(
      "entries",
      "get",
      () => this.primary.get(key),
      () => this.#local.get(key),
    );
  }

  set(key: string, value: string, opts?: { ttlMs?: number; tags?: readonly string[] }): Promise<void> {
    return this.#use(
      "entries",
      "set",
      () => this.primary.set(key, value, opts),
      () => this.#local.set(key, value, opts),
    );
  }

  delete(key: string): Promise<boolean> {
    return this.#use(
      "entries",
      "delete",
      () => this.primary.delete(key),
      () => this.#local.delete(key),
      () => this.#remember(this.#pendingDeletes, key),
    );
  }

  invalidateTag(tag: string): Promise<number> {
    return this.#use(
      "entries",
      "invalidateTag",
      () => this.primary.invalidateTag(tag),
      () => this.#local.invalidateTag(tag),
      () => this.#remember(this.#pendingTags, tag),
    );
  }

  takeTokens(key: string, bucket: BucketSpec, n?: number, options?: TakeOptions): Promise<TakeResult> {
    return this.#use(
      "rateLimits",
      "takeTokens",
      () => this.primary.takeTokens(key, bucket, n, options),
      () => this.#local.takeTokens(key, bucket, n, options),
    );
  }

  returnTokens(key: string, bucket: BucketSpec, n: number, dueInMs: number): Promise<void> {
    return this.#use(
      "rateLimits",
      "returnTokens",
      () => this.primary.returnTokens(key, bucket, n, dueInMs),
      () => this.#local.returnTokens(key, bucket, n, dueInMs),
    );
  }

  lock(key: string, ttlMs: number): Promise<StoreLock | undefined> {
    return this.#use(
      "locks",
      "lock",
      () => this.primary.lock(key, ttlMs),
      () => this.#coordination.lock(key, ttlMs),
    );
  }

  waitForUnlock(key: string, timeoutMs: number, signal?: AbortSignal): Promise<boolean> {
    return this.#use(
      "locks",
      "waitForUnlock",
      () => this.primary.waitForUnlock(key, timeoutMs, signal),
      () => this.#coordination.waitForUnlock(key, timeoutMs, signal),
    );
  }

  publish(channel: string, message: string): Promise<void> {
    return this.#use(
      "pubsub",
      "publish",
      () => this.primary.publish(channel, message),
      () => this.#coordination.publish(channel, message),
    );
  }

  /** Subscribes on both sides: messages come through Redis, or locally while publishing fails open. */
  async subscribe(channel: string, handler: StoreMessageHandler): Promise<Unsubscribe> {
    this.#open();
    const remote = await this.primary.subscribe(channel, handler);
    const local = this.#coordination.subscribe(channel, handler);
    return async () => {
      await Promise.all([remote(), local()]);
    };
  }

  /**
   * Waits for the shared store's first connection (at most its connect timeout) and returns the
   * health then. Never rejects: an unreachable store is reported as degraded and keeps reconnecting.
   */
  async connect(): Promise<HealthResult> {
    try {
      await this.primary.ready?.();
    } catch {
      // Reported by health() and the state event.
    }
    return this.health();
  }

  health(): HealthResult {
    const primary = this.primary.health();
    const data = {
      ...primary.data,
      onStoreError: this.modes,
      fallbacks: this.#fallbacks,
      pendingInvalidations: this.#pendingTags.size + this.#pendingDeletes.size,
      droppedInvalidations: this.#droppedInvalidations,
    };
    if (this.#closed || primary.status === "healthy") return { ...primary, data };
    const open = STORE_USES.filter((use) => this.modes[use] === "fail-open");
    const closed = STORE_USES.filter((use) => this.modes[use] === "fail-closed");
    const meanwhile = [
      open.length > 0 ? `${open.join(", ")} use this replica's own memory (fail-open)` : undefined,
      closed.length > 0 ? `${closed.join(", ")} fail with store_unavailable (fail-closed)` : undefined,
    ].filter(Boolean);
    return {
      status: "degraded",
      detail: `${primary.detail ?? "The shared store is unavailable."} Meanwhile ${meanwhile.join("; ")}.`,
      data,
    };
  }

  /**
   * Sends the invalidations and deletes made while the primary was unavailable to it now. Runs by
   * itself on recovery (and after any successful operation while some are pending); exposed so that
   * callers and tests can await it. Never rejects: what still fails stays pending.
   */
  replayPending(): Promise<void> {
    if (!this.#replaying) {
      // Reset in a callback, never synchronously inside #replay: with nothing pending, #replay
      // finishes before this assignment, which would then stick for ever.
      this.#replaying = this.#replay().finally(() => {
        this.#replaying = undefined;
      });
    }
    return this.#replaying;
  }

  async #replay(): Promise<void> {
    try {
      for (const tag of [...this.#pendingTags]) {
        await this.primary.invalidateTag(tag);
        this.#pendingTags.delete(tag);
      }
      for (const key of [...this.#pendingDeletes]) {
        await this.primary.delete(key);
        this.#pendingDeletes.delete(key);
      }
    } catch {
      // Still unavailable: the rest is replayed on the next recovery.
    }
  }

  async close(): Promise<void> {
    if (this.#closed) return;
    this.#closed = true;
    this.primary.off("state", this.#onState);
    this.primary.off("skipped", this.#onSkipped);
    this.primary.off("listenerError", this.#onListenerError);
    await this.primary.close();
    this.#local.close();
    this.#coordination.close();
  }

  async #use<T>(
    use: StoreUse,
    op: string,
    remote: () => MaybePromise<T>,
    local: () => MaybePromise<T>,
    onOutage?: () => void,
  ): Promise<T> {
    this.#open();
    let result: T;
    try {
      result = await remote();
    } catch (error) {
      if (!(error instanceof GatewayError && error.code === "store_unavailable") || this.#closed) throw error;
      onOutage?.();
      if (this.modes[use] === "fail-closed") {
        throw new GatewayError(
          "store_unavailable",
          `The shared store is unavailable, so ${op} was refused: store.onStoreError is "fail-closed" for ` +
            `${use}. ${error.message} To keep serving from this replica's memory during outages, set ` +
            `store.onStoreError.${use} to "fail-open".`,
          { cause: error, data: { ...error.data, use, op, mode: "fail-closed" } },
        );
      }
      this.#fallbacks++;
      this.emit("fallback", { use, op, reason: error.message });
      return await local();
    }
    if (!this.#replaying && this.#pendingTags.size + this.#pendingDeletes.size > 0) void this.replayPending();
    return result;
  }

  #remember(pending: Set<string>, item: string): void {
    if (pending.has(item)) return;
    if (this.#pendingTags.size + this.#pendingDeletes.size >= this.#maxPending) {
      this.#droppedInvalidations++;
      return;
    }
    pending.add(item);
  }

  #open(): void {
    if (this.#closed) throw new GatewayError("store_unavailable", "The store is closed");
  }
}
