/**
 * The PostgreSQL backend through the Backend interface (start, catalog, callTool, health, close),
 * one suite run twice: against the real PostgreSQL from DATABASE_URL, and against the embedded one
 * (PGlite). Tests the read-only guarantee by attempting every shape of write there is and checking
 * that PostgreSQL refused each one and that nothing changed; then all-or-nothing transactions in write
 * mode, the row and byte limits, pool statistics under load, SQLSTATEs in errors, and that no message
 * ever holds the password.
 *
 * Each run works in a schema of its own (uniqueName), dropped at the end, so test files running in
 * parallel on the same server never meet.
 */
import assert from "node:assert/strict";
import { randomBytes } from "node:crypto";
import { existsSync, mkdtempSync, readdirSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, before, describe, test } from "node:test";
import { Ajv2020 } from "ajv/dist/2020.js";
import pg from "pg";
import {
  createPostgresBackend,
  type PostgresBackend,
  type PostgresBackendOptions,
} from "../../src/backends/postgres/backend.ts";
import { type PostgresBackendInput, postgresBackendSchema } from "../../src/backends/postgres/config.ts";
import { EmbeddedDatabase } from "../../src/backends/postgres/embedded-database.ts";
import { GatewayError } from "../../src/core/errors.ts";
import { silentLogger } from "../../src/observability/logger.ts";
import { context, errorMeta, recorder, textOf } from "../support/backend-harness.ts";
import { eventually } from "../support/gateway-process.ts";
import { createTestRole, type TestRole, writeGrants } from "../support/postgres-roles.ts";
import { TcpProxy } from "../support/redis.ts";
import { describeWithService, POSTGRES, uniqueName } from "../support/services.ts";

interface Target {
  readonly embedded: boolean;
  /** Runs setup or inspection SQL outside any backend, with full rights. */
  admin(sql: string): Promise<Record<string, unknown>[]>;
  /** What a backend of this target is configured with, before the test's overrides. */
  base(): PostgresBackendInput;
  options(): PostgresBackendOptions;
}

type Overrides = Partial<Omit<PostgresBackendInput, "type">>;

function fixtures(schema: string): string {
  return `
    CREATE SCHEMA ${schema};
    CREATE TABLE ${schema}.items (
      id int PRIMARY KEY, name text NOT NULL, price numeric(10, 2), tags text[], meta jsonb, big int8
    );
    COMMENT ON TABLE ${schema}.items IS 'things to read';
    INSERT INTO ${schema}.items
      SELECT g, 'item ' || g, g * 1.5, ARRAY['t' || g], jsonb_build_object('n', g), 9007199254740993 + g
      FROM generate_series(1, 50) g;
    CREATE TABLE ${schema}.log (id serial PRIMARY KEY, msg text UNIQUE);
    CREATE SEQUENCE ${schema}.seq;
    CREATE FUNCTION ${schema}.sneaky() RETURNS int LANGUAGE plpgsql AS
      $$ BEGIN INSERT INTO ${schema}.log (msg) VALUES ('sneaky'); RETURN 1; END $$;
    CREATE TABLE ${schema}.wide (id int, body text);
    INSERT INTO ${schema}.wide SELECT g, repeat('x', 1000) FROM generate_series(1, 100) g;
  `;
}

const ajv = new Ajv2020({ strict: false });

function postgresSuite(target: Target, schema: string): void {
  const open: PostgresBackend[] = [];

  const backend = async (overrides: Overrides = {}) => {
    const config = postgresBackendSchema.parse({ ...target.base(), ...overrides });
    const created = createPostgresBackend("db", config, silentLogger(), target.options());
    open.push(created);
    await created.start(recorder().events);
    assert.equal(created.state, "up", `the backend should be up: ${created.lastError}`);
    return created;
  };

  const call = (b: PostgresBackend, tool: string, args: Record<string, unknown>, signal?: AbortSignal) =>
    b.callTool({ server: "db", tool, args }, context(signal));

  /** A successful call whose structuredContent matches the tool's outputSchema. */
  const ok = async (b: PostgresBackend, tool: string, args: Record<string, unknown>) => {
    const result = await call(b, tool, args);
    assert.notEqual(result.isError, true, `expected success, got: ${textOf(result)}`);
    const schemaOf = b.catalog().tools.find((t) => t.name === tool)?.outputSchema;
    assert.ok(schemaOf, `tool ${tool} declares an outputSchema`);
    const validate = ajv.compile(schemaOf);
    assert.ok(
      validate(result.structuredContent),
      `structuredContent matches the outputSchema: ${ajv.errorsText(validate.errors)}`,
    );
    return result.structuredContent as Record<string, unknown>;
  };

  const count = async (sql: string) => Number((await target.admin(sql))[0]?.n);

  after(async () => {
    await Promise.all(open.map((b) => b.close()));
  });

  test("offers four tools with schemas and honest annotations", async () => {
    const reader = await backend();
    const writer = await backend({ readOnly: false });
    const names = reader.catalog().tools.map((t) => t.name);
    assert.deepEqual(names, ["query", "transaction", "list_tables", "describe_table"]);
    for (const tool of reader.catalog().tools) {
      assert.equal(tool.inputSchema.type, "object");
      assert.ok(tool.description && tool.description.length > 40, `${tool.name} has a description`);
      assert.equal(tool.annotations?.readOnlyHint, true, `${tool.name} is read-only in read-only mode`);
    }
    const query = writer.catalog().tools.find((t) => t.name === "query");
    assert.equal(query?.annotations?.readOnlyHint, false);
    assert.equal(query?.annotations?.destructiveHint, true);
    assert.equal(
      writer.catalog().tools.find((t) => t.name === "list_tables")?.annotations?.readOnlyHint,
      true,
    );
  });

  test("query with $n parameters returns typed rows, fields and a count", async () => {
    const db = await backend();
    const out = await ok(db, "query", {
      sql: `SELECT id, name, price, tags, meta, big FROM ${schema}.items WHERE id = ANY($1) AND name LIKE $2 ORDER BY id`,
      params: [[1, 2, 3], "item %"],
    });
    assert.equal(out.command, "SELECT");
    assert.equal(out.rowCount, 3);
    assert.equal(out.truncated, false);
    assert.deepEqual(
      (out.fields as { name: string; type?: string }[]).map((f) => [f.name, f.type]),
      [
        ["id", "int4"],
        ["name", "text"],
        ["price", "numeric"],
        ["tags", "text[]"],
        ["meta", "jsonb"],
        ["big", "int8"],
      ],
    );
    // numeric and int8 keep every digit as text; int4, arrays and JSON become JSON values.
    assert.deepEqual((out.rows as unknown[])[0], {
      id: 1,
      name: "item 1",
      price: "1.50",
      tags: ["t1"],
      meta: { n: 1 },
      big: "9007199254740994",
    });
  });

  test("list_tables and describe_table show the schema", async () => {
    const db = await backend();
    const listed = await ok(db, "list_tables", { schema });
    assert.deepEqual(
      (listed.tables as { name: string }[]).map((t) => t.name),
      ["items", "log", "wide"],
    );
    assert.equal((listed.tables as { description: string | null }[])[0]?.description, "things to read");
    const described = await ok(db, "describe_table", { table: "items", schema });
    assert.equal(described.type, "table");
    assert.deepEqual((described.columns as { name: string; type: string; nullable: boolean }[]).slice(0, 3), [
      { name: "id", type: "integer", nullable: false, default: null, identity: null, description: null },
      { name: "name", type: "text", nullable: false, default: null, identity: null, description: null },
      {
        name: "price",
        type: "numeric(10,2)",
        nullable: true,
        default: null,
        identity: null,
        description: null,
      },
    ]);
    assert.ok((described.constraints as { type: string }[]).some((c) => c.type === "primary key"));
    assert.ok((described.indexes as { primary: boolean }[]).some((i) => i.primary));
    const missing = await call(db, "describe_table", { table: "nope", schema });
    assert.equal(missing.isError, true);
    assert.match(textOf(missing), /not found.*list_tables/);
  });

  test("read-only mode: PostgreSQL refuses every kind of write, and nothing changes", async () => {
    const db = await backend();
    const attempts: [string, string, string][] = [
      ["INSERT", `INSERT INTO ${schema}.log (msg) VALUES ('x')`, "25006"],
      ["UPDATE", `UPDATE ${schema}.items SET name = 'x'`, "25006"],
      ["DELETE", `DELETE FROM ${schema}.items`, "25006"],
      [
        "write in a CTE",
        `WITH gone AS (DELETE FROM ${schema}.items RETURNING id) SELECT count(*) FROM gone`,
        "25006",
      ],
      ["user function that inserts", `SELECT ${schema}.sneaky()`, "25006"],
      ["nextval", `SELECT nextval('${schema}.seq')`, "25006"],
      ["CREATE TABLE", `CREATE TABLE ${schema}.evil (x int)`, "25006"],
      ["DROP TABLE", `DROP TABLE ${schema}.items`, "25006"],
      ["COPY FROM", `COPY ${schema}.log (msg) FROM STDIN`, "25006"],
      ["DO block", `DO $$ BEGIN INSERT INTO ${schema}.log (msg) VALUES ('do'); END $$`, "25006"],
      ["SET TRANSACTION READ WRITE", "SET TRANSACTION READ WRITE", "25001"],
      ["multi-statement string", `SELECT 1; DELETE FROM ${schema}.items`, "42601"],
      ["COMMIT; DELETE", `COMMIT; DELETE FROM ${schema}.items`, "42601"],
    ];
    for (const [label, sql, sqlstate] of attempts) {
      const result = await call(db, "query", { sql });
      assert.equal(result.isError, true, `${label} must be refused`);
      assert.equal(errorMeta(result).sqlstate, sqlstate, `${label}: ${textOf(result)}`);
      assert.match(textOf(result), new RegExp(`SQLSTATE ${sqlstate}`), label);
    }
    const readOnly = await call(db, "query", { sql: `DELETE FROM ${schema}.items` });
    assert.match(textOf(readOnly), /read-only/);

    // Ways around the transaction: each fails, and what follows them never runs.
    const lone = await call(db, "query", { sql: "COMMIT" });
    assert.equal(lone.isError, true);
    assert.equal(errorMeta(lone).reason, "transaction_ended");
    const escaped = await call(db, "transaction", {
      statements: [{ sql: "COMMIT" }, { sql: `DELETE FROM ${schema}.items` }],
    });
    assert.equal(escaped.isError, true);
    assert.equal(errorMeta(escaped).statement, 1);
    const late = await call(db, "transaction", {
      statements: [
        { sql: "SELECT 1" },
        { sql: "SET TRANSACTION READ WRITE" },
        { sql: `DELETE FROM ${schema}.items` },
      ],
    });
    assert.equal(errorMeta(late).sqlstate, "25001");
    const sticky = await call(db, "transaction", {
      statements: [
        { sql: "SET SESSION CHARACTERISTICS AS TRANSACTION READ WRITE" },
        { sql: "SET default_transaction_read_only = off" },
        { sql: `INSERT INTO ${schema}.log (msg) VALUES ('sticky')` },
      ],
    });
    assert.equal(errorMeta(sticky).sqlstate, "25006");
    // A volatile function that writes nothing is fine.
    await ok(db, "query", { sql: "SELECT set_config('application_name', 'switchboard-test', false) AS v" });
    // The next call on the same connection(s) is still read-only.
    const after = await call(db, "query", { sql: `INSERT INTO ${schema}.log (msg) VALUES ('after')` });
    assert.equal(errorMeta(after).sqlstate, "25006");

    assert.equal(await count(`SELECT count(*) AS n FROM ${schema}.items WHERE name LIKE 'item %'`), 50);
    assert.equal(await count(`SELECT count(*) AS n FROM ${schema}.log`), 0);
    assert.equal(await count(`SELECT count(*) AS n FROM pg_class WHERE relname = 'evil'`), 0);
  });

  test("write mode: a transaction is all or nothing", async () => {
    const db = await backend({ readOnly: false });
    const failed = await call(db, "transaction", {
      statements: [
        { sql: `INSERT INTO ${schema}.log (msg) VALUES ($1)`, params: ["first"] },
        { sql: `UPDATE ${schema}.items SET name = 'changed' WHERE id = 1` },
        { sql: `INSERT INTO ${schema}.log (msg) VALUES ($1)`, params: ["first"] },
      ],
    });
    assert.equal(failed.isError, true);
    assert.equal(errorMeta(failed).sqlstate, "23505");
    assert.equal(errorMeta(failed).statement, 3);
    assert.match(
      textOf(failed),
      /Statement 3 of 3.*unique_violation.*Nothing of the transaction took effect/s,
    );
    assert.equal(await count(`SELECT count(*) AS n FROM ${schema}.log`), 0);
    assert.equal(await count(`SELECT count(*) AS n FROM ${schema}.items WHERE name = 'changed'`), 0);

    const done = await ok(db, "transaction", {
      statements: [
        { sql: `INSERT INTO ${schema}.log (msg) VALUES ($1) RETURNING msg`, params: ["one"] },
        { sql: `INSERT INTO ${schema}.log (msg) VALUES ($1), ($2)`, params: ["two", "three"] },
      ],
    });
    const [first, second] = done.statements as { command: string; rowCount: number; rows: unknown[] }[];
    assert.deepEqual(first?.rows, [{ msg: "one" }]);
    assert.equal(second?.command, "INSERT");
    assert.equal(second?.rowCount, 2);
    assert.equal(await count(`SELECT count(*) AS n FROM ${schema}.log`), 3);
    await target.admin(`DELETE FROM ${schema}.log`);
  });

  test("limits: rows and bytes are cut, and the result says so", async () => {
    const db = await backend({ maxRows: 10, maxResultBytes: 5_000 });
    const rows = await call(db, "query", { sql: `SELECT id FROM ${schema}.items ORDER BY id` });
    const cut = rows.structuredContent as { rows: { id: number }[]; truncated: boolean };
    assert.equal(cut.truncated, true);
    assert.deepEqual(
      cut.rows.map((r) => r.id),
      [1, 2, 3, 4, 5, 6, 7, 8, 9, 10],
    );
    assert.match(textOf(rows), /Truncated: .*10 rows.*maxRows/);

    const exact = await ok(db, "query", { sql: `SELECT id FROM ${schema}.items ORDER BY id LIMIT 10` });
    assert.equal(exact.truncated, false, "exactly maxRows rows is not a cut");

    const bytes = await call(db, "query", { sql: `SELECT id, body FROM ${schema}.wide ORDER BY id` });
    const big = bytes.structuredContent as { rows: unknown[]; truncated: boolean };
    assert.equal(big.truncated, true);
    assert.ok(big.rows.length >= 1 && big.rows.length < 10, `${big.rows.length} rows fit in 5000 bytes`);
    assert.ok(Buffer.byteLength(JSON.stringify(big.rows)) <= 5_000);
    assert.match(textOf(bytes), /maxResultBytes/);

    // The byte budget is shared by all statements of a transaction.
    const shared = await ok(db, "transaction", {
      statements: [
        { sql: `SELECT body FROM ${schema}.wide WHERE id <= 3` },
        { sql: `SELECT body FROM ${schema}.wide WHERE id <= 3` },
      ],
    });
    const [a, b] = shared.statements as { rows: unknown[]; truncated: boolean }[];
    assert.equal(a?.truncated, false);
    assert.equal(b?.truncated, true);
    assert.equal(shared.truncated, true);
  });

  test("errors carry the SQLSTATE and the server's message", async () => {
    const db = await backend();
    const missing = await call(db, "query", { sql: `SELECT * FROM ${schema}.nope` });
    assert.equal(missing.isError, true);
    assert.equal(errorMeta(missing).sqlstate, "42P01");
    assert.match(textOf(missing), /does not exist \(SQLSTATE 42P01 undefined_table\)/);
    const syntax = await call(db, "query", { sql: "SELEC 1" });
    assert.equal(errorMeta(syntax).sqlstate, "42601");
    assert.equal(typeof errorMeta(syntax).position, "number");
    // A wrong number of parameters is the caller's mistake, not an outage.
    const params = await call(db, "query", { sql: "SELECT $1::int + $2::int AS n", params: [1] });
    assert.equal(params.isError, true);
    assert.equal(db.state, "up");
    await assert.rejects(call(db, "query", { sql: 42 }), (error: unknown) => {
      assert.ok(error instanceof GatewayError);
      assert.equal(error.code, "invalid_arguments");
      assert.match(error.message, /sql/);
      return true;
    });
    await assert.rejects(call(db, "drop_everything", {}), { code: "unknown_tool" });
  });

  test("nothing a call leaves in its session reaches the next call on the same connection", async () => {
    const session = {
      sql:
        "SELECT pg_backend_pid() AS pid, current_setting('application_name') AS app, " +
        "current_setting('work_mem') AS work_mem, current_user AS who, " +
        "(SELECT count(*) FROM pg_listening_channels())::int AS listening, " +
        "(SELECT count(*) FROM pg_prepared_statements)::int AS prepared, " +
        "(SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND pid = pg_backend_pid())::int AS locks, " +
        "(SELECT count(*) FROM pg_cursors)::int AS cursors, " +
        "to_regclass('pg_temp.left_behind') IS NULL AS no_temp_table",
    };
    // Write mode commits what a call SETs; read-only mode rolls it back, but a rollback keeps
    // session advisory locks and prepared statements.
    for (const readOnly of [false, true]) {
      const db = await backend({ readOnly, pool: { max: 1 } });
      const before = (await ok(db, "query", session)).rows as Record<string, unknown>[];
      const left = await call(db, "transaction", {
        statements: [
          { sql: "SET application_name = 'left_behind'" },
          { sql: "SET work_mem = '64kB'" },
          { sql: "LISTEN left_behind" },
          { sql: "PREPARE left_behind AS SELECT 1" },
          { sql: "SELECT pg_advisory_lock(4242)::text AS locked" },
          { sql: "DECLARE left_behind CURSOR WITH HOLD FOR SELECT 1" },
          // The roles the test role may become: pg_read_all_data (both targets), and any (the embedded superuser).
          { sql: "SET ROLE pg_read_all_data" },
          ...(readOnly ? [] : [{ sql: "CREATE TEMP TABLE left_behind (x int)" }]),
        ],
      });
      assert.notEqual(left.isError, true, textOf(left));
      const after = (await ok(db, "query", session)).rows;
      assert.deepEqual(after, before, `readOnly ${readOnly}: the same connection, as it was`);
    }
  });

  test("pool statistics move under concurrent calls", async () => {
    const db = await backend({ pool: { max: 2 } });
    const calls = Array.from({ length: 4 }, () => call(db, "query", { sql: "SELECT pg_sleep(0.3)" }));
    if (target.embedded) {
      // One connection: the first call holds it, the other three wait their turn.
      assert.deepEqual(db.stats(), { total: 1, idle: 0, waiting: 3, max: 1 });
    } else {
      await eventually(
        () => {
          const s = db.stats();
          return s.total === 2 && s.idle === 0 && s.waiting === 2;
        },
        5_000,
        `2 busy connections and 2 waiting calls (${JSON.stringify(db.stats())})`,
      );
    }
    const results = await Promise.all(calls);
    for (const result of results) assert.notEqual(result.isError, true, textOf(result));
    const stats = db.stats();
    assert.equal(stats.waiting, 0);
    assert.equal(stats.idle, stats.total);
    assert.equal(stats.total, target.embedded ? 1 : 2);
    const health = await db.health(new AbortController().signal);
    assert.equal(health.status, "healthy");
    assert.deepEqual((health.data as { pool: unknown }).pool, stats);
  });
}

function uniqueSecret(): string {
  return `pw-${randomBytes(8).toString("hex")}`;
}

describeWithService(POSTGRES, "PostgreSQL backend (server)", (adminUrl) => {
  const schema = uniqueName("pg_backend");
  const admin = new pg.Client({ connectionString: adminUrl });
  // A read-only backend refuses a superuser: the backends connect as a role that can read
  // everything and write the fixture schema, and no more.
  let role: TestRole;
  let url = "";

  before(async () => {
    await admin.connect();
    await admin.query(fixtures(schema));
    role = await createTestRole(adminUrl, "pg_backend", writeGrants(schema));
    url = role.url;
  });

  after(async () => {
    await admin.query(`DROP SCHEMA IF EXISTS ${schema} CASCADE`);
    await admin.end();
    await role?.drop();
  });

  postgresSuite(
    {
      embedded: false,
      admin: async (sql) => (await admin.query(sql)).rows,
      base: () => ({ type: "postgres", url }),
      options: () => ({}),
    },
    schema,
  );

  test("statement timeout: PostgreSQL cancels a long statement", async () => {
    const config = postgresBackendSchema.parse({ type: "postgres", url, statementTimeoutMs: 200 });
    const db = createPostgresBackend("db", config, silentLogger());
    await db.start(recorder().events);
    try {
      const result = await db.callTool(
        { server: "db", tool: "query", args: { sql: "SELECT pg_sleep(5)" } },
        context(),
      );
      assert.equal(result.isError, true);
      assert.equal(errorMeta(result).sqlstate, "57014");
      assert.match(textOf(result), /statementTimeoutMs/);
    } finally {
      await db.close();
    }
  });

  test("a cancelled call cancels its statement on the server and frees the connection", async () => {
    const marker = uniqueName("cancel");
    const db = createPostgresBackend(
      "db",
      postgresBackendSchema.parse({ type: "postgres", url }),
      silentLogger(),
    );
    await db.start(recorder().events);
    try {
      const controller = new AbortController();
      const running = db.callTool(
        { server: "db", tool: "query", args: { sql: `SELECT pg_sleep(30) AS ${marker}` } },
        context(controller.signal),
      );
      const activity = `SELECT count(*) AS n FROM pg_stat_activity WHERE query LIKE '%${marker}%' AND pid <> pg_backend_pid()`;
      await eventually(
        async () => Number((await admin.query(activity)).rows[0]?.n) === 1,
        5_000,
        "the statement to run",
      );
      controller.abort();
      await assert.rejects(running, { code: "cancelled" });
      await eventually(
        async () => Number((await admin.query(`${activity} AND state = 'active'`)).rows[0]?.n) === 0,
        5_000,
        "the statement to stop",
      );
      await eventually(
        () => db.stats().idle === db.stats().total && db.stats().waiting === 0,
        5_000,
        "the connection to come back",
      );
    } finally {
      await db.close();
    }
  });

  test("connection failures name the server, never the password", async () => {
    const secret = uniqueSecret();
    const parsed = new URL(url);
    const cases = [
      // Nothing listens on port 1.
      `postgres://${parsed.username || "postgres"}:${secret}@127.0.0.1:1/test`,
      // The server is there; the database is not.
      `postgres://${parsed.username || "postgres"}:${secret}@${parsed.host}/${uniqueName("missing")}`,
    ];
    for (const target of cases) {
      const config = postgresBackendSchema.parse({
        type: "postgres",
        url: target,
        pool: { connectTimeoutMs: 2_000 },
      });
      const db = createPostgresBackend("db", config, silentLogger(), {
        reconnect: { initialDelayMs: 60_000, maxDelayMs: 60_000 },
      });
      const { states, events } = recorder();
      await db.start(events);
      try {
        assert.equal(db.state, "down");
        const reason = states.find(([state]) => state === "down")?.[1] ?? "";
        assert.ok(reason.length > 0);
        assert.ok(!reason.includes(secret), `the state reason hides the password: ${reason}`);
        const health = await db.health(new AbortController().signal);
        assert.equal(health.status, "unhealthy");
        assert.ok(!JSON.stringify(health).includes(secret), "health hides the password");
        assert.match(health.detail ?? "", /PostgreSQL at /);
        await assert.rejects(
          db.callTool({ server: "db", tool: "query", args: { sql: "SELECT 1" } }, context()),
          (error: unknown) => {
            assert.ok(error instanceof GatewayError);
            assert.equal(error.code, "backend_unavailable");
            assert.ok(!error.message.includes(secret), `the error hides the password: ${error.message}`);
            return true;
          },
        );
      } finally {
        await db.close();
      }
    }
  });

  test("a read-only backend refuses every kind of role that can reach the host, and accepts monitoring", async () => {
    const cases: [string, (role: string) => string, RegExp | undefined][] = [
      ["superuser", (r) => `ALTER ROLE ${r} SUPERUSER`, /is a superuser/],
      [
        "a superuser role it may SET ROLE to",
        (r) => `CREATE ROLE ${r}_su SUPERUSER NOLOGIN; GRANT ${r}_su TO ${r}; ALTER ROLE ${r} NOINHERIT`,
        /is a superuser through role "\w+_su", which it can SET ROLE to/,
      ],
      [
        "pg_execute_server_program",
        (r) => `GRANT pg_execute_server_program TO ${r}`,
        /member of pg_execute_server_program, which runs programs on the database host/,
      ],
      ["pg_read_server_files", (r) => `GRANT pg_read_server_files TO ${r}`, /member of pg_read_server_files/],
      [
        "pg_write_server_files",
        (r) => `GRANT pg_write_server_files TO ${r}`,
        /member of pg_write_server_files/,
      ],
      ["pg_signal_backend", (r) => `GRANT pg_signal_backend TO ${r}`, /member of pg_signal_backend/],
      ["REPLICATION", (r) => `ALTER ROLE ${r} REPLICATION`, /has REPLICATION/],
      [
        "EXECUTE on pg_read_file",
        (r) => `GRANT EXECUTE ON FUNCTION pg_catalog.pg_read_file(text) TO ${r}`,
        /may execute functions PostgreSQL or an extension keeps from PUBLIC: pg_read_file\(text\)/,
      ],
      [
        "EXECUTE on pg_reload_conf",
        (r) => `GRANT EXECUTE ON FUNCTION pg_catalog.pg_reload_conf() TO ${r}`,
        /pg_reload_conf\(\)/,
      ],
      [
        "EXECUTE on lo_import",
        (r) => `GRANT EXECUTE ON FUNCTION pg_catalog.lo_import(text) TO ${r}`,
        /lo_import\(text\)/,
      ],
      ["monitoring (pg_monitor)", (r) => `GRANT pg_monitor TO ${r}`, undefined],
    ];
    for (const [label, grant, refusal] of cases) {
      const privileged = await createTestRole(adminUrl, "privileged", grant);
      try {
        const config = postgresBackendSchema.parse({ type: "postgres", url: privileged.url });
        const db = createPostgresBackend("db", config, silentLogger(), {
          reconnect: { initialDelayMs: 60_000, maxDelayMs: 60_000 },
        });
        const { states, events } = recorder();
        await db.start(events);
        try {
          if (refusal === undefined) {
            assert.equal(db.state, "up", `${label}: ${db.lastError}`);
            continue;
          }
          assert.equal(db.state, "down", `${label} must be refused`);
          assert.match(db.lastError, refusal, label);
          assert.match(db.lastError, /refuses to serve read-only.*CREATE ROLE switchboard_reader/, label);
          assert.equal(states.at(-1)?.[1], db.lastError, "the state change carries the reason");
          assert.deepEqual(db.catalog().tools, [], "no tools");
          await assert.rejects(
            db.callTool({ server: "db", tool: "query", args: { sql: "SELECT 1" } }, context()),
            (error: unknown) => {
              assert.ok(error instanceof GatewayError);
              assert.equal(error.code, "backend_unavailable");
              assert.equal((error.data as { reason?: string }).reason, "privileged_role");
              assert.match(error.message, /refuses to serve.*role that can only read/);
              return true;
            },
          );
          assert.ok(!db.lastError.includes(privileged.password), "the password stays out of it");
          const health = await db.health(new AbortController().signal);
          assert.equal((health.data as { privilegedRole?: boolean }).privilegedRole, true);
        } finally {
          await db.close();
        }
        // The same role in write mode serves (with a warning), and so does the override.
        for (const overrides of [{ readOnly: false }, { allowPrivilegedRole: true }]) {
          const allowed = createPostgresBackend(
            "db",
            postgresBackendSchema.parse({ type: "postgres", url: privileged.url, ...overrides }),
            silentLogger(),
          );
          await allowed.start(recorder().events);
          try {
            assert.equal(
              allowed.state,
              "up",
              `${label} with ${JSON.stringify(overrides)}: ${allowed.lastError}`,
            );
          } finally {
            await allowed.close();
          }
        }
      } finally {
        await privileged.drop();
        await admin.query(`DROP ROLE IF EXISTS ${privileged.name}_su`);
      }
    }
  });

  test("with dblink installed, a role that may call it is refused until EXECUTE is revoked", async () => {
    // An extension changes what every role of its database can do, so this runs in a database of its own.
    const database = uniqueName("dblink");
    await admin.query(`CREATE DATABASE ${database}`);
    const dbAdminUrl = new URL(adminUrl);
    dbAdminUrl.pathname = `/${database}`;
    const dbAdmin = new pg.Client({ connectionString: dbAdminUrl.toString() });
    const reader = await createTestRole(adminUrl, "dblink_reader");
    try {
      await dbAdmin.connect();
      await dbAdmin.query("CREATE EXTENSION dblink");
      const readerUrl = new URL(reader.url);
      readerUrl.pathname = `/${database}`;
      const start = async () => {
        const db = createPostgresBackend(
          "db",
          postgresBackendSchema.parse({ type: "postgres", url: readerUrl.toString() }),
          silentLogger(),
          { reconnect: { initialDelayMs: 60_000, maxDelayMs: 60_000 } },
        );
        await db.start(recorder().events);
        await db.close();
        return db;
      };
      const refused = await start();
      assert.equal(refused.state, "stopped");
      assert.match(
        refused.lastError,
        /may execute functions of extensions that connect from the database server to other hosts: dblink: dblink\(text\)/,
      );
      assert.doesNotMatch(refused.lastError, /dblink_connect_u/, "the superuser-only one is not the role's");
      await dbAdmin.query("REVOKE EXECUTE ON ALL FUNCTIONS IN SCHEMA public FROM PUBLIC");
      const accepted = await start();
      assert.equal(accepted.lastError, "", "accepted once its functions are revoked");
    } finally {
      await dbAdmin.end().catch(() => undefined);
      await reader.drop();
      await admin.query(`DROP DATABASE IF EXISTS ${database} WITH (FORCE)`);
    }
  });

  test("the role is checked again after every reconnect, and a role put right is picked up", async () => {
    const changing = await createTestRole(adminUrl, "changing");
    const target = new URL(changing.url);
    target.port ||= "5432";
    const proxy = await TcpProxy.start(target.toString());
    const config = postgresBackendSchema.parse({
      type: "postgres",
      url: proxy.urlFor(target.toString()),
      pool: { connectTimeoutMs: 1_000 },
    });
    const db = createPostgresBackend("db", config, silentLogger(), {
      reconnect: { initialDelayMs: 20, maxDelayMs: 100 },
    });
    await db.start(recorder().events);
    try {
      assert.equal(db.state, "up", db.lastError);
      await admin.query(`GRANT pg_execute_server_program TO ${changing.name}`);
      proxy.cut();
      await assert.rejects(
        db.callTool({ server: "db", tool: "query", args: { sql: "SELECT 1" } }, context()),
        { code: "backend_unavailable" },
      );
      proxy.restore();
      await eventually(
        () => /pg_execute_server_program/.test(db.lastError),
        5_000,
        "the reconnect to find the new membership",
      );
      assert.equal(db.state, "down");
      await admin.query(`REVOKE pg_execute_server_program FROM ${changing.name}`);
      await eventually(() => db.state === "up", 5_000, "the backend to come up once the role is put right");
    } finally {
      await db.close();
      await proxy.close();
      await changing.drop();
    }
  });

  test("an outage takes the tools away, and they come back with the database", async () => {
    const target = new URL(url);
    target.port ||= "5432";
    const proxy = await TcpProxy.start(target.toString());
    const config = postgresBackendSchema.parse({
      type: "postgres",
      url: proxy.urlFor(target.toString()),
      pool: { connectTimeoutMs: 1_000 },
    });
    const db = createPostgresBackend("db", config, silentLogger(), {
      reconnect: { initialDelayMs: 20, maxDelayMs: 100 },
    });
    const { states, events } = recorder();
    await db.start(events);
    const query = () =>
      db.callTool({ server: "db", tool: "query", args: { sql: "SELECT 1 AS one" } }, context());
    try {
      assert.equal((await query()).isError, undefined);
      proxy.cut();
      await assert.rejects(query(), { code: "backend_unavailable" });
      await eventually(() => db.state === "down", 5_000, "the backend to go down");
      assert.deepEqual(db.catalog().tools, []);
      proxy.restore();
      await eventually(() => db.state === "up", 5_000, "the backend to come back");
      assert.deepEqual((await query()).structuredContent, {
        command: "SELECT",
        rowCount: 1,
        fields: [{ name: "one", dataTypeID: 23, type: "int4" }],
        rows: [{ one: 1 }],
        truncated: false,
      });
      assert.deepEqual(
        states.map(([state]) => state),
        ["starting", "up", "down", "up"],
      );
    } finally {
      await db.close();
      await proxy.close();
    }
  });

  test("the config refuses a URL that is not postgres:// without repeating it", () => {
    const secret = uniqueSecret();
    const parsed = postgresBackendSchema.safeParse({
      type: "postgres",
      url: `mysql://root:${secret}@db/app`,
    });
    assert.equal(parsed.success, false);
    assert.ok(!JSON.stringify(parsed.error?.issues).includes(secret));
  });
});

describe("PostgreSQL backend (embedded PGlite)", () => {
  const schema = uniqueName("pglite_backend");
  // Shared by the backends of the suite, as a host program may share one.
  const db = new EmbeddedDatabase({ sampleData: false, readOnly: false }, silentLogger());
  const ADMIN_TIMEOUT_MS = 30_000;

  before(async () => {
    await db.exec(fixtures(schema), ADMIN_TIMEOUT_MS);
  });

  after(async () => {
    await db.close();
  });

  postgresSuite(
    {
      embedded: true,
      admin: async (sql) => {
        const { fields, rows } = await db.query(sql, [], 1_000, ADMIN_TIMEOUT_MS);
        return rows.map((row) => Object.fromEntries(fields.map((field, i) => [field.name, row[i]])));
      },
      base: () => ({ type: "postgres", sampleData: false }),
      options: () => ({ embedded: db }),
    },
    schema,
  );

  test("the embedded database has no host to reach; with dataDir, read-only SQL cannot write the folder", async () => {
    const marker = join(tmpdir(), uniqueName("pglite_file"));
    const dataDir = mkdtempSync(join(tmpdir(), "sb-pglite-"));
    const backends = [
      createPostgresBackend("mem", postgresBackendSchema.parse({ type: "postgres" }), silentLogger()),
      createPostgresBackend(
        "dir",
        postgresBackendSchema.parse({ type: "postgres", dataDir }),
        silentLogger(),
      ),
    ];
    try {
      for (const db of backends) {
        await db.start(recorder().events);
        assert.equal(db.state, "up", db.lastError);
        const query = (sql: string) =>
          db.callTool({ server: db.name, tool: "query", args: { sql } }, context());
        // It runs as a superuser, yet nothing leaves its own file system.
        const file = await query("SELECT pg_read_file('/etc/hostname')");
        assert.equal(file.isError, true, textOf(file));
        // (COPY … PROGRAM, which PGlite cannot run, has a test of its own below.)
        // The write lands in its own /tmp, in memory.
        await query(`COPY (SELECT 1) TO '${marker}'`);
        assert.equal(existsSync(marker), false, `${db.name}: no file was written on this machine`);
        // Its data directory is the one place on the host it could write; in read-only mode it serves a copy.
        const before = readdirSync(dataDir).sort();
        const copy = await query(
          "DO $$ BEGIN EXECUTE format('COPY (SELECT 1) TO %L', current_setting('data_directory') || '/sb_probe'); END $$",
        );
        assert.notEqual(copy.isError, true, `a superuser may write its data directory: ${textOf(copy)}`);
        assert.deepEqual(readdirSync(dataDir).sort(), before, `${db.name}: the folder is unchanged`);
      }
    } finally {
      await Promise.all(backends.map((db) => db.close()));
      rmSync(dataDir, { recursive: true, force: true });
    }
  });

  test("a statement PGlite cannot run ends at statementTimeoutMs, and the database starts again: in memory from its sample data, with dataDir from the folder", async () => {
    const limitMs = 1_000;
    const program = join(tmpdir(), uniqueName("pglite_program"));
    const dataDir = mkdtempSync(join(tmpdir(), "sb-pglite-"));
    const writer = (name: string, extra: Overrides) =>
      createPostgresBackend(
        name,
        postgresBackendSchema.parse({
          type: "postgres",
          readOnly: false,
          statementTimeoutMs: limitMs,
          ...extra,
        }),
        silentLogger(),
      );
    // Both write a customer first: kept in the folder, gone from memory.
    const cases = [
      { backend: writer("mem", {}), customers: 5 },
      { backend: writer("dir", { dataDir }), customers: 6 },
    ];
    try {
      for (const { backend, customers } of cases) {
        const states = recorder();
        await backend.start(states.events);
        const query = (sql: string) =>
          backend.callTool({ server: backend.name, tool: "query", args: { sql } }, context());
        const added = await query(
          "INSERT INTO customers (name, email, country) VALUES ('Barbara Liskov', 'barbara@example.com', 'US')",
        );
        assert.notEqual(added.isError, true, textOf(added));
        const sent = performance.now();
        const stalled = await query(`COPY (SELECT 1) TO PROGRAM 'touch ${program}'`);
        const ms = performance.now() - sent;
        assert.equal(stalled.isError, true, textOf(stalled));
        assert.equal(errorMeta(stalled).reason, "statement_timeout");
        assert.equal(errorMeta(stalled).restarted, true);
        assert.match(textOf(stalled), /started it again/);
        assert.ok(
          ms >= limitMs && ms < limitMs + 10_000,
          `${backend.name}: ended at its deadline (${ms} ms)`,
        );
        assert.equal(existsSync(program), false, "no program ran on this machine");
        const counted = await query("SELECT count(*)::int AS n FROM customers");
        assert.deepEqual(
          (counted.structuredContent as { rows: unknown[] }).rows,
          [{ n: customers }],
          backend.name,
        );
        assert.equal(backend.state, "up", "a restart is not an outage");
      }
    } finally {
      await Promise.all(cases.map(({ backend }) => backend.close()));
      rmSync(dataDir, { recursive: true, force: true });
    }
  });

  test("with no url, the backend starts its own database with sample data", async () => {
    const backend = createPostgresBackend(
      "demo",
      postgresBackendSchema.parse({ type: "postgres" }),
      silentLogger(),
    );
    await backend.start(recorder().events);
    try {
      assert.equal(backend.state, "up");
      assert.equal(backend.embedded, true);
      const call = (tool: string, args: Record<string, unknown>) =>
        backend.callTool({ server: "demo", tool, args }, context());
      const tables = (await call("list_tables", {})).structuredContent as { tables: { name: string }[] };
      assert.deepEqual(
        tables.tables.map((t) => t.name),
        ["customers", "order_items", "order_totals", "orders", "products"],
      );
      const customers = await call("query", {
        sql: "SELECT count(*)::int AS n FROM customers WHERE country = $1",
        params: ["GB"],
      });
      assert.deepEqual((customers.structuredContent as { rows: unknown[] }).rows, [{ n: 2 }]);
      const write = await call("query", { sql: "DELETE FROM orders" });
      assert.equal(errorMeta(write).sqlstate, "25006");
      assert.deepEqual((await backend.health(new AbortController().signal)).status, "healthy");
    } finally {
      await backend.close();
    }
    assert.equal(backend.state, "stopped");
  });
});
