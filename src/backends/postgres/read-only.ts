/**
 * The security boundary of the PostgreSQL backend: every call runs in a transaction of its own,
 * read-only ones opened `BEGIN … READ ONLY` and always rolled back, so PostgreSQL itself refuses
 * every write whatever its shape (DML, DDL, COPY, DO blocks, writes hidden in CTEs or functions).
 * Nothing looks at the words of the SQL. Three ways out of that transaction are closed here:
 * - user statements go through the extended protocol, which holds exactly one statement, so
 *   `SELECT 1; DELETE …` and `COMMIT; DELETE …` are refused by the server (the drivers do this);
 * - the transaction takes its snapshot before any user statement runs, because PostgreSQL lets
 *   `SET TRANSACTION READ WRITE` through as long as no query has run in the transaction yet;
 * - after every user statement the server's own transaction status (ReadyForQuery) must still say
 *   "in a transaction": a lone `COMMIT` or `ROLLBACK` that ended it fails the call, nothing else runs
 *   on that connection, and the connection is closed (the embedded one reset) rather than reused.
 * Two more things SQL could do to outlast its call are undone: a lifted `statement_timeout` (the
 * gateway holds the limit itself, deadline.ts), and session state left on a connection (reset after
 * every call, SESSION_RESET). What the role may do beyond the data is privileges.ts's question.
 */
import { encodeParam } from "./codec.ts";
import { StatementGuard, StatementTimedOut } from "./deadline.ts";
import type { Driver } from "./driver.ts";
import { isServerError, isUnavailable, StatementFailed, TransactionEnded } from "./errors.ts";
import type { RowCollector, StatementResult } from "./rows.ts";

/**
 * What DISCARD ALL does, spelt out, because DISCARD ALL cannot run in a transaction block and so
 * cannot share a message with the ROLLBACK before it (a message of several statements is one
 * implicit transaction block); sent together they cost no extra round trip. It undoes what outlives
 * a transaction on a pooled connection: session settings and SET ROLE from a committed call, LISTEN,
 * session advisory locks (which a rollback keeps), prepared statements and held cursors, temporary
 * tables and sequence state.
 */
export const SESSION_RESET =
  "CLOSE ALL; SET SESSION AUTHORIZATION DEFAULT; RESET ALL; DEALLOCATE ALL; UNLISTEN *; " +
  "SELECT pg_catalog.pg_advisory_unlock_all(); DISCARD PLANS; DISCARD TEMP; DISCARD SEQUENCES";

/** Runs one user statement of a call; rows go to the collector. */
export type Run = (
  sql: string,
  params: readonly unknown[],
  collector: RowCollector,
) => Promise<StatementResult>;

export interface TransactionOptions {
  /** Opened READ ONLY and rolled back, or read-write and committed. */
  readonly readOnly: boolean;
  /** The limit of each statement, set on the server and held by the gateway; undefined: none. */
  readonly statementTimeoutMs: number | undefined;
}

/**
 * Runs `work` in a transaction of its own on a connection of `driver`. Resolves undefined when done,
 * or with the statement failure to report; throws what is not the caller's to fix (the database is
 * unreachable).
 */
export async function runInTransaction(
  driver: Driver,
  signal: AbortSignal,
  options: TransactionOptions,
  work: (run: Run) => Promise<void>,
): Promise<StatementFailed | undefined> {
  const { readOnly, statementTimeoutMs } = options;
  const lease = await driver.acquire(signal);
  let destroy = false;
  const guard = new StatementGuard(lease, statementTimeoutMs);
  const onAbort = () => guard.stop("aborted");
  signal.addEventListener("abort", onAbort, { once: true });
  const run: Run = async (sql, params, collector) => {
    if (signal.aborted) throw signal.reason;
    const outcome = await guard.run(() => lease.statement(sql, params.map(encodeParam), collector));
    if (!lease.inTransaction()) throw new TransactionEnded(outcome.command);
    return collector.result(outcome);
  };
  try {
    await lease.control(beginStatement(readOnly, statementTimeoutMs));
    try {
      await work(run);
    } catch (error) {
      const failure = error instanceof StatementFailed ? error : new StatementFailed(error);
      // Whatever a statement that ended the transaction left behind (session settings made before a
      // COMMIT) must not reach another call; a stopped statement's connection is closed, which
      // rolls back.
      if (failure.cause instanceof TransactionEnded || failure.cause instanceof StatementTimedOut) {
        destroy = true;
        return failure;
      }
      // Anything else is rolled back and reset.
      if (guard.stopped === undefined) await lease.finish(false);
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
    // The embedded database stopped answering to a statement of our own (the reset after a
    // statement PGlite cannot run): the caller's SQL did it, and is told so like any statement.
    if (error instanceof StatementTimedOut) return new StatementFailed(error);
    throw error;
  } finally {
    signal.removeEventListener("abort", onAbort);
    guard.dispose();
    await lease.release(destroy || guard.stopped !== undefined || signal.aborted);
  }
}

/**
 * The call's BEGIN. Its SELECT takes the transaction's snapshot, after which PostgreSQL refuses SET
 * TRANSACTION READ WRITE (before it, that statement would turn the transaction read-write).
 * REPEATABLE READ gives all statements of a read-only call one consistent view.
 */
function beginStatement(readOnly: boolean, statementTimeoutMs: number | undefined): string {
  const begin = readOnly ? "BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY" : "BEGIN";
  const timeout =
    statementTimeoutMs === undefined ? "" : `; SET LOCAL statement_timeout = ${statementTimeoutMs}`;
  return `${begin}${timeout}; SELECT 1`;
}
