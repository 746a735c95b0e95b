/**
 * The config's `audit` block. Kept apart from the sinks so that the config schema does not load them.
 *
 * Leaving the block out turns auditing off: a gateway started by a desktop client from whatever
 * directory it likes must not start writing files there (or failing calls because it cannot). Writing
 * the block, even `audit: {}`, turns it on, with a JSONL file next to the config.
 */
import { z } from "zod";
import {
  durationMs,
  glob,
  nonEmpty,
  nonNegativeInt,
  positiveInt,
  postgresUrl,
} from "../config/primitives.ts";

/** 11 columns × 500 rows stays far below PostgreSQL's 65 535 bind parameters per statement. */
export const MAX_BATCH_SIZE = 500;

/**
 * A table name part: a lower-case identifier, short enough that the index names derived from it
 * ("<table>_principal_idx") stay within PostgreSQL's 63 characters instead of being truncated into
 * each other.
 */
const IDENTIFIER = /^[a-z_][a-z0-9_]{0,47}$/;

export interface TableName {
  readonly schema: string | undefined;
  readonly table: string;
  /** Quoted, ready for SQL. */
  readonly sql: string;
}

/** Validates an audit table name ("calls" or "audit.calls"); throws an Error that says what is allowed. */
export function parseTableName(name: string): TableName {
  const parts = name.split(".");
  const valid = parts.length <= 2 && parts.every((part) => IDENTIFIER.test(part));
  const [first, second] = parts;
  if (!valid || first === undefined) {
    throw new Error(
      `"${name}" is not a valid audit table name: use lower-case letters, digits and "_" (not starting ` +
        `with a digit, at most 48 characters), optionally with a schema: "audit.calls"`,
    );
  }
  const schema = second === undefined ? undefined : first;
  const table = second ?? first;
  return { schema, table, sql: schema === undefined ? `"${table}"` : `"${schema}"."${table}"` };
}

/** Splits a dotted argument path; throws on an empty segment ("a..b", ".a", "a."). */
export function parseArgumentPath(path: string): readonly string[] {
  const segments = path.split(".");
  if (segments.some((segment) => segment === "")) {
    throw new Error(`"${path}" is not an argument path: write keys separated by dots, e.g. "auth.token"`);
  }
  return segments;
}

const accepts = (parse: (value: string) => unknown) => (value: string) => {
  try {
    parse(value);
    return true;
  } catch {
    return false;
  }
};

/**
 * When a write counts as done. Default "sync" for both sinks: the gateway awaits the record before it
 * answers, so no answered call is ever missing from the log, even after kill -9 or a power cut. Group
 * commit makes that one fsync (or one INSERT) per round shared by all calls in flight, not one per
 * call, so the cost is latency (about one fsync) rather than throughput. The price is availability:
 * when the sink cannot write, calls fail. "batched" trades that the other way: calls never wait or
 * fail for the log, and a crash loses up to `flushIntervalMs` of records.
 */
const durability = z.enum(["sync", "batched"]).default("sync");

// Batched mode: how often buffered records are written. Default 1 000 ms.
const flushIntervalMs = () => durationMs().default(1_000);

// Most records held in memory while the sink cannot be written (retried with backoff meanwhile);
// beyond it the oldest are dropped, and an error says how many. Default 100 000.
const maxPending = () => positiveInt().default(100_000);

export const fileAuditSinkSchema = z.strictObject({
  type: z.literal("file"),
  /**
   * The JSONL file, created with mode 0600 (and its directory if missing). Relative paths start at the
   * config file's directory. One file per gateway process. Default "./switchboard-audit.jsonl".
   */
  path: nonEmpty().default("./switchboard-audit.jsonl"),
  durability,
  /** Size at which the file is rotated to `<path>.1`. Default 104 857 600 (100 MiB). */
  maxBytes: positiveInt().default(100 * 1024 * 1024),
  /** Rotated files kept, `<path>.1` (newest) to `<path>.<maxFiles>`; 0 keeps none. Default 5. */
  maxFiles: nonNegativeInt().max(1_000).default(5),
  /** Batched mode: how often buffered lines are written (and fsync'd). Default 1 000 ms. */
  flushIntervalMs: flushIntervalMs(),
  /** Most records held while the file cannot be written; the oldest are dropped beyond. Default 100 000. */
  maxPending: maxPending(),
});

export const postgresAuditSinkSchema = z.strictObject({
  type: z.literal("postgres"),
  /**
   * postgres://user:password@host:port/database. Default: the DATABASE_URL environment variable at
   * start-up (an error says so when neither is set).
   */
  url: postgresUrl("postgres://audit@127.0.0.1:5432/app").optional(),
  /**
   * The table, created with its indexes if missing; "schema.table" for another schema. Lower-case
   * letters, digits and "_", at most 48 characters each. Default "switchboard_audit".
   */
  table: z
    .string()
    .refine(accepts(parseTableName), {
      error:
        'must be a lower-case identifier (letters, digits and "_", at most 48 characters), optionally schema-qualified: "audit.calls"',
    })
    .default("switchboard_audit"),
  durability,
  /** Batched mode: how often waiting records are inserted. Default 1 000 ms. */
  flushIntervalMs: flushIntervalMs(),
  /** Most rows per INSERT; batched mode also inserts as soon as this many are waiting. Default 500. */
  batchSize: positiveInt().max(MAX_BATCH_SIZE).default(MAX_BATCH_SIZE),
  /** Most records held while PostgreSQL is unreachable; the oldest are dropped beyond. Default 100 000. */
  maxPending: maxPending(),
});

export const auditSinkSchema = z.discriminatedUnion("type", [fileAuditSinkSchema, postgresAuditSinkSchema]);

export const auditRedactRuleSchema = z.strictObject({
  /** Globs over exposed tool names ("db__*"). Default ["*"] (every tool). */
  tools: z.array(glob()).min(1).default(["*"]),
  /**
   * Dotted argument paths whose values become "[redacted]": "password", "auth.token", "headers.*"
   * (`*` is any one key or array index). Required.
   */
  arguments: z
    .array(
      z.string().refine(accepts(parseArgumentPath), {
        error: 'must be keys separated by dots, e.g. "auth.token" or "headers.*"',
      }),
    )
    .min(1, { error: 'list at least one argument path, e.g. ["password"]' }),
});

export const auditConfigSchema = z
  .strictObject({
    /** Default true once the block is written; leaving the block out turns auditing off. */
    enabled: z.boolean().default(true),
    /** Where records go; every sink gets every record. Default [{ type: "file" }]. */
    sinks: z
      .array(auditSinkSchema)
      .min(1, { error: "list at least one sink, or set enabled: false" })
      .prefault([{ type: "file" }]),
    /**
     * Argument values to redact, per tool. Secret values (`${secret:…}`) are redacted everywhere
     * without a rule. Default [] (none).
     */
    redact: z.array(auditRedactRuleSchema).default([]),
    /** Leave arguments out of records altogether. Default false. */
    omitArguments: z.boolean().default(false),
  })
  .prefault({ enabled: false });

/** A file sink's options as the schema fills them in: what `createJsonlSink` uses for those left out. */
export const FILE_SINK_DEFAULTS = fileAuditSinkSchema.omit({ type: true }).parse({});

/** A PostgreSQL sink's options as the schema fills them in (url aside, which has no default here). */
export const POSTGRES_SINK_CONFIG_DEFAULTS = postgresAuditSinkSchema
  .omit({ type: true, url: true })
  .parse({});

export type AuditConfigInput = z.input<typeof auditConfigSchema>;
export type AuditConfig = z.output<typeof auditConfigSchema>;
export type AuditSinkConfig = z.output<typeof auditSinkSchema>;
export type FileAuditSinkConfig = z.output<typeof fileAuditSinkSchema>;
export type PostgresAuditSinkConfig = z.output<typeof postgresAuditSinkSchema>;
