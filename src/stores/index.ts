/**
 * Stores: the memory store (the default: in-process, zero services) and the Redis store (shared by
 * every replica of a gateway behind a load balancer), chosen by the config's `store` block.
 *
 * Besides the `Store` contract (entries, tags, token buckets), both stores implement
 * `CoordinatedStore`, what replicas need to act as one:
 *
 * - `lock` / `waitForUnlock`: single-flight across replicas. A replica that misses the cache takes a
 *   short lock on the key; the others wait for its release instead of calling the backend too. A
 *   release is pushed to every waiter on every replica (Redis: PUBLISH on the store's own channel,
 *   in the same script as the owner-checked DEL), so nobody polls. Waiters first subscribe, then
 *   check whether the lock is still held, so a release in between is never missed. A lock that
 *   expires (its holder crashed) wakes no one: waiters wake at their own timeout, so give them one
 *   close to the lock's TTL.
 * - `publish` / `subscribe`: messages to every replica (the publisher's own subscribers included,
 *   flagged `fromSelf`), for breaker state and `list_changed`. Delivery is at most once: a replica
 *   whose connection was down misses what was sent meanwhile, so shared state that must survive that
 *   also goes into an entry (`set` with a TTL), which a replica re-reads when it reconnects (the
 *   `state` event of the Redis store).
 *
 * On the memory store these act within the process, so policies keep one code path whatever the
 * store.
 */
import { z } from "zod";
import { GatewayError } from "../core/errors.ts";
import type { HealthResult, MaybePromise, Store } from "../core/types.ts";
import { createMemoryStore, type MemoryStore } from "./memory.ts";
import { RedisStore } from "./redis.ts";
import { ResilientStore } from "./resilient.ts";

export interface StoreLock {
  /**
   * Frees the lock if this holder still owns it (a lock that expired and was taken by another is left
   * alone) and wakes its waiters. Idempotent, and never rejects: a release that cannot reach the store
   * leaves the lock to expire by its TTL.
   */
  release(): Promise<void>;
}

export interface StoreMessageInfo {
  /** True when this very store instance published the message. */
  readonly fromSelf: boolean;
}

/** Called for each message on a channel. A handler that throws is reported, never crashes the store. */
export type StoreMessageHandler = (message: string, info: StoreMessageInfo) => void;

/** Stops one subscription. Idempotent, never rejects. */
export type Unsubscribe = () => Promise<void>;

/** The `Store` contract plus the coordination that lets replicas act as one (see the top of this file). */
export interface CoordinatedStore extends Store {
  /**
   * Takes the lock named `key` for `ttlMs` if no one holds it; undefined if someone does. Lock names
   * are their own namespace: `lock("k")` and `set("k")` do not touch each other.
   */
  lock(key: string, ttlMs: number): MaybePromise<StoreLock | undefined>;
  /**
   * Resolves true as soon as the lock named `key` is not held (at once if it is not held now), false
   * after `timeoutMs`; rejects with the signal's reason when `signal` aborts.
   */
  waitForUnlock(key: string, timeoutMs: number, signal?: AbortSignal): Promise<boolean>;
  /** Sends `message` to every subscriber of `channel` on every replica, this one included. */
  publish(channel: string, message: string): MaybePromise<void>;
  /** Calls `handler` for each message on `channel` until the returned function is called. */
  subscribe(channel: string, handler: StoreMessageHandler): MaybePromise<Unsubscribe>;
  /** Whether the store works right now, and if not, why and what it does about it. */
  health(): HealthResult;
}

/** An entry that was not stored. */
export interface StoreSkipEvent {
  readonly key: string;
  readonly reason: "value_too_large";
  readonly bytes: number;
  readonly maxValueBytes: number;
}

export interface ListenerErrorEvent {
  readonly channel: string;
  readonly error: unknown;
}

/** A store that fails open for one use, serving that use from the replica's own memory. */
export interface StoreFallbackEvent {
  readonly use: StoreUse;
  readonly op: string;
  readonly reason: string;
}

/**
 * Events of the Redis store and of the resilient wrapper (the memory store has none). There is no
 * "error" event on purpose: Node throws an "error" event that nobody listens to.
 */
export interface StoreEventMap {
  /** The store's health changed (e.g. Redis went away, or came back). */
  state: [HealthResult];
  /** A value was not stored (and any older value under its key was dropped). */
  skipped: [StoreSkipEvent];
  /** A message handler threw. */
  listenerError: [ListenerErrorEvent];
  /** Resilient store only: one operation was served by local memory (fail-open). */
  fallback: [StoreFallbackEvent];
}

/** The uses of a store, each with its own `onStoreError` mode (see resilient.ts). */
export type StoreUse = "entries" | "rateLimits" | "locks" | "pubsub";
export type StoreErrorMode = "fail-open" | "fail-closed";

const positiveInt = () => z.number().int().positive();
const mode = z.enum(["fail-open", "fail-closed"]);

const memoryOptions = {
  /** Most entries kept; the least recently used go first. Default 10 000. */
  maxEntries: positiveInt().default(10_000),
  /** Most bytes of entries kept (UTF-16 of key, value and tags). Default 67 108 864 (64 MiB). */
  maxBytes: positiveInt().default(64 * 1024 * 1024),
  /** Most rate-limit buckets kept. Default 100 000. */
  maxBuckets: positiveInt().default(100_000),
};

export const memoryStoreConfigSchema = z.strictObject({
  type: z.literal("memory"),
  ...memoryOptions,
});

const redisUrl = z.string().refine(
  (value) => {
    if (!URL.canParse(value)) return false;
    const { protocol } = new URL(value);
    return protocol === "redis:" || protocol === "rediss:";
  },
  {
    error:
      "must be a redis:// or rediss:// URL, e.g. redis://127.0.0.1:6379 or rediss://user:pass@host:6380/0",
  },
);

export const redisStoreConfigSchema = z.strictObject({
  type: z.literal("redis"),
  /** Where Redis is: redis://[user:password@]host[:port][/db], rediss:// for TLS. Required. */
  url: redisUrl,
  /**
   * Prepended to every key and channel, so that several gateways (or other apps) can share one Redis;
   * gateways with the same prefix share their state. On Redis Cluster include a hash tag, e.g.
   * "{switchboard}:", so that every key is in one slot. Default "switchboard:".
   */
  keyPrefix: z.string().min(1).default("switchboard:"),
  /**
   * Largest value stored, in UTF-8 bytes; a larger one is not stored (any older value under its key
   * is dropped) and a `skipped` event reports it. Keep it at least the cache's `maxEntryBytes`.
   * Default 1 048 576 (1 MiB).
   */
  maxValueBytes: positiveInt().default(1_048_576),
  /** How long a connection attempt may take. Default 2 000 ms. */
  connectTimeoutMs: positiveInt().default(2_000),
  /**
   * How long a command may take before it fails (and the connection is deemed dead and reconnected).
   * Default 1 000 ms.
   */
  commandTimeoutMs: positiveInt().default(1_000),
  /** Reconnect backoff: doubles from `initialDelayMs` up to `maxDelayMs`, with jitter, for ever. */
  reconnect: z
    .strictObject({
      /** Default 50 ms. */
      initialDelayMs: positiveInt().default(50),
      /** Default 2 000 ms. */
      maxDelayMs: positiveInt().default(2_000),
    })
    .refine((r) => r.initialDelayMs <= r.maxDelayMs, {
      error: "initialDelayMs must not exceed maxDelayMs",
    })
    .prefault({}),
  /**
   * What a use of the store does while Redis is unavailable: "fail-open" serves it from this
   * replica's own memory (limits become per replica, the cache and locks local), "fail-closed" fails
   * it with a store_unavailable error. One mode for all uses, or one per use (entries: the cache and
   * shared state; rateLimits; locks: cross-replica single-flight; pubsub). Default "fail-open" for
   * every use.
   */
  onStoreError: z
    .union([
      mode,
      z.strictObject({
        entries: mode.default("fail-open"),
        rateLimits: mode.default("fail-open"),
        locks: mode.default("fail-open"),
        pubsub: mode.default("fail-open"),
      }),
    ])
    .default("fail-open"),
  /** Bounds of the local memory used while failing open. Defaults as for the memory store. */
  local: z.strictObject(memoryOptions).prefault({}),
});

/** The config's `store` block. Default `{ type: "memory" }`. */
export const storeConfigSchema = z
  .discriminatedUnion("type", [memoryStoreConfigSchema, redisStoreConfigSchema])
  .prefault({ type: "memory" });

export type StoreConfigInput = z.input<typeof storeConfigSchema>;
export type StoreConfig = z.output<typeof storeConfigSchema>;

export interface CreateStoreDeps {
  /** Where a message handler's exception goes. Default: a process warning (stderr). */
  readonly onListenerError?: (event: ListenerErrorEvent) => void;
}

/**
 * The store the config asks for. A Redis store comes wrapped in a ResilientStore with local memory
 * behind it; this waits for the first connection (at most `connectTimeoutMs`), and when Redis cannot
 * be reached it still returns: the store starts degraded (see `health()` and the `state` event) and
 * recovers by itself once Redis answers.
 */
export async function createStore(
  config: StoreConfigInput = { type: "memory" },
  deps: CreateStoreDeps = {},
): Promise<MemoryStore | ResilientStore> {
  const parsed = storeConfigSchema.safeParse(config);
  if (!parsed.success) {
    throw new GatewayError(
      "config_invalid",
      `The store config is invalid: ${z.prettifyError(parsed.error)}. Fix the \`store\` block of the config.`,
    );
  }
  const options = parsed.data;
  const { onListenerError } = deps;
  if (options.type === "memory") {
    const { maxEntries, maxBytes, maxBuckets } = options;
    return createMemoryStore({
      maxEntries,
      maxBytes,
      maxBuckets,
      ...(onListenerError ? { onListenerError } : {}),
    });
  }
  const primary = new RedisStore({
    url: options.url,
    keyPrefix: options.keyPrefix,
    maxValueBytes: options.maxValueBytes,
    connectTimeoutMs: options.connectTimeoutMs,
    commandTimeoutMs: options.commandTimeoutMs,
    reconnect: options.reconnect,
  });
  const store = new ResilientStore({
    primary,
    onStoreError: options.onStoreError,
    local: () => createMemoryStore(options.local),
  });
  if (onListenerError) store.on("listenerError", onListenerError);
  try {
    await primary.ready();
  } catch {
    // Reported by health() and the state event; the store recovers by itself when Redis answers.
  }
  return store;
}

export { createMemoryStore, MemoryStore } from "./memory.ts";
export { RedisStore, type RedisStoreOptions } from "./redis.ts";
export {
  type PrimaryStore,
  ResilientStore,
  type ResilientStoreOptions,
  STORE_USES,
  storeErrorModes,
} from "./resilient.ts";
