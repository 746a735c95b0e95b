/**
 * Tool search, as a client of the built CLI sees it over Streamable HTTP: an endpoint in discovery
 * mode "search" lists two tools; the client finds a tool it was never listed with
 * `switchboard__search_tools` and calls it with `switchboard__call_tool`, in both protocol eras; a tool
 * a server adds at run time is announced with list_changed and found; a full-mode endpoint of the same
 * gateway lists every tool and no search tools.
 */
import assert from "node:assert/strict";
import { after, before, describe, test } from "node:test";
import { Client as ModernClient, StreamableHTTPClientTransport } from "@modelcontextprotocol/client";
import { ToolListChangedNotificationSchema } from "@modelcontextprotocol/sdk/types.js";
import {
  fixtureServer,
  type RunningGateway,
  startHttpGateway,
  writeConfig,
} from "../support/gateway-process.ts";
import { connectHttpClient, type ToolResult } from "../support/mcp-client.ts";

const configPath = writeConfig({
  mcpServers: { fx: fixtureServer({}, { FIXTURE_NAME: "fx" }) },
  profiles: { agents: { discovery: { mode: "search", alwaysOn: ["fx__stats"] } } },
});

let gateway: RunningGateway;
before(async () => {
  gateway = await startHttpGateway(configPath);
});
after(async () => {
  await gateway?.stop();
});

interface Found {
  name: string;
  server: string;
  description?: string;
  inputSchema: { properties?: Record<string, unknown> };
}

const foundIn = (result: ToolResult): Found[] => {
  const text = result.content[0]?.text ?? "";
  return text.startsWith("{") ? (JSON.parse(text) as { tools: Found[] }).tools : [];
};

describe("a client of an endpoint in search mode", () => {
  test("is listed the search tools and its always-on tools only", async () => {
    const client = await connectHttpClient(`${gateway.url}/agents`, { name: "search-e2e" });
    try {
      const { tools } = await client.listTools();
      assert.deepEqual(tools.map((t) => t.name).sort(), [
        "fx__stats",
        "switchboard__call_tool",
        "switchboard__search_tools",
      ]);
    } finally {
      await client.close();
    }
  });

  test("finds a tool it was never listed and calls it (2025-era session)", async () => {
    const client = await connectHttpClient(`${gateway.url}/agents`, { name: "search-e2e" });
    try {
      const listed = (await client.listTools()).tools.map((t) => t.name);
      assert.ok(!listed.includes("fx__echo"));
      const search = (await client.callTool({
        name: "switchboard__search_tools",
        arguments: { query: "return my message back" },
      })) as ToolResult;
      const [best] = foundIn(search);
      assert.equal(best?.name, "fx__echo");
      assert.deepEqual(Object.keys(best?.inputSchema.properties ?? {}), ["message"]);
      const result = (await client.callTool({
        name: "switchboard__call_tool",
        arguments: { name: best?.name, arguments: { message: "found you" } },
      })) as ToolResult;
      assert.equal(result.isError, undefined);
      assert.equal(result.content[0]?.text, "found you");
    } finally {
      await client.close();
    }
  });

  test("finds and calls it over 2026-07-28 stateless requests too", async () => {
    const client = new ModernClient({ name: "search-e2e-modern", version: "1" }, {
      versionNegotiation: { mode: { pin: "2026-07-28" } },
    } as never);
    await client.connect(new StreamableHTTPClientTransport(new URL(`${gateway.url}/agents`)));
    try {
      const search = (await client.callTool({
        name: "switchboard__search_tools",
        arguments: { query: "wait milliseconds with progress", limit: 3 },
      })) as ToolResult;
      assert.equal(foundIn(search)[0]?.name, "fx__slow");
      const result = (await client.callTool({
        name: "switchboard__call_tool",
        arguments: { name: "fx__slow", arguments: { ms: 10 } },
      })) as ToolResult;
      assert.equal(result.content[0]?.text, "waited 10 ms");
    } finally {
      await client.close();
    }
  });

  test("hears list_changed when a server adds a tool, and finds the new tool", async () => {
    const client = await connectHttpClient(`${gateway.url}/agents`, { name: "search-e2e" });
    try {
      const announced = new Promise<void>((resolve) =>
        client.setNotificationHandler(ToolListChangedNotificationSchema, () => resolve()),
      );
      await client.callTool({
        name: "switchboard__call_tool",
        arguments: { name: "fx__add_tool", arguments: { name: "weather_forecast" } },
      });
      await announced;
      const search = (await client.callTool({
        name: "switchboard__search_tools",
        arguments: { query: "weather forecast" },
      })) as ToolResult;
      assert.equal(foundIn(search)[0]?.name, "fx__weather_forecast");
    } finally {
      await client.close();
    }
  });
});

test("the full-mode default endpoint lists every tool, and no search tools", async () => {
  const client = await connectHttpClient(gateway.url, { name: "search-e2e-full" });
  try {
    const names = (await client.listTools()).tools.map((t) => t.name);
    assert.ok(names.includes("fx__echo") && names.includes("switchboard__health"));
    assert.ok(!names.some((n) => n.startsWith("switchboard__search") || n === "switchboard__call_tool"));
  } finally {
    await client.close();
  }
});
