import assert from "node:assert/strict";
import { afterEach, beforeEach, describe, mock, test } from "node:test";
import fc from "fast-check";
import { type GatewayError, RateLimited } from "../../../src/core/errors.ts";
import { MemoryStore } from "../../../src/stores/memory.ts";
import {
  binding,
  callOf,
  fakeNext,
  makeCtx,
  makeRuntime,
  principal,
  T0,
  text,
  tick,
  useFakeTimers,
} from "./_helpers.ts";

describe("rate limit", () => {
  beforeEach(useFakeTimers);
  afterEach(() => mock.timers.reset());

  test("burst 5 allows exactly 5 of 7 immediate calls; the rest are told when to retry", async () => {
    const { handlerFor, events } = makeRuntime({
      toolPolicies: { "*__query_database": { rateLimit: { capacity: 5, refillPerMinute: 60 } } },
    });
    const b = binding("db__query_database");
    const next = fakeNext(() => text("ok"));
    const handler = handlerFor(b, next.handler);
    const outcomes = [];
    for (let i = 0; i < 7; i++) outcomes.push(await handler(callOf(b), makeCtx()).catch((e: unknown) => e));
    assert.equal(next.calls.length, 5);
    const refused = outcomes.slice(5) as RateLimited[];
    for (const error of refused) {
      assert.ok(error instanceof RateLimited);
      assert.equal(error.retryAfterMs, 1_000, "one token a second");
      assert.match(error.message, /"db__query_database"/);
      assert.match(error.message, /burst 5, 60\/min/);
      assert.match(error.message, /try again in 1\.0 s/);
      assert.match(error.message, new RegExp(new Date(T0 + 1_000).toISOString().replace(/[.]/g, "\\.")));
    }
    assert.deepEqual(
      events.limit.map((e) => [e.outcome, e.key, e.retryAfterMs]),
      [
        ["rejected", "rl:tool:db__query_database:5/1", 1_000],
        ["rejected", "rl:tool:db__query_database:5/1", 1_000],
      ],
    );
  });

  test("in wait mode the 6th call completes after exactly the computed delay", async () => {
    const { handlerFor } = makeRuntime({
      policies: { rateLimit: { capacity: 5, refillPerMinute: 30, mode: "wait", maxWaitMs: 10_000 } },
    });
    const b = binding("web__fetch_url");
    const next = fakeNext(() => text("ok"));
    const handler = handlerFor(b, next.handler);
    for (let i = 0; i < 5; i++) await handler(callOf(b), makeCtx());
    const ctx = makeCtx();
    let done = false;
    const sixth = handler(callOf(b), ctx).then((r) => {
      done = true;
      return r;
    });
    await tick(1_999); // 30/min: one token every 2 000 ms
    assert.equal(done, false);
    assert.equal(next.calls.length, 5);
    await tick(1);
    assert.deepEqual(await sixth, text("ok"));
    assert.equal(next.calls.length, 6);
    assert.deepEqual(ctx.notes.get("limit"), {
      key: "rl:tool:web__fetch_url:5/0.5",
      remaining: 0,
      waitedMs: 2_000,
    });
  });

  test("in wait mode a wait longer than maxWaitMs is rejected at once", async () => {
    const { handlerFor } = makeRuntime({
      policies: { rateLimit: { capacity: 1, refillPerMinute: 6, mode: "wait", maxWaitMs: 5_000 } },
    });
    const b = binding("mail__send_email");
    const next = fakeNext(() => text("sent"));
    await handlerFor(b, next.handler)(callOf(b), makeCtx());
    const error = await handlerFor(b, next.handler)(callOf(b), makeCtx()).catch((e: unknown) => e);
    assert.ok(error instanceof RateLimited);
    assert.equal(error.retryAfterMs, 10_000);
  });

  test("a wait is abortable by the caller", async () => {
    const { handlerFor } = makeRuntime({
      policies: { rateLimit: { capacity: 1, refillPerSecond: 0.5, mode: "wait" } },
    });
    const b = binding("a__b");
    const next = fakeNext(() => text("ok"));
    await handlerFor(b, next.handler)(callOf(b), makeCtx());
    const controller = new AbortController();
    const waiting = handlerFor(b, next.handler)(callOf(b), makeCtx({ signal: controller.signal })).catch(
      (e: unknown) => e,
    );
    await tick(500);
    controller.abort();
    assert.equal(((await waiting) as GatewayError).code, "cancelled");
    await tick(5_000);
    assert.equal(next.calls.length, 1);
  });

  test("scopes: per principal, per server and global buckets, and several limits at once", async () => {
    const { handlerFor } = makeRuntime({
      policies: {
        rateLimit: [
          { scope: "global", capacity: 3, refillPerMinute: 1 },
          { scope: "principal", capacity: 2, refillPerMinute: 1 },
        ],
      },
    });
    const a = binding("db__query");
    const b = binding("crm__get_user");
    const next = fakeNext(() => text("ok"));
    const call = (tool: typeof a, who: string) =>
      handlerFor(tool, next.handler)(callOf(tool), makeCtx({ principal: principal(who) })).then(
        () => "ok",
        (e: GatewayError) => e.code,
      );
    assert.equal(await call(a, "alice"), "ok");
    assert.equal(await call(b, "alice"), "ok");
    assert.equal(await call(a, "alice"), "rate_limited", "alice's own bucket of 2 is empty");
    assert.equal(await call(b, "bob"), "ok", "bob has his own bucket");
    assert.equal(await call(a, "carol"), "rate_limited", "the global bucket of 3 is empty");

    const perServer = makeRuntime({
      policies: { rateLimit: { scope: "server", capacity: 1, refillPerMinute: 1 } },
    });
    const server = (tool: typeof a) =>
      perServer
        .handlerFor(tool, next.handler)(callOf(tool), makeCtx())
        .then(
          () => "ok",
          (e: GatewayError) => e.code,
        );
    assert.equal(await server(a), "ok");
    assert.equal(await server(binding("db__list")), "rate_limited", "same server, same bucket");
    assert.equal(await server(b), "ok", "another server");
  });

  test("the seed's table in a few lines: per-tool overrides of a default", async () => {
    const { runtime } = makeRuntime({
      policies: { rateLimit: { capacity: 20, refillPerMinute: 100 } },
      toolPolicies: {
        "*__query_database": { rateLimit: { capacity: 10, refillPerMinute: 60 } },
        "*__send_email": { rateLimit: { capacity: 2, refillPerMinute: 10 } },
        "*__fetch_url": { rateLimit: { capacity: 5, refillPerMinute: 30 } },
      },
    });
    const limitOf = (name: string) =>
      runtime
        .policiesFor({ exposedName: name, server: "s" })
        .rateLimit?.map((l) => [l.capacity, l.refillPerMinute]);
    assert.deepEqual(limitOf("db__query_database"), [[10, 60]]);
    assert.deepEqual(limitOf("mail__send_email"), [[2, 10]]);
    assert.deepEqual(limitOf("web__fetch_url"), [[5, 30]]);
    assert.deepEqual(limitOf("fs__read_file"), [[20, 100]]);
  });

  test("a failing store lets calls through with a warning", async () => {
    const store = new MemoryStore();
    store.takeTokens = () => {
      throw new Error("redis down");
    };
    const { handlerFor, warnings } = makeRuntime({
      store,
      policies: { rateLimit: { capacity: 1, refillPerMinute: 1 } },
    });
    const b = binding("a__b");
    const next = fakeNext(() => text("ok"));
    await handlerFor(b, next.handler)(callOf(b), makeCtx());
    await handlerFor(b, next.handler)(callOf(b), makeCtx());
    assert.equal(next.calls.length, 2);
    assert.equal(warnings.length, 2);
  });
});

describe("token bucket property", () => {
  test("over any window, allowed tokens never exceed capacity + refill × window", () => {
    fc.assert(
      fc.property(
        fc.integer({ min: 1, max: 20 }),
        fc.double({ min: 0, max: 50, noNaN: true }),
        fc.array(fc.record({ dt: fc.integer({ min: 0, max: 3_000 }), n: fc.integer({ min: 1, max: 5 }) }), {
          minLength: 1,
          maxLength: 80,
        }),
        (capacity, refillPerSec, steps) => {
          let now = 0;
          const store = new MemoryStore({ now: () => now, maxEntries: 10, maxBuckets: 10 });
          const granted: { at: number; n: number }[] = [];
          for (const { dt, n } of steps) {
            now += dt;
            if (store.takeTokens("k", { capacity, refillPerSec }, n).ok) granted.push({ at: now, n });
          }
          for (let i = 0; i < granted.length; i++) {
            let sum = 0;
            for (let j = i; j < granted.length; j++) {
              const g = granted[j] as { at: number; n: number };
              sum += g.n;
              const windowSec = (g.at - (granted[i] as { at: number }).at) / 1000;
              if (sum > capacity + refillPerSec * windowSec + 1e-6) return false;
            }
          }
          return true;
        },
      ),
      { numRuns: 300 },
    );
  });

  test("a refused take's retryAfterMs is exact: waiting it succeeds, a millisecond less does not", () => {
    fc.assert(
      fc.property(
        fc.integer({ min: 1, max: 10 }),
        fc.integer({ min: 1, max: 600 }),
        fc.integer({ min: 0, max: 100_000 }),
        (capacity, perMinute, offset) => {
          let now = offset;
          const store = new MemoryStore({ now: () => now, maxEntries: 10, maxBuckets: 10 });
          const bucket = { capacity, refillPerSec: perMinute / 60 };
          store.takeTokens("k", bucket, capacity);
          const refused = store.takeTokens("k", bucket);
          if (refused.ok) return false;
          now += refused.retryAfterMs - 1;
          // A refused take takes nothing, so this probe does not disturb the next one.
          if (store.takeTokens("k", bucket).ok) return false;
          now += 1;
          return store.takeTokens("k", bucket).ok;
        },
      ),
      { numRuns: 300 },
    );
  });
});
