/**
 * Waiting in line on a token bucket (stores/contract.ts): a take that may wait reserves its token and
 * the bucket owes it, so later takes queue behind; a reservation given back pays the debt back, save
 * what later reservations already count on. On the memory store with a fake clock; the Redis store
 * runs the same arithmetic in Lua (test/integration/redis-rate-limit-queue.test.ts).
 */
import assert from "node:assert/strict";
import { describe, test } from "node:test";
import fc from "fast-check";
import { MemoryStore } from "../../../src/stores/memory.ts";

function clocked() {
  const clock = { now: 0 };
  const store = new MemoryStore({ now: () => clock.now, maxEntries: 10, maxBuckets: 10 });
  return { clock, store };
}

const ONE_A_SECOND = { capacity: 2, refillPerSec: 1 };

describe("token reservations (memory store)", () => {
  test("a take that may wait reserves its token; later takes, waiting or not, queue behind it", () => {
    const { clock, store } = clocked();
    assert.equal(store.takeTokens("k", ONE_A_SECOND, 2).ok, true);
    assert.deepEqual(store.takeTokens("k", ONE_A_SECOND, 1, { maxWaitMs: 1_000 }), {
      ok: true,
      retryAfterMs: 1_000,
      remaining: 0,
    });
    assert.deepEqual(
      store.takeTokens("k", ONE_A_SECOND, 1, { maxWaitMs: 1_500 }),
      { ok: false, retryAfterMs: 2_000, remaining: 0 },
      "its turn is 2 s away: refused at once, and told so",
    );
    assert.deepEqual(store.takeTokens("k", ONE_A_SECOND), { ok: false, retryAfterMs: 2_000, remaining: 0 });
    assert.deepEqual(store.takeTokens("k", ONE_A_SECOND, 0), { ok: true, retryAfterMs: 0, remaining: 0 });
    clock.now = 1_000;
    assert.deepEqual(
      store.takeTokens("k", ONE_A_SECOND),
      { ok: false, retryAfterMs: 1_000, remaining: 0 },
      "the first second's token went to the reservation (and a take of 0 did not wipe the debt)",
    );
    clock.now = 2_000;
    assert.equal(store.takeTokens("k", ONE_A_SECOND).ok, true);
  });

  test("a reservation given back before its turn pays its token back", () => {
    const { clock, store } = clocked();
    store.takeTokens("k", ONE_A_SECOND, 2);
    const reserved = store.takeTokens("k", ONE_A_SECOND, 1, { maxWaitMs: 5_000 });
    assert.equal(reserved.retryAfterMs, 1_000);
    clock.now = 300;
    store.returnTokens("k", ONE_A_SECOND, 1, 700);
    assert.deepEqual(
      store.takeTokens("k", ONE_A_SECOND, 1, { maxWaitMs: 5_000 }),
      { ok: true, retryAfterMs: 700, remaining: 0 },
      "the next caller has the turn the reservation gave up",
    );
  });

  test("a reservation given back with others queued behind it gives back only what they do not count on", () => {
    const { clock, store } = clocked();
    store.takeTokens("k", ONE_A_SECOND, 2);
    store.takeTokens("k", ONE_A_SECOND, 1, { maxWaitMs: 5_000 }); // due at 1 000: given back below
    store.takeTokens("k", ONE_A_SECOND, 1, { maxWaitMs: 5_000 }); // due at 2 000: keeps its turn
    clock.now = 100;
    store.returnTokens("k", ONE_A_SECOND, 1, 900);
    assert.equal(
      store.takeTokens("k", ONE_A_SECOND, 1, { maxWaitMs: 5_000 }).retryAfterMs,
      2_900,
      "after the waiter that kept its turn",
    );
  });

  test("tokens taken at once and given back fill the bucket again, never past its capacity", () => {
    const { store } = clocked();
    store.takeTokens("k", ONE_A_SECOND, 1);
    store.returnTokens("k", ONE_A_SECOND, 1, 0);
    store.returnTokens("k", ONE_A_SECOND, 1, 0);
    assert.deepEqual(store.takeTokens("k", ONE_A_SECOND, 2), { ok: true, retryAfterMs: 0, remaining: 0 });
    assert.equal(store.takeTokens("k", ONE_A_SECOND).ok, false);
  });

  test("bad arguments are refused as takes are", () => {
    const { store } = clocked();
    assert.throws(() => store.takeTokens("k", ONE_A_SECOND, 1, { maxWaitMs: -1 }), RangeError);
    assert.throws(() => store.returnTokens("k", ONE_A_SECOND, -1, 0), RangeError);
    assert.throws(() => store.returnTokens("k", ONE_A_SECOND, 1, Number.NaN), RangeError);
    assert.throws(() => store.returnTokens("k", { capacity: 0, refillPerSec: 1 }, 1, 0), RangeError);
  });

  test("property: with waits, reservations and give-backs, no window ever gets more than capacity + refill × window", () => {
    fc.assert(
      fc.property(
        fc.integer({ min: 1, max: 5 }),
        fc.integer({ min: 1, max: 20 }),
        fc.array(
          fc.record({
            dt: fc.integer({ min: 0, max: 1_500 }),
            op: fc.constantFrom("take", "wait", "wait", "cancel"),
            maxWaitMs: fc.integer({ min: 0, max: 5_000 }),
          }),
          { minLength: 1, maxLength: 60 },
        ),
        (capacity, perTenSeconds, steps) => {
          const bucket = { capacity, refillPerSec: perTenSeconds / 10 };
          const { clock, store } = clocked();
          // When each granted token is used: at once, or when its reservation is due.
          const uses: { at: number; cancelled: boolean }[] = [];
          for (const { dt, op, maxWaitMs } of steps) {
            clock.now += dt;
            if (op === "cancel") {
              const pending = uses.filter((u) => !u.cancelled && u.at > clock.now);
              const last = pending.at(-1);
              if (last) {
                last.cancelled = true;
                store.returnTokens("k", bucket, 1, last.at - clock.now);
              }
              continue;
            }
            const taken = store.takeTokens("k", bucket, 1, op === "wait" ? { maxWaitMs } : {});
            if (taken.ok) uses.push({ at: clock.now + taken.retryAfterMs, cancelled: false });
          }
          const times = uses
            .filter((u) => !u.cancelled)
            .map((u) => u.at)
            .sort((a, b) => a - b);
          for (let i = 0; i < times.length; i++) {
            for (let j = i; j < times.length; j++) {
              const windowSec = ((times[j] as number) - (times[i] as number)) / 1000;
              if (j - i + 1 > capacity + bucket.refillPerSec * windowSec + 1e-6) return false;
            }
          }
          return true;
        },
      ),
      { numRuns: 500 },
    );
  });
});
