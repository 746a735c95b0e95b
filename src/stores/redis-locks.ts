/**
 * Locks in Redis, for single-flight across replicas: `SET NX PX` with a random owner token, released
 * by a script that deletes the key only for its owner and publishes the release on the store's unlock
 * channel in the same step, so that waiters on every replica wake at once instead of polling.
 *
 * A lock whose release (or whose SET's reply) was lost to an outage is remembered as orphaned and
 * released by token once Redis is back, so that an identical call elsewhere does not wait out the
 * lock's whole TTL.
 */
import { randomUUID } from "node:crypto";
import type { GatewayError } from "../core/errors.ts";
import type { StoreLock } from "../core/types.ts";
import { UnlockWaiters } from "./contract.ts";
import type { RedisClient } from "./redis-connection.ts";

export interface RedisLocksDeps {
  readonly client: RedisClient;
  readonly prefix: string;
  /** The channel the release script publishes a released lock's name on. */
  readonly unlockChannel: string;
  /** Whether releases are heard now: the unlock channel is subscribed. */
  readonly hearsReleases: () => boolean;
  readonly isClosed: () => boolean;
  /** Runs a command as the store does: it fails fast, with store_unavailable. */
  readonly run: <T>(op: string, command: () => Promise<T>) => Promise<T>;
  /** The store_unavailable error for `op`. */
  readonly unavailable: (op: string, error: unknown) => GatewayError;
}

// Orphaned locks remembered at the most: past this many, the rest expire by their TTL.
const MAX_ORPHANS = 10_000;

export class RedisLocks {
  readonly #deps: RedisLocksDeps;
  readonly #waiters = new UnlockWaiters();
  /**
   * Locks this instance may still hold in Redis although it is done with them: their release (or the
   * reply to their SET) was lost to an outage. Keyed by lock key and token.
   */
  readonly #orphaned = new Map<string, { lockKey: string; token: string; key: string; until: number }>();

  constructor(deps: RedisLocksDeps) {
    this.#deps = deps;
  }

  async lock(key: string, ttlMs: number): Promise<StoreLock | undefined> {
    const { client, run, unlockChannel, isClosed } = this.#deps;
    const lockKey = this.#lockKey(key);
    const token = randomUUID();
    let taken: string | null;
    try {
      taken = await run("lock", () => client.set(lockKey, token, "PX", Math.ceil(ttlMs), "NX"));
    } catch (error) {
      // The SET may have reached Redis with only its reply lost: if so the lock is ours, and nobody
      // would release it before its TTL.
      this.#orphan(lockKey, token, key, ttlMs);
      throw error;
    }
    if (taken !== "OK") return undefined;
    let released = false;
    return {
      release: async () => {
        if (released || isClosed()) return;
        released = true;
        try {
          await client.switchboardRelease(lockKey, token, unlockChannel, key);
        } catch {
          // Unreachable Redis: released when it is back (by token, so never someone else's lock).
          this.#orphan(lockKey, token, key, ttlMs);
        }
      },
    };
  }

  async waitForUnlock(key: string, timeoutMs: number, signal?: AbortSignal): Promise<boolean> {
    const lockKey = this.#lockKey(key);
    if (!this.#deps.hearsReleases()) return this.#pollUnlock(lockKey, timeoutMs, signal);
    // Park first, then look: a release between the two still reaches the parked waiter.
    const stop = new AbortController();
    const waiting = this.#waiters.wait(
      key,
      timeoutMs,
      signal ? AbortSignal.any([signal, stop.signal]) : stop.signal,
    );
    // The caller's abort may reject `waiting` before it is returned; it is handled there, not here.
    waiting.catch(() => undefined);
    let held: number;
    try {
      held = await this.#deps.client.exists(lockKey);
    } catch (error) {
      stop.abort();
      throw this.#deps.unavailable("waitForUnlock", error);
    }
    if (held === 0) this.#waiters.released(key);
    return waiting;
  }

  /** A release was heard: `key` is the lock's name. */
  released(key: string): void {
    this.#waiters.released(key);
  }

  /** Releases sent while the subscription was down were missed: check the locks still waited on. */
  recheckWaiters(): void {
    for (const key of this.#waiters.keys()) {
      this.#deps.client.exists(this.#lockKey(key)).then(
        (held) => {
          if (held === 0) this.#waiters.released(key);
        },
        () => undefined,
      );
    }
  }

  /** Releases the orphaned locks still unexpired; called when the command connection is (back) up. */
  async releaseOrphans(): Promise<void> {
    for (const [id, lock] of [...this.#orphaned]) {
      if (lock.until <= Date.now()) {
        this.#orphaned.delete(id);
        continue;
      }
      try {
        await this.#deps.client.switchboardRelease(
          lock.lockKey,
          lock.token,
          this.#deps.unlockChannel,
          lock.key,
        );
        this.#orphaned.delete(id);
      } catch {
        return; // down again: the next 'ready' tries again
      }
    }
  }

  /** Nothing will release a lock any more: waiters learn at once that they waited in vain. */
  close(): void {
    this.#waiters.abandonAll();
  }

  /**
   * While the pub/sub connection is down no release is heard, so the lock is re-read with backoff
   * instead (10 ms doubling to 200 ms): a bounded cost for a rare state, where the alternative is to
   * sleep through the whole timeout.
   */
  async #pollUnlock(lockKey: string, timeoutMs: number, signal: AbortSignal | undefined): Promise<boolean> {
    const deadline = Date.now() + timeoutMs;
    for (let delay = 10; ; delay = Math.min(delay * 2, 200)) {
      signal?.throwIfAborted();
      if ((await this.#deps.run("waitForUnlock", () => this.#deps.client.exists(lockKey))) === 0) return true;
      const left = deadline - Date.now();
      if (left <= 0) return false;
      await sleep(Math.min(delay, left), signal);
    }
  }

  #orphan(lockKey: string, token: string, key: string, ttlMs: number): void {
    if (this.#orphaned.size >= MAX_ORPHANS) return;
    this.#orphaned.set(`${lockKey}\n${token}`, { lockKey, token, key, until: Date.now() + ttlMs });
  }

  #lockKey(key: string): string {
    return `${this.#deps.prefix}l:${key}`;
  }
}

function sleep(ms: number, signal: AbortSignal | undefined): Promise<void> {
  return new Promise<void>((resolve, reject) => {
    const onAbort = () => {
      clearTimeout(timer);
      reject(signal?.reason);
    };
    const timer = setTimeout(() => {
      signal?.removeEventListener("abort", onAbort);
      resolve();
    }, ms);
    signal?.addEventListener("abort", onAbort, { once: true });
  });
}
