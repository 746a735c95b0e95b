import assert from "node:assert/strict";
import { createServer } from "node:http";
import type { AddressInfo } from "node:net";
import { describe, test } from "node:test";
import { SpanKind, SpanStatusCode, trace } from "@opentelemetry/api";
import { InMemorySpanExporter, type ReadableSpan } from "@opentelemetry/sdk-trace-base";
import { RateLimited } from "../../../src/core/errors.ts";
import { createTracing, NOOP_TRACING } from "../../../src/observability/tracing.ts";
import { NOTES } from "../../../src/policies/types.ts";

const TRACE_ID = "0af7651916cd43dd8448eb211c80319c";
const PARENT_ID = "b7ad6b7169203331";
const TRACEPARENT = `00-${TRACE_ID}-${PARENT_ID}-01`;

function setup(settings: { sampleRatio?: number } = {}) {
  const exporter = new InMemorySpanExporter();
  const tracing = createTracing({ enabled: true, ...settings }, { exporter });
  return { exporter, tracing };
}

function only(exporter: InMemorySpanExporter): ReadableSpan {
  const spans = exporter.getFinishedSpans();
  assert.equal(spans.length, 1, `expected one span, got ${spans.map((s) => s.name).join(", ")}`);
  return spans[0] as ReadableSpan;
}

describe("tracing", () => {
  test("a call continues the trace in _meta and passes its own span on", async () => {
    const { exporter, tracing } = setup();
    const span = tracing.startCallSpan("db__query", "db", "query", {
      traceparent: TRACEPARENT,
      tracestate: "vendor=abc",
    });
    assert.equal(span.recording, true);
    const carrier = span.inject();
    span.end("ok");

    const finished = only(exporter);
    assert.equal(finished.name, "tools/call db__query");
    assert.equal(finished.kind, SpanKind.SERVER);
    assert.equal(finished.spanContext().traceId, TRACE_ID);
    assert.equal(finished.parentSpanContext?.spanId, PARENT_ID);
    assert.equal(finished.parentSpanContext?.isRemote, true);
    assert.deepEqual(finished.attributes, {
      "mcp.method.name": "tools/call",
      "gen_ai.operation.name": "execute_tool",
      "gen_ai.tool.name": "db__query",
      "switchboard.server": "db",
      "switchboard.tool": "query",
      "switchboard.outcome": "ok",
    });
    assert.equal(finished.status.code, SpanStatusCode.UNSET);
    assert.equal(finished.resource.attributes["service.name"], "switchboard");
    assert.deepEqual(carrier, {
      traceparent: `00-${TRACE_ID}-${finished.spanContext().spanId}-01`,
      tracestate: "vendor=abc",
    });
    await tracing.shutdown();
  });

  test("the HTTP headers give the parent when _meta has none; _meta wins when both do", () => {
    const { exporter, tracing } = setup();
    const otherParent = "00-11111111111111111111111111111111-2222222222222222-01";
    tracing.startCallSpan("a__t", "a", "t", {}, { traceparent: TRACEPARENT, host: "x" }).end("ok");
    tracing
      .startCallSpan("a__t", "a", "t", { traceparent: TRACEPARENT }, { traceparent: otherParent })
      .end("ok");
    tracing.startCallSpan("a__t", "a", "t", {}, { traceparent: [TRACEPARENT] }).end("ok");
    const spans = exporter.getFinishedSpans();
    assert.equal(spans.length, 3);
    for (const span of spans) {
      assert.equal(span.spanContext().traceId, TRACE_ID);
      assert.equal(span.parentSpanContext?.spanId, PARENT_ID);
    }
  });

  test("without a valid trace context, a call starts a new trace", () => {
    const { exporter, tracing } = setup();
    tracing.startCallSpan("a__t", "a", "t", {}).end("ok");
    tracing.startCallSpan("a__t", "a", "t", { traceparent: "00-zzz-yyy-01" }).end("ok");
    tracing.startCallSpan("a__t", "a", "t", { traceparent: 42 }).end("ok");
    const spans = exporter.getFinishedSpans();
    assert.equal(spans.length, 3);
    for (const span of spans) assert.equal(span.parentSpanContext, undefined);
    assert.equal(new Set(spans.map((s) => s.spanContext().traceId)).size, 3);
  });

  test("a failed call sets the error status and type, once", () => {
    const { exporter, tracing } = setup();
    const span = tracing.startCallSpan("web__get", "web", "get", {});
    span.event("rate limited", { "switchboard.limit.scope": "principal" });
    span.end("rate_limited", new RateLimited("Too many calls", 500));
    span.end("ok");
    const finished = only(exporter);
    assert.equal(finished.status.code, SpanStatusCode.ERROR);
    assert.equal(finished.status.message, "Too many calls");
    assert.equal(finished.attributes["error.type"], "rate_limited");
    assert.equal(finished.attributes["switchboard.outcome"], "rate_limited");
    assert.deepEqual(
      finished.events.map((e) => [e.name, e.attributes]),
      [["rate limited", { "switchboard.limit.scope": "principal" }]],
      "an expected rejection records no exception",
    );

    exporter.reset();
    const crash = tracing.startCallSpan("web__get", "web", "get", {});
    crash.end("error", new Error("boom"));
    const crashed = only(exporter);
    assert.equal(crashed.attributes["error.type"], "error");
    assert.deepEqual(
      crashed.events.map((e) => e.name),
      ["exception"],
    );

    exporter.reset();
    tracing.startCallSpan("web__get", "web", "get", {}).end("tool_error");
    assert.equal(only(exporter).status.message, "tool_error");
  });

  test("the notes of the policies become attributes (a fallback's reasons are its policy event's)", () => {
    const { exporter, tracing } = setup();
    const span = tracing.startCallSpan("db__query", "db", "query", {});
    span.recordNotes(
      new Map<string, unknown>([
        [NOTES.cache, "miss"],
        [NOTES.source, "fallback:1:tool:db__replica"],
        [NOTES.retries, 2],
        [NOTES.queuedMs, 15],
        [NOTES.fallbackReasons, ["timeout", "circuit open"]],
      ]),
    );
    span.end("ok");
    const finished = only(exporter);
    assert.equal(finished.attributes["switchboard.cache"], "miss");
    assert.equal(finished.attributes["switchboard.source"], "fallback:1:tool:db__replica");
    assert.equal(finished.attributes["switchboard.retries"], 2);
    assert.equal(finished.attributes["switchboard.queued_ms"], 15);
    assert.deepEqual(finished.events, [], "no event from the notes: fallback.answered carries the reasons");
  });

  test("a child span for the backend request is a CLIENT span under the call", () => {
    const { exporter, tracing } = setup();
    const call = tracing.startCallSpan("db__query", "db", "query", { traceparent: TRACEPARENT });
    const backend = call.startChild("backend db", { "server.address": "db.internal" });
    const carrier = backend.inject();
    backend.end("ok");
    call.end("ok");
    const [child, parent] = exporter.getFinishedSpans();
    assert.ok(child && parent);
    assert.equal(child.name, "backend db");
    assert.equal(child.kind, SpanKind.CLIENT);
    assert.equal(child.parentSpanContext?.spanId, parent.spanContext().spanId);
    assert.equal(child.spanContext().traceId, TRACE_ID);
    assert.equal(child.attributes["server.address"], "db.internal");
    assert.equal(carrier?.traceparent, `00-${TRACE_ID}-${child.spanContext().spanId}-01`);
  });

  test("sampling: a caller's unsampled trace is followed, and propagated, but not recorded", () => {
    const { exporter, tracing } = setup();
    const span = tracing.startCallSpan("a__t", "a", "t", { traceparent: `00-${TRACE_ID}-${PARENT_ID}-00` });
    assert.equal(span.recording, false);
    const carrier = span.inject();
    span.end("ok");
    assert.equal(exporter.getFinishedSpans().length, 0);
    assert.match(carrier?.traceparent ?? "", new RegExp(`^00-${TRACE_ID}-[0-9a-f]{16}-00$`));

    const none = setup({ sampleRatio: 0 });
    const dropped = none.tracing.startCallSpan("a__t", "a", "t", {});
    dropped.end("ok");
    assert.equal(none.exporter.getFinishedSpans().length, 0);
    // A caller that asked for its trace is still recorded at ratio 0.
    none.tracing.startCallSpan("a__t", "a", "t", { traceparent: TRACEPARENT }).end("ok");
    assert.equal(none.exporter.getFinishedSpans().length, 1);
  });

  test("disabled tracing is one no-op: no spans, no context, nothing to pass on", async () => {
    const exporter = new InMemorySpanExporter();
    const tracing = createTracing({ enabled: false }, { exporter });
    assert.equal(tracing, NOOP_TRACING);
    assert.equal(createTracing({}), NOOP_TRACING, "off by default");
    const span = tracing.startCallSpan("a__t", "a", "t", { traceparent: TRACEPARENT });
    assert.equal(span, tracing.startCallSpan("b__u", "b", "u", {}), "the same object every call");
    assert.equal(span.recording, false);
    assert.equal(span.startChild("backend a"), span);
    span.event("x");
    span.recordNotes(new Map());
    span.end("error", new Error("x"));
    assert.equal(span.inject(), undefined);
    assert.equal(exporter.getFinishedSpans().length, 0);
    await tracing.shutdown();
  });

  test("gateways in one process trace separately and leave the global provider alone", async () => {
    const a = setup();
    const b = setup();
    a.tracing.startCallSpan("a__t", "a", "t", {}).end("ok");
    b.tracing.startCallSpan("b__t", "b", "t", {}).end("ok");
    assert.deepEqual(
      a.exporter.getFinishedSpans().map((s) => s.name),
      ["tools/call a__t"],
    );
    assert.deepEqual(
      b.exporter.getFinishedSpans().map((s) => s.name),
      ["tools/call b__t"],
    );
    const global = trace.getTracer("probe").startSpan("probe");
    assert.equal(global.isRecording(), false, "no global tracer provider was registered");
    global.end();
    await Promise.all([a.tracing.shutdown(), b.tracing.shutdown()]);
  });

  test("OTLP: spans reach the configured endpoint with its headers on shutdown", async () => {
    const received: { path?: string; apiKey?: string; body: string }[] = [];
    const collector = createServer((req, res) => {
      let body = "";
      req.setEncoding("utf8");
      req.on("data", (chunk: string) => {
        body += chunk;
      });
      req.on("end", () => {
        received.push({ path: req.url, apiKey: req.headers["x-api-key"] as string | undefined, body });
        res.writeHead(200, { "content-type": "application/json" }).end("{}");
      });
    });
    await new Promise<void>((resolve) => collector.listen(0, "127.0.0.1", resolve));
    try {
      const { port } = collector.address() as AddressInfo;
      const tracing = createTracing({
        enabled: true,
        serviceName: "gw-test",
        otlp: { url: `http://127.0.0.1:${port}/v1/traces`, headers: { "x-api-key": "k" } },
      });
      tracing.startCallSpan("db__query", "db", "query", { traceparent: TRACEPARENT }).end("ok");
      await tracing.shutdown();
      assert.equal(received.length, 1);
      assert.equal(received[0]?.path, "/v1/traces");
      assert.equal(received[0]?.apiKey, "k");
      assert.match(received[0]?.body ?? "", /tools\/call db__query/);
      assert.match(received[0]?.body ?? "", /gw-test/);
    } finally {
      collector.close();
    }
  });

  test("OTLP: a collector that is down fails no call and no shutdown", async () => {
    // Port 9 (discard) has no listener here: the export is refused.
    const errors: unknown[] = [];
    const tracing = createTracing(
      { enabled: true, otlp: { url: "http://127.0.0.1:9/v1/traces" } },
      { exportTimeoutMs: 200, onError: (error) => errors.push(error) },
    );
    tracing.startCallSpan("a__t", "a", "t", {}).end("ok");
    await tracing.shutdown();
    assert.equal(errors.length, 1);
    assert.match(String(errors[0]), /ECONNREFUSED/);
  });

  test("OTLP: a collector that hangs does not hold up shutdown beyond its timeout", async () => {
    let arrived: () => void = () => {};
    const requestArrived = new Promise<void>((resolve) => {
      arrived = resolve;
    });
    const collector = createServer(() => arrived()); // never answers
    await new Promise<void>((resolve) => collector.listen(0, "127.0.0.1", resolve));
    try {
      const { port } = collector.address() as AddressInfo;
      const errors: unknown[] = [];
      const tracing = createTracing(
        { enabled: true, otlp: { url: `http://127.0.0.1:${port}/v1/traces` } },
        { exportTimeoutMs: 400, onError: (error) => errors.push(error) },
      );
      tracing.startCallSpan("a__t", "a", "t", {}).end("ok");
      const shutdown = tracing.shutdown(50);
      await requestArrived;
      await shutdown;
      assert.equal(errors.length, 1);
      assert.match(String(errors[0]), /more than 50 ms/);
    } finally {
      collector.closeAllConnections();
      collector.close();
    }
  });
});
