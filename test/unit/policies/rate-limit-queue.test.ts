/**
 * Rate limits in "wait" mode wait in line: each waiter reserves its token (its place), so waiters go
 * first come, first served; a call whose place would mean a wait over `maxWaitMs` is refused at once,
 * with a message that says so and what to do; a waiter that is cancelled gives its place back. On the
 * runtime over a memory store, with fake timers (the store reads the faked Date).
 */
import assert from "node:assert/strict";
import { afterEach, beforeEach, describe, mock, test } from "node:test";
import { type GatewayError, RateLimited } from "../../../src/core/errors.ts";
import { rateLimitSchema } from "../../../src/policies/config.ts";
import {
  binding,
  callOf,
  fakeNext,
  flush,
  makeCtx,
  makeRuntime,
  T0,
  text,
  tick,
  useFakeTimers,
} from "./_helpers.ts";

/** A tool whose calls are limited as `limit` says, and the times (since T0) at which calls went on. */
function limited(limit: unknown) {
  const { handlerFor, store, events } = makeRuntime({ policies: { rateLimit: limit } });
  const b = binding("mail__send_email");
  const wentOn: { label: string; at: number }[] = [];
  const next = fakeNext((call) => {
    wentOn.push({ label: String(call.args.label), at: Date.now() - T0 });
    return text("sent");
  });
  const handler = handlerFor(b, next.handler);
  /** Starts one call; its promise settles with "sent" or the error (never rejects). */
  const call = (label: string, signal?: AbortSignal) =>
    handler(callOf(b, { label }), makeCtx(signal ? { signal } : {})).then(
      () => "sent" as const,
      (error: unknown) => error as GatewayError,
    );
  return { call, wentOn, store, events, b };
}

/** Settles-now check: the value of a promise that has settled by now, else "pending". */
async function settledNow<T>(promise: Promise<T>): Promise<T | "pending"> {
  await flush();
  return Promise.race([promise, new Promise<"pending">((resolve) => setImmediate(() => resolve("pending")))]);
}

describe("rate limit: waiting in line", () => {
  beforeEach(useFakeTimers);
  afterEach(() => mock.timers.reset());

  test("waiters go first come, first served, one token apart", async () => {
    const { call, wentOn } = limited({ capacity: 1, refillPerSecond: 1, mode: "wait", maxWaitMs: 5_000 });
    const calls = ["first", "second", "third", "fourth"].map((label) => call(label));
    await tick(999);
    assert.deepEqual(
      wentOn.map((w) => w.label),
      ["first"],
    );
    for (let i = 0; i < 3; i++) await tick(i === 0 ? 1 : 1_000);
    assert.deepEqual(await Promise.all(calls), ["sent", "sent", "sent", "sent"]);
    assert.deepEqual(wentOn, [
      { label: "first", at: 0 },
      { label: "second", at: 1_000 },
      { label: "third", at: 2_000 },
      { label: "fourth", at: 3_000 },
    ]);
  });

  test("a call whose place in line means a wait over maxWaitMs is refused at once, saying why and what to do", async () => {
    // 6 per minute: one token every 10 s. The second call waits 10 s; the third would wait 20 s.
    const { call, wentOn, events } = limited({
      capacity: 1,
      refillPerMinute: 6,
      mode: "wait",
      maxWaitMs: 15_000,
    });
    assert.equal(await call("first"), "sent");
    const second = call("second");
    const third = await settledNow(call("third"));
    assert.ok(third instanceof RateLimited, `refused before any time passed, got ${String(third)}`);
    assert.equal(third.retryAfterMs, 20_000, "its turn comes after the second call's");
    assert.match(third.message, /"mail__send_email"/);
    assert.match(third.message, /mode "wait"/);
    assert.match(third.message, /maxWaitMs \(15000 ms\)/);
    assert.match(third.message, /would wait 20 s/);
    assert.match(third.message, /Try again in 20 s \(after 2023-11-14T22:13:40\.000Z\)/);
    assert.match(third.message, /raise maxWaitMs/);
    await tick(10_000);
    assert.equal(await second, "sent");
    assert.deepEqual(
      wentOn.map((w) => [w.label, w.at]),
      [
        ["first", 0],
        ["second", 10_000],
      ],
    );
    assert.deepEqual(
      events.limit.map((e) => [e.outcome, e.retryAfterMs]),
      [
        ["waited", 10_000],
        ["rejected", 20_000],
      ],
    );
  });

  test("a cancelled waiter gives its place back: the next caller waits only for its own turn", async () => {
    const { call, wentOn } = limited({ capacity: 1, refillPerSecond: 1, mode: "wait", maxWaitMs: 1_500 });
    assert.equal(await call("first"), "sent");
    const controller = new AbortController();
    const cancelled = call("cancelled", controller.signal);
    await tick(200);
    controller.abort();
    assert.equal(((await cancelled) as GatewayError).code, "cancelled");
    // Had the cancelled call kept its place, this one's turn would be 1 800 ms away: over maxWaitMs.
    const next = call("next");
    await tick(799);
    assert.deepEqual(
      wentOn.map((w) => w.label),
      ["first"],
    );
    await tick(1);
    assert.equal(await next, "sent");
    assert.deepEqual(wentOn.at(-1), { label: "next", at: 1_000 });
  });

  test("waiters behind a cancelled one keep their turn, and the limit holds", async () => {
    const { call, wentOn } = limited({ capacity: 1, refillPerSecond: 1, mode: "wait", maxWaitMs: 10_000 });
    assert.equal(await call("first"), "sent");
    const controller = new AbortController();
    const cancelled = call("cancelled", controller.signal);
    const behind = call("behind");
    await tick(100);
    controller.abort();
    await cancelled;
    // The token the cancelled call gave back is the one the waiter behind it already counts on: the
    // next caller comes after both, or a bucket of one would let two calls through at once.
    const late = call("late");
    await tick(1_900);
    assert.equal(await behind, "sent");
    assert.deepEqual(wentOn.at(-1), { label: "behind", at: 2_000 }, "the waiter behind kept its turn");
    await tick(999);
    assert.equal(wentOn.length, 2, "the late caller is still waiting");
    await tick(1);
    assert.equal(await late, "sent");
    assert.deepEqual(wentOn.at(-1), { label: "late", at: 3_000 });
  });

  test("by default a wait-mode limit of 10 per minute lets the next caller wait its 6 s", async () => {
    const { call, wentOn } = limited({ capacity: 1, refillPerMinute: 10, mode: "wait" });
    assert.equal(await call("first"), "sent");
    const second = call("second");
    await tick(6_000);
    assert.equal(await second, "sent");
    assert.deepEqual(wentOn.at(-1), { label: "second", at: 6_000 });
    const { maxWaitMs } = rateLimitSchema.parse({ capacity: 1, refillPerMinute: 10 });
    assert.equal(maxWaitMs, 30_000, "the README's default");
  });

  test("a call refused by a later limit gives back the token an earlier limit gave it", async () => {
    const { handlerFor, store } = makeRuntime({
      policies: {
        rateLimit: [
          { scope: "principal", capacity: 2, refillPerMinute: 1 },
          { scope: "global", capacity: 1, refillPerMinute: 1 },
        ],
      },
    });
    const b = binding("db__query");
    const next = fakeNext(() => text("ok"));
    await handlerFor(b, next.handler)(callOf(b), makeCtx());
    const refused = await handlerFor(b, next.handler)(callOf(b), makeCtx()).catch((e: unknown) => e);
    assert.ok(refused instanceof RateLimited, "the global bucket is empty");
    const own = { capacity: 2, refillPerSec: 1 / 60 };
    const left = store.takeTokens("rl:principal:anonymous:2/0.016666666666666666", own);
    assert.deepEqual([left.ok, left.remaining], [true, 0], "one of the caller's two tokens is still there");
  });

  test("with several limits a call waits once, for the latest of its turns", async () => {
    const { call, wentOn, events } = limited([
      { scope: "principal", capacity: 1, refillPerSecond: 1, mode: "wait", maxWaitMs: 5_000 },
      { scope: "global", capacity: 1, refillPerSecond: 0.5, mode: "wait", maxWaitMs: 5_000 },
    ]);
    assert.equal(await call("first"), "sent");
    const second = call("second");
    await tick(1_999);
    assert.equal(wentOn.length, 1, "the per-caller turn (1 s) came, the global one (2 s) not yet");
    await tick(1);
    assert.equal(await second, "sent");
    assert.deepEqual(wentOn.at(-1), { label: "second", at: 2_000 }, "2 s, not 1 s + 2 s");
    assert.deepEqual(
      events.limit.map((e) => [e.scope, e.retryAfterMs]),
      [
        ["principal", 1_000],
        ["global", 2_000],
      ],
    );
  });

  test("a call that will not wait does not jump the line of callers waiting for the same bucket", async () => {
    const shared = { scope: "server", capacity: 1, refillPerSecond: 1 };
    const { handlerFor } = makeRuntime({
      toolPolicies: {
        mail__queue: { rateLimit: { ...shared, mode: "wait", maxWaitMs: 5_000 } },
        mail__now: { rateLimit: { ...shared, mode: "reject" } },
      },
    });
    const next = fakeNext(() => text("sent"));
    const queue = binding("mail__queue");
    const now = binding("mail__now");
    await handlerFor(queue, next.handler)(callOf(queue), makeCtx());
    const waiting = handlerFor(queue, next.handler)(callOf(queue), makeCtx());
    await tick(500);
    const refused = await handlerFor(now, next.handler)(callOf(now), makeCtx()).catch((e: unknown) => e);
    assert.ok(refused instanceof RateLimited);
    assert.equal(refused.retryAfterMs, 1_500, "its turn comes after the waiter's, whose token is due at 1 s");
    await tick(500);
    await waiting;
    assert.equal(next.calls.length, 2);
  });
});
