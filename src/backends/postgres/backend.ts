/**
 * PostgreSQL as a built-in backend (`type: "postgres"` under `backends:`), with four tools: `query`,
 * `transaction`, `list_tables` and `describe_table` (tools.ts, queries.ts). It runs over a `pg` pool
 * (server-driver.ts), or, with no `url`, over an embedded PostgreSQL (PGlite, embedded-driver.ts)
 * in a worker thread, loaded with sample data, so a quick start has a database without a server.
 *
 * Read-only is PostgreSQL's job, not ours: every call runs in a transaction of its own that the
 * server holds read-only (read-only.ts). Read-only protects the data, not the server, so a read-only
 * backend asks, at every start, what its role may do, and refuses to serve with a role that can reach
 * the database host (privileges.ts); it keeps asking, with the reconnect backoff, while it is down.
 *
 * Limits hold where the rows are produced: on a server, the statement's portal is executed with a row
 * limit of maxRows + 1, so a huge result never crosses the network; rows are then kept up to
 * maxResultBytes of JSON. Cut results say `truncated: true` and carry a note that says what to do.
 *
 * SQL errors are the caller's to fix, so they are `isError` results with the SQLSTATE and the server's
 * message (errors.ts); a database that cannot be reached is a thrown `backend_unavailable`, which the
 * gateway's policies treat as a failure. No message ever holds the connection string or its password.
 */
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
import { ToolsOnlyBackend, urlRedactor } from "../base.ts";
import { type ReconnectOptions, reconnectBackoff, reconnectDelay } from "../reconnect.ts";
import type { PostgresBackendConfig } from "./config.ts";
import type { Driver, PoolStats } from "./driver.ts";
import type { EmbeddedDatabase } from "./embedded-database.ts";
import { EmbeddedDriver } from "./embedded-driver.ts";
import { isServerError } from "./errors.ts";
import { privilegedWarning, refusalMessage } from "./privileges.ts";
import { Queries } from "./queries.ts";
import { ServerDriver } from "./server-driver.ts";
import { postgresTools } from "./tools.ts";

export type { PostgresBackendConfig } from "./config.ts";
export type { PoolStats } from "./driver.ts";

export interface PostgresBackendOptions {
  /**
   * An embedded database to use instead of creating one (no `url`): the caller owns it and closes it.
   * Backends given the same instance take turns on it, as they must on a single connection.
   */
  readonly embedded?: EmbeddedDatabase;
  /** Backoff between attempts to reach a database that is down. Default: the config's `restart` default. */
  readonly reconnect?: ReconnectOptions;
}

export function createPostgresBackend(
  name: string,
  config: PostgresBackendConfig,
  logger: Logger,
  options: PostgresBackendOptions = {},
): PostgresBackend {
  return new PostgresBackend(name, config, logger, options);
}

const NEVER_ABORTED = new AbortController().signal;

export class PostgresBackend extends ToolsOnlyBackend<CallToolResult, AbortSignal> {
  readonly readOnly: boolean;
  readonly #config: PostgresBackendConfig;
  readonly #driver: Driver;
  readonly #backoff: Required<ReconnectOptions>;
  #attempt = 0;
  #probeTimer: NodeJS.Timeout | undefined;
  #probing: Promise<void> | undefined;
  /** Its role has rights beyond reading that a read-only transaction does not take away. */
  #privileged = false;
  /** Down because of those rights (read-only, without allowPrivilegedRole), not an outage. */
  #refused = false;

  constructor(
    name: string,
    config: PostgresBackendConfig,
    logger: Logger,
    options: PostgresBackendOptions = {},
  ) {
    super(name, logger, { kind: "postgres", redact: urlRedactor(config.url) });
    this.readOnly = config.readOnly;
    this.#config = config;
    this.#backoff = reconnectBackoff(options.reconnect);
    this.#driver =
      config.url === undefined
        ? new EmbeddedDriver(config, this.log, options.embedded)
        : new ServerDriver(config.url, config, this.log);
    const queries = new Queries({
      server: name,
      driver: this.#driver,
      config,
      redact: (text) => this.redact(text),
      refuse: ({ text, data }) => this.refusal(text, data),
    });
    this.offer(postgresTools(queries, { ...config, embedded: this.#driver.embedded }));
  }

  get embedded(): boolean {
    return this.#driver.embedded;
  }

  /** Connections open, idle and waited for: for health and metrics. */
  stats(): PoolStats {
    return this.#driver.stats();
  }

  catalog(): BackendCatalog {
    // Like an MCP server that went away, a database that cannot be reached offers nothing.
    return this.state === "up" ? { ...EMPTY_CATALOG, tools: this.tools } : EMPTY_CATALOG;
  }

  protected async open(): Promise<void> {
    this.setState("starting");
    await this.#probe();
  }

  async callTool(call: ToolCall, ctx: CallContext): Promise<CallToolResult> {
    if (this.state !== "up" && this.#refused) {
      throw new GatewayError(
        "backend_unavailable",
        `Database backend "${this.name}" is not available: its database role has rights that reach ` +
          "beyond the data, so the read-only backend refuses to serve. An operator must connect it as a " +
          "role that can only read; the gateway's log and health say which rights and how.",
        { data: { server: this.name, reason: "privileged_role" } },
      );
    }
    if (this.state !== "up") {
      throw new GatewayError(
        "backend_unavailable",
        `Database backend "${this.name}" is not available: ${this.#driver.where} ` +
          `${this.lastError ? `failed (${this.lastError})` : `is ${this.state}`}. Check that the database is up ` +
          "and that the url in the backend's config is right; Switchboard keeps retrying by itself.",
        { data: { server: this.name } },
      );
    }
    const { spec, args } = this.prepare(call);
    return await untilAborted(spec.run(args, ctx.signal), ctx.signal).catch((error: unknown) => {
      throw this.#translate(error, call.tool, ctx.signal);
    });
  }

  async health(signal: AbortSignal): Promise<HealthResult> {
    const stats = this.#driver.stats();
    const data = {
      pool: stats,
      embedded: this.#driver.embedded,
      readOnly: this.readOnly,
      ...(this.#privileged ? { privilegedRole: true } : {}),
    };
    if (this.state !== "up") {
      return { status: "unhealthy", detail: `${this.#driver.where}: ${this.lastError || this.state}`, data };
    }
    // A busy pool is not a sick database: waiting in line for a connection would only time the check out.
    if (stats.idle === 0 && stats.total >= stats.max) {
      return stats.waiting > 0
        ? {
            status: "degraded",
            detail: `all ${stats.max} connections to ${this.#driver.where} are busy and ${stats.waiting} calls wait for one; raise pool.max if this lasts`,
            data,
          }
        : {
            status: "healthy",
            detail: stats.max === 1 ? "its connection is busy" : `all ${stats.max} connections are busy`,
            data,
          };
    }
    return this.probe(
      async () => {
        const lease = await this.#driver.acquire(signal);
        let broken = true;
        try {
          await untilAborted(lease.ping(), signal);
          broken = false;
        } finally {
          await lease.release(broken);
        }
      },
      (reason) => `SELECT 1 failed on ${this.#driver.where}: ${reason}`,
      data,
    );
  }

  protected override async release(): Promise<void> {
    clearTimeout(this.#probeTimer);
    this.#probeTimer = undefined;
    await this.#probing?.catch(() => undefined);
    await this.#driver
      .close()
      .catch((error: unknown) =>
        this.log.warn({ err: this.reasonOf(error) }, "closing the database connections failed"),
      );
  }

  /** What a thrown failure of a call becomes: cancelled, or the database being out of reach. */
  #translate(error: unknown, tool: string, signal: AbortSignal): unknown {
    if (error instanceof GatewayError) return error;
    const cancelled = this.stoppedByCaller(
      signal,
      `The call to tool "${tool}" of database backend "${this.name}" was cancelled; the statement was cancelled on the server too.`,
      { data: { server: this.name, tool } },
    );
    if (cancelled) return cancelled;
    const reason = this.reasonOf(error);
    const stats = this.#driver.stats();
    if (/timeout exceeded when trying to connect/i.test(reason) && stats.total >= stats.max) {
      return new GatewayError(
        "timeout",
        `Database backend "${this.name}" had no free connection within ${this.#config.pool.connectTimeoutMs} ms ` +
          `(all ${this.#config.pool.max} busy). Raise pool.max or pool.connectTimeoutMs, or make fewer calls at once.`,
        { data: { server: this.name, tool, pool: stats } },
      );
    }
    // One broken connection is not an outage: check with a fresh one before taking the tools away.
    void this.#recheck();
    return new GatewayError(
      "backend_unavailable",
      `Database backend "${this.name}" could not run tool "${tool}": ${this.#driver.where} failed (${reason}). ` +
        "Check that the database is up and reachable; Switchboard retries by itself.",
      { data: { server: this.name, tool, ...(isServerError(error) ? { sqlstate: error.code } : {}) } },
    );
  }

  // ─── reaching the database ──────────────────────────────────────────────────────────────────

  #probe(): Promise<void> {
    this.#probing ??= (async () => {
      try {
        const role = await this.#driver.probe(NEVER_ABORTED);
        if (this.closed) return;
        const privileged = role !== undefined && role.findings.length > 0;
        if (privileged && this.readOnly && !this.#config.allowPrivilegedRole) {
          this.#refuse(refusalMessage(this.name, this.#driver.where, role));
          return;
        }
        this.#attempt = 0;
        this.#refused = false;
        if (this.state !== "up") {
          this.log.info({ where: this.#driver.where, readOnly: this.readOnly }, "database up");
          if (privileged) {
            this.log.warn(
              {
                where: this.#driver.where,
                role: role.role,
                allowPrivilegedRole: this.#config.allowPrivilegedRole,
              },
              privilegedWarning(role, this.readOnly),
            );
          }
        }
        this.#privileged = privileged;
        this.setState("up");
      } catch (error) {
        if (this.closed) return;
        this.#refused = false;
        const reason = this.reasonOf(error);
        this.log.warn(
          { err: reason, where: this.#driver.where, attempt: this.#attempt },
          "database unreachable",
        );
        this.setState("down", reason);
        this.#scheduleProbe();
      }
    })().finally(() => {
      this.#probing = undefined;
    });
    return this.#probing;
  }

  /**
   * A read-only backend whose role can reach the host does not serve. It keeps checking, with the
   * reconnect backoff, so that a role put right by its administrator is picked up without a restart.
   */
  #refuse(reason: string): void {
    if (reason !== this.lastError) this.log.error({ where: this.#driver.where }, reason);
    this.#privileged = true;
    this.#refused = true;
    this.setState("down", reason);
    this.#scheduleProbe();
  }

  async #recheck(): Promise<void> {
    if (this.closed || this.#probing || this.#probeTimer) return;
    await this.#probe();
  }

  #scheduleProbe(): void {
    if (this.closed || this.#probeTimer) return;
    const { initialDelayMs, maxDelayMs } = this.#backoff;
    const delay = reconnectDelay(this.#attempt, initialDelayMs, maxDelayMs);
    this.#attempt++;
    this.#probeTimer = setTimeout(() => {
      this.#probeTimer = undefined;
      void this.#probe();
    }, delay);
    this.#probeTimer.unref();
  }
}
