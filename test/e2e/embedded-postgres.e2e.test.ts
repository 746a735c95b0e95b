/**
 * The embedded PostgreSQL (PGlite) cannot freeze the gateway. PGlite cannot run `COPY … PROGRAM`
 * and, after answering it, spins forever on the next query; run on the gateway's own thread, that
 * stopped every call, probe and health check for good. It runs in a worker thread instead, so here,
 * through the CLI, with a read-only embedded backend next to another backend:
 * - while the stalled call waits, the gateway keeps answering /livez and the other backend's calls;
 * - the call ends with a clear error at its statementTimeoutMs;
 * - the embedded database starts again with its sample data and answers the next query.
 */
import assert from "node:assert/strict";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, before, test } from "node:test";
import type { Client } from "@modelcontextprotocol/sdk/client/index.js";
import { type RunningGateway, startHttpGateway, writeConfig } from "../support/gateway-process.ts";
import { connectHttpClient, type ToolResult, textOf } from "../support/mcp-client.ts";

/** statementTimeoutMs of the embedded backend. */
const LIMIT_MS = 2_000;

let gateway: RunningGateway;
let client: Client;
let root: string;

const call = async (name: string, args: Record<string, unknown>) =>
  (await client.callTool({ name, arguments: args }, undefined, { timeout: 60_000 })) as ToolResult;

before(async () => {
  root = mkdtempSync(join(tmpdir(), "sb-embedded-pg-"));
  writeFileSync(join(root, "notes.txt"), "still here\n");
  const config = writeConfig({
    mcpServers: {},
    backends: {
      demo: { type: "postgres", statementTimeoutMs: LIMIT_MS },
      files: { type: "filesystem", root },
    },
  });
  gateway = await startHttpGateway(config);
  await gateway.logs.waitFor(
    (line) => line.msg === "database up" && line.server === "demo",
    60_000,
    "the embedded database to start",
  );
  client = await connectHttpClient(gateway.url, { name: "embedded-postgres-e2e" });
});

after(async () => {
  await client?.close();
  await gateway?.stop();
  rmSync(root, { recursive: true, force: true });
});

test("COPY … PROGRAM stalls only the embedded database: the gateway answers throughout, the call ends at its deadline, the database starts again", async () => {
  const origin = new URL(gateway.url).origin;
  const sent = performance.now();
  let pending = true;
  const stalled = call("demo__query", { sql: "COPY (SELECT 1) TO PROGRAM 'true'" })
    .then((result) => ({ result, ms: performance.now() - sent }))
    .finally(() => {
      pending = false;
    });
  // Sent behind it: it waits for its turn, and for the database to start again.
  const next = call("demo__query", { sql: "SELECT count(*)::int AS n FROM customers" });

  // The rest of the gateway answers while the embedded database is stuck. Paced by the answers
  // themselves, and bounded by the stalled call, which ends at its deadline or its client timeout.
  let answeredWhileStalled = 0;
  let lastAnswerAt = 0;
  while (pending) {
    const live = await fetch(`${origin}/livez`);
    assert.equal(live.status, 200);
    const listing = await call("files__list", { path: "." });
    assert.notEqual(listing.isError, true, textOf(listing));
    assert.match(textOf(listing), /notes\.txt/);
    if (pending) {
      answeredWhileStalled++;
      lastAnswerAt = performance.now() - sent;
    }
  }

  const { result, ms } = await stalled;
  assert.equal(result.isError, true, textOf(result));
  assert.match(textOf(result), new RegExp(`longer than ${LIMIT_MS} ms.*statementTimeoutMs`));
  assert.match(textOf(result), /started it again/);
  const meta = result._meta?.["switchboard/error"] as { reason?: string; restarted?: boolean };
  assert.equal(meta.reason, "statement_timeout");
  assert.equal(meta.restarted, true);
  assert.ok(ms >= LIMIT_MS, `the call ended at its deadline, not before (${Math.round(ms)} ms)`);
  assert.ok(ms < LIMIT_MS + 10_000, `the call ended at its deadline, not long after (${Math.round(ms)} ms)`);
  assert.ok(
    answeredWhileStalled >= 2,
    `the gateway answered while the call was stuck (${answeredWhileStalled})`,
  );
  assert.ok(
    lastAnswerAt >= LIMIT_MS / 2,
    `the gateway still answered well into the stall (last answer at ${Math.round(lastAnswerAt)} ms)`,
  );

  const counted = await next;
  assert.notEqual(counted.isError, true, textOf(counted));
  assert.deepEqual(counted.structuredContent?.rows, [{ n: 5 }]);
  await gateway.logs.waitFor(
    (line) => line.server === "demo" && /did not answer within statementTimeoutMs/.test(String(line.msg)),
    5_000,
    "the restart in the log",
  );

  // And it is the same backend as before: further calls work as usual.
  const again = await call("demo__query", {
    sql: "SELECT name FROM products WHERE sku = $1",
    params: ["KB-001"],
  });
  assert.deepEqual(again.structuredContent?.rows, [{ name: "Mechanical keyboard" }]);
});
