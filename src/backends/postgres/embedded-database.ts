/**
 * The embedded PostgreSQL (PGlite), run in a worker thread (pglite-worker.ts) so that no statement
 * can hold the gateway's own thread. PGlite cannot be interrupted, and some statements never end
 * (after `COPY … PROGRAM`, the next query spins forever); on the gateway's thread they would freeze
 * every call, health check and probe. Here every request has a deadline: a worker that does not
 * answer within it is ended, the request fails with StatementTimedOut, and the database is started
 * again the way it was first opened (in memory: with its sample data again; with a dataDir:
 * reopened), while the gateway goes on answering.
 */
import { createInterface } from "node:readline";
import { Worker } from "node:worker_threads";
import { describeError } from "../../core/errors.ts";
import type { Logger } from "../../observability/logger.ts";
import { StatementTimedOut } from "./deadline.ts";
import type {
  EmbeddedAnswer,
  EmbeddedError,
  EmbeddedOpenOptions,
  EmbeddedRequest,
  EmbeddedRows,
  EmbeddedStarted,
} from "./embedded-protocol.ts";
import { Turns } from "./turns.ts";

export type { EmbeddedOpenOptions, EmbeddedRows } from "./embedded-protocol.ts";

/** How long a clean close may take before the worker is ended anyway. */
const CLOSE_WITHIN_MS = 5_000;

/** The worker's module: beside this one, compiled (.js) or not (.ts). */
const WORKER_MODULE = new URL(
  `./pglite-worker${import.meta.url.endsWith(".ts") ? ".ts" : ".js"}`,
  import.meta.url,
);

function spawnWorker(options: EmbeddedOpenOptions): Worker {
  // stdout belongs to the protocol in stdio mode: what the worker prints is read here, not passed on.
  const settings = { workerData: options, stdout: true };
  if (!WORKER_MODULE.pathname.endsWith(".ts")) return new Worker(WORKER_MODULE, settings);
  // Run from TypeScript sources (a checkout, the published package, tests): the loader the main
  // thread runs them with (tsx) does not reach worker threads, so the worker registers it first.
  const code =
    `const { register } = await import(${JSON.stringify(import.meta.resolve("tsx/esm/api"))}); ` +
    `register(); await import(${JSON.stringify(WORKER_MODULE.href)});`;
  return new Worker(new URL(`data:text/javascript,${encodeURIComponent(code)}`), settings);
}

/** An error from the worker, with PostgreSQL's fields (code, severity, detail…) where it had them. */
function errorFrom(error: EmbeddedError): Error {
  return Object.assign(new Error(error.message), error);
}

interface Pending {
  readonly resolve: (answer: EmbeddedAnswer) => void;
  readonly reject: (error: unknown) => void;
  readonly timer: NodeJS.Timeout;
}

export class EmbeddedDatabase {
  /** Calls take turns on its one connection; backends that share the database share its turns. */
  readonly turns = new Turns();
  readonly #options: EmbeddedOpenOptions;
  readonly #log: Logger;
  readonly #pending = new Map<number, Pending>();
  #worker: Worker | undefined;
  #starting: Promise<Worker> | undefined;
  #generation = 0;
  #nextId = 1;
  #inTransaction = false;
  #closed = false;

  constructor(options: EmbeddedOpenOptions, log: Logger) {
    this.#options = options;
    this.#log = log;
  }

  /** Open and answering. */
  get open(): boolean {
    return this.#worker !== undefined;
  }

  /** Changes each time a worker is ended: a session begun before then is gone. */
  get generation(): number {
    return this.#generation;
  }

  /** The last statement left a transaction block open. */
  get inTransaction(): boolean {
    return this.#inTransaction;
  }

  /** Opens the database, unless it is open; after `close`, opens it anew. */
  async start(): Promise<void> {
    this.#closed = false;
    if (!this.#worker) await this.#start();
  }

  /** One statement with `$n` parameters; at most `limit` rows come back. */
  async query(
    sql: string,
    params: readonly (string | null)[],
    limit: number,
    timeoutMs: number,
  ): Promise<EmbeddedRows> {
    const answer = await this.#request({ id: this.#nextId++, op: "query", sql, params, limit }, timeoutMs);
    if (!answer.ok || !answer.rows)
      throw new Error("the embedded PostgreSQL (PGlite) sent no rows for a query");
    return answer.rows;
  }

  /** Statements of the gateway's own, several at once if need be. */
  async exec(sql: string, timeoutMs: number): Promise<void> {
    await this.#request({ id: this.#nextId++, op: "exec", sql }, timeoutMs);
  }

  async close(): Promise<void> {
    this.#closed = true;
    const worker = this.#worker ?? (await this.#starting?.catch(() => undefined));
    if (!worker) return;
    try {
      await this.#send(worker, { id: this.#nextId++, op: "close" }, CLOSE_WITHIN_MS);
    } catch {
      // Ended below either way.
    }
    this.#end(worker, new Error("the embedded PostgreSQL (PGlite) is closed"));
  }

  async #request(request: EmbeddedRequest, timeoutMs: number): Promise<EmbeddedAnswer> {
    if (this.#closed) throw new Error("the embedded PostgreSQL (PGlite) is closed");
    const worker = this.#worker ?? (await this.#start());
    const answer = await this.#send(worker, request, timeoutMs);
    this.#inTransaction = answer.inTransaction;
    if (!answer.ok) throw errorFrom(answer.error);
    return answer;
  }

  #send(worker: Worker, request: EmbeddedRequest, timeoutMs: number): Promise<EmbeddedAnswer> {
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => this.#stalled(worker, timeoutMs), timeoutMs);
      this.#pending.set(request.id, { resolve, reject, timer });
      // While it has work, the worker keeps the process alive; idle, it does not.
      worker.ref();
      worker.postMessage(request);
    });
  }

  #answered(worker: Worker, answer: EmbeddedAnswer): void {
    const pending = this.#pending.get(answer.id);
    if (!pending) return;
    this.#pending.delete(answer.id);
    clearTimeout(pending.timer);
    if (this.#pending.size === 0) worker.unref();
    pending.resolve(answer);
  }

  #stalled(worker: Worker, limitMs: number): void {
    if (this.#worker !== worker) return;
    if (this.#closed) {
      this.#end(worker, new Error("the embedded PostgreSQL (PGlite) is closed"));
      return;
    }
    this.#log.warn(
      { limitMs },
      "the embedded PostgreSQL (PGlite) did not answer within statementTimeoutMs; ending it and starting it again",
    );
    this.#end(worker, new StatementTimedOut(limitMs, undefined, { restarted: true }));
    this.#restart();
  }

  /** Ends `worker`; what was asked of it fails with `error`. */
  #end(worker: Worker, error: unknown): void {
    if (this.#worker === worker) {
      this.#worker = undefined;
      this.#generation++;
      this.#inTransaction = false;
    }
    for (const pending of this.#pending.values()) {
      clearTimeout(pending.timer);
      pending.reject(error);
    }
    this.#pending.clear();
    void worker.terminate();
  }

  /** Starts the database again at once, so that the next call does not wait for all of it. */
  #restart(): void {
    if (this.#closed) return;
    // A failure is logged by #start, and the next request tries again.
    this.#start().catch(() => undefined);
  }

  #start(): Promise<Worker> {
    this.#starting ??= new Promise<Worker>((resolve, reject) => {
      const started = performance.now();
      const worker = spawnWorker(this.#options);
      let ready = false;
      let failure: unknown;
      createInterface({ input: worker.stdout }).on("line", (line) =>
        this.#log.warn({ line }, "the embedded PostgreSQL (PGlite) printed"),
      );
      worker.on("error", (error) => {
        failure = error;
      });
      worker.on("exit", (code) => {
        const reason = `the embedded PostgreSQL (PGlite) stopped: ${failure === undefined ? `exit code ${code}` : describeError(failure)}`;
        if (!ready) {
          reject(failure ?? new Error(reason));
        } else if (this.#worker === worker) {
          this.#log.error({ err: reason }, "the embedded PostgreSQL (PGlite) stopped; starting it again");
          this.#end(worker, new Error(reason));
          this.#restart();
        }
      });
      worker.on("message", (message: EmbeddedStarted | EmbeddedAnswer) => {
        if (!("type" in message)) {
          this.#answered(worker, message);
        } else if (message.type === "failed") {
          void worker.terminate();
          this.#log.error({ err: message.error.message }, "the embedded PostgreSQL (PGlite) could not start");
          reject(errorFrom(message.error));
        } else {
          ready = true;
          if (message.loadedSampleData) {
            this.#log.info("loaded the sample data (customers, products, orders) into the embedded database");
          }
          this.#log.info(
            { ms: Math.round(performance.now() - started) },
            "embedded PostgreSQL (PGlite) ready",
          );
          this.#worker = worker;
          worker.unref();
          resolve(worker);
        }
      });
    }).finally(() => {
      this.#starting = undefined;
    });
    return this.#starting;
  }
}
