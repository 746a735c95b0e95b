/**
 * The four built-in backends as users run them: declared under `backends:` next to an MCP server,
 * served by a real gateway process over Streamable HTTP, called with an MCP client. The backend-level
 * suites (test/integration/*-backend.test.ts) go through every detail; these prove that the config
 * wires each one in, names its tools, and that its guarantees hold end to end.
 */
import assert from "node:assert/strict";
import { mkdirSync, mkdtempSync, rmSync, symlinkSync, writeFileSync } from "node:fs";
import { createServer, type Server } from "node:http";
import type { AddressInfo, Socket } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, before, describe, test } from "node:test";
import type { Client } from "@modelcontextprotocol/sdk/client/index.js";
import pg from "pg";
import { loadConfigFile } from "../../src/config/load.ts";
import {
  fixtureServer,
  ROOT,
  type RunningGateway,
  startHttpGateway,
  writeConfig,
} from "../support/gateway-process.ts";
import { connectHttpClient, type ToolResult, textOf } from "../support/mcp-client.ts";
import { createTestRole, type TestRole, writeGrants } from "../support/postgres-roles.ts";
import { deleteByPrefix, rawClient, uniquePrefix } from "../support/redis.ts";
import { describeWithService, POSTGRES, REDIS, uniqueName } from "../support/services.ts";

const rowsOf = (result: ToolResult) => (result.structuredContent?.rows ?? []) as unknown[];

const connect = (url: string) => connectHttpClient(url, { name: "builtins-e2e" });

function caller(client: () => Client) {
  return async (name: string, args: Record<string, unknown> = {}): Promise<ToolResult> =>
    (await client().callTool({ name, arguments: args }, undefined, { timeout: 30_000 })) as ToolResult;
}

/** A REST API on loopback that counts its connections and can be slow, large, failing or redirecting. */
class Upstream {
  readonly server: Server;
  readonly sockets = new Set<Socket>();
  maxOpen = 0;
  failing = false;

  constructor() {
    this.server = createServer((req, res) => {
      const url = new URL(req.url ?? "/", "http://upstream");
      if (url.pathname.startsWith("/users/")) {
        res.setHeader("content-type", "application/json");
        res.end(JSON.stringify({ id: url.pathname.slice("/users/".length), name: "Ada" }));
        return;
      }
      if (url.pathname === "/slow") {
        setTimeout(() => res.end("slow"), Number(url.searchParams.get("ms") ?? 50));
        return;
      }
      if (url.pathname === "/big") {
        res.end("x".repeat(10_000));
        return;
      }
      if (url.pathname === "/flaky") {
        res.statusCode = this.failing ? 503 : 200;
        res.end(this.failing ? "unavailable" : "fine");
        return;
      }
      if (url.pathname === "/redirect") {
        res.statusCode = 302;
        res.setHeader("location", url.searchParams.get("to") ?? "/");
        res.end();
        return;
      }
      res.statusCode = 404;
      res.end("not found");
    });
    this.server.on("connection", (socket) => {
      this.sockets.add(socket);
      this.maxOpen = Math.max(this.maxOpen, this.sockets.size);
      socket.once("close", () => this.sockets.delete(socket));
    });
  }

  async listen(): Promise<string> {
    await new Promise<void>((resolve) => this.server.listen(0, "127.0.0.1", resolve));
    return `http://127.0.0.1:${(this.server.address() as AddressInfo).port}`;
  }

  close(): Promise<void> {
    this.server.closeAllConnections();
    return new Promise((resolve) => this.server.close(() => resolve()));
  }
}

describe("built-in backends composed with an MCP server (no services needed)", () => {
  let gateway: RunningGateway;
  let client: Client;
  let upstream: Upstream;
  let root: string;
  let outside: string;
  const call = caller(() => client);

  before(async () => {
    upstream = new Upstream();
    const base = await upstream.listen();
    root = mkdtempSync(join(tmpdir(), "sb-fs-root-"));
    outside = mkdtempSync(join(tmpdir(), "sb-fs-outside-"));
    writeFileSync(join(outside, "secret.txt"), "outside the root");
    mkdirSync(join(root, "docs"));
    writeFileSync(join(root, "docs", "guide.md"), "# Guide\nThe gateway routes calls.\n");
    writeFileSync(join(root, "notes.txt"), "plain notes\n");
    writeFileSync(join(root, "logo.bin"), Buffer.from([0, 1, 2, 255]));
    symlinkSync(outside, join(root, "escape"));
    symlinkSync(join(outside, "secret.txt"), join(root, "secret-link.txt"));
    const config = writeConfig({
      mcpServers: { local: fixtureServer() },
      backends: {
        demo: { type: "postgres", maxRows: 3 },
        files: { type: "filesystem", root },
        api: {
          type: "http",
          baseUrl: `${base}/`,
          allowHttp: true,
          allowHosts: ["*"],
          allowPrivateHosts: ["127.0.0.1"],
          connections: 2,
          maxResponseBytes: 1_000,
          timeoutMs: 1_000,
          circuitBreaker: { consecutiveFailures: 3, openMs: 60_000 },
          endpoints: [
            {
              name: "get_user",
              description: "A user by id",
              path: "/users/{id}",
              inputSchema: { type: "object", properties: { id: { type: "string" } }, required: ["id"] },
            },
          ],
        },
      },
    });
    gateway = await startHttpGateway(config);
    client = await connect(gateway.url);
  });

  after(async () => {
    await client?.close();
    await gateway?.stop();
    await upstream?.close();
    rmSync(root, { recursive: true, force: true });
    rmSync(outside, { recursive: true, force: true });
  });

  test("one catalog: the MCP server's tools and each built-in's, under their prefixes", async () => {
    const names = (await client.listTools()).tools.map((t) => t.name);
    for (const name of [
      "local__echo",
      "demo__query",
      "demo__transaction",
      "demo__list_tables",
      "demo__describe_table",
      "files__list",
      "files__read",
      "files__stat",
      "files__search",
      "api__fetch",
      "api__get_user",
    ]) {
      assert.ok(names.includes(name), `${name} is listed: ${names.join(", ")}`);
    }
    assert.ok(!names.includes("files__write"), "the filesystem is read-only by default");
  });

  test("embedded PostgreSQL: parameters, read-only enforced by the database, rows truncated", async () => {
    const gb = await call("demo__query", {
      sql: "SELECT name FROM customers WHERE country = $1 ORDER BY name",
      params: ["GB"],
    });
    assert.notEqual(gb.isError, true, textOf(gb));
    assert.equal(rowsOf(gb).length, 2);

    const before = await call("demo__query", { sql: "SELECT count(*)::int AS n FROM orders" });
    const writes = [
      "DELETE FROM orders",
      "WITH gone AS (DELETE FROM orders RETURNING id) SELECT count(*) FROM gone",
      "SELECT 1; DELETE FROM orders",
      "CREATE TABLE sneaky (id int)",
    ];
    for (const sql of writes) {
      const result = await call("demo__query", { sql });
      assert.equal(result.isError, true, `refused: ${sql}`);
    }
    const afterWrites = await call("demo__query", { sql: "SELECT count(*)::int AS n FROM orders" });
    assert.deepEqual(afterWrites.structuredContent?.rows, before.structuredContent?.rows);

    const many = await call("demo__query", { sql: "SELECT * FROM products" });
    assert.equal(rowsOf(many).length, 3);
    assert.equal(many.structuredContent?.truncated, true);
  });

  test("filesystem: reads, listings and searches work; every escape is refused", async () => {
    const listing = await call("files__list", { path: "." });
    assert.notEqual(listing.isError, true, textOf(listing));
    assert.match(textOf(listing), /docs/);
    const guide = await call("files__read", { path: "docs/guide.md" });
    assert.match(textOf(guide), /routes calls/);
    const found = await call("files__search", { contains: "routes" });
    assert.match(JSON.stringify(found.structuredContent ?? textOf(found)), /guide\.md/);

    const escapes = [
      "../secret.txt",
      "docs/../../secret.txt",
      `${outside}/secret.txt`,
      "/etc/passwd",
      "escape/secret.txt",
      "secret-link.txt",
      "%2e%2e/secret.txt",
      "..%2fsecret.txt",
      "docs\u0000.md",
      "..\\secret.txt",
    ];
    for (const path of escapes) {
      for (const tool of ["files__read", "files__stat"]) {
        const result = await call(tool, { path });
        const text = textOf(result);
        assert.equal(result.isError, true, `${tool} ${JSON.stringify(path)} is refused: ${text}`);
        assert.doesNotMatch(text, /outside the root$/m, "the content outside never shows");
      }
    }
    const listOutside = await call("files__list", { path: "escape" });
    assert.equal(listOutside.isError, true, textOf(listOutside));
  });

  test("http: a declared endpoint becomes a tool; the pool keeps to its connection limit", async () => {
    const user = await call("api__get_user", { id: "42" });
    assert.notEqual(user.isError, true, textOf(user));
    assert.match(textOf(user), /Ada/);

    upstream.maxOpen = upstream.sockets.size;
    const results = await Promise.all(
      Array.from({ length: 12 }, () => call("api__fetch", { path: "/slow", query: { ms: 30 } })),
    );
    for (const result of results) assert.notEqual(result.isError, true, textOf(result));
    assert.ok(upstream.maxOpen <= 2, `at most 2 connections were open (saw ${upstream.maxOpen})`);
  });

  test("http: size limit and timeout give clear errors", async () => {
    const big = await call("api__fetch", { path: "/big" });
    assert.equal(big.isError, true);
    assert.match(textOf(big), /1000|maxResponseBytes/);
    const slow = await call("api__fetch", { path: "/slow", query: { ms: 3_000 } });
    assert.equal(slow.isError, true);
    assert.match(textOf(slow), /time|1000 ?ms/i);
  });

  test("http: SSRF attempts in every notation are refused before connecting", async () => {
    const attempts = [
      "http://169.254.169.254/latest/meta-data/",
      "http://[fd00:ec2::254]/",
      "http://10.0.0.1/",
      "http://192.168.1.1/",
      "http://localhost/",
      "http://127.1/",
      "http://2130706433/",
      "http://0x7f000001/",
      "http://017700000001/",
      "http://[::1]/",
      "http://[::ffff:127.0.0.1]/",
      "http://[::ffff:7f00:1]/",
      "http://[::]/",
      "http://0.0.0.0/",
      "http://100.64.0.1/",
      "http://[fe80::1]/",
      "http://metadata.google.internal/",
    ];
    const before = upstream.sockets.size;
    for (const url of attempts) {
      const result = await call("api__fetch", { url });
      assert.equal(result.isError, true, `refused: ${url} -> ${textOf(result)}`);
    }
    // A redirect from an allowed host to an internal address is checked again and refused.
    const redirected = await call("api__fetch", {
      path: "/redirect",
      query: { to: "http://169.254.169.254/latest/meta-data/" },
    });
    assert.equal(redirected.isError, true, textOf(redirected));
    assert.ok(upstream.sockets.size <= Math.max(before, 2));
  });

  test("http: the per-origin breaker opens after consecutive failures", async () => {
    upstream.failing = true;
    for (let i = 0; i < 3; i++) {
      const result = await call("api__fetch", { path: "/flaky" });
      assert.equal(result.isError, true);
    }
    upstream.failing = false;
    const stopped = await call("api__fetch", { path: "/flaky" });
    assert.equal(stopped.isError, true, "the circuit is open even though the upstream recovered");
    assert.match(textOf(stopped), /circuit|breaker/i);
  });
});

describeWithService(POSTGRES, "built-in PostgreSQL backend on the real server", (url) => {
  const schema = uniqueName("builtin_e2e");
  let admin: pg.Client;
  // A read-only backend refuses a superuser: both backends connect as a role that can read
  // everything and write this schema's tables, and no more.
  let role: TestRole;
  let gateway: RunningGateway;
  let client: Client;
  const call = caller(() => client);

  before(async () => {
    admin = new pg.Client({ connectionString: url });
    await admin.connect();
    await admin.query(
      `CREATE SCHEMA ${schema}; CREATE TABLE ${schema}.accounts (id int PRIMARY KEY, balance int)`,
    );
    await admin.query(`INSERT INTO ${schema}.accounts VALUES (1, 100), (2, 50)`);
    role = await createTestRole(url, "builtin_e2e", writeGrants(schema));
    const config = writeConfig({
      mcpServers: {},
      backends: {
        db: { type: "postgres", url: role.url, pool: { max: 2 } },
        dbw: { type: "postgres", url: role.url, readOnly: false },
      },
    });
    gateway = await startHttpGateway(config);
    client = await connect(gateway.url);
  });

  after(async () => {
    await client?.close();
    await gateway?.stop();
    await admin?.query(`DROP SCHEMA IF EXISTS ${schema} CASCADE`);
    await admin?.end();
    await role?.drop();
  });

  test("read-only by default, writes refused by PostgreSQL (SQLSTATE 25006)", async () => {
    const refused = await call("db__query", { sql: `UPDATE ${schema}.accounts SET balance = 0` });
    assert.equal(refused.isError, true);
    assert.match(textOf(refused), /25006|read-only/);
    assert.doesNotMatch(textOf(refused), /postgres:\/\//);
    const rows = await admin.query(`SELECT sum(balance)::int AS total FROM ${schema}.accounts`);
    assert.equal(rows.rows[0].total, 150);
  });

  test("a failing transaction leaves no trace; a good one commits", async () => {
    const failed = await call("dbw__transaction", {
      statements: [
        { sql: `UPDATE ${schema}.accounts SET balance = balance - 30 WHERE id = $1`, params: [1] },
        { sql: `INSERT INTO ${schema}.accounts VALUES (1, 0)` },
      ],
    });
    assert.equal(failed.isError, true);
    assert.match(textOf(failed), /23505/);
    let total = await admin.query(`SELECT balance FROM ${schema}.accounts WHERE id = 1`);
    assert.equal(total.rows[0].balance, 100);

    const done = await call("dbw__transaction", {
      statements: [
        { sql: `UPDATE ${schema}.accounts SET balance = balance - 30 WHERE id = $1`, params: [1] },
        { sql: `UPDATE ${schema}.accounts SET balance = balance + 30 WHERE id = $1`, params: [2] },
      ],
    });
    assert.notEqual(done.isError, true, textOf(done));
    total = await admin.query(`SELECT balance FROM ${schema}.accounts ORDER BY id`);
    assert.deepEqual(
      total.rows.map((r) => r.balance),
      [70, 80],
    );
  });

  test("the pool is bounded: concurrent calls queue on max connections", async () => {
    const results = await Promise.all(
      Array.from({ length: 6 }, () => call("db__query", { sql: "SELECT pg_sleep(0.05), 1 AS one" })),
    );
    for (const result of results) assert.notEqual(result.isError, true, textOf(result));
    const sessions = await admin.query(
      "SELECT count(*)::int AS n FROM pg_stat_activity WHERE application_name LIKE 'switchboard%' AND datname = current_database()",
    );
    const open = sessions.rows[0].n;
    assert.ok(open >= 2 && open <= 3, `the pools' connections are open, and no more (saw ${open})`);
  });
});

describeWithService(REDIS, "built-in Redis backend on the real server", (url) => {
  const prefix = `${uniquePrefix("builtin")}:`;
  let gateway: RunningGateway;
  let client: Client;
  const call = caller(() => client);

  before(async () => {
    const redis = await rawClient(url);
    await redis.set(`${prefix}greeting`, "hello");
    await redis.hset(`${prefix}user:1`, { name: "Ada", role: "admin" });
    await redis.quit();
    const config = writeConfig({
      mcpServers: {},
      backends: {
        kv: { type: "redis", url, keyPrefix: prefix },
        kvw: { type: "redis", url, keyPrefix: prefix, readOnly: false, allowCommands: ["set"] },
      },
    });
    gateway = await startHttpGateway(config);
    client = await connect(gateway.url);
  });

  after(async () => {
    await client?.close();
    await gateway?.stop();
    await deleteByPrefix(url, prefix);
  });

  test("reads within the prefix; writes only where allowed", async () => {
    assert.match(textOf(await call("kv__get", { key: "greeting" })), /hello/);
    assert.match(textOf(await call("kv__hgetall", { key: "user:1" })), /Ada/);
    const tools = (await client.listTools()).tools.map((t) => t.name);
    assert.ok(!tools.includes("kv__set"), "the read-only backend offers no write tools");
    assert.ok(tools.includes("kvw__set") && !tools.includes("kvw__del"), "only allowlisted writes");
    const set = await call("kvw__set", { key: "greeting", value: "bye" });
    assert.notEqual(set.isError, true, textOf(set));
    assert.match(textOf(await call("kv__get", { key: "greeting" })), /bye/);
  });
});

describeWithService(REDIS, "examples/composition.yaml", (url) => {
  let gateway: RunningGateway;
  let client: Client;
  const call = caller(() => client);

  before(async () => {
    gateway = await startHttpGateway(join(ROOT, "examples/composition.yaml"), [], { REDIS_URL: url });
    client = await connect(gateway.url);
  });

  after(async () => {
    await client?.close();
    await gateway?.stop();
  });

  test("serves an MCP server and all four built-ins, and each answers", async () => {
    const names = (await client.listTools()).tools.map((t) => t.name);
    for (const name of [
      "memory__read_graph",
      "shop__query",
      "github__get_repo",
      "docs__read",
      "cache__get",
    ]) {
      assert.ok(names.includes(name), `${name} is listed`);
    }
    const customers = await call("shop__query", { sql: "SELECT count(*)::int AS n FROM customers" });
    assert.notEqual(customers.isError, true, textOf(customers));
    const notes = await call("docs__read", { path: "notes.txt" });
    assert.notEqual(notes.isError, true, textOf(notes));
    const missing = await call("cache__get", { key: `${uniquePrefix("absent")}` });
    assert.notEqual(missing.isError, true, textOf(missing));
    const graph = await call("memory__read_graph");
    assert.notEqual(graph.isError, true, textOf(graph));
  });
});

describe("examples/switchboard.yaml (the quick start)", () => {
  test("validates, with the embedded database", async () => {
    const config = await loadConfigFile(join(ROOT, "examples/switchboard.yaml"), { env: {} });
    assert.equal(config.backends.db?.type, "postgres");
    assert.equal(config.backends.db?.type === "postgres" && config.backends.db.url, undefined);
  });
});
