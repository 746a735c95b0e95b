import assert from "node:assert/strict";
import { describe, test } from "node:test";
import type { Client } from "@modelcontextprotocol/client";
import {
  BACKEND_TASK_META,
  TASKS_EXTENSION,
  taskOfAnswer,
  withTaskMarked,
  withTasksDeclared,
} from "../../../src/backends/mcp/tasks.ts";
import type { CallerChannel } from "../../../src/core/types.ts";

const created = { taskId: "t-1", status: "working", createdAt: "2026-01-01T00:00:00Z" };

/** A connection as the helpers read it: its era and the server's capabilities. */
function connection(era: "modern" | "legacy", capabilities: Record<string, unknown>): Client {
  return { getProtocolEra: () => era, getServerCapabilities: () => capabilities } as unknown as Client;
}

const takesTasks = { capabilities: { extensions: { [TASKS_EXTENSION]: {} } } } as unknown as CallerChannel;
const takesNone = { capabilities: {} } as unknown as CallerChannel;

describe("a server's tasks, as the gateway reads them", () => {
  test("a task-creating answer is recognized in both eras' shapes, in 2026-07-28 names", () => {
    assert.deepEqual(taskOfAnswer({ resultType: "task", ...created, ttlMs: 1000 }), {
      ...created,
      ttlMs: 1000,
    });
    assert.deepEqual(taskOfAnswer({ task: { ...created, ttl: 60_000, pollInterval: 500 } }), {
      ...created,
      ttlMs: 60_000,
      pollIntervalMs: 500,
    });
    assert.equal(taskOfAnswer({ content: [{ type: "text", text: "hi" }] }), undefined);
    assert.equal(taskOfAnswer({ content: [], task: created }), undefined, "a tool result is not a task");
  });

  test("a task-creating response reaches the chain as a tool result that carries the task", () => {
    const modern = withTaskMarked({ jsonrpc: "2.0", id: 1, result: { resultType: "task", ...created } });
    assert.deepEqual(modern.result, {
      content: [],
      resultType: "complete",
      _meta: { [BACKEND_TASK_META]: created },
    });
    assert.deepEqual(taskOfAnswer(modern.result), created);
    const plain = { jsonrpc: "2.0", id: 2, result: { content: [] } };
    assert.equal(withTaskMarked(plain), plain, "any other response is left as it came");
  });

  test("a call tells the server the client takes tasks, in the server's terms", () => {
    const params = { name: "build", arguments: {} };
    const tools = [
      {
        name: "build",
        inputSchema: { type: "object" as const },
        execution: { taskSupport: "optional" as const },
      },
      { name: "now", inputSchema: { type: "object" as const } },
    ];
    const extension = connection("legacy", { extensions: { [TASKS_EXTENSION]: {} } });
    const declared = withTasksDeclared(params, extension, takesTasks, tools);
    assert.deepEqual(
      (declared._meta as Record<string, { extensions?: unknown }>)[
        "io.modelcontextprotocol/clientCapabilities"
      ]?.extensions,
      { [TASKS_EXTENSION]: {} },
    );
    const legacy = connection("legacy", { tasks: { requests: { tools: { call: {} } } } });
    assert.deepEqual(withTasksDeclared(params, legacy, takesTasks, tools).task, {});
    assert.equal(
      withTasksDeclared({ ...params, name: "now" }, legacy, takesTasks, tools).task,
      undefined,
      "a tool the server does not run as a task",
    );
    assert.equal(withTasksDeclared(params, legacy, takesNone, tools), params, "a client without tasks");
    assert.equal(withTasksDeclared(params, connection("legacy", {}), takesTasks, tools), params, "no tasks");
  });
});
