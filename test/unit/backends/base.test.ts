/**
 * The one backend base (src/backends/base.ts): the lifecycle, state events, redaction, health, the
 * unknown-tool and invalid-arguments answers and the tools-only answers every backend shares.
 */
import assert from "node:assert/strict";
import { describe, test } from "node:test";
import { z } from "zod";
import {
  callSignals,
  defineTool,
  failureResult,
  structuredResult,
  type ToolSpec,
  ToolsOnlyBackend,
  toolSchema,
  urlRedactor,
} from "../../../src/backends/base.ts";
import { GatewayError } from "../../../src/core/errors.ts";
import { REDACTED } from "../../../src/core/redact.ts";
import type {
  BackendCatalog,
  BackendState,
  CallContext,
  CallToolResult,
  HealthResult,
  ToolCall,
} from "../../../src/core/types.ts";
import { silentLogger } from "../../../src/observability/logger.ts";
import { context, recorder } from "../../support/backend-harness.ts";

const echo = defineTool({
  name: "echo",
  title: "Echo",
  description: "Says it back.",
  args: z.strictObject({ text: z.string().describe("What to say.") }),
  output: z.object({ said: z.string() }),
  annotations: { readOnlyHint: true },
  run: async (args) => ({ said: args.text }),
});

/** A backend on the base whose opening, probe and release the test controls. */
class Probe extends ToolsOnlyBackend<Record<string, unknown>> {
  readonly released: string[] = [];
  opening: () => Promise<void> = async () => this.setState("up");
  probing: () => Promise<unknown> = async () => undefined;

  constructor(tools: readonly ToolSpec<Record<string, unknown>>[] = [echo]) {
    super("db", silentLogger(), { kind: "probe", redact: urlRedactor("redis://app:s3cr%3At@host:6379/0") });
    this.offer(tools);
  }

  catalog(): BackendCatalog {
    return { tools: this.tools, resources: [], resourceTemplates: [], prompts: [] };
  }

  async callTool(call: ToolCall, _ctx: CallContext): Promise<CallToolResult> {
    const { spec, args } = this.prepare(call);
    return structuredResult(await spec.run(args, undefined));
  }

  async health(): Promise<HealthResult> {
    return this.probe(this.probing, (reason) => `probe failed: ${reason}`, { kind: "probe" });
  }

  protected async open(): Promise<void> {
    await this.opening();
  }

  protected override async release(): Promise<void> {
    this.released.push(`released while ${this.state}, closed: ${this.closed}`);
  }

  protected override whyNoTool(tool: string): string | undefined {
    return tool === "drop" ? "It writes, and this backend is read-only." : undefined;
  }

  /** The base's protected surface, for the tests. */
  move(state: BackendState, reason?: string): void {
    this.setState(state, reason);
  }
  note(reason: string): void {
    this.noteError(reason);
  }
  stopped(signal: AbortSignal): GatewayError | undefined {
    return this.stoppedByCaller(signal, "the call was cancelled", { data: { server: this.name } });
  }
}

describe("backend base: lifecycle and state", () => {
  test("state events only on a change; down keeps the reason as lastError, up clears it", async () => {
    const backend = new Probe();
    const { states, events } = recorder();
    assert.equal(backend.state, "stopped");
    await backend.start(events);
    backend.move("up");
    backend.move("down", "refused");
    backend.move("down", "refused again");
    assert.equal(backend.lastError, "refused again", "a second failure while down updates the reason");
    backend.note("an error before the close it causes");
    assert.equal(backend.state, "down");
    assert.equal(backend.lastError, "an error before the close it causes");
    backend.move("up");
    assert.equal(backend.lastError, "");
    assert.deepEqual(states, [
      ["up", undefined],
      ["down", "refused"],
      ["up", undefined],
    ]);
  });

  test("close marks the backend closed and stopped before it releases; start opens it again", async () => {
    const backend = new Probe();
    const { states, events } = recorder();
    await backend.start(events);
    await backend.close();
    assert.deepEqual(backend.released, ["released while stopped, closed: true"]);
    assert.deepEqual(states, [
      ["up", undefined],
      ["stopped", undefined],
    ]);
    await backend.start(events);
    assert.equal(backend.state, "up");
  });

  test("a stopped call: the caller's own GatewayError, else cancelled; nothing while not aborted", () => {
    const backend = new Probe();
    assert.equal(backend.stopped(new AbortController().signal), undefined);
    const timeout = new GatewayError("timeout", "the policy's timeout");
    assert.equal(backend.stopped(AbortSignal.abort(timeout)), timeout);
    const cancelled = backend.stopped(AbortSignal.abort());
    assert.equal(cancelled?.code, "cancelled");
    assert.deepEqual(cancelled?.data, { server: "db" });
  });
});

describe("backend base: health and redaction", () => {
  test("health from one probe: its latency when it works, its redacted reason when not", async () => {
    const backend = new Probe();
    const healthy = await backend.health();
    assert.equal(healthy.status, "healthy");
    assert.equal(typeof healthy.latencyMs, "number");
    assert.deepEqual(healthy.data, { kind: "probe" });
    backend.probing = async () => {
      throw new Error("AUTH failed for redis://app:s3cr%3At@host:6379/0 with s3cr:t and s3cr%3At");
    };
    const failed = await backend.health();
    assert.equal(failed.status, "unhealthy");
    assert.equal(failed.detail, `probe failed: AUTH failed for ${REDACTED} with ${REDACTED} and ${REDACTED}`);
    assert.deepEqual(failed.data, { kind: "probe" });
  });

  test("a URL without a password redacts the URL only; no URL redacts nothing", () => {
    assert.equal(urlRedactor("redis://host:6379")("at redis://host:6379"), `at ${REDACTED}`);
    assert.equal(urlRedactor(undefined)("nothing to hide"), "nothing to hide");
  });
});

describe("backend base: tools", () => {
  test("defineTool: the JSON Schemas come from the zod schemas, without a dialect; the title is an annotation too", () => {
    assert.deepEqual(echo.tool, {
      name: "echo",
      title: "Echo",
      description: "Says it back.",
      inputSchema: {
        type: "object",
        properties: { text: { type: "string", description: "What to say." } },
        required: ["text"],
        additionalProperties: false,
      },
      outputSchema: {
        type: "object",
        properties: { said: { type: "string" } },
        required: ["said"],
        additionalProperties: false,
      },
      annotations: { title: "Echo", readOnlyHint: true },
    });
    assert.equal("$schema" in toolSchema(z.object({})), false);
  });

  test("a call runs its tool with checked arguments", async () => {
    const result = await new Probe().callTool(
      { server: "db", tool: "echo", args: { text: "hi" } },
      context(),
    );
    assert.deepEqual(result.structuredContent, { said: "hi" });
    assert.deepEqual(result.content, [{ type: "text", text: '{"said":"hi"}' }]);
  });

  test("an unknown tool names the backend, says why when there is more to say, and lists the tools", async () => {
    const backend = new Probe();
    await assert.rejects(backend.callTool({ server: "db", tool: "nope", args: {} }, context()), {
      code: "unknown_tool",
      message: 'Backend "db" (probe) has no tool "nope". Its tools are echo.',
    });
    await assert.rejects(backend.callTool({ server: "db", tool: "drop", args: {} }, context()), {
      code: "unknown_tool",
      message:
        'Backend "db" (probe) has no tool "drop". It writes, and this backend is read-only. Its tools are echo.',
    });
    await assert.rejects(new Probe([]).callTool({ server: "db", tool: "x", args: {} }, context()), {
      message: 'Backend "db" (probe) has no tool "x". It has no tools.',
    });
  });

  test("arguments that do not fit say which and where, on one line", async () => {
    await assert.rejects(
      new Probe().callTool({ server: "db", tool: "echo", args: { text: 1, extra: true } }, context()),
      (error: unknown) => {
        assert.ok(error instanceof GatewayError);
        assert.equal(error.code, "invalid_arguments");
        assert.match(
          error.message,
          /^Invalid arguments for tool "echo" of backend "db" \(probe\): text: .+; /,
        );
        assert.match(error.message, /See the tool's inputSchema\.$/);
        assert.deepEqual(error.data, { server: "db", tool: "echo" });
        return true;
      },
    );
  });

  test("a tools-only backend asked for a resource or a prompt says to call its tools", async () => {
    const backend = new Probe();
    await assert.rejects(backend.readResource("file:///x"), {
      code: "unknown_resource",
      message: /call its tools/,
    });
    await assert.rejects(backend.getPrompt("p"), { code: "unknown_prompt", message: /call its tools/ });
  });

  test("failures: a refusal the model can act on is an isError result; what the pipeline must see is thrown", () => {
    const refused = failureResult("fetch", new GatewayError("forbidden", "out of scope"));
    assert.equal(refused.isError, true);
    for (const code of ["timeout", "cancelled", "backend_unavailable", "circuit_open"] as const) {
      assert.throws(() => failureResult("fetch", new GatewayError(code, "x")), { code });
    }
    assert.throws(() => failureResult("fetch", new Error("a bug")), /a bug/);
  });

  test("call signals: the work stops when the caller does", () => {
    const caller = new AbortController();
    const signals = callSignals(caller.signal, 60_000);
    assert.equal(signals.any.aborted, false);
    caller.abort();
    assert.equal(signals.any.aborted, true);
    assert.equal(signals.timeout.aborted, false);
  });
});
