/**
 * The embedding API as a program uses it, through the public entry (src/index.ts): a gateway from a
 * config object or file, with a backend, a store and an audit sink of the program's own, served on an
 * HTTP server of its own or through a handler on the program's server, and closed.
 */
import assert from "node:assert/strict";
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { createServer } from "node:http";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, describe, test } from "node:test";
import {
  type AuditRecord,
  type AuditSink,
  type Backend,
  type BackendEvents,
  type BackendState,
  type CallToolResult,
  createGateway,
  EMPTY_CATALOG,
  type Gateway,
  GatewayError,
  httpHandler,
  type Store,
  serveHttp,
  silentLogger,
  type ToolCall,
} from "../../src/index.ts";
import { createMemoryStore } from "../../src/stores/memory.ts";
import { connectHttpClient, firstTextOf } from "../support/mcp-client.ts";

class EchoBackend implements Backend {
  state: BackendState = "stopped";
  closed = false;
  constructor(readonly name: string) {}
  async start(events: BackendEvents) {
    this.state = "up";
    events.state("up");
  }
  catalog() {
    return {
      ...EMPTY_CATALOG,
      tools: [
        { name: "echo", inputSchema: { type: "object" as const }, annotations: { readOnlyHint: true } },
      ],
    };
  }
  async callTool(call: ToolCall): Promise<CallToolResult> {
    return { content: [{ type: "text", text: `${this.name}: ${JSON.stringify(call.args)}` }] };
  }
  async readResource(): Promise<never> {
    throw new GatewayError("unknown_resource", "none");
  }
  async getPrompt(): Promise<never> {
    throw new GatewayError("unknown_prompt", "none");
  }
  async health() {
    return { status: "healthy" as const };
  }
  async close() {
    this.closed = true;
    this.state = "stopped";
  }
}

class ListSink implements AuditSink {
  readonly name = "list";
  readonly records: AuditRecord[] = [];
  closed = false;
  async write(record: AuditRecord) {
    this.records.push(record);
  }
  async flush() {}
  async close() {
    this.closed = true;
  }
  health() {
    return {
      name: this.name,
      durability: "sync" as const,
      pending: 0,
      committed: 0,
      dropped: 0,
      consecutiveFailures: 0,
    };
  }
}

/** A memory store that counts the token takes it serves and knows whether it was closed. */
function countingStore(): Store & { takes: number; closed: boolean } {
  const inner = createMemoryStore();
  const counts = { takes: 0, closed: false };
  // A program's own store: an object of its own that delegates to the memory store, every method
  // called on the memory store itself, two of them counted.
  const own: Partial<Store> = {
    takeTokens: (...args) => {
      counts.takes++;
      return inner.takeTokens(...args);
    },
    close: () => {
      counts.closed = true;
      return inner.close();
    },
  };
  return new Proxy(inner, {
    get: (target, key) => {
      if (key === "takes" || key === "closed") return counts[key];
      if (Object.hasOwn(own, key)) return own[key as keyof Store];
      const value = Reflect.get(target, key, target);
      return typeof value === "function" ? value.bind(target) : value;
    },
  }) as unknown as Store & { takes: number; closed: boolean };
}

const folders: string[] = [];
const gateways: Gateway[] = [];
after(async () => {
  await Promise.all(gateways.map((g) => g.close()));
  for (const folder of folders) rmSync(folder, { recursive: true, force: true });
});

async function started(options: Parameters<typeof createGateway>[0]): Promise<Gateway> {
  const gateway = await createGateway({ logger: silentLogger(), ...options });
  gateways.push(gateway);
  await gateway.start();
  return gateway;
}

describe("createGateway", () => {
  test("serves a backend the config does not name under its own name, through the config's policies", async () => {
    const store = countingStore();
    const sink = new ListSink();
    const backend = new EchoBackend("mine");
    const gateway = await createGateway({
      config: { mcpServers: {}, policies: { rateLimit: { capacity: 100, refillPerSecond: 10 } } },
      backends: [backend],
      store,
      auditSinks: [sink],
      logger: silentLogger(),
    });
    await gateway.start();
    const result = await gateway.callTool("mine__echo", { a: 1 });
    assert.equal(firstTextOf(result), 'mine: {"a":1}');
    assert.ok(store.takes >= 1, "the rate limit took its token from the given store");
    assert.equal(sink.records.length, 1);
    assert.equal(sink.records[0]?.tool, "mine__echo");
    await gateway.close();
    assert.ok(backend.closed && store.closed && sink.closed, "close() closes the backend, store and sink");
  });

  test("a backend named like a configured server takes its place, with that server's naming", async () => {
    const gateway = await started({
      config: { mcpServers: { svc: { command: "never-started", prefix: "s" } } },
      backends: [new EchoBackend("svc")],
    });
    assert.equal(firstTextOf(await gateway.callTool("s__echo", {})), "svc: {}");
  });

  test("reads a config file, relative paths from its folder", async () => {
    const folder = mkdtempSync(join(tmpdir(), "switchboard-embed-"));
    folders.push(folder);
    const path = join(folder, "switchboard.yaml");
    writeFileSync(
      path,
      "mcpServers: {}\naudit: { sinks: [{ type: file, path: ./audit.jsonl, durability: sync }] }\n",
    );
    const gateway = await started({ configPath: path, backends: [new EchoBackend("f")] });
    await gateway.callTool("f__echo", {});
    await gateway.close();
    assert.match(readFileSync(join(folder, "audit.jsonl"), "utf8"), /"tool":"f__echo"/);
  });

  test("refuses what it cannot serve, saying why", async () => {
    await assert.rejects(createGateway({}), { code: "config_invalid", message: /exactly one of `config`/ });
    await assert.rejects(createGateway({ config: { mcpServers: {} }, backends: [new EchoBackend("a b")] }), {
      code: "config_invalid",
      message: /"a b" .* not a valid server name/,
    });
    await assert.rejects(
      createGateway({ config: { mcpServers: {} }, backends: [new EchoBackend("switchboard")] }),
      {
        message: /gateway's own tools/,
      },
    );
    await assert.rejects(createGateway({ config: JSON.parse('{ "mcpServers": { "x": 1 } }') }), {
      code: "config_invalid",
    });
    assert.throws(() => serveHttp({} as Gateway), TypeError);
  });
});

describe("serving", () => {
  test("serveHttp: the MCP endpoint and the probes on a server of the gateway's own", async () => {
    const gateway = await started({ config: { mcpServers: {} }, backends: [new EchoBackend("h")] });
    const serving = await serveHttp(gateway, { port: 0 });
    try {
      assert.match(serving.url, /^http:\/\/127\.0\.0\.1:\d+\/mcp$/);
      const client = await connectHttpClient(serving.url, { name: "embed-test" });
      try {
        const result = await client.callTool({ name: "h__echo", arguments: { x: "y" } });
        assert.equal(firstTextOf(result), 'h: {"x":"y"}');
      } finally {
        await client.close();
      }
      assert.equal((await fetch(new URL("/readyz", serving.url))).status, 200);
    } finally {
      await serving.close();
    }
  });

  test("httpHandler: on the program's server, its own paths 404 without a next", async () => {
    const gateway = await started({ config: { mcpServers: {} }, backends: [new EchoBackend("k")] });
    const handler = httpHandler(gateway);
    const server = createServer((req, res) => handler(req, res));
    await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
    const { port } = server.address() as { port: number };
    try {
      const client = await connectHttpClient(`http://127.0.0.1:${port}/mcp`, { name: "embed-test" });
      try {
        assert.equal(firstTextOf(await client.callTool({ name: "k__echo", arguments: {} })), "k: {}");
      } finally {
        await client.close();
      }
      const other = await fetch(`http://127.0.0.1:${port}/other`);
      assert.equal(other.status, 404);
      assert.match(await other.text(), /The MCP endpoint is \/mcp/);
    } finally {
      server.close();
      await handler.close();
      server.closeAllConnections();
    }
  });
});
