/**
 * The Redis store's two connections: one for commands, one subscribed (pub/sub needs a connection of
 * its own). Both fail fast while disconnected: no offline queue, no retry of a command whose
 * connection dropped (a retried take could take twice), a command timeout after which the connection
 * is deemed dead and replaced (see RedisStore's #run). They reconnect for ever with capped, jittered
 * exponential backoff.
 */
import { createRequire } from "node:module";
import type { Redis, RedisOptions } from "ioredis";
import { SCRIPTS, type ScriptCommands } from "./redis-scripts.ts";

/** The command connection, with the store's Lua scripts as commands. */
export type RedisClient = Redis & ScriptCommands;

export interface RedisConnectionSettings {
  readonly connectTimeoutMs: number;
  readonly commandTimeoutMs: number;
  /** Reconnect backoff, doubling from `initialDelayMs` up to `maxDelayMs`. */
  readonly initialDelayMs: number;
  readonly maxDelayMs: number;
  /** Uniform in [0, 1), for backoff jitter. */
  readonly random: () => number;
  /** The connections' name in CLIENT LIST (the pub/sub one gets "-sub" after it). */
  readonly name: string;
}

export interface RedisConnections {
  readonly client: RedisClient;
  readonly subscriber: Redis;
}

/** Makes both connections; they start connecting at once. */
export function openRedisConnections(url: string, settings: RedisConnectionSettings): RedisConnections {
  const { initialDelayMs, maxDelayMs, random } = settings;
  const redisOptions: RedisOptions = {
    connectTimeout: settings.connectTimeoutMs,
    // A command that times out also drops its connection (see RedisStore). Not ioredis' `socketTimeout`:
    // its timer outlives the socket it was armed for, so a reconnect attempt that died during an
    // outage destroys the next, healthy connection once its time is up, a second outage of its own.
    commandTimeout: settings.commandTimeoutMs,
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
  const client = new Redis(url, { ...redisOptions, connectionName: settings.name }) as RedisClient;
  const subscriber = new Redis(url, { ...redisOptions, connectionName: `${settings.name}-sub`, scripts: {} });
  return { client, subscriber };
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
export function isTimeout(error: unknown): boolean {
  return error instanceof Error && error.message === "Command timed out";
}

/** QUIT when connected (Redis answers what is pending first), else drop the socket. */
export async function closeConnection(connection: Redis): Promise<void> {
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
