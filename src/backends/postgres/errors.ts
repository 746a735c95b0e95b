/**
 * What goes wrong in a call, told apart: an SQL error is the caller's to fix, so it becomes an
 * `isError` result with the SQLSTATE, the server's message and advice (and does not count against
 * the backend's health); a database that cannot be reached is thrown, for the gateway's policies.
 */
import { describeError } from "../../core/errors.ts";
import { StatementTimedOut } from "./deadline.ts";

/** What pg and PGlite both throw for an ErrorResponse from the server. */
export interface ServerError {
  readonly message: string;
  readonly code: string;
  readonly severity?: string;
  readonly detail?: string;
  readonly hint?: string;
  readonly position?: string;
}

export function isServerError(error: unknown): error is ServerError {
  if (!(error instanceof Error)) return false;
  const { code, severity } = error as { code?: unknown; severity?: unknown };
  return typeof code === "string" && /^[0-9A-Z]{5}$/.test(code) && typeof severity === "string";
}

/**
 * SQLSTATEs that say the database, not the statement, is the problem: connection exceptions (but
 * not 08P01, which is also what a wrong number of parameters gets), shutdowns, too many
 * connections, failed authentication, missing database.
 */
export function isUnavailable(code: string): boolean {
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
export class TransactionEnded extends Error {
  readonly command: string | null;
  constructor(command: string | null) {
    super("the statement ended the call's transaction");
    this.command = command;
  }
}

/** A statement that failed, and which one (0-based) of the call's statements it was. */
export class StatementFailed extends Error {
  /** 0-based position among the call's statements, or "commit" when the final COMMIT failed. */
  readonly index: number | "commit" | undefined;
  constructor(cause: unknown, index?: number | "commit") {
    super("a statement failed", { cause });
    this.index = index;
  }
}

/** What the call was and where, for the message of its failure. */
export interface FailureContext {
  /** The backend's name. */
  readonly server: string;
  /** How many statements the call had, and whether the caller sent a list of them. */
  readonly count: number;
  readonly many: boolean;
  readonly readOnly: boolean;
  readonly statementTimeoutMs: number;
  readonly redact: (text: string) => string;
}

/** A failure as the caller reads it: the text of an isError result and its `_meta` data. */
export interface Refusal {
  readonly text: string;
  readonly data: Record<string, unknown>;
}

/** A statement's failure as the caller gets it: which statement, why, and what to do. */
export function describeFailure(failure: StatementFailed | undefined, context: FailureContext): Refusal {
  const { server, count, many, readOnly, redact } = context;
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
    return {
      text:
        `${which} ended the transaction Switchboard runs each call in (${cause.command ?? "a transaction command"}), ` +
        `so database backend "${server}" stopped there. Leave out COMMIT, ROLLBACK and the like` +
        (readOnly ? "." : ": to group statements, pass them all to the transaction tool.") +
        (committed ? " The statements before it were committed." : ""),
      data: { reason: "transaction_ended", ...(index === undefined ? {} : { statement: index + 1 }) },
    };
  }
  if (cause instanceof StatementTimedOut) {
    const limit = `the limit of database backend "${server}" (statementTimeoutMs)`;
    return {
      text: cause.restarted
        ? `${index === undefined ? "The call" : which} ran longer than ${cause.limitMs} ms, ${limit}: the ` +
          "embedded database stopped answering, so Switchboard ended it and started it again (in memory: " +
          "from its sample data; with dataDir: from the folder). Narrow the query, and leave out what PGlite " +
          `cannot run, such as COPY … PROGRAM.${undone}`
        : `${which} ran longer than ${cause.limitMs} ms, ${limit}, so Switchboard cancelled it on the ` +
          `server (SQLSTATE 57014 query_canceled). Narrow the query or add an index.${undone}`,
      data: {
        sqlstate: "57014",
        condition: "query_canceled",
        reason: "statement_timeout",
        ...(cause.restarted ? { restarted: true } : {}),
        ...(many && index !== undefined ? { statement: index + 1 } : {}),
      },
    };
  }
  if (isServerError(cause)) {
    const condition = CONDITIONS[cause.code];
    const parts = [
      `${which} failed on database backend "${server}": ${redact(cause.message)} ` +
        `(SQLSTATE ${cause.code}${condition ? ` ${condition}` : ""}).`,
    ];
    if (cause.detail) parts.push(`Detail: ${sentence(redact(cause.detail))}`);
    if (cause.hint) parts.push(`Hint: ${sentence(redact(cause.hint))}`);
    const advice = adviceFor(cause.code, cause.message, context);
    if (advice) parts.push(advice);
    if (undone) parts.push(undone.trim());
    return {
      text: parts.join(" "),
      data: {
        sqlstate: cause.code,
        ...(condition ? { condition } : {}),
        ...(cause.position ? { position: Number(cause.position) } : {}),
        ...(many && index !== undefined ? { statement: index + 1 } : {}),
      },
    };
  }
  return {
    text: `${which} failed on database backend "${server}": ${redact(describeError(cause))}.`,
    data: {},
  };
}

function adviceFor(code: string, message: string, context: FailureContext): string | undefined {
  if (code === "25006" && context.readOnly) {
    return `This backend is read-only (readOnly: true), so PostgreSQL refuses writes; an operator can set readOnly: false to allow them.`;
  }
  if (code === "42601" && /multiple commands/.test(message)) {
    return "Send one statement per call; to run several together, use the transaction tool.";
  }
  if (code === "57014") {
    return `Statements may run for ${context.statementTimeoutMs} ms (statementTimeoutMs); narrow the query or add an index.`;
  }
  if (code === "25001") return "Switchboard sets the transaction's mode itself; leave out SET TRANSACTION.";
  return undefined;
}

/** Ends `text` with exactly one full stop. */
function sentence(text: string): string {
  return text.endsWith(".") ? text : `${text}.`;
}
