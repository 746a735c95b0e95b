/**
 * The audit log as operators rely on it, with a real gateway process serving Streamable HTTP:
 *
 * - sync durability: a gateway killed with SIGKILL in the middle of a burst of calls has a record of
 *   every call whose answer a client received, in the JSONL file and in PostgreSQL;
 * - `switchboard audit search` and `audit tail` print what was recorded, every outcome included;
 * - batched durability: what is still buffered is written on a graceful SIGTERM.
 */
import assert from "node:assert/strict";
import { randomBytes } from "node:crypto";
import { existsSync, readFileSync } from "node:fs";
import { dirname, join } from "node:path";
import { after, before, describe, test } from "node:test";
import type { Client } from "@modelcontextprotocol/sdk/client/index.js";
import pg from "pg";
import { assertExitCode, runCli } from "../support/cli.ts";
import {
  fixtureServer,
  type RunningGateway,
  startHttpGateway,
  writeConfigRemovedAfterSuite,
} from "../support/gateway-process.ts";
import { connectHttpClient, type ToolResult, textOf } from "../support/mcp-client.ts";
import { describeWithService, POSTGRES, uniqueName } from "../support/services.ts";

const CLIENTS = 8;
/** Answered calls after which the gateway is killed: enough for every client to be mid-call. */
const KILL_AFTER = 240;

interface AuditLine {
  requestId: string;
  principal: string;
  server: string;
  tool: string;
  outcome: string;
  arguments?: Record<string, unknown>;
  error?: string;
  source: string;
  transport?: string;
}

/** One JSON record per line, as `audit search --json` and `audit tail` print them. */
function jsonLines(text: string): AuditLine[] {
  return text
    .split("\n")
    .filter((line) => line.trim() !== "")
    .map((line) => JSON.parse(line) as AuditLine);
}

/**
 * The records of a JSONL audit file. A crash may tear the last line (and only the last): it is
 * skipped, as the reader does.
 */
function readAuditFile(path: string): AuditLine[] {
  if (!existsSync(path)) return [];
  const lines = readFileSync(path, "utf8").split("\n");
  const records: AuditLine[] = [];
  for (const [index, line] of lines.entries()) {
    if (line.trim() === "") continue;
    try {
      records.push(JSON.parse(line) as AuditLine);
    } catch {
      assert.equal(index, lines.length - 1, `only the last line may be torn; line ${index + 1}: ${line}`);
    }
  }
  return records;
}

const messageOf = (record: AuditLine) => String(record.arguments?.message);

const connect = (url: string) => connectHttpClient(url, { name: "audit-e2e" });

interface Race {
  /** Messages of the calls whose answer reached a client. */
  readonly answered: ReadonlySet<string>;
  /** Calls sent whose answer had not arrived when the gateway was killed. */
  readonly inFlightAtKill: number;
  readonly started: number;
}

/**
 * `CLIENTS` clients call fx__echo in a loop with unique messages; once `KILL_AFTER` answers have
 * arrived, the gateway gets SIGKILL while the other calls are still on their way. A call that fails
 * before the kill fails the test; after it, failures are expected.
 */
async function callUntilKilled(gateway: RunningGateway, label: string): Promise<Race> {
  const clients = await Promise.all(Array.from({ length: CLIENTS }, () => connect(gateway.url)));
  const answered = new Set<string>();
  let killed = false;
  let inFlight = 0;
  let inFlightAtKill = -1;
  let started = 0;
  // Once the gateway is gone no answer can come: calls still waiting are given up on (the SDK client
  // would otherwise wait for its timeout, trying to resume their streams).
  const gone = new AbortController();
  const exited = new Promise<void>((resolve) => {
    gateway.child.once("exit", () => {
      gone.abort();
      resolve();
    });
  });

  const worker = async (client: Client, index: number) => {
    for (let n = 0; !killed; n++) {
      const message = `${label}-c${index}-n${n}`;
      inFlight++;
      started++;
      try {
        const result = (await client.callTool({ name: "fx__echo", arguments: { message } }, undefined, {
          timeout: 15_000,
          signal: gone.signal,
        })) as ToolResult;
        // An answer that arrived, even one read after the kill, was sent by the gateway: it is owed a record.
        assert.notEqual(result.isError, true, textOf(result));
        assert.equal(textOf(result), message);
        answered.add(message);
        if (!killed && answered.size >= KILL_AFTER) {
          killed = true;
          inFlightAtKill = inFlight - 1;
          gateway.child.kill("SIGKILL");
        }
      } catch (error) {
        if (killed) continue;
        // A failure before the kill is the test's failure: stop the others and the gateway first.
        killed = true;
        gateway.child.kill("SIGKILL");
        throw error;
      } finally {
        inFlight--;
      }
    }
  };

  try {
    await Promise.all(clients.map((client, index) => worker(client, index)));
    await exited;
  } finally {
    await Promise.allSettled(clients.map((client) => client.close()));
  }
  assert.equal(gateway.child.signalCode, "SIGKILL", "the gateway was killed, not stopped");
  return { answered, inFlightAtKill, started };
}

/** The answered calls that have no record among `recorded`. */
function missing(race: Race, recorded: Iterable<string>): string[] {
  const have = new Set(recorded);
  return [...race.answered].filter((message) => !have.has(message));
}

describe("audit file, sync durability", () => {
  const config = writeConfigRemovedAfterSuite();

  test("SIGKILL under load: every call a client got an answer for is in the file", async () => {
    const path = config({
      mcpServers: { fx: fixtureServer() },
      audit: { sinks: [{ type: "file", path: "audit.jsonl", durability: "sync" }] },
    });
    const gateway = await startHttpGateway(path);
    const label = `kill-${randomBytes(4).toString("hex")}`;
    const race = await callUntilKilled(gateway, label);
    assert.ok(race.answered.size >= KILL_AFTER, `${race.answered.size} calls answered`);
    assert.ok(race.inFlightAtKill > 0, `calls were in flight when the gateway died (${race.inFlightAtKill})`);

    const records = readAuditFile(join(dirname(path), "audit.jsonl")).filter(
      (r) => r.tool === "fx__echo" && messageOf(r).startsWith(label),
    );
    const lost = missing(race, records.map(messageOf));
    assert.deepEqual(lost, [], `${lost.length} of ${race.answered.size} answered calls have no record`);
    for (const record of records) {
      assert.equal(record.outcome, "ok");
      assert.equal(record.server, "fx");
      assert.equal(record.transport, "http");
      assert.equal(record.principal, "anonymous");
    }
    // Nothing is recorded twice: every record is of a distinct call.
    assert.equal(new Set(records.map(messageOf)).size, records.length);
  });

  describe("`switchboard audit search` and `audit tail`", () => {
    let path: string;
    let gateway: RunningGateway;
    let client: Client;
    const call = async (name: string, args: Record<string, unknown>) => {
      try {
        return (await client.callTool({ name, arguments: args }, undefined, {
          timeout: 20_000,
        })) as ToolResult;
      } catch (error) {
        return error as Error;
      }
    };

    before(async () => {
      path = config({
        mcpServers: { fx: fixtureServer() },
        access: { rules: [{ allow: ["*"], deny: ["fx__crash"] }] },
        audit: { sinks: [{ type: "file", path: "logs/audit.jsonl" }] },
      });
      gateway = await startHttpGateway(path);
      client = await connect(gateway.url);
      // One at a time, so the file's order is the order here.
      const ok1 = await call("fx__echo", { message: "first" });
      assert.equal(textOf(ok1 as ToolResult), "first");
      const failed = (await call("fx__fail", { reason: "the tool said no" })) as ToolResult;
      assert.equal(failed.isError, true);
      const denied = (await call("fx__crash", {})) as ToolResult;
      assert.equal(denied.isError, true);
      assert.match(textOf(denied), /denied/i);
      const invalid = await call("fx__echo", { message: 42 });
      assert.ok(invalid instanceof Error || invalid.isError === true, "invalid arguments are refused");
      await call("fx__echo", { message: "second" });
      await call("fx__echo", { message: "third" });
    });

    after(async () => {
      await client?.close();
      await gateway?.stop();
    });

    test("search --tool 'fx__*' --outcome ok --json prints the ok calls, oldest first", async () => {
      const result = await runCli([
        "audit",
        "search",
        "--config",
        path,
        "--tool",
        "fx__*",
        "--outcome",
        "ok",
        "--json",
      ]);
      assertExitCode(result, 0);
      const records = jsonLines(result.stdout);
      assert.deepEqual(records.map(messageOf), ["first", "second", "third"]);
      for (const record of records) {
        assert.equal(record.tool, "fx__echo");
        assert.equal(record.outcome, "ok");
        assert.equal(record.source, "backend");
        assert.ok(record.requestId.length > 0);
      }
    });

    test("denied, tool_error and invalid calls are found by their outcome", async () => {
      const search = (outcome: string) =>
        runCli(["audit", "search", "--config", path, "--outcome", outcome, "--json"]);
      const [denied, toolError, invalid] = await Promise.all([
        search("denied"),
        search("tool_error"),
        search("invalid"),
      ]);
      for (const run of [denied, toolError, invalid]) assertExitCode(run, 0);
      const [deniedRecord, ...moreDenied] = jsonLines(denied.stdout);
      assert.equal(moreDenied.length, 0);
      assert.equal(deniedRecord?.tool, "fx__crash");
      assert.equal(deniedRecord?.outcome, "denied");
      assert.match(deniedRecord?.error ?? "", /denied/i);

      const [toolErrorRecord, ...moreErrors] = jsonLines(toolError.stdout);
      assert.equal(moreErrors.length, 0);
      assert.equal(toolErrorRecord?.tool, "fx__fail");
      assert.equal(toolErrorRecord?.error, "the tool said no");

      const [invalidRecord, ...moreInvalid] = jsonLines(invalid.stdout);
      assert.equal(moreInvalid.length, 0);
      assert.equal(invalidRecord?.tool, "fx__echo");
      assert.deepEqual(invalidRecord?.arguments, { message: 42 });
      assert.match(invalidRecord?.error ?? "", /invalid arguments/i);

      // The table (no --json) names the outcome too.
      const table = await runCli(["audit", "search", "--config", path, "--outcome", "denied"]);
      assertExitCode(table, 0);
      assert.match(table.stdout, /fx__crash.*denied/);
    });

    test("tail -n 3 prints the last three records in order", async () => {
      const result = await runCli(["audit", "tail", "-n", "3", "--config", path]);
      assertExitCode(result, 0);
      const records = jsonLines(result.stdout);
      assert.deepEqual(
        records.map((r) => [r.tool, r.outcome]),
        [
          ["fx__echo", "invalid"],
          ["fx__echo", "ok"],
          ["fx__echo", "ok"],
        ],
      );
      assert.deepEqual(records.slice(1).map(messageOf), ["second", "third"]);
    });

    test("a call to a tool that does not exist is recorded as invalid", async () => {
      const name = `fx__nope_${randomBytes(3).toString("hex")}`;
      const unknown = await call(name, {});
      assert.ok(unknown instanceof Error || unknown.isError === true, "the unknown tool is refused");
      const result = await runCli(["audit", "search", "--config", path, "--tool", name, "--json"]);
      assertExitCode(result, 0);
      const records = jsonLines(result.stdout);
      assert.equal(records.length, 1, `one record for ${name}: ${result.stdout}${result.stderr}`);
      assert.equal(records[0]?.outcome, "invalid");
    });
  });

  test("batched: records still buffered are written on a graceful SIGTERM", async () => {
    const path = config({
      mcpServers: { fx: fixtureServer() },
      // An interval no test waits for: only the shutdown can have written the records.
      audit: {
        sinks: [{ type: "file", path: "audit.jsonl", durability: "batched", flushIntervalMs: 600_000 }],
      },
    });
    const file = join(dirname(path), "audit.jsonl");
    const gateway = await startHttpGateway(path);
    const client = await connect(gateway.url);
    const messages = Array.from({ length: 12 }, (_, i) => `batched-${i}-${randomBytes(3).toString("hex")}`);
    try {
      await Promise.all(
        messages.map(async (message) => {
          const result = (await client.callTool({ name: "fx__echo", arguments: { message } })) as ToolResult;
          assert.equal(textOf(result), message);
        }),
      );
      assert.deepEqual(readAuditFile(file), [], "batched: nothing is written before the interval");
    } finally {
      await client.close();
    }
    const code = await gateway.stop("SIGTERM");
    assert.equal(code, 0, gateway.logs.tail());
    const recorded = readAuditFile(file).map(messageOf);
    assert.deepEqual(recorded.sort(), [...messages].sort());
  });
});

describeWithService(POSTGRES, "audit in PostgreSQL, sync durability", (url) => {
  const table = uniqueName("audit_e2e");
  let admin: pg.Client;
  const config = writeConfigRemovedAfterSuite();

  before(async () => {
    admin = new pg.Client({ connectionString: url });
    await admin.connect();
  });

  after(async () => {
    await admin?.query(`DROP TABLE IF EXISTS "${table}"`);
    await admin?.end();
  });

  test("SIGKILL under load: every answered call has its row, the same as in the file", async () => {
    const path = config({
      mcpServers: { fx: fixtureServer() },
      audit: {
        sinks: [
          { type: "file", path: "audit.jsonl", durability: "sync" },
          { type: "postgres", url, table, durability: "sync" },
        ],
      },
    });
    const dir = dirname(path);
    const gateway = await startHttpGateway(path);
    const label = `pgkill-${randomBytes(4).toString("hex")}`;
    const race = await callUntilKilled(gateway, label);
    assert.ok(race.inFlightAtKill > 0, `calls were in flight when the gateway died (${race.inFlightAtKill})`);

    const rows = (
      await admin.query<{ request_id: string; message: string; outcome: string; record: AuditLine }>(
        `SELECT request_id, arguments->>'message' AS message, outcome, record FROM "${table}" WHERE tool = 'fx__echo'`,
      )
    ).rows.filter((row) => row.message.startsWith(label));
    const lost = missing(
      race,
      rows.map((row) => row.message),
    );
    assert.deepEqual(lost, [], `${lost.length} of ${race.answered.size} answered calls have no row`);
    for (const row of rows) assert.equal(row.outcome, "ok");

    // The same record in both sinks: request id, arguments and outcome agree for every answered call.
    const inFile = new Map(
      readAuditFile(join(dir, "audit.jsonl"))
        .filter((r) => messageOf(r).startsWith(label))
        .map((r) => [messageOf(r), r]),
    );
    const inTable = new Map(rows.map((row) => [row.message, row]));
    for (const message of race.answered) {
      const fromFile = inFile.get(message);
      const fromTable = inTable.get(message);
      assert.ok(fromFile, `${message} is in the file`);
      assert.equal(fromTable?.request_id, fromFile.requestId, message);
      assert.deepEqual(fromTable?.record.arguments, fromFile.arguments, message);
      assert.equal(fromTable?.record.transport, "http");
    }

    // And `audit search --database` reads them back.
    const search = await runCli([
      "audit",
      "search",
      "--database",
      url,
      "--table",
      table,
      "--tool",
      "fx__*",
      "--outcome",
      "ok",
      "--limit",
      "100000",
      "--json",
    ]);
    assertExitCode(search, 0);
    const found = missing(race, jsonLines(search.stdout).map(messageOf));
    assert.deepEqual(found, [], "`audit search --database` prints every answered call");
  });
});
