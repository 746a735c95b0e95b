/**
 * The resilient wrapper with a fake primary that can be switched off and on: which use falls back,
 * which fails, what is replayed on recovery. The same wrapper over a real Redis, with real outages,
 * is in test/integration/redis-store.test.ts.
 */
import assert from "node:assert/strict";
import { EventEmitter } from "node:events";
import { describe, test } from "node:test";
import { GatewayError } from "../../../src/core/errors.ts";
import type { HealthResult } from "../../../src/core/types.ts";
import type { BucketSpec } from "../../../src/stores/contract.ts";
import {
  createStore,
  type PrimaryStore,
  ResilientStore,
  type StoreErrorMode,
  type StoreEventMap,
  type StoreFallbackEvent,
  type StoreMessageHandler,
  type StoreUse,
  storeConfigSchema,
} from "../../../src/stores/index.ts";
import { MemoryStore } from "../../../src/stores/memory.ts";
import { storeContract } from "../../contract/store-contract.ts";

/** A memory store posing as Redis, with an outage switch. */
class FakePrimary extends EventEmitter<StoreEventMap> implements PrimaryStore {
  // Handler errors are reported as the Redis store reports them.
  readonly inner = new MemoryStore({ onListenerError: (event) => this.emit("listenerError", event) });
  #down = false;
  closed = false;

  setDown(down: boolean): void {
    if (down === this.#down) return;
    this.#down = down;
    this.emit("state", this.health());
  }

  #check(): void {
    if (this.#down) throw new GatewayError("store_unavailable", "fake Redis is down");
  }
  async get(key: string) {
    this.#check();
    return this.inner.get(key);
  }
  async set(key: string, value: string, opts?: { ttlMs?: number; tags?: readonly string[] }) {
    this.#check();
    this.inner.set(key, value, opts);
  }
  async delete(key: string) {
    this.#check();
    return this.inner.delete(key);
  }
  async invalidateTag(tag: string) {
    this.#check();
    return this.inner.invalidateTag(tag);
  }
  async takeTokens(key: string, bucket: BucketSpec, n?: number, options?: { maxWaitMs?: number }) {
    this.#check();
    return this.inner.takeTokens(key, bucket, n, options);
  }
  async returnTokens(key: string, bucket: BucketSpec, n: number, dueInMs: number) {
    this.#check();
    this.inner.returnTokens(key, bucket, n, dueInMs);
  }
  async lock(key: string, ttlMs: number) {
    this.#check();
    return this.inner.lock(key, ttlMs);
  }
  async waitForUnlock(key: string, timeoutMs: number, signal?: AbortSignal) {
    this.#check();
    return this.inner.waitForUnlock(key, timeoutMs, signal);
  }
  async publish(channel: string, message: string) {
    this.#check();
    this.inner.publish(channel, message);
  }
  async subscribe(channel: string, handler: StoreMessageHandler) {
    return this.inner.subscribe(channel, handler);
  }
  health(): HealthResult {
    return this.#down
      ? { status: "degraded", detail: "Fake Redis is down." }
      : { status: "healthy", detail: "fake Redis" };
  }
  async close() {
    this.closed = true;
    this.inner.close();
  }
}

function setup(onStoreError?: StoreErrorMode | Partial<Record<StoreUse, StoreErrorMode>>) {
  const primary = new FakePrimary();
  const store = new ResilientStore({ primary, ...(onStoreError ? { onStoreError } : {}) });
  const fallbacks: StoreFallbackEvent[] = [];
  const states: HealthResult[] = [];
  store.on("fallback", (event) => fallbacks.push(event));
  store.on("state", (health) => states.push(health));
  return { primary, store, fallbacks, states };
}

const BUCKET = { capacity: 2, refillPerSec: 1 };

storeContract("resilient (primary up)", () => new ResilientStore({ primary: new FakePrimary() }));
storeContract("resilient (primary down, fail-open)", () => {
  const primary = new FakePrimary();
  primary.setDown(true);
  return new ResilientStore({ primary });
});

describe("ResilientStore", () => {
  test("while the primary is up, everything goes to it", async () => {
    const { primary, store, fallbacks } = setup();
    await store.set("k", "v", { tags: ["t"] });
    assert.equal(primary.inner.get("k"), "v");
    assert.equal((await store.takeTokens("b", BUCKET)).remaining, 1);
    assert.equal(primary.inner.takeTokens("b", BUCKET, 0).remaining, 1);
    assert.deepEqual(fallbacks, []);
    assert.equal(store.health().status, "healthy");
  });

  test("fail-open: every use falls back to local memory, says so, and health is degraded", async () => {
    const { primary, store, fallbacks, states } = setup("fail-open");
    primary.setDown(true);
    assert.deepEqual(
      states.map((s) => s.status),
      ["degraded"],
    );
    await store.set("k", "local");
    assert.equal(await store.get("k"), "local");
    assert.equal(primary.inner.get("k"), undefined);
    assert.equal((await store.takeTokens("b", BUCKET)).ok, true);
    const lock = await store.lock("l", 1_000);
    assert.ok(lock);
    assert.equal(await store.lock("l", 1_000), undefined, "local locks are still exclusive");
    await lock.release();
    assert.deepEqual([...new Set(fallbacks.map((f) => f.use))].sort(), ["entries", "locks", "rateLimits"]);
    assert.match(fallbacks[0]?.reason ?? "", /fake Redis is down/);
    const health = store.health();
    assert.equal(health.status, "degraded");
    assert.match(
      health.detail ?? "",
      /^Fake Redis is down\. Meanwhile entries, rateLimits, locks, pubsub use/,
    );
    assert.equal(health.data?.fallbacks, fallbacks.length);
  });

  test("fail-closed: store_unavailable that names the use and the way out; other uses keep their mode", async () => {
    const { primary, store } = setup({ rateLimits: "fail-closed" });
    primary.setDown(true);
    await assert.rejects(store.takeTokens("b", BUCKET), (error: unknown) => {
      assert.ok(error instanceof GatewayError);
      assert.equal(error.code, "store_unavailable");
      assert.equal(error.data.use, "rateLimits");
      assert.match(error.message, /takeTokens was refused/);
      assert.match(error.message, /store\.onStoreError\.rateLimits to "fail-open"/);
      assert.match(error.message, /fake Redis is down/);
      return true;
    });
    await store.set("k", "v");
    assert.equal(await store.get("k"), "v", "entries fail open");
    assert.match(store.health().detail ?? "", /rateLimits fail with store_unavailable \(fail-closed\)/);
  });

  test("errors that are not an outage reach the caller in both modes", async () => {
    for (const mode of ["fail-open", "fail-closed"] as const) {
      const { store, fallbacks } = setup(mode);
      await assert.rejects(store.takeTokens("b", { capacity: 0, refillPerSec: 1 }), RangeError);
      await assert.rejects(store.set("k", "v", { ttlMs: -1 }), RangeError);
      assert.deepEqual(fallbacks, []);
    }
  });

  test("invalidations and deletes made during an outage are replayed on recovery, in both modes", async () => {
    for (const mode of ["fail-open", "fail-closed"] as const) {
      const { primary, store } = setup(mode);
      await store.set("tagged", "1", { tags: ["t"] });
      await store.set("deleted", "2");
      primary.setDown(true);
      if (mode === "fail-open") {
        await store.invalidateTag("t");
        await store.delete("deleted");
      } else {
        await assert.rejects(store.invalidateTag("t"), { code: "store_unavailable" });
        await assert.rejects(store.delete("deleted"), { code: "store_unavailable" });
      }
      assert.equal(store.health().data?.pendingInvalidations, 2);
      assert.equal(primary.inner.get("tagged"), "1");
      primary.setDown(false);
      await store.replayPending();
      assert.equal(primary.inner.get("tagged"), undefined, `${mode}: tag replayed`);
      assert.equal(primary.inner.get("deleted"), undefined, `${mode}: delete replayed`);
      assert.equal(store.health().data?.pendingInvalidations, 0);
    }
  });

  test("what was written locally during an outage is dropped on recovery", async () => {
    const { primary, store, states } = setup();
    primary.setDown(true);
    await store.set("k", "local");
    await store.takeTokens("b", BUCKET, 2);
    primary.setDown(false);
    assert.deepEqual(
      states.map((s) => s.status),
      ["degraded", "healthy"],
    );
    primary.setDown(true);
    assert.equal(await store.get("k"), undefined, "the next outage starts from empty memory");
    assert.equal((await store.takeTokens("b", BUCKET)).ok, true);
  });

  test("pending invalidations are bounded, and what was dropped is counted", async () => {
    const primary = new FakePrimary();
    const store = new ResilientStore({ primary, maxPendingInvalidations: 2 });
    primary.setDown(true);
    for (const tag of ["a", "b", "c", "a"]) await store.invalidateTag(tag);
    assert.equal(store.health().data?.pendingInvalidations, 2);
    assert.equal(store.health().data?.droppedInvalidations, 1);
  });

  test("a replay that fails keeps what is pending for the next recovery", async () => {
    const { primary, store } = setup();
    primary.setDown(true);
    await store.invalidateTag("t");
    await store.replayPending();
    assert.equal(store.health().data?.pendingInvalidations, 1);
  });

  test("a lock taken locally during an outage is released locally after recovery", async () => {
    const { primary, store } = setup();
    primary.setDown(true);
    const lock = await store.lock("l", 10_000);
    assert.ok(lock);
    const waiting = store.waitForUnlock("l", 10_000);
    primary.setDown(false);
    await lock.release();
    assert.equal(await waiting, true);
  });

  test("pub/sub: publishing falls back to this replica's subscribers; handler errors are reported", async () => {
    const { primary, store } = setup();
    const seen: [string, boolean][] = [];
    await store.subscribe("ch", (message, info) => seen.push([message, info.fromSelf]));
    await store.subscribe("ch", () => {
      throw new Error("handler bug");
    });
    const errors: unknown[] = [];
    store.on("listenerError", ({ error }) => errors.push(error));
    await store.publish("ch", "via primary");
    primary.setDown(true);
    await store.publish("ch", "local");
    await new Promise<void>((resolve) => queueMicrotask(resolve));
    assert.deepEqual(seen, [
      ["via primary", true],
      ["local", true],
    ]);
    assert.equal(errors.length, 2, "one per delivery, whichever way it came");
    assert.match(String(errors[0]), /handler bug/);
  });

  test("close closes the primary once; operations after close fail", async () => {
    const { primary, store } = setup();
    await store.close();
    await store.close();
    assert.equal(primary.closed, true);
    await assert.rejects(store.get("k"), { code: "store_unavailable" });
  });
});

describe("store config", () => {
  test("memory is the default, with its bounds documented in the schema", () => {
    assert.deepEqual(storeConfigSchema.parse(undefined), {
      type: "memory",
      maxEntries: 10_000,
      maxBytes: 64 * 1024 * 1024,
      maxBuckets: 100_000,
    });
  });

  test("redis fills every default", () => {
    assert.deepEqual(storeConfigSchema.parse({ type: "redis", url: "redis://127.0.0.1:6379" }), {
      type: "redis",
      url: "redis://127.0.0.1:6379",
      keyPrefix: "switchboard:",
      maxValueBytes: 1_048_576,
      connectTimeoutMs: 2_000,
      commandTimeoutMs: 1_000,
      reconnect: { initialDelayMs: 50, maxDelayMs: 2_000 },
      onStoreError: "fail-open",
      local: { maxEntries: 10_000, maxBytes: 64 * 1024 * 1024, maxBuckets: 100_000 },
    });
  });

  test("rejects unknown keys, bad URLs and a backoff that shrinks", () => {
    const bad = [
      { type: "redis", url: "http://127.0.0.1:6379" },
      { type: "redis", url: "redis://h", keyPrefx: "x" },
      { type: "redis", url: "redis://h", reconnect: { initialDelayMs: 500, maxDelayMs: 100 } },
      { type: "redis", url: "redis://h", onStoreError: { cache: "fail-open" } },
      { type: "postgres" },
    ];
    for (const config of bad)
      assert.equal(storeConfigSchema.safeParse(config).success, false, JSON.stringify(config));
  });

  test("createStore: memory by default; a bad config is config_invalid with the path", async () => {
    const store = await createStore();
    assert.ok(store instanceof MemoryStore);
    store.close();
    await assert.rejects(createStore({ type: "redis", url: "nope" } as never), (error: unknown) => {
      assert.ok(error instanceof GatewayError);
      assert.equal(error.code, "config_invalid");
      assert.match(error.message, /url/);
      assert.match(error.message, /redis:\/\//);
      return true;
    });
  });
});
