/**
 * What the console costs a gateway nobody watches: the per-call watcher, the policy events and the
 * catalog's changes are listened to only while a console is open, and not at all when it is off.
 */
import assert from "node:assert/strict";
import { createServer, type Server } from "node:http";
import { after, test } from "node:test";
import { validateConfig } from "../../../src/config/validate.ts";
import {
  type Backend,
  type BackendEvents,
  type BackendState,
  type CallToolResult,
  EMPTY_CATALOG,
} from "../../../src/core/types.ts";
import { Gateway } from "../../../src/gateway/gateway.ts";
import { silentLogger } from "../../../src/observability/logger.ts";
import { createGatewayHttpHandler } from "../../../src/server/http/handler.ts";

class EchoBackend implements Backend {
  state: BackendState = "stopped";
  constructor(readonly name: string) {}
  async start(events: BackendEvents) {
    this.state = "up";
    events.state("up");
  }
  catalog() {
    return { ...EMPTY_CATALOG, tools: [{ name: "echo", inputSchema: { type: "object" as const } }] };
  }
  async callTool(): Promise<CallToolResult> {
    return { content: [{ type: "text", text: "echo" }] };
  }
  async readResource(): Promise<never> {
    throw new Error("none");
  }
  async getPrompt(): Promise<never> {
    throw new Error("none");
  }
  async health() {
    return { status: "healthy" as const };
  }
  async close() {
    this.state = "stopped";
  }
}

const closing: (() => Promise<void>)[] = [];
after(async () => {
  for (const close of closing.reverse()) await close();
});

async function serve(consoleEnabled: boolean): Promise<{ gateway: Gateway; url: string }> {
  const config = validateConfig({
    mcpServers: {},
    server: { http: { console: { enabled: consoleEnabled } } },
  });
  const gateway = new Gateway(config, silentLogger(), [new EchoBackend("svc")]);
  await gateway.start();
  const handler = createGatewayHttpHandler(gateway, { ...config.server.http });
  const server: Server = createServer((req, res) => handler.handle(req, res));
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  closing.push(async () => {
    await handler.close();
    server.closeAllConnections();
    server.close();
    await gateway.close();
  });
  const address = server.address() as { port: number };
  return { gateway, url: `http://127.0.0.1:${address.port}` };
}

/** Polls until `check` holds; fails after the deadline. */
async function until(check: () => boolean, what: string, timeoutMs = 5_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!check()) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((resolve) => setTimeout(resolve, 10));
  }
}

test("calls are watched only while a console is open", async () => {
  const { gateway, url } = await serve(true);
  const breakerListeners = () => gateway.policies.listenerCount("breaker");
  const before = breakerListeners();
  assert.equal(gateway.observability.calls.watched, false);
  await gateway.callTool("svc__echo", {});
  assert.equal(gateway.observability.calls.watched, false);

  const controller = new AbortController();
  const response = await fetch(`${url}/console/api/events`, { signal: controller.signal });
  const reader = (response.body as ReadableStream<Uint8Array>).getReader();
  await reader.read(); // the stream is open
  assert.equal(gateway.observability.calls.watched, true);
  assert.equal(breakerListeners(), before + 1);

  controller.abort();
  await until(() => !gateway.observability.calls.watched, "the console's watcher to go");
  assert.equal(breakerListeners(), before);
});

test("a console that is off is not made: no watcher, no listener, and /console says so", async () => {
  const { gateway, url } = await serve(false);
  const listeners = gateway.listenerCount("backendState");
  const response = await fetch(`${url}/console/`);
  assert.equal(response.status, 404);
  assert.equal(gateway.observability.calls.watched, false);
  assert.equal(gateway.listenerCount("backendState"), listeners);
  const on = await serve(true);
  assert.equal(on.gateway.listenerCount("backendState"), listeners + 1);
});
