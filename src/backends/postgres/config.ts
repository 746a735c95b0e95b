/**
 * The PostgreSQL backend's config block (`type: "postgres"` under `backends:`). The extensions every
 * server shares (enabled, prefix, tools, timeoutMs, restart, policies) are merged in by
 * config/schema.ts.
 *
 * Secrets: URLs may hold passwords, so no message here ever repeats a URL.
 */
import { z } from "zod";
import { durationMs, nonEmpty, positiveInt, postgresUrl } from "../config.ts";

export const postgresPoolSchema = z.strictObject({
  /** Most connections open at once (pg `max`). Calls beyond it wait for a free one. Default 10. */
  max: positiveInt().max(1_000).default(10),
  /** An idle connection is closed after this long, in ms (pg `idleTimeoutMillis`). Default 10 000. */
  idleTimeoutMs: durationMs().default(10_000),
  /**
   * How long opening a connection, or waiting for a free one when all `max` are busy, may take, in ms
   * (pg `connectionTimeoutMillis`). Default 5 000.
   */
  connectTimeoutMs: durationMs().default(5_000),
});

export const postgresBackendSchema = z
  .strictObject({
    type: z.literal("postgres"),
    /**
     * postgres://user:password@host:port/database (postgresql:// too; `?sslmode=` as libpq reads it).
     * Default: none, and the backend runs an embedded PostgreSQL (PGlite) in a worker thread of the
     * gateway's process, with sample data, so a quick start needs no database server.
     */
    url: postgresUrl().optional(),
    /**
     * Embedded database only: the directory PGlite keeps its files in, created when missing. A
     * read-only backend loads it at start and serves a copy in memory, so that no SQL can write to
     * the folder. Default: none, in memory (lost when the gateway stops).
     */
    dataDir: nonEmpty().optional(),
    /**
     * Embedded database only: load the sample schema (customers, products, orders) when the database
     * has no tables of its own yet. Default true.
     */
    sampleData: z.boolean().default(true),
    /**
     * Every statement runs in a transaction PostgreSQL itself holds read-only (`BEGIN READ ONLY`), so
     * no write of any shape gets through. Set false to allow writes. Default true.
     */
    readOnly: z.boolean().default(true),
    /**
     * Server databases only. UNSAFE. A read-only transaction keeps the data unchanged, not the server:
     * a role that is a superuser, a member of pg_execute_server_program, pg_read_server_files,
     * pg_write_server_files or pg_signal_backend, or that may execute functions such as pg_read_file
     * or pg_reload_conf, lets SQL sent to the query tool run programs and read files on the database
     * host, reload its configuration or end other sessions. A read-only backend connected as such a
     * role refuses to serve, and says how to create a role that can only read; `true` serves anyway
     * (with a warning at every start). The embedded database has no host to reach and is not checked.
     * Default false.
     */
    allowPrivilegedRole: z.boolean().default(false),
    /** The connection pool (server databases; the embedded one has a single connection). Default {}. */
    pool: postgresPoolSchema.prefault({}),
    /**
     * A statement that runs longer than this, in ms, is cancelled on the server: PostgreSQL's own
     * `statement_timeout` is set in every transaction, and the gateway cancels the statement itself
     * (and closes its connection) if SQL lifted that setting. The embedded database cannot cancel a
     * statement: when it does not answer within this, its worker is ended and the database started
     * again (in memory: from its sample data; with dataDir: from the folder). Default 30 000.
     */
    statementTimeoutMs: durationMs().default(30_000),
    /** Rows returned per statement; more are cut off and the result says `truncated: true`. Default 1 000. */
    maxRows: positiveInt().max(1_000_000).default(1_000),
    /**
     * Size of the rows returned by one call, in bytes of JSON; rows past it are cut off and the result
     * says `truncated: true`. Default 262 144 (256 KiB).
     */
    maxResultBytes: positiveInt().default(262_144),
    /** Statements one `transaction` call may hold. Default 100. */
    maxStatements: positiveInt().max(10_000).default(100),
  })
  .refine((config) => config.url === undefined || config.dataDir === undefined, {
    path: ["dataDir"],
    error: "dataDir is for the embedded database only; remove it, or remove url to use the embedded one",
  });

export type PostgresBackendConfig = z.output<typeof postgresBackendSchema>;
export type PostgresBackendInput = z.input<typeof postgresBackendSchema>;
