/**
 * Tool search through a gateway in this process: an endpoint in discovery mode "search" lists only
 * `switchboard__search_tools` and `switchboard__call_tool` (and its always-on tools); searching finds
 * the tools the caller may call there, with their schemas; `switchboard__call_tool` calls any of them
 * through the tool's own chain, as the caller (access rules, progress, cancellation); a tool a server
 * adds is found after its list_changed.
 */
import assert from "node:assert/strict";
import { mkdtempSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, describe, test } from "node:test";
import type { FoundTool } from "../../src/backends/gateway-tools.ts";
import type { CallerChannel } from "../../src/core/types.ts";
import {
  type Backend,
  type BackendEvents,
  type BackendState,
  type CallContext,
  type CallToolResult,
  type ConfigInput,
  createGateway,
  EMPTY_CATALOG,
  type Gateway,
  GatewayError,
  type Principal,
  silentLogger,
  type Tool,
  type ToolCall,
} from "../../src/index.ts";

/** A backend whose tools are given (and can change), that says what each call received. */
class ToolsBackend implements Backend {
  state: BackendState = "stopped";
  #events: BackendEvents | undefined;
  readonly calls: { tool: string; ctx: CallContext }[] = [];

  constructor(
    readonly name: string,
    public tools: Tool[],
  ) {}

  async start(events: BackendEvents) {
    this.#events = events;
    this.state = "up";
    events.state("up");
  }
  catalog() {
    return { ...EMPTY_CATALOG, tools: this.tools };
  }
  /** Adds a tool and announces it, as a server's list_changed does. */
  add(tool: Tool) {
    this.tools = [...this.tools, tool];
    this.#events?.listChanged({ tools: true });
  }
  async callTool(call: ToolCall, ctx: CallContext): Promise<CallToolResult> {
    this.calls.push({ tool: call.tool, ctx });
    if (call.tool === "slow") {
      ctx.onProgress?.({ progress: 1, total: 2, message: "half way" });
      await new Promise((_resolve, reject) => {
        ctx.signal.addEventListener("abort", () => reject(ctx.signal.reason), { once: true });
      });
    }
    return { content: [{ type: "text", text: `${this.name}/${call.tool} ${JSON.stringify(call.args)}` }] };
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

const tool = (name: string, description: string, properties: Record<string, unknown> = {}): Tool => ({
  name,
  description,
  inputSchema: { type: "object", properties } as Tool["inputSchema"],
});

function backends() {
  return {
    files: new ToolsBackend("files", [
      {
        ...tool("read_text_file", "Read the complete contents of a file as text", {
          path: { type: "string", description: "The file's path" },
        }),
        outputSchema: { type: "object", properties: { text: { type: "string" } } },
        annotations: { readOnlyHint: true },
      },
      tool("write_file", "Create or overwrite a file with new content"),
      tool("slow", "Takes its time, reporting progress"),
    ]),
    tracker: new ToolsBackend("tracker", [
      tool("create_issue", "Open a new issue in the tracker", { title: { type: "string" } }),
      tool("close_issue", "Close an issue"),
    ]),
  };
}

const gateways: Gateway[] = [];
after(() => Promise.all(gateways.map((g) => g.close())));

async function started(config: ConfigInput, given = backends()) {
  const gateway = await createGateway({
    config,
    backends: [given.files, given.tracker],
    logger: silentLogger(),
  });
  gateways.push(gateway);
  await gateway.start();
  return { gateway, ...given };
}

const ALICE: Principal = { id: "alice", roles: ["reader"] };

const found = (result: CallToolResult): FoundTool[] => {
  const text = result.content[0]?.type === "text" ? result.content[0].text : "";
  return text.startsWith("{") ? (JSON.parse(text) as { tools: FoundTool[] }).tools : [];
};
const textOf = (result: CallToolResult) => (result.content[0]?.type === "text" ? result.content[0].text : "");
const names = (tools: readonly { name: string }[]) => tools.map((t) => t.name);
const errorCode = (result: CallToolResult) =>
  (result._meta?.["switchboard/error"] as { code?: string } | undefined)?.code;

describe("an endpoint in search mode", () => {
  test("lists only the search tools and its always-on tools", async () => {
    const { gateway } = await started({
      mcpServers: {},
      gateway: { discovery: { mode: "search", alwaysOn: ["tracker__create_*"] } },
    });
    assert.deepEqual(names(gateway.toolsFor(ALICE)), [
      "switchboard__search_tools",
      "switchboard__call_tool",
      "tracker__create_issue",
    ]);
  });

  test("finds a tool it does not list, with its schema, and calls it through call_tool", async () => {
    const { gateway, files } = await started({ mcpServers: {}, gateway: { discovery: "search" } });
    const result = await gateway.callTool("switchboard__search_tools", { query: "read a file's contents" });
    const [first] = found(result);
    assert.equal(first?.name, "files__read_text_file");
    assert.equal(first?.server, "files");
    assert.deepEqual(first?.inputSchema, {
      type: "object",
      properties: { path: { type: "string", description: "The file's path" } },
    });
    assert.deepEqual(first?.outputSchema, { type: "object", properties: { text: { type: "string" } } });
    assert.deepEqual(first?.annotations, { readOnlyHint: true });
    const called = await gateway.callTool("switchboard__call_tool", {
      name: "files__read_text_file",
      arguments: { path: "notes.txt" },
    });
    assert.equal(textOf(called), 'files/read_text_file {"path":"notes.txt"}');
    assert.equal(files.calls.at(-1)?.tool, "read_text_file");
    // Listed or not, every tool the endpoint offers stays callable by its name.
    const direct = await gateway.callTool("files__write_file", {});
    assert.equal(textOf(direct), "files/write_file {}");
  });

  test("narrows results to a server and to a limit, and leaves the search tools out", async () => {
    const { gateway } = await started({ mcpServers: {}, gateway: { discovery: "search" } });
    const issues = found(
      await gateway.callTool("switchboard__search_tools", { query: "issue file tool", server: "tracker" }),
    );
    assert.deepEqual(names(issues).sort(), ["tracker__close_issue", "tracker__create_issue"]);
    const one = found(await gateway.callTool("switchboard__search_tools", { query: "file", limit: 1 }));
    assert.equal(one.length, 1);
    const many = found(await gateway.callTool("switchboard__search_tools", { query: "file issue tool" }));
    assert.equal(many.length, 5, "5 by default");
    const tooMany = await gateway.callTool("switchboard__search_tools", { query: "file", limit: 21 });
    assert.equal(tooMany.isError, true, "at most 20");
    assert.equal(errorCode(tooMany), "invalid_arguments");
    const own = found(await gateway.callTool("switchboard__search_tools", { query: "search call tools" }));
    assert.ok(!names(own).some((n) => n === "switchboard__search_tools" || n === "switchboard__call_tool"));
    const none = await gateway.callTool("switchboard__search_tools", { query: "zebra" });
    assert.match(textOf(none), /No tool matches/);
  });

  test("finds only what the caller may call, and call_tool applies the access rules", async () => {
    const { gateway, tracker } = await started({
      mcpServers: {},
      gateway: { discovery: "search" },
      access: {
        rules: [
          {
            roles: ["reader"],
            allow: ["switchboard__*", "files__read_*", "tracker__*"],
            deny: ["tracker__close_issue"],
          },
        ],
      },
    });
    const hits = found(
      await gateway.callTool(
        "switchboard__search_tools",
        { query: "issue file", limit: 20 },
        { principal: ALICE },
      ),
    );
    assert.deepEqual(names(hits).sort(), ["files__read_text_file", "tracker__create_issue"]);
    const denied = await gateway.callTool(
      "switchboard__call_tool",
      { name: "tracker__close_issue", arguments: {} },
      { principal: ALICE },
    );
    assert.equal(denied.isError, true);
    assert.match(textOf(denied), /Access denied: principal 'alice' may not call tool 'tracker__close_issue'/);
    assert.equal(tracker.calls.length, 0, "nothing reached the backend");
  });

  test("call_tool answers an unknown name, and itself, with an error the model can act on", async () => {
    const { gateway } = await started({ mcpServers: {}, gateway: { discovery: "search" } });
    const unknown = await gateway.callTool("switchboard__call_tool", { name: "files__nope" });
    assert.equal(unknown.isError, true);
    assert.match(textOf(unknown), /"files__nope" does not exist.*switchboard__search_tools/s);
    const itself = await gateway.callTool("switchboard__call_tool", { name: "switchboard__call_tool" });
    assert.equal(itself.isError, true);
    assert.match(textOf(itself), /Call switchboard__call_tool directly/);
  });

  test("call_tool and the tool it calls are both audited; a redact rule covers the outer record", async () => {
    const dir = mkdtempSync(join(tmpdir(), "switchboard-search-audit-"));
    try {
      const file = join(dir, "audit.jsonl");
      const { gateway } = await started({
        mcpServers: {},
        gateway: { discovery: "search" },
        audit: {
          sinks: [{ type: "file", path: file }],
          redact: [
            { tools: ["files__*"], arguments: ["path"] },
            { tools: ["switchboard__call_tool"], arguments: ["arguments"] },
          ],
        },
      });
      await gateway.callTool(
        "switchboard__call_tool",
        { name: "files__read_text_file", arguments: { path: "secret-plans.txt" } },
        { principal: ALICE },
      );
      const text = readFileSync(file, "utf8");
      assert.doesNotMatch(text, /secret-plans/);
      const records = text
        .trim()
        .split("\n")
        .map((line) => JSON.parse(line) as Record<string, unknown>);
      assert.deepEqual(
        records.map((r) => [r.tool, r.principal, r.arguments]),
        [
          ["files__read_text_file", "alice", { path: "[redacted]" }],
          ["switchboard__call_tool", "alice", { name: "files__read_text_file", arguments: "[redacted]" }],
        ],
      );
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });

  test("a tool that must be signed is refused through call_tool: the signature covers a direct call", async () => {
    const { gateway, files } = await started({
      mcpServers: {},
      gateway: { discovery: "search" },
      signing: {
        keys: [{ id: "k1", secret: "a-signing-secret-of-at-least-32-chars" }],
        require: { tools: ["files__write_file"] },
      },
    });
    const refused = await gateway.callTool("switchboard__call_tool", { name: "files__write_file" });
    assert.equal(refused.isError, true);
    assert.match(textOf(refused), /Signature required for 'files__write_file'/);
    assert.equal(files.calls.length, 0);
  });

  test("call_tool is bounded by its own chain's timeout, set in toolPolicies", async () => {
    const { gateway, files } = await started({
      mcpServers: {},
      gateway: { discovery: "search" },
      toolPolicies: { switchboard__call_tool: { timeout: 100 } },
    });
    const result = await gateway.callTool("switchboard__call_tool", { name: "files__slow" });
    assert.equal(result.isError, true);
    assert.equal(errorCode(result), "timeout");
    assert.equal(files.calls.find((c) => c.tool === "slow")?.ctx.signal.aborted, true);
  });

  test("call_tool passes the caller's progress, cancellation and client to the tool", async () => {
    const { gateway, files } = await started({ mcpServers: {}, gateway: { discovery: "search" } });
    const controller = new AbortController();
    const progress: string[] = [];
    const client: CallerChannel = {
      createMessage: () => Promise.reject(new Error("not in this test")),
      elicit: () => Promise.reject(new Error("not in this test")),
      listRoots: async () => undefined,
      capabilities: {},
      log: () => false,
    };
    const call = gateway.callTool(
      "switchboard__call_tool",
      { name: "files__slow" },
      {
        principal: ALICE,
        client,
        signal: controller.signal,
        onProgress: (update) => {
          progress.push(update.message ?? "");
          controller.abort();
        },
      },
    );
    const result = await call;
    assert.deepEqual(progress, ["half way"]);
    assert.equal(result.isError, true, "the cancelled call ends with an error");
    const inner = files.calls.find((c) => c.tool === "slow");
    assert.equal(inner?.ctx.principal.id, "alice", "the tool was called as the caller");
    assert.equal(inner?.ctx.signal.aborted, true, "the caller's cancel reached the tool");
    assert.equal(inner?.ctx.client, client, "the tool may ask the caller's client (sampling, elicitation)");
  });

  test("keeps its index current: a tool a server adds is found after its list_changed", async () => {
    const { gateway, tracker } = await started({ mcpServers: {}, gateway: { discovery: "search" } });
    const before = found(await gateway.callTool("switchboard__search_tools", { query: "label colour" }));
    assert.deepEqual(names(before), []);
    tracker.add(tool("add_label", "Add a label to an issue", { colour: { type: "string" } }));
    const afterAdd = found(await gateway.callTool("switchboard__search_tools", { query: "label colour" }));
    assert.equal(afterAdd[0]?.name, "tracker__add_label");
  });
});

describe("a profile in search mode", () => {
  const config: ConfigInput = {
    mcpServers: {},
    profiles: { agents: { tools: { include: ["files__*", "switchboard__*"] }, discovery: "search" } },
  };

  test("searches only the profile's tools; the default endpoint keeps its full list", async () => {
    const { gateway } = await started(config);
    assert.deepEqual(names(gateway.toolsFor(ALICE, "agents")), [
      "switchboard__search_tools",
      "switchboard__call_tool",
    ]);
    const hits = found(
      await gateway.callTool(
        "switchboard__search_tools",
        { query: "issue file", limit: 20 },
        { profile: "agents" },
      ),
    );
    assert.ok(
      names(hits).every((n) => n.startsWith("files__")),
      names(hits).join(", "),
    );
    const outside = await gateway.callTool(
      "switchboard__call_tool",
      { name: "tracker__create_issue" },
      { profile: "agents" },
    );
    assert.equal(outside.isError, true, "a tool outside the profile is unknown there");

    const full = names(gateway.toolsFor(ALICE));
    assert.ok(full.includes("tracker__create_issue") && full.includes("switchboard__health"));
    assert.ok(!full.includes("switchboard__search_tools"), "the default endpoint does not list them");
    await assert.rejects(
      gateway.callTool("switchboard__search_tools", { query: "file" }),
      (error: GatewayError) => error.code === "unknown_tool",
      "nor offers them",
    );
  });
});
