import assert from "node:assert/strict";
import { EventEmitter } from "node:events";
import { performance } from "node:perf_hooks";
import { afterEach, describe, mock, test } from "node:test";
import { CircuitOpen, GatewayError, RateLimited } from "../../../src/core/errors.ts";
import {
  CALL_OUTCOMES,
  createMetrics,
  outcomeOfError,
  outcomeOfResult,
} from "../../../src/observability/metrics.ts";
import type { PolicyEventMap } from "../../../src/policies/types.ts";

/** The samples of a Prometheus text exposition, keyed `name{k="v",…}` with labels sorted by name. */
function parse(text: string): Map<string, number> {
  const samples = new Map<string, number>();
  for (const line of text.split("\n")) {
    if (line === "" || line.startsWith("#")) continue;
    const match = /^([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(.*)\})? (\S+)$/.exec(line);
    assert.ok(match, `not a sample line: ${line}`);
    const [, name, labelText = "", value = ""] = match;
    const labels: [string, string][] = [];
    for (const [, key = "", raw = ""] of labelText.matchAll(
      /([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"/g,
    )) {
      labels.push([key, raw.replace(/\\(.)/g, (_, c: string) => (c === "n" ? "\n" : c))]);
    }
    const key = sampleKey(name as string, Object.fromEntries(labels));
    assert.ok(!samples.has(key), `duplicate sample ${key}`);
    samples.set(key, value === "+Inf" ? Number.POSITIVE_INFINITY : Number(value));
  }
  return samples;
}

function sampleKey(name: string, labels: Record<string, string> = {}): string {
  const parts = Object.keys(labels)
    .sort()
    .map((key) => `${key}="${labels[key]}"`);
  return parts.length === 0 ? name : `${name}{${parts.join(",")}}`;
}

async function scrape(metrics: { render(): Promise<string> }) {
  const samples = parse(await metrics.render());
  return {
    samples,
    value(name: string, labels?: Record<string, string>): number | undefined {
      return samples.get(sampleKey(name, labels));
    },
  };
}

/** A performance.now that returns the given times in order. */
function clockOf(...times: number[]) {
  let i = 0;
  return mock.method(performance, "now", () => times[Math.min(i++, times.length - 1)] as number);
}

describe("metrics", () => {
  afterEach(() => mock.restoreAll());

  test("counts calls by outcome, measures their duration and tracks calls in flight", async () => {
    const metrics = createMetrics({ prefix: "t_", defaultMetrics: false });
    const query = { server: "db", tool: "db__query", kind: "tools/call" };

    clockOf(0, 3); // 3 ms
    const first = metrics.callStarted("db", "db__query");
    let s = await scrape(metrics);
    assert.equal(s.value("t_calls_in_flight", { server: "db" }), 1);
    assert.equal(first("ok", "backend"), 3);
    assert.equal(first("error"), 3, "a second end changes nothing");

    clockOf(10, 10.4); // 0.4 ms
    metrics.callStarted("db", "db__query")("ok", "cache");
    clockOf(20, 2020); // 2 s
    metrics.callStarted("db", "db__query")("tool_error");
    clockOf(30, 31);
    metrics.callStarted("db", "db__list")("ok", "fallback:1:tool:db__backup");
    clockOf(40, 41);
    metrics.callStarted("web", "web__get")("rate_limited");

    s = await scrape(metrics);
    assert.equal(s.value("t_calls_in_flight", { server: "db" }), 0);
    assert.equal(s.value("t_calls_total", { ...query, outcome: "ok" }), 2);
    assert.equal(s.value("t_calls_total", { ...query, outcome: "tool_error" }), 1);
    assert.equal(s.value("t_calls_total", { ...query, outcome: "error" }), undefined);
    assert.equal(
      s.value("t_calls_total", { server: "db", tool: "db__list", outcome: "ok", kind: "tools/call" }),
      1,
    );
    assert.equal(
      s.value("t_calls_total", {
        server: "web",
        tool: "web__get",
        outcome: "rate_limited",
        kind: "tools/call",
      }),
      1,
    );

    const ok = { ...query, outcome: "ok" };
    assert.equal(s.value("t_call_duration_seconds_count", ok), 2);
    assert.ok(Math.abs((s.value("t_call_duration_seconds_sum", ok) ?? 0) - 0.0034) < 1e-9);
    assert.equal(s.value("t_call_duration_seconds_bucket", { ...ok, le: "0.0005" }), 1);
    assert.equal(s.value("t_call_duration_seconds_bucket", { ...ok, le: "0.0025" }), 1);
    assert.equal(s.value("t_call_duration_seconds_bucket", { ...ok, le: "0.005" }), 2);
    assert.equal(s.value("t_call_duration_seconds_bucket", { ...ok, le: "+Inf" }), 2);
    const failed = { ...query, outcome: "tool_error" };
    assert.equal(s.value("t_call_duration_seconds_bucket", { ...failed, le: "1" }), 0);
    assert.equal(s.value("t_call_duration_seconds_bucket", { ...failed, le: "2.5" }), 1);
    assert.equal(s.value("t_call_duration_seconds_count", failed), 1);

    const served = { server: "db", tool: "db__query" };
    assert.equal(s.value("t_calls_served_total", { ...served, source: "backend" }), 1);
    assert.equal(s.value("t_calls_served_total", { ...served, source: "cache" }), 1);
    assert.equal(s.value("t_calls_served_total", { server: "db", tool: "db__list", source: "fallback" }), 1);
  });

  test("counts the policy events of a subscribed runtime until unsubscribed", async () => {
    const metrics = createMetrics({ prefix: "t_", defaultMetrics: false });
    const runtime = new EventEmitter<PolicyEventMap>();
    const unsubscribe = metrics.subscribe(runtime);
    const tool = { server: "db", tool: "db__query" };

    runtime.emit("breaker", { server: "db", from: "closed", to: "open", reason: "5 failures" });
    let s = await scrape(metrics);
    assert.equal(s.value("t_breaker_state", { server: "db" }), 2);
    runtime.emit("breaker", { server: "db", from: "open", to: "half-open", reason: "probe" });
    for (let i = 0; i < 2; i++) {
      runtime.emit("limit", { ...tool, scope: "principal", key: "k", outcome: "rejected", retryAfterMs: 5 });
    }
    runtime.emit("limit", { ...tool, scope: "global", key: "k", outcome: "waited", retryAfterMs: 5 });
    runtime.emit("cache", { ...tool, outcome: "hit" });
    runtime.emit("cache", { ...tool, outcome: "hit" });
    runtime.emit("cache", { ...tool, outcome: "miss" });
    runtime.emit("cache", { server: "db", outcome: "invalidated", tags: ["s:db"], count: 3 });
    runtime.emit("cache", { ...tool, outcome: "invalidated", tags: ["t:db:query"], count: 2 });
    runtime.emit("retry", { ...tool, attempt: 2, delayMs: 10, reason: "timeout", outcome: "retrying" });
    runtime.emit("retry", { ...tool, attempt: 3, delayMs: 20, reason: "timeout", outcome: "retrying" });
    runtime.emit("retry", { ...tool, attempt: 2, delayMs: 0, reason: "x", outcome: "budget_exhausted" });
    runtime.emit("fallback", { ...tool, outcome: "answered", source: "cache", reasons: ["down"] });
    runtime.emit("bulkhead", { ...tool, outcome: "rejected", running: 2, queued: 1 });

    s = await scrape(metrics);
    assert.equal(s.value("t_breaker_state", { server: "db" }), 1);
    assert.equal(s.value("t_breaker_transitions_total", { server: "db", to: "open" }), 1);
    assert.equal(s.value("t_breaker_transitions_total", { server: "db", to: "half-open" }), 1);
    assert.equal(s.value("t_rate_limit_rejections_total", { ...tool, scope: "principal" }), 2);
    assert.equal(s.value("t_rate_limit_rejections_total", { ...tool, scope: "global" }), undefined);
    assert.equal(s.value("t_rate_limit_waits_total", { ...tool, scope: "global" }), 1);
    assert.equal(s.value("t_cache_events_total", { ...tool, outcome: "hit" }), 2);
    assert.equal(s.value("t_cache_events_total", { ...tool, outcome: "miss" }), 1);
    assert.equal(s.value("t_cache_events_total", { server: "db", tool: "", outcome: "invalidated" }), 1);
    assert.equal(s.value("t_cache_invalidated_entries_total", { server: "db" }), 5);
    assert.equal(s.value("t_retries_total", tool), 2);
    assert.equal(s.value("t_retry_budget_exhausted_total", tool), 1);
    assert.equal(s.value("t_fallbacks_total", { ...tool, outcome: "answered" }), 1);
    assert.equal(s.value("t_bulkhead_events_total", { ...tool, outcome: "rejected" }), 1);

    unsubscribe();
    assert.equal(runtime.listenerCount("cache"), 0);
    runtime.emit("cache", { ...tool, outcome: "hit" });
    s = await scrape(metrics);
    assert.equal(s.value("t_cache_events_total", { ...tool, outcome: "hit" }), 2);
  });

  test("backend, breaker, store and pool gauges; pools and the store are read at scrape time", async () => {
    const metrics = createMetrics({ defaultMetrics: false });
    metrics.setBackendUp("db", true);
    metrics.setBackendUp("web", false);
    metrics.backendRestarted("web");
    metrics.backendRestarted("web");
    metrics.setBreakerState("web", "closed");
    let pool = { total: 4, idle: 1, waiting: 0, max: 10 };
    const stopPool = metrics.registerPoolStats("db", () => pool);
    metrics.registerPoolStats("broken", () => {
      throw new Error("pool closed");
    });
    let storeStatus: "healthy" | "degraded" = "healthy";
    metrics.registerStoreHealth(() => ({ status: storeStatus }));

    let s = await scrape(metrics);
    assert.equal(s.value("switchboard_backend_up", { server: "db" }), 1);
    assert.equal(s.value("switchboard_backend_up", { server: "web" }), 0);
    assert.equal(s.value("switchboard_backend_restarts_total", { server: "web" }), 2);
    assert.equal(s.value("switchboard_breaker_state", { server: "web" }), 0);
    assert.equal(s.value("switchboard_pg_pool_connections", { server: "db", state: "total" }), 4);
    assert.equal(s.value("switchboard_pg_pool_connections", { server: "db", state: "idle" }), 1);
    assert.equal(s.value("switchboard_pg_pool_connections", { server: "db", state: "waiting" }), 0);
    assert.equal(s.value("switchboard_pg_pool_connections", { server: "db", state: "max" }), 10);
    assert.equal(s.value("switchboard_store_up"), 1);

    pool = { total: 10, idle: 0, waiting: 3, max: 10 };
    storeStatus = "degraded";
    s = await scrape(metrics);
    assert.equal(s.value("switchboard_pg_pool_connections", { server: "db", state: "waiting" }), 3);
    assert.equal(s.value("switchboard_store_up"), 0);

    stopPool();
    metrics.forgetServer("web");
    s = await scrape(metrics);
    assert.equal(s.value("switchboard_pg_pool_connections", { server: "db", state: "total" }), undefined);
    assert.equal(s.value("switchboard_backend_up", { server: "web" }), undefined);
    assert.equal(s.value("switchboard_backend_up", { server: "db" }), 1);
    assert.equal(s.value("switchboard_backend_restarts_total", { server: "web" }), 2, "counters stay");
  });

  test("gateways in one process keep separate counts; process metrics are served once by each", async () => {
    const a = createMetrics();
    const b = createMetrics();
    a.callStarted("db", "db__query")("ok");
    a.callStarted("db", "db__query")("ok");
    b.callStarted("db", "db__query")("ok");
    const [sa, sb] = [await scrape(a), await scrape(b)];
    const labels = { server: "db", tool: "db__query", outcome: "ok", kind: "tools/call" };
    assert.equal(sa.value("switchboard_calls_total", labels), 2);
    assert.equal(sb.value("switchboard_calls_total", labels), 1);
    for (const s of [sa, sb]) {
      assert.ok(s.samples.has("process_cpu_user_seconds_total"), "Node's process metrics, unprefixed");
      assert.ok([...s.samples.keys()].some((key) => key.startsWith("nodejs_heap_size_used_bytes")));
    }
    assert.match(a.contentType, /^text\/plain; version=0\.0\.4/);

    const bare = await scrape(createMetrics({ defaultMetrics: false }));
    assert.ok(!bare.samples.has("process_cpu_user_seconds_total"));
  });

  test("outcomes of results and errors", () => {
    assert.equal(outcomeOfResult({ content: [] }), "ok");
    assert.equal(outcomeOfResult({ content: [], isError: true }), "tool_error");
    const coded = (code: string) => ({
      content: [],
      isError: true,
      _meta: { "switchboard/error": { code, server: "db" } },
    });
    assert.equal(outcomeOfResult(coded("backend_error")), "tool_error");
    assert.equal(outcomeOfResult(coded("timeout")), "timeout");
    assert.equal(outcomeOfResult(coded("circuit_open")), "circuit_open");
    assert.equal(outcomeOfResult(coded("backend_unavailable")), "unavailable");
    assert.equal(outcomeOfResult(coded("internal")), "error");

    assert.equal(outcomeOfError(new RateLimited("slow down", 100)), "rate_limited");
    assert.equal(outcomeOfError(new CircuitOpen("open", Date.now())), "circuit_open");
    assert.equal(outcomeOfError(new GatewayError("forbidden", "no")), "denied");
    assert.equal(outcomeOfError(new GatewayError("invalid_arguments", "bad")), "invalid");
    assert.equal(outcomeOfError(new GatewayError("cancelled", "bye")), "cancelled");
    assert.equal(outcomeOfError(new GatewayError("bulkhead_full", "full")), "bulkhead_full");
    assert.equal(outcomeOfError(new Error("boom")), "error");
    assert.equal(outcomeOfResult(coded("store_unavailable")), "unavailable");
    assert.equal(new Set(CALL_OUTCOMES).size, CALL_OUTCOMES.length);
  });
});
