/**
 * The call policies through the whole gateway: a `Gateway` built in process from a validated config,
 * served on Streamable HTTP (port 0), real backend processes (test/fixtures/flaky-server.ts, one per
 * server so that per-server state such as breakers stays apart), and an SDK v1 client. What reached
 * a backend is counted by the backend itself (its `stats` tool), never inferred from the gateway.
 *
 * Timing rules: nothing sleeps to wait for a state; breakers are polled with a deadline. Timed
 * assertions are lower bounds only (a wait lasted at least what was computed), with upper bounds
 * generous enough for a loaded CI machine.
 */
import assert from "node:assert/strict";
import { join } from "node:path";
import { after, before, describe, test } from "node:test";
import { Client } from "@modelcontextprotocol/sdk/client/index.js";
import { StreamableHTTPClientTransport } from "@modelcontextprotocol/sdk/client/streamableHttp.js";
import { McpError } from "@modelcontextprotocol/sdk/types.js";
import { validateConfig } from "../../src/config/validate.ts";
import { Gateway } from "../../src/gateway/gateway.ts";
import { createLogger, type LogLevel } from "../../src/observability/logger.ts";
import type { BreakerEvent, LimitEvent, RetryEvent } from "../../src/policies/runtime.ts";
import { type HttpServing, serveGatewayOnHttp } from "../../src/server/http/serve.ts";
import { eventually, ROOT } from "../support/gateway-process.ts";

const FLAKY = join(ROOT, "test/fixtures/flaky-server.ts");

function flaky(name: string, policies: Record<string, unknown> = {}) {
  return {
    command: process.execPath,
    args: ["--import", "tsx", FLAKY],
    env: { FLAKY_NAME: name },
    cwd: ROOT,
    policies,
  };
}

// Control tools must stay reachable whatever state the policies under test are in (an open circuit
// would otherwise hide the very counters that prove the backend was not called).
const CONTROL = { circuitBreaker: false, retry: false, cache: false, rateLimit: false, fallback: false };
const FAST_RETRY = { maxAttempts: 3, baseDelayMs: 5, jitter: "none", budget: false };
const OPEN_MS = 400;
const INTERNAL_ERROR = -32603;
const INVALID_PARAMS = -32602;
const TIMEOUT_MS = 300;

const config = validateConfig(
  {
    mcpServers: {
      brk: flaky("brk", { circuitBreaker: { consecutiveFailures: 3, openMs: OPEN_MS } }),
      rt: flaky("rt", { retry: FAST_RETRY }),
      fb: flaky("fb"),
      alt: flaky("alt"),
      rl: flaky("rl"),
      ch: flaky("ch", { cache: { ttlMs: 60_000 } }),
      to: flaky("to"),
    },
    toolPolicies: {
      "*__stats": CONTROL,
      "*__fail_next": CONTROL,
      // `safe: true` asks for retries; destructiveHint must still win.
      rt__write: { retry: { ...FAST_RETRY, safe: true } },
      fb__read: {
        fallback: {
          chain: [
            { tool: "alt__backup" },
            { tool: "fb__backup", args: { key: "{{args.key}}" } },
            { static: { text: "no source could answer" } },
          ],
        },
      },
      fb__lookup: { fallback: { onIsError: true, chain: [{ tool: "fb__backup" }] } },
      rl__ping: { rateLimit: { capacity: 5, refillPerMinute: 1 } },
      rl__read: { rateLimit: { capacity: 5, refillPerSecond: 5, mode: "wait", maxWaitMs: 5_000 } },
      ch__update_user: { invalidates: ["ch__get_user"] },
      to__sleep: { timeout: TIMEOUT_MS },
    },
  },
  { source: "policies integration test" },
);

type Result = {
  content: { type: string; text?: string }[];
  isError?: boolean;
  structuredContent?: Record<string, unknown>;
  _meta?: Record<string, unknown>;
};
type Stats = { calls: Record<string, number>; cancelled: Record<string, number> };

let gateway: Gateway;
let http: HttpServing;
let client: Client;
const breakerEvents: BreakerEvent[] = [];
const limitEvents: LimitEvent[] = [];
const retryEvents: RetryEvent[] = [];

before(async () => {
  const logger = createLogger({ level: (process.env.TEST_LOG_LEVEL ?? "silent") as LogLevel });
  gateway = new Gateway(config, logger);
  gateway.policies.on("breaker", (e) => breakerEvents.push(e));
  gateway.policies.on("limit", (e) => limitEvents.push(e));
  gateway.policies.on("retry", (e) => retryEvents.push(e));
  await gateway.start();
  const down = gateway.backends().filter((b) => b.state !== "up");
  assert.deepEqual(
    down.map((b) => b.name),
    [],
    "every flaky backend should be up",
  );
  http = await serveGatewayOnHttp(gateway, { ...config.server.http, host: "127.0.0.1", port: 0 });
  client = new Client({ name: "policies-integration", version: "1.0.0" });
  await client.connect(new StreamableHTTPClientTransport(new URL(http.url)));
});

after(async () => {
  await client?.close();
  await http?.close();
  await gateway?.close();
});

const call = (name: string, args: Record<string, unknown> = {}) =>
  client.callTool({ name, arguments: args }) as Promise<Result>;

const textOf = (result: Result) =>
  result.content
    .map((c) => c.text ?? "")
    .join(" ")
    .trim();

const errorMeta = (result: Result) =>
  (result._meta?.["switchboard/error"] ?? {}) as { code?: string } & Record<string, unknown>;

async function stats(server: string): Promise<Stats> {
  const result = await call(`${server}__stats`);
  return result.structuredContent as unknown as Stats;
}

async function callsAt(server: string, tool: string): Promise<number> {
  return (await stats(server)).calls[tool] ?? 0;
}

async function failNext(
  server: string,
  tool: string,
  count: number,
  mode: "throw" | "isError" = "throw",
  code = INTERNAL_ERROR,
): Promise<void> {
  const result = await call(`${server}__fail_next`, { tool, count, mode, code });
  assert.ok(!result.isError, textOf(result));
}

/** Asserts that a call failed with the backend's own JSON-RPC error, passed through unchanged. */
async function rejectsWithBackendError(
  promise: Promise<unknown>,
  tool: string,
  code = INTERNAL_ERROR,
): Promise<void> {
  await assert.rejects(promise, (error: unknown) => {
    assert.ok(error instanceof McpError, `expected a JSON-RPC error, got ${String(error)}`);
    assert.equal(error.code, code);
    assert.match(error.message, new RegExp(`${tool} failed on purpose`));
    return true;
  });
}

function breakerState(server: string): string {
  return gateway.policies.breakerStates().find((b) => b.server === server)?.state ?? "closed";
}

describe("circuit breaker", () => {
  test("trips after N failures, fails fast without reaching the backend, and closes after a good probe", async () => {
    await failNext("brk", "read", 3);
    for (let i = 0; i < 3; i++) await rejectsWithBackendError(call("brk__read", { key: "x" }), "read");
    assert.equal(await callsAt("brk", "read"), 3);
    assert.equal(breakerState("brk"), "open");

    // Open: the gateway answers at once, naming the server and when it will try again.
    const before = Date.now();
    for (let i = 0; i < 3; i++) {
      const rejected = await call("brk__read", { key: "x" });
      assert.equal(rejected.isError, true);
      assert.equal(errorMeta(rejected).code, "circuit_open");
      assert.match(textOf(rejected), /Server "brk" is failing/);
      assert.match(textOf(rejected), /"brk__read" was not called/);
      assert.match(textOf(rejected), /trial call through at \d{4}-\d\d-\d\dT/);
      const retryAt = Date.parse(String(errorMeta(rejected).retryAt));
      assert.ok(retryAt > before - OPEN_MS && retryAt <= Date.now() + OPEN_MS, `retryAt ${retryAt}`);
    }
    assert.equal(await callsAt("brk", "read"), 3, "an open circuit must not reach the backend");

    // Half-open: a failing probe opens it again, and still nothing else gets through.
    await eventually(() => breakerState("brk") === "half-open", 10_000, "the breaker to half-open");
    await failNext("brk", "read", 1);
    await rejectsWithBackendError(call("brk__read", { key: "x" }), "read");
    assert.equal(breakerState("brk"), "open");
    const stillOpen = await call("brk__read", { key: "x" });
    assert.equal(errorMeta(stillOpen).code, "circuit_open");
    assert.equal(await callsAt("brk", "read"), 4);

    // Half-open again: a good probe closes it, and calls flow.
    await eventually(() => breakerState("brk") === "half-open", 10_000, "the breaker to half-open again");
    assert.equal(textOf(await call("brk__read", { key: "x" })), "read x");
    assert.equal(breakerState("brk"), "closed");
    assert.equal(textOf(await call("brk__read", { key: "y" })), "read y");
    assert.equal(await callsAt("brk", "read"), 6);

    assert.deepEqual(
      breakerEvents.filter((e) => e.server === "brk").map((e) => `${e.from}->${e.to}`),
      ["closed->open", "open->half-open", "half-open->open", "open->half-open", "half-open->closed"],
    );
  });

  test("an isError answer does not trip it by default (the server did answer)", async () => {
    await failNext("brk", "read", 4, "isError");
    for (let i = 0; i < 4; i++) {
      const result = await call("brk__read", { key: "x" });
      assert.equal(result.isError, true);
      assert.equal(textOf(result), "read failed on purpose", "the backend's own isError, not circuit_open");
    }
    assert.equal(breakerState("brk"), "closed");
  });

  test("the backend's invalid-params errors do not trip it: the request was at fault", async () => {
    const before = await callsAt("brk", "read");
    await failNext("brk", "read", 4, "throw", INVALID_PARAMS);
    for (let i = 0; i < 4; i++) {
      await rejectsWithBackendError(call("brk__read", { key: "x" }), "read", INVALID_PARAMS);
    }
    assert.equal(breakerState("brk"), "closed");
    assert.equal(await callsAt("brk", "read"), before + 4);
  });
});

describe("fallback", () => {
  test("answers from the second source of the chain and says so in _meta", async () => {
    await failNext("fb", "read", 1);
    await failNext("alt", "backup", 1);
    const result = await call("fb__read", { key: "k1" });
    assert.ok(!result.isError, textOf(result));
    assert.equal(textOf(result), "backup of k1");
    assert.equal(result._meta?.["switchboard/source"], "fallback:2:tool:fb__backup");
    const [fb, alt] = await Promise.all([stats("fb"), stats("alt")]);
    assert.equal(fb.calls.read, 1, "the primary was tried once");
    assert.equal(alt.calls.backup, 1, "the first alternative was tried");
    assert.equal(fb.calls.backup, 1, "the second alternative answered");

    // A healthy primary answers itself, with no fallback source.
    const direct = await call("fb__read", { key: "k2" });
    assert.equal(textOf(direct), "read k2");
    assert.equal(direct._meta?.["switchboard/source"], undefined);
  });

  test("with onIsError, an isError answer falls back too", async () => {
    await failNext("fb", "lookup", 1, "isError");
    const result = await call("fb__lookup", { key: "k3" });
    assert.equal(textOf(result), "backup of k3");
    assert.equal(result._meta?.["switchboard/source"], "fallback:1:tool:fb__backup");
  });
});

describe("retry", () => {
  test("a read-only tool is retried after backend errors until it succeeds", async () => {
    await failNext("rt", "read", 2);
    const result = await call("rt__read", { key: "r" });
    assert.ok(!result.isError, textOf(result));
    assert.equal(textOf(result), "read r");
    assert.equal(await callsAt("rt", "read"), 3, "two failed attempts and a good one");
    assert.deepEqual(
      retryEvents.filter((e) => e.tool === "rt__read").map((e) => [e.attempt, e.outcome]),
      [
        [2, "retrying"],
        [3, "retrying"],
      ],
    );
  });

  test("the backend's invalid-params error is not retried: the same arguments would fail again", async () => {
    const before = await callsAt("rt", "read");
    await failNext("rt", "read", 2, "throw", INVALID_PARAMS);
    await rejectsWithBackendError(call("rt__read", { key: "bad" }), "read", INVALID_PARAMS);
    assert.equal(await callsAt("rt", "read"), before + 1);
  });

  test("a destructive tool is never retried, even marked safe", async () => {
    await failNext("rt", "write", 2);
    await rejectsWithBackendError(call("rt__write", { key: "w" }), "write");
    assert.equal(await callsAt("rt", "write"), 1, "exactly one attempt reached the backend");
    assert.equal(retryEvents.filter((e) => e.tool === "rt__write").length, 0);
  });
});

describe("rate limit", () => {
  test("a bucket of 5 allows exactly 5 of 7 immediate calls", async () => {
    const results = await Promise.all(Array.from({ length: 7 }, () => call("rl__ping")));
    const allowed = results.filter((r) => !r.isError);
    const limited = results.filter((r) => r.isError);
    assert.equal(allowed.length, 5);
    assert.equal(limited.length, 2);
    for (const r of limited) {
      assert.equal(errorMeta(r).code, "rate_limited");
      assert.match(
        textOf(r),
        /Rate limit reached for "rl__ping" \(per-tool limit: burst 5, 1\/min\); try again in/,
      );
      assert.ok(Number(errorMeta(r).retryAfterMs) > 0);
    }
    assert.equal(await callsAt("rl", "ping"), 5, "refused calls never reach the backend");
  });

  test("in wait mode the 6th call waits the computed delay, then completes", async () => {
    const start = performance.now();
    const first = await Promise.all(Array.from({ length: 5 }, () => call("rl__read", { key: "a" })));
    assert.ok(first.every((r) => !r.isError));
    assert.equal(limitEvents.filter((e) => e.tool === "rl__read").length, 0, "the burst does not wait");

    const sixthStart = performance.now();
    const sixth = await call("rl__read", { key: "b" });
    const sixthMs = performance.now() - sixthStart;
    assert.equal(textOf(sixth), "read b");

    const waits = limitEvents.filter((e) => e.tool === "rl__read");
    assert.ok(waits.length >= 1 && waits.every((e) => e.outcome === "waited"));
    const computed = waits[0]?.retryAfterMs ?? 0;
    // One token comes back every 200 ms; the burst took part of that, so the wait is at most 200 ms.
    assert.ok(computed > 0 && computed <= 200, `computed wait ${computed} ms`);
    assert.ok(
      sixthMs >= computed,
      `the 6th call took ${sixthMs.toFixed(1)} ms, under the ${computed} ms wait`,
    );
    // Independently of the event: a 6th token exists no sooner than 200 ms after the first was taken.
    assert.ok(performance.now() - start >= 200);
    assert.ok(sixthMs < 5_000, "generous upper bound");
    assert.equal(await callsAt("rl", "read"), 6);
  });
});

describe("cache", () => {
  test("concurrent identical misses reach the backend once", async () => {
    const results = await Promise.all(
      Array.from({ length: 8 }, () => call("ch__lookup", { key: "same", delayMs: 200 })),
    );
    assert.equal(await callsAt("ch", "lookup"), 1);
    for (const r of results) assert.equal(textOf(r), "value of same (call 1)");

    const hit = await call("ch__lookup", { delayMs: 200, key: "same" });
    assert.equal(hit._meta?.["switchboard/source"], "cache", "argument order does not matter");
    assert.equal(textOf(hit), "value of same (call 1)");
    await call("ch__lookup", { key: "other", delayMs: 0 });
    assert.equal(await callsAt("ch", "lookup"), 2);
  });

  test("a write invalidates the reads it makes stale", async () => {
    assert.equal(textOf(await call("ch__get_user", { id: "1" })), "alice");
    const cached = await call("ch__get_user", { id: "1" });
    assert.equal(textOf(cached), "alice");
    assert.equal(cached._meta?.["switchboard/source"], "cache");
    assert.equal(await callsAt("ch", "get_user"), 1);

    const updated = await call("ch__update_user", { id: "1", name: "carol" });
    assert.ok(!updated.isError, textOf(updated));

    const fresh = await call("ch__get_user", { id: "1" });
    assert.equal(textOf(fresh), "carol");
    assert.notEqual(fresh._meta?.["switchboard/source"], "cache");
    assert.equal(await callsAt("ch", "get_user"), 2);
  });
});

describe("timeout", () => {
  test("a per-call timeout names server, tool and limit, and cancels the backend request", async () => {
    const started = performance.now();
    const result = await call("to__sleep", { ms: 10_000 });
    const elapsed = performance.now() - started;
    assert.equal(result.isError, true);
    assert.equal(errorMeta(result).code, "timeout");
    assert.equal(errorMeta(result).timeoutMs, TIMEOUT_MS);
    assert.match(
      textOf(result),
      new RegExp(`Tool "to__sleep" \\(server "to", tool "sleep"\\) timed out after ${TIMEOUT_MS} ms`),
    );
    assert.ok(elapsed >= TIMEOUT_MS - 1, `answered after ${elapsed.toFixed(0)} ms`);
    assert.ok(elapsed < 8_000, "the gateway did not wait for the backend");
    await eventually(
      async () => ((await stats("to")).cancelled.sleep ?? 0) === 1,
      10_000,
      "the backend to see the cancellation",
    );
  });
});
