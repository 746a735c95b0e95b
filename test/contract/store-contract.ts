/**
 * The Store contract: every store implementation registers this one suite, so that the policies can
 * rely on one behaviour whatever the store; the memory store in its unit tests and the Redis store
 * against a real Redis. Time-dependent tests work both
 * ways: with `advance` they move the store's injected clock; without it they use short real TTLs
 * and poll with a deadline (never a fixed sleep).
 *
 * Keys are prefixed with a random id per test, so a shared Redis database can run it repeatedly.
 */
import assert from "node:assert/strict";
import { randomUUID } from "node:crypto";
import { describe, test } from "node:test";
import type { Store } from "../../src/core/types.ts";
import type { CoordinatedStore } from "../../src/stores/index.ts";

export interface StoreContractOptions {
  /** Moves the store's clock forward; when absent, the tests wait in real time. */
  readonly advance?: (ms: number) => void | Promise<void>;
  /** TTL of entries that must expire, in ms. Default 60. */
  readonly shortTtlMs?: number;
  /** How long to poll for an expiry or a refill in real time, in ms. Default 2 000. */
  readonly deadlineMs?: number;
  /** Slack for retryAfterMs against real time, in ms. Default 250 (0 with `advance`). */
  readonly toleranceMs?: number;
}

export function storeContract(
  name: string,
  make: () => Promise<Store> | Store,
  opts: StoreContractOptions = {},
): void {
  const shortTtlMs = opts.shortTtlMs ?? 60;
  const deadlineMs = opts.deadlineMs ?? 2_000;
  const toleranceMs = opts.toleranceMs ?? (opts.advance ? 0 : 250);

  /** Runs `body` with a fresh store and a unique key prefix, and always closes the store. */
  const withStore = (body: (store: Store, k: (key: string) => string) => Promise<void>) => async () => {
    const store = await make();
    const prefix = `contract:${randomUUID()}:`;
    try {
      await body(store, (key) => prefix + key);
    } finally {
      await store.close();
    }
  };

  /** Waits until `check` holds: by advancing the clock in steps, or by polling real time. */
  const eventually = async (check: () => Promise<boolean>, stepMs: number, what: string) => {
    const started = Date.now();
    let advanced = 0;
    for (;;) {
      if (await check()) return;
      if (opts.advance) {
        if (advanced > deadlineMs) break;
        await opts.advance(stepMs);
        advanced += stepMs;
      } else {
        if (Date.now() - started > deadlineMs) break;
        await new Promise((resolve) => setTimeout(resolve, 10));
      }
    }
    assert.fail(`${what} did not happen within ${deadlineMs} ms`);
  };

  const tagged = (tag: string) => `t:${randomUUID()}:${tag}`;

  describe(`Store contract: ${name}`, () => {
    test(
      "get of a missing key is undefined",
      withStore(async (store, k) => {
        assert.equal(await store.get(k("missing")), undefined);
      }),
    );

    test(
      "set then get returns the value; set again overwrites",
      withStore(async (store, k) => {
        await store.set(k("a"), "1");
        assert.equal(await store.get(k("a")), "1");
        await store.set(k("a"), "2");
        assert.equal(await store.get(k("a")), "2");
        await store.set(k("empty"), "");
        assert.equal(await store.get(k("empty")), "");
        const unicode = JSON.stringify({ text: "héllo ✓ 🚀", n: [1, 2.5, null] });
        await store.set(k("unicode"), unicode);
        assert.equal(await store.get(k("unicode")), unicode);
      }),
    );

    test(
      "delete says whether the key was there",
      withStore(async (store, k) => {
        await store.set(k("a"), "1");
        assert.equal(await store.delete(k("a")), true);
        assert.equal(await store.get(k("a")), undefined);
        assert.equal(await store.delete(k("a")), false);
      }),
    );

    test(
      "an entry expires after its TTL; one without a TTL stays",
      withStore(async (store, k) => {
        await store.set(k("short"), "x", { ttlMs: shortTtlMs });
        await store.set(k("forever"), "y");
        assert.equal(await store.get(k("short")), "x");
        await eventually(async () => (await store.get(k("short"))) === undefined, shortTtlMs, "expiry");
        assert.equal(await store.get(k("forever")), "y");
      }),
    );

    test(
      "overwriting without a TTL removes the old TTL",
      withStore(async (store, k) => {
        await store.set(k("a"), "1", { ttlMs: shortTtlMs });
        await store.set(k("a"), "2");
        await store.set(k("marker"), "m", { ttlMs: shortTtlMs });
        await eventually(async () => (await store.get(k("marker"))) === undefined, shortTtlMs, "expiry");
        assert.equal(await store.get(k("a")), "2");
      }),
    );

    test(
      "invalidateTag deletes exactly the tagged entries and counts them",
      withStore(async (store, k) => {
        const x = tagged("x");
        const y = tagged("y");
        await store.set(k("a"), "a", { tags: [x, y] });
        await store.set(k("b"), "b", { tags: [x] });
        await store.set(k("c"), "c", { tags: [y] });
        await store.set(k("d"), "d");
        assert.equal(await store.invalidateTag(x), 2);
        assert.equal(await store.get(k("a")), undefined);
        assert.equal(await store.get(k("b")), undefined);
        assert.equal(await store.get(k("c")), "c");
        assert.equal(await store.get(k("d")), "d");
        assert.equal(await store.invalidateTag(x), 0, "a tag is empty after its invalidation");
        assert.equal(await store.invalidateTag(y), 1, "only c is left under y");
        assert.equal(await store.invalidateTag(tagged("never-used")), 0);
      }),
    );

    test(
      "tags follow the latest set of a key, and deleted entries are not counted",
      withStore(async (store, k) => {
        const x = tagged("x");
        const y = tagged("y");
        await store.set(k("a"), "1", { tags: [x] });
        await store.set(k("a"), "2", { tags: [y] });
        assert.equal(await store.invalidateTag(x), 0);
        assert.equal(await store.get(k("a")), "2");
        await store.set(k("b"), "b", { tags: [y] });
        await store.delete(k("b"));
        assert.equal(await store.invalidateTag(y), 1);
        assert.equal(await store.get(k("a")), undefined);
      }),
    );

    test(
      "expired entries are not counted by invalidateTag",
      withStore(async (store, k) => {
        const x = tagged("x");
        await store.set(k("short"), "1", { ttlMs: shortTtlMs, tags: [x] });
        await store.set(k("long"), "2", { tags: [x] });
        await eventually(async () => (await store.get(k("short"))) === undefined, shortTtlMs, "expiry");
        assert.equal(await store.invalidateTag(x), 1);
        assert.equal(await store.get(k("long")), undefined);
      }),
    );

    test(
      "takeTokens: burst 5 allows exactly 5 of 7, and says when the next token comes",
      withStore(async (store, k) => {
        const bucket = { capacity: 5, refillPerSec: 1 };
        const results = [];
        for (let i = 0; i < 7; i++) results.push(await store.takeTokens(k("bucket"), bucket));
        assert.deepEqual(
          results.map((r) => r.ok),
          [true, true, true, true, true, false, false],
        );
        assert.deepEqual(
          results.slice(0, 5).map((r) => r.remaining),
          [4, 3, 2, 1, 0],
        );
        for (const r of results.slice(0, 5)) assert.equal(r.retryAfterMs, 0);
        const refused = results[5] as { retryAfterMs: number; remaining: number };
        assert.equal(refused.remaining, 0);
        assert.ok(
          refused.retryAfterMs <= 1000 && refused.retryAfterMs >= 1000 - toleranceMs,
          `retryAfterMs ${refused.retryAfterMs} should be 1000 (tolerance ${toleranceMs})`,
        );
      }),
    );

    test(
      "takeTokens: n tokens at once, and the exact wait for n",
      withStore(async (store, k) => {
        const bucket = { capacity: 10, refillPerSec: 2 };
        const first = await store.takeTokens(k("b"), bucket, 4);
        assert.deepEqual([first.ok, first.remaining], [true, 6]);
        const tooMany = await store.takeTokens(k("b"), bucket, 7);
        assert.equal(tooMany.ok, false);
        assert.ok(
          tooMany.retryAfterMs <= 500 && tooMany.retryAfterMs >= 500 - toleranceMs,
          `retryAfterMs ${tooMany.retryAfterMs} should be 500 (one token at 2/s)`,
        );
        const rest = await store.takeTokens(k("b"), bucket, 6);
        assert.deepEqual([rest.ok, rest.remaining], [true, 0]);
      }),
    );

    test(
      "takeTokens: a wait that never ends is Infinity",
      withStore(async (store, k) => {
        const overCapacity = await store.takeTokens(k("a"), { capacity: 3, refillPerSec: 1 }, 4);
        assert.equal(overCapacity.ok, false);
        assert.equal(overCapacity.retryAfterMs, Number.POSITIVE_INFINITY);
        const noRefill = { capacity: 1, refillPerSec: 0 };
        assert.equal((await store.takeTokens(k("b"), noRefill)).ok, true);
        const empty = await store.takeTokens(k("b"), noRefill);
        assert.equal(empty.ok, false);
        assert.equal(empty.retryAfterMs, Number.POSITIVE_INFINITY);
      }),
    );

    test(
      "takeTokens: tokens come back with time, never beyond capacity",
      withStore(async (store, k) => {
        const bucket = { capacity: 2, refillPerSec: 20 };
        assert.equal((await store.takeTokens(k("b"), bucket, 2)).ok, true);
        const refused = await store.takeTokens(k("b"), bucket);
        assert.equal(refused.ok, false);
        assert.ok(refused.retryAfterMs > 0 && refused.retryAfterMs <= 50);
        // n = 0 takes nothing and reports what is there: wait until the bucket is full again…
        await eventually(
          async () => (await store.takeTokens(k("b"), bucket, 0)).remaining === 2,
          25,
          "refill",
        );
        // …and then longer: it must not fill past capacity.
        if (opts.advance) await opts.advance(10_000);
        const burst = [];
        for (let i = 0; i < 3; i++) burst.push((await store.takeTokens(k("b"), bucket)).ok);
        assert.deepEqual(burst, [true, true, false]);
      }),
    );

    test(
      "takeTokens: different keys are different buckets",
      withStore(async (store, k) => {
        const bucket = { capacity: 1, refillPerSec: 0.001 };
        assert.equal((await store.takeTokens(k("one"), bucket)).ok, true);
        assert.equal((await store.takeTokens(k("one"), bucket)).ok, false);
        assert.equal((await store.takeTokens(k("two"), bucket)).ok, true);
      }),
    );

    test("close can be called twice", async () => {
      const store = await make();
      await store.close();
      await store.close();
    });

    // The coordination API (CoordinatedStore), for stores that have it.
    const coordinated =
      (body: (store: CoordinatedStore, k: (key: string) => string) => Promise<void>) =>
      async (t: { skip: (message: string) => void }) => {
        await withStore(async (store, k) => {
          if (typeof (store as Partial<CoordinatedStore>).lock !== "function") {
            t.skip("this store has no coordination API");
            return;
          }
          await body(store as CoordinatedStore, k);
        })();
      };

    test(
      "lock is exclusive until released; release is idempotent",
      coordinated(async (store, k) => {
        const first = await store.lock(k("l"), 10_000);
        assert.ok(first, "a free lock is taken");
        assert.equal(await store.lock(k("l"), 10_000), undefined, "a held lock is not");
        const other = await store.lock(k("other"), 10_000);
        assert.ok(other, "locks are independent");
        await store.set(k("l"), "v");
        assert.equal(await store.get(k("l")), "v", "lock names do not clash with entry keys");
        await first.release();
        await first.release();
        const second = await store.lock(k("l"), 10_000);
        assert.ok(second, "a released lock can be taken again");
        await second.release();
        await other.release();
      }),
    );

    test(
      "a lock expires after its TTL, and the expired holder's release leaves the new owner's lock alone",
      coordinated(async (store, k) => {
        const stale = await store.lock(k("l"), shortTtlMs);
        assert.ok(stale);
        let owner: Awaited<ReturnType<CoordinatedStore["lock"]>>;
        await eventually(
          async () => {
            owner = await store.lock(k("l"), 10_000);
            return owner !== undefined;
          },
          shortTtlMs,
          "lock expiry",
        );
        await stale.release();
        assert.equal(await store.lock(k("l"), 10_000), undefined, "still held by the new owner");
        await owner?.release();
      }),
    );

    test(
      "waitForUnlock: at once when free, on release when held, false at its timeout, rejects on abort",
      coordinated(async (store, k) => {
        assert.equal(await store.waitForUnlock(k("free"), 5_000), true);
        const held = await store.lock(k("l"), 10_000);
        assert.ok(held);
        const waiting = store.waitForUnlock(k("l"), 5_000);
        await held.release();
        assert.equal(await waiting, true);

        const stuck = await store.lock(k("stuck"), 10_000);
        assert.equal(await store.waitForUnlock(k("stuck"), 30), false);
        const controller = new AbortController();
        const aborted = store.waitForUnlock(k("stuck"), 5_000, controller.signal);
        controller.abort(new Error("caller went away"));
        await assert.rejects(aborted, /caller went away/);
        await stuck?.release();
      }),
    );

    test(
      "publish reaches every subscriber of the channel, flagged fromSelf, until it unsubscribes",
      coordinated(async (store, k) => {
        const seen: [string, string, boolean][] = [];
        const off = await store.subscribe(k("ch"), (message, info) =>
          seen.push(["a", message, info.fromSelf]),
        );
        await store.subscribe(k("ch"), (message, info) => seen.push(["b", message, info.fromSelf]));
        await store.subscribe(k("elsewhere"), (message) => seen.push(["x", message, false]));
        await store.publish(k("ch"), "one");
        await eventually(async () => seen.length >= 2, 10, "delivery");
        assert.deepEqual(seen.sort(), [
          ["a", "one", true],
          ["b", "one", true],
        ]);
        await off();
        await off();
        await store.publish(k("ch"), "two");
        // b sees "two" after a would have (same channel, same order): then a's absence is final.
        await eventually(async () => seen.some(([who, m]) => who === "b" && m === "two"), 10, "delivery");
        assert.equal(
          seen.some(([who, m]) => who === "a" && m === "two"),
          false,
        );
      }),
    );
  });
}
