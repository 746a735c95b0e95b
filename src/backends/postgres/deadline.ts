/**
 * The time limit of a PostgreSQL statement, held by the gateway rather than by the server.
 *
 * Every transaction sets `statement_timeout`, but SQL can lift it (`SET LOCAL statement_timeout = 0`
 * inside a transaction call), so the server's own limit is only the first line. The gateway keeps a
 * timer per statement: when a statement outlives the limit (plus a short grace, so that the server's
 * own timeout, when still in force, ends it first and the connection stays usable), or when the call
 * is cancelled, the gateway asks the server to cancel it. If the statement still holds the
 * connection a moment later (the cancel could not be delivered), the connection is cut. Either way,
 * a stopped call's connection is closed rather than returned to the pool: a cancel still in flight
 * must never land on the next call's statement.
 */

/** How long after the limit the gateway steps in: the server's own timeout normally fires first. */
export const DEADLINE_GRACE_MS = 100;

/** How long a cancelled statement may keep its connection before the connection is cut. */
export const ABANDON_AFTER_MS = 1_000;

/** What the guard needs of a connection. */
export interface Stoppable {
  /** Asks the server to cancel the running statement. Never rejects. */
  cancel(): Promise<void>;
  /** Cuts the connection. */
  abandon(): void;
}

/** A statement ran past the limit and the gateway stopped it. */
export class StatementTimedOut extends Error {
  readonly limitMs: number;
  /**
   * It was stopped by ending the whole database and starting it again: the embedded one, which
   * cannot cancel a statement (embedded-database.ts).
   */
  readonly restarted: boolean;
  constructor(limitMs: number, cause?: unknown, options: { readonly restarted?: boolean } = {}) {
    super(`the statement ran longer than ${limitMs} ms`, { cause });
    this.limitMs = limitMs;
    this.restarted = options.restarted ?? false;
  }
}

export class StatementGuard {
  readonly #connection: Stoppable;
  readonly #limitMs: number | undefined;
  #stopped: "deadline" | "aborted" | undefined;
  #abandonTimer: NodeJS.Timeout | undefined;

  /** `limitMs` undefined: no timer (a database that cannot be interrupted). */
  constructor(connection: Stoppable, limitMs: number | undefined) {
    this.#connection = connection;
    this.#limitMs = limitMs;
  }

  /** Why the connection's work was stopped, if it was: its connection must then be closed. */
  get stopped(): "deadline" | "aborted" | undefined {
    return this.#stopped;
  }

  /**
   * Runs one statement under the limit. Rejects with StatementTimedOut when the limit stopped it,
   * even if it finished at that very moment: the cancel is on its way.
   */
  async run<T>(statement: () => Promise<T>): Promise<T> {
    const limitMs = this.#limitMs;
    const timer =
      limitMs === undefined
        ? undefined
        : setTimeout(() => this.stop("deadline"), limitMs + DEADLINE_GRACE_MS);
    try {
      const result = await statement();
      if (this.#stopped === "deadline") throw new StatementTimedOut(limitMs as number);
      return result;
    } catch (error) {
      if (this.#stopped === "deadline" && !(error instanceof StatementTimedOut)) {
        throw new StatementTimedOut(limitMs as number, error);
      }
      throw error;
    } finally {
      clearTimeout(timer);
    }
  }

  /** Cancels what runs on the connection now, and cuts the connection if that does not end it. */
  stop(reason: "deadline" | "aborted"): void {
    if (this.#stopped !== undefined) return;
    this.#stopped = reason;
    void this.#connection.cancel();
    this.#abandonTimer = setTimeout(() => this.#connection.abandon(), ABANDON_AFTER_MS);
  }

  /** The statements are over: nothing is left to cut. */
  dispose(): void {
    clearTimeout(this.#abandonTimer);
  }
}
