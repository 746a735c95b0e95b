/**
 * The policy steps of a call are events on its span, as the README says: a cache miss and hit, a
 * rate limit that waits or refuses, a circuit breaker that opens and then refuses, a retry, a
 * timeout and the fallback that answered for it. A `Gateway` built in process with tracing on and an
 * in-memory span exporter, in front of a real backend process (test/fixtures/flaky-server.ts, whose
 * `fail_next` arms failures).
 */
import assert from "node:assert/strict";
import { join } from "node:path";
import { after, before, describe, test } from "node:test";
import { InMemorySpanExporter, type ReadableSpan } from "@opentelemetry/sdk-trace-base";
import { validateConfig } from "../../src/config/validate.ts";
import { Gateway } from "../../src/gateway/gateway.ts";
import { createLogger, type LogLevel } from "../../src/observability/logger.ts";
import { ROOT } from "../support/gateway-process.ts";

const FLAKY = join(ROOT, "test/fixtures/flaky-server.ts");
const CONTROL = { circuitBreaker: false, retry: false, cache: false, rateLimit: false, fallback: false };

const config = validateConfig(
  {
    mcpServers: {
      fx: { command: process.execPath, args: ["--import", "tsx", FLAKY], cwd: ROOT },
    },
    observability: { tracing: { enabled: true } },
    toolPolicies: {
      fx__stats: CONTROL,
      fx__fail_next: CONTROL,
      fx__lookup: { cache: { ttlMs: 60_000 } },
      // One token, then one every 100 ms: the second call waits its turn.
      fx__read: { rateLimit: { capacity: 1, refillPerSecond: 10, mode: "wait", maxWaitMs: 5_000 } },
      fx__ping: { rateLimit: { capacity: 1, refillPerMinute: 1 } },
      fx__get_user: { retry: { maxAttempts: 3, baseDelayMs: 5, jitter: "none", budget: false } },
      fx__backup: { circuitBreaker: { consecutiveFailures: 1, openMs: 60_000 } },
      fx__sleep: { timeout: 200, fallback: { chain: [{ static: { text: "from the fallback" } }] } },
    },
  },
  { source: "policy span events test" },
);

const exporter = new InMemorySpanExporter();
let gateway: Gateway;

before(async () => {
  const logger = createLogger({ level: (process.env.TEST_LOG_LEVEL ?? "silent") as LogLevel });
  gateway = new Gateway(config, logger, undefined, { spanExporter: exporter });
  await gateway.start();
  assert.equal(gateway.backends().find((b) => b.name === "fx")?.state, "up", "the backend is up");
});

after(async () => {
  await gateway?.close();
});

/**
 * Calls a tool and returns the events of its span (the span of that call, and of no other). A call
 * that fails is fine: its span is what the test reads.
 */
async function eventsOf(name: string, args: Record<string, unknown> = {}) {
  exporter.reset();
  await gateway.callTool(name, args).catch(() => undefined);
  const spans = exporter.getFinishedSpans().filter((s) => s.name === `tools/call ${name}`);
  assert.equal(spans.length, 1, `one span for ${name}`);
  const span = spans[0] as ReadableSpan;
  return span.events.map((e) => ({ name: e.name, attributes: e.attributes ?? {} }));
}

const names = (events: { name: string }[]) => events.map((e) => e.name);

describe("policy steps are events on the call's span", () => {
  test("cache: a miss, then a hit", async () => {
    const miss = await eventsOf("fx__lookup", { key: "k" });
    assert.ok(names(miss).includes("cache.miss"), `a miss: ${names(miss)}`);
    const hit = await eventsOf("fx__lookup", { key: "k" });
    assert.deepEqual(names(hit), ["cache.hit"]);
    assert.equal(hit[0]?.attributes["switchboard.tool"], "fx__lookup");
  });

  test("rate limit: a call that waited its turn, and one refused", async () => {
    await eventsOf("fx__read", { key: "a" });
    const waited = await eventsOf("fx__read", { key: "b" });
    assert.deepEqual(names(waited), ["rate_limit.waited"]);
    assert.equal(waited[0]?.attributes["switchboard.rate_limit.scope"], "tool");
    assert.ok(Number(waited[0]?.attributes["switchboard.rate_limit.wait_ms"]) > 0);

    await eventsOf("fx__ping");
    const refused = await eventsOf("fx__ping");
    assert.deepEqual(names(refused), ["rate_limit.rejected"]);
  });

  test("retry: the attempt that follows a failure", async () => {
    await gateway.callTool("fx__fail_next", { tool: "get_user", count: 1 });
    const retried = await eventsOf("fx__get_user", { id: "1" });
    assert.deepEqual(names(retried), ["retry.attempt"]);
    assert.equal(retried[0]?.attributes["switchboard.retry.attempt"], 2);
  });

  test("circuit breaker: the failure that opens it, then a call it refuses", async () => {
    await gateway.callTool("fx__fail_next", { tool: "backup", count: 1 });
    const opened = await eventsOf("fx__backup");
    // The backend's own error is an unexpected one, recorded as the span's exception.
    assert.deepEqual(names(opened), ["circuit_breaker.open", "exception"]);
    const refused = await eventsOf("fx__backup");
    assert.deepEqual(names(refused), ["circuit_breaker.rejected"]);
    assert.equal(refused[0]?.attributes["switchboard.circuit_breaker.state"], "open");
  });

  test("timeout, then the fallback that answered", async () => {
    const events = await eventsOf("fx__sleep", { ms: 5_000 });
    assert.deepEqual(names(events), ["timeout", "fallback.answered"]);
    assert.equal(events[0]?.attributes["switchboard.timeout_ms"], 200);
    assert.equal(events[1]?.attributes["switchboard.source"], "fallback:1:static");
  });
});
