/**
 * PostgreSQL as a built-in backend (`type: "postgres"` under `backends:`), with four tools: `query`,
 * `transaction`, `list_tables` and `describe_table`. It runs over a `pg` pool, or, with no `url`, over
 * an embedded PostgreSQL (PGlite) in the gateway's own process, loaded with sample data, so a quick
 * start has a database without a server.
 *
 * Read-only is PostgreSQL's job, not ours. Every call runs in a transaction of its own, opened with
 * `BEGIN … READ ONLY` and always rolled back, so the server refuses every write whatever its shape
 * (DML, DDL, COPY, DO blocks, writes hidden in CTEs or functions). Nothing looks at the words of the
 * SQL. Three ways out of that transaction are closed:
 * - user statements go through the extended protocol, which holds exactly one statement, so
 *   `SELECT 1; DELETE …` and `COMMIT; DELETE …` are refused by the server;
 * - the transaction takes its snapshot before any user statement runs, because PostgreSQL lets
 *   `SET TRANSACTION READ WRITE` through as long as no query has run in the transaction yet;
 * - after every user statement the server's own transaction status (ReadyForQuery) must still say
 *   "in a transaction": a lone `COMMIT` or `ROLLBACK` that ended it fails the call, nothing else runs
 *   on that connection, and the connection is closed (the embedded one reset) rather than reused.
 * Read-only protects the data, not the server: a superuser, or a member of pg_execute_server_program
 * and its kin, can still run programs and read files on the database host inside a read-only
 * transaction. So a read-only backend asks, at every start, what its role may do, and refuses to
 * serve with a role that can reach the host (postgres-privileges.ts). Two more things SQL could do
 * to outlast its call are undone: a lifted `statement_timeout` (the gateway holds the limit itself,
 * postgres-deadline.ts), and session state left on a pooled connection (reset after every call).
 *
 * Limits hold where the rows are produced: on a server, the statement's portal is executed with a row
 * limit of maxRows + 1, so a huge result never crosses the network; rows are then kept up to
 * maxResultBytes of JSON. Cut results say `truncated: true` and carry a note that says what to do.
 *
 * SQL errors are the caller's to fix, so they are `isError` results with the SQLSTATE and the server's
 * message (and they do not count against the backend's health); a database that cannot be reached is
 * a thrown `backend_unavailable`, which the gateway's policies treat as a failure. No message ever
 * holds the connection string or its password.
 */

import type { PGlite } from "@electric-sql/pglite";
import pg from "pg";
import { z } from "zod";
import { untilAborted } from "../core/abort.ts";
import { describeError, GatewayError, InvalidArguments } from "../core/errors.ts";
import {
  type Backend,
  type BackendCatalog,
  type BackendEvents,
  type BackendState,
  type CallContext,
  type CallToolResult,
  EMPTY_CATALOG,
  type GetPromptResult,
  type HealthResult,
  type ReadResourceResult,
  type Tool,
  type ToolCall,
} from "../core/types.ts";
import type { Logger } from "../observability/logger.ts";
import type { PostgresBackendConfig } from "./builtin-config.ts";
import { StatementGuard, StatementTimedOut } from "./postgres-deadline.ts";
import { inspectRole, privilegedWarning, type RoleReport, refusalMessage } from "./postgres-privileges.ts";
import { reconnectDelay } from "./reconnect.ts";
import { SAMPLE_DATA_SQL } from "./sample-data.ts";
import { noPrompt, noResource } from "./tools-only.ts";

export type { PostgresBackendConfig } from "./builtin-config.ts";

/** Connections of the backend, for health and metrics. The embedded database has exactly one. */
export interface PoolStats {
  /** Connections open (busy or idle). */
  readonly total: number;
  readonly idle: number;
  /** Calls waiting for a connection. */
  readonly waiting: number;
  readonly max: number;
}

export interface PostgresBackendOptions {
  /**
   * An embedded database to use instead of creating one (no `url`): the caller owns it and closes it.
   * Backends given the same instance take turns on it, as they must on a single connection.
   */
  readonly embedded?: PGlite;
  /** Backoff between attempts to reach a database that is down. Default 500 ms doubling to 30 s. */
  readonly reconnect?: { readonly initialDelayMs?: number; readonly maxDelayMs?: number };
}

export function createPostgresBackend(
  name: string,
  config: PostgresBackendConfig,
  logger: Logger,
  options: PostgresBackendOptions = {},
): PostgresBackend {
  return new PostgresBackend(name, config, logger, options);
}

// ─── values ───────────────────────────────────────────────────────────────────────────────────

/** Names of common types by OID, so that fields say "int4" rather than only 23. */
const TYPE_NAMES: Readonly<Record<number, string>> = {
  16: "bool",
  17: "bytea",
  18: "char",
  19: "name",
  20: "int8",
  21: "int2",
  23: "int4",
  25: "text",
  26: "oid",
  114: "json",
  142: "xml",
  199: "json[]",
  650: "cidr",
  700: "float4",
  701: "float8",
  790: "money",
  869: "inet",
  1000: "bool[]",
  1005: "int2[]",
  1007: "int4[]",
  1009: "text[]",
  1015: "varchar[]",
  1016: "int8[]",
  1021: "float4[]",
  1022: "float8[]",
  1042: "bpchar",
  1043: "varchar",
  1082: "date",
  1083: "time",
  1114: "timestamp",
  1115: "timestamp[]",
  1182: "date[]",
  1184: "timestamptz",
  1185: "timestamptz[]",
  1186: "interval",
  1231: "numeric[]",
  1266: "timetz",
  1700: "numeric",
  2950: "uuid",
  2951: "uuid[]",
  3802: "jsonb",
  3807: "jsonb[]",
};

/**
 * Types whose JSON form is exact: numbers that fit a double, booleans, JSON, and arrays of those or
 * of strings. Everything else stays in PostgreSQL's own text form, which loses nothing: int8 and
 * numeric keep every digit, timestamps keep microseconds and their zone, bytea reads as \x… hex.
 */
const DECODED_OIDS = [
  16, 21, 23, 26, 700, 701, 114, 3802, 1000, 1005, 1007, 1028, 1016, 1021, 1022, 1014, 1015, 1009, 199, 3807,
];
const DECODERS = new Map<number, (text: string) => unknown>(
  DECODED_OIDS.map((oid) => [oid, pg.types.getTypeParser(oid, "text") as (text: string) => unknown]),
);

/** One value, from PostgreSQL's text format to JSON, the same way for both drivers. */
function decodeValue(text: string | null, oid: number): unknown {
  if (text === null) return null;
  const decode = DECODERS.get(oid);
  if (!decode) return text;
  try {
    const value = decode(text);
    // NaN and Infinity have no JSON form; their text does.
    return typeof value === "number" && !Number.isFinite(value) ? text : value;
  } catch {
    return text;
  }
}

/**
 * A parameter in PostgreSQL's text format, so that both drivers send the same thing: arrays become
 * array literals (for `= ANY($1)`), objects become JSON, the rest their plain text.
 */
function encodeParam(value: unknown): string | null {
  if (value === null || value === undefined) return null;
  if (typeof value === "string") return value;
  if (Array.isArray(value)) return arrayLiteral(value);
  if (typeof value === "object") return JSON.stringify(value);
  return String(value);
}

function arrayLiteral(values: readonly unknown[]): string {
  const items = values.map((item) => {
    if (item === null || item === undefined) return "NULL";
    if (Array.isArray(item)) return arrayLiteral(item);
    const text = typeof item === "object" ? JSON.stringify(item) : String(item);
    return `"${text.replace(/[\\"]/g, "\\$&")}"`;
  });
  return `{${items.join(",")}}`;
}

// ─── results ──────────────────────────────────────────────────────────────────────────────────

interface Field {
  readonly name: string;
  readonly dataTypeID: number;
  readonly type?: string;
}

interface StatementResult {
  /** The command tag's verb ("SELECT", "INSERT"…); null when the result was cut before it came. */
  readonly command: string | null;
  /** Rows returned or changed, as PostgreSQL counted them; null when it had not finished counting. */
  readonly rowCount: number | null;
  readonly fields: readonly Field[];
  readonly rows: readonly Record<string, unknown>[];
  readonly truncated: boolean;
}

/** What a driver hands back for one statement; the rows went to the collector. */
interface StatementOutcome {
  readonly command: string | null;
  readonly rowCount: number | null;
  /** The server had more rows than the collector asked for. */
  readonly more: boolean;
}

/**
 * Keeps rows up to a row limit and a byte budget shared by every statement of a call. Drivers ask
 * `accepting` before decoding a row, so rows past the limits cost nothing.
 */
class RowCollector {
  readonly rows: Record<string, unknown>[] = [];
  fields: Field[] = [];
  cut: "rows" | "bytes" | undefined;
  #keys: string[] = [];
  readonly #maxRows: number;
  readonly #budget: { bytesLeft: number };

  constructor(maxRows: number, budget: { bytesLeft: number }) {
    this.#maxRows = maxRows;
    this.#budget = budget;
  }

  /** The server's row limit: one more than kept, so that a cut is known for certain. */
  get fetchLimit(): number {
    return this.#maxRows + 1;
  }

  get accepting(): boolean {
    return this.cut === undefined;
  }

  setFields(fields: readonly { name: string; dataTypeID: number }[]): void {
    const seen = new Map<string, number>();
    this.fields = fields.map((field) => {
      // Duplicate column names ("SELECT 1 AS a, 2 AS a") would overwrite each other in a row object.
      const count = (seen.get(field.name) ?? 0) + 1;
      seen.set(field.name, count);
      const name = count === 1 ? field.name : `${field.name}_${count}`;
      const type = TYPE_NAMES[field.dataTypeID];
      return type === undefined
        ? { name, dataTypeID: field.dataTypeID }
        : { name, dataTypeID: field.dataTypeID, type };
    });
    this.#keys = this.fields.map((field) => field.name);
  }

  add(values: readonly unknown[]): void {
    if (this.cut !== undefined) return;
    if (this.rows.length >= this.#maxRows) {
      this.cut = "rows";
      return;
    }
    const row: Record<string, unknown> = {};
    for (let i = 0; i < this.#keys.length; i++) row[this.#keys[i] as string] = values[i] ?? null;
    const bytes = Buffer.byteLength(JSON.stringify(row), "utf8") + 1;
    if (bytes > this.#budget.bytesLeft) {
      this.cut = "bytes";
      return;
    }
    this.#budget.bytesLeft -= bytes;
    this.rows.push(row);
  }

  result(outcome: StatementOutcome): StatementResult {
    if (outcome.more && this.cut === undefined) this.cut = "rows";
    return {
      command: outcome.command,
      rowCount: outcome.rowCount,
      fields: this.fields,
      rows: this.rows,
      truncated: this.cut !== undefined,
    };
  }
}

/** "INSERT 0 3" -> INSERT, 3; "CREATE TABLE" -> CREATE TABLE, null. */
function parseCommandTag(tag: string): { command: string; rowCount: number | null } {
  const match = /^(.*?)((?: \d+)+)?$/.exec(tag);
  const numbers = match?.[2]?.trim().split(" ") ?? [];
  const last = numbers.at(-1);
  return { command: match?.[1] ?? tag, rowCount: last === undefined ? null : Number(last) };
}

// ─── drivers ──────────────────────────────────────────────────────────────────────────────────

/** One connection, held for the length of one call. */
interface Lease {
  /** One user statement, through the extended protocol; rows go to `collector`. */
  statement(
    sql: string,
    params: readonly (string | null)[],
    collector: RowCollector,
  ): Promise<StatementOutcome>;
  /** Statements of our own (fixed text, simple protocol, several allowed). */
  control(sql: string): Promise<void>;
  /** `SELECT 1`, which leaves nothing behind: for health checks. */
  ping(): Promise<void>;
  /**
   * Ends the call's transaction and resets the session for the next call (see SESSION_RESET).
   * Rejects only when COMMIT fails; a failed reset marks the connection for closing instead.
   */
  finish(commit: boolean): Promise<void>;
  /** The server's transaction status after the last statement: still inside a transaction block. */
  inTransaction(): boolean;
  /** Asks the server to cancel what this connection is running. Never rejects. */
  cancel(): Promise<void>;
  /** Cuts the connection, so that a statement the server did not cancel stops holding it. */
  abandon(): void;
  /**
   * Gives the connection back, reset if the call did not end with `finish`; or closes it (the
   * embedded one is reset instead) when `destroy` says it may carry state a later call must not see.
   */
  release(destroy: boolean): Promise<void>;
}

interface Driver {
  /** Where the database is, without credentials: for messages. */
  readonly where: string;
  readonly embedded: boolean;
  /**
   * Opens what needs opening (the embedded database) and runs a query on a connection of its own.
   * For a server, resolves with what its role may do beyond reading (see postgres-privileges.ts);
   * the embedded database has no host to reach and resolves undefined.
   */
  probe(signal: AbortSignal): Promise<RoleReport | undefined>;
  acquire(signal: AbortSignal): Promise<Lease>;
  stats(): PoolStats;
  close(): Promise<void>;
}

/**
 * What DISCARD ALL does, spelt out, because DISCARD ALL cannot run in a transaction block and so
 * cannot share a message with the ROLLBACK before it (a message of several statements is one
 * implicit transaction block); sent together they cost no extra round trip. It undoes what outlives
 * a transaction on a pooled connection: session settings and SET ROLE from a committed call, LISTEN,
 * session advisory locks (which a rollback keeps), prepared statements and held cursors, temporary
 * tables and sequence state.
 */
const SESSION_RESET =
  "CLOSE ALL; SET SESSION AUTHORIZATION DEFAULT; RESET ALL; DEALLOCATE ALL; UNLISTEN *; " +
  "SELECT pg_catalog.pg_advisory_unlock_all(); DISCARD PLANS; DISCARD TEMP; DISCARD SEQUENCES";

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

class ServerDriver implements Driver {
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

/**
 * One turn at a time on a single connection. PGlite serialises single queries, but a call is
 * several (BEGIN, statements, ROLLBACK), and another call's statement must not land in between.
 */
class Turns {
  #busy = false;
  readonly #waiting: (() => void)[] = [];

  get busy(): boolean {
    return this.#busy;
  }

  get waiting(): number {
    return this.#waiting.length;
  }

  take(signal: AbortSignal): Promise<void> {
    if (signal.aborted) return Promise.reject(signal.reason);
    if (!this.#busy) {
      this.#busy = true;
      return Promise.resolve();
    }
    return new Promise<void>((resolve, reject) => {
      const onAbort = () => {
        const index = this.#waiting.indexOf(grant);
        if (index >= 0) this.#waiting.splice(index, 1);
        reject(signal.reason);
      };
      const grant = () => {
        signal.removeEventListener("abort", onAbort);
        resolve();
      };
      signal.addEventListener("abort", onAbort, { once: true });
      this.#waiting.push(grant);
    });
  }

  give(): void {
    const next = this.#waiting.shift();
    if (next) next();
    else this.#busy = false;
  }
}

/** Turns per embedded database, so that backends sharing one instance also share its turns. */
const TURNS = new WeakMap<PGlite, Turns>();

function turnsOf(db: PGlite): Turns {
  let turns = TURNS.get(db);
  if (!turns) {
    turns = new Turns();
    TURNS.set(db, turns);
  }
  return turns;
}

/**
 * Which PGlite parses and serialises every type: all of them through ours, so values come out as
 * they do from a server (PGlite's defaults would turn int8 into BigInt, which JSON cannot carry) and
 * parameters go in exactly as encodeParam wrote them.
 */
function pgliteCodecs(db: PGlite): {
  parsers: Record<number, (text: string, oid?: number) => unknown>;
  serializers: Record<number, (value: unknown) => string>;
} {
  const oids = new Set<number>();
  // An instance's parsers start as a copy of PGlite's defaults, so its keys name every type it knows.
  for (const key of Object.keys(db.parsers)) {
    const oid = Number(key);
    if (Number.isInteger(oid)) oids.add(oid);
  }
  const parsers: Record<number, (text: string, oid?: number) => unknown> = {};
  const serializers: Record<number, (value: unknown) => string> = {};
  for (const oid of oids) {
    parsers[oid] = (text, type) => decodeValue(text, type ?? oid);
    serializers[oid] = (value) => String(value);
  }
  return { parsers, serializers };
}

class EmbeddedDriver implements Driver {
  readonly where: string;
  readonly embedded = true;
  readonly #config: PostgresBackendConfig;
  readonly #owned: boolean;
  readonly #log: Logger;
  #db: PGlite | undefined;
  #opening: Promise<PGlite> | undefined;
  #codecs: ReturnType<typeof pgliteCodecs> | undefined;

  constructor(config: PostgresBackendConfig, log: Logger, db: PGlite | undefined) {
    this.#config = config;
    this.#db = db;
    this.#owned = db === undefined;
    this.#log = log;
    this.where = db
      ? "the embedded PostgreSQL (PGlite) given by the host program"
      : config.dataDir
        ? `the embedded PostgreSQL (PGlite) in ${config.dataDir}`
        : "the embedded in-memory PostgreSQL (PGlite)";
  }

  async probe(signal: AbortSignal): Promise<undefined> {
    const db = await untilAborted(this.#open(), signal);
    const turns = turnsOf(db);
    await turns.take(signal);
    try {
      await db.query("SELECT 1");
    } finally {
      turns.give();
    }
    // It runs as a superuser, but inside this process, on a file system of its own: there is no
    // database host to reach (see the README).
    return undefined;
  }

  async acquire(signal: AbortSignal): Promise<Lease> {
    const db = this.#db ?? (await untilAborted(this.#open(), signal));
    const turns = turnsOf(db);
    await turns.take(signal);
    const codecs = this.#codecsFor(db);
    let clean = true;
    const reset = async (rollback: boolean) => {
      // Its one connection cannot be replaced, so it is reset instead (settings, role, temp tables).
      await db.exec(rollback && db.isInTransaction() ? `ROLLBACK; ${SESSION_RESET}` : SESSION_RESET);
      clean = true;
    };
    return {
      statement: async (sql, params, collector) => {
        clean = false;
        const result = await db.query<unknown[]>(sql, [...params], { rowMode: "array", ...codecs });
        collector.setFields(result.fields);
        for (const row of result.rows) {
          if (!collector.accepting) break;
          collector.add(row);
        }
        return {
          command: result.command ?? null,
          rowCount: result.rowCount ?? result.affectedRows ?? null,
          more: result.rows.length > collector.rows.length,
        };
      },
      control: async (sql) => {
        clean = false;
        await db.exec(sql);
      },
      ping: async () => {
        await db.query("SELECT 1");
      },
      finish: async (commit) => {
        if (commit) {
          clean = false;
          await db.exec("COMMIT");
        }
        // A failure is left to release, which tries again.
        await reset(!commit).catch(() => undefined);
      },
      inTransaction: () => db.isInTransaction(),
      // The embedded database runs on this thread: nothing can interrupt a statement.
      cancel: async () => undefined,
      abandon: () => undefined,
      release: async (destroy) => {
        try {
          if (destroy || !clean) await reset(true);
        } catch (error) {
          this.#log.warn({ err: describeError(error) }, "could not reset the embedded database's session");
        } finally {
          turns.give();
        }
      },
    };
  }

  stats(): PoolStats {
    const turns = this.#db ? turnsOf(this.#db) : undefined;
    const open = this.#db ? 1 : 0;
    return {
      total: open,
      idle: turns?.busy ? 0 : open,
      waiting: turns?.waiting ?? 0,
      max: 1,
    };
  }

  async close(): Promise<void> {
    const db = this.#db ?? (await this.#opening?.catch(() => undefined));
    this.#db = undefined;
    if (db && this.#owned && !db.closed) await db.close();
  }

  #codecsFor(db: PGlite): ReturnType<typeof pgliteCodecs> {
    // Array types are registered once the database is up, so the map is built on first use.
    this.#codecs ??= pgliteCodecs(db);
    return this.#codecs;
  }

  #open(): Promise<PGlite> {
    if (this.#db) return Promise.resolve(this.#db);
    this.#opening ??= (async () => {
      const started = performance.now();
      const { PGlite } = await loadPglite();
      let db = this.#config.dataDir
        ? await PGlite.create({ dataDir: this.#config.dataDir })
        : await PGlite.create();
      try {
        if (this.#config.sampleData && !(await hasOwnTables(db))) {
          await db.transaction(async (tx) => {
            await tx.exec(SAMPLE_DATA_SQL);
          });
          this.#log.info("loaded the sample data (customers, products, orders) into the embedded database");
        }
        if (this.#config.dataDir && this.#config.readOnly) {
          // PGlite runs as a superuser, whose SQL can write any file of the data directory (COPY …
          // TO a file) even in a read-only transaction, and that folder is on the host. A read-only
          // backend serves a copy in memory instead, so that the folder stays exactly as it was.
          const image = await db.dumpDataDir("none");
          await db.close();
          db = await PGlite.create({ loadDataDir: image });
        }
      } catch (error) {
        await db.close().catch(() => undefined);
        throw error;
      }
      this.#log.info({ ms: Math.round(performance.now() - started) }, "embedded PostgreSQL (PGlite) ready");
      this.#db = db;
      return db;
    })().finally(() => {
      this.#opening = undefined;
    });
    return this.#opening;
  }
}

/**
 * PGlite weighs about 27 MB installed and serves only the embedded database, which is meant for
 * trials: it is an optional peer dependency, loaded when an embedded database opens.
 */
async function loadPglite(): Promise<typeof import("@electric-sql/pglite")> {
  try {
    return await import("@electric-sql/pglite");
  } catch (error) {
    const missing =
      (error as NodeJS.ErrnoException).code === "ERR_MODULE_NOT_FOUND" &&
      String((error as Error).message).includes("'@electric-sql/pglite'");
    if (!missing) throw error;
    throw new GatewayError(
      "backend_unavailable",
      "The embedded PostgreSQL (a postgres backend without url) needs the package @electric-sql/pglite, " +
        "which is not installed. Install it next to mcp-switchboard (npm install @electric-sql/pglite), " +
        "or give the backend the url of a PostgreSQL server.",
      { cause: error },
    );
  }
}

async function hasOwnTables(db: PGlite): Promise<boolean> {
  const result = await db.query<{ found: boolean }>(
    `SELECT EXISTS (
       SELECT 1 FROM pg_catalog.pg_class c JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace
       WHERE c.relkind IN ('r', 'p', 'v', 'm', 'f')
         AND n.nspname NOT IN ('pg_catalog', 'information_schema') AND n.nspname NOT LIKE 'pg\\_%'
     ) AS found`,
  );
  return result.rows[0]?.found === true;
}

/** host:port/database, never the user's password. */
function describeServer(url: string): string {
  const parsed = new URL(url);
  const database = decodeURIComponent(parsed.pathname.replace(/^\//, "")) || "(default database)";
  return `PostgreSQL at ${parsed.hostname}:${parsed.port || "5432"}/${database}`;
}

// ─── errors ───────────────────────────────────────────────────────────────────────────────────

/** What pg and PGlite both throw for an ErrorResponse from the server. */
interface ServerError {
  readonly message: string;
  readonly code: string;
  readonly severity?: string;
  readonly detail?: string;
  readonly hint?: string;
  readonly position?: string;
}

function isServerError(error: unknown): error is ServerError {
  if (!(error instanceof Error)) return false;
  const { code, severity } = error as { code?: unknown; severity?: unknown };
  return typeof code === "string" && /^[0-9A-Z]{5}$/.test(code) && typeof severity === "string";
}

/**
 * SQLSTATEs that say the database, not the statement, is the problem: connection exceptions (but
 * not 08P01, which is also what a wrong number of parameters gets), shutdowns, too many
 * connections, failed authentication, missing database.
 */
function isUnavailable(code: string): boolean {
  return code !== "08P01" && /^(08|57P0|53300|28|3D000)/.test(code);
}

/** Condition names of the SQLSTATEs a caller meets most, to make the code readable at a glance. */
const CONDITIONS: Readonly<Record<string, string>> = {
  "0A000": "feature_not_supported",
  "22001": "string_data_right_truncation",
  "22003": "numeric_value_out_of_range",
  "22P02": "invalid_text_representation",
  "23502": "not_null_violation",
  "23503": "foreign_key_violation",
  "23505": "unique_violation",
  "23514": "check_violation",
  "25001": "active_sql_transaction",
  "25006": "read_only_sql_transaction",
  "2BP01": "dependent_objects_still_exist",
  "40001": "serialization_failure",
  "40P01": "deadlock_detected",
  "42501": "insufficient_privilege",
  "42601": "syntax_error",
  "42703": "undefined_column",
  "42704": "undefined_object",
  "42710": "duplicate_object",
  "42804": "datatype_mismatch",
  "42883": "undefined_function",
  "42P01": "undefined_table",
  "42P02": "undefined_parameter",
  "42P07": "duplicate_table",
  "55P03": "lock_not_available",
  "57014": "query_canceled",
};

/** A statement left the transaction Switchboard opened for the call (a lone COMMIT or ROLLBACK). */
class TransactionEnded extends Error {
  readonly command: string | null;
  constructor(command: string | null) {
    super("the statement ended the call's transaction");
    this.command = command;
  }
}

// ─── tools ────────────────────────────────────────────────────────────────────────────────────

const sqlSchema = z
  .string()
  .min(1)
  .describe("One SQL statement. Put values in $1, $2, … placeholders and pass them in params.");
const paramsSchema = z
  .array(z.unknown())
  .max(65_535)
  .optional()
  .describe(
    "Values for $1, $2, … in order. Strings, numbers, booleans and null as they are; arrays are sent " +
      "as PostgreSQL arrays (for = ANY($1)); objects as JSON (pass a JSON array as a string).",
  );

const queryArgs = z.strictObject({ sql: sqlSchema, params: paramsSchema });

function transactionArgs(maxStatements: number) {
  return z.strictObject({
    statements: z
      .array(z.strictObject({ sql: sqlSchema, params: paramsSchema }))
      .min(1)
      .max(maxStatements)
      .describe("The statements, run in this order in one transaction."),
  });
}

const listTablesArgs = z.strictObject({
  schema: z
    .string()
    .min(1)
    .optional()
    .describe("Only this schema. Default: every schema but the system ones."),
});

const describeTableArgs = z.strictObject({
  table: z.string().min(1).describe("The table or view name, as stored (case-sensitive, unquoted)."),
  schema: z
    .string()
    .min(1)
    .optional()
    .describe("Its schema. Default: the first schema on the search path that has it."),
});

const fieldOut = z.object({
  name: z.string(),
  dataTypeID: z.number().int(),
  type: z.string().optional(),
});
const statementOut = z.object({
  command: z.string().nullable(),
  rowCount: z.number().int().nullable(),
  fields: z.array(fieldOut),
  rows: z.array(z.record(z.string(), z.unknown())),
  truncated: z.boolean(),
});
const transactionOut = z.object({ statements: z.array(statementOut), truncated: z.boolean() });
const tableOut = z.object({
  schema: z.string(),
  name: z.string(),
  type: z.string(),
  description: z.string().nullable(),
});
const listTablesOut = z.object({ tables: z.array(tableOut), truncated: z.boolean() });
const describeTableOut = z.object({
  schema: z.string(),
  name: z.string(),
  type: z.string(),
  description: z.string().nullable(),
  columns: z.array(
    z.object({
      name: z.string(),
      type: z.string(),
      nullable: z.boolean(),
      default: z.string().nullable(),
      identity: z.string().nullable(),
      description: z.string().nullable(),
    }),
  ),
  constraints: z.array(z.object({ name: z.string(), type: z.string(), definition: z.string() })),
  indexes: z.array(
    z.object({ name: z.string(), definition: z.string(), unique: z.boolean(), primary: z.boolean() }),
  ),
  truncated: z.boolean(),
});

/** A JSON Schema for a tool, from the zod schema that also checks the arguments. */
function jsonSchema(schema: z.ZodType, io: "input" | "output"): Tool["inputSchema"] {
  const { $schema: _dialect, ...rest } = z.toJSONSchema(schema, { io }) as Record<string, unknown>;
  return rest as Tool["inputSchema"];
}

const LIST_TABLES_SQL = `
SELECT n.nspname AS schema, c.relname AS name,
       CASE c.relkind WHEN 'r' THEN 'table' WHEN 'p' THEN 'partitioned table' WHEN 'v' THEN 'view'
                      WHEN 'm' THEN 'materialized view' WHEN 'f' THEN 'foreign table' END AS type,
       pg_catalog.obj_description(c.oid, 'pg_class') AS description
FROM pg_catalog.pg_class c
JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace
WHERE c.relkind IN ('r', 'p', 'v', 'm', 'f')
  AND n.nspname NOT IN ('pg_catalog', 'information_schema')
  AND n.nspname NOT LIKE 'pg\\_toast%' AND n.nspname NOT LIKE 'pg\\_temp\\_%'
  AND ($1::text IS NULL OR n.nspname = $1::text)
ORDER BY 1, 2`;

const FIND_TABLE_SQL = `
SELECT c.oid, n.nspname AS schema, c.relname AS name,
       CASE c.relkind WHEN 'r' THEN 'table' WHEN 'p' THEN 'partitioned table' WHEN 'v' THEN 'view'
                      WHEN 'm' THEN 'materialized view' WHEN 'f' THEN 'foreign table' END AS type,
       pg_catalog.obj_description(c.oid, 'pg_class') AS description
FROM pg_catalog.pg_class c
JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace
WHERE c.relname = $1::text AND c.relkind IN ('r', 'p', 'v', 'm', 'f')
  AND CASE WHEN $2::text IS NULL THEN pg_catalog.pg_table_is_visible(c.oid) ELSE n.nspname = $2::text END`;

const COLUMNS_SQL = `
SELECT a.attname AS name, pg_catalog.format_type(a.atttypid, a.atttypmod) AS type,
       NOT a.attnotnull AS nullable, pg_catalog.pg_get_expr(d.adbin, d.adrelid) AS default,
       CASE a.attidentity WHEN 'a' THEN 'always' WHEN 'd' THEN 'by default' END AS identity,
       pg_catalog.col_description(a.attrelid, a.attnum) AS description
FROM pg_catalog.pg_attribute a
LEFT JOIN pg_catalog.pg_attrdef d ON d.adrelid = a.attrelid AND d.adnum = a.attnum
WHERE a.attrelid = $1::oid AND a.attnum > 0 AND NOT a.attisdropped
ORDER BY a.attnum`;

// Not-null constraints (PostgreSQL 18 lists them here too) are already in the columns' `nullable`.
const CONSTRAINTS_SQL = `
SELECT conname AS name,
       CASE contype WHEN 'p' THEN 'primary key' WHEN 'f' THEN 'foreign key' WHEN 'u' THEN 'unique'
                    WHEN 'c' THEN 'check' WHEN 'x' THEN 'exclusion' ELSE contype::text END AS type,
       pg_catalog.pg_get_constraintdef(oid, true) AS definition
FROM pg_catalog.pg_constraint
WHERE conrelid = $1::oid AND contype <> 'n'
ORDER BY contype, conname`;

const INDEXES_SQL = `
SELECT i.relname AS name, pg_catalog.pg_get_indexdef(x.indexrelid) AS definition,
       x.indisunique AS unique, x.indisprimary AS primary
FROM pg_catalog.pg_index x
JOIN pg_catalog.pg_class i ON i.oid = x.indexrelid
WHERE x.indrelid = $1::oid
ORDER BY i.relname`;

// ─── the backend ──────────────────────────────────────────────────────────────────────────────

/** Runs one user statement of a call; rows go to the collector. */
type Run = (sql: string, params: readonly unknown[], collector: RowCollector) => Promise<StatementResult>;

const NEVER_ABORTED = new AbortController().signal;

export class PostgresBackend implements Backend {
  readonly name: string;
  readonly readOnly: boolean;
  readonly #config: PostgresBackendConfig;
  readonly #driver: Driver;
  readonly #log: Logger;
  readonly #tools: readonly Tool[];
  readonly #transactionArgs: ReturnType<typeof transactionArgs>;
  readonly #secrets: readonly string[];
  readonly #initialDelayMs: number;
  readonly #maxDelayMs: number;
  #state: BackendState = "stopped";
  #events: BackendEvents | undefined;
  #lastError = "";
  #attempt = 0;
  #probeTimer: NodeJS.Timeout | undefined;
  #probing: Promise<void> | undefined;
  #closed = false;
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
    this.name = name;
    this.readOnly = config.readOnly;
    this.#config = config;
    this.#log = logger.child({ server: name });
    this.#initialDelayMs = options.reconnect?.initialDelayMs ?? 500;
    this.#maxDelayMs = options.reconnect?.maxDelayMs ?? 30_000;
    this.#secrets = secretsOf(config.url);
    this.#driver =
      config.url === undefined
        ? new EmbeddedDriver(config, this.#log, options.embedded)
        : new ServerDriver(config.url, config, this.#log);
    this.#transactionArgs = transactionArgs(config.maxStatements);
    this.#tools = this.#makeTools();
  }

  get state(): BackendState {
    return this.#state;
  }

  /** Why the backend is not up, for logs and health. */
  get lastError(): string {
    return this.#lastError;
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
    return this.#state === "up" ? { ...EMPTY_CATALOG, tools: this.#tools } : EMPTY_CATALOG;
  }

  async start(events: BackendEvents): Promise<void> {
    this.#events = events;
    this.#closed = false;
    this.#setState("starting");
    await this.#probe();
  }

  async callTool(call: ToolCall, ctx: CallContext): Promise<CallToolResult> {
    if (this.#state !== "up" && this.#refused) {
      throw new GatewayError(
        "backend_unavailable",
        `Database backend "${this.name}" is not available: its database role has rights that reach ` +
          "beyond the data, so the read-only backend refuses to serve. An operator must connect it as a " +
          "role that can only read; the gateway's log and health say which rights and how.",
        { data: { server: this.name, reason: "privileged_role" } },
      );
    }
    if (this.#state !== "up") {
      throw new GatewayError(
        "backend_unavailable",
        `Database backend "${this.name}" is not available: ${this.#driver.where} ` +
          `${this.#lastError ? `failed (${this.#lastError})` : `is ${this.#state}`}. Check that the database is up ` +
          "and that the url in the backend's config is right; Switchboard keeps retrying by itself.",
        { data: { server: this.name } },
      );
    }
    const work = this.#dispatch(call, ctx.signal);
    return await untilAborted(work, ctx.signal).catch((error: unknown) => {
      throw this.#translate(error, call.tool, ctx.signal);
    });
  }

  async readResource(uri: string): Promise<ReadResourceResult> {
    throw noResource(this.name, "postgres", uri);
  }

  async getPrompt(name: string): Promise<GetPromptResult> {
    throw noPrompt(this.name, "postgres", name);
  }

  async health(signal: AbortSignal): Promise<HealthResult> {
    const stats = this.#driver.stats();
    const data = {
      pool: stats,
      embedded: this.#driver.embedded,
      readOnly: this.readOnly,
      ...(this.#privileged ? { privilegedRole: true } : {}),
    };
    if (this.#state !== "up") {
      return {
        status: "unhealthy",
        detail: `${this.#driver.where}: ${this.#lastError || this.#state}`,
        data,
      };
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
    const started = performance.now();
    try {
      const lease = await this.#driver.acquire(signal);
      let broken = true;
      try {
        await untilAborted(lease.ping(), signal);
        broken = false;
      } finally {
        await lease.release(broken);
      }
      return { status: "healthy", latencyMs: performance.now() - started, data };
    } catch (error) {
      return {
        status: "unhealthy",
        detail: `SELECT 1 failed on ${this.#driver.where}: ${this.#redact(describeError(error))}`,
        data,
      };
    }
  }

  async close(): Promise<void> {
    this.#closed = true;
    clearTimeout(this.#probeTimer);
    this.#probeTimer = undefined;
    this.#setState("stopped");
    await this.#probing?.catch(() => undefined);
    await this.#driver
      .close()
      .catch((error: unknown) =>
        this.#log.warn(
          { err: this.#redact(describeError(error)) },
          "closing the database connections failed",
        ),
      );
  }

  // ─── calls ──────────────────────────────────────────────────────────────────────────────────

  async #dispatch(call: ToolCall, signal: AbortSignal): Promise<CallToolResult> {
    switch (call.tool) {
      case "query": {
        const args = this.#args(queryArgs, call);
        return this.#statements(signal, this.readOnly, [args], false);
      }
      case "transaction": {
        const args = this.#args(this.#transactionArgs, call);
        return this.#statements(signal, this.readOnly, args.statements, true);
      }
      case "list_tables":
        return this.#listTables(signal, this.#args(listTablesArgs, call));
      case "describe_table":
        return this.#describeTable(signal, this.#args(describeTableArgs, call));
      default:
        throw new GatewayError(
          "unknown_tool",
          `Database backend "${this.name}" has no tool "${call.tool}"; its tools are ` +
            `${this.#tools.map((t) => t.name).join(", ")}.`,
          { data: { server: this.name, tool: call.tool } },
        );
    }
  }

  async #statements(
    signal: AbortSignal,
    readOnly: boolean,
    statements: readonly { sql: string; params?: readonly unknown[] | undefined }[],
    many: boolean,
  ): Promise<CallToolResult> {
    const budget = { bytesLeft: this.#config.maxResultBytes };
    const results: StatementResult[] = [];
    const collectors: RowCollector[] = [];
    const failure = await this.#inTransaction(signal, readOnly, async (run) => {
      for (const [index, statement] of statements.entries()) {
        const collector = new RowCollector(this.#config.maxRows, budget);
        collectors.push(collector);
        try {
          results.push(await run(statement.sql, statement.params ?? [], collector));
        } catch (error) {
          throw new StatementFailed(error, index);
        }
      }
    });
    if (failure !== undefined) return this.#failure(failure, statements.length, many, readOnly);
    const truncated = results.some((r) => r.truncated);
    const notes = collectors.flatMap((collector, i) =>
      collector.cut ? [this.#truncationNote(collector, many ? i + 1 : undefined)] : [],
    );
    if (!many) {
      const [only] = results as [StatementResult];
      return this.#result(only, notes);
    }
    return this.#result({ statements: results, truncated }, notes);
  }

  async #listTables(signal: AbortSignal, args: z.output<typeof listTablesArgs>): Promise<CallToolResult> {
    const budget = { bytesLeft: this.#config.maxResultBytes };
    const collector = new RowCollector(this.#config.maxRows, budget);
    let result: StatementResult | undefined;
    const failure = await this.#inTransaction(signal, true, async (run) => {
      result = await run(LIST_TABLES_SQL, [args.schema ?? null], collector);
    });
    if (failure !== undefined || !result) return this.#failure(failure, 1, false, true);
    const tables = result.rows;
    const notes = collector.cut ? [this.#truncationNote(collector, undefined)] : [];
    if (tables.length === 0) {
      notes.push(
        args.schema === undefined
          ? "The database has no tables or views outside the system schemas."
          : `Schema "${args.schema}" has no tables or views (or does not exist); call list_tables without a schema to see all.`,
      );
    }
    return this.#result({ tables, truncated: result.truncated }, notes);
  }

  async #describeTable(
    signal: AbortSignal,
    args: z.output<typeof describeTableArgs>,
  ): Promise<CallToolResult> {
    const budget = { bytesLeft: this.#config.maxResultBytes };
    const collector = () => new RowCollector(this.#config.maxRows, budget);
    let described: Record<string, unknown> | undefined;
    const failure = await this.#inTransaction(signal, true, async (run) => {
      const found = await run(FIND_TABLE_SQL, [args.table, args.schema ?? null], collector());
      const table = found.rows[0];
      if (!table) return;
      const oid = String(table.oid);
      const columns = await run(COLUMNS_SQL, [oid], collector());
      const constraints = await run(CONSTRAINTS_SQL, [oid], collector());
      const indexes = await run(INDEXES_SQL, [oid], collector());
      described = {
        schema: table.schema,
        name: table.name,
        type: table.type,
        description: table.description,
        columns: columns.rows,
        constraints: constraints.rows,
        indexes: indexes.rows,
        truncated: columns.truncated || constraints.truncated || indexes.truncated,
      };
    });
    if (failure !== undefined) return this.#failure(failure, 1, false, true);
    if (!described) {
      const where = args.schema === undefined ? "on the search path" : `in schema "${args.schema}"`;
      return this.#error(
        `Table "${args.table}" was not found ${where} of database backend "${this.name}". ` +
          "Call list_tables to see the tables and views there are (names are case-sensitive).",
        { table: args.table, ...(args.schema === undefined ? {} : { schema: args.schema }) },
      );
    }
    const notes = described.truncated
      ? [
          `The description was cut at ${this.#config.maxRows} rows per part or ${this.#config.maxResultBytes} bytes.`,
        ]
      : [];
    return this.#result(described, notes);
  }

  /**
   * Runs `work` in a transaction of its own: read-only (and rolled back) or read-write (and
   * committed). Resolves undefined when done, or with the statement failure to report; throws what
   * is not the caller's to fix (the database is unreachable).
   */
  async #inTransaction(
    signal: AbortSignal,
    readOnly: boolean,
    work: (run: Run) => Promise<void>,
  ): Promise<StatementFailed | undefined> {
    const lease = await this.#driver.acquire(signal);
    let destroy = false;
    const guard = new StatementGuard(
      lease,
      this.#driver.embedded ? undefined : this.#config.statementTimeoutMs,
    );
    const onAbort = () => guard.stop("aborted");
    signal.addEventListener("abort", onAbort, { once: true });
    const run: Run = async (sql, params, collector) => {
      if (signal.aborted) throw signal.reason;
      const outcome = await guard.run(() => lease.statement(sql, params.map(encodeParam), collector));
      if (!lease.inTransaction()) throw new TransactionEnded(outcome.command);
      return collector.result(outcome);
    };
    try {
      await lease.control(this.#begin(readOnly));
      try {
        await work(run);
      } catch (error) {
        const failure = error instanceof StatementFailed ? error : new StatementFailed(error);
        if (failure.cause instanceof TransactionEnded) {
          // Whatever it left behind (session settings made before a COMMIT) must not reach another call.
          destroy = true;
          return failure;
        }
        // A stopped connection is closed, which rolls back; anything else is rolled back and reset.
        if (guard.stopped === undefined) await lease.finish(false);
        if (failure.cause instanceof StatementTimedOut) return failure;
        if (!isServerError(failure.cause) || isUnavailable(failure.cause.code)) throw failure.cause;
        return failure;
      }
      try {
        await lease.finish(!readOnly);
      } catch (error) {
        // COMMIT itself failed (a deferred constraint, a serialization failure): the caller's to fix.
        if (isServerError(error) && !isUnavailable(error.code)) return new StatementFailed(error, "commit");
        throw error;
      }
      return undefined;
    } catch (error) {
      destroy = true;
      throw error;
    } finally {
      signal.removeEventListener("abort", onAbort);
      guard.dispose();
      await lease.release(destroy || guard.stopped !== undefined || signal.aborted);
    }
  }

  #begin(readOnly: boolean): string {
    // The SELECT takes the transaction's snapshot, after which PostgreSQL refuses SET TRANSACTION
    // READ WRITE (before it, that statement would turn the transaction read-write). REPEATABLE READ
    // gives all statements of a read-only call one consistent view.
    const begin = readOnly ? "BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY" : "BEGIN";
    const timeout = this.#driver.embedded
      ? ""
      : `; SET LOCAL statement_timeout = ${this.#config.statementTimeoutMs}`;
    return `${begin}${timeout}; SELECT 1`;
  }

  #args<S extends z.ZodType>(schema: S, call: ToolCall): z.output<S> {
    const parsed = schema.safeParse(call.args);
    if (parsed.success) return parsed.data;
    const problems = parsed.error.issues
      .map((issue) => `${issue.path.length > 0 ? issue.path.join(".") : "arguments"}: ${issue.message}`)
      .join("; ");
    throw new InvalidArguments(
      `Invalid arguments for tool "${call.tool}" of database backend "${this.name}": ${problems}. ` +
        "See the tool's inputSchema.",
      { server: this.name, tool: call.tool },
    );
  }

  #result(structured: object, notes: readonly string[]): CallToolResult {
    return {
      content: [
        { type: "text", text: JSON.stringify(structured) },
        ...notes.map((text) => ({ type: "text" as const, text })),
      ],
      structuredContent: structured as Record<string, unknown>,
    };
  }

  #error(text: string, data: Record<string, unknown>): CallToolResult {
    return {
      content: [{ type: "text", text }],
      isError: true,
      _meta: { "switchboard/error": { code: "backend_error", server: this.name, ...data } },
    };
  }

  #truncationNote(collector: RowCollector, statement: number | undefined): string {
    const which = statement === undefined ? "The result" : `The result of statement ${statement}`;
    const kept = `${collector.rows.length} row${collector.rows.length === 1 ? "" : "s"}`;
    const why =
      collector.cut === "rows"
        ? `this backend returns at most ${this.#config.maxRows} rows per statement (maxRows)`
        : `this backend returns at most ${this.#config.maxResultBytes} bytes of rows per call (maxResultBytes)`;
    return (
      `Truncated: ${which} was cut to ${kept} because ${why}; more rows exist. ` +
      "Add a LIMIT or a WHERE clause, or select fewer columns, to see the rest."
    );
  }

  #failure(
    failure: StatementFailed | undefined,
    count: number,
    many: boolean,
    readOnly: boolean,
  ): CallToolResult {
    const cause = failure?.cause;
    const index = typeof failure?.index === "number" ? failure.index : undefined;
    const which =
      failure?.index === "commit"
        ? "COMMIT"
        : many && index !== undefined
          ? `Statement ${index + 1} of ${count}`
          : "The statement";
    const undone = many ? (readOnly ? "" : " Nothing of the transaction took effect.") : "";
    if (cause instanceof TransactionEnded) {
      const committed = !readOnly && many && cause.command === "COMMIT" && (index ?? 0) > 0;
      return this.#error(
        `${which} ended the transaction Switchboard runs each call in (${cause.command ?? "a transaction command"}), ` +
          `so database backend "${this.name}" stopped there. Leave out COMMIT, ROLLBACK and the like` +
          (readOnly ? "." : ": to group statements, pass them all to the transaction tool.") +
          (committed ? " The statements before it were committed." : ""),
        {
          reason: "transaction_ended",
          ...(index === undefined ? {} : { statement: index + 1 }),
        },
      );
    }
    if (cause instanceof StatementTimedOut) {
      return this.#error(
        `${which} ran longer than ${cause.limitMs} ms, the limit of database backend "${this.name}" ` +
          "(statementTimeoutMs), so Switchboard cancelled it on the server (SQLSTATE 57014 query_canceled). " +
          `Narrow the query or add an index.${undone}`,
        {
          sqlstate: "57014",
          condition: "query_canceled",
          reason: "statement_timeout",
          ...(many && index !== undefined ? { statement: index + 1 } : {}),
        },
      );
    }
    if (isServerError(cause)) {
      const condition = CONDITIONS[cause.code];
      const parts = [
        `${which} failed on database backend "${this.name}": ${this.#redact(cause.message)} ` +
          `(SQLSTATE ${cause.code}${condition ? ` ${condition}` : ""}).`,
      ];
      if (cause.detail) parts.push(`Detail: ${sentence(this.#redact(cause.detail))}`);
      if (cause.hint) parts.push(`Hint: ${sentence(this.#redact(cause.hint))}`);
      const advice = this.#advice(cause.code, cause.message, readOnly);
      if (advice) parts.push(advice);
      if (undone) parts.push(undone.trim());
      return this.#error(parts.join(" "), {
        sqlstate: cause.code,
        ...(condition ? { condition } : {}),
        ...(cause.position ? { position: Number(cause.position) } : {}),
        ...(many && index !== undefined ? { statement: index + 1 } : {}),
      });
    }
    return this.#error(
      `${which} failed on database backend "${this.name}": ${this.#redact(describeError(cause))}.`,
      {},
    );
  }

  #advice(code: string, message: string, readOnly: boolean): string | undefined {
    if (code === "25006" && readOnly) {
      return `This backend is read-only (readOnly: true), so PostgreSQL refuses writes; an operator can set readOnly: false to allow them.`;
    }
    if (code === "42601" && /multiple commands/.test(message)) {
      return "Send one statement per call; to run several together, use the transaction tool.";
    }
    if (code === "57014") {
      return `Statements may run for ${this.#config.statementTimeoutMs} ms (statementTimeoutMs); narrow the query or add an index.`;
    }
    if (code === "25001") return "Switchboard sets the transaction's mode itself; leave out SET TRANSACTION.";
    return undefined;
  }

  /** What a thrown failure of a call becomes: cancelled, or the database being out of reach. */
  #translate(error: unknown, tool: string, signal: AbortSignal): unknown {
    if (error instanceof GatewayError) return error;
    if (signal.aborted) {
      const reason = signal.reason;
      if (reason instanceof GatewayError) return reason;
      return new GatewayError(
        "cancelled",
        `The call to tool "${tool}" of database backend "${this.name}" was cancelled; the statement was cancelled on the server too.`,
        { data: { server: this.name, tool } },
      );
    }
    const reason = this.#redact(describeError(error));
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

  // ─── state ──────────────────────────────────────────────────────────────────────────────────

  #probe(): Promise<void> {
    this.#probing ??= (async () => {
      try {
        const role = await this.#driver.probe(NEVER_ABORTED);
        if (this.#closed) return;
        const privileged = role !== undefined && role.findings.length > 0;
        if (privileged && this.readOnly && !this.#config.allowPrivilegedRole) {
          this.#refuse(refusalMessage(this.name, this.#driver.where, role));
          return;
        }
        this.#attempt = 0;
        this.#lastError = "";
        this.#refused = false;
        if (this.#state !== "up") {
          this.#log.info({ where: this.#driver.where, readOnly: this.readOnly }, "database up");
          if (privileged) {
            this.#log.warn(
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
        this.#setState("up");
      } catch (error) {
        if (this.#closed) return;
        this.#refused = false;
        this.#lastError = this.#redact(describeError(error));
        this.#log.warn(
          { err: this.#lastError, where: this.#driver.where, attempt: this.#attempt },
          "database unreachable",
        );
        this.#setState("down", this.#lastError);
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
    if (reason !== this.#lastError) this.#log.error({ where: this.#driver.where }, reason);
    this.#lastError = reason;
    this.#privileged = true;
    this.#refused = true;
    this.#setState("down", reason);
    this.#scheduleProbe();
  }

  async #recheck(): Promise<void> {
    if (this.#closed || this.#probing || this.#probeTimer) return;
    await this.#probe();
  }

  #scheduleProbe(): void {
    if (this.#closed || this.#probeTimer) return;
    const delay = reconnectDelay(this.#attempt, this.#initialDelayMs, this.#maxDelayMs);
    this.#attempt++;
    this.#probeTimer = setTimeout(() => {
      this.#probeTimer = undefined;
      void this.#probe();
    }, delay);
    this.#probeTimer.unref();
  }

  #setState(state: BackendState, reason?: string): void {
    if (this.#state === state) return;
    this.#state = state;
    this.#events?.state(state, reason);
  }

  /** Replaces the password (and the whole URL) wherever a message might repeat them. */
  #redact(text: string): string {
    let out = text;
    for (const secret of this.#secrets) if (out.includes(secret)) out = out.split(secret).join("***");
    return out;
  }

  #makeTools(): Tool[] {
    const readOnly = this.readOnly;
    const { maxRows, maxResultBytes } = this.#config;
    const target = this.#driver.embedded ? "the embedded PostgreSQL database" : "the PostgreSQL database";
    const limits = `Results stop at ${maxRows} rows or ${maxResultBytes} bytes and then say truncated: true.`;
    const mode = readOnly
      ? "The database is read-only here: PostgreSQL itself refuses any write."
      : "Writes are allowed and take effect immediately.";
    const writeHints = readOnly
      ? { readOnlyHint: true, openWorldHint: false }
      : { readOnlyHint: false, destructiveHint: true, idempotentHint: false, openWorldHint: false };
    return [
      {
        name: "query",
        title: "Run a SQL statement",
        description:
          `Runs one SQL statement on ${target} and returns its rows, fields and row count. ${mode} ` +
          `Pass values as $1, $2, … with params, never inside the SQL text. One statement per call. ${limits}`,
        inputSchema: jsonSchema(queryArgs, "input"),
        outputSchema: jsonSchema(statementOut, "output"),
        annotations: { title: "Run a SQL statement", ...writeHints },
      },
      {
        name: "transaction",
        title: "Run SQL statements in one transaction",
        description: readOnly
          ? `Runs several SQL statements in order on ${target}, in one read-only transaction that sees a ` +
            `single consistent snapshot, and returns each one's result. ${mode} ${limits}`
          : `Runs several SQL statements in order on ${target} as one transaction, all or nothing: if any ` +
            `statement fails, none of them takes effect. Returns each statement's result. ${limits}`,
        inputSchema: jsonSchema(this.#transactionArgs, "input"),
        outputSchema: jsonSchema(transactionOut, "output"),
        annotations: { title: "Run SQL statements in one transaction", ...writeHints },
      },
      {
        name: "list_tables",
        title: "List tables and views",
        description: `Lists the tables and views of ${target} (outside the system schemas), with their schema, kind and comment.`,
        inputSchema: jsonSchema(listTablesArgs, "input"),
        outputSchema: jsonSchema(listTablesOut, "output"),
        annotations: { title: "List tables and views", readOnlyHint: true, openWorldHint: false },
      },
      {
        name: "describe_table",
        title: "Describe a table",
        description: `Describes one table or view of ${target}: its columns (type, nullability, default, comment), constraints (primary, foreign and unique keys, checks) and indexes.`,
        inputSchema: jsonSchema(describeTableArgs, "input"),
        outputSchema: jsonSchema(describeTableOut, "output"),
        annotations: { title: "Describe a table", readOnlyHint: true, openWorldHint: false },
      },
    ];
  }
}

/** A statement that failed, and which one (0-based) of the call's statements it was. */
class StatementFailed extends Error {
  /** 0-based position among the call's statements, or "commit" when the final COMMIT failed. */
  readonly index: number | "commit" | undefined;
  constructor(cause: unknown, index?: number | "commit") {
    super("a statement failed", { cause });
    this.index = index;
  }
}

/** Ends `text` with exactly one full stop. */
function sentence(text: string): string {
  return text.endsWith(".") ? text : `${text}.`;
}

/** The password, raw and as written in the URL, and the URL itself: never to appear in a message. */
function secretsOf(url: string | undefined): string[] {
  if (url === undefined || !URL.canParse(url)) return url ? [url] : [];
  const { password } = new URL(url);
  const secrets = [url];
  if (password.length >= 4) {
    secrets.push(password);
    try {
      secrets.push(decodeURIComponent(password));
    } catch {
      // A malformed escape: the raw form is already covered.
    }
  }
  return secrets;
}
