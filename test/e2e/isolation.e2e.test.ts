/**
 * `isolation: "session"`: a stateful server runs once per client session, so one client's state never
 * reaches another; a session's process stops when the session ends or idles, at most
 * `sessionLimits.max` run at once, and their results are never cached. The default stays shared.
 */
import assert from "node:assert/strict";
import { after, before, describe, test } from "node:test";
import type { Client } from "@modelcontextprotocol/sdk/client/index.js";
import type { StreamableHTTPClientTransport } from "@modelcontextprotocol/sdk/client/streamableHttp.js";
import {
  eventually,
  fixtureServer,
  type RunningGateway,
  startHttpGateway,
  writeConfig,
} from "../support/gateway-process.ts";
import { connectHttpClient, type ToolResult, textOf } from "../support/mcp-client.ts";

const IDLE_MS = 1_500;

const configPath = writeConfig({
  mcpServers: {
    shared: fixtureServer({}, { FIXTURE_NAME: "shared" }),
    own: fixtureServer({ isolation: "session" }, { FIXTURE_NAME: "own" }),
    // The same server under tight bounds, one bound each.
    capped: fixtureServer({ isolation: "session", sessionLimits: { max: 2 } }, { FIXTURE_NAME: "capped" }),
    brief: fixtureServer(
      { isolation: "session", sessionLimits: { idleTimeoutMs: IDLE_MS } },
      { FIXTURE_NAME: "brief" },
    ),
  },
  toolPolicies: { "*__echo": { cache: { ttlMs: 60_000, cacheable: true } } },
});

let http: RunningGateway;
before(async () => {
  http = await startHttpGateway(configPath);
});
after(async () => {
  await http?.stop();
});

const stats = async (client: Client, server: string) =>
  ((await client.callTool({ name: `${server}__stats`, arguments: {} })) as ToolResult).structuredContent as {
    calls: number;
    pid: number;
  };
const echo = async (client: Client, server: string, message: string) =>
  (await client.callTool({ name: `${server}__echo`, arguments: { message } })) as ToolResult;
const alive = (pid: number) => {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
};
/** Ends the client's 2025-era session (DELETE), as a client that is done does. */
async function endSession(client: Client): Promise<void> {
  await (client.transport as StreamableHTTPClientTransport).terminateSession();
  await client.close();
}

describe("isolation: session", () => {
  test("each session has its own process and state; a shared server stays shared; nothing is cached", async () => {
    const a = await connectHttpClient(http.url, { name: "isolation-a" });
    const b = await connectHttpClient(http.url, { name: "isolation-b" });
    try {
      assert.equal(textOf(await echo(a, "own", "one")), "one");
      const second = await echo(a, "own", "one");
      assert.equal(second._meta?.["switchboard/source"], undefined, "a session's results are not cached");
      const [aOwn, bOwn] = [await stats(a, "own"), await stats(b, "own")];
      assert.equal(aOwn.calls, 2, "a's instance counted a's calls");
      assert.equal(bOwn.calls, 0, "b's instance never saw them");
      assert.notEqual(aOwn.pid, bOwn.pid, "one process per session");
      assert.equal((await stats(a, "own")).pid, aOwn.pid, "a session keeps its process");

      const [aShared, bShared] = [await stats(a, "shared"), await stats(b, "shared")];
      assert.equal(aShared.pid, bShared.pid, "the default stays one process for every client");
      await echo(a, "shared", "x");
      assert.equal((await echo(b, "shared", "x"))._meta?.["switchboard/source"], "cache", "and is cached");

      // A session that ends takes its process with it.
      await endSession(a);
      await eventually(() => !alive(aOwn.pid), 15_000, "the ended session's process to stop");
      assert.ok(alive(bOwn.pid), "the other session's process runs on");
      await endSession(b);
      await eventually(() => !alive(bOwn.pid), 15_000, "the second session's process to stop");
    } finally {
      await Promise.allSettled([a.close(), b.close()]);
    }
  });

  test("at most sessionLimits.max sessions at once; a session that ends frees its place", async () => {
    const clients = await Promise.all(
      ["c1", "c2", "c3"].map((name) => connectHttpClient(http.url, { name: `isolation-${name}` })),
    );
    const [c1, c2, c3] = clients as [Client, Client, Client];
    try {
      const first = await stats(c1, "capped");
      await stats(c2, "capped");
      const refused = (await c3.callTool({ name: "capped__stats", arguments: {} })) as ToolResult;
      assert.equal(refused.isError, true);
      assert.match(textOf(refused), /already runs 2 client sessions.*sessionLimits\.max/);
      await endSession(c1);
      await eventually(() => !alive(first.pid), 15_000, "the ended session's process to stop");
      assert.equal((await stats(c3, "capped")).calls, 0, "the third session got the place");
    } finally {
      await Promise.allSettled(clients.map((c) => c.close()));
    }
  });

  test("a session's process unused for sessionLimits.idleTimeoutMs stops; the session then starts afresh", async () => {
    const client = await connectHttpClient(http.url, { name: "isolation-idle" });
    try {
      await echo(client, "brief", "state");
      const before = await stats(client, "brief");
      assert.equal(before.calls, 1);
      await eventually(() => !alive(before.pid), 30_000, "the idle session's process to stop");
      const after = await stats(client, "brief");
      assert.notEqual(after.pid, before.pid);
      assert.equal(after.calls, 0, "its state went with the idle process");
    } finally {
      await client.close();
    }
  });
});
