/**
 * What the store implementations share beyond the `Store` interface (core/types.ts): the token
 * bucket's types, the checks each operation makes of its arguments (so that every store refuses the
 * same input in the same words), how a waiter parks until a lock is released, and where a message
 * handler's exception goes when nobody listens for it.
 */
import { describeError } from "../core/errors.ts";
import type { StoreMessageHandler } from "../core/types.ts";
import type { ListenerErrorEvent } from "./events.ts";

export interface BucketSpec {
  readonly capacity: number;
  readonly refillPerSec: number;
}

export interface TakeOptions {
  /**
   * Reserve the tokens when they will be there within this many ms (counting the tokens reserved
   * before), instead of refusing the take. Default: refuse whenever they are not there now.
   */
  readonly maxWaitMs?: number;
}

export interface TakeResult {
  /** True when the tokens were taken, or reserved (then `retryAfterMs` is the wait before use). */
  readonly ok: boolean;
  /**
   * When ok: 0 if the tokens were there, else the wait until the reserved tokens are, rounded up to a
   * whole ms. When refused: the exact wait until `n` tokens will be there behind every reservation
   * made so far, rounded up; `Number.POSITIVE_INFINITY` when they never will be (`refillPerSec` is 0,
   * or `n` > `capacity`).
   */
  readonly retryAfterMs: number;
  /** Whole tokens left after this call (0 while tokens are reserved ahead). */
  readonly remaining: number;
}

/**
 * The token bucket, as every store computes it (the memory store with these functions, the Redis
 * store with the same arithmetic in Lua, redis-scripts.ts). A bucket is its token count at a time;
 * it refills at `refillPerSec` up to `capacity`.
 *
 * Waiting in line: a take that may wait (`maxWaitMs`) and finds too few tokens reserves them, which
 * drives the count below zero: the bucket owes tokens, in the order they were reserved. Whoever comes
 * next finds the debt and waits behind it, so waiters are served first come, first served, and a take
 * whose turn would come later than its `maxWaitMs` is refused at once. A reservation given back
 * (`returnTokens`: its caller went away) pays the debt back, save the tokens that reservations made
 * after it already count on: those keep their turn, and the limit is never exceeded.
 */
export interface BucketState {
  /** Tokens now; negative while reservations are outstanding. */
  readonly tokens: number;
}

// Float sums of fractional refills can land a hair under a whole token at exactly the instant the
// computed retryAfterMs said it would be there; this tolerance keeps "wait retryAfterMs, then take"
// always succeeding without letting any meaningful fraction through.
export const BUCKET_EPSILON = 1e-9;

/** The tokens of a bucket last counted `tokens` at `at`, refilled until `now`. */
export function refilled(bucket: BucketSpec, tokens: number, at: number, now: number): number {
  const elapsedMs = Math.max(0, now - at);
  return Math.min(bucket.capacity, tokens + (elapsedMs * bucket.refillPerSec) / 1000);
}

/** One take from a bucket holding `tokens`: the result and the tokens left. */
export function take(
  bucket: BucketSpec,
  tokens: number,
  n: number,
  options: TakeOptions = {},
): TakeResult & BucketState {
  const { capacity, refillPerSec } = bucket;
  let left = tokens;
  let ok = false;
  let retryAfterMs = 0;
  if (n === 0) {
    // Nothing to take, even while tokens are owed (a debt is left as it is).
    ok = true;
  } else if (tokens + BUCKET_EPSILON >= n) {
    ok = true;
    left = Math.max(0, tokens - n);
  } else if (n > capacity || refillPerSec === 0) {
    retryAfterMs = Number.POSITIVE_INFINITY;
  } else {
    retryAfterMs = Math.ceil(((n - tokens) / refillPerSec) * 1000);
    if (options.maxWaitMs !== undefined && retryAfterMs <= options.maxWaitMs) {
      ok = true;
      // The reservation owns every token until it is due: the wait was rounded up to a whole ms, and
      // the fraction refilled in that last part of a ms must not go to the next in line early.
      left = -(retryAfterMs * refillPerSec) / 1000;
    }
  }
  return { ok, retryAfterMs, remaining: Math.max(0, Math.floor(left + BUCKET_EPSILON)), tokens: left };
}

/**
 * The tokens of a bucket holding `tokens` after `n` tokens due in `dueInMs` are given back: the debt
 * that lies beyond them belongs to later reservations, which keep it.
 */
export function giveBack(bucket: BucketSpec, tokens: number, n: number, dueInMs: number): number {
  const claimedAfter = Math.max(0, -tokens - (Math.max(0, dueInMs) * bucket.refillPerSec) / 1000);
  const restored = Math.max(0, n - claimedAfter);
  return Math.min(bucket.capacity, tokens + restored);
}

/** When a bucket holding `tokens` at `now` is full again (`Infinity`: never). */
export function fullAt(bucket: BucketSpec, tokens: number, now: number): number {
  return bucket.refillPerSec > 0
    ? now + Math.ceil(((bucket.capacity - tokens) / bucket.refillPerSec) * 1000)
    : Number.POSITIVE_INFINITY;
}

/** Throws a RangeError unless `bucket` and `n` describe a take that can be answered. */
export function checkTake(bucket: BucketSpec, n: number, options: TakeOptions = {}): void {
  checkBucket("takeTokens", bucket);
  if (!(n >= 0 && Number.isFinite(n))) throw new RangeError(`takeTokens: n must be >= 0, got ${n}`);
  const { maxWaitMs } = options;
  if (maxWaitMs !== undefined && !(maxWaitMs >= 0 && Number.isFinite(maxWaitMs))) {
    throw new RangeError(`takeTokens: maxWaitMs must be a finite number >= 0, got ${maxWaitMs}`);
  }
}

/** Throws a RangeError unless `bucket`, `n` and `dueInMs` describe tokens that can be given back. */
export function checkReturn(bucket: BucketSpec, n: number, dueInMs: number): void {
  checkBucket("returnTokens", bucket);
  if (!(n >= 0 && Number.isFinite(n))) throw new RangeError(`returnTokens: n must be >= 0, got ${n}`);
  if (!Number.isFinite(dueInMs)) {
    throw new RangeError(`returnTokens: dueInMs must be a finite number, got ${dueInMs}`);
  }
}

function checkBucket(op: string, bucket: BucketSpec): void {
  const { capacity, refillPerSec } = bucket;
  if (!(capacity > 0 && Number.isFinite(capacity))) {
    throw new RangeError(`${op}: capacity must be a positive number, got ${capacity}`);
  }
  if (!(refillPerSec >= 0 && Number.isFinite(refillPerSec))) {
    throw new RangeError(`${op}: refillPerSec must be a finite number >= 0, got ${refillPerSec}`);
  }
}

/** Throws a RangeError unless `ttlMs` is a positive finite number; `op` names the call, e.g. "MemoryStore.set". */
export function checkTtl(op: string, ttlMs: number): void {
  if (!(ttlMs > 0 && Number.isFinite(ttlMs))) {
    throw new RangeError(`${op}: ttlMs must be a positive finite number, got ${ttlMs}`);
  }
}

/** Throws a RangeError unless `timeoutMs` is a finite number >= 0. */
export function checkTimeout(op: string, timeoutMs: number): void {
  if (!(timeoutMs >= 0 && Number.isFinite(timeoutMs))) {
    throw new RangeError(`${op}: timeoutMs must be a finite number >= 0, got ${timeoutMs}`);
  }
}

/**
 * Calls waiting for a lock's release, by lock name. Each waiter is parked until the lock is released
 * (true), its `timeoutMs` passes (false) or its signal aborts (rejects with the signal's reason), and
 * removes itself either way.
 */
export class UnlockWaiters {
  readonly #waiters = new Map<string, Set<(released: boolean) => void>>();

  wait(key: string, timeoutMs: number, signal: AbortSignal | undefined): Promise<boolean> {
    const waiters = this.#waiters;
    return new Promise<boolean>((resolve, reject) => {
      const finish = () => {
        clearTimeout(timer);
        signal?.removeEventListener("abort", onAbort);
        const set = waiters.get(key);
        set?.delete(wake);
        if (set?.size === 0) waiters.delete(key);
      };
      const wake = (released: boolean) => {
        finish();
        resolve(released);
      };
      const onAbort = () => {
        finish();
        reject(signal?.reason);
      };
      const timer = setTimeout(() => wake(false), timeoutMs);
      signal?.addEventListener("abort", onAbort, { once: true });
      let set = waiters.get(key);
      if (!set) {
        set = new Set();
        waiters.set(key, set);
      }
      set.add(wake);
    });
  }

  /** Wakes everyone waiting for `key`: the lock was released. */
  released(key: string): void {
    for (const wake of [...(this.#waiters.get(key) ?? [])]) wake(true);
  }

  /** Wakes every waiter with false: nothing will release a lock any more (the store closed). */
  abandonAll(): void {
    for (const waiters of [...this.#waiters.values()]) for (const wake of [...waiters]) wake(false);
    this.#waiters.clear();
  }

  /** The lock names waited on now. */
  keys(): string[] {
    return [...this.#waiters.keys()];
  }
}

/** One subscription: an object of its own, so that one handler subscribed twice is two subscriptions. */
export interface Subscription {
  readonly handler: StoreMessageHandler;
}

/** The message handlers subscribed in this process, by channel. */
export class ChannelHandlers {
  readonly #channels = new Map<string, Set<Subscription>>();

  add(channel: string, handler: StoreMessageHandler): Subscription {
    let subscriptions = this.#channels.get(channel);
    if (!subscriptions) {
      subscriptions = new Set();
      this.#channels.set(channel, subscriptions);
    }
    const subscription = { handler };
    subscriptions.add(subscription);
    return subscription;
  }

  /** Removes `subscription`; true when it was the channel's last (the channel is then forgotten). */
  remove(channel: string, subscription: Subscription): boolean {
    const current = this.#channels.get(channel);
    if (!current?.delete(subscription) || current.size > 0) return false;
    this.#channels.delete(channel);
    return true;
  }

  /** The channel's subscriptions now (a live set: one removed meanwhile is gone from it). */
  get(channel: string): ReadonlySet<Subscription> | undefined {
    return this.#channels.get(channel);
  }

  clear(): void {
    this.#channels.clear();
  }
}

/** A message handler threw and nobody listens for it: a process warning (stderr). */
export function warnListenerError({ channel, error }: ListenerErrorEvent): void {
  process.emitWarning(`A store message handler for channel "${channel}" threw: ${describeError(error)}`, {
    code: "SWITCHBOARD_STORE_LISTENER",
  });
}
