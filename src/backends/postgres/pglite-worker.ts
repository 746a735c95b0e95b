/**
 * The embedded PostgreSQL (PGlite) in a worker thread of its own, answering embedded-protocol.ts
 * requests one at a time. PGlite runs PostgreSQL compiled to WebAssembly on the thread that calls it,
 * and some statements never give that thread back (after `COPY … PROGRAM`, which it cannot run, the
 * next query spins forever): here they stall this thread only, which the gateway can end and replace
 * (embedded-database.ts).
 */
import { parentPort, workerData } from "node:worker_threads";
import type { PGlite } from "@electric-sql/pglite";
import type {
  EmbeddedAnswer,
  EmbeddedError,
  EmbeddedOpenOptions,
  EmbeddedRequest,
  EmbeddedStarted,
} from "./embedded-protocol.ts";
import { SAMPLE_DATA_SQL } from "./sample-data.ts";

const HAS_OWN_TABLES_SQL = `SELECT EXISTS (
  SELECT 1 FROM pg_catalog.pg_class c JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace
  WHERE c.relkind IN ('r', 'p', 'v', 'm', 'f')
    AND n.nspname NOT IN ('pg_catalog', 'information_schema') AND n.nspname NOT LIKE 'pg\\_%'
) AS found`;

/**
 * PGlite is an optional peer dependency (27 MB, for trials): loaded only when an embedded database
 * opens, with what to do when it is not installed.
 */
async function loadPglite(): Promise<typeof import("@electric-sql/pglite")> {
  try {
    return await import("@electric-sql/pglite");
  } catch (error) {
    const missing =
      (error as NodeJS.ErrnoException).code === "ERR_MODULE_NOT_FOUND" &&
      String((error as Error).message).includes("'@electric-sql/pglite'");
    if (!missing) throw error;
    throw new Error(
      "The embedded PostgreSQL (a postgres backend without url) needs the package @electric-sql/pglite, " +
        "which is not installed. Install it next to mcp-switchboard (npm install @electric-sql/pglite), " +
        "or give the backend the url of a PostgreSQL server.",
    );
  }
}

const pglite = await loadPglite().catch((error: unknown) => error as Error);

async function open(options: EmbeddedOpenOptions): Promise<{ db: PGlite; loadedSampleData: boolean }> {
  if (pglite instanceof Error) throw pglite;
  const { PGlite } = pglite;
  let db = options.dataDir ? await PGlite.create({ dataDir: options.dataDir }) : await PGlite.create();
  let loadedSampleData = false;
  try {
    const found = await db.query<{ found: boolean }>(HAS_OWN_TABLES_SQL);
    if (options.sampleData && found.rows[0]?.found !== true) {
      await db.transaction(async (tx) => {
        await tx.exec(SAMPLE_DATA_SQL);
      });
      loadedSampleData = true;
    }
    if (options.dataDir && options.readOnly) {
      // PGlite runs as a superuser, whose SQL can write any file of the data directory (COPY … TO a
      // file) even in a read-only transaction, and that folder is on the host. A read-only backend
      // serves a copy in memory instead, so that the folder stays exactly as it was.
      const image = await db.dumpDataDir("none");
      await db.close();
      db = await PGlite.create({ loadDataDir: image });
    }
    return { db, loadedSampleData };
  } catch (error) {
    await db.close().catch(() => undefined);
    throw error;
  }
}

/**
 * Every type stays in PostgreSQL's text form here (the gateway decodes it), and parameters go in as
 * the gateway wrote them.
 */
function textCodecs(db: PGlite): {
  parsers: Record<number, (text: string) => string>;
  serializers: Record<number, (value: unknown) => string>;
} {
  const parsers: Record<number, (text: string) => string> = {};
  const serializers: Record<number, (value: unknown) => string> = {};
  // An instance's parsers start as a copy of PGlite's defaults, so its keys name every type it knows.
  for (const key of Object.keys(db.parsers)) {
    const oid = Number(key);
    if (!Number.isInteger(oid)) continue;
    parsers[oid] = (text) => text;
    serializers[oid] = (value) => String(value);
  }
  return { parsers, serializers };
}

function errorOf(error: unknown): EmbeddedError {
  if (!(error instanceof Error)) return { message: String(error) };
  const fields = error as Error & Record<string, unknown>;
  const text = (key: string) => (typeof fields[key] === "string" ? { [key]: fields[key] } : {});
  return {
    message: error.message,
    ...text("code"),
    ...text("severity"),
    ...text("detail"),
    ...text("hint"),
    ...text("position"),
  };
}

async function answer(db: PGlite, codecs: ReturnType<typeof textCodecs>, request: EmbeddedRequest) {
  switch (request.op) {
    case "query": {
      const result = await db.query<(string | null)[]>(request.sql, [...request.params], {
        rowMode: "array",
        ...codecs,
      });
      return {
        fields: result.fields.map(({ name, dataTypeID }) => ({ name, dataTypeID })),
        rows: result.rows.length > request.limit ? result.rows.slice(0, request.limit) : result.rows,
        total: result.rows.length,
        command: result.command ?? null,
        rowCount: result.rowCount ?? result.affectedRows ?? null,
      };
    }
    case "exec":
      await db.exec(request.sql);
      return undefined;
    case "close":
      await db.close();
      return undefined;
  }
}

async function serve(): Promise<void> {
  const port = parentPort;
  if (!port) throw new Error("pglite-worker.ts runs in a worker thread");
  let db: PGlite;
  try {
    const opened = await open(workerData as EmbeddedOpenOptions);
    db = opened.db;
    port.postMessage({ type: "ready", loadedSampleData: opened.loadedSampleData } satisfies EmbeddedStarted);
  } catch (error) {
    port.postMessage({ type: "failed", error: errorOf(error) } satisfies EmbeddedStarted);
    return;
  }
  // Array types are registered once the database is up, so the codecs are built after it opened.
  const codecs = textCodecs(db);
  let queue = Promise.resolve();
  port.on("message", (request: EmbeddedRequest) => {
    queue = queue.then(async () => {
      let reply: EmbeddedAnswer;
      try {
        const rows = await answer(db, codecs, request);
        reply = { id: request.id, ok: true, inTransaction: inTransaction(db), ...(rows ? { rows } : {}) };
      } catch (error) {
        reply = { id: request.id, ok: false, inTransaction: inTransaction(db), error: errorOf(error) };
      }
      port.postMessage(reply);
    });
  });
}

function inTransaction(db: PGlite): boolean {
  return !db.closed && db.isInTransaction();
}

await serve();
