/**
 * The gateway end to end: the real CLI as a child process, real reference MCP servers as its
 * children, and both SDK generations as clients, over stdio and Streamable HTTP.
 */
import assert from "node:assert/strict";
import { after, before, describe, test } from "node:test";
import { Client as ClientV2, StreamableHTTPClientTransport as HttpV2 } from "@modelcontextprotocol/client";
import { StdioClientTransport as StdioV2 } from "@modelcontextprotocol/client/stdio";
import { Client as ClientV1 } from "@modelcontextprotocol/sdk/client/index.js";
import { StdioClientTransport as StdioV1 } from "@modelcontextprotocol/sdk/client/stdio.js";
import { StreamableHTTPClientTransport as HttpV1 } from "@modelcontextprotocol/sdk/client/streamableHttp.js";
import {
  eventually,
  fixtureServer,
  REFERENCE,
  ROOT,
  type RunningGateway,
  startHttpGateway,
  stdioGatewayCommand,
  writeConfig,
} from "../support/gateway-process.ts";

const config = {
  mcpServers: {
    everything: { command: process.execPath, args: [REFERENCE.everything, "stdio"] },
    files: { command: process.execPath, args: [REFERENCE.filesystem, `${ROOT}/examples/files`] },
    memory: {
      command: process.execPath,
      args: [REFERENCE.memory],
      env: { MEMORY_FILE_PATH: `${ROOT}/node_modules/.cache-switchboard-memory-${process.pid}.jsonl` },
    },
    fx: fixtureServer(),
  },
  logging: { level: "debug" },
};

/** The surface the tests need, implemented by both SDK generations' clients. */
interface AnyClient {
  listTools(): Promise<{ tools: { name: string; _meta?: Record<string, unknown> }[] }>;
  callTool(params: unknown, schema?: unknown, options?: unknown): Promise<unknown>;
  close(): Promise<void>;
}

type Flavor = { name: string; connect(): Promise<{ client: AnyClient; toolsChanged: () => number }> };

let http: RunningGateway;
const configPath = writeConfig(config);

before(async () => {
  http = await startHttpGateway(configPath);
});
after(async () => {
  await http?.stop();
});

function countingHandlers() {
  let changes = 0;
  return {
    count: () => changes,
    bump: () => {
      changes++;
    },
  };
}

/**
 * A flavor on the SDK v2 client, which counts tools/list_changed notifications itself; only the
 * transport differs between stdio and HTTP. `transport` is called at connect time (the HTTP
 * gateway's URL is known only then).
 */
function v2Flavor(name: string, clientName: string, transport: () => StdioV2 | HttpV2): Flavor {
  return {
    name,
    async connect() {
      const counter = countingHandlers();
      const client = new ClientV2({ name: clientName, version: "1" }, {
        versionNegotiation: { mode: "auto" },
        listChanged: { tools: { autoRefresh: false, debounceMs: 0, onChanged: counter.bump } },
      } as never);
      await client.connect(transport());
      return { client: client as unknown as AnyClient, toolsChanged: counter.count };
    },
  };
}

/** The same on the SDK v1 client, which is told of tools/list_changed by a notification handler. */
function v1Flavor(name: string, clientName: string, transport: () => StdioV1 | HttpV1): Flavor {
  return {
    name,
    async connect() {
      const counter = countingHandlers();
      const client = new ClientV1({ name: clientName, version: "1" });
      const { ToolListChangedNotificationSchema } = await import("@modelcontextprotocol/sdk/types.js");
      client.setNotificationHandler(ToolListChangedNotificationSchema, counter.bump);
      await client.connect(transport());
      return { client: client as unknown as AnyClient, toolsChanged: counter.count };
    },
  };
}

const flavors: Flavor[] = [
  v2Flavor(
    "SDK v2 client over stdio",
    "e2e-v2",
    () => new StdioV2({ ...stdioGatewayCommand(configPath), stderr: "ignore" }),
  ),
  v1Flavor(
    "SDK v1 client over stdio",
    "e2e-v1",
    () => new StdioV1({ ...stdioGatewayCommand(configPath), stderr: "ignore" }),
  ),
  v2Flavor("SDK v2 client over Streamable HTTP", "e2e-v2-http", () => new HttpV2(new URL(http.url))),
  v1Flavor("SDK v1 client over Streamable HTTP", "e2e-v1-http", () => new HttpV1(new URL(http.url))),
];

/** A direct SDK v1 client to a reference server, to compare what the gateway passes through. */
async function direct(command: string, args: string[]): Promise<ClientV1> {
  const client = new ClientV1({ name: "direct", version: "1" });
  await client.connect(new StdioV1({ command, args, stderr: "ignore" }));
  return client;
}

const callV = (client: AnyClient, name: string, args: Record<string, unknown> = {}, options?: unknown) =>
  (client instanceof ClientV2
    ? client.callTool({ name, arguments: args }, options as never)
    : client.callTool({ name, arguments: args }, undefined, options as never)) as Promise<{
    content: Record<string, unknown>[];
    isError?: boolean;
    structuredContent?: unknown;
    _meta?: Record<string, unknown>;
  }>;

for (const flavor of flavors) {
  describe(flavor.name, () => {
    let client: AnyClient;
    let toolsChanged: () => number;

    before(async () => {
      ({ client, toolsChanged } = await flavor.connect());
    });
    after(async () => {
      await client?.close();
    });

    test("lists the tools of every server under its prefix", async () => {
      const { tools } = await client.listTools();
      const names = tools.map((t) => t.name);
      for (const expected of [
        "everything__echo",
        "files__read_text_file",
        "memory__create_entities",
        "fx__echo",
      ]) {
        assert.ok(names.includes(expected), `${expected} missing from ${names.join(", ")}`);
      }
      assert.ok(
        names.every((n) => /^[a-zA-Z0-9_-]{1,64}$/.test(n)),
        "every name is valid for strict clients",
      );
    });

    test("calls a tool on each server", async () => {
      const echo = await callV(client, "everything__echo", { message: "hi" });
      assert.deepEqual(echo.content, [{ type: "text", text: "Echo: hi" }]);
      const read = await callV(client, "files__read_text_file", { path: `${ROOT}/examples/files/notes.txt` });
      assert.match(String(read.content[0]?.text), /one MCP endpoint/);
      const graph = await callV(client, "memory__read_graph");
      assert.equal(graph.isError, undefined);
    });

    test("every content type, structuredContent and _meta pass through intact", async () => {
      const result = await callV(client, "fx__all_content");
      assert.deepEqual(
        result.content.map((c) => c.type),
        ["text", "image", "audio", "resource", "resource_link"],
      );
      assert.deepEqual(result.structuredContent, { ok: true, n: 1 });
      assert.deepEqual(result._meta?.["fixture/custom"], { kept: true });
    });

    test("an isError result from a tool passes through as isError", async () => {
      const result = await callV(client, "fx__fail", { reason: "nope" });
      assert.equal(result.isError, true);
      assert.deepEqual(result.content, [{ type: "text", text: "nope" }]);
    });

    test("an unknown tool is a clear error and the gateway keeps serving", async () => {
      await assert.rejects(callV(client, "nope__missing"), /Tool "nope__missing" does not exist/);
      const echo = await callV(client, "fx__echo", { message: "still here" });
      assert.deepEqual(echo.content, [{ type: "text", text: "still here" }]);
    });

    test("progress notifications reach the client", async () => {
      const progress: number[] = [];
      const result = await callV(
        client,
        "fx__slow",
        { ms: 100 },
        { onprogress: (p: { progress: number }) => progress.push(p.progress) },
      );
      assert.deepEqual(result.content, [{ type: "text", text: "waited 100 ms" }]);
      // SDK clients drop a progress notification read in the same chunk as its result. The gateway
      // spaces them, but on a loaded machine the client may still read both at once, so the last one
      // may be missing; every one that arrives is in order.
      assert.deepEqual(progress, [1, 2, 3, 4, 5].slice(0, progress.length));
      assert.ok(progress.length >= 4, `progress arrived: ${progress.join(", ")}`);
    });

    test("cancelling a call aborts the backend request", async () => {
      const stats = async () =>
        (await callV(client, "fx__stats")).structuredContent as { calls: number; cancelled: number };
      const before = await stats();
      const controller = new AbortController();
      const pending = callV(client, "fx__slow", { ms: 20_000 }, { signal: controller.signal });
      // Cancelled once the backend has the call (its call count says so), not after a guessed delay.
      await eventually(
        async () => (await stats()).calls > before.calls,
        10_000,
        "the call to reach the backend",
      );
      controller.abort();
      await assert.rejects(pending);
      await eventually(
        async () => (await stats()).cancelled === before.cancelled + 1,
        10_000,
        "the backend to see the cancellation",
      );
    });

    test("a backend's list_changed reaches the client and the new tool is callable", async () => {
      const seen = toolsChanged();
      const name = `dyn_${Math.random().toString(36).slice(2, 8)}`;
      await callV(client, "fx__add_tool", { name });
      await eventually(() => toolsChanged() > seen, 10_000, "tools/list_changed at the client");
      const { tools } = await client.listTools();
      assert.ok(tools.some((t) => t.name === `fx__${name}`));
      const result = await callV(client, `fx__${name}`);
      assert.deepEqual(result.content, [{ type: "text", text: `I am ${name}` }]);
    });
  });
}

describe("fidelity against the reference server", () => {
  test("every server-everything tool result round-trips byte for byte", async () => {
    const reference = await direct(process.execPath, [REFERENCE.everything, "stdio"]);
    const client = new ClientV1({ name: "fidelity", version: "1" });
    await client.connect(new HttpV1(new URL(http.url)));
    try {
      const cases: [string, Record<string, unknown>][] = [
        ["echo", { message: "héllo ✓" }],
        ["get-sum", { a: 2, b: 40 }],
        ["get-tiny-image", {}],
        ["get-annotated-message", { messageType: "error", includeImage: true }],
        ["get-resource-links", { count: 3 }],
        ["get-resource-reference", { resourceType: "Text", resourceId: 1 }],
        ["get-resource-reference", { resourceType: "Blob", resourceId: 2 }],
        ["get-structured-content", { location: "New York" }],
      ];
      for (const [tool, args] of cases) {
        const want = await reference.callTool({ name: tool, arguments: args });
        const got = await client.callTool({ name: `everything__${tool}`, arguments: args });
        assert.equal(JSON.stringify(got), JSON.stringify(want), `${tool} differs through the gateway`);
      }
    } finally {
      await client.close();
      await reference.close();
    }
  });
});

describe("supervision", () => {
  test("a killed backend is restarted, its tools leave and come back, list_changed both ways", async () => {
    const counter = countingHandlers();
    const client = new ClientV1({ name: "restart", version: "1" });
    const { ToolListChangedNotificationSchema } = await import("@modelcontextprotocol/sdk/types.js");
    client.setNotificationHandler(ToolListChangedNotificationSchema, counter.bump);
    await client.connect(new HttpV1(new URL(http.url)));
    try {
      const before = (await client.callTool({ name: "fx__stats", arguments: {} })).structuredContent as {
        pid: number;
      };
      const changes = counter.count();
      await client.callTool({ name: "fx__crash", arguments: {} });
      await eventually(
        async () => {
          const { tools } = await client.listTools();
          return !tools.some((t) => t.name.startsWith("fx__"));
        },
        10_000,
        "the crashed server's tools to leave the catalog",
      );
      await eventually(
        async () => {
          const { tools } = await client.listTools();
          return tools.some((t) => t.name === "fx__stats");
        },
        20_000,
        "the restarted server's tools to come back",
      );
      assert.ok(
        counter.count() >= changes + 2,
        "list_changed sent when the tools left and when they came back",
      );
      const after = (await client.callTool({ name: "fx__stats", arguments: {} })).structuredContent as {
        pid: number;
      };
      assert.notEqual(after.pid, before.pid, "a new process serves the tools");
      await http.logs.waitFor((l) => l.msg === "restarting server" && l.server === "fx", 1_000);
    } finally {
      await client.close();
    }
  });
});
