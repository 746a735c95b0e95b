/**
 * Policy events become events of the span of the call they belong to (tracing.ts `withSpan` and
 * `subscribe`), whatever else runs at the same time; events outside any call, and calls whose span
 * is not recorded, leave no trace.
 */
import assert from "node:assert/strict";
import { EventEmitter } from "node:events";
import { describe, test } from "node:test";
import { InMemorySpanExporter } from "@opentelemetry/sdk-trace-base";
import type { PolicyEvent } from "../../../src/observability/policy-events.ts";
import { policySpanEvent } from "../../../src/observability/policy-spans.ts";
import { createTracing, NOOP_TRACING } from "../../../src/observability/tracing.ts";
import type { PolicyEventMap } from "../../../src/policies/types.ts";

function setup(sampleRatio = 1) {
  const exporter = new InMemorySpanExporter();
  const tracing = createTracing({ enabled: true, sampleRatio }, { exporter });
  const runtime = new EventEmitter<PolicyEventMap>();
  const unsubscribe = tracing.subscribe(runtime);
  const eventsOf = (tool: string) =>
    exporter
      .getFinishedSpans()
      .filter((s) => s.name === `tools/call ${tool}`)
      .flatMap((s) => s.events.map((e) => ({ name: e.name, attributes: e.attributes })));
  return { exporter, tracing, runtime, unsubscribe, eventsOf };
}

const hit = (tool: string) => ({ server: "db", tool, outcome: "hit" as const });

describe("policy events on call spans", () => {
  test("two calls in flight at once each get their own events, across awaits and timers", async () => {
    const { tracing, runtime, eventsOf } = setup();
    const call = async (tool: string, delayMs: number) => {
      const span = tracing.startCallSpan(tool, "db", tool, {});
      await tracing.withSpan(span, async () => {
        runtime.emit("cache", { server: "db", tool, outcome: "miss" });
        await new Promise((resolve) => setTimeout(resolve, delayMs));
        runtime.emit("retry", {
          server: "db",
          tool,
          attempt: 2,
          delayMs: 5,
          reason: "x".repeat(2_000),
          outcome: "retrying",
        });
      });
      span.end("ok");
    };
    await Promise.all([call("db__a", 20), call("db__b", 5)]);
    for (const tool of ["db__a", "db__b"]) {
      const events = eventsOf(tool);
      assert.deepEqual(
        events.map((e) => e.name),
        ["cache.miss", "retry.attempt"],
      );
      assert.equal(events[0]?.attributes?.["switchboard.tool"], tool);
      assert.equal(events[1]?.attributes?.["switchboard.retry.attempt"], 2);
      assert.equal(
        String(events[1]?.attributes?.["switchboard.retry.reason"]).length,
        500,
        "reasons are capped",
      );
    }
  });

  test("a nested call (a fallback's) has its own span; the outer one resumes after it", async () => {
    const { tracing, runtime, eventsOf } = setup();
    const outer = tracing.startCallSpan("db__a", "db", "a", {});
    await tracing.withSpan(outer, async () => {
      const inner = tracing.startCallSpan("db__b", "db", "b", {});
      await tracing.withSpan(inner, async () => runtime.emit("cache", hit("db__b")));
      inner.end("ok");
      runtime.emit("fallback", {
        server: "db",
        tool: "db__a",
        outcome: "answered",
        source: "fallback:1:tool:db__b",
        reasons: ["timeout"],
      });
    });
    outer.end("ok");
    assert.deepEqual(
      eventsOf("db__b").map((e) => e.name),
      ["cache.hit"],
    );
    const outerEvents = eventsOf("db__a");
    assert.deepEqual(
      outerEvents.map((e) => e.name),
      ["fallback.answered"],
    );
    assert.deepEqual(outerEvents[0]?.attributes?.["switchboard.fallback.reasons"], ["timeout"]);
  });

  test("an event outside any call, an unsampled call, and events after unsubscribing are not traced", async () => {
    const { tracing, runtime, exporter, unsubscribe, eventsOf } = setup(0);
    runtime.emit("cache", { server: "db", outcome: "invalidated", count: 3 });
    const unsampled = tracing.startCallSpan("db__a", "db", "a", {});
    assert.equal(unsampled.recording, false);
    tracing.withSpan(unsampled, () => runtime.emit("cache", hit("db__a")));
    unsampled.end("ok");
    assert.deepEqual(exporter.getFinishedSpans(), []);

    const sampled = setup();
    sampled.unsubscribe();
    const span = sampled.tracing.startCallSpan("db__a", "db", "a", {});
    sampled.tracing.withSpan(span, () => sampled.runtime.emit("cache", hit("db__a")));
    span.end("ok");
    assert.deepEqual(sampled.eventsOf("db__a"), []);
    unsubscribe();
    assert.deepEqual(eventsOf("db__a"), []);
  });

  test("a limit that can never allow the call has no wait attribute; tracing off runs the call as is", () => {
    const { tracing, runtime, eventsOf } = setup();
    const span = tracing.startCallSpan("db__a", "db", "a", {});
    tracing.withSpan(span, () =>
      runtime.emit("limit", {
        server: "db",
        tool: "db__a",
        scope: "tool",
        key: "rl:tool:db__a:1/0",
        outcome: "rejected",
        retryAfterMs: Number.POSITIVE_INFINITY,
      }),
    );
    span.end("rate_limited");
    const [event] = eventsOf("db__a");
    assert.equal(event?.name, "rate_limit.rejected");
    assert.equal(event?.attributes?.["switchboard.rate_limit.wait_ms"], undefined);

    assert.equal(
      NOOP_TRACING.withSpan(NOOP_TRACING.startCallSpan("a", "s", "t", {}), () => 42),
      42,
    );
    assert.equal(typeof NOOP_TRACING.subscribe(new EventEmitter<PolicyEventMap>()), "function");
  });
});

describe("the span event of each policy event", () => {
  test("names are <policy>.<what happened>, as the README's table lists them", () => {
    const base = { server: "db", tool: "db__a" };
    const cases: [PolicyEvent, string][] = [
      [{ event: "cache", payload: { ...base, outcome: "hit" } }, "cache.hit"],
      [{ event: "cache", payload: { ...base, outcome: "miss" } }, "cache.miss"],
      [{ event: "cache", payload: { ...base, outcome: "coalesced" } }, "cache.coalesced"],
      [{ event: "cache", payload: { ...base, outcome: "stored" } }, "cache.stored"],
      [{ event: "cache", payload: { ...base, outcome: "skipped", reason: "too big" } }, "cache.skipped"],
      [
        { event: "limit", payload: { ...base, scope: "tool", key: "k", outcome: "waited", retryAfterMs: 5 } },
        "rate_limit.waited",
      ],
      [
        {
          event: "limit",
          payload: { ...base, scope: "tool", key: "k", outcome: "rejected", retryAfterMs: 5 },
        },
        "rate_limit.rejected",
      ],
      [
        {
          event: "breaker",
          payload: { server: "db", from: "closed", to: "open", reason: "5 failures", retryAt: 0 },
        },
        "circuit_breaker.open",
      ],
      [
        {
          event: "breaker",
          payload: { server: "db", from: "open", to: "half-open", reason: "open for 30 s" },
        },
        "circuit_breaker.half-open",
      ],
      [
        { event: "breaker", payload: { server: "db", from: "half-open", to: "closed", reason: "trial ok" } },
        "circuit_breaker.closed",
      ],
      [
        { event: "breakerRejected", payload: { ...base, state: "open", retryAt: 1_000 } },
        "circuit_breaker.rejected",
      ],
      [
        { event: "retry", payload: { ...base, attempt: 2, delayMs: 5, reason: "x", outcome: "retrying" } },
        "retry.attempt",
      ],
      [
        {
          event: "retry",
          payload: { ...base, attempt: 2, delayMs: 0, reason: "x", outcome: "budget_exhausted" },
        },
        "retry.budget_exhausted",
      ],
      [{ event: "timeout", payload: { ...base, timeoutMs: 100 } }, "timeout"],
      [
        {
          event: "fallback",
          payload: { ...base, outcome: "answered", source: "fallback:1:static", reasons: [] },
        },
        "fallback.answered",
      ],
      [
        { event: "fallback", payload: { ...base, outcome: "exhausted", reasons: ["a", "b"] } },
        "fallback.exhausted",
      ],
      [
        { event: "bulkhead", payload: { ...base, outcome: "queued", running: 1, queued: 1 } },
        "bulkhead.queued",
      ],
      [
        { event: "bulkhead", payload: { ...base, outcome: "rejected", running: 1, queued: 0 } },
        "bulkhead.rejected",
      ],
    ];
    for (const [event, name] of cases) {
      const spanEvent = policySpanEvent(event);
      assert.equal(spanEvent.name, name);
      assert.equal(spanEvent.attributes["switchboard.server"], "db");
    }
    const rejected = policySpanEvent(cases[10]?.[0] as PolicyEvent);
    assert.equal(rejected.attributes["switchboard.circuit_breaker.retry_at"], new Date(1_000).toISOString());
  });
});
