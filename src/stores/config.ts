/**
 * The config's `store` block: which store holds rate-limit buckets, cached results and the state
 * replicas share, and what each use does while a shared store is unavailable. Kept apart from the
 * stores themselves so that the config schema does not load them.
 */
import { z } from "zod";
import { durationMs, nonEmpty, positiveInt, redisUrl } from "../config/primitives.ts";

/** The uses of a store, each with its own `onStoreError` mode (see resilient.ts). */
export type StoreUse = "entries" | "rateLimits" | "locks" | "pubsub";
export type StoreErrorMode = "fail-open" | "fail-closed";

/** What every use of a store does while Redis is unavailable, unless `onStoreError` says otherwise. */
export const DEFAULT_STORE_ERROR_MODE: StoreErrorMode = "fail-open";

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

export const redisStoreConfigSchema = z.strictObject({
  type: z.literal("redis"),
  /** Where Redis is: redis://[user:password@]host[:port][/db], rediss:// for TLS. Required. */
  url: redisUrl("redis://127.0.0.1:6379 or rediss://user:pass@host:6380/0"),
  /**
   * Prepended to every key and channel, so that several gateways (or other apps) can share one Redis;
   * gateways with the same prefix share their state. On Redis Cluster include a hash tag, e.g.
   * "{switchboard}:", so that every key is in one slot. Default "switchboard:".
   */
  keyPrefix: nonEmpty().default("switchboard:"),
  /**
   * Largest value stored, in UTF-8 bytes; a larger one is not stored (any older value under its key
   * is dropped) and a `skipped` event reports it. Keep it at least the cache's `maxEntryBytes`.
   * Default 1 048 576 (1 MiB).
   */
  maxValueBytes: positiveInt().default(1_048_576),
  /** How long a connection attempt may take. Default 2 000 ms. */
  connectTimeoutMs: durationMs().default(2_000),
  /**
   * How long a command may take before it fails (and the connection is deemed dead and reconnected).
   * Default 1 000 ms.
   */
  commandTimeoutMs: durationMs().default(1_000),
  /** Reconnect backoff: doubles from `initialDelayMs` up to `maxDelayMs`, with jitter, for ever. */
  reconnect: z
    .strictObject({
      /** Default 50 ms. */
      initialDelayMs: durationMs().default(50),
      /** Default 2 000 ms. */
      maxDelayMs: durationMs().default(2_000),
    })
    .refine((r) => r.initialDelayMs <= r.maxDelayMs, {
      error: "initialDelayMs must not exceed maxDelayMs",
    })
    .prefault({}),
  /**
   * What a use of the store does while Redis is unavailable. "fail-open" serves it from this
   * replica's own memory: rate limits become per replica (each allows the full limit), the cache and
   * single-flight locks local, pub/sub local. "fail-closed" fails it with a store_unavailable error,
   * and /readyz answers 503 while Redis is away. What a failure means for a call, per use:
   * - `rateLimits`: the call is refused with store_unavailable (a limit that cannot be checked is
   *   not waived);
   * - `entries` (cached results, shared breaker state): the cache is bypassed and the call goes to
   *   the backend, uncached;
   * - `locks` (cross-replica single flight): the call goes to the backend without waiting for others;
   * - `pubsub` (cross-replica cache invalidation of reads in flight, breaker transitions,
   *   list_changed): the message is not sent.
   * One mode for all uses, or one per use. Default "fail-open" for every use.
   */
  onStoreError: z
    .union([
      mode,
      z.strictObject({
        entries: mode.default(DEFAULT_STORE_ERROR_MODE),
        rateLimits: mode.default(DEFAULT_STORE_ERROR_MODE),
        locks: mode.default(DEFAULT_STORE_ERROR_MODE),
        pubsub: mode.default(DEFAULT_STORE_ERROR_MODE),
      }),
    ])
    .default(DEFAULT_STORE_ERROR_MODE),
  /** Bounds of the local memory used while failing open. Defaults as for the memory store. */
  local: z.strictObject(memoryOptions).prefault({}),
});

/** The config's `store` block. Default `{ type: "memory" }`. */
export const storeConfigSchema = z
  .discriminatedUnion("type", [memoryStoreConfigSchema, redisStoreConfigSchema])
  .prefault({ type: "memory" });

/** The memory store's options as the schema fills them in: what `createMemoryStore()` uses. */
export const MEMORY_STORE_DEFAULTS = memoryStoreConfigSchema.omit({ type: true }).parse({});

/** The Redis store's options as the schema fills them in: what `new RedisStore({ url })` uses. */
export const REDIS_STORE_DEFAULTS = redisStoreConfigSchema.omit({ type: true, url: true }).parse({});

export type StoreConfigInput = z.input<typeof storeConfigSchema>;
export type StoreConfig = z.output<typeof storeConfigSchema>;
