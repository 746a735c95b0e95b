/**
 * `switchboard_backend_restarts_total` counts what the README says it counts: a stdio server whose
 * process dies and that the gateway brings back up. The gateway is the real CLI over HTTP; the
 * server is killed through its own `crash` tool, and /metrics is scraped once it serves again.
 */
import assert from "node:assert/strict";
import { after, before, test } from "node:test";
import type { Client } from "@modelcontextprotocol/sdk/client/index.js";
import {
  eventually,
  fixtureServer,
  type RunningGateway,
  startHttpGateway,
  writeConfigRemovedAfterSuite,
} from "../support/gateway-process.ts";
import { connectHttpClient } from "../support/mcp-client.ts";

const writeConfig = writeConfigRemovedAfterSuite();
let gateway: RunningGateway;
let client: Client;

before(async () => {
  gateway = await startHttpGateway(
    writeConfig({
      mcpServers: { fx: fixtureServer({ restart: { initialDelayMs: 50, maxDelayMs: 200 } }) },
    }),
  );
  client = await connectHttpClient(gateway.url, { name: "restarts-metric" });
});

after(async () => {
  await client?.close();
  assert.equal(await gateway?.stop(), 0, "the gateway exits 0 on SIGTERM");
});

/** The value of one series in the gateway's /metrics, or undefined when it is not there. */
async function metric(name: string, labels: string): Promise<number | undefined> {
  const response = await fetch(new URL("/metrics", gateway.url), { signal: AbortSignal.timeout(10_000) });
  assert.equal(response.status, 200);
  const text = await response.text();
  const line = text.split("\n").find((l) => l.startsWith(`${name}{${labels}} `));
  return line === undefined ? undefined : Number(line.slice(line.lastIndexOf(" ") + 1));
}

const pidOf = async () =>
  ((await client.callTool({ name: "fx__stats", arguments: {} })).structuredContent as { pid: number }).pid;

test("a stdio server killed and restarted counts one restart on /metrics", async () => {
  const series = 'server="fx"';
  assert.equal((await metric("switchboard_backend_restarts_total", series)) ?? 0, 0, "no restart yet");
  assert.equal(await metric("switchboard_backend_up", series), 1);
  const before = await pidOf();

  await client.callTool({ name: "fx__crash", arguments: {} });
  await gateway.logs.waitFor((l) => l.msg === "restarting server" && l.server === "fx", 20_000);
  let after = before;
  await eventually(
    async () => {
      // While the server is down its tools are gone: the call fails, and the poll goes on.
      after = await pidOf().catch(() => before);
      return after !== before;
    },
    30_000,
    "a new fx process to answer",
  );

  assert.equal(await metric("switchboard_backend_restarts_total", series), 1, "one restart counted");
  assert.equal(await metric("switchboard_backend_up", series), 1, "the server is up again");
});
