/**
 * The embedded PostgreSQL (PGlite) as a driver: one connection that calls take turns on, in a
 * worker thread (embedded-database.ts), loaded with sample data when it starts empty. A statement
 * that outlives `statementTimeoutMs` ends the worker and the database starts again; the call that
 * held it learns so, and the session it had is gone, so nothing of it is reset or reused.
 */
import { untilAborted } from "../../core/abort.ts";
import { describeError } from "../../core/errors.ts";
import type { Logger } from "../../observability/logger.ts";
import { decodeValue } from "./codec.ts";
import type { PostgresBackendConfig } from "./config.ts";
import type { Driver, Lease, PoolStats } from "./driver.ts";
import { EmbeddedDatabase } from "./embedded-database.ts";
import { SESSION_RESET } from "./read-only.ts";

export class EmbeddedDriver implements Driver {
  readonly where: string;
  readonly embedded = true;
  readonly #db: EmbeddedDatabase;
  readonly #owned: boolean;
  readonly #timeoutMs: number;
  readonly #log: Logger;

  constructor(config: PostgresBackendConfig, log: Logger, db: EmbeddedDatabase | undefined) {
    const { dataDir, sampleData, readOnly } = config;
    this.#db = db ?? new EmbeddedDatabase({ dataDir, sampleData, readOnly }, log);
    this.#owned = db === undefined;
    this.#timeoutMs = config.statementTimeoutMs;
    this.#log = log;
    this.where = db
      ? "the embedded PostgreSQL (PGlite) given by the host program"
      : dataDir
        ? `the embedded PostgreSQL (PGlite) in ${dataDir}`
        : "the embedded in-memory PostgreSQL (PGlite)";
  }

  async probe(signal: AbortSignal): Promise<undefined> {
    const db = this.#db;
    await untilAborted(db.start(), signal);
    await db.turns.take(signal);
    try {
      await db.query("SELECT 1", [], 1, this.#timeoutMs);
    } finally {
      db.turns.give();
    }
    // It runs as a superuser, but in a thread of its own, on a file system of its own: there is no
    // database host to reach (see the README).
    return undefined;
  }

  async acquire(signal: AbortSignal): Promise<Lease> {
    const db = this.#db;
    // Open, the turn is taken before the first await, so that calls line up in the order they came.
    if (!db.open) await untilAborted(db.start(), signal);
    await db.turns.take(signal);
    const timeoutMs = this.#timeoutMs;
    const generation = db.generation;
    /** Why the database this lease began on is gone (it was ended and started again). */
    let lost: unknown;
    const send = async <T>(request: () => Promise<T>): Promise<T> => {
      if (lost !== undefined) throw lost;
      try {
        return await request();
      } catch (error) {
        if (db.generation !== generation) lost ??= error;
        throw error;
      }
    };
    let clean = true;
    /**
     * A statement that ended with no command tag: an empty one, or one after which PGlite's answers
     * no longer follow the protocol (COPY … PROGRAM, which it cannot run, answers so, and the next
     * query through the extended protocol never returns). The reset then ends with such a query, so
     * that the call that did it, not the next caller, meets its deadline.
     */
    let suspect = false;
    const reset = async (rollback: boolean) => {
      // Its one connection cannot be replaced, so it is reset instead (settings, role, temp tables).
      const sql = rollback && db.inTransaction ? `ROLLBACK; ${SESSION_RESET}` : SESSION_RESET;
      await send(() => db.exec(sql, timeoutMs));
      if (suspect) await send(() => db.query("SELECT 1", [], 1, timeoutMs));
      suspect = false;
      clean = true;
    };
    return {
      statement: async (sql, params, collector) => {
        clean = false;
        const answer = await send(() => db.query(sql, params, collector.fetchLimit, timeoutMs));
        if (answer.command === null) suspect = true;
        collector.setFields(answer.fields);
        const oids = answer.fields.map((field) => field.dataTypeID);
        for (const row of answer.rows) {
          if (!collector.accepting) break;
          collector.add(row.map((text, i) => decodeValue(text, oids[i] ?? 0)));
        }
        return {
          command: answer.command,
          rowCount: answer.rowCount,
          more: answer.total > collector.rows.length,
        };
      },
      control: async (sql) => {
        clean = false;
        await send(() => db.exec(sql, timeoutMs));
      },
      ping: async () => {
        await send(() => db.query("SELECT 1", [], 1, timeoutMs));
      },
      finish: async (commit) => {
        if (commit) {
          clean = false;
          await send(() => db.exec("COMMIT", timeoutMs));
        }
        // A failed reset is left to release, which tries again; but when the database had to be
        // started again, the call must say so.
        await reset(!commit).catch((error: unknown) => {
          if (lost !== undefined) throw error;
        });
      },
      inTransaction: () => db.inTransaction,
      // Nothing can interrupt one statement of PGlite: one that outlives its limit ends the database.
      cancel: async () => undefined,
      abandon: () => undefined,
      release: async (destroy) => {
        try {
          if (lost === undefined && (destroy || !clean)) await reset(true);
        } catch (error) {
          this.#log.warn({ err: describeError(error) }, "could not reset the embedded database's session");
        } finally {
          db.turns.give();
        }
      },
    };
  }

  stats(): PoolStats {
    const open = this.#db.open ? 1 : 0;
    return { total: open, idle: this.#db.turns.busy ? 0 : open, waiting: this.#db.turns.waiting, max: 1 };
  }

  async close(): Promise<void> {
    if (this.#owned) await this.#db.close();
  }
}
