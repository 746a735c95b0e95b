/**
 * A server that is slow to start does not hold the client: over stdio and over HTTP, `initialize` is
 * answered at once, the first list waits only `gateway.startupWaitMs` and serves what is up, and the
 * slow server's tools arrive later with `notifications/tools/list_changed`. A call that names a tool of
 * a server still starting waits for the start to end, and is answered.
 */
import assert from "node:assert/strict";
import { describe, test } from "node:test";
import { Client } from "@modelcontextprotocol/sdk/client/index.js";
import { StdioClientTransport } from "@modelcontextprotocol/sdk/client/stdio.js";
import { ToolListChangedNotificationSchema } from "@modelcontextprotocol/sdk/types.js";
import {
  fixtureServer,
  startHttpGateway,
  stdioGatewayCommand,
  writeConfig,
} from "../support/gateway-process.ts";
import { connectHttpClient } from "../support/mcp-client.ts";

/** Long enough that a client held until it is up would be plainly late. */
const SLOW_START_MS = 8_000;
const WAIT_MS = 300;

const configPath = writeConfig({
  gateway: { startupWaitMs: WAIT_MS, startupTimeoutMs: 60_000 },
  mcpServers: {
    slow: fixtureServer({}, { FIXTURE_NAME: "slow", FIXTURE_START_DELAY_MS: String(SLOW_START_MS) }),
  },
});

/** Resolves on the first tools/list_changed, and lists the tools then. */
function toolsOnceChanged(client: Client): Promise<string[]> {
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error("no tools/list_changed within 60 s")), 60_000);
    client.setNotificationHandler(ToolListChangedNotificationSchema, () => {
      clearTimeout(timer);
      client.listTools().then((r) => resolve(r.tools.map((t) => t.name)), reject);
    });
  });
}

async function check(connect: () => Promise<Client>) {
  const started = performance.now();
  const client = await connect();
  try {
    const changed = toolsOnceChanged(client);
    const first = await client.listTools();
    const answeredMs = performance.now() - started;
    assert.ok(
      answeredMs < SLOW_START_MS,
      `initialize and the first list were answered in ${answeredMs.toFixed(0)} ms, before the slow server was up`,
    );
    assert.ok(
      first.tools.every((t) => !t.name.startsWith("slow__")),
      "the first list serves what is up: the slow server's tools are not there yet",
    );
    const later = await changed;
    assert.ok(later.includes("slow__echo"), `announced with list_changed once up: ${later.join(", ")}`);
  } finally {
    await client.close();
  }
}

describe("a slow-starting server does not hold the client", () => {
  test("over stdio", async () => {
    await check(async () => {
      const client = new Client({ name: "startup-stdio", version: "1" });
      await client.connect(
        new StdioClientTransport({ ...stdioGatewayCommand(configPath), stderr: "ignore" }),
      );
      return client;
    });
  });

  test("over HTTP", async () => {
    const gateway = await startHttpGateway(configPath, [], {}, { listening: true });
    try {
      await check(() => connectHttpClient(gateway.url, { name: "startup-http" }));
    } finally {
      await gateway.stop();
    }
  });
});

test("a call to a tool of a server still starting waits for it, past the first list's wait", async () => {
  const startMs = 2_000;
  const config = writeConfig({
    gateway: { startupWaitMs: WAIT_MS, startupTimeoutMs: 60_000 },
    mcpServers: {
      late: fixtureServer({}, { FIXTURE_NAME: "late", FIXTURE_START_DELAY_MS: String(startMs) }),
    },
  });
  const client = new Client({ name: "startup-call", version: "1" });
  await client.connect(new StdioClientTransport({ ...stdioGatewayCommand(config), stderr: "ignore" }));
  try {
    const asked = performance.now();
    const result = (await client.callTool({ name: "late__echo", arguments: { message: "hi" } })) as {
      isError?: boolean;
      content: { text?: string }[];
    };
    assert.equal(result.isError, undefined, JSON.stringify(result));
    assert.equal(result.content[0]?.text, "hi");
    const waitedMs = performance.now() - asked;
    assert.ok(waitedMs > WAIT_MS, `answered after ${waitedMs.toFixed(0)} ms, once the server was up`);
  } finally {
    await client.close();
  }
});
