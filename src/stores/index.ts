/**
 * Stores: the memory store (the default: in-process, zero services) and the Redis store (shared by
 * every replica of a gateway behind a load balancer), chosen by the config's `store` block.
 *
 * Besides entries, tags and token buckets, the `Store` contract (core/types.ts) holds what replicas
 * need to act as one:
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
 * store; where they are only worth their cost across processes (the cache's single-flight lock),
 * policies skip them on a store that is not `shared`.
 */
import { z } from "zod";
import { GatewayError } from "../core/errors.ts";
import type { Store } from "../core/types.ts";
import { type StoreConfigInput, type StoreUse, storeConfigSchema } from "./config.ts";
import type { ListenerErrorEvent } from "./events.ts";
import { createMemoryStore, type MemoryStore } from "./memory.ts";
import { RedisStore } from "./redis.ts";
import { ResilientStore, STORE_USES } from "./resilient.ts";

export type {
  StoreLock,
  StoreMessageHandler,
  StoreMessageInfo,
  Unsubscribe,
} from "../core/types.ts";

/** The `Store` contract, named for what it adds over a cache: coordination between replicas. */
export type CoordinatedStore = Store;

export interface CreateStoreDeps {
  /** Where a message handler's exception goes. Default: a process warning (stderr). */
  readonly onListenerError?: (event: ListenerErrorEvent) => void;
}

/**
 * The store the config asks for, at once: a Redis store comes wrapped in a ResilientStore with local
 * memory behind it, and starts connecting in the background (await `connect()` on it, or use
 * `createStore`). Synchronous so that a gateway can own its store from construction on.
 */
export function openStore(
  config: StoreConfigInput = { type: "memory" },
  deps: CreateStoreDeps = {},
): MemoryStore | ResilientStore {
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
  return store;
}

/**
 * `openStore`, then waits for the first connection (at most `connectTimeoutMs`). When Redis cannot be
 * reached it still returns: the store starts degraded (see `health()` and the `state` event) and
 * recovers by itself once Redis answers.
 */
export async function createStore(
  config: StoreConfigInput = { type: "memory" },
  deps: CreateStoreDeps = {},
): Promise<MemoryStore | ResilientStore> {
  const store = openStore(config, deps);
  if (store instanceof ResilientStore) await store.connect();
  return store;
}

/** The uses of `store` that fail rather than fall back while it is unavailable (none for memory). */
export function failClosedUses(store: Store): StoreUse[] {
  if (!(store instanceof ResilientStore)) return [];
  return STORE_USES.filter((use) => store.modes[use] === "fail-closed");
}

export {
  DEFAULT_STORE_ERROR_MODE,
  MEMORY_STORE_DEFAULTS,
  memoryStoreConfigSchema,
  REDIS_STORE_DEFAULTS,
  redisStoreConfigSchema,
  type StoreConfig,
  type StoreConfigInput,
  type StoreErrorMode,
  type StoreUse,
  storeConfigSchema,
} from "./config.ts";
export type { ListenerErrorEvent, StoreEventMap, StoreFallbackEvent, StoreSkipEvent } from "./events.ts";
export { createMemoryStore, MemoryStore } from "./memory.ts";
export { RedisStore, type RedisStoreOptions } from "./redis.ts";
export {
  type PrimaryStore,
  ResilientStore,
  type ResilientStoreOptions,
  STORE_USES,
  storeErrorModes,
} from "./resilient.ts";
