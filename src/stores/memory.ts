/**
 * The default store: in-process, bounded, zero services. Entries live in an LRU (lru-cache) bounded
 * by count and by approximate bytes, with per-entry TTLs; a tag → keys index makes `invalidateTag`
 * touch only the tagged entries, and lru-cache's `dispose` hook keeps that index exact whenever an
 * entry leaves for any reason (eviction, expiry, delete, overwrite).
 *
 * Token buckets live in a second, simpler LRU (see BucketTable). A bucket is dropped when it would be
 * full again, so dropping it loses nothing; only eviction under `maxBuckets` pressure can forget a
 * partly drained bucket, which errs towards letting a call through.
 *
 * Locks and pub/sub (the coordination part of the Store contract, see stores/index.ts) act within this
 * process only, so that policies use one code path whether or not replicas share a Redis.
 */
import { randomUUID } from "node:crypto";
import { LRUCache } from "lru-cache";
import { GatewayError } from "../core/errors.ts";
import type { HealthResult, Store, StoreLock, StoreMessageHandler, Unsubscribe } from "../core/types.ts";
import { MEMORY_STORE_DEFAULTS } from "./config.ts";
import {
  BUCKET_EPSILON,
  type BucketSpec,
  ChannelHandlers,
  checkReturn,
  checkTake,
  checkTimeout,
  checkTtl,
  fullAt,
  giveBack,
  refilled,
  type TakeOptions,
  type TakeResult,
  take,
  UnlockWaiters,
  warnListenerError,
} from "./contract.ts";
import type { ListenerErrorEvent } from "./events.ts";

export interface MemoryStoreOptions {
  /** Most entries kept; the least recently used go first. Default: the config's (stores/config.ts). */
  readonly maxEntries?: number;
  /**
   * Most bytes kept, counted as UTF-16 (2 bytes a character) of key, value and tags. Default: the
   * config's (stores/config.ts).
   */
  readonly maxBytes?: number;
  /** Most token buckets kept. Default: the config's (stores/config.ts). */
  readonly maxBuckets?: number;
  /** The clock, in ms. Default `Date.now`; tests inject a fake one. */
  readonly now?: () => number;
  /** Where a message handler's exception goes. Default: a process warning (stderr). */
  readonly onListenerError?: (event: ListenerErrorEvent) => void;
}

interface Entry {
  readonly value: string;
  readonly tags: readonly string[];
}

interface Bucket {
  readonly tokens: number;
  /** When `tokens` was counted (store clock, ms). */
  readonly at: number;
  /** When the bucket would be full again and can be forgotten. */
  readonly fullAt: number;
}

/**
 * Token buckets by key, least recently written first (a Map keeps insertion order), bounded by
 * count. Not lru-cache, as the entries are: lru-cache wipes its whole preallocated table, O(max),
 * whenever its last entry leaves, and one rate-limited tool whose bucket fills up again between calls
 * (the common case for a quiet tool) would pay that on every call, about 0.5 ms at 100 000 buckets.
 */
class BucketTable {
  readonly #map = new Map<string, Bucket>();
  readonly #max: number;

  constructor(max: number) {
    this.#max = max;
  }

  /** The bucket, unless it is full again by `now` (then it is forgotten). */
  get(key: string, now: number): Bucket | undefined {
    const bucket = this.#map.get(key);
    if (bucket !== undefined && now > bucket.fullAt) {
      this.#map.delete(key);
      return undefined;
    }
    return bucket;
  }

  set(key: string, bucket: Bucket): void {
    // Deleting first moves the key to the most recent end.
    this.#map.delete(key);
    this.#map.set(key, bucket);
    if (this.#map.size > this.#max) {
      const oldest = this.#map.keys().next().value;
      if (oldest !== undefined) this.#map.delete(oldest);
    }
  }

  delete(key: string): void {
    this.#map.delete(key);
  }

  clear(): void {
    this.#map.clear();
  }
}

// Locks are held for the length of one backend call, so even a busy gateway holds few at a time
// (and lru-cache allocates for its maximum up front).
const MAX_LOCKS = 10_000;

export class MemoryStore implements Store {
  readonly #entries: LRUCache<string, Entry>;
  readonly #buckets: BucketTable;
  readonly #tags = new Map<string, Set<string>>();
  readonly #now: () => number;
  // Lock name → owner token; the LRU's TTL (on the store's clock) is the lock's expiry.
  readonly #locks: LRUCache<string, string>;
  readonly #unlockWaiters = new UnlockWaiters();
  readonly #channels = new ChannelHandlers();
  readonly #onListenerError: (event: ListenerErrorEvent) => void;
  #closed = false;

  constructor(options: MemoryStoreOptions = {}) {
    this.#now = options.now ?? Date.now;
    // lru-cache treats a start time of 0 as "no TTL", so a fake clock that starts at 0 would make
    // entries immortal; shifting by 1 ms keeps every timestamp positive and differences unchanged.
    const perf = { now: () => this.#now() + 1 };
    this.#entries = new LRUCache<string, Entry>({
      max: positiveInt(options.maxEntries ?? MEMORY_STORE_DEFAULTS.maxEntries, "maxEntries"),
      maxSize: positiveInt(options.maxBytes ?? MEMORY_STORE_DEFAULTS.maxBytes, "maxBytes"),
      sizeCalculation: (entry, key) => entrySize(key, entry),
      // 0: read the clock on every check; the default caches it for 1 ms behind a timer, which a
      // fake clock (and fake timers) would defeat.
      ttlResolution: 0,
      perf,
      // Synchronous dispose (not disposeAfter): on overwrite the old entry's tags are removed before
      // `set` returns, so the new entry's tags, added after, are never removed by mistake.
      dispose: (entry, key) => this.#untag(key, entry.tags),
    });
    this.#buckets = new BucketTable(
      positiveInt(options.maxBuckets ?? MEMORY_STORE_DEFAULTS.maxBuckets, "maxBuckets"),
    );
    this.#locks = new LRUCache<string, string>({ max: MAX_LOCKS, ttlResolution: 0, perf });
    this.#onListenerError = options.onListenerError ?? warnListenerError;
  }

  get(key: string): string | undefined {
    this.#open();
    return this.#entries.get(key)?.value;
  }

  set(key: string, value: string, opts: { ttlMs?: number; tags?: readonly string[] } = {}): void {
    this.#open();
    const ttlMs = opts.ttlMs;
    if (ttlMs !== undefined) checkTtl("MemoryStore.set", ttlMs);
    const entry: Entry = { value, tags: [...new Set(opts.tags ?? [])] };
    this.#entries.set(key, entry, { ttl: ttlMs === undefined ? 0 : Math.ceil(ttlMs) });
    // An entry larger than maxBytes is refused by lru-cache (and any older value dropped): only index
    // what was actually stored.
    if (this.#entries.peek(key) !== entry) return;
    for (const tag of entry.tags) {
      let keys = this.#tags.get(tag);
      if (!keys) {
        keys = new Set();
        this.#tags.set(tag, keys);
      }
      keys.add(key);
    }
  }

  delete(key: string): boolean {
    this.#open();
    return this.#entries.delete(key);
  }

  invalidateTag(tag: string): number {
    this.#open();
    const keys = this.#tags.get(tag);
    if (!keys) return 0;
    let count = 0;
    // Copy: each delete runs dispose, which edits this very set.
    for (const key of [...keys]) {
      // Expired entries still waiting to be purged are not "there", so they do not count.
      const live = this.#entries.has(key);
      this.#entries.delete(key);
      if (live) count++;
    }
    this.#tags.delete(tag);
    return count;
  }

  takeTokens(key: string, bucket: BucketSpec, n = 1, options: TakeOptions = {}): TakeResult {
    this.#open();
    checkTake(bucket, n, options);
    const now = this.#now();
    const { tokens, ...result } = take(bucket, this.#tokens(key, bucket, now), n, options);
    this.#keep(key, bucket, tokens, now);
    return result;
  }

  returnTokens(key: string, bucket: BucketSpec, n: number, dueInMs: number): void {
    this.#open();
    checkReturn(bucket, n, dueInMs);
    const now = this.#now();
    this.#keep(key, bucket, giveBack(bucket, this.#tokens(key, bucket, now), n, dueInMs), now);
  }

  /** The tokens of a bucket now: a bucket not kept is full. */
  #tokens(key: string, bucket: BucketSpec, now: number): number {
    const state = this.#buckets.get(key, now);
    return state ? refilled(bucket, state.tokens, state.at, now) : bucket.capacity;
  }

  #keep(key: string, bucket: BucketSpec, tokens: number, now: number): void {
    if (tokens + BUCKET_EPSILON >= bucket.capacity) {
      // A full bucket is the same as no bucket: nothing to remember.
      this.#buckets.delete(key);
    } else {
      this.#buckets.set(key, { tokens, at: now, fullAt: fullAt(bucket, tokens, now) });
    }
  }

  /** In-process: exclusive among the users of this store, i.e. within one replica. */
  lock(key: string, ttlMs: number): StoreLock | undefined {
    this.#open();
    checkTtl("MemoryStore.lock", ttlMs);
    if (this.#locks.has(key)) return undefined;
    const token = randomUUID();
    this.#locks.set(key, token, { ttl: Math.ceil(ttlMs) });
    return {
      release: async () => {
        if (this.#closed || this.#locks.peek(key) !== token) return;
        this.#locks.delete(key);
        this.#unlockWaiters.released(key);
      },
    };
  }

  waitForUnlock(key: string, timeoutMs: number, signal?: AbortSignal): Promise<boolean> {
    this.#open();
    checkTimeout("MemoryStore.waitForUnlock", timeoutMs);
    signal?.throwIfAborted();
    if (!this.#locks.has(key)) return Promise.resolve(true);
    return this.#unlockWaiters.wait(key, timeoutMs, signal);
  }

  publish(channel: string, message: string): void {
    this.#open();
    const subscribers = this.#channels.get(channel);
    if (!subscribers) return;
    // Delivered after publish returns, as over Redis, so a handler never runs inside its publisher.
    for (const subscriber of [...subscribers]) {
      queueMicrotask(() => {
        if (!subscribers.has(subscriber)) return;
        try {
          subscriber.handler(message, { fromSelf: true });
        } catch (error) {
          this.#onListenerError({ channel, error });
        }
      });
    }
  }

  subscribe(channel: string, handler: StoreMessageHandler): Unsubscribe {
    this.#open();
    const subscription = this.#channels.add(channel, handler);
    return async () => {
      this.#channels.remove(channel, subscription);
    };
  }

  health(): HealthResult {
    return this.#closed
      ? { status: "unhealthy", detail: "The memory store is closed" }
      : { status: "healthy", detail: "in-process memory store" };
  }

  close(): void {
    if (this.#closed) return;
    this.#closed = true;
    this.#entries.clear();
    this.#buckets.clear();
    this.#tags.clear();
    this.#locks.clear();
    this.#channels.clear();
    // Nothing will release a lock any more: waiters learn at once that they waited in vain.
    this.#unlockWaiters.abandonAll();
  }

  /** Entries currently held (expired ones not yet purged included); for tests and metrics. */
  get size(): number {
    return this.#entries.size;
  }

  #untag(key: string, tags: readonly string[]): void {
    for (const tag of tags) {
      const keys = this.#tags.get(tag);
      if (!keys) continue;
      keys.delete(key);
      if (keys.size === 0) this.#tags.delete(tag);
    }
  }

  #open(): void {
    if (this.#closed) throw new GatewayError("store_unavailable", "The memory store is closed");
  }
}

export function createMemoryStore(options: MemoryStoreOptions = {}): MemoryStore {
  return new MemoryStore(options);
}

function entrySize(key: string, entry: Entry): number {
  let chars = key.length + entry.value.length;
  for (const tag of entry.tags) chars += tag.length;
  // A little per-entry overhead so that many tiny entries still count for something.
  return 2 * chars + 64;
}

function positiveInt(value: number, name: string): number {
  if (!Number.isInteger(value) || value < 1) {
    throw new RangeError(`MemoryStore: ${name} must be a positive integer, got ${value}`);
  }
  return value;
}
