/**
 * The audit log as a PostgreSQL table, for replicas that share one log and for querying it with SQL.
 *
 * Records are inserted in multi-row INSERTs (one statement, up to `batchSize` rows). `durability:
 * "sync"` resolves each write once the INSERT holding it has committed, sharing INSERTs among
 * concurrent writes (group commit); "batched" inserts every `flushIntervalMs` or when a batch is full.
 * While PostgreSQL is unreachable records are held (up to `maxPending`) and retried with backoff.
 *
 * The table is created if missing, under an advisory lock so that replicas starting together do not
 * trip over each other's CREATE TABLE IF NOT EXISTS (which is not safe against concurrent creation).
 */
import { createRequire } from "node:module";
import type pg from "pg";
import { describeError } from "../core/errors.ts";
import type { Logger } from "../observability/logger.ts";
import { MAX_BATCH_SIZE, POSTGRES_SINK_CONFIG_DEFAULTS, parseTableName, type TableName } from "./config.ts";
import { type AuditDurability, type AuditRecord, QueuedSink } from "./record.ts";

export interface PostgresSinkOptions {
  /** postgres://user:password@host:port/database */
  readonly url: string;
  // Defaults of the options down to maxPending: the config's PostgreSQL sink (audit/config.ts).
  /** The table, optionally schema-qualified ("audit.calls"). */
  readonly table?: string;
  readonly durability?: AuditDurability;
  /** Batched mode: how often pending records are inserted, in ms. */
  readonly flushIntervalMs?: number;
  /** Most rows per INSERT (at most MAX_BATCH_SIZE). */
  readonly batchSize?: number;
  /** Most records held while PostgreSQL is unreachable; the oldest go first. */
  readonly maxPending?: number;
  /** How long connecting may take before an attempt fails. Default 5 000 ms. */
  readonly connectTimeoutMs?: number;
  /** How long an INSERT may take before it fails. Default 10 000 ms. */
  readonly queryTimeoutMs?: number;
  readonly logger: Logger;
}

export const POSTGRES_SINK_DEFAULTS = {
  ...POSTGRES_SINK_CONFIG_DEFAULTS,
  // Not in the config: how long the sink waits on PostgreSQL before it retries with backoff.
  connectTimeoutMs: 5_000,
  queryTimeoutMs: 10_000,
} as const;

const COLUMNS = [
  "time",
  "request_id",
  "principal",
  "server",
  "tool",
  "arguments",
  "outcome",
  "error",
  "duration_ms",
  "source",
  "record",
] as const;

export function createTableSql(name: TableName): string[] {
  const index = (column: string) =>
    `CREATE INDEX IF NOT EXISTS "${name.table}_${column}_idx" ON ${name.sql} (${column})`;
  return [
    ...(name.schema === undefined ? [] : [`CREATE SCHEMA IF NOT EXISTS "${name.schema}"`]),
    `CREATE TABLE IF NOT EXISTS ${name.sql} (
      id bigserial PRIMARY KEY,
      time timestamptz NOT NULL,
      request_id text NOT NULL,
      principal text NOT NULL,
      server text NOT NULL,
      tool text NOT NULL,
      arguments jsonb,
      outcome text NOT NULL,
      error text,
      duration_ms double precision NOT NULL,
      source text NOT NULL,
      record jsonb NOT NULL
    )`,
    index("time"),
    index("tool"),
    index("principal"),
  ];
}

export function createPostgresSink(options: PostgresSinkOptions): PostgresSink {
  return new PostgresSink(options);
}

export class PostgresSink extends QueuedSink<AuditRecord> {
  readonly table: TableName;
  readonly #pool: pg.Pool;
  readonly #logger: Logger;
  #ready: Promise<void> | undefined;

  constructor(options: PostgresSinkOptions) {
    const table = parseTableName(options.table ?? POSTGRES_SINK_DEFAULTS.table);
    const batchSize = options.batchSize ?? POSTGRES_SINK_DEFAULTS.batchSize;
    if (!Number.isInteger(batchSize) || batchSize < 1 || batchSize > MAX_BATCH_SIZE) {
      throw new RangeError(`audit postgres batchSize must be a whole number from 1 to ${MAX_BATCH_SIZE}`);
    }
    super({
      name: `postgres:${table.schema ?? "public"}.${table.table}`,
      durability: options.durability ?? POSTGRES_SINK_DEFAULTS.durability,
      flushIntervalMs: options.flushIntervalMs ?? POSTGRES_SINK_DEFAULTS.flushIntervalMs,
      maxBatch: batchSize,
      maxPending: options.maxPending ?? POSTGRES_SINK_DEFAULTS.maxPending,
      logger: options.logger,
    });
    this.table = table;
    this.#logger = options.logger;
    // Loaded here, not with the module: a gateway without a PostgreSQL sink never pays for the driver.
    // `require` because creating a sink is synchronous; pg ships CommonJS.
    const { Pool } = createRequire(import.meta.url)("pg") as typeof pg;
    this.#pool = new Pool({
      connectionString: options.url,
      // One INSERT at a time (group commit) plus the odd search.
      max: 2,
      connectionTimeoutMillis: options.connectTimeoutMs ?? POSTGRES_SINK_DEFAULTS.connectTimeoutMs,
      query_timeout: options.queryTimeoutMs ?? POSTGRES_SINK_DEFAULTS.queryTimeoutMs,
      idleTimeoutMillis: 30_000,
      fallback_application_name: "switchboard-audit",
      keepAlive: true,
    });
    // An idle connection that dies is reported here; unheard, the event would crash the process.
    this.#pool.on("error", (error) =>
      this.#logger.warn({ sink: this.name, err: describeError(error) }, "audit database connection lost"),
    );
  }

  /** The pool, for searching the same table (reader.ts) without a second connection setup. */
  get pool(): pg.Pool {
    return this.#pool;
  }

  /** Creates the table and its indexes if missing. Called before the first INSERT; idempotent. */
  ensureTable(): Promise<void> {
    this.#ready ??= createTable(this.#pool, this.table).catch((error: unknown) => {
      // Retried with the next commit: the database may simply not be up yet.
      this.#ready = undefined;
      throw error;
    });
    return this.#ready;
  }

  protected override queued(record: AuditRecord): AuditRecord {
    return record;
  }

  protected override release(): Promise<void> {
    return this.#pool.end();
  }

  protected override async commit(records: readonly AuditRecord[]): Promise<void> {
    await this.ensureTable();
    try {
      await this.#pool.query(insertStatement(this.table, records.length), records.flatMap(rowValues));
    } catch (error) {
      // A value PostgreSQL refuses (data exception, constraint, size limit) would fail its batch on
      // every retry and block the log: insert the rows one by one, and drop only those refused.
      if (!isDataError(error)) throw error;
      if (records.length === 1) {
        this.#dropRefused(records, error);
        return;
      }
      for (const record of records) {
        try {
          await this.#pool.query(insertStatement(this.table, 1), rowValues(record));
        } catch (rowError) {
          if (!isDataError(rowError)) throw rowError;
          this.#dropRefused([record], rowError);
        }
      }
    }
  }

  #dropRefused(records: readonly AuditRecord[], error: unknown): void {
    for (const record of records) {
      this.#logger.error(
        {
          sink: this.name,
          requestId: record.requestId,
          tool: record.tool,
          principal: record.principal,
          time: record.time,
          err: describeError(error),
        },
        "AUDIT RECORD DROPPED: PostgreSQL refused it",
      );
    }
  }
}

async function createTable(pool: pg.Pool, name: TableName): Promise<void> {
  const client = await pool.connect();
  // While checked out, a connection reports its death as an 'error' event on itself, not on the pool:
  // unheard, that event ends the process. The statement in flight fails by itself; the connection
  // then goes back to the pool as broken, so that the pool closes it instead of handing it out again.
  let lost: Error | undefined;
  const onError = (error: Error) => {
    lost ??= error;
  };
  client.on("error", onError);
  try {
    await client.query("BEGIN");
    await client.query("SELECT pg_advisory_xact_lock(hashtext($1))", [`switchboard_audit:${name.sql}`]);
    for (const statement of createTableSql(name)) await client.query(statement);
    await client.query("COMMIT");
  } catch (error) {
    if (lost === undefined) await client.query("ROLLBACK").catch(() => undefined);
    throw new Error(`cannot create the audit table ${name.sql}: ${describeError(error)}`, { cause: error });
  } finally {
    client.removeListener("error", onError);
    client.release(lost);
  }
}

function insertStatement(name: TableName, rows: number): string {
  const width = COLUMNS.length;
  const tuples: string[] = [];
  for (let row = 0; row < rows; row++) {
    const params = COLUMNS.map((_, column) => `$${row * width + column + 1}`);
    tuples.push(`(${params.join(",")})`);
  }
  return `INSERT INTO ${name.sql} (${COLUMNS.join(",")}) VALUES ${tuples.join(",")}`;
}

function rowValues(input: AuditRecord): unknown[] {
  const record = pgSafe(input) as AuditRecord;
  return [
    record.time,
    record.requestId,
    record.principal,
    record.server,
    record.tool,
    // Strings, not objects: pg would turn an array into a PostgreSQL array literal.
    record.arguments === undefined ? null : JSON.stringify(record.arguments),
    record.outcome,
    record.error ?? null,
    record.durationMs,
    record.source,
    JSON.stringify(record),
  ];
}

/**
 * PostgreSQL refuses NUL characters in text and jsonb, and unpaired surrogates in jsonb; a client
 * can send either in an argument. They become U+FFFD so the record is kept.
 */
function pgSafe(value: unknown): unknown {
  if (typeof value === "string") return UNSAFE.test(value) ? value.replace(UNSAFE_ALL, "\uFFFD") : value;
  if (typeof value !== "object" || value === null) return value;
  if (Array.isArray(value)) return value.map(pgSafe);
  return Object.fromEntries(
    Object.entries(value).map(([key, item]) => [pgSafe(key) as string, pgSafe(item)]),
  );
}

const UNSAFE_SOURCE =
  "\\u0000|[\\uD800-\\uDBFF](?![\\uDC00-\\uDFFF])|(?<![\\uD800-\\uDBFF])[\\uDC00-\\uDFFF]";
const UNSAFE = new RegExp(UNSAFE_SOURCE);
const UNSAFE_ALL = new RegExp(UNSAFE_SOURCE, "g");

/** SQLSTATE classes 22 (data exception), 23 (integrity) and 54 (program limit exceeded). */
function isDataError(error: unknown): boolean {
  const code = (error as { code?: unknown } | undefined)?.code;
  return typeof code === "string" && /^(22|23|54)/.test(code);
}
