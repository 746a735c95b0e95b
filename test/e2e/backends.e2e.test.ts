/**
 * Backends the gateway reaches over the network (Streamable HTTP and legacy SSE, with configured
 * headers), a server that never starts, and a graceful shutdown with a call in flight.
 */
import assert from "node:assert/strict";
import { type ChildProcess, spawn } from "node:child_process";
import { createInterface } from "node:readline";
import { after, before, describe, test } from "node:test";
import { Client } from "@modelcontextprotocol/sdk/client/index.js";
import { StreamableHTTPClientTransport } from "@modelcontextprotocol/sdk/client/streamableHttp.js";
import {
  fixtureServer,
  ROOT,
  type RunningGateway,
  startHttpGateway,
  writeConfig,
} from "../support/gateway-process.ts";

let httpFixture: ChildProcess;
let fixtureUrl: string;

before(async () => {
  httpFixture = spawn(process.execPath, ["--import", "tsx", `${ROOT}/test/fixtures/http-server.ts`], {
    cwd: ROOT,
    stdio: ["pipe", "pipe", "inherit"],
  });
  fixtureUrl = await new Promise<string>((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error("http fixture did not start")), 20_000);
    createInterface({ input: httpFixture.stdout as NodeJS.ReadableStream }).once("line", (line) => {
      clearTimeout(timer);
      resolve((JSON.parse(line) as { url: string }).url);
    });
  });
});

after(() => {
  httpFixture?.stdin?.end();
  httpFixture?.kill();
});

async function connect(url: string): Promise<Client> {
  const client = new Client({ name: "backends-e2e", version: "1" });
  await client.connect(new StreamableHTTPClientTransport(new URL(url)));
  return client;
}

const text = (result: unknown) => String((result as { content: { text?: string }[] }).content[0]?.text);

describe("remote backends and a server that never starts", () => {
  let gateway: RunningGateway;
  let client: Client;

  before(async () => {
    const config = writeConfig({
      mcpServers: {
        remote: {
          type: "http",
          url: `${fixtureUrl}/mcp`,
          headers: { "X-Team": "platform", Authorization: "Bearer t0k3n" },
        },
        legacy: { type: "sse", url: `${fixtureUrl}/sse`, headers: { "X-Team": "legacy" } },
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
      text(await client.callTool({ name: "remote__echo", arguments: { message: "over http" } })),
      "over http",
    );
    assert.equal(
      text(await client.callTool({ name: "legacy__echo", arguments: { message: "over sse" } })),
      "over sse",
    );
    const remoteHeaders = JSON.parse(text(await client.callTool({ name: "remote__whoami", arguments: {} })));
    assert.equal(remoteHeaders["x-team"], "platform");
    assert.equal(remoteHeaders.authorization, "Bearer t0k3n");
    const sseHeaders = JSON.parse(text(await client.callTool({ name: "legacy__whoami", arguments: {} })));
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
    const deadline = Date.now() + 5_000;
    while (Date.now() < deadline) {
      const health = (await (await fetch(gateway.url.replace(/\/mcp$/, "/healthz"))).json()) as {
        inFlight: number;
      };
      if (health.inFlight > 0) break;
      await new Promise((r) => setTimeout(r, 20));
    }
    const exit = gateway.stop("SIGTERM");
    assert.equal(text(await slow), "waited 1500 ms");
    assert.equal(await exit, 0);
    await client.close().catch(() => undefined);
    assert.ok(gateway.logs.lines.some((l) => l.msg === "shutting down"));
    assert.ok(gateway.logs.lines.some((l) => l.msg === "stopped"));
  });
});
