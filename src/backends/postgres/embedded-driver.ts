/**
 * The embedded PostgreSQL (PGlite): a database of its own in the gateway's process, with one
 * connection that calls take turns on, loaded with sample data when it starts empty.
 */
import { PGlite, types as pgliteTypes } from "@electric-sql/pglite";
import { untilAborted } from "../../core/abort.ts";
import { describeError } from "../../core/errors.ts";
import type { Logger } from "../../observability/logger.ts";
import { decodeValue } from "./codec.ts";
import type { PostgresBackendConfig } from "./config.ts";
import type { Driver, Lease, PoolStats } from "./driver.ts";
import { SESSION_RESET } from "./read-only.ts";
import { SAMPLE_DATA_SQL } from "./sample-data.ts";

/**
 * One turn at a time on a single connection. PGlite serialises single queries, but a call is
 * several (BEGIN, statements, ROLLBACK), and another call's statement must not land in between.
 */
class Turns {
  #busy = false;
  readonly #waiting: (() => void)[] = [];

  get busy(): boolean {
    return this.#busy;
  }

  get waiting(): number {
    return this.#waiting.length;
  }

  take(signal: AbortSignal): Promise<void> {
    if (signal.aborted) return Promise.reject(signal.reason);
    if (!this.#busy) {
      this.#busy = true;
      return Promise.resolve();
    }
    return new Promise<void>((resolve, reject) => {
      const onAbort = () => {
        const index = this.#waiting.indexOf(grant);
        if (index >= 0) this.#waiting.splice(index, 1);
        reject(signal.reason);
      };
      const grant = () => {
        signal.removeEventListener("abort", onAbort);
        resolve();
      };
      signal.addEventListener("abort", onAbort, { once: true });
      this.#waiting.push(grant);
    });
  }

  give(): void {
    const next = this.#waiting.shift();
    if (next) next();
    else this.#busy = false;
  }
}

/** Turns per embedded database, so that backends sharing one instance also share its turns. */
const TURNS = new WeakMap<PGlite, Turns>();

function turnsOf(db: PGlite): Turns {
  let turns = TURNS.get(db);
  if (!turns) {
    turns = new Turns();
    TURNS.set(db, turns);
  }
  return turns;
}

/**
 * Which PGlite parses and serialises every type: all of them through ours, so values come out as
 * they do from a server (PGlite's defaults would turn int8 into BigInt, which JSON cannot carry) and
 * parameters go in exactly as encodeParam wrote them.
 */
function pgliteCodecs(db: PGlite): {
  parsers: Record<number, (text: string, oid?: number) => unknown>;
  serializers: Record<number, (value: unknown) => string>;
} {
  const oids = new Set<number>();
  for (const key of [...Object.keys(pgliteTypes.parsers), ...Object.keys(db.parsers)]) {
    const oid = Number(key);
    if (Number.isInteger(oid)) oids.add(oid);
  }
  const parsers: Record<number, (text: string, oid?: number) => unknown> = {};
  const serializers: Record<number, (value: unknown) => string> = {};
  for (const oid of oids) {
    parsers[oid] = (text, type) => decodeValue(text, type ?? oid);
    serializers[oid] = (value) => String(value);
  }
  return { parsers, serializers };
}

export class EmbeddedDriver implements Driver {
  readonly where: string;
  readonly embedded = true;
  readonly #config: PostgresBackendConfig;
  readonly #owned: boolean;
  readonly #log: Logger;
  #db: PGlite | undefined;
  #opening: Promise<PGlite> | undefined;
  #codecs: ReturnType<typeof pgliteCodecs> | undefined;

  constructor(config: PostgresBackendConfig, log: Logger, db: PGlite | undefined) {
    this.#config = config;
    this.#db = db;
    this.#owned = db === undefined;
    this.#log = log;
    this.where = db
      ? "the embedded PostgreSQL (PGlite) given by the host program"
      : config.dataDir
        ? `the embedded PostgreSQL (PGlite) in ${config.dataDir}`
        : "the embedded in-memory PostgreSQL (PGlite)";
  }

  async probe(signal: AbortSignal): Promise<undefined> {
    const db = await untilAborted(this.#open(), signal);
    const turns = turnsOf(db);
    await turns.take(signal);
    try {
      await db.query("SELECT 1");
    } finally {
      turns.give();
    }
    // It runs as a superuser, but inside this process, on a file system of its own: there is no
    // database host to reach (see the README).
    return undefined;
  }

  async acquire(signal: AbortSignal): Promise<Lease> {
    const db = this.#db ?? (await untilAborted(this.#open(), signal));
    const turns = turnsOf(db);
    await turns.take(signal);
    const codecs = this.#codecsFor(db);
    let clean = true;
    const reset = async (rollback: boolean) => {
      // Its one connection cannot be replaced, so it is reset instead (settings, role, temp tables).
      await db.exec(rollback && db.isInTransaction() ? `ROLLBACK; ${SESSION_RESET}` : SESSION_RESET);
      clean = true;
    };
    return {
      statement: async (sql, params, collector) => {
        clean = false;
        const result = await db.query<unknown[]>(sql, [...params], { rowMode: "array", ...codecs });
        collector.setFields(result.fields);
        for (const row of result.rows) {
          if (!collector.accepting) break;
          collector.add(row);
        }
        return {
          command: result.command ?? null,
          rowCount: result.rowCount ?? result.affectedRows ?? null,
          more: result.rows.length > collector.rows.length,
        };
      },
      control: async (sql) => {
        clean = false;
        await db.exec(sql);
      },
      ping: async () => {
        await db.query("SELECT 1");
      },
      finish: async (commit) => {
        if (commit) {
          clean = false;
          await db.exec("COMMIT");
        }
        // A failure is left to release, which tries again.
        await reset(!commit).catch(() => undefined);
      },
      inTransaction: () => db.isInTransaction(),
      // The embedded database runs on this thread: nothing can interrupt a statement.
      cancel: async () => undefined,
      abandon: () => undefined,
      release: async (destroy) => {
        try {
          if (destroy || !clean) await reset(true);
        } catch (error) {
          this.#log.warn({ err: describeError(error) }, "could not reset the embedded database's session");
        } finally {
          turns.give();
        }
      },
    };
  }

  stats(): PoolStats {
    const turns = this.#db ? turnsOf(this.#db) : undefined;
    const open = this.#db ? 1 : 0;
    return {
      total: open,
      idle: turns?.busy ? 0 : open,
      waiting: turns?.waiting ?? 0,
      max: 1,
    };
  }

  async close(): Promise<void> {
    const db = this.#db ?? (await this.#opening?.catch(() => undefined));
    this.#db = undefined;
    if (db && this.#owned && !db.closed) await db.close();
  }

  #codecsFor(db: PGlite): ReturnType<typeof pgliteCodecs> {
    // Array types are registered once the database is up, so the map is built on first use.
    this.#codecs ??= pgliteCodecs(db);
    return this.#codecs;
  }

  #open(): Promise<PGlite> {
    if (this.#db) return Promise.resolve(this.#db);
    this.#opening ??= (async () => {
      const started = performance.now();
      let db = this.#config.dataDir
        ? await PGlite.create({ dataDir: this.#config.dataDir })
        : await PGlite.create();
      try {
        if (this.#config.sampleData && !(await hasOwnTables(db))) {
          await db.transaction(async (tx) => {
            await tx.exec(SAMPLE_DATA_SQL);
          });
          this.#log.info("loaded the sample data (customers, products, orders) into the embedded database");
        }
        if (this.#config.dataDir && this.#config.readOnly) {
          // PGlite runs as a superuser, whose SQL can write any file of the data directory (COPY …
          // TO a file) even in a read-only transaction, and that folder is on the host. A read-only
          // backend serves a copy in memory instead, so that the folder stays exactly as it was.
          const image = await db.dumpDataDir("none");
          await db.close();
          db = await PGlite.create({ loadDataDir: image });
        }
      } catch (error) {
        await db.close().catch(() => undefined);
        throw error;
      }
      this.#log.info({ ms: Math.round(performance.now() - started) }, "embedded PostgreSQL (PGlite) ready");
      this.#db = db;
      return db;
    })().finally(() => {
      this.#opening = undefined;
    });
    return this.#opening;
  }
}

async function hasOwnTables(db: PGlite): Promise<boolean> {
  const result = await db.query<{ found: boolean }>(
    `SELECT EXISTS (
       SELECT 1 FROM pg_catalog.pg_class c JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace
       WHERE c.relkind IN ('r', 'p', 'v', 'm', 'f')
         AND n.nspname NOT IN ('pg_catalog', 'information_schema') AND n.nspname NOT LIKE 'pg\\_%'
     ) AS found`,
  );
  return result.rows[0]?.found === true;
}
