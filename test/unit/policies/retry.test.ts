import assert from "node:assert/strict";
import { afterEach, beforeEach, describe, mock, test } from "node:test";
import { GatewayError } from "../../../src/core/errors.ts";
import type { CallToolResult } from "../../../src/core/types.ts";
import { retrySchema } from "../../../src/policies/config.ts";
import { backoffMs } from "../../../src/policies/retry.ts";
import {
  binding,
  callOf,
  DESTRUCTIVE,
  errorText,
  fakeNext,
  flush,
  makeCtx,
  makeRuntime,
  READ_ONLY,
  text,
  tick,
  useFakeTimers,
} from "./_helpers.ts";

const unavailable = () => new GatewayError("backend_unavailable", "backend down");

/** Fails `failures` times with backend_unavailable, then answers "ok". */
function flaky(failures: number) {
  return fakeNext((_call, _ctx, n) => {
    if (n <= failures) throw unavailable();
    return text("ok");
  });
}

describe("retry policy", () => {
  beforeEach(useFakeTimers);
  afterEach(() => mock.timers.reset());

  const noDelay = { retry: { baseDelayMs: 0, budget: false } };

  test("a read-only tool is retried until it answers", async () => {
    const { handlerFor, events } = makeRuntime({ policies: noDelay });
    const b = binding("db__query", READ_ONLY);
    const next = flaky(2);
    const ctx = makeCtx();
    const result = await handlerFor(b, next.handler)(callOf(b), ctx);
    assert.deepEqual(result, text("ok"));
    assert.equal(next.calls.length, 3);
    assert.equal(ctx.notes.get("retries"), 2);
    assert.deepEqual(
      events.retry.map((e) => [e.attempt, e.outcome]),
      [
        [2, "retrying"],
        [3, "retrying"],
      ],
    );
  });

  test("an idempotent tool is retried; gives up after maxAttempts with the last error", async () => {
    const { handlerFor } = makeRuntime({
      policies: { retry: { baseDelayMs: 0, maxAttempts: 4, budget: false } },
    });
    const b = binding("db__upsert", { idempotentHint: true });
    const next = flaky(10);
    await assert.rejects(handlerFor(b, next.handler)(callOf(b), makeCtx()), { code: "backend_unavailable" });
    assert.equal(next.calls.length, 4);
  });

  test("a destructive tool is never retried, even when the config says safe", async () => {
    const { runtime, handlerFor } = makeRuntime({ policies: { retry: { baseDelayMs: 0, safe: true } } });
    const b = binding("db__drop_table", { ...DESTRUCTIVE, idempotentHint: true });
    assert.deepEqual(
      runtime.entriesFor(b).map((e) => e.name),
      ["timeout"],
      "no retry policy in the chain at all",
    );
    const next = flaky(1);
    await assert.rejects(handlerFor(b, next.handler)(callOf(b), makeCtx()), { code: "backend_unavailable" });
    assert.equal(next.calls.length, 1);
  });

  test("a tool without annotations is retried only when the config marks it safe", async () => {
    const plain = binding("api__post");
    const notSafe = makeRuntime({ policies: noDelay });
    const once = flaky(1);
    await assert.rejects(notSafe.handlerFor(plain, once.handler)(callOf(plain), makeCtx()));
    assert.equal(once.calls.length, 1);

    const safe = makeRuntime({
      policies: noDelay,
      toolPolicies: { api__post: { retry: { safe: true, baseDelayMs: 0 } } },
    });
    const twice = flaky(1);
    assert.deepEqual(await safe.handlerFor(plain, twice.handler)(callOf(plain), makeCtx()), text("ok"));
    assert.equal(twice.calls.length, 2);
  });

  test("isError answers are not retried unless retryOn includes isError", async () => {
    const b = binding("db__query", READ_ONLY);
    const failingTool = () => fakeNext((_c, _x, n) => (n === 1 ? errorText("no such row") : text("ok")));

    const byDefault = makeRuntime({ policies: noDelay });
    const first = failingTool();
    assert.equal((await byDefault.handlerFor(b, first.handler)(callOf(b), makeCtx())).isError, true);
    assert.equal(first.calls.length, 1);

    const configured = makeRuntime({
      policies: { retry: { baseDelayMs: 0, budget: false, retryOn: ["isError"] } },
    });
    const second = failingTool();
    assert.deepEqual(await configured.handlerFor(b, second.handler)(callOf(b), makeCtx()), text("ok"));
    assert.equal(second.calls.length, 2);
  });

  test("timeouts are retried: each attempt gets its own timeout", async () => {
    const { handlerFor } = makeRuntime({
      policies: { retry: { baseDelayMs: 0, budget: false } },
      servers: { db: { timeoutMs: 1_000 } },
    });
    const b = binding("db__query", READ_ONLY);
    const next = fakeNext((_c, _x, n) => (n === 1 ? new Promise<CallToolResult>(() => {}) : text("ok")));
    const outcome = handlerFor(b, next.handler)(callOf(b), makeCtx());
    await tick(1_000);
    assert.deepEqual(await outcome, text("ok"));
    assert.equal(next.calls.length, 2);
    assert.equal(next.calls[0]?.ctx.signal.aborted, true, "the timed-out attempt was cancelled");
    assert.equal(next.calls[1]?.ctx.signal.aborted, false, "the retry has a fresh signal");
  });

  test("rejections (like an invalid argument from the backend) are not retried", async () => {
    const { handlerFor } = makeRuntime({ policies: noDelay });
    const b = binding("db__query", READ_ONLY);
    const next = fakeNext(() => {
      throw new GatewayError("invalid_arguments", "bad");
    });
    await assert.rejects(handlerFor(b, next.handler)(callOf(b), makeCtx()), { code: "invalid_arguments" });
    assert.equal(next.calls.length, 1);
  });

  test("never retries after the caller aborted, including during the backoff", async () => {
    const { handlerFor } = makeRuntime({
      policies: { retry: { baseDelayMs: 1_000, jitter: "none", budget: false } },
    });
    const b = binding("db__query", READ_ONLY);
    const controller = new AbortController();
    const next = flaky(5);
    const outcome = handlerFor(b, next.handler)(callOf(b), makeCtx({ signal: controller.signal })).catch(
      (error: unknown) => error,
    );
    await flush();
    assert.equal(next.calls.length, 1, "first attempt failed; now in backoff");
    controller.abort();
    await tick(5_000);
    assert.equal(((await outcome) as GatewayError).code, "cancelled");
    assert.equal(next.calls.length, 1);

    const aborted = new AbortController();
    const failsAfterAbort = fakeNext(() => {
      aborted.abort();
      throw unavailable();
    });
    await assert.rejects(
      handlerFor(b, failsAfterAbort.handler)(callOf(b), makeCtx({ signal: aborted.signal })),
    );
    assert.equal(failsAfterAbort.calls.length, 1);
  });

  test("backoff waits the computed delay before the retry", async () => {
    const { handlerFor, events } = makeRuntime({
      policies: { retry: { baseDelayMs: 200, factor: 3, jitter: "none", budget: false } },
    });
    const b = binding("db__query", READ_ONLY);
    const next = flaky(2);
    const outcome = handlerFor(b, next.handler)(callOf(b), makeCtx());
    await flush();
    assert.equal(next.calls.length, 1);
    await tick(199);
    assert.equal(next.calls.length, 1);
    await tick(1);
    assert.equal(next.calls.length, 2);
    await tick(599);
    assert.equal(next.calls.length, 2);
    await tick(1);
    assert.deepEqual(await outcome, text("ok"));
    assert.deepEqual(
      events.retry.map((e) => e.delayMs),
      [200, 600],
    );
  });

  test("backoff: exponential, capped, jittered", () => {
    const options = retrySchema.parse({ baseDelayMs: 100, maxDelayMs: 1_000, factor: 2, jitter: "none" });
    assert.deepEqual(
      [1, 2, 3, 4, 5].map((n) => backoffMs(options, n, () => 0.5)),
      [100, 200, 400, 800, 1_000],
    );
    const full = { ...options, jitter: "full" as const };
    assert.equal(
      backoffMs(full, 3, () => 0),
      0,
    );
    assert.equal(
      backoffMs(full, 3, () => 0.5),
      200,
    );
    const equal = { ...options, jitter: "equal" as const };
    assert.equal(
      backoffMs(equal, 3, () => 0),
      200,
    );
    assert.equal(
      backoffMs(equal, 3, () => 0.999),
      400,
    );
  });

  test("the retry budget caps retries to a share of the server's calls", async () => {
    const { handlerFor, events } = makeRuntime({
      policies: {
        retry: { baseDelayMs: 0, maxAttempts: 3, budget: { ratio: 0.2, minPerSec: 0, windowMs: 10_000 } },
      },
    });
    const a = binding("db__query", READ_ONLY);
    const b = binding("db__list", READ_ONLY);
    let backendCalls = 0;
    const next = fakeNext(() => {
      backendCalls++;
      throw unavailable();
    });
    for (let i = 0; i < 10; i++) {
      const tool = i % 2 === 0 ? a : b; // two tools of one server share its budget
      await assert.rejects(handlerFor(tool, next.handler)(callOf(tool), makeCtx()));
    }
    // Without a budget: 10 calls × 3 attempts = 30. With 20 %: 10 calls + 2 retries.
    assert.equal(backendCalls, 12);
    assert.equal(events.retry.filter((e) => e.outcome === "retrying").length, 2);
    assert.ok(events.retry.some((e) => e.outcome === "budget_exhausted"));
  });

  test("the budget refills as the window slides", async () => {
    const { handlerFor } = makeRuntime({
      policies: {
        retry: { baseDelayMs: 0, maxAttempts: 2, budget: { ratio: 0, minPerSec: 0.1, windowMs: 10_000 } },
      },
    });
    const b = binding("db__query", READ_ONLY);
    let backendCalls = 0;
    const next = fakeNext(() => {
      backendCalls++;
      throw unavailable();
    });
    const run = () => assert.rejects(handlerFor(b, next.handler)(callOf(b), makeCtx()));
    await run(); // one retry allowed per 10 s window: 2 backend calls
    await run(); // budget spent: 1 backend call
    assert.equal(backendCalls, 3);
    await tick(11_000);
    await run();
    assert.equal(backendCalls, 5);
  });
});
