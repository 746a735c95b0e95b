/**
 * A PostgreSQL server through a pg pool. User statements are sent with a row limit in the Execute
 * message, so a huge result stops at the server and never crosses the network; every connection is
 * reset before it goes back to the pool.
 */
import pg from "pg";
import { untilAborted } from "../../core/abort.ts";
import { describeError } from "../../core/errors.ts";
import type { Logger } from "../../observability/logger.ts";
import { decodeValue } from "./codec.ts";
import type { PostgresBackendConfig } from "./config.ts";
import type { Driver, Lease, PoolStats } from "./driver.ts";
import { inspectRole, type RoleReport } from "./privileges.ts";
import { SESSION_RESET } from "./read-only.ts";
import { parseCommandTag, type RowCollector, type StatementOutcome } from "./rows.ts";

/**
 * One statement with a row limit, as a pg "submittable": Parse, Bind, Describe, Execute with a row
 * count, Sync. pg's own Query would fetch every row of a big result before we could drop any; with
 * the count in Execute the server stops producing rows at the limit and answers PortalSuspended.
 */
class BoundedQuery {
  readonly done: Promise<StatementOutcome>;
  readonly #sql: string;
  readonly #params: readonly (string | null)[];
  readonly #collector: RowCollector;
  #oids: number[] = [];
  #outcome: { command: string | null; rowCount: number | null; more: boolean } = {
    command: null,
    rowCount: null,
    more: false,
  };
  #resolve!: (outcome: StatementOutcome) => void;
  #reject!: (error: unknown) => void;

  constructor(sql: string, params: readonly (string | null)[], collector: RowCollector) {
    this.#sql = sql;
    this.#params = params;
    this.#collector = collector;
    this.done = new Promise<StatementOutcome>((resolve, reject) => {
      this.#resolve = resolve;
      this.#reject = reject;
    });
  }

  submit(connection: pg.Connection): void {
    const wire = connection as unknown as WireConnection;
    wire.stream.cork?.();
    try {
      wire.parse({ text: this.#sql, types: [] });
      wire.bind({ values: [...this.#params] });
      wire.describe({ type: "P", name: "" });
      wire.execute({ portal: "", rows: this.#collector.fetchLimit });
      wire.sync();
    } finally {
      wire.stream.uncork?.();
    }
  }

  handleRowDescription(message: { fields: { name: string; dataTypeID: number }[] }): void {
    this.#oids = message.fields.map((field) => field.dataTypeID);
    this.#collector.setFields(message.fields);
  }

  handleDataRow(message: { fields: (string | null)[] }): void {
    if (!this.#collector.accepting) return;
    this.#collector.add(message.fields.map((text, i) => decodeValue(text, this.#oids[i] ?? 0)));
  }

  handlePortalSuspended(): void {
    this.#outcome.more = true;
  }

  handleCommandComplete(message: { text: string }): void {
    const { command, rowCount } = parseCommandTag(message.text);
    this.#outcome.command = command;
    this.#outcome.rowCount = rowCount;
  }

  handleEmptyQuery(): void {}

  /** COPY … FROM STDIN has no data to send here; failing it ends the statement cleanly. */
  handleCopyInResponse(connection: pg.Connection): void {
    (connection as unknown as WireConnection).sendCopyFail(
      "COPY FROM STDIN is not supported through Switchboard",
    );
  }

  handleCopyData(): void {}

  handleError(error: unknown): void {
    this.#reject(error);
  }

  handleReadyForQuery(): void {
    this.#resolve({ ...this.#outcome });
  }
}

/** The part of pg's connection a submittable writes to (pg-cursor uses the same). */
interface WireConnection {
  readonly stream: { cork?(): void; uncork?(): void };
  parse(query: { text: string; types: number[] }): void;
  bind(config: { values: (string | null)[] }): void;
  describe(message: { type: "P"; name: string }): void;
  execute(config: { portal: string; rows: number }): void;
  sync(): void;
  sendCopyFail(message: string): void;
}

export class ServerDriver implements Driver {
  readonly where: string;
  readonly embedded = false;
  readonly #pool: pg.Pool;
  readonly #clientConfig: pg.ClientConfig;
  readonly #max: number;
  readonly #log: Logger;

  constructor(url: string, config: PostgresBackendConfig, log: Logger) {
    this.where = describeServer(url);
    this.#max = config.pool.max;
    this.#log = log;
    this.#clientConfig = {
      connectionString: url,
      connectionTimeoutMillis: config.pool.connectTimeoutMs,
      // The URL's application_name wins over this one.
      fallback_application_name: "switchboard",
      keepAlive: true,
    };
    this.#pool = new pg.Pool({
      ...this.#clientConfig,
      max: config.pool.max,
      idleTimeoutMillis: config.pool.idleTimeoutMs,
    });
    // An idle connection that dies (server restart, network cut) is reported here; unheard, the
    // 'error' event would crash the process. The pool drops the connection by itself.
    this.#pool.on("error", (error) => this.#log.warn({ err: describeError(error) }, "idle connection lost"));
  }

  async probe(signal: AbortSignal): Promise<RoleReport> {
    const client = new pg.Client(this.#clientConfig);
    client.on("error", () => undefined);
    const attempt = (async () => {
      try {
        await client.connect();
        return await inspectRole(async (sql, params) => (await client.query(sql, params as unknown[])).rows);
      } finally {
        await client.end().catch(() => undefined);
      }
    })();
    return await untilAborted(attempt, signal);
  }

  async acquire(signal: AbortSignal): Promise<Lease> {
    const client = await untilAborted(this.#pool.connect(), signal, { late: (client) => client.release() });
    // While checked out, a connection's errors are emitted on it, not on the pool: listen, or a
    // dropped connection would crash the process. The query in flight fails by itself.
    // A connection comes out of the pool reset; anything but a ping may leave state behind.
    let clean = true;
    let broken = false;
    const onError = (error: Error) => {
      if (!broken) this.#log.warn({ err: describeError(error) }, "connection lost in a call");
    };
    client.on("error", onError);
    const run = async (sql: string) => {
      clean = false;
      await client.query(sql);
    };
    const inTransaction = () => {
      const status = client.getTransactionStatus();
      return status === "T" || status === "E";
    };
    return {
      statement: (sql, params, collector) => {
        clean = false;
        return client.query(new BoundedQuery(sql, params, collector)).done;
      },
      control: run,
      ping: async () => {
        await client.query("SELECT 1");
      },
      finish: async (commit) => {
        if (commit) await run("COMMIT");
        try {
          await client.query(commit || !inTransaction() ? SESSION_RESET : `ROLLBACK; ${SESSION_RESET}`);
          clean = true;
        } catch (error) {
          this.#log.warn({ err: describeError(error) }, "could not reset a connection; closing it");
          broken = true;
        }
      },
      inTransaction,
      cancel: () => this.#cancel(client),
      abandon: () => {
        broken = true;
        (
          client as unknown as { connection?: { stream?: { destroy(): void } } }
        ).connection?.stream?.destroy();
      },
      release: async (destroy) => {
        if (!destroy && !broken && !clean) {
          try {
            if (inTransaction()) await client.query("ROLLBACK");
            await client.query(SESSION_RESET);
          } catch {
            broken = true;
          }
        }
        client.off("error", onError);
        client.release(destroy || broken);
      },
    };
  }

  stats(): PoolStats {
    return {
      total: this.#pool.totalCount,
      idle: this.#pool.idleCount,
      waiting: this.#pool.waitingCount,
      max: this.#max,
    };
  }

  async close(): Promise<void> {
    await this.#pool.end();
  }

  /**
   * pg has no public way to cancel a running query, so a connection of its own asks the server to
   * (`pg_cancel_backend` works on the role's own sessions without any extra privilege).
   */
  async #cancel(target: pg.PoolClient): Promise<void> {
    const pid = (target as unknown as { processID?: number }).processID;
    if (typeof pid !== "number") return;
    const client = new pg.Client(this.#clientConfig);
    client.on("error", () => undefined);
    try {
      await client.connect();
      await client.query("SELECT pg_cancel_backend($1)", [pid]);
    } catch (error) {
      this.#log.warn({ err: describeError(error), pid }, "could not cancel a statement");
    } finally {
      await client.end().catch(() => undefined);
    }
  }
}

/** host:port/database, never the user's password. */
function describeServer(url: string): string {
  const parsed = new URL(url);
  const database = decodeURIComponent(parsed.pathname.replace(/^\//, "")) || "(default database)";
  return `PostgreSQL at ${parsed.hostname}:${parsed.port || "5432"}/${database}`;
}
