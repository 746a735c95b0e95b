/**
 * The Redis store: the Store contract, shared by every gateway replica that uses the same Redis and
 * key prefix. Every multi-key step is one Lua script (redis-scripts.ts), so replicas never see each
 * other's half-done work: a value and its tag memberships are written together, a tag is invalidated
 * without `KEYS` or `SCAN`, and a token bucket is taken on Redis' own clock, so a global limit is
 * exact across replicas.
 *
 * Two connections: one for commands, one subscribed (pub/sub needs a connection of its own). Both
 * fail fast while disconnected: no offline queue, no retry of a command whose connection dropped
 * (a retried take could take twice), a command timeout after which the connection is deemed dead and
 * replaced. They reconnect for ever with capped, jittered exponential backoff. Connection errors are
 * listened to (an unheard 'error' event would crash the process), turned into the store's health and
 * `state` events, and every failed operation rejects with a `store_unavailable` GatewayError, which
 * is what the resilient wrapper (resilient.ts) falls back on.
 *
 * Needs Redis 6.2 or later (tested on 7). An eviction policy (`maxmemory-policy` other than
 * `noeviction`) may drop a tag set before the entries it lists, which then can no longer be
 * invalidated and live until their TTL: where that matters, run Redis with `noeviction`.
 */
import { randomUUID } from "node:crypto";
import { EventEmitter } from "node:events";
import { createRequire } from "node:module";
import type { Redis, RedisOptions } from "ioredis";
import { describeError, GatewayError } from "../core/errors.ts";
import type { HealthResult, Store, StoreLock, StoreMessageHandler, Unsubscribe } from "../core/types.ts";
import { REDIS_STORE_DEFAULTS } from "./config.ts";
import type { StoreEventMap } from "./events.ts";
import { type BucketSpec, type TakeResult, waitFor } from "./memory.ts";
import { SCRIPTS, type ScriptCommands } from "./redis-scripts.ts";

export interface RedisStoreOptions {
  /** redis://[user:password@]host[:port][/db], or rediss:// for TLS. */
  readonly url: string;
  // Defaults of the options below: the config's `store` block (REDIS_STORE_DEFAULTS, stores/config.ts).
  /** Prepended to every key and channel. */
  readonly keyPrefix?: string;
  /** Largest value stored, in UTF-8 bytes; larger ones are skipped and reported. */
  readonly maxValueBytes?: number;
  readonly connectTimeoutMs?: number;
  readonly commandTimeoutMs?: number;
  /** Reconnect backoff, doubling from `initialDelayMs` up to `maxDelayMs`. */
  readonly reconnect?: { readonly initialDelayMs?: number; readonly maxDelayMs?: number };
  /** Uniform in [0, 1), for backoff jitter. Default `Math.random`. */
  readonly random?: () => number;
}

type Client = Redis & ScriptCommands;

// Members of a tag popped per invalidation step: big enough to be quick, small enough that one
// step never holds Redis up noticeably.
const INVALIDATE_BATCH = 500;

export class RedisStore extends EventEmitter<StoreEventMap> implements Store {
  readonly shared = true;
  /** Tells this instance's own messages apart from other replicas'. */
  readonly id = randomUUID();
  /** The URL with any password hidden: safe for messages and logs. */
  readonly where: string;
  readonly #prefix: string;
  readonly #maxValueBytes: number;
  readonly #connectTimeoutMs: number;
  readonly #client: Client;
  readonly #subscriber: Redis;
  readonly #unlockChannel: string;
  /** Redis channels this store wants to be subscribed to, and those Redis confirmed. */
  readonly #wanted = new Set<string>();
  readonly #active = new Set<string>();
  readonly #handlers = new Map<string, Set<{ handler: StoreMessageHandler }>>();
  readonly #unlockWaiters = new Map<string, Set<(released: boolean) => void>>();
  /**
   * Locks this instance may still hold in Redis although it is done with them: their release (or the
   * reply to their SET) was lost to an outage. Released once Redis is back, by token, so that an
   * identical call elsewhere does not wait out the lock's whole TTL. Keyed by lock key and token.
   */
  readonly #orphanedLocks = new Map<string, { lockKey: string; token: string; key: string; until: number }>();
  #lastError: string | undefined;
  #downSince: number | undefined = Date.now();
  #status: HealthResult["status"];
  #skipped = 0;
  #closed = false;

  constructor(options: RedisStoreOptions) {
    super();
    const protocol = URL.canParse(options.url) ? new URL(options.url).protocol : undefined;
    if (protocol !== "redis:" && protocol !== "rediss:") {
      throw new GatewayError(
        "config_invalid",
        `The Redis store URL ${redactUrl(options.url)} is not a redis:// or rediss:// URL; set store.url to ` +
          "e.g. redis://127.0.0.1:6379.",
      );
    }
    this.where = redactUrl(options.url);
    const defaults = REDIS_STORE_DEFAULTS;
    this.#prefix = options.keyPrefix ?? defaults.keyPrefix;
    this.#maxValueBytes = options.maxValueBytes ?? defaults.maxValueBytes;
    this.#connectTimeoutMs = options.connectTimeoutMs ?? defaults.connectTimeoutMs;
    this.#unlockChannel = `${this.#prefix}unlocked`;
    const commandTimeoutMs = options.commandTimeoutMs ?? defaults.commandTimeoutMs;
    const initialDelayMs = options.reconnect?.initialDelayMs ?? defaults.reconnect.initialDelayMs;
    const maxDelayMs = options.reconnect?.maxDelayMs ?? defaults.reconnect.maxDelayMs;
    const random = options.random ?? Math.random;
    const redisOptions: RedisOptions = {
      connectTimeout: this.#connectTimeoutMs,
      // A command that times out also drops its connection (see #run). Not ioredis' `socketTimeout`:
      // its timer outlives the socket it was armed for, so a reconnect attempt that died during an
      // outage destroys the next, healthy connection once its time is up, a second outage of its own.
      commandTimeout: commandTimeoutMs,
      enableOfflineQueue: false,
      maxRetriesPerRequest: 0,
      autoResubscribe: false,
      autoResendUnfulfilledCommands: false,
      // Jitter over the upper half of each delay: replicas that lost Redis together do not all come
      // back in the same instant.
      retryStrategy: (times) => {
        const ceiling = Math.min(maxDelayMs, initialDelayMs * 2 ** Math.min(times - 1, 30));
        return Math.round(ceiling / 2 + (random() * ceiling) / 2);
      },
      scripts: SCRIPTS,
      // How long close() waits for a socket to end before destroying it. ioredis arms this timer even
      // for a socket that already closed (a failed connect), which would hold the process open at
      // shutdown for the default 2 s.
      disconnectTimeout: 100,
      // The pub/sub connection sends nothing while idle, so only TCP keep-alive notices a peer that
      // vanished without closing the connection.
      keepAlive: 10_000,
    };
    const { Redis } = loadIoredis();
    // Named after the instance, so that CLIENT LIST tells replicas apart.
    this.#client = new Redis(options.url, {
      ...redisOptions,
      connectionName: `switchboard-${this.id}`,
    }) as Client;
    this.#subscriber = new Redis(options.url, {
      ...redisOptions,
      connectionName: `switchboard-${this.id}-sub`,
      scripts: {},
    });
    this.#status = this.#computeHealth().status;
    this.#watch(this.#client, "command");
    this.#watch(this.#subscriber, "pub/sub");
    this.#subscriber.on("ready", () => void this.#resubscribe());
    this.#client.on("ready", () => void this.#releaseOrphans());
    this.#subscriber.on("message", (channel: string, payload: string) => this.#onMessage(channel, payload));
    this.#wanted.add(this.#unlockChannel);
  }

  /**
   * Resolves once both connections are up and subscribed; rejects with store_unavailable at the first
   * connection error or after `timeoutMs` (default: the connect timeout). The store keeps trying
   * either way.
   */
  ready(timeoutMs = this.#connectTimeoutMs): Promise<void> {
    this.#open();
    if (this.#isReady()) return Promise.resolve();
    return new Promise<void>((resolve, reject) => {
      const cleanup = () => {
        clearTimeout(timer);
        this.off("state", onState);
        this.#client.off("error", onError);
        this.#subscriber.off("error", onError);
      };
      const onState = () => {
        if (!this.#isReady()) return;
        cleanup();
        resolve();
      };
      const onError = (error: unknown) => {
        cleanup();
        reject(this.#unavailable("connect", error));
      };
      const timer = setTimeout(() => {
        cleanup();
        reject(this.#unavailable("connect", new Error(`not connected after ${timeoutMs} ms`)));
      }, timeoutMs);
      this.on("state", onState);
      this.#client.on("error", onError);
      this.#subscriber.on("error", onError);
    });
  }

  async get(key: string): Promise<string | undefined> {
    const value = await this.#run("get", () => this.#client.hget(this.#entryKey(key), "v"));
    return value ?? undefined;
  }

  async set(
    key: string,
    value: string,
    opts: { ttlMs?: number; tags?: readonly string[] } = {},
  ): Promise<void> {
    this.#open();
    const ttlMs = opts.ttlMs;
    if (ttlMs !== undefined && !(ttlMs > 0 && Number.isFinite(ttlMs))) {
      throw new RangeError(`RedisStore.set: ttlMs must be a positive finite number, got ${ttlMs}`);
    }
    const bytes = Buffer.byteLength(value, "utf8");
    if (bytes > this.#maxValueBytes) {
      // The caller meant to replace the value: serving the older one instead would be stale.
      await this.delete(key);
      this.#skipped++;
      this.emit("skipped", { key, reason: "value_too_large", bytes, maxValueBytes: this.#maxValueBytes });
      return;
    }
    const tags = [...new Set(opts.tags ?? [])];
    const ttl = ttlMs === undefined ? "0" : String(Math.ceil(ttlMs));
    await this.#run("set", () =>
      this.#client.switchboardSet(this.#entryKey(key), this.#prefix, key, value, ttl, ...tags),
    );
  }

  async delete(key: string): Promise<boolean> {
    const deleted = await this.#run("delete", () =>
      this.#client.switchboardDelete(this.#entryKey(key), this.#prefix, key),
    );
    return deleted === 1;
  }

  async invalidateTag(tag: string): Promise<number> {
    const tagKey = `${this.#prefix}t:${tag}`;
    let total = 0;
    for (;;) {
      const [deleted, popped] = await this.#run("invalidateTag", () =>
        this.#client.switchboardInvalidate(tagKey, this.#prefix, tag, String(INVALIDATE_BATCH)),
      );
      total += deleted;
      if (popped < INVALIDATE_BATCH) return total;
    }
  }

  async takeTokens(key: string, bucket: BucketSpec, n = 1): Promise<TakeResult> {
    this.#open();
    const { capacity, refillPerSec } = bucket;
    if (!(capacity > 0 && Number.isFinite(capacity))) {
      throw new RangeError(`takeTokens: capacity must be a positive number, got ${capacity}`);
    }
    if (!(refillPerSec >= 0 && Number.isFinite(refillPerSec))) {
      throw new RangeError(`takeTokens: refillPerSec must be a finite number >= 0, got ${refillPerSec}`);
    }
    if (!(n >= 0 && Number.isFinite(n))) throw new RangeError(`takeTokens: n must be >= 0, got ${n}`);
    const [ok, retryAfterMs, remaining] = await this.#run("takeTokens", () =>
      this.#client.switchboardTake(
        `${this.#prefix}b:${key}`,
        String(capacity),
        String(refillPerSec),
        String(n),
      ),
    );
    return {
      ok: ok === 1,
      retryAfterMs: retryAfterMs < 0 ? Number.POSITIVE_INFINITY : retryAfterMs,
      remaining,
    };
  }

  async lock(key: string, ttlMs: number): Promise<StoreLock | undefined> {
    this.#open();
    if (!(ttlMs > 0 && Number.isFinite(ttlMs))) {
      throw new RangeError(`RedisStore.lock: ttlMs must be a positive finite number, got ${ttlMs}`);
    }
    const lockKey = this.#lockKey(key);
    const token = randomUUID();
    let taken: string | null;
    try {
      taken = await this.#run("lock", () => this.#client.set(lockKey, token, "PX", Math.ceil(ttlMs), "NX"));
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
        if (released || this.#closed) return;
        released = true;
        try {
          await this.#client.switchboardRelease(lockKey, token, this.#unlockChannel, key);
        } catch {
          // Unreachable Redis: released when it is back (by token, so never someone else's lock).
          this.#orphan(lockKey, token, key, ttlMs);
        }
      },
    };
  }

  async waitForUnlock(key: string, timeoutMs: number, signal?: AbortSignal): Promise<boolean> {
    this.#open();
    if (!(timeoutMs >= 0 && Number.isFinite(timeoutMs))) {
      throw new RangeError(
        `RedisStore.waitForUnlock: timeoutMs must be a finite number >= 0, got ${timeoutMs}`,
      );
    }
    signal?.throwIfAborted();
    const lockKey = this.#lockKey(key);
    if (!this.#active.has(this.#unlockChannel)) return this.#pollUnlock(lockKey, timeoutMs, signal);
    // Park first, then look: a release between the two still reaches the parked waiter.
    const stop = new AbortController();
    const waiting = waitFor(
      this.#unlockWaiters,
      key,
      timeoutMs,
      signal ? AbortSignal.any([signal, stop.signal]) : stop.signal,
    );
    // The caller's abort may reject `waiting` before it is returned; it is handled there, not here.
    waiting.catch(() => undefined);
    let held: number;
    try {
      held = await this.#client.exists(lockKey);
    } catch (error) {
      stop.abort();
      throw this.#unavailable("waitForUnlock", error);
    }
    if (held === 0) this.#wake(key);
    return waiting;
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
      if ((await this.#run("waitForUnlock", () => this.#client.exists(lockKey))) === 0) return true;
      const left = deadline - Date.now();
      if (left <= 0) return false;
      await sleep(Math.min(delay, left), signal);
    }
  }

  async publish(channel: string, message: string): Promise<void> {
    await this.#run("publish", () => this.#client.publish(this.#channel(channel), `${this.id}\n${message}`));
  }

  /**
   * Never fails for want of Redis: the subscription is (re)made whenever the pub/sub connection is
   * up. It resolves once Redis confirmed it, or at once while disconnected.
   */
  async subscribe(channel: string, handler: StoreMessageHandler): Promise<Unsubscribe> {
    this.#open();
    const redisChannel = this.#channel(channel);
    let subscribers = this.#handlers.get(redisChannel);
    if (!subscribers) {
      subscribers = new Set();
      this.#handlers.set(redisChannel, subscribers);
    }
    const subscriber = { handler };
    subscribers.add(subscriber);
    if (!this.#wanted.has(redisChannel)) {
      this.#wanted.add(redisChannel);
      if (this.#subscriber.status === "ready") {
        try {
          await this.#subscriber.subscribe(redisChannel);
          this.#active.add(redisChannel);
        } catch {
          // Resubscribed on the next 'ready'.
        }
      }
    }
    return async () => {
      const current = this.#handlers.get(redisChannel);
      if (!current?.delete(subscriber) || current.size > 0) return;
      this.#handlers.delete(redisChannel);
      this.#wanted.delete(redisChannel);
      this.#active.delete(redisChannel);
      if (this.#closed || this.#subscriber.status !== "ready") return;
      try {
        await this.#subscriber.unsubscribe(redisChannel);
      } catch {
        // A stale subscription only costs messages that nobody handles.
      }
    };
  }

  health(): HealthResult {
    return this.#computeHealth();
  }

  async close(): Promise<void> {
    if (this.#closed) return;
    this.#closed = true;
    for (const waiters of [...this.#unlockWaiters.values()]) for (const wake of [...waiters]) wake(false);
    this.#handlers.clear();
    await Promise.all([quit(this.#client), quit(this.#subscriber)]);
    this.#updateHealth();
  }

  #watch(connection: Redis, role: string): void {
    connection.on("error", (error: Error) => {
      this.#lastError = `${role} connection: ${describeError(error)}`;
      this.#updateHealth();
    });
    connection.on("ready", () => this.#updateHealth());
    connection.on("close", () => {
      if (connection === this.#subscriber) this.#active.clear();
      this.#updateHealth();
    });
    connection.on("end", () => this.#updateHealth());
  }

  #orphan(lockKey: string, token: string, key: string, ttlMs: number): void {
    // Bounded: past this many, the rest expire by their TTL as before.
    if (this.#orphanedLocks.size >= 10_000) return;
    this.#orphanedLocks.set(`${lockKey}\n${token}`, { lockKey, token, key, until: Date.now() + ttlMs });
  }

  async #releaseOrphans(): Promise<void> {
    for (const [id, lock] of [...this.#orphanedLocks]) {
      if (lock.until <= Date.now()) {
        this.#orphanedLocks.delete(id);
        continue;
      }
      try {
        await this.#client.switchboardRelease(lock.lockKey, lock.token, this.#unlockChannel, lock.key);
        this.#orphanedLocks.delete(id);
      } catch {
        return; // down again: the next 'ready' tries again
      }
    }
  }

  async #resubscribe(): Promise<void> {
    const channels = [...this.#wanted];
    try {
      await this.#subscriber.subscribe(...channels);
      for (const channel of channels) if (this.#wanted.has(channel)) this.#active.add(channel);
    } catch (error) {
      // The connection dropped again, or is dead without TCP knowing (then it is replaced); the next
      // 'ready' tries again.
      if (isTimeout(error) && this.#subscriber.status === "ready") this.#subscriber.disconnect(true);
      return;
    }
    this.#updateHealth();
    // Releases sent while the subscription was down were missed: check the locks still waited on.
    for (const key of [...this.#unlockWaiters.keys()]) {
      this.#client.exists(this.#lockKey(key)).then(
        (held) => {
          if (held === 0) this.#wake(key);
        },
        () => undefined,
      );
    }
  }

  #onMessage(channel: string, payload: string): void {
    if (channel === this.#unlockChannel) {
      this.#wake(payload);
      return;
    }
    const subscribers = this.#handlers.get(channel);
    if (!subscribers) return;
    const newline = payload.indexOf("\n");
    // A message published by something other than a store (e.g. redis-cli) has no sender id.
    const sender = newline >= 0 ? payload.slice(0, newline) : "";
    const message = newline >= 0 ? payload.slice(newline + 1) : payload;
    const info = { fromSelf: sender === this.id };
    const name = channel.slice(`${this.#prefix}c:`.length);
    for (const subscriber of [...subscribers]) {
      try {
        subscriber.handler(message, info);
      } catch (error) {
        if (this.listenerCount("listenerError") > 0) this.emit("listenerError", { channel: name, error });
        else {
          process.emitWarning(
            `A store message handler for channel "${name}" threw: ${describeError(error)}`,
            {
              code: "SWITCHBOARD_STORE_LISTENER",
            },
          );
        }
      }
    }
  }

  #wake(key: string): void {
    for (const wake of [...(this.#unlockWaiters.get(key) ?? [])]) wake(true);
  }

  #isReady(): boolean {
    return (
      this.#client.status === "ready" &&
      this.#subscriber.status === "ready" &&
      this.#active.has(this.#unlockChannel)
    );
  }

  #computeHealth(): HealthResult {
    const data = { url: this.where, keyPrefix: this.#prefix, skippedValues: this.#skipped };
    if (this.#closed)
      return { status: "unhealthy", detail: `The Redis store (${this.where}) is closed`, data };
    if (this.#isReady()) return { status: "healthy", detail: `connected to Redis at ${this.where}`, data };
    const since = new Date(this.#downSince ?? Date.now()).toISOString();
    const down = [
      this.#client.status === "ready" ? undefined : "commands",
      this.#subscriber.status === "ready" && this.#active.has(this.#unlockChannel) ? undefined : "pub/sub",
    ].filter(Boolean);
    const reason = this.#lastError ?? (this.#client.status === "wait" ? "not connected yet" : "connecting");
    return {
      status: "degraded",
      detail:
        `Redis at ${this.where} is unavailable for ${down.join(" and ")} since ${since} (${reason}); ` +
        "reconnecting with backoff.",
      data: { ...data, since },
    };
  }

  #updateHealth(): void {
    if (this.#isReady()) {
      this.#downSince = undefined;
      this.#lastError = undefined;
    } else {
      this.#downSince ??= Date.now();
    }
    const next = this.#computeHealth();
    if (next.status === this.#status) return;
    this.#status = next.status;
    this.emit("state", next);
  }

  async #run<T>(op: string, command: () => Promise<T>): Promise<T> {
    this.#open();
    try {
      return await command();
    } catch (error) {
      // No answer in time means the connection is dead even if TCP has not noticed (a cut network
      // drops packets silently): replace it, so that the next commands fail fast, then succeed,
      // instead of each waiting out its timeout.
      if (isTimeout(error) && this.#client.status === "ready") this.#client.disconnect(true);
      throw this.#unavailable(op, error);
    }
  }

  #unavailable(op: string, error: unknown): GatewayError {
    const status = this.#client.status;
    // ioredis' own words for "not connected" name an option rather than the problem.
    const reason =
      status === "ready"
        ? describeError(error)
        : `not connected (${status}${this.#lastError ? `; last error: ${this.#lastError}` : ""})`;
    return new GatewayError(
      "store_unavailable",
      `Redis store ${op} failed at ${this.where}: ${reason}. The store reconnects by itself with backoff; ` +
        "if this persists, check that Redis is running and reachable at store.url.",
      { cause: error, data: { op, url: this.where, connection: status } },
    );
  }

  #open(): void {
    if (this.#closed) {
      throw new GatewayError("store_unavailable", `The Redis store (${this.where}) is closed`, {
        data: { url: this.where },
      });
    }
  }

  #entryKey(key: string): string {
    return `${this.#prefix}e:${key}`;
  }

  #lockKey(key: string): string {
    return `${this.#prefix}l:${key}`;
  }

  #channel(channel: string): string {
    return `${this.#prefix}c:${channel}`;
  }
}

export function createRedisStore(options: RedisStoreOptions): RedisStore {
  return new RedisStore(options);
}

/**
 * ioredis, loaded when the first Redis store is made rather than when this module is: a gateway on the
 * memory store (the default, e.g. every local stdio launch) never pays the ~90 ms it takes to load.
 * `require` keeps the store's construction synchronous; ioredis is CommonJS.
 */
function loadIoredis(): typeof import("ioredis") {
  ioredis ??= createRequire(import.meta.url)("ioredis") as typeof import("ioredis");
  return ioredis;
}
let ioredis: typeof import("ioredis") | undefined;

/** The URL without its password, for messages; unparsable input is shown as "(invalid URL)". */
export function redactUrl(url: string): string {
  if (!URL.canParse(url)) return "(invalid URL)";
  const parsed = new URL(url);
  if (parsed.password) parsed.password = "***";
  return parsed.toString();
}

/** ioredis' rejection of a command that got no answer within `commandTimeout`. */
function isTimeout(error: unknown): boolean {
  return error instanceof Error && error.message === "Command timed out";
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

async function quit(connection: Redis): Promise<void> {
  if (connection.status === "ready") {
    try {
      await connection.quit();
      return;
    } catch {
      // Fall through: drop the socket instead.
    }
  }
  connection.disconnect();
}
