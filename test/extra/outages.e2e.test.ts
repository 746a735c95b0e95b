/**
 * PostgreSQL and Redis go away under load, and come back, behind a real gateway process. The shared
 * services are never stopped: the gateway reaches them through a loopback TCP proxy that the test
 * cuts (every connection dropped, new ones refused) and restores.
 *
 * - The built-in postgres backend: while the database is away its calls fail fast with an error that
 *   says the database is unavailable, the other backends keep answering, and once it is back the
 *   backend recovers by itself without leaking connections.
 * - The postgres audit sink: in `sync` mode calls fail closed with the audit error while the table
 *   cannot be written (and no call is answered unrecorded); in `batched` mode calls keep being
 *   answered and every record lands once the database is back.
 * - Redis as the store, failing open, flapping under mixed load: what test/e2e/redis-outage.e2e.test.ts
 *   does not cover (it runs one outage with a cached-read load): several outages in a row, latency
 *   while failing open, rate-limit state and cache invalidations that must survive an outage, pub/sub
 *   that must be re-established, and connections that must not pile up.
 *
 * Each suite runs its scenario once in `before`, recording every call's outcome, and its tests then
 * each check one property of that record.
 */
import assert from "node:assert/strict";
import { existsSync, readFileSync, rmSync } from "node:fs";
import { dirname } from "node:path";
import { after, before, test } from "node:test";
import { Client, StreamableHTTPClientTransport } from "@modelcontextprotocol/client";
import pg from "pg";
import {
  eventually,
  fixtureServer,
  type RunningGateway,
  startHttpGateway,
  writeConfig,
} from "../support/gateway-process.ts";
import { createTestRole, type TestRole } from "../support/postgres-roles.ts";
import { deleteByPrefix, TcpProxy, uniquePrefix } from "../support/redis.ts";
import { flakyServer, type Replica, startReplica } from "../support/replicas.ts";
import { describeWithService, POSTGRES, REDIS, uniqueName } from "../support/services.ts";

// ─── calls and their outcomes ────────────────────────────────────────────────────────────────

type Result = {
  content: { type: string; text?: string }[];
  isError?: boolean;
  structuredContent?: Record<string, unknown>;
  _meta?: Record<string, unknown>;
};

/** How one call ended: answered, answered with isError, or refused with a JSON-RPC error / transport failure. */
interface Outcome {
  /** The phase when the call started, and when it ended. */
  readonly phase: string;
  readonly ended?: string;
  readonly tool: string;
  /** What tells this call apart from every other (its unique argument). */
  readonly key: string;
  /** performance.now() when the call started, and how long it took. */
  readonly at: number;
  readonly ms: number;
  readonly status: "ok" | "error" | "thrown";
  readonly text: string;
  readonly code?: string | undefined;
  readonly result?: Result | undefined;
}

const textOf = (result: Result) =>
  result.content
    .map((c) => c.text ?? "")
    .join(" ")
    .trim();
const codeOf = (result: Result) =>
  (result._meta?.["switchboard/error"] as { code?: string } | undefined)?.code;

/** A 2026-07-28 (stateless) SDK client: any number of its calls can be in flight at once. */
async function connectClient(url: string): Promise<Client> {
  const client = new Client({ name: "outages-e2e", version: "1" }, {
    versionNegotiation: { mode: { pin: "2026-07-28" } },
  } as never);
  await client.connect(new StreamableHTTPClientTransport(new URL(url)));
  return client;
}

/** The client gives up on a call after this long: far beyond every bound the tests assert. */
const CLIENT_TIMEOUT_MS = 20_000;

async function attempt(
  client: Client,
  phase: string,
  tool: string,
  args: Record<string, unknown>,
  key: string,
  { label = tool, timeoutMs = CLIENT_TIMEOUT_MS }: { label?: string; timeoutMs?: number } = {},
): Promise<Outcome> {
  const started = performance.now();
  try {
    const result = (await client.callTool({ name: tool, arguments: args }, {
      timeout: timeoutMs,
    } as never)) as Result;
    const ms = performance.now() - started;
    return {
      phase,
      tool: label,
      key,
      at: started,
      ms,
      status: result.isError ? "error" : "ok",
      text: textOf(result),
      code: codeOf(result),
      result,
    };
  } catch (error) {
    const ms = performance.now() - started;
    return { phase, tool: label, key, at: started, ms, status: "thrown", text: (error as Error).message };
  }
}

/**
 * Workers that call in a loop until stopped, recording every outcome under the phase current when
 * the call started. Each loop is bounded (MAX_CALLS_PER_WORKER) besides the stop flag.
 */
class Load {
  readonly outcomes: Outcome[] = [];
  phase = "before";
  #running = true;
  readonly #workers: Promise<void>[] = [];
  static readonly MAX_CALLS_PER_WORKER = 50_000;

  add(body: (i: number, phase: string) => Promise<Outcome>): void {
    this.#workers.push(
      (async () => {
        for (let i = 0; this.#running && i < Load.MAX_CALLS_PER_WORKER; i++) {
          const outcome = await body(i, this.phase);
          this.outcomes.push({ ...outcome, ended: this.phase });
        }
      })(),
    );
  }

  count(match: (o: Outcome) => boolean): number {
    let n = 0;
    for (const o of this.outcomes) if (match(o)) n++;
    return n;
  }

  select(match: (o: Outcome) => boolean): Outcome[] {
    return this.outcomes.filter(match);
  }

  async stop(): Promise<void> {
    this.#running = false;
    await Promise.all(this.#workers);
  }
}

/** A short, readable list of what went wrong, for assertion messages. */
function sample(outcomes: readonly Outcome[], n = 5): string {
  return outcomes
    .slice(0, n)
    .map((o) => `${o.tool} [${o.phase}, ${Math.round(o.ms)} ms] ${o.status}: ${o.text.slice(0, 300)}`)
    .join("\n");
}

/**
 * Asserts that no outcome is in `list`. The message holds a sample, not the outcomes themselves: a
 * diff of hundreds of recorded calls would drown the report.
 */
function none(list: readonly Outcome[], what: string): void {
  if (list.length > 0) assert.fail(`${list.length} ${what}, e.g.:\n${sample(list)}`);
}

function percentile(values: readonly number[], p: number): number {
  const sorted = [...values].sort((a, b) => a - b);
  return sorted[Math.min(sorted.length - 1, Math.floor(sorted.length * p))] ?? 0;
}

interface HealthCheck {
  status: string;
  detail?: string;
  data?: Record<string, unknown>;
}

async function healthz(gateway: RunningGateway): Promise<Record<string, HealthCheck>> {
  const response = await fetch(new URL("/healthz", gateway.url), { signal: AbortSignal.timeout(5_000) });
  const body = (await response.json()) as { checks?: Record<string, HealthCheck> };
  return body.checks ?? {};
}

/** The loopback TCP connections in ESTABLISHED state whose remote port is `port` (Linux only). */
function establishedTo(port: number): number | undefined {
  const hex = port.toString(16).toUpperCase().padStart(4, "0");
  let count = 0;
  for (const file of ["/proc/net/tcp", "/proc/net/tcp6"]) {
    if (!existsSync(file)) return file === "/proc/net/tcp" ? undefined : count;
    for (const line of readFileSync(file, "utf8").split("\n").slice(1)) {
      const fields = line.trim().split(/\s+/);
      // local_address rem_address st: "0100007F:9C40 0100007F:1A2B 01"
      if (fields[2]?.endsWith(`:${hex}`) && fields[3] === "01") count++;
    }
  }
  return count;
}

const proxyPort = (proxy: TcpProxy, target: string) => Number(new URL(proxy.urlFor(target)).port);

// ─── (a) the built-in postgres backend ──────────────────────────────────────────────────────

describeWithService(POSTGRES, "built-in postgres backend: the database goes away under load", (url) => {
  const POOL_MAX = 4;
  const DB_TIMEOUT_MS = 3_000;
  /** Every call must end within its timeout plus this much (a hang would take CLIENT_TIMEOUT_MS). */
  const SLACK_MS = 1_500;
  const application = uniqueName("outage_pg");
  const load = new Load();
  let admin: pg.Client;
  let proxy: TcpProxy;
  let gateway: RunningGateway;
  // The read-only backend refuses a superuser; it connects as a role that can only read.
  let role: TestRole | undefined;
  const clients: Client[] = [];
  const seen = {
    connectionsUnderLoad: 0,
    dbCheckDuringOutage: undefined as HealthCheck | undefined,
    recoveredAfterMs: -1,
  };

  const connections = async () =>
    (
      await admin.query<{ n: number }>(
        "SELECT count(*)::int AS n FROM pg_stat_activity WHERE application_name = $1",
        [application],
      )
    ).rows[0]?.n ?? -1;

  before(
    async () => {
      admin = new pg.Client({ connectionString: url });
      await admin.connect();
      role = await createTestRole(url, "outage_pg");
      const target = new URL(role.url);
      target.port ||= "5432";
      proxy = await TcpProxy.start(target.toString());
      const dbUrl = new URL(proxy.urlFor(target.toString()));
      dbUrl.searchParams.set("application_name", application);
      gateway = await startHttpGateway(
        writeConfig({
          mcpServers: { fx: fixtureServer() },
          backends: {
            db: {
              type: "postgres",
              url: dbUrl.toString(),
              pool: { max: POOL_MAX, connectTimeoutMs: 1_000 },
              timeoutMs: DB_TIMEOUT_MS,
              // Quick reconnects keep the test short; the defaults are 500 ms doubling to 30 s.
              restart: { initialDelayMs: 50, maxDelayMs: 500 },
            },
          },
        }),
      );
      for (let i = 0; i < 6; i++) clients.push(await connectClient(gateway.url));

      // Five clients query the database (more than the pool holds, so some wait for a connection);
      // a sixth calls the MCP server next to it.
      for (const [w, client] of clients.slice(0, 5).entries()) {
        load.add(async (i, phase) => {
          const n = w * 100_000 + i;
          const outcome = await attempt(
            client,
            phase,
            "db__query",
            { sql: "SELECT $1::int AS n, pg_sleep(0.01)::text AS slept", params: [n] },
            String(n),
          );
          // An answer must be this call's own: a connection mixed up by the outage would show here.
          const rows = outcome.result?.structuredContent?.rows as { n?: number }[] | undefined;
          if (outcome.status === "ok" && rows?.[0]?.n !== n) {
            return { ...outcome, status: "error", text: `wrong answer for ${n}: ${outcome.text}` };
          }
          return outcome;
        });
      }
      const fx = clients[5] as Client;
      load.add(async (i, phase) => {
        const message = `echo-${i}`;
        const outcome = await attempt(fx, phase, "fx__echo", { message }, message);
        return outcome.status === "ok" && outcome.text !== message
          ? { ...outcome, status: "error", text: `wrong answer: ${outcome.text}` }
          : outcome;
      });

      const dbOk = (phase: string) => (o: Outcome) =>
        o.tool === "db__query" && o.phase === phase && o.status === "ok";
      await eventually(() => load.count(dbOk("before")) >= 60, 15_000, "queries to flow");
      seen.connectionsUnderLoad = await connections();

      load.phase = "outage";
      proxy.cut();
      await gateway.logs.waitFor((l) => l.msg === "database unreachable", 10_000, "the backend to notice");
      await eventually(
        async () => {
          const db = (await healthz(gateway)).db;
          if (db?.status !== "unhealthy") return false;
          seen.dbCheckDuringOutage = db;
          return true;
        },
        10_000,
        "/healthz to report the database unhealthy",
      );
      await eventually(
        () =>
          load.count((o) => o.phase === "outage" && o.tool === "db__query") >= 60 &&
          load.count((o) => o.phase === "outage" && o.tool === "fx__echo") >= 20,
        15_000,
        "load to go on during the outage",
      );

      load.phase = "restored";
      const restoredAt = performance.now();
      proxy.restore();
      await eventually(() => load.count(dbOk("restored")) >= 1, 15_000, "the first query after the outage");
      seen.recoveredAfterMs = performance.now() - restoredAt;
      await eventually(() => load.count(dbOk("restored")) >= 60, 15_000, "queries to flow again");
      await load.stop();
    },
    { timeout: 60_000 },
  );

  after(async () => {
    await load.stop();
    await Promise.allSettled(clients.map((c) => c.close()));
    const code = await gateway?.stop();
    await proxy?.close();
    await admin?.end();
    await role?.drop();
    assert.equal(code, 0, `the gateway exits 0 on SIGTERM after the outage:\n${gateway?.logs.tail()}`);
  });

  const db = (phase: string) => load.select((o) => o.tool === "db__query" && o.phase === phase);

  test("before the outage every query is answered, each with its own row", () => {
    // Queries still running at the cut may fail: only those over before it count here.
    const broken = db("before").filter((o) => o.ended === "before" && o.status !== "ok");
    none(broken, "broken calls");
    assert.ok(seen.connectionsUnderLoad >= 1, "pg_stat_activity sees the backend's connections");
  });

  test("during the outage no query hangs: each ends within the backend's timeout", () => {
    const outage = db("outage");
    const slow = outage.filter((o) => o.ms > DB_TIMEOUT_MS + SLACK_MS);
    none(slow, `calls took longer than ${DB_TIMEOUT_MS + SLACK_MS} ms`);
    const answered = outage.filter((o) => o.status === "ok");
    assert.ok(
      answered.length <= POOL_MAX,
      `at most the queries already running at the cut may be answered; ${answered.length} were`,
    );
  });

  test("during the outage every failed query says that database backend db is unavailable", () => {
    const failed = db("outage").filter((o) => o.status !== "ok");
    assert.ok(failed.length >= 50, `${failed.length} queries failed during the outage`);
    // A client must learn what is wrong and that it is temporary: not that the tool does not exist.
    const unclear = failed.filter(
      (o) =>
        !/Database backend "db"/.test(o.text) ||
        !/(not available|unavailable|could not run)/.test(o.text) ||
        /does not exist/.test(o.text),
    );
    none(unclear, `of ${failed.length} failures do not say that database backend "db" is unavailable`);
    for (const o of failed) assert.equal(o.code, "backend_unavailable", sample([o]));
    assert.match(seen.dbCheckDuringOutage?.detail ?? "", /PostgreSQL at 127\.0\.0\.1:\d+/);
  });

  test("the MCP server next to the database keeps answering throughout", () => {
    const fx = load.select((o) => o.tool === "fx__echo");
    const broken = fx.filter((o) => o.status !== "ok");
    none(broken, "broken calls");
    assert.ok(load.count((o) => o.tool === "fx__echo" && o.phase === "outage") >= 20);
  });

  test("after the outage the backend recovers by itself and every query succeeds again", () => {
    assert.ok(
      seen.recoveredAfterMs >= 0 && seen.recoveredAfterMs < 10_000,
      `recovered ${seen.recoveredAfterMs} ms after the restore`,
    );
    const restored = db("restored");
    const firstOk = restored.find((o) => o.status === "ok");
    assert.ok(firstOk, "a query succeeded after the outage");
    // Calls that started before the backend saw the database again may still fail; none after.
    const broken = restored.filter((o) => o.at > firstOk.at + firstOk.ms && o.status !== "ok");
    none(broken, "broken calls");
    const ups = gateway.logs.lines.filter((l) => l.msg === "database up" && l.server === "db");
    assert.equal(ups.length, 2, "up at start, and up again after the outage");
  });

  test("no connection leaks: the pool and the server count at most pool.max, and all can be used", async () => {
    await eventually(
      async () => (await connections()) <= POOL_MAX,
      10_000,
      `pg_stat_activity to count at most ${POOL_MAX} connections for ${application}`,
    );
    const pool = (await healthz(gateway)).db?.data?.pool as { total: number; waiting: number } | undefined;
    assert.ok(pool && pool.total <= POOL_MAX && pool.waiting === 0, JSON.stringify(pool));
    // A connection leaked during the outage (checked out, never released) would leave fewer than
    // pool.max usable: three times as many calls at once as the pool holds must all get through.
    const client = clients[0] as Client;
    const burst = await Promise.all(
      Array.from({ length: POOL_MAX * 3 }, (_, i) =>
        attempt(client, "burst", "db__query", { sql: "SELECT pg_sleep(0.1)::text AS slept" }, `burst-${i}`),
      ),
    );
    const broken = burst.filter((o) => o.status !== "ok" || o.ms > DB_TIMEOUT_MS);
    none(broken, "broken calls");
    assert.ok((await connections()) <= POOL_MAX);
  });
});

// ─── (b) the postgres audit sink ──────────────────────────────────────────────────────────────

describeWithService(POSTGRES, "postgres audit sink: the database goes away under load", (url) => {
  const tables = { sync: uniqueName("outage_audit_sync"), batched: uniqueName("outage_audit_batched") };
  const label = uniqueName("m");
  /** A sync call waits for its INSERT: it must end within the sink's connect and query timeouts. */
  const AUDIT_BOUND_MS = 6_000;
  const load = new Load();
  let admin: pg.Client;
  let proxy: TcpProxy;
  const gateways: Record<"sync" | "batched", RunningGateway | undefined> = {
    sync: undefined,
    batched: undefined,
  };
  const clients: Client[] = [];
  const dirs: string[] = [];
  let syncHealthDuringOutage: HealthCheck | undefined;

  const rows = async (mode: "sync" | "batched") =>
    (
      await admin.query<{ message: string }>(
        `SELECT arguments->>'message' AS message FROM "${tables[mode]}" WHERE tool = 'fx__echo'`,
      )
    ).rows.map((r) => r.message);

  before(
    async () => {
      admin = new pg.Client({ connectionString: url });
      await admin.connect();
      const target = new URL(url);
      target.port ||= "5432";
      proxy = await TcpProxy.start(target.toString());
      const sinkUrl = proxy.urlFor(target.toString());
      const start = async (mode: "sync" | "batched") => {
        const path = writeConfig({
          mcpServers: { fx: fixtureServer() },
          audit: {
            sinks: [
              {
                type: "postgres",
                url: sinkUrl,
                table: tables[mode],
                durability: mode,
                ...(mode === "batched" ? { flushIntervalMs: 200 } : {}),
              },
            ],
          },
        });
        dirs.push(dirname(path));
        return startHttpGateway(path);
      };
      [gateways.sync, gateways.batched] = await Promise.all([start("sync"), start("batched")]);
      for (const mode of ["sync", "batched"] as const) {
        const gateway = gateways[mode] as RunningGateway;
        for (let w = 0; w < 3; w++) {
          const client = await connectClient(gateway.url);
          clients.push(client);
          load.add(async (i, phase) => {
            const message = `${label}-${mode}-${w}-${i}`;
            const outcome = await attempt(client, phase, "fx__echo", { message }, message, {
              label: `${mode}:fx__echo`,
            });
            return outcome.status === "ok" && outcome.text !== message
              ? { ...outcome, status: "error", text: `wrong answer: ${outcome.text}` }
              : outcome;
          });
        }
      }
      const ok = (mode: string, phase: string) => (o: Outcome) =>
        o.tool === `${mode}:fx__echo` && o.phase === phase && o.status === "ok";
      await eventually(
        () => load.count(ok("sync", "before")) >= 30 && load.count(ok("batched", "before")) >= 30,
        15_000,
        "calls to flow on both gateways",
      ).catch((error: Error) => {
        throw new Error(`${error.message}:\n${sample(load.select((o) => o.status !== "ok"))}`);
      });

      load.phase = "outage";
      proxy.cut();
      await eventually(
        () =>
          load.count((o) => o.tool === "sync:fx__echo" && o.phase === "outage" && o.status !== "ok") >= 20 &&
          load.count(ok("batched", "outage")) >= 60,
        15_000,
        "the sync gateway to refuse calls and the batched one to go on",
      ).catch((error: Error) => {
        const outage = load.select((o) => o.phase === "outage");
        const tally = (mode: string, ok: boolean) =>
          outage.filter((o) => o.tool === `${mode}:fx__echo` && (o.status === "ok") === ok).length;
        throw new Error(
          `${error.message}: sync ${tally("sync", true)} ok / ${tally("sync", false)} refused, batched ${tally("batched", true)} ok / ${tally("batched", false)} failed; first calls:\n${sample(outage.slice(0, 6), 6)}\nsync gateway:\n${gateways.sync?.logs.tail()}\nbatched gateway:\n${gateways.batched?.logs.tail()}`,
        );
      });
      await eventually(
        async () => {
          const audit = (await healthz(gateways.sync as RunningGateway)).audit;
          syncHealthDuringOutage = audit;
          return audit?.status === "unhealthy";
        },
        5_000,
        "/healthz to report the sync audit sink unhealthy",
      );

      load.phase = "restored";
      proxy.restore();
      await eventually(
        () => load.count(ok("sync", "restored")) >= 30 && load.count(ok("batched", "restored")) >= 30,
        20_000,
        "calls to be answered again on both gateways",
      );
      await load.stop();
    },
    { timeout: 60_000 },
  );

  after(async () => {
    await load.stop();
    await Promise.allSettled(clients.map((c) => c.close()));
    const codes = await Promise.all(Object.values(gateways).map((g) => g?.stop()));
    await proxy?.close();
    for (const table of Object.values(tables)) await admin?.query(`DROP TABLE IF EXISTS "${table}"`);
    await admin?.end();
    for (const dir of dirs) rmSync(dir, { recursive: true, force: true });
    assert.deepEqual(codes, [0, 0], "both gateways exit 0 on SIGTERM after the outage");
  });

  const calls = (mode: string, phase?: string) =>
    load.select((o) => o.tool === `${mode}:fx__echo` && (phase === undefined || o.phase === phase));

  test("sync: during the outage calls fail closed, quickly, with the audit error", () => {
    const outage = calls("sync", "outage");
    const refused = outage.filter((o) => o.status !== "ok");
    assert.ok(refused.length >= 20, `${refused.length} calls refused`);
    const unclear = refused.filter(
      (o) =>
        o.status !== "error" ||
        o.code !== "audit_unavailable" ||
        !/could not be recorded in the audit log/.test(o.text) ||
        !/set its durability to "batched"/.test(o.text),
    );
    none(unclear, "unclear calls");
    const slow = outage.filter((o) => o.ms > AUDIT_BOUND_MS);
    none(slow, "slow calls");
    assert.match(syncHealthDuringOutage?.detail ?? "", /failing/);
  });

  test("sync: no call is answered without its row, before, during or after the outage", async () => {
    const answered = calls("sync").filter((o) => o.status === "ok");
    const have = new Set(await rows("sync"));
    const lost = answered.filter((o) => !have.has(o.key));
    none(lost, `of ${answered.length} answered calls have no row`);
  });

  test("sync: the sink recovers by itself; calls are answered again", () => {
    const restored = calls("sync", "restored");
    const firstOk = restored.find((o) => o.status === "ok");
    assert.ok(firstOk, "a call was answered after the outage");
    const broken = restored.filter((o) => o.at > firstOk.at + firstOk.ms && o.status !== "ok");
    none(broken, "broken calls");
    assert.ok(
      gateways.sync?.logs.lines.some((l) => l.msg === "audit sink recovered"),
      "the recovery is logged",
    );
  });

  test("batched: calls never fail for the log, and every answered call's record lands after the outage", async () => {
    const all = calls("batched");
    const broken = all.filter((o) => o.status !== "ok");
    none(broken, "broken calls");
    const slow = all.filter((o) => o.ms > AUDIT_BOUND_MS);
    none(slow, "slow calls");
    let missing: string[] = [];
    await eventually(
      async () => {
        // The table itself may not exist yet: a batched sink whose first flush met the outage creates
        // it on a retry after the database is back.
        const have = new Set(await rows("batched").catch(() => []));
        missing = all.filter((o) => !have.has(o.key)).map((o) => o.key);
        return missing.length === 0;
      },
      20_000,
      "every record of the batched gateway to land",
    ).catch((error: Error) => {
      throw new Error(`${error.message}: ${missing.length} of ${all.length} missing, e.g. ${missing[0]}`);
    });
    assert.ok(calls("batched", "outage").length >= 60, "the outage held records back");
  });
});

// ─── (c) Redis as the store, failing open ────────────────────────────────────────────────────

describeWithService(REDIS, "Redis store failing open: Redis flaps under mixed load", (url) => {
  const prefix = uniquePrefix("outages-e2e");
  const CYCLES = 3;
  const COMMAND_TIMEOUT_MS = 500;
  const BUCKET = 40;
  /** A slow cached read that holds its single-flight lock in Redis across a cut. */
  const HELD = { key: "held-across-the-cut", delayMs: 1_500 };
  const load = new Load();
  let proxy: TcpProxy;
  let a: Replica;
  let b: Replica;
  const clients: Client[] = [];
  const notes = {
    heldAcrossCut: undefined as Outcome | undefined,
    sameReadAfterOutage: undefined as Outcome | undefined,
    userOnA: "",
    userOnB: "",
    bucketBefore: 0,
    bucketAfter: [] as Outcome[],
    lookups: { before: 0, after: 0 },
  };

  const storeStatus = async (replica: Replica) => (await healthz(replica.gateway)).store?.status;
  const both = async (status: string) =>
    (await storeStatus(a)) === status && (await storeStatus(b)) === status;
  const lookups = async (replica: Replica) => (await replica.backendCalls()).lookup ?? 0;

  before(
    async () => {
      proxy = await TcpProxy.start(url);
      const config = writeConfig({
        mcpServers: { fx: flakyServer() },
        store: {
          type: "redis",
          url: proxy.urlFor(url),
          keyPrefix: prefix,
          onStoreError: "fail-open",
          commandTimeoutMs: COMMAND_TIMEOUT_MS,
          reconnect: { initialDelayMs: 20, maxDelayMs: 200 },
        },
        toolPolicies: {
          // Refills nothing, so the tokens left say exactly what was taken, and where.
          fx__ping: { rateLimit: { scope: "tool", capacity: BUCKET, refillPerMinute: 0 } },
          // The load's tool: every call takes a token in Redis, then reads (and on a miss writes) the cache.
          fx__read: {
            rateLimit: { scope: "tool", capacity: 1_000_000, refillPerSecond: 1_000_000 },
            cache: { ttlMs: 60_000 },
          },
          // Kept out of the load, so that its backend call counts are exact.
          fx__lookup: { cache: { ttlMs: 60_000 } },
          fx__get_user: { cache: { ttlMs: 60_000 } },
          fx__update_user: { invalidates: ["fx__get_user"] },
          fx__write: { invalidates: ["fx__lookup"] },
        },
      });
      [a, b] = await Promise.all([startReplica(config), startReplica(config)]);
      for (const replica of [a, a, b, b]) clients.push(await connectClient(replica.gateway.url));

      // Hot keys, cached in Redis before any outage: hits, then local misses, then hits again.
      for (let j = 0; j < 10; j++) await a.call("fx__read", { key: `hot-${j}` });
      // Mixed traffic on both replicas: rate-limited cache misses (each a token, a lock, a read and a
      // write in Redis), rate-limited cache hits, and calls that need no store. Miss keys never repeat: a read that
      // repeats a key whose lock a cut orphaned is the subject of its own test below.
      for (const [w, client] of clients.entries()) {
        load.add(async (i, phase) => {
          const key = i % 3 === 0 ? `miss-${w}-${i}` : i % 3 === 1 ? `hot-${i % 10}` : undefined;
          return key === undefined
            ? attempt(client, phase, "fx__backup", { key: `b${w}-${i}` }, `b${w}-${i}`)
            : attempt(client, phase, "fx__read", { key }, `${key}@${w}-${i}`);
        });
      }
      await eventually(() => load.count((o) => o.status === "ok") >= 150, 15_000, "load to get going");

      // Shared state made before the outages: a cached user, and tokens taken from a global bucket.
      assert.equal(textOf(await a.call("fx__get_user", { id: "1" })), "alice");
      const hit = await b.call("fx__get_user", { id: "1" });
      assert.equal(hit._meta?.["switchboard/source"], "cache", "B reads A's entry from Redis");
      const taken = await Promise.all(Array.from({ length: 10 }, (_, i) => (i % 2 ? a : b).call("fx__ping")));
      notes.bucketBefore = taken.filter((r) => !r.isError).length;

      for (let cycle = 1; cycle <= CYCLES; cycle++) {
        const last = cycle === CYCLES;
        let held: Promise<Outcome> | undefined;
        if (last) {
          // A miss that holds its lock in Redis while its backend works, when Redis goes away.
          const before = await lookups(a);
          held = attempt(a.client, "held", "fx__lookup", HELD, HELD.key);
          await eventually(async () => (await lookups(a)) === before + 1, 5_000, "the held read to start");
        }
        load.phase = `outage-${cycle}`;
        proxy.cut();
        await eventually(() => both("degraded"), 5_000, `both replicas to see Redis gone (cycle ${cycle})`);
        const atCut = load.outcomes.length;
        await eventually(() => load.outcomes.length >= atCut + 90, 10_000, "load during the outage");
        if (last) {
          notes.heldAcrossCut = await held;
          // A write that invalidates the cached user, and tokens taken locally, while Redis is away.
          const update = await a.call("fx__update_user", { id: "1", name: "carol" });
          assert.equal(textOf(update), "user 1 is now carol");
          await Promise.all(Array.from({ length: 6 }, (_, i) => (i % 2 ? a : b).call("fx__ping")));
        }
        load.phase = `restored-${cycle}`;
        proxy.restore();
        await eventually(() => both("healthy"), 5_000, `both replicas to reconnect (cycle ${cycle})`);
        const atRestore = load.outcomes.length;
        await eventually(() => load.outcomes.length >= atRestore + 90, 10_000, "load after the outage");
      }
      await load.stop();

      // The same read again, now that Redis is back: nothing holds its lock any more.
      notes.sameReadAfterOutage = await attempt(b.client, "after", "fx__lookup", HELD, HELD.key, {
        timeoutMs: HELD.delayMs + 5_000,
      });

      // The invalidation made during the outage reaches Redis: A, whose backend now says carol, must
      // not serve the alice cached there before the outage, and B (whose own backend still says
      // alice) must then read A's fresh entry.
      await eventually(
        async () => {
          notes.userOnA = textOf(await a.call("fx__get_user", { id: "1" }));
          notes.userOnB = textOf(await b.call("fx__get_user", { id: "1" }));
          return notes.userOnA === "carol" && notes.userOnB === "carol";
        },
        5_000,
        "the entry invalidated during the outage to be gone from Redis",
      ).catch(() => undefined);

      // The bucket is Redis' again: what was taken before the outage counts, what was taken
      // locally during it does not.
      notes.bucketAfter = await Promise.all(
        Array.from({ length: BUCKET }, (_, i) =>
          attempt(i % 2 ? a.client : b.client, "bucket", "fx__ping", {}, `ping-${i}`),
        ),
      );

      // Pub/sub is subscribed again: a write on A while B's identical read is in flight keeps B from
      // caching that read's (possibly older) answer.
      notes.lookups.before = await lookups(b);
      const inFlight = b.call("fx__lookup", { key: "pubsub", delayMs: 1_000 });
      await eventually(
        async () => (await lookups(b)) === notes.lookups.before + 1,
        5_000,
        "B's read to reach its backend",
      );
      await a.call("fx__write", { key: "pubsub" });
      await inFlight;
      await b.call("fx__lookup", { key: "pubsub", delayMs: 1_000 });
      notes.lookups.after = await lookups(b);
    },
    { timeout: 60_000 },
  );

  after(async () => {
    await load.stop();
    await Promise.allSettled(clients.map((c) => c.close()));
    const replicas = [a, b].filter(Boolean);
    await Promise.allSettled(replicas.map((r) => r.client.close()));
    const codes = await Promise.all(replicas.map((r) => r.gateway.stop()));
    await proxy?.close();
    await deleteByPrefix(url, prefix);
    assert.deepEqual(codes, [0, 0], "both replicas exit 0 on SIGTERM after the outages");
  });

  test("every call is answered through every outage, and none waits on the dead connection", () => {
    const broken = load.select((o) => o.status !== "ok");
    none(broken, "broken calls");
    for (let cycle = 1; cycle <= CYCLES; cycle++) {
      const outage = load.select((o) => o.phase === `outage-${cycle}`);
      assert.ok(outage.length >= 90, `${outage.length} calls during outage ${cycle}`);
      // Failing open is a local decision once Redis is known to be gone, not a command timeout per call.
      const p50 = percentile(
        outage.map((o) => o.ms),
        0.5,
      );
      assert.ok(p50 < COMMAND_TIMEOUT_MS / 2, `median ${p50.toFixed(1)} ms during outage ${cycle}`);
      const worst = Math.max(...outage.map((o) => o.ms));
      assert.ok(
        worst < COMMAND_TIMEOUT_MS * 4 + 1_000,
        `slowest call ${worst.toFixed(0)} ms in outage ${cycle}`,
      );
    }
  });

  test("each outage is reported once and each recovery once, on both replicas", () => {
    for (const replica of [a, b]) {
      const transitions = replica.gateway.logs.lines
        .map((line) => line.msg ?? "")
        .filter((msg) => /^shared store (unavailable|available again)/.test(msg))
        .map((msg) => msg.split(":")[0]);
      assert.deepEqual(
        transitions,
        Array.from({ length: CYCLES }, () => [
          "shared store unavailable",
          "shared store available again; state is shared again",
        ]).flat(),
        replica.gateway.logs.tail(),
      );
    }
  });

  test("connections do not pile up: two per replica to Redis after the outages", async () => {
    const port = proxyPort(proxy, url);
    if (establishedTo(port) === undefined) return; // no /proc/net/tcp (not Linux)
    await eventually(() => establishedTo(port) === 4, 5_000, "four connections through the proxy").catch(
      (error: Error) => {
        throw new Error(`${error.message}; there are ${establishedTo(port)}`);
      },
    );
  });

  test("a read whose lock was held across the cut leaves no lock behind: the same read after the outage does not wait", () => {
    assert.equal(notes.heldAcrossCut?.status, "ok", notes.heldAcrossCut?.text);
    const again = notes.sameReadAfterOutage;
    assert.ok(again, "the read was made");
    // Its own backend call takes delayMs; waiting for the orphaned lock would take the lock's TTL
    // (the tool's timeout, 60 s by default), until the client gives up.
    assert.equal(again.status, "ok", again.text);
    assert.ok(
      again.ms < HELD.delayMs + 2_000,
      `the same read took ${Math.round(again.ms)} ms after the outage`,
    );
  });

  test("a cache invalidation made during an outage is replayed to Redis on recovery", () => {
    assert.equal(notes.userOnA, "carol", "A serves the user cached in Redis before the outage");
    assert.equal(notes.userOnB, "carol", "B serves the user cached in Redis before the outage");
  });

  test("the limit resumes from Redis: tokens taken before the outage count, local ones do not", () => {
    assert.equal(notes.bucketBefore, 10);
    const allowed = notes.bucketAfter.filter((o) => o.status === "ok").length;
    assert.equal(
      allowed,
      BUCKET - notes.bucketBefore,
      sample(notes.bucketAfter.filter((o) => o.status !== "ok")),
    );
    for (const o of notes.bucketAfter.filter((r) => r.status !== "ok"))
      assert.equal(o.code, "rate_limited", o.text);
  });

  test("pub/sub is subscribed again after the outages: invalidations reach reads in flight on the other replica", () => {
    const { before: start, after: end } = notes.lookups;
    assert.equal(end, start + 2, "B's second read went to the backend: the first was not cached");
  });
});
