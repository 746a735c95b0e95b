/**
 * The Redis store against a real Redis (REDIS_URL): the shared Store contract, then what only a
 * shared store can show: exactness and atomicity across several instances (each its own
 * connections, standing in for replicas), and outages, simulated by pointing a store at a closed
 * port or at a loopback proxy that the test cuts and restores. The shared Redis server itself is
 * never stopped.
 */
import assert from "node:assert/strict";
import { once } from "node:events";
import { after, describe, test } from "node:test";
import { GatewayError } from "../../src/core/errors.ts";
import type { HealthResult } from "../../src/core/types.ts";
import {
  type CoordinatedStore,
  createStore,
  RedisStore,
  type RedisStoreOptions,
  ResilientStore,
  type StoreFallbackEvent,
  type StoreSkipEvent,
} from "../../src/stores/index.ts";
import { storeContract } from "../contract/store-contract.ts";
import { eventually } from "../support/gateway-process.ts";
import { deleteByPrefix, describeWithRedis, rawClient, TcpProxy, uniquePrefix } from "../support/redis.ts";

const UNREACHABLE = "redis://127.0.0.1:1";
// Fast reconnects, so that recovery after a cut takes milliseconds, not seconds.
const FAST = { reconnect: { initialDelayMs: 10, maxDelayMs: 100 }, connectTimeoutMs: 1_000 } as const;

describeWithRedis("Redis store", (url) => {
  const prefix = uniquePrefix("redis-store");
  const cleanup: { close(): unknown }[] = [];

  /** A connected store on the shared prefix: one "replica". */
  const replica = async (options: Partial<RedisStoreOptions> = {}) => {
    const store = new RedisStore({ url, keyPrefix: prefix, ...FAST, ...options });
    cleanup.push(store);
    await store.ready();
    return store;
  };

  after(async () => {
    await Promise.all(cleanup.map((store) => store.close()));
    await deleteByPrefix(url, prefix);
  });

  storeContract("redis", () => replica());

  storeContract("resilient over redis", () =>
    createStore({ type: "redis", url, keyPrefix: prefix, ...FAST }),
  );

  // Every operation of the contract served by local memory: fail-open is a complete store.
  storeContract("resilient, Redis unreachable, fail-open", () =>
    createStore({ type: "redis", url: UNREACHABLE, keyPrefix: prefix, ...FAST }),
  );

  describe("token buckets (Lua, Redis clock)", () => {
    test("burst 5 allows exactly 5 of 7, taken alternately by two replicas", async () => {
      const [a, b] = [await replica(), await replica()];
      const bucket = { capacity: 5, refillPerSec: 1 };
      const results = [];
      for (let i = 0; i < 7; i++) results.push((await (i % 2 ? b : a).takeTokens("burst", bucket)).ok);
      assert.deepEqual(results, [true, true, true, true, true, false, false]);
    });

    test("300 concurrent takes on capacity 50 with no refill, from 3 replicas, allow exactly 50", async () => {
      const replicas = [await replica(), await replica(), await replica()];
      const bucket = { capacity: 50, refillPerSec: 0 };
      const results = await Promise.all(
        Array.from({ length: 300 }, (_, i) => (replicas[i % 3] as RedisStore).takeTokens("exact", bucket)),
      );
      assert.equal(results.filter((r) => r.ok).length, 50);
      for (const refused of results.filter((r) => !r.ok)) {
        assert.equal(refused.retryAfterMs, Number.POSITIVE_INFINITY);
      }
      assert.deepEqual(
        results
          .map((r) => r.remaining)
          .sort((x, y) => x - y)
          .slice(0, 251),
        Array(251).fill(0),
      );
    });

    test("a bucket key expires when it would be full again, and a full bucket leaves no key", async () => {
      const store = await replica();
      const redis = await rawClient(url);
      try {
        const bucket = { capacity: 5, refillPerSec: 10 };
        await store.takeTokens("ttl", bucket, 3);
        const ttl = await redis.pttl(`${prefix}b:ttl`);
        assert.ok(ttl > 200 && ttl <= 300, `3 tokens at 10/s are back in 300 ms; PTTL was ${ttl}`);
        await store.takeTokens("full", bucket, 0);
        assert.equal(await redis.exists(`${prefix}b:full`), 0);
      } finally {
        redis.disconnect();
      }
    });
  });

  describe("tags", () => {
    test("an invalidation on one replica drops what another replica set", async () => {
      const [a, b] = [await replica(), await replica()];
      await a.set("t1", "1", { tags: ["shared-tag", "other"] });
      await a.set("t2", "2", { tags: ["shared-tag"] });
      await a.set("t3", "3", { tags: ["other"] });
      assert.equal(await b.invalidateTag("shared-tag"), 2);
      assert.equal(await a.get("t1"), undefined);
      assert.equal(await a.get("t2"), undefined);
      assert.equal(await a.get("t3"), "3");
      assert.equal(await b.invalidateTag("other"), 1, "t1 left the other tag when it was invalidated");
    });

    test("sets racing invalidations on two replicas leave no entry outside its tag set", async () => {
      const [a, b] = [await replica(), await replica()];
      const redis = await rawClient(url);
      try {
        const tag = "race";
        const before = Array.from({ length: 100 }, (_, i) => `before-${i}`);
        await Promise.all(before.map((key) => a.set(key, "old", { tags: [tag] })));
        const during = Array.from({ length: 300 }, (_, i) => `during-${i}`);
        const work: Promise<unknown>[] = during.map((key, i) =>
          (i % 2 ? b : a).set(key, "new", { tags: [tag] }),
        );
        for (let i = 0; i < 6; i++) work.splice(i * 50, 0, (i % 2 ? a : b).invalidateTag(tag));
        await Promise.all(work);
        for (const key of before)
          assert.equal(await a.get(key), undefined, `${key} predates every invalidation`);
        // The invariant that makes invalidation complete: a live tagged entry is a member of its tag.
        for (const key of during) {
          if ((await a.get(key)) === undefined) continue;
          assert.equal(
            await redis.sismember(`${prefix}t:${tag}`, key),
            1,
            `${key} is live but not in its tag`,
          );
        }
        await b.invalidateTag(tag);
        for (const key of during) assert.equal(await a.get(key), undefined);
      } finally {
        redis.disconnect();
      }
    });

    test("a key that expired and was set again with other tags survives its old tag", async () => {
      const store = await replica();
      await store.set("reborn", "1", { tags: ["old-tag"], ttlMs: 30 });
      await eventually(async () => (await store.get("reborn")) === undefined, 2_000, "expiry");
      await store.set("reborn", "2", { tags: ["new-tag"] });
      assert.equal(await store.invalidateTag("old-tag"), 0);
      assert.equal(await store.get("reborn"), "2");
    });

    test("a tag set lives as long as its longest-lived entry", async () => {
      const store = await replica();
      const redis = await rawClient(url);
      try {
        await store.set("short", "1", { tags: ["life"], ttlMs: 5_000 });
        await store.set("long", "1", { tags: ["life"], ttlMs: 60_000 });
        await store.set("shorter", "1", { tags: ["life"], ttlMs: 1_000 });
        const ttl = await redis.pttl(`${prefix}t:life`);
        assert.ok(ttl > 55_000 && ttl <= 60_000, `PTTL ${ttl}`);
        await store.set("forever", "1", { tags: ["life"] });
        assert.equal(await redis.pttl(`${prefix}t:life`), -1);
      } finally {
        redis.disconnect();
      }
    });
  });

  test("a value over maxValueBytes is not stored, drops the older value, and is reported", async () => {
    const store = await replica({ maxValueBytes: 100 });
    const skipped: StoreSkipEvent[] = [];
    store.on("skipped", (event) => skipped.push(event));
    await store.set("big", "small enough", { tags: ["size"] });
    // 51 characters, 102 bytes: the limit counts UTF-8 bytes.
    await store.set("big", "é".repeat(51), { tags: ["size"] });
    assert.equal(await store.get("big"), undefined);
    assert.deepEqual(skipped, [{ key: "big", reason: "value_too_large", bytes: 102, maxValueBytes: 100 }]);
    assert.equal(store.health().data?.skippedValues, 1);
    assert.equal(await store.invalidateTag("size"), 0);
    await store.set("big", "é".repeat(50));
    assert.equal(await store.get("big"), "é".repeat(50), "exactly maxValueBytes is fine");
  });

  describe("coordination across replicas", () => {
    test("one lock holder among three replicas racing; only the owner's release frees it", async () => {
      const replicas = [await replica(), await replica(), await replica()];
      const attempts = await Promise.all(
        Array.from({ length: 15 }, (_, i) => (replicas[i % 3] as RedisStore).lock("race", 10_000)),
      );
      const holders = attempts.filter((lock) => lock !== undefined);
      assert.equal(holders.length, 1);

      const [a, b, c] = replicas as [RedisStore, RedisStore, RedisStore];
      const stale = await a.lock("owner", 30);
      assert.ok(stale);
      let owner: Awaited<ReturnType<RedisStore["lock"]>>;
      await eventually(
        async () => {
          owner = await b.lock("owner", 10_000);
          return owner !== undefined;
        },
        2_000,
        "lock expiry",
      );
      await stale.release();
      assert.equal(await c.lock("owner", 10_000), undefined, "a's late release did not free b's lock");
      await owner?.release();
      const next = await c.lock("owner", 10_000);
      assert.ok(next, "b's release did");
      await next.release();
      await holders[0]?.release();
    });

    test("waiters on other replicas wake on release, without polling", async () => {
      const [a, b, c] = [await replica(), await replica(), await replica()];
      const lock = await a.lock("wake", 10_000);
      assert.ok(lock);
      const started = Date.now();
      const waiting = [b.waitForUnlock("wake", 10_000), c.waitForUnlock("wake", 10_000)];
      await lock.release();
      assert.deepEqual(await Promise.all(waiting), [true, true]);
      assert.ok(Date.now() - started < 5_000, "woken by the release, not by the timeout");
    });

    test("single-flight: a miss on three replicas makes one backend call", async () => {
      const replicas = [await replica(), await replica(), await replica()];
      let calls = 0;
      const backend = async () => {
        calls++;
        // Backend latency, so that the other replicas miss while the first one is still calling.
        await new Promise((resolve) => setTimeout(resolve, 50));
        return "answer";
      };
      const answers = await Promise.all(replicas.map((store) => cachedCall(store, "sf-key", backend)));
      assert.deepEqual(answers, ["answer", "answer", "answer"]);
      assert.equal(calls, 1);
    });

    test("pub/sub reaches every replica once; only the publisher sees fromSelf", async () => {
      const replicas = [await replica(), await replica(), await replica()];
      const seen: [number, string, boolean][] = [];
      await Promise.all(
        replicas.map((store, i) => store.subscribe("events", (m, info) => seen.push([i, m, info.fromSelf]))),
      );
      await (replicas[1] as RedisStore).publish("events", "list_changed:db");
      await eventually(async () => seen.length === 3, 2_000, "delivery to three replicas");
      assert.deepEqual(seen.sort(), [
        [0, "list_changed:db", false],
        [1, "list_changed:db", true],
        [2, "list_changed:db", false],
      ]);
    });

    test("a handler that throws is reported and does not stop the others", async () => {
      const store = await replica();
      const errors: unknown[] = [];
      store.on("listenerError", ({ error }) => errors.push(error));
      const got: string[] = [];
      await store.subscribe("boom", () => {
        throw new Error("handler bug");
      });
      await store.subscribe("boom", (m) => got.push(m));
      await store.publish("boom", "x");
      await eventually(async () => got.length === 1, 2_000, "delivery");
      assert.match(String(errors[0]), /handler bug/);
    });
  });

  describe("outages", () => {
    test("unreachable Redis: operations fail fast with store_unavailable, and health says why", async () => {
      const store = new RedisStore({ url: UNREACHABLE, keyPrefix: prefix, ...FAST });
      cleanup.push(store);
      await assert.rejects(store.ready(), { code: "store_unavailable" });
      const started = Date.now();
      await assert.rejects(store.get("x"), (error: unknown) => {
        assert.ok(error instanceof GatewayError);
        assert.equal(error.code, "store_unavailable");
        assert.match(error.message, /127\.0\.0\.1:1/);
        assert.match(error.message, /not connected/);
        return true;
      });
      await assert.rejects(store.takeTokens("x", { capacity: 1, refillPerSec: 1 }), {
        code: "store_unavailable",
      });
      assert.ok(Date.now() - started < 500, "no offline queue: failures are immediate");
      const health = store.health();
      assert.equal(health.status, "degraded");
      assert.match(health.detail ?? "", /ECONNREFUSED/);
      // Bad arguments are still the caller's error, not an outage.
      await assert.rejects(store.takeTokens("x", { capacity: 0, refillPerSec: 1 }), RangeError);
    });

    test("with only pub/sub down, a waiter re-reads the lock with backoff and still wakes", async () => {
      const holder = await replica();
      // Slow reconnects keep the killed subscription down for the whole test.
      const waiter = await replica({ reconnect: { initialDelayMs: 5_000, maxDelayMs: 5_000 } });
      const redis = await rawClient(url);
      try {
        const clients = String(await redis.call("CLIENT", "LIST"));
        const line = clients.split("\n").find((l) => l.includes(` name=switchboard-${waiter.id}-sub `));
        const id = /\bid=(\d+)/.exec(line ?? "")?.[1];
        assert.ok(id, "the waiter's subscriber connection is listed");
        const degraded = once(waiter, "state");
        await redis.call("CLIENT", "KILL", "ID", id);
        await degraded;
        assert.match(waiter.health().detail ?? "", /unavailable for pub\/sub/);
        const lock = await holder.lock("poll", 10_000);
        assert.ok(lock);
        const waiting = waiter.waitForUnlock("poll", 5_000);
        // Released while the waiter is between re-reads.
        setTimeout(() => void lock.release(), 50);
        assert.equal(await waiting, true);
      } finally {
        redis.disconnect();
      }
    });

    test("fail-closed refuses with a clear store_unavailable; per-use modes apply per use", async () => {
      const closed = await createStore({
        type: "redis",
        url: UNREACHABLE,
        keyPrefix: prefix,
        onStoreError: "fail-closed",
      });
      cleanup.push(closed);
      await assert.rejects(
        async () => closed.get("k"),
        (error: unknown) => {
          assert.ok(error instanceof GatewayError);
          assert.equal(error.code, "store_unavailable");
          assert.match(error.message, /fail-closed/);
          assert.match(error.message, /entries/);
          assert.match(error.message, /store\.onStoreError\.entries/);
          return true;
        },
      );
      assert.equal(closed.health().status, "degraded");
      assert.match(closed.health().detail ?? "", /fail with store_unavailable \(fail-closed\)/);

      const mixed = await createStore({
        type: "redis",
        url: UNREACHABLE,
        keyPrefix: prefix,
        onStoreError: { rateLimits: "fail-closed" },
      });
      cleanup.push(mixed);
      await mixed.set("k", "local");
      assert.equal(await mixed.get("k"), "local");
      await assert.rejects(async () => mixed.takeTokens("k", { capacity: 1, refillPerSec: 1 }), /rateLimits/);
    });

    test("cut and restored through a proxy: degrades, falls back per mode, recovers by itself", async () => {
      const proxy = await TcpProxy.start(url);
      cleanup.push(proxy);
      const direct = await replica();
      const store = await createStore({
        type: "redis",
        url: proxy.urlFor(url),
        keyPrefix: prefix,
        ...FAST,
        onStoreError: { entries: "fail-open", rateLimits: "fail-closed" },
      });
      cleanup.push(store);
      assert.ok(store instanceof ResilientStore);
      const states: HealthResult[] = [];
      const fallbacks: StoreFallbackEvent[] = [];
      store.on("state", (health) => states.push(health));
      store.on("fallback", (event) => fallbacks.push(event));
      const messages: string[] = [];
      await store.subscribe("news", (m) => messages.push(m));

      assert.equal(store.health().status, "healthy");
      await store.set("shared", "from-store", { tags: ["outage-tag"] });
      assert.equal(await direct.get("shared"), "from-store", "healthy: writes reach Redis");

      const degraded = once(store, "state");
      proxy.cut();
      assert.equal(((await degraded)[0] as HealthResult).status, "degraded");
      assert.match(store.health().detail ?? "", /entries.*fail-open/);

      await store.set("during", "local-only");
      assert.equal(await store.get("during"), "local-only", "fail-open: served from this replica's memory");
      assert.equal(await direct.get("during"), undefined);
      await assert.rejects(store.takeTokens("limit", { capacity: 5, refillPerSec: 1 }), {
        code: "store_unavailable",
      });
      // An invalidation made during the outage must still reach Redis.
      await store.invalidateTag("outage-tag");
      assert.equal(await direct.get("shared"), "from-store", "not yet: Redis was unreachable");
      assert.equal(store.health().data?.pendingInvalidations, 1);
      assert.ok(fallbacks.some((f) => f.use === "entries" && f.op === "set"));

      const healthy = once(store, "state");
      proxy.restore();
      assert.equal(((await healthy)[0] as HealthResult).status, "healthy");
      await store.replayPending();
      assert.equal(await direct.get("shared"), undefined, "the outage's invalidation was replayed");
      assert.equal(store.health().data?.pendingInvalidations, 0);
      assert.equal(await store.get("during"), undefined, "back on Redis; the local copy is gone");
      assert.equal((await store.takeTokens("limit", { capacity: 5, refillPerSec: 1 })).ok, true);

      // The subscription came back with the connection.
      await direct.publish("news", "after the outage");
      await eventually(async () => messages.includes("after the outage"), 2_000, "delivery after reconnect");
      assert.deepEqual(
        states.map((s) => s.status),
        ["degraded", "healthy"],
      );
    });
  });
});

/**
 * The cross-replica read-through a cache can build on the coordination API: on a miss, take a short
 * lock; the holder calls the backend and stores the answer, the others wait for the release and read.
 * If the holder stored nothing (an error, an uncacheable answer) the next one takes the lock in turn;
 * after a few rounds a waiter stops waiting and calls the backend itself.
 */
async function cachedCall(
  store: CoordinatedStore,
  key: string,
  backend: () => Promise<string>,
): Promise<string> {
  for (let round = 0; round < 3; round++) {
    const hit = await store.get(key);
    if (hit !== undefined) return hit;
    const lock = await store.lock(key, 5_000);
    if (!lock) {
      await store.waitForUnlock(key, 5_000);
      continue;
    }
    try {
      // Another holder may have stored it between the miss and the lock.
      const late = await store.get(key);
      if (late !== undefined) return late;
      const value = await backend();
      await store.set(key, value, { ttlMs: 60_000 });
      return value;
    } finally {
      await lock.release();
    }
  }
  return backend();
}
