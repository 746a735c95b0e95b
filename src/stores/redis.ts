/**
 * The Redis store: the Store contract, shared by every gateway replica that uses the same Redis and
 * key prefix. Every multi-key step is one Lua script (redis-scripts.ts), so replicas never see each
 * other's half-done work: a value and its tag memberships are written together, a tag is invalidated
 * without `KEYS` or `SCAN`, and a token bucket is taken on Redis' own clock, so a global limit is
 * exact across replicas. Locks are in redis-locks.ts, pub/sub in redis-channels.ts.
 *
 * Two connections (redis-connection.ts): one for commands, one subscribed. Connection errors are
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
import type { Redis } from "ioredis";
import { describeError, GatewayError } from "../core/errors.ts";
import type { HealthResult, Store, StoreLock, StoreMessageHandler, Unsubscribe } from "../core/types.ts";
import { REDIS_STORE_DEFAULTS } from "./config.ts";
import {
  type BucketSpec,
  checkReturn,
  checkTake,
  checkTimeout,
  checkTtl,
  type TakeOptions,
  type TakeResult,
  warnListenerError,
} from "./contract.ts";
import type { StoreEventMap } from "./events.ts";
import { RedisChannels } from "./redis-channels.ts";
import {
  closeConnection,
  isTimeout,
  openRedisConnections,
  type RedisClient,
  redactUrl,
} from "./redis-connection.ts";
import { RedisLocks } from "./redis-locks.ts";

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
  readonly #client: RedisClient;
  readonly #subscriber: Redis;
  readonly #unlockChannel: string;
  readonly #channels: RedisChannels;
  readonly #locks: RedisLocks;
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
    const connections = openRedisConnections(options.url, {
      connectTimeoutMs: this.#connectTimeoutMs,
      commandTimeoutMs: options.commandTimeoutMs ?? defaults.commandTimeoutMs,
      initialDelayMs: options.reconnect?.initialDelayMs ?? defaults.reconnect.initialDelayMs,
      maxDelayMs: options.reconnect?.maxDelayMs ?? defaults.reconnect.maxDelayMs,
      random: options.random ?? Math.random,
      name: `switchboard-${this.id}`,
    });
    this.#client = connections.client;
    this.#subscriber = connections.subscriber;
    this.#channels = new RedisChannels(this.#subscriber, {
      prefix: this.#prefix,
      id: this.id,
      onListenerError: (event) => {
        if (this.listenerCount("listenerError") > 0) this.emit("listenerError", event);
        else warnListenerError(event);
      },
      onResubscribed: () => {
        this.#updateHealth();
        this.#locks.recheckWaiters();
      },
    });
    this.#locks = new RedisLocks({
      client: this.#client,
      prefix: this.#prefix,
      unlockChannel: this.#unlockChannel,
      hearsReleases: () => this.#channels.isActive(this.#unlockChannel),
      isClosed: () => this.#closed,
      run: (op, command) => this.#run(op, command),
      unavailable: (op, error) => this.#unavailable(op, error),
    });
    this.#status = this.#computeHealth().status;
    this.#watch(this.#client, "command");
    this.#watch(this.#subscriber, "pub/sub");
    this.#subscriber.on("ready", () => void this.#channels.resubscribe());
    this.#client.on("ready", () => void this.#locks.releaseOrphans());
    this.#subscriber.on("message", (channel: string, payload: string) =>
      this.#channels.onMessage(channel, payload),
    );
    this.#channels.listen(this.#unlockChannel, (key) => this.#locks.released(key));
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
    if (ttlMs !== undefined) checkTtl("RedisStore.set", ttlMs);
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

  async takeTokens(key: string, bucket: BucketSpec, n = 1, options: TakeOptions = {}): Promise<TakeResult> {
    this.#open();
    checkTake(bucket, n, options);
    const { capacity, refillPerSec } = bucket;
    const [ok, retryAfterMs, remaining] = await this.#run("takeTokens", () =>
      this.#client.switchboardTake(
        `${this.#prefix}b:${key}`,
        String(capacity),
        String(refillPerSec),
        String(n),
        String(options.maxWaitMs ?? -1),
      ),
    );
    return {
      ok: ok === 1,
      retryAfterMs: retryAfterMs < 0 ? Number.POSITIVE_INFINITY : retryAfterMs,
      remaining,
    };
  }

  async returnTokens(key: string, bucket: BucketSpec, n: number, dueInMs: number): Promise<void> {
    this.#open();
    checkReturn(bucket, n, dueInMs);
    await this.#run("returnTokens", () =>
      this.#client.switchboardReturn(
        `${this.#prefix}b:${key}`,
        String(bucket.capacity),
        String(bucket.refillPerSec),
        String(n),
        String(dueInMs),
      ),
    );
  }

  async lock(key: string, ttlMs: number): Promise<StoreLock | undefined> {
    this.#open();
    checkTtl("RedisStore.lock", ttlMs);
    return await this.#locks.lock(key, ttlMs);
  }

  async waitForUnlock(key: string, timeoutMs: number, signal?: AbortSignal): Promise<boolean> {
    this.#open();
    checkTimeout("RedisStore.waitForUnlock", timeoutMs);
    signal?.throwIfAborted();
    return await this.#locks.waitForUnlock(key, timeoutMs, signal);
  }

  async publish(channel: string, message: string): Promise<void> {
    const [redisChannel, payload] = this.#channels.frame(channel, message);
    await this.#run("publish", () => this.#client.publish(redisChannel, payload));
  }

  /**
   * Never fails for want of Redis: the subscription is (re)made whenever the pub/sub connection is
   * up. It resolves once Redis confirmed it, or at once while disconnected.
   */
  async subscribe(channel: string, handler: StoreMessageHandler): Promise<Unsubscribe> {
    this.#open();
    return await this.#channels.subscribe(channel, handler);
  }

  health(): HealthResult {
    return this.#computeHealth();
  }

  async close(): Promise<void> {
    if (this.#closed) return;
    this.#closed = true;
    this.#locks.close();
    this.#channels.close();
    await Promise.all([closeConnection(this.#client), closeConnection(this.#subscriber)]);
    this.#updateHealth();
  }

  #watch(connection: Redis, role: string): void {
    connection.on("error", (error: Error) => {
      this.#lastError = `${role} connection: ${describeError(error)}`;
      this.#updateHealth();
    });
    connection.on("ready", () => this.#updateHealth());
    connection.on("close", () => {
      if (connection === this.#subscriber) this.#channels.disconnected();
      this.#updateHealth();
    });
    connection.on("end", () => this.#updateHealth());
  }

  #isReady(): boolean {
    return (
      this.#client.status === "ready" &&
      this.#subscriber.status === "ready" &&
      this.#channels.isActive(this.#unlockChannel)
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
      this.#subscriber.status === "ready" && this.#channels.isActive(this.#unlockChannel)
        ? undefined
        : "pub/sub",
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
}

export function createRedisStore(options: RedisStoreOptions): RedisStore {
  return new RedisStore(options);
}
