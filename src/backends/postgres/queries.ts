/**
 * The work of each tool: the user's statements in a transaction of their own (read-only.ts), and the
 * catalog queries behind list_tables and describe_table, with the row and byte limits applied and
 * every cut said in a note the caller can act on.
 */
import type { CallToolResult } from "../../core/types.ts";
import { structuredResult } from "../base.ts";
import type { PostgresBackendConfig } from "./config.ts";
import type { Driver } from "./driver.ts";
import { describeFailure, type Refusal, StatementFailed } from "./errors.ts";
import { type Run, runInTransaction } from "./read-only.ts";
import { RowCollector, type StatementResult } from "./rows.ts";

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

/** One statement as a caller sends it. */
export interface Statement {
  readonly sql: string;
  readonly params?: readonly unknown[] | undefined;
}

export interface QueriesOptions {
  /** The backend's name, for messages. */
  readonly server: string;
  readonly driver: Driver;
  readonly config: Pick<
    PostgresBackendConfig,
    "readOnly" | "maxRows" | "maxResultBytes" | "statementTimeoutMs"
  >;
  readonly redact: (text: string) => string;
  /** A refusal as the isError result the backend answers with. */
  readonly refuse: (refusal: Refusal) => CallToolResult;
}

export class Queries {
  readonly #server: string;
  readonly #driver: Driver;
  readonly #config: QueriesOptions["config"];
  readonly #redact: (text: string) => string;
  readonly #refuse: (refusal: Refusal) => CallToolResult;

  constructor(options: QueriesOptions) {
    this.#server = options.server;
    this.#driver = options.driver;
    this.#config = options.config;
    this.#redact = options.redact;
    this.#refuse = options.refuse;
  }

  /** The caller's statements, in order, in one transaction; `many` when the caller sent a list. */
  async statements(
    signal: AbortSignal,
    statements: readonly Statement[],
    many: boolean,
  ): Promise<CallToolResult> {
    const readOnly = this.#config.readOnly;
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
      return structuredResult(only, notes);
    }
    return structuredResult({ statements: results, truncated }, notes);
  }

  async listTables(signal: AbortSignal, schema: string | undefined): Promise<CallToolResult> {
    const budget = { bytesLeft: this.#config.maxResultBytes };
    const collector = new RowCollector(this.#config.maxRows, budget);
    let result: StatementResult | undefined;
    const failure = await this.#inTransaction(signal, true, async (run) => {
      result = await run(LIST_TABLES_SQL, [schema ?? null], collector);
    });
    if (failure !== undefined || !result) return this.#failure(failure, 1, false, true);
    const tables = result.rows;
    const notes = collector.cut ? [this.#truncationNote(collector, undefined)] : [];
    if (tables.length === 0) {
      notes.push(
        schema === undefined
          ? "The database has no tables or views outside the system schemas."
          : `Schema "${schema}" has no tables or views (or does not exist); call list_tables without a schema to see all.`,
      );
    }
    return structuredResult({ tables, truncated: result.truncated }, notes);
  }

  async describeTable(
    signal: AbortSignal,
    table: string,
    schema: string | undefined,
  ): Promise<CallToolResult> {
    const budget = { bytesLeft: this.#config.maxResultBytes };
    const collector = () => new RowCollector(this.#config.maxRows, budget);
    let described: Record<string, unknown> | undefined;
    const failure = await this.#inTransaction(signal, true, async (run) => {
      const found = (await run(FIND_TABLE_SQL, [table, schema ?? null], collector())).rows[0];
      if (!found) return;
      const oid = String(found.oid);
      const columns = await run(COLUMNS_SQL, [oid], collector());
      const constraints = await run(CONSTRAINTS_SQL, [oid], collector());
      const indexes = await run(INDEXES_SQL, [oid], collector());
      described = {
        schema: found.schema,
        name: found.name,
        type: found.type,
        description: found.description,
        columns: columns.rows,
        constraints: constraints.rows,
        indexes: indexes.rows,
        truncated: columns.truncated || constraints.truncated || indexes.truncated,
      };
    });
    if (failure !== undefined) return this.#failure(failure, 1, false, true);
    if (!described) {
      const where = schema === undefined ? "on the search path" : `in schema "${schema}"`;
      return this.#refuse({
        text:
          `Table "${table}" was not found ${where} of database backend "${this.#server}". ` +
          "Call list_tables to see the tables and views there are (names are case-sensitive).",
        data: { table, ...(schema === undefined ? {} : { schema }) },
      });
    }
    const notes = described.truncated
      ? [
          `The description was cut at ${this.#config.maxRows} rows per part or ${this.#config.maxResultBytes} bytes.`,
        ]
      : [];
    return structuredResult(described, notes);
  }

  #inTransaction(
    signal: AbortSignal,
    readOnly: boolean,
    work: (run: Run) => Promise<void>,
  ): Promise<StatementFailed | undefined> {
    // PGlite has no statement_timeout and no cancel: the embedded database holds the limit itself,
    // by ending its worker (embedded-database.ts).
    const statementTimeoutMs = this.#driver.embedded ? undefined : this.#config.statementTimeoutMs;
    return runInTransaction(this.#driver, signal, { readOnly, statementTimeoutMs }, work);
  }

  #failure(
    failure: StatementFailed | undefined,
    count: number,
    many: boolean,
    readOnly: boolean,
  ): CallToolResult {
    return this.#refuse(
      describeFailure(failure, {
        server: this.#server,
        count,
        many,
        readOnly,
        statementTimeoutMs: this.#config.statementTimeoutMs,
        redact: this.#redact,
      }),
    );
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
}
