/**
 * Config blocks of the built-in backends, one schema per `type`, for the top-level `backends:` map
 * (next to `mcpServers`, so that `type: "http"` there keeps meaning a remote MCP server).
 *
 * Each schema holds only what its backend needs. The extensions every server shares (enabled,
 * prefix, tools, timeoutMs, policies) are merged in by config/schema.ts, so they are not repeated
 * here. Objects are strict, like the rest of the config: a misspelt key is an error with its path.
 * Cross-field checks are refinements on the object itself (not transforms), so each schema can still
 * be extended and used as a member of a discriminated union on `type`.
 *
 * Secrets: URLs may hold passwords, so no message here ever repeats a URL.
 */
import { z } from "zod";

const positiveInt = () => z.number().int().positive();

/** A URL with one of `protocols`; the message names the protocols, never the value (it may hold a password). */
function urlWith(protocols: readonly string[], example: string) {
  return z.string().refine(
    (value) => URL.canParse(value) && protocols.includes(new URL(value).protocol),
    { error: `must be a ${protocols.map((p) => `${p}//`).join(" or ")} URL, e.g. ${example}` },
  );
}

// ─── postgres ─────────────────────────────────────────────────────────────────────────────────

export const postgresPoolSchema = z.strictObject({
  /** Most connections open at once (pg `max`). Calls beyond it wait for a free one. Default 10. */
  max: positiveInt().max(1_000).default(10),
  /** An idle connection is closed after this long, in ms (pg `idleTimeoutMillis`). Default 10 000. */
  idleTimeoutMs: positiveInt().default(10_000),
  /**
   * How long opening a connection, or waiting for a free one when all `max` are busy, may take, in ms
   * (pg `connectionTimeoutMillis`). Default 5 000.
   */
  connectTimeoutMs: positiveInt().default(5_000),
});

export const postgresBackendSchema = z
  .strictObject({
    type: z.literal("postgres"),
    /**
     * postgres://user:password@host:port/database (postgresql:// too; `?sslmode=` as libpq reads it).
     * Default: none, and the backend runs an embedded PostgreSQL (PGlite) in the gateway's process,
     * with sample data, so a quick start needs no database server.
     */
    url: urlWith(["postgres:", "postgresql:"], "postgres://app@127.0.0.1:5432/app").optional(),
    /**
     * Embedded database only: the directory PGlite keeps its files in, created when missing.
     * Default: none, in memory (lost when the gateway stops).
     */
    dataDir: z.string().min(1).optional(),
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
    /** The connection pool (server databases; the embedded one has a single connection). Default {}. */
    pool: postgresPoolSchema.prefault({}),
    /**
     * PostgreSQL cancels a statement that runs longer than this, in ms (`statement_timeout`, set in
     * every transaction). The embedded database cannot enforce it. Default 30 000.
     */
    statementTimeoutMs: positiveInt().default(30_000),
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
  .superRefine((config, ctx) => {
    if (config.url === undefined || config.dataDir === undefined) return;
    ctx.addIssue({
      code: "custom",
      path: ["dataDir"],
      message: "dataDir is for the embedded database only; remove it, or remove url to use the embedded one",
    });
  });

export type PostgresBackendConfig = z.output<typeof postgresBackendSchema>;
export type PostgresBackendInput = z.input<typeof postgresBackendSchema>;

// ─── redis ────────────────────────────────────────────────────────────────────────────────────

/**
 * Write commands a Redis backend can be allowed, each exposed as a tool of the same name when listed
 * in `allowCommands` and `readOnly` is false. A closed list: each has its own tool schema, and the
 * backend knows which of its arguments are keys, which keyPrefix containment depends on.
 */
export const REDIS_WRITE_COMMANDS = [
  "set",
  "del",
  "expire",
  "persist",
  "incr",
  "hset",
  "hdel",
  "lpush",
  "rpush",
  "sadd",
  "srem",
  "zadd",
  "zrem",
] as const;

export type RedisWriteCommand = (typeof REDIS_WRITE_COMMANDS)[number];

export const redisBackendSchema = z
  .strictObject({
    type: z.literal("redis"),
    /** redis://[user:password@]host[:port][/db], or rediss:// for TLS. Required. */
    url: urlWith(["redis:", "rediss:"], "redis://127.0.0.1:6379"),
    /**
     * The backend sees only keys under this prefix: tools take and return keys without it, and SCAN
     * patterns match after it. Default "" (every key of the database).
     */
    keyPrefix: z.string().default(""),
    /** Only the read tools are offered. Set false, and list commands in allowCommands, for writes. Default true. */
    readOnly: z.boolean().default(true),
    /**
     * Write commands offered as tools when readOnly is false, e.g. ["set", "del", "expire"].
     * Default [] (none).
     */
    allowCommands: z
      .array(
        z.enum(REDIS_WRITE_COMMANDS, {
          error: (issue) =>
            `${JSON.stringify(issue.input)} is not a write command Switchboard offers; pick from ${REDIS_WRITE_COMMANDS.join(", ")}`,
        }),
      )
      .default([]),
    /**
     * Elements one call returns at most: members of a set, fields of a hash, list and sorted-set
     * ranges, keys of mget and scan. More are cut off and the result says `truncated: true`.
     * Default 1 000.
     */
    maxItems: positiveInt().max(100_000).default(1_000),
    /** Bytes of one string value returned; longer values are cut and marked truncated. Default 65 536. */
    maxValueBytes: positiveInt().default(65_536),
    /** How long connecting may take, in ms. Default 5 000. */
    connectTimeoutMs: positiveInt().default(5_000),
    /** A command unanswered this long fails and the connection is replaced, in ms. Default 5 000. */
    commandTimeoutMs: positiveInt().default(5_000),
  })
  .superRefine((config, ctx) => {
    if (!config.readOnly || config.allowCommands.length === 0) return;
    ctx.addIssue({
      code: "custom",
      path: ["allowCommands"],
      message: "write commands need readOnly: false; set it, or remove allowCommands",
    });
  });

export type RedisBackendConfig = z.output<typeof redisBackendSchema>;
export type RedisBackendInput = z.input<typeof redisBackendSchema>;

// ─── http and filesystem (maintained with src/backends/http.ts and src/backends/filesystem.ts) ───
// Their schemas go here: `httpBackendSchema` (type: "http") and `filesystemBackendSchema`
// (type: "filesystem"), in the same style. Keep this section last; the postgres and redis sections
// above belong to postgres.ts and redis.ts.

// ─── end of http and filesystem ───
