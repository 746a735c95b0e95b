/**
 * The default store: in-process, bounded, zero services. Entries live in an LRU (lru-cache) bounded
 * by count and by approximate bytes, with per-entry TTLs; a tag → keys index makes `invalidateTag`
 * touch only the tagged entries, and lru-cache's `dispose` hook keeps that index exact whenever an
 * entry leaves for any reason (eviction, expiry, delete, overwrite).
 *
 * Token buckets live in a second LRU. A bucket is dropped when it would be full again, so dropping
 * it (by TTL) loses nothing; only eviction under `maxBuckets` pressure can forget a partly drained
 * bucket, which errs towards letting a call through.
 */
import { LRUCache } from "lru-cache";
import { GatewayError } from "../core/errors.ts";
import type { Store } from "../core/types.ts";

export interface MemoryStoreOptions {
  /** Most entries kept; the least recently used go first. Default 10 000. */
  readonly maxEntries?: number;
  /** Most bytes kept, counted as UTF-16 (2 bytes a character) of key, value and tags. Default 64 MiB. */
  readonly maxBytes?: number;
  /** Most token buckets kept. Default 100 000. */
  readonly maxBuckets?: number;
  /** The clock, in ms. Default `Date.now`; tests inject a fake one. */
  readonly now?: () => number;
}

export interface BucketSpec {
  readonly capacity: number;
  readonly refillPerSec: number;
}

export interface TakeResult {
  readonly ok: boolean;
  /**
   * 0 when ok; otherwise the exact wait until `n` tokens will be there, rounded up to a whole ms.
   * `Number.POSITIVE_INFINITY` when they never will be (`refillPerSec` is 0, or `n` > `capacity`).
   */
  readonly retryAfterMs: number;
  /** Whole tokens left after this call. */
  readonly remaining: number;
}

interface Entry {
  readonly value: string;
  readonly tags: readonly string[];
}

interface Bucket {
  tokens: number;
  at: number;
}

const DEFAULT_MAX_ENTRIES = 10_000;
const DEFAULT_MAX_BYTES = 64 * 1024 * 1024;
const DEFAULT_MAX_BUCKETS = 100_000;
// Float sums of fractional refills can land a hair under a whole token at exactly the instant the
// computed retryAfterMs said it would be there; this tolerance keeps "wait retryAfterMs, then take"
// always succeeding without letting any meaningful fraction through.
const EPSILON = 1e-9;

export class MemoryStore implements Store {
  readonly #entries: LRUCache<string, Entry>;
  readonly #buckets: LRUCache<string, Bucket>;
  readonly #tags = new Map<string, Set<string>>();
  readonly #now: () => number;
  #closed = false;

  constructor(options: MemoryStoreOptions = {}) {
    this.#now = options.now ?? Date.now;
    // lru-cache treats a start time of 0 as "no TTL", so a fake clock that starts at 0 would make
    // entries immortal; shifting by 1 ms keeps every timestamp positive and differences unchanged.
    const perf = { now: () => this.#now() + 1 };
    this.#entries = new LRUCache<string, Entry>({
      max: positiveInt(options.maxEntries ?? DEFAULT_MAX_ENTRIES, "maxEntries"),
      maxSize: positiveInt(options.maxBytes ?? DEFAULT_MAX_BYTES, "maxBytes"),
      sizeCalculation: (entry, key) => entrySize(key, entry),
      // 0: read the clock on every check; the default caches it for 1 ms behind a timer, which a
      // fake clock (and fake timers) would defeat.
      ttlResolution: 0,
      perf,
      // Synchronous dispose (not disposeAfter): on overwrite the old entry's tags are removed before
      // `set` returns, so the new entry's tags, added after, are never removed by mistake.
      dispose: (entry, key) => this.#untag(key, entry.tags),
    });
    this.#buckets = new LRUCache<string, Bucket>({
      max: positiveInt(options.maxBuckets ?? DEFAULT_MAX_BUCKETS, "maxBuckets"),
      ttlResolution: 0,
      perf,
    });
  }

  get(key: string): string | undefined {
    this.#open();
    return this.#entries.get(key)?.value;
  }

  set(key: string, value: string, opts: { ttlMs?: number; tags?: readonly string[] } = {}): void {
    this.#open();
    const ttlMs = opts.ttlMs;
    if (ttlMs !== undefined && !(ttlMs > 0 && Number.isFinite(ttlMs))) {
      throw new RangeError(`MemoryStore.set: ttlMs must be a positive finite number, got ${ttlMs}`);
    }
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

  takeTokens(key: string, bucket: BucketSpec, n = 1): TakeResult {
    this.#open();
    const { capacity, refillPerSec } = bucket;
    if (!(capacity > 0 && Number.isFinite(capacity))) {
      throw new RangeError(`takeTokens: capacity must be a positive number, got ${capacity}`);
    }
    if (!(refillPerSec >= 0 && Number.isFinite(refillPerSec))) {
      throw new RangeError(`takeTokens: refillPerSec must be a finite number >= 0, got ${refillPerSec}`);
    }
    if (!(n >= 0 && Number.isFinite(n))) throw new RangeError(`takeTokens: n must be >= 0, got ${n}`);

    const now = this.#now();
    const state = this.#buckets.get(key);
    let tokens = capacity;
    if (state) {
      const elapsedMs = Math.max(0, now - state.at);
      tokens = Math.min(capacity, state.tokens + (elapsedMs * refillPerSec) / 1000);
    }

    let ok = false;
    let retryAfterMs = 0;
    if (tokens + EPSILON >= n) {
      ok = true;
      tokens = Math.max(0, tokens - n);
    } else if (n > capacity || refillPerSec === 0) {
      retryAfterMs = Number.POSITIVE_INFINITY;
    } else {
      retryAfterMs = Math.ceil(((n - tokens) / refillPerSec) * 1000);
    }

    if (tokens + EPSILON >= capacity) {
      // A full bucket is the same as no bucket: nothing to remember.
      this.#buckets.delete(key);
    } else {
      const untilFullMs = refillPerSec > 0 ? Math.ceil(((capacity - tokens) / refillPerSec) * 1000) : 0;
      this.#buckets.set(key, { tokens, at: now }, { ttl: untilFullMs });
    }
    return { ok, retryAfterMs, remaining: Math.floor(tokens + EPSILON) };
  }

  close(): void {
    if (this.#closed) return;
    this.#closed = true;
    this.#entries.clear();
    this.#buckets.clear();
    this.#tags.clear();
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
