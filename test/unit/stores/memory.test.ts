import assert from "node:assert/strict";
import { describe, test } from "node:test";
import { createMemoryStore, MemoryStore } from "../../../src/stores/memory.ts";
import { storeContract } from "../../contract/store-contract.ts";

/** A clock that only moves when told to; starts at 0 on purpose (lru-cache treats 0 specially). */
function fakeClock(start = 0) {
  let now = start;
  return {
    now: () => now,
    advance: (ms: number) => {
      now += ms;
    },
  };
}

// The contract with an injected clock: fast and exact.
{
  let clock = fakeClock();
  storeContract(
    "memory (injected clock)",
    () => {
      clock = fakeClock();
      return createMemoryStore({ now: clock.now });
    },
    { advance: (ms) => clock.advance(ms) },
  );
}

// The contract in real time, as the Redis store will run it: proves the contract's polling mode.
storeContract("memory (real time)", () => createMemoryStore());

describe("MemoryStore", () => {
  test("keeps at most maxEntries, dropping the least recently used, and its tag index with them", () => {
    const store = new MemoryStore({ maxEntries: 3 });
    store.set("a", "1", { tags: ["t"] });
    store.set("b", "2", { tags: ["t"] });
    store.set("c", "3", { tags: ["t"] });
    store.get("a"); // a is now the most recently used
    store.set("d", "4", { tags: ["t"] });
    assert.equal(store.get("b"), undefined, "b was least recently used");
    assert.equal(store.size, 3);
    assert.equal(store.invalidateTag("t"), 3, "the evicted entry is gone from the tag too");
    assert.equal(store.size, 0);
  });

  test("keeps at most maxBytes, and refuses an entry bigger than all of it", () => {
    const store = new MemoryStore({ maxBytes: 1_000 });
    store.set("small", "x".repeat(100), { tags: ["t"] });
    store.set("huge", "x".repeat(2_000), { tags: ["t"] });
    assert.equal(store.get("huge"), undefined);
    assert.equal(store.get("small"), "x".repeat(100));
    for (let i = 0; i < 10; i++) store.set(`k${i}`, "y".repeat(100));
    assert.equal(store.get("small"), undefined, "evicted to make room");
    assert.equal(store.invalidateTag("t"), 0, "neither the refused nor the evicted entry is indexed");
  });

  test("TTL follows the injected clock, to the millisecond", () => {
    const clock = fakeClock(1_000);
    const store = new MemoryStore({ now: clock.now });
    store.set("a", "1", { ttlMs: 100 });
    clock.advance(100);
    assert.equal(store.get("a"), "1");
    clock.advance(1);
    assert.equal(store.get("a"), undefined);
  });

  test("rejects a TTL that is not a positive finite number", () => {
    const store = new MemoryStore();
    assert.throws(() => store.set("a", "1", { ttlMs: 0 }), RangeError);
    assert.throws(() => store.set("a", "1", { ttlMs: Number.POSITIVE_INFINITY }), RangeError);
  });

  test("takeTokens: exact refill math with fractional rates", () => {
    const clock = fakeClock(5_000);
    const store = new MemoryStore({ now: clock.now });
    // 10 per minute: one token every 6 s.
    const bucket = { capacity: 2, refillPerSec: 10 / 60 };
    assert.equal(store.takeTokens("k", bucket).ok, true);
    assert.equal(store.takeTokens("k", bucket).ok, true);
    const refused = store.takeTokens("k", bucket);
    assert.deepEqual(refused, { ok: false, retryAfterMs: 6_000, remaining: 0 });
    clock.advance(5_999);
    assert.equal(store.takeTokens("k", bucket).ok, false);
    clock.advance(1);
    assert.equal(store.takeTokens("k", bucket).ok, true, "waiting exactly retryAfterMs is enough");
  });

  test("takeTokens: a full bucket is forgotten, a drained one expires when it would be full", () => {
    const clock = fakeClock();
    const store = new MemoryStore({ now: clock.now, maxBuckets: 10 });
    const bucket = { capacity: 3, refillPerSec: 1 };
    store.takeTokens("k", bucket, 3);
    clock.advance(3_000);
    assert.equal(store.takeTokens("k", bucket, 0).remaining, 3);
    assert.equal(store.takeTokens("k", bucket, 4).retryAfterMs, Number.POSITIVE_INFINITY);
  });

  test("takeTokens rejects nonsense buckets", () => {
    const store = new MemoryStore();
    assert.throws(() => store.takeTokens("k", { capacity: 0, refillPerSec: 1 }), RangeError);
    assert.throws(() => store.takeTokens("k", { capacity: 1, refillPerSec: -1 }), RangeError);
    assert.throws(() => store.takeTokens("k", { capacity: 1, refillPerSec: 1 }, -1), RangeError);
  });

  test("after close, every operation fails with store_unavailable", () => {
    const store = new MemoryStore();
    store.set("a", "1");
    store.close();
    assert.throws(() => store.get("a"), { code: "store_unavailable" });
    assert.throws(() => store.takeTokens("k", { capacity: 1, refillPerSec: 1 }), {
      code: "store_unavailable",
    });
  });
});
