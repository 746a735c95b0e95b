/**
 * Redis as a built-in backend (`type: "redis"` under `backends:`): read tools (read-tools.ts) and,
 * when the config allows them, one tool per write command (write-tools.ts).
 *
 * `keyPrefix` confines the backend to keys under it: tools take and return keys without the prefix,
 * the backend prepends it to every key it sends, and scan patterns start with the prefix, escaped, so
 * no pattern reaches past it (keyspace.ts). Redis ACLs (`~prefix*`) can enforce the same on the
 * server's side.
 *
 * Errors Redis answers (WRONGTYPE, NOPERM, OOM…) are `isError` results the caller can act on; a
 * Redis that cannot be reached is a thrown `backend_unavailable` (or `timeout`). The connection
 * reconnects by itself with jittered exponential backoff; while it is down the backend is `down` and
 * offers no tools.
 */

import { Redis, ReplyError } from "ioredis";
import { untilAborted } from "../../core/abort.ts";
import { GatewayError } from "../../core/errors.ts";
import {
  type BackendCatalog,
  type CallContext,
  type CallToolResult,
  EMPTY_CATALOG,
  type HealthResult,
  type ToolCall,
} from "../../core/types.ts";
import type { Logger } from "../../observability/logger.ts";
import { structuredResult, ToolsOnlyBackend, urlRedactor } from "../base.ts";
import { type ReconnectOptions, reconnectBackoff, reconnectDelay } from "../reconnect.ts";
import { REDIS_WRITE_COMMANDS, type RedisBackendConfig } from "./config.ts";
import { Keyspace, type Output } from "./keyspace.ts";
import { readTools } from "./read-tools.ts";
import { writeTools } from "./write-tools.ts";

export type { RedisBackendConfig, RedisWriteCommand } from "./config.ts";

export interface RedisBackendOptions {
  /** Backoff between reconnects. Default: the config's `restart` default. */
  readonly reconnect?: ReconnectOptions;
}

export function createRedisBackend(
  name: string,
  config: RedisBackendConfig,
  logger: Logger,
  options: RedisBackendOptions = {},
): RedisBackend {
  return new RedisBackend(name, config, logger, options);
}

/** Which tool reads a key of each type, for WRONGTYPE advice. */
const READER_OF: Readonly<Record<string, string>> = {
  string: "get",
  hash: "hgetall",
  list: "lrange",
  set: "smembers",
  zset: "zrange",
};

export class RedisBackend extends ToolsOnlyBackend<Output> {
  readonly readOnly: boolean;
  readonly #config: RedisBackendConfig;
  readonly #redis: Redis;
  readonly #where: string;

  constructor(name: string, config: RedisBackendConfig, logger: Logger, options: RedisBackendOptions = {}) {
    super(name, logger, { kind: "redis", redact: urlRedactor(config.url) });
    this.readOnly = config.readOnly;
    this.#config = config;
    this.#where = describeRedis(config.url);
    const { initialDelayMs, maxDelayMs } = reconnectBackoff(options.reconnect);
    this.#redis = new Redis(config.url, {
      lazyConnect: true,
      connectionName: `switchboard:${name}`,
      connectTimeout: config.connectTimeoutMs,
      commandTimeout: config.commandTimeoutMs,
      // No answer for this long means the connection is dead even if TCP has not noticed (a cut network
      // drops packets silently): drop it and reconnect, so later calls fail fast instead of waiting.
      socketTimeout: config.commandTimeoutMs,
      // Fail fast while disconnected: a call should get "unavailable" now, not hang in a queue, and a
      // write must not be sent twice because its connection dropped after Redis had run it.
      enableOfflineQueue: false,
      maxRetriesPerRequest: 0,
      autoResendUnfulfilledCommands: false,
      // ioredis counts tries from 1; the backoff counts failed attempts from 0.
      retryStrategy: (times) => reconnectDelay(times - 1, initialDelayMs, maxDelayMs),
    });
    this.#watch();
    const keyspace = new Keyspace(this.#redis, config);
    this.offer([...readTools(keyspace), ...writeTools(keyspace)]);
  }

  catalog(): BackendCatalog {
    return this.state === "up" ? { ...EMPTY_CATALOG, tools: this.tools } : EMPTY_CATALOG;
  }

  protected async open(): Promise<void> {
    this.setState("starting");
    try {
      await this.#redis.connect();
    } catch (error) {
      // ioredis goes on reconnecting by itself; 'ready' brings the backend up when it succeeds.
      if (!this.lastError) this.noteError(this.reasonOf(error));
      this.log.warn({ err: this.lastError, where: this.#where }, "Redis unreachable");
      if (this.state !== "up") this.setState("down", this.lastError);
    }
  }

  async callTool(call: ToolCall, ctx: CallContext): Promise<CallToolResult> {
    const { spec, args } = this.prepare(call);
    if (this.state !== "up" || this.#redis.status !== "ready") throw this.#unavailable(call.tool);
    try {
      const output = await untilAborted(spec.run(args, undefined), ctx.signal);
      return structuredResult(output.structured, output.notes);
    } catch (error) {
      if (error instanceof ReplyError) return this.#refused(call.tool, error as Error);
      throw this.#translate(error, call.tool, ctx.signal);
    }
  }

  async health(signal: AbortSignal): Promise<HealthResult> {
    const data = {
      connection: this.#redis.status,
      keyPrefix: this.#config.keyPrefix,
      readOnly: this.readOnly,
    };
    if (this.state !== "up" || this.#redis.status !== "ready") {
      return {
        status: "unhealthy",
        detail: `${this.#where}: ${this.lastError || this.#redis.status}`,
        data,
      };
    }
    return this.probe(
      () => untilAborted(this.#redis.ping(), signal),
      (reason) => `PING failed on ${this.#where}: ${reason}`,
      data,
    );
  }

  protected override async release(): Promise<void> {
    if (this.#redis.status === "ready") {
      try {
        await this.#redis.quit();
        return;
      } catch {
        // Fall through: drop the socket instead.
      }
    }
    this.#redis.disconnect();
  }

  protected override whyNoTool(tool: string): string | undefined {
    if (!(REDIS_WRITE_COMMANDS as readonly string[]).includes(tool)) return undefined;
    return this.readOnly
      ? `It writes, and this backend is read-only: an operator can set readOnly: false and list "${tool}" in allowCommands.`
      : `It writes, and "${tool}" is not in this backend's allowCommands.`;
  }

  // ─── connection ─────────────────────────────────────────────────────────────────────────────

  #watch(): void {
    // Unheard, an 'error' event would crash the process; ioredis reconnects after it by itself.
    this.#redis.on("error", (error: Error) => {
      this.noteError(this.reasonOf(error));
      this.log.debug({ err: this.lastError }, "Redis connection error");
    });
    this.#redis.on("ready", () => {
      if (this.closed) return;
      this.log.info({ where: this.#where, readOnly: this.readOnly }, "Redis up");
      this.setState("up");
    });
    this.#redis.on("close", () => {
      if (this.closed || this.state === "down") return;
      const reason = this.lastError || "the connection closed";
      this.log.warn({ err: reason, where: this.#where }, "Redis connection lost; reconnecting");
      this.setState("down", reason);
    });
  }

  // ─── errors ─────────────────────────────────────────────────────────────────────────────────

  #refused(tool: string, error: Error): CallToolResult {
    const message = this.redact(error.message);
    const code = /^[A-Z]+/.exec(message)?.[0];
    let advice = "";
    if (code === "WRONGTYPE") {
      const readers = Object.entries(READER_OF)
        .map(([type, reader]) => `${type}: ${reader}`)
        .join(", ");
      advice = ` The key holds another type of value; call the type tool, then the tool for that type (${readers}).`;
    } else if (code === "NOPERM") {
      advice = " The Redis user in the backend's url lacks the permission; an operator can change its ACL.";
    }
    return this.refusal(`Redis refused tool "${tool}" of backend "${this.name}": ${message}.${advice}`, {
      tool,
      ...(code ? { redisError: code } : {}),
    });
  }

  #unavailable(tool: string): GatewayError {
    return new GatewayError(
      "backend_unavailable",
      `Redis backend "${this.name}" cannot run tool "${tool}": ${this.#where} is not connected ` +
        `(${this.lastError || this.#redis.status}). Check that Redis is up and the url is right; ` +
        "Switchboard reconnects by itself.",
      { data: { server: this.name, tool } },
    );
  }

  #translate(error: unknown, tool: string, signal: AbortSignal): unknown {
    const cancelled = this.stoppedByCaller(
      signal,
      `The call to tool "${tool}" of Redis backend "${this.name}" was cancelled.`,
      { data: { server: this.name, tool } },
    );
    if (cancelled) return cancelled;
    if (error instanceof GatewayError) return error;
    const reason = this.reasonOf(error);
    if (/timed out/i.test(reason)) {
      return new GatewayError(
        "timeout",
        `Redis backend "${this.name}" did not answer tool "${tool}" within ${this.#config.commandTimeoutMs} ms ` +
          "(commandTimeoutMs). Redis may be overloaded; Switchboard replaces the connection.",
        { cause: error, data: { server: this.name, tool } },
      );
    }
    return new GatewayError(
      "backend_unavailable",
      `Redis backend "${this.name}" failed during tool "${tool}": ${this.#where} (${reason}). ` +
        "Switchboard reconnects by itself; try again shortly.",
      { cause: error, data: { server: this.name, tool } },
    );
  }
}

/** host:port/db, never the password. */
function describeRedis(url: string): string {
  const parsed = new URL(url);
  const db = parsed.pathname.replace(/^\//, "") || "0";
  return `Redis at ${parsed.hostname}:${parsed.port || "6379"}/${db}`;
}
