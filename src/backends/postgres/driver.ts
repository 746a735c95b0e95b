/**
 * What the backend needs of a database, whichever it is: a server through a pg pool
 * (server-driver.ts) or the embedded PGlite (embedded-driver.ts). A call holds one connection, a
 * `Lease`, from its BEGIN to its reset.
 */
import type { Stoppable } from "./deadline.ts";
import type { RoleReport } from "./privileges.ts";
import type { RowCollector, StatementOutcome } from "./rows.ts";

/** Connections of the backend, for health and metrics. The embedded database has exactly one. */
export interface PoolStats {
  /** Connections open (busy or idle). */
  readonly total: number;
  readonly idle: number;
  /** Calls waiting for a connection. */
  readonly waiting: number;
  readonly max: number;
}

/** One connection, held for the length of one call. */
export interface Lease extends Stoppable {
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
   * Ends the call's transaction and resets the session for the next call (read-only.ts says what a
   * reset undoes). Rejects only when COMMIT fails; a failed reset marks the connection for closing.
   */
  finish(commit: boolean): Promise<void>;
  /** The server's transaction status after the last statement: still inside a transaction block. */
  inTransaction(): boolean;
  /**
   * Gives the connection back, reset if the call did not end with `finish`; or closes it (the
   * embedded one is reset instead) when `destroy` says it may carry state a later call must not see.
   */
  release(destroy: boolean): Promise<void>;
}

export interface Driver {
  /** Where the database is, without credentials: for messages. */
  readonly where: string;
  readonly embedded: boolean;
  /**
   * Opens what needs opening (the embedded database) and runs a query on a connection of its own.
   * For a server, resolves with what its role may do beyond reading (privileges.ts); the embedded
   * database has no host to reach and resolves undefined.
   */
  probe(signal: AbortSignal): Promise<RoleReport | undefined>;
  acquire(signal: AbortSignal): Promise<Lease>;
  stats(): PoolStats;
  close(): Promise<void>;
}
