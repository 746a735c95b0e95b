/**
 * A tool that runs only as a task (`execution.taskSupport: "required"`) needs a client that takes
 * tasks: it is listed to clients that declared tasks (the 2026-07-28 extension in a request's
 * capabilities, the 2025-11-25 `tasks` capability at initialize) and to no other, while a call by name
 * still reaches its server, whose refusal the client gets.
 */
import assert from "node:assert/strict";
import { after, test } from "node:test";
import { Client as ClientV2, StreamableHTTPClientTransport as HttpV2 } from "@modelcontextprotocol/client";
import { Client as ClientV1 } from "@modelcontextprotocol/sdk/client/index.js";
import { StreamableHTTPClientTransport as HttpV1 } from "@modelcontextprotocol/sdk/client/streamableHttp.js";
import {
  type Backend,
  type BackendEvents,
  type BackendState,
  type CallToolResult,
  createGateway,
  EMPTY_CATALOG,
  type Gateway,
  GatewayError,
  serveHttp,
  silentLogger,
  type ToolCall,
} from "../../src/index.ts";
import { connectHttpClient, firstTextOf } from "../support/mcp-client.ts";

class TaskToolsBackend implements Backend {
  state: BackendState = "stopped";
  readonly name = "jobs";
  async start(events: BackendEvents) {
    this.state = "up";
    events.state("up");
  }
  catalog() {
    return {
      ...EMPTY_CATALOG,
      tools: [
        { name: "now", inputSchema: { type: "object" as const } },
        {
          name: "maybe_task",
          inputSchema: { type: "object" as const },
          execution: { taskSupport: "optional" as const },
        },
        {
          name: "task_only",
          inputSchema: { type: "object" as const },
          execution: { taskSupport: "required" as const },
        },
      ],
    };
  }
  async callTool(call: ToolCall): Promise<CallToolResult> {
    return { content: [{ type: "text", text: `ran ${call.tool}` }] };
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
    this.state = "stopped";
  }
}

const gateways: Gateway[] = [];
after(async () => {
  await Promise.all(gateways.map((g) => g.close()));
});

test("a task-only tool is listed only to clients that take tasks; a call by name still reaches its server", async () => {
  const gateway = await createGateway({
    config: { mcpServers: {} },
    backends: [new TaskToolsBackend()],
    logger: silentLogger(),
  });
  gateways.push(gateway);
  await gateway.start();
  const serving = await serveHttp(gateway, { port: 0 });
  try {
    const legacy = await connectHttpClient(serving.url, { name: "task-tools" });
    const modern = new ClientV2({ name: "task-tools", version: "1" }, {
      versionNegotiation: { mode: { pin: "2026-07-28" } },
    } as never);
    await modern.connect(new HttpV2(new URL(serving.url)));
    const modernWithTasks = new ClientV2({ name: "task-tools", version: "1" }, {
      versionNegotiation: { mode: { pin: "2026-07-28" } },
      capabilities: { extensions: { "io.modelcontextprotocol/tasks": {} } },
    } as never);
    await modernWithTasks.connect(new HttpV2(new URL(serving.url)));
    const legacyWithTasks = new ClientV1(
      { name: "task-tools", version: "1" },
      { capabilities: { tasks: { list: {}, cancel: {} } } },
    );
    await legacyWithTasks.connect(new HttpV1(new URL(serving.url)));
    const jobs = async (client: ClientV1 | ClientV2) =>
      (await client.listTools()).tools.map((t) => t.name).filter((n) => n.startsWith("jobs"));
    try {
      for (const client of [legacy, modern]) {
        assert.deepEqual(await jobs(client), ["jobs__now", "jobs__maybe_task"]);
      }
      for (const client of [legacyWithTasks, modernWithTasks]) {
        assert.deepEqual(await jobs(client), ["jobs__now", "jobs__maybe_task", "jobs__task_only"]);
      }
      await legacyWithTasks.close();
      await modernWithTasks.close();
      assert.equal(
        firstTextOf(await legacy.callTool({ name: "jobs__task_only", arguments: {} })),
        "ran task_only",
      );
    } finally {
      await legacy.close();
      await modern.close();
    }
  } finally {
    await serving.close();
  }
});
