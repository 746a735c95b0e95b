/**
 * Backends the gateway reaches over the network (Streamable HTTP and legacy SSE, with configured
 * headers), a server that never starts, and a graceful shutdown with a call in flight.
 */
import assert from "node:assert/strict";
import { after, before, describe, test } from "node:test";
import type { Client } from "@modelcontextprotocol/sdk/client/index.js";
import {
  eventually,
  fixtureServer,
  type HttpFixture,
  type RunningGateway,
  startHttpFixture,
  startHttpGateway,
  writeConfig,
} from "../support/gateway-process.ts";
import { connectHttpClient, firstTextOf } from "../support/mcp-client.ts";

let httpFixture: HttpFixture;

before(async () => {
  httpFixture = await startHttpFixture();
});

after(() => {
  httpFixture?.stop();
});

const connect = (url: string) => connectHttpClient(url, { name: "backends-e2e" });

describe("remote backends and a server that never starts", () => {
  let gateway: RunningGateway;
  let client: Client;

  before(async () => {
    const config = writeConfig({
      mcpServers: {
        remote: {
          type: "http",
          url: `${httpFixture.url}/mcp`,
          headers: { "X-Team": "platform", Authorization: "Bearer t0k3n" },
        },
        legacy: { type: "sse", url: `${httpFixture.url}/sse`, headers: { "X-Team": "legacy" } },
        broken: fixtureServer(
          { restart: { initialDelayMs: 50, maxDelayMs: 200 } },
          { FIXTURE_FAIL_START: "1" },
        ),
        nowhere: { type: "http", url: "http://127.0.0.1:9/mcp" },
        local: fixtureServer(),
      },
    });
    gateway = await startHttpGateway(config);
    client = await connect(gateway.url);
  });

  after(async () => {
    await client?.close();
    await gateway?.stop();
  });

  test("tools of Streamable HTTP and SSE servers are served, with their configured headers", async () => {
    const { tools } = await client.listTools();
    const names = tools.map((t) => t.name);
    for (const name of ["remote__echo", "legacy__echo", "local__echo"])
      assert.ok(names.includes(name), `${name} missing`);
    assert.equal(
      firstTextOf(await client.callTool({ name: "remote__echo", arguments: { message: "over http" } })),
      "over http",
    );
    assert.equal(
      firstTextOf(await client.callTool({ name: "legacy__echo", arguments: { message: "over sse" } })),
      "over sse",
    );
    const remoteHeaders = JSON.parse(
      firstTextOf(await client.callTool({ name: "remote__whoami", arguments: {} })),
    );
    assert.equal(remoteHeaders["x-team"], "platform");
    assert.equal(remoteHeaders.authorization, "Bearer t0k3n");
    const sseHeaders = JSON.parse(
      firstTextOf(await client.callTool({ name: "legacy__whoami", arguments: {} })),
    );
    assert.equal(sseHeaders["x-team"], "legacy");
  });

  test("servers that never start do not block the others, and the log says why", async () => {
    const { tools } = await client.listTools();
    assert.ok(!tools.some((t) => t.name.startsWith("broken__") || t.name.startsWith("nowhere__")));
    const broken = await gateway.logs.waitFor(
      (l) => l.server === "broken" && l.msg === "server failed to start",
    );
    assert.ok(String(broken.err).length > 0, "the reason is logged");
    await gateway.logs.waitFor((l) => l.server === "nowhere" && l.msg === "server failed to start");
    await gateway.logs.waitFor((l) => l.server === "broken" && l.msg === "restarting server");
    const health = (await (await fetch(gateway.url.replace(/\/mcp$/, "/healthz"))).json()) as {
      status: string;
      checks: Record<string, { status: string; detail?: string }>;
    };
    assert.equal(health.status, "degraded", "no server is required, so the gateway is degraded, not down");
    assert.equal(health.checks.broken?.status, "unhealthy");
    assert.match(health.checks.broken?.detail ?? "", /not connected/);
    assert.equal(health.checks.remote?.status, "healthy");
  });
});

describe("graceful shutdown", () => {
  test("SIGTERM lets a call in flight finish, refuses new work, and exits 0", async () => {
    const gateway = await startHttpGateway(writeConfig({ mcpServers: { fx: fixtureServer() } }));
    const client = await connect(gateway.url);
    const slow = client.callTool({ name: "fx__slow", arguments: { ms: 1_500 } });
    await gateway.logs.waitFor((l) => l.msg === "server up");
    // Give the call time to reach the backend: wait until the gateway counts it in flight.
    await eventually(
      async () => {
        const health = (await (await fetch(gateway.url.replace(/\/mcp$/, "/healthz"))).json()) as {
          inFlight: number;
        };
        return health.inFlight > 0;
      },
      5_000,
      "the gateway to count the call in flight",
    );
    const exit = gateway.stop("SIGTERM");
    assert.equal(firstTextOf(await slow), "waited 1500 ms");
    assert.equal(await exit, 0);
    await client.close().catch(() => undefined);
    assert.ok(gateway.logs.lines.some((l) => l.msg === "shutting down"));
    assert.ok(gateway.logs.lines.some((l) => l.msg === "stopped"));
  });
});
