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

/** Throws a RangeError unless `bucket` and `n` describe a take that can be answered. */
export function checkTake(bucket: BucketSpec, n: number): void {
  const { capacity, refillPerSec } = bucket;
  if (!(capacity > 0 && Number.isFinite(capacity))) {
    throw new RangeError(`takeTokens: capacity must be a positive number, got ${capacity}`);
  }
  if (!(refillPerSec >= 0 && Number.isFinite(refillPerSec))) {
    throw new RangeError(`takeTokens: refillPerSec must be a finite number >= 0, got ${refillPerSec}`);
  }
  if (!(n >= 0 && Number.isFinite(n))) throw new RangeError(`takeTokens: n must be >= 0, got ${n}`);
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
