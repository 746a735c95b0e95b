/**
 * What read-only means for the PostgreSQL backend, against the real server, through the CLI:
 * - connected as a superuser, a read-only backend does not come up, and its error says why and gives
 *   the SQL of a least-privileged role; `allowPrivilegedRole: true` overrides that with a warning
 *   (and `switchboard check` shows it), and the override is as unsafe as the README says;
 * - connected as a least-privileged role, every way SQL could reach the database host or other
 *   sessions fails with SQLSTATE 42501 and leaves no trace;
 * - the statement time limit holds when SQL lifts `statement_timeout`;
 * - session state one call leaves on a pooled connection (settings, LISTEN, advisory locks, prepared
 *   statements) is gone before the next call, and a read-only call's NOTIFY is never delivered.
 */
import assert from "node:assert/strict";
import { existsSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, before, test } from "node:test";
import type { Client } from "@modelcontextprotocol/sdk/client/index.js";
import pg from "pg";
import { assertExitCode, runCli } from "../support/cli.ts";
import {
  eventually,
  type RunningGateway,
  startHttpGateway,
  writeConfig,
} from "../support/gateway-process.ts";
import { connectHttpClient, type ToolResult, textOf } from "../support/mcp-client.ts";
import { createTestRole, type TestRole, writeGrants } from "../support/postgres-roles.ts";
import { describeWithService, POSTGRES, uniqueName } from "../support/services.ts";

/** statementTimeoutMs of the backends under test. */
const LIMIT_MS = 1_000;

const rowsOf = (result: ToolResult) => (result.structuredContent?.rows ?? []) as Record<string, unknown>[];
const errorOf = (result: ToolResult) =>
  (result._meta?.["switchboard/error"] ?? {}) as { sqlstate?: string; reason?: string };

describeWithService(
  POSTGRES,
  "read-only PostgreSQL on the real server: the role and the session",
  (adminUrl) => {
    const schema = uniqueName("pg_security");
    /** The file `COPY … TO PROGRAM 'touch …'` would create on the database host. */
    const programMarker = join(tmpdir(), uniqueName("copy_program"));
    const fileMarker = join(tmpdir(), uniqueName("copy_file"));
    const superuser = decodeURIComponent(new URL(adminUrl).username) || "postgres";
    let admin: pg.Client;
    let reader: TestRole;
    let writer: TestRole;
    let gateway: RunningGateway;
    let client: Client;

    const call = async (name: string, args: Record<string, unknown>) =>
      (await client.callTool({ name, arguments: args }, undefined, { timeout: 30_000 })) as ToolResult;
    const adminValue = async (sql: string) => Object.values((await admin.query(sql)).rows[0] ?? {})[0];

    before(async () => {
      admin = new pg.Client({ connectionString: adminUrl });
      await admin.connect();
      await admin.query(
        `CREATE SCHEMA ${schema}; CREATE TABLE ${schema}.notes (id int PRIMARY KEY, body text)`,
      );
      await admin.query(`INSERT INTO ${schema}.notes VALUES (1, 'one')`);
      reader = await createTestRole(adminUrl, "pg_security_reader");
      writer = await createTestRole(adminUrl, "pg_security_writer", writeGrants(schema));
      const config = writeConfig({
        mcpServers: {},
        backends: {
          // One connection each, so that consecutive calls meet on the same one.
          safe: { type: "postgres", url: reader.url, statementTimeoutMs: LIMIT_MS, pool: { max: 1 } },
          safew: {
            type: "postgres",
            url: writer.url,
            readOnly: false,
            statementTimeoutMs: LIMIT_MS,
            pool: { max: 1 },
          },
        },
      });
      gateway = await startHttpGateway(config);
      client = await connectHttpClient(gateway.url, { name: "postgres-security-e2e" });
    });

    after(async () => {
      await client?.close();
      await gateway?.stop();
      await admin?.query(`DROP SCHEMA IF EXISTS ${schema} CASCADE`);
      await admin?.end();
      await reader?.drop();
      await writer?.drop();
    });

    test("as a superuser, a read-only backend does not come up, and says why and how to fix it", async () => {
      const file = writeConfig({ mcpServers: {}, backends: { db: { type: "postgres", url: adminUrl } } });
      const run = await runCli(["tools", "--config", file]);
      assertExitCode(run, 1);
      assert.match(run.stderr, new RegExp(`refuses to serve read-only as role \\\\"${superuser}\\\\"`));
      assert.match(run.stderr, /is a superuser/);
      assert.match(run.stderr, /run programs or read and write files on the database host/);
      assert.match(run.stderr, /CREATE ROLE switchboard_reader LOGIN PASSWORD/);
      assert.match(run.stderr, /GRANT pg_read_all_data TO switchboard_reader/);
      assert.match(run.stderr, /GRANT SELECT ON ALL TABLES IN SCHEMA app TO switchboard_reader/);
      assert.match(run.stderr, /allowPrivilegedRole: true/);
      assert.match(run.stderr, /not up, so their tools are missing: db \(down\)/);
      assert.doesNotMatch(run.stdout, /db__query/);
    });

    test("allowPrivilegedRole: true serves anyway, warns at start, shows in check, and is as unsafe as it says", async () => {
      const file = writeConfig({
        mcpServers: {},
        backends: { db: { type: "postgres", url: adminUrl, allowPrivilegedRole: true } },
      });
      const checked = await runCli(["check", "--config", file]);
      assertExitCode(checked, 0);
      assert.match(checked.stdout, /warning: backend "db" has allowPrivilegedRole: true \(unsafe\)/);
      const json = await runCli(["check", "--json", "--config", file]);
      assert.match(
        (JSON.parse(json.stdout) as { warnings: string[] }).warnings.join("\n"),
        /allowPrivilegedRole: true/,
      );

      const hostname = await runCli([
        "call",
        "db__query",
        JSON.stringify({ sql: "SELECT pg_read_file('/etc/hostname') AS host" }),
        "--config",
        file,
      ]);
      assertExitCode(hostname, 0);
      const warning = hostname.stderr
        .split("\n")
        .filter((line) => line.startsWith("{"))
        .map((line) => JSON.parse(line) as { level?: number | string; msg?: string })
        .find((line) => /allowPrivilegedRole is true/.test(line.msg ?? ""));
      assert.ok(warning, `a warning at start:\n${hostname.stderr}`);
      assert.ok(warning.level === 40 || warning.level === "warn", `logged as a warning: ${warning.level}`);
      assert.match(warning.msg ?? "", new RegExp(`role "${superuser}" is a superuser`));
      // The override is unsafe for real: the superuser's read-only query read a file of the host.
      assert.ok(rowsOf(JSON.parse(hostname.stdout) as ToolResult)[0]?.host, hostname.stdout);
    });

    test("as a least-privileged role, SQL that would reach the host or other sessions fails and leaves no trace", async () => {
      const confLoaded = await adminValue("SELECT pg_conf_load_time()::text");
      const largeObjects = await adminValue("SELECT count(*)::int FROM pg_largeobject_metadata");
      const adminPid = await adminValue("SELECT pg_backend_pid()");
      const slot = uniqueName("slot");
      const attempts: [string, string][] = [
        ["run a program (COPY TO PROGRAM)", `COPY (SELECT 1) TO PROGRAM 'touch ${programMarker}'`],
        ["read a program's output (COPY FROM PROGRAM)", `COPY ${schema}.notes FROM PROGRAM 'hostname'`],
        ["write a file (COPY TO a file)", `COPY (SELECT 1) TO '${fileMarker}'`],
        ["read a file (pg_read_file)", "SELECT pg_read_file('/etc/hostname')"],
        ["read a file (pg_read_binary_file)", "SELECT pg_read_binary_file('/etc/hostname')"],
        ["list a directory (pg_ls_dir)", "SELECT pg_ls_dir('/')"],
        ["stat a file (pg_stat_file)", "SELECT pg_stat_file('/etc/hostname')"],
        ["import a file (lo_import)", "SELECT lo_import('/etc/hostname')"],
        ["export a file (lo_export)", `SELECT lo_export(1, '${fileMarker}')`],
        ["reload the configuration", "SELECT pg_reload_conf()"],
        ["rotate the log file", "SELECT pg_rotate_logfile()"],
        ["switch the WAL", "SELECT pg_switch_wal()"],
        ["force a checkpoint", "CHECKPOINT"],
        ["create a replication slot", `SELECT pg_create_physical_replication_slot('${slot}')`],
        ["end another session", `SELECT pg_terminate_backend(${adminPid})`],
        ["cancel another session", `SELECT pg_cancel_backend(${adminPid})`],
        ["become a superuser", `SET ROLE ${superuser}`],
        ["set a superuser-only parameter", "SELECT set_config('log_statement', 'all', true)"],
        ["load a server library", "LOAD 'auto_explain'"],
      ];
      for (const [label, sql] of attempts) {
        const result = await call("safe__query", { sql });
        assert.equal(result.isError, true, `${label} must fail: ${textOf(result)}`);
        assert.equal(errorOf(result).sqlstate, "42501", `${label}: ${textOf(result)}`);
      }
      assert.equal(existsSync(programMarker), false, "the program never ran");
      assert.equal(existsSync(fileMarker), false, "no file was written");
      assert.equal(await adminValue("SELECT pg_conf_load_time()::text"), confLoaded, "no reload happened");
      assert.equal(await adminValue("SELECT count(*)::int FROM pg_largeobject_metadata"), largeObjects);
      assert.equal(
        await adminValue(`SELECT count(*)::int FROM pg_replication_slots WHERE slot_name = '${slot}'`),
        0,
      );
      assert.equal(await adminValue("SELECT 1"), 1, "the admin session is still there");
      // The role reads what it was given.
      assert.deepEqual(rowsOf(await call("safe__query", { sql: `SELECT body FROM ${schema}.notes` })), [
        { body: "one" },
      ]);
    });

    test("the time limit holds when SQL lifts statement_timeout, and the connection comes back clean", async (t) => {
      for (const lift of ["SET LOCAL statement_timeout = 0", "SET statement_timeout = 0"]) {
        const marker = uniqueName("sleeper");
        const started = performance.now();
        const result = await call("safe__transaction", {
          statements: [{ sql: lift }, { sql: `SELECT pg_sleep(30) AS ${marker}` }],
        });
        const elapsed = performance.now() - started;
        t.diagnostic(`${lift}: the call ended after ${Math.round(elapsed)} ms (limit ${LIMIT_MS} ms)`);
        assert.equal(result.isError, true, textOf(result));
        assert.equal(errorOf(result).sqlstate, "57014", textOf(result));
        assert.match(textOf(result), /Statement 2 of 2 ran longer than 1000 ms.*statementTimeoutMs/);
        assert.ok(elapsed >= LIMIT_MS, `not before the limit (${elapsed} ms)`);
        assert.ok(
          elapsed < LIMIT_MS + 500,
          `a tenth of a second after the limit, not at the end of the sleep (${elapsed} ms)`,
        );
        await eventually(
          async () =>
            (await adminValue(
              `SELECT count(*)::int FROM pg_stat_activity WHERE query LIKE '%${marker}%' AND pid <> pg_backend_pid()`,
            )) === 0,
          5_000,
          "the statement to be gone from the server",
        );
        const next = await call("safe__query", { sql: "SELECT current_setting('statement_timeout') AS t" });
        assert.notEqual(next.isError, true, textOf(next));
        assert.deepEqual(rowsOf(next), [{ t: "1s" }], "the next call runs under the limit again");
      }
    });

    test("a call's session state is gone before the next call on the same pooled connection", async () => {
      // Write mode commits, so what a call SETs would outlive it without the reset.
      const session = {
        sql:
          "SELECT pg_backend_pid() AS pid, current_setting('application_name') AS app, " +
          "current_setting('work_mem') AS work_mem, current_setting('search_path') AS path, " +
          "(SELECT count(*) FROM pg_listening_channels())::int AS listening",
      };
      const before = rowsOf(await call("safew__query", session))[0];
      assert.equal(before?.listening, 0);
      const set = await call("safew__transaction", {
        statements: [
          { sql: "SET application_name = 'left_behind'" },
          { sql: "SET work_mem = '64kB'" },
          { sql: "SET search_path = pg_catalog" },
          { sql: "LISTEN left_behind" },
        ],
      });
      assert.notEqual(set.isError, true, textOf(set));
      const seen = rowsOf(await call("safew__query", session))[0];
      assert.deepEqual(seen, before, "the same connection, with none of the settings of the call before");

      // Read-only mode rolls back, but session advisory locks and prepared statements survive a rollback.
      const readerPid = rowsOf(await call("safe__query", { sql: "SELECT pg_backend_pid() AS pid" }))[0]?.pid;
      const key = Math.floor(Math.random() * 1_000_000_000);
      const locked = await call("safe__query", { sql: `SELECT pg_advisory_lock(${key})::text AS locked` });
      assert.notEqual(locked.isError, true, textOf(locked));
      assert.equal(
        await adminValue(`SELECT count(*)::int FROM pg_locks WHERE locktype = 'advisory' AND objid = ${key}`),
        0,
        "the lock was released when the call ended",
      );
      const prepared = await call("safe__query", { sql: "PREPARE left_behind AS SELECT 1" });
      assert.notEqual(prepared.isError, true, textOf(prepared));
      const after = rowsOf(
        await call("safe__query", {
          sql: "SELECT pg_backend_pid() AS pid, (SELECT count(*) FROM pg_prepared_statements)::int AS prepared",
        }),
      )[0];
      assert.deepEqual(after, { pid: readerPid, prepared: 0 });
    });

    test("a read-only call's NOTIFY is never delivered", async () => {
      const channel = uniqueName("channel");
      const listener = new pg.Client({ connectionString: adminUrl });
      await listener.connect();
      try {
        const payloads: string[] = [];
        let resolveFirst!: () => void;
        const first = new Promise<void>((resolve) => {
          resolveFirst = resolve;
        });
        listener.on("notification", (message) => {
          payloads.push(message.payload ?? "");
          resolveFirst();
        });
        await listener.query(`LISTEN ${channel}`);
        const notified = await call("safe__query", { sql: `NOTIFY ${channel}, 'from_read_only'` });
        assert.notEqual(notified.isError, true, textOf(notified));
        // Notifications arrive in commit order: the sentinel comes first unless the call's got through.
        await admin.query(`NOTIFY ${channel}, 'sentinel'`);
        let timer: NodeJS.Timeout | undefined;
        await Promise.race([
          first,
          new Promise((_, reject) => {
            timer = setTimeout(() => reject(new Error("no notification arrived within 5 s")), 5_000);
          }),
        ]).finally(() => clearTimeout(timer));
        assert.deepEqual(payloads, ["sentinel"]);
      } finally {
        await listener.end();
      }
    });
  },
);
