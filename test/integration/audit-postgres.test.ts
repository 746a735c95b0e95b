/**
 * The PostgreSQL audit sink against a real server (DATABASE_URL): table creation, batched and sync
 * (group-committed) inserts, values PostgreSQL would refuse, and searching the table. Each test works
 * in a table of its own, dropped afterwards, so parallel runs never meet.
 */
import assert from "node:assert/strict";
import { after, before, test } from "node:test";
import pg from "pg";
import { pino } from "pino";
import {
  createPostgresSink,
  type PostgresSink,
  type PostgresSinkOptions,
} from "../../src/audit/postgres-sink.ts";
import { searchAudit } from "../../src/audit/reader.ts";
import type { AuditOutcome, AuditRecord } from "../../src/audit/record.ts";
import { eventually } from "../support/gateway-process.ts";
import { TcpProxy } from "../support/redis.ts";
import { describeWithService, POSTGRES, uniqueName } from "../support/services.ts";

const silent = pino({ level: "silent" });

function record(n: number, extra: Partial<AuditRecord> = {}): AuditRecord {
  return {
    time: new Date(Date.UTC(2026, 0, 1, 0, n)).toISOString(),
    requestId: `r${n}`,
    principal: n % 2 === 0 ? "alice" : "bob",
    roles: ["dev"],
    server: n % 3 === 0 ? "db" : "api",
    tool: n % 3 === 0 ? "db__query" : "api__call",
    arguments: { n, list: [1, 2] },
    outcome: (["ok", "tool_error", "denied"] as const)[n % 3] as AuditOutcome,
    durationMs: n + 0.5,
    source: "backend",
    transport: "http",
    ...extra,
  };
}

describeWithService(POSTGRES, "PostgreSQL audit sink", (url) => {
  let admin: pg.Client;
  const tables: string[] = [];
  const freshTable = (label: string) => {
    const name = uniqueName(label).slice(0, 48);
    tables.push(name);
    return name;
  };
  const count = async (table: string) =>
    Number((await admin.query(`SELECT count(*)::int AS n FROM "${table}"`)).rows[0]?.n);

  /**
   * Runs `body` with a sink on a fresh table whose connections go through a TcpProxy, so the test can
   * cut the database off and bring it back; the sink and the proxy are closed afterwards, pass or fail.
   */
  async function withSinkBehindProxy(
    label: string,
    options: Pick<PostgresSinkOptions, "durability" | "flushIntervalMs">,
    body: (sink: PostgresSink, proxy: TcpProxy, table: string) => Promise<void>,
  ): Promise<void> {
    const table = freshTable(label);
    const proxy = await TcpProxy.start(url);
    const sink = createPostgresSink({
      url: proxy.urlFor(url),
      table,
      ...options,
      connectTimeoutMs: 2_000,
      logger: silent,
    });
    try {
      await body(sink, proxy, table);
    } finally {
      await sink.close();
      await proxy.close();
    }
  }

  before(async () => {
    admin = new pg.Client({ connectionString: url });
    await admin.connect();
  });
  after(async () => {
    for (const table of tables) await admin.query(`DROP TABLE IF EXISTS "${table}"`);
    await admin.end();
  });

  test("batched: creates the table and indexes, inserts on the interval and on close", async () => {
    const table = freshTable("audit_batched");
    const sink = createPostgresSink({
      url,
      table,
      durability: "batched",
      flushIntervalMs: 20,
      logger: silent,
    });
    await sink.write(record(1));
    await sink.write(record(2));
    await eventually(async () => (await count(table).catch(() => 0)) === 2, 10_000, "the interval insert");

    const indexes = await admin.query<{ indexname: string }>(
      "SELECT indexname FROM pg_indexes WHERE tablename = $1 ORDER BY indexname",
      [table],
    );
    assert.deepEqual(
      indexes.rows.map((r) => r.indexname),
      [`${table}_pkey`, `${table}_principal_idx`, `${table}_time_idx`, `${table}_tool_idx`].sort(),
    );
    const row = (await admin.query(`SELECT * FROM "${table}" WHERE request_id = 'r1'`)).rows[0];
    assert.equal(row.principal, "bob");
    assert.equal(row.tool, "api__call");
    assert.deepEqual(row.arguments, { n: 1, list: [1, 2] });
    assert.equal(row.outcome, "tool_error");
    assert.equal(row.duration_ms, 1.5);
    assert.equal(row.source, "backend");
    assert.deepEqual(row.record, record(1));
    assert.equal((row.time as Date).toISOString(), record(1).time);

    for (let i = 3; i < 10; i++) await sink.write(record(i));
    await sink.close();
    assert.equal(await count(table), 9);
  });

  test("sync: each write resolves once its row is committed; concurrent writes share INSERTs", async () => {
    const table = freshTable("audit_sync");
    const sink = createPostgresSink({ url, table, durability: "sync", batchSize: 50, logger: silent });
    await sink.write(record(0));
    assert.equal(await count(table), 1);
    await Promise.all(Array.from({ length: 200 }, (_, i) => sink.write(record(i + 1))));
    assert.equal(await count(table), 201);
    assert.equal(sink.health().committed, 201);
    await sink.close();
  });

  test("a value PostgreSQL refuses does not block its batch", async () => {
    const table = freshTable("audit_refused");
    const sink = createPostgresSink({ url, table, durability: "sync", logger: silent });
    // NUL and a lone surrogate are made storable; a time PostgreSQL cannot read drops that record only.
    await Promise.all([
      sink.write(record(1, { arguments: { text: "a\u0000b\uD800c" } })),
      sink.write(record(2, { time: "not a time" })),
      sink.write(record(3)),
    ]);
    const rows = (await admin.query(`SELECT request_id, arguments FROM "${table}" ORDER BY request_id`)).rows;
    assert.deepEqual(
      rows.map((r) => r.request_id),
      ["r1", "r3"],
    );
    assert.deepEqual(rows[0]?.arguments, { text: "a\uFFFDb\uFFFDc" });
    await sink.close();
  });

  test("an outage: sync writes reject, the records are kept, and written first once it is back", async () => {
    await withSinkBehindProxy("audit_outage", { durability: "sync" }, async (sink, proxy, table) => {
      await sink.write(record(1));
      proxy.cut();
      await assert.rejects(sink.write(record(2)), /could not commit the record/);
      assert.equal(sink.health().pending, 1);
      assert.ok(sink.health().consecutiveFailures >= 1);
      proxy.restore();
      // The pool may still hold a connection the cut killed; a write or two may meet it.
      await eventually(
        () =>
          sink.write(record(3)).then(
            () => true,
            () => false,
          ),
        15_000,
        "a write after the outage",
      );
      const ids = (await admin.query(`SELECT request_id FROM "${table}" ORDER BY id`)).rows.map(
        (r) => r.request_id,
      );
      assert.deepEqual(ids.slice(0, 2), ["r1", "r2"]);
      assert.ok(ids.includes("r3"));
      assert.equal(sink.health().pending, 0);
    });
  });

  test("an outage: batched writes never reject and are inserted once it is back", async () => {
    const options = { durability: "batched", flushIntervalMs: 20 } as const;
    await withSinkBehindProxy("audit_outage_batched", options, async (sink, proxy, table) => {
      proxy.cut();
      for (let i = 0; i < 5; i++) await sink.write(record(i));
      await eventually(() => sink.health().consecutiveFailures > 0, 10_000, "a failed insert");
      proxy.restore();
      await eventually(async () => (await count(table).catch(() => 0)) === 5, 20_000, "the retried insert");
    });
  });

  test("the connection dies while the sink creates its table: the commit fails, the process lives, the records land later", async () => {
    // Another session holds the lock the table creation takes, so the sink's connection is checked
    // out and waiting when the cut kills it. A checked-out pg connection reports its death as an
    // 'error' event on itself: unheard, that event ends the process.
    const options = { durability: "batched", flushIntervalMs: 20 } as const;
    await withSinkBehindProxy("audit_cut_create", options, async (sink, proxy, table) => {
      const blocker = new pg.Client({ connectionString: url });
      await blocker.connect();
      try {
        await blocker.query("SELECT pg_advisory_lock(hashtext($1))", [`switchboard_audit:"${table}"`]);
        await sink.write(record(1));
        await eventually(
          async () =>
            (
              await admin.query(
                "SELECT count(*)::int AS n FROM pg_stat_activity WHERE $1 = ANY(pg_blocking_pids(pid))",
                [(blocker as unknown as { processID: number }).processID],
              )
            ).rows[0]?.n > 0,
          10_000,
          "the sink to wait for the table lock",
        );
        proxy.cut();
        await eventually(() => sink.health().consecutiveFailures > 0, 10_000, "the commit to fail");
      } finally {
        await blocker.end();
      }
      proxy.restore();
      await eventually(async () => (await count(table).catch(() => 0)) === 1, 20_000, "the retried insert");
    });
  });

  test("an unreachable server at close: what is left is reported lost", async () => {
    const table = freshTable("audit_unreachable");
    // Nothing listens on port 1: connections are refused at once.
    const down = createPostgresSink({
      url: "postgres://postgres@127.0.0.1:1/test",
      table,
      durability: "sync",
      logger: silent,
    });
    await assert.rejects(down.write(record(1)), /could not commit the record: .*ECONNREFUSED/);
    await down.close();
    assert.equal(down.health().dropped, 1);
  });

  test("searchAudit over the table: each filter, limit, and a missing table", async () => {
    const table = freshTable("audit_search");
    const sink = createPostgresSink({ url, table, durability: "sync", logger: silent });
    await Promise.all(Array.from({ length: 12 }, (_, i) => sink.write(record(i))));
    const location = { type: "postgres" as const, url, table };
    const ids = async (filter: Parameters<typeof searchAudit>[1]) =>
      (await searchAudit(location, filter)).records
        .map((r) => r.requestId)
        .sort((a, b) => a.localeCompare(b, "en", { numeric: true }));
    assert.deepEqual(await ids({ tool: "db__*" }), ["r0", "r3", "r6", "r9"]);
    assert.deepEqual(await ids({ tool: "{db,zz}__query" }), ["r0", "r3", "r6", "r9"]);
    assert.deepEqual(await ids({ principal: "bob", tool: "api__*" }), ["r1", "r5", "r7", "r11"]);
    assert.deepEqual(await ids({ outcome: ["denied", "tool_error"], principal: "alice" }), [
      "r2",
      "r4",
      "r8",
      "r10",
    ]);
    assert.deepEqual(await ids({ server: "db", principal: "alice" }), ["r0", "r6"]);
    assert.deepEqual(
      await ids({ since: new Date(Date.UTC(2026, 0, 1, 0, 3)), until: new Date(Date.UTC(2026, 0, 1, 0, 6)) }),
      ["r3", "r4", "r5"],
    );
    const limited = await searchAudit({ type: "postgres", pool: sink.pool, table }, { limit: 5 });
    assert.equal(limited.records.length, 5);
    assert.equal(limited.truncated, true);
    assert.deepEqual(
      limited.records[0],
      (await searchAudit(location, { requestId: limited.records[0]?.requestId })).records[0],
    );
    await sink.close();

    await assert.rejects(
      searchAudit({ type: "postgres", url, table: "sb_no_such_audit_table" }),
      /the audit table "sb_no_such_audit_table" does not exist/,
    );
  });
});
