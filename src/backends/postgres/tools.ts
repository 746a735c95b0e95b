/**
 * The PostgreSQL backend's four tools: `query`, `transaction`, `list_tables` and `describe_table`.
 * Their descriptions and annotations say what this backend does (read-only or not, embedded or not,
 * its limits), and their schemas both check the arguments and describe the results.
 */
import { z } from "zod";
import type { CallToolResult } from "../../core/types.ts";
import { defineTool, type ToolSpec } from "../base.ts";
import type { PostgresBackendConfig } from "./config.ts";
import type { Queries } from "./queries.ts";

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

/** What the tools' descriptions and schemas depend on. */
export type ToolSettings = Pick<
  PostgresBackendConfig,
  "readOnly" | "maxRows" | "maxResultBytes" | "maxStatements"
> & { readonly embedded: boolean };

/** The tools, each running its work through `queries`; the call's signal is their context. */
export function postgresTools(
  queries: Queries,
  settings: ToolSettings,
): ToolSpec<CallToolResult, AbortSignal>[] {
  const { readOnly, maxRows, maxResultBytes, embedded } = settings;
  const target = embedded ? "the embedded PostgreSQL database" : "the PostgreSQL database";
  const limits = `Results stop at ${maxRows} rows or ${maxResultBytes} bytes and then say truncated: true.`;
  const mode = readOnly
    ? "The database is read-only here: PostgreSQL itself refuses any write."
    : "Writes are allowed and take effect immediately.";
  const writeHints = readOnly
    ? { readOnlyHint: true, openWorldHint: false }
    : { readOnlyHint: false, destructiveHint: true, idempotentHint: false, openWorldHint: false };
  const readHints = { readOnlyHint: true, openWorldHint: false };
  return [
    defineTool({
      name: "query",
      title: "Run a SQL statement",
      description:
        `Runs one SQL statement on ${target} and returns its rows, fields and row count. ${mode} ` +
        `Pass values as $1, $2, … with params, never inside the SQL text. One statement per call. ${limits}`,
      args: queryArgs,
      output: statementOut,
      annotations: writeHints,
      run: (args, signal: AbortSignal) => queries.statements(signal, [args], false),
    }),
    defineTool({
      name: "transaction",
      title: "Run SQL statements in one transaction",
      description: readOnly
        ? `Runs several SQL statements in order on ${target}, in one read-only transaction that sees a ` +
          `single consistent snapshot, and returns each one's result. ${mode} ${limits}`
        : `Runs several SQL statements in order on ${target} as one transaction, all or nothing: if any ` +
          `statement fails, none of them takes effect. Returns each statement's result. ${limits}`,
      args: transactionArgs(settings.maxStatements),
      output: transactionOut,
      annotations: writeHints,
      run: (args, signal: AbortSignal) => queries.statements(signal, args.statements, true),
    }),
    defineTool({
      name: "list_tables",
      title: "List tables and views",
      description: `Lists the tables and views of ${target} (outside the system schemas), with their schema, kind and comment.`,
      args: listTablesArgs,
      output: listTablesOut,
      annotations: readHints,
      run: (args, signal: AbortSignal) => queries.listTables(signal, args.schema),
    }),
    defineTool({
      name: "describe_table",
      title: "Describe a table",
      description: `Describes one table or view of ${target}: its columns (type, nullability, default, comment), constraints (primary, foreign and unique keys, checks) and indexes.`,
      args: describeTableArgs,
      output: describeTableOut,
      annotations: readHints,
      run: (args, signal: AbortSignal) => queries.describeTable(signal, args.table, args.schema),
    }),
  ];
}
