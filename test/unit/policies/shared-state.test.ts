/**
 * What the policies share between replicas through their store, proved in process: several policy
 * runtimes (standing in for replicas) over one memory store, each through its own view of it that
 * tells its own messages from the others' as the Redis store does. The same behaviour over a real
 * Redis is in test/integration/replicas.test.ts and the e2e tests.
 */
import assert from "node:assert/strict";
import { randomUUID } from "node:crypto";
import { describe, test } from "node:test";
import { compose } from "../../../src/core/compose.ts";
import { GatewayError } from "../../../src/core/errors.ts";
import type { CallHandler, Store, StoreMessageHandler } from "../../../src/core/types.ts";
import { silentLogger } from "../../../src/observability/logger.ts";
import { policySetSchema } from "../../../src/policies/config.ts";
import {
  type BreakerEvent,
  type CacheEvent,
  PolicyRuntime,
  type ToolBinding,
} from "../../../src/policies/runtime.ts";
import { MemoryStore } from "../../../src/stores/memory.ts";
import {
  binding,
  callOf,
  deferred,
  errorText,
  fakeNext,
  firstText,
  flush,
  makeCtx,
  READ_ONLY,
  text,
} from "./_helpers.ts";

/**
 * One replica's view of a store shared with others: everything goes to `shared`, and messages carry
 * the sender, so that `fromSelf` is true only for this view's own (the memory store alone cannot
 * tell, since every user of it is "self"). `deaf` drops incoming messages, as a disconnected replica
 * would miss them.
 */
function replicaView(shared: MemoryStore) {
  const id = randomUUID();
  const published: string[] = [];
  const view = {
    deaf: false,
    published,
    store: {
      shared: true,
      get: (key) => shared.get(key),
      set: (key, value, opts) => shared.set(key, value, opts),
      delete: (key) => shared.delete(key),
      invalidateTag: (tag) => shared.invalidateTag(tag),
      takeTokens: (key, bucket, n, options) => shared.takeTokens(key, bucket, n, options),
      returnTokens: (key, bucket, n, dueInMs) => shared.returnTokens(key, bucket, n, dueInMs),
      lock: (key, ttlMs) => shared.lock(key, ttlMs),
      waitForUnlock: (key, timeoutMs, signal) => shared.waitForUnlock(key, timeoutMs, signal),
      health: () => shared.health(),
      close: () => undefined,
      publish(channel: string, message: string) {
        published.push(channel);
        return shared.publish(channel, `${id}\n${message}`);
      },
      subscribe(channel: string, handler: StoreMessageHandler) {
        return shared.subscribe(channel, (payload) => {
          if (view.deaf) return;
          const newline = payload.indexOf("\n");
          handler(payload.slice(newline + 1), { fromSelf: payload.slice(0, newline) === id });
        });
      },
    } satisfies Store as Store,
  };
  return view;
}

/** `tools`: what the gateway exposes, as it would tell the runtime. */
function replica(store: Store, policies: unknown, tools: readonly ToolBinding[] = []) {
  const breakers: BreakerEvent[] = [];
  const cache: CacheEvent[] = [];
  const runtime = new PolicyRuntime(
    { policies: policySetSchema.parse(policies), servers: {}, toolPolicies: {} },
    {
      store,
      logger: silentLogger(),
      callTool: async () => errorText("no callTool in this test"),
      tools: () => tools,
      random: () => 0.5,
    },
  );
  runtime.on("breaker", (event) => breakers.push(event));
  runtime.on("cache", (event) => cache.push(event));
  const handlerFor = (b: ToolBinding, next: CallHandler) => compose(runtime.chainFor(b), next);
  return { runtime, breakers, cache, handlerFor };
}

describe("rate limits with a store that fails closed", () => {
  test("store_unavailable fails the call, naming the tool and its limit; the backend is not called", async () => {
    const store = new MemoryStore();
    store.takeTokens = () => {
      throw new GatewayError("store_unavailable", "Redis store takeTokens failed: not connected.");
    };
    const { handlerFor } = replica(store, { rateLimit: { capacity: 5, refillPerMinute: 60 } });
    const b = binding("db__query");
    const next = fakeNext(() => text("rows"));
    await assert.rejects(handlerFor(b, next.handler)(callOf(b), makeCtx()), (error: unknown) => {
      assert.ok(error instanceof GatewayError);
      assert.equal(error.code, "store_unavailable");
      assert.match(
        error.message,
        /^"db__query" was not called: its per-tool limit: burst 5, 60\/min could not be checked\. Redis store takeTokens failed/,
      );
      assert.deepEqual(
        { server: error.data?.server, tool: error.data?.tool },
        { server: "db", tool: "db__query" },
      );
      return true;
    });
    assert.equal(next.calls.length, 0);
  });
});

describe("cache single flight across replicas", () => {
  const cached = { cache: { ttlMs: 60_000 } };

  test("a miss on three replicas at once makes one backend call; the others read its answer", async () => {
    const shared = new MemoryStore();
    const replicas = [0, 1, 2].map(() => replica(replicaView(shared).store, cached));
    const b = binding("crm__get", READ_ONLY);
    const answer = deferred<ReturnType<typeof text>>();
    const next = fakeNext(() => answer.promise);
    const ctxs = replicas.map(() => makeCtx());
    const calls = ctxs.map((ctx, i) => replicas[i]?.handlerFor(b, next.handler)(callOf(b, { id: 1 }), ctx));
    await flush();
    assert.equal(next.calls.length, 1, "only the lock holder calls the backend");
    answer.resolve(text("alice"));
    const results = await Promise.all(calls);
    assert.deepEqual(
      results.map((r) => firstText(r ?? text(""))),
      ["alice", "alice", "alice"],
    );
    assert.equal(next.calls.length, 1);
    const waited = ctxs.filter((ctx) => ctx.notes.get("coalesced") === true);
    assert.equal(waited.length, 2, "two replicas waited for the third");
    for (const ctx of waited) assert.equal(ctx.notes.get("source"), "cache");
  });

  test("a holder whose answer is not stored (isError) hands the lock on: a waiter calls the backend", async () => {
    const shared = new MemoryStore();
    const [a, b] = [replica(replicaView(shared).store, cached), replica(replicaView(shared).store, cached)];
    const tool = binding("crm__get", READ_ONLY);
    const first = deferred<ReturnType<typeof text>>();
    const next = fakeNext((_call, _ctx, n) => (n === 1 ? first.promise : text("second try")));
    const fromA = a?.handlerFor(tool, next.handler)(callOf(tool), makeCtx());
    const fromB = b?.handlerFor(tool, next.handler)(callOf(tool), makeCtx());
    await flush();
    first.resolve(errorText("busy"));
    assert.equal((await fromA)?.isError, true);
    assert.equal(firstText((await fromB) ?? text("")), "second try");
    assert.equal(next.calls.length, 2);
  });

  test("when locks fail (e.g. fail-closed), the call goes to the backend and does not fail", async () => {
    const shared = new MemoryStore();
    shared.lock = () => {
      throw new GatewayError("store_unavailable", "locks are fail-closed and Redis is down");
    };
    const { handlerFor } = replica(replicaView(shared).store, cached);
    const b = binding("crm__get", READ_ONLY);
    const next = fakeNext(() => text("alice"));
    assert.equal(firstText(await handlerFor(b, next.handler)(callOf(b), makeCtx())), "alice");
    assert.equal(next.calls.length, 1);
    const hit = makeCtx();
    await handlerFor(b, next.handler)(callOf(b), hit);
    assert.equal(hit.notes.get("cache"), "hit", "the answer was still stored");
  });

  test("a store of this process alone takes no lock: the calls in flight here are all there are", async () => {
    const store = new MemoryStore();
    let locks = 0;
    const lock = store.lock.bind(store);
    store.lock = (key, ttlMs) => {
      locks++;
      return lock(key, ttlMs);
    };
    const { handlerFor } = replica(store, cached);
    const b = binding("crm__get", READ_ONLY);
    const next = fakeNext(() => text("alice"));
    await Promise.all([0, 1].map(() => handlerFor(b, next.handler)(callOf(b), makeCtx())));
    assert.equal(next.calls.length, 1, "identical calls in flight still make one backend call");
    assert.equal(locks, 0);
  });

  test("a waiter whose caller cancels stops waiting with `cancelled`", async () => {
    const shared = new MemoryStore();
    const [a, b] = [replica(replicaView(shared).store, cached), replica(replicaView(shared).store, cached)];
    const tool = binding("crm__get", READ_ONLY);
    const answer = deferred<ReturnType<typeof text>>();
    const next = fakeNext(() => answer.promise);
    const holder = a?.handlerFor(tool, next.handler)(callOf(tool), makeCtx());
    await flush();
    const controller = new AbortController();
    const waiter = b?.handlerFor(tool, next.handler)(callOf(tool), makeCtx({ signal: controller.signal }));
    await flush();
    controller.abort();
    await assert.rejects(waiter ?? Promise.resolve(), { code: "cancelled" });
    answer.resolve(text("alice"));
    await holder;
    assert.equal(next.calls.length, 1);
  });

  test("an invalidation on one replica keeps a read in flight on another from storing", async () => {
    const shared = new MemoryStore();
    const policies = { cache: { ttlMs: 60_000 } };
    const get = binding("crm__get", READ_ONLY);
    const update = binding("crm__update");
    const reader = replica(replicaView(shared).store, policies);
    // The writer never called crm__get itself: it knows the tool from the gateway's catalog.
    const writer = replica(replicaView(shared).store, { ...policies, invalidates: ["crm__*"] }, [
      get,
      update,
    ]);
    const old = deferred<ReturnType<typeof text>>();
    const reads = fakeNext((_call, _ctx, n) => (n === 1 ? old.promise : text("new name")));
    const inFlight = reader.handlerFor(get, reads.handler)(callOf(get), makeCtx());
    await flush();
    await writer.handlerFor(update, fakeNext(() => text("updated")).handler)(callOf(update), makeCtx());
    await flush();
    old.resolve(text("old name"));
    assert.equal(firstText(await inFlight), "old name");
    assert.ok(
      reader.cache.some((e) => e.outcome === "skipped" && e.reason === "invalidated while the call ran"),
      "the older answer was not stored",
    );
    assert.equal(firstText(await reader.handlerFor(get, reads.handler)(callOf(get), makeCtx())), "new name");
  });
});

describe("shared circuit breakers", () => {
  const breaker = { circuitBreaker: { consecutiveFailures: 2, openMs: 60_000, shared: true } };
  const failing = () =>
    fakeNext(() => {
      throw new GatewayError("backend_unavailable", "down");
    });

  test("a circuit that opens on one replica is open on the others; closing is shared too", async () => {
    const shared = new MemoryStore();
    const views = [replicaView(shared), replicaView(shared)];
    const [a, b] = views.map((view) => replica(view.store, breaker));
    const tool = binding("crm__get");
    const down = failing();
    const up = fakeNext(() => text("ok"));
    assert.ok(a && b);
    b.runtime.chainFor(tool);
    for (let i = 0; i < 2; i++) {
      await assert.rejects(a.handlerFor(tool, down.handler)(callOf(tool), makeCtx()));
    }
    await flush();
    await assert.rejects(b.handlerFor(tool, up.handler)(callOf(tool), makeCtx()), { code: "circuit_open" });
    assert.equal(up.calls.length, 0, "B did not call its backend");
    assert.deepEqual(
      b.breakers.map((e) => [e.to, e.remote]),
      [["open", true]],
    );
    assert.match(b.breakers[0]?.reason ?? "", /2 consecutive failures .*\(on another replica\)/);
    // B applied A's transition without announcing it again.
    assert.deepEqual(views[1]?.published, []);
  });

  test("a replica that makes the breaker while the circuit is open elsewhere starts open", async () => {
    const shared = new MemoryStore();
    const a = replica(replicaView(shared).store, breaker);
    const tool = binding("crm__get");
    const down = failing();
    for (let i = 0; i < 2; i++) {
      await assert.rejects(a.handlerFor(tool, down.handler)(callOf(tool), makeCtx()));
    }
    await flush();
    const late = replica(replicaView(shared).store, breaker);
    late.runtime.chainFor(tool);
    await flush();
    assert.equal(late.runtime.breakerStates()[0]?.state, "open");
  });

  test("a replica that missed the messages reads the circuit again when the store recovers", async () => {
    const shared = new MemoryStore();
    const deafView = replicaView(shared);
    const a = replica(replicaView(shared).store, breaker);
    const b = replica(deafView.store, breaker);
    const tool = binding("crm__get");
    b.runtime.chainFor(tool);
    await flush();
    deafView.deaf = true;
    const down = failing();
    for (let i = 0; i < 2; i++) {
      await assert.rejects(a.handlerFor(tool, down.handler)(callOf(tool), makeCtx()));
    }
    await flush();
    assert.equal(b.runtime.breakerStates()[0]?.state, "closed", "B missed the message");
    deafView.deaf = false;
    await b.runtime.storeRecovered();
    assert.equal(b.runtime.breakerStates()[0]?.state, "open");
  });

  test("breakers are per replica unless shared: true", async () => {
    const shared = new MemoryStore();
    const local = { circuitBreaker: { consecutiveFailures: 2, openMs: 60_000 } };
    const views = [replicaView(shared), replicaView(shared)];
    const [a, b] = views.map((view) => replica(view.store, local));
    assert.ok(a && b);
    const tool = binding("crm__get");
    b.runtime.chainFor(tool);
    const down = failing();
    for (let i = 0; i < 2; i++) {
      await assert.rejects(a.handlerFor(tool, down.handler)(callOf(tool), makeCtx()));
    }
    await flush();
    assert.equal(a.runtime.breakerStates()[0]?.state, "open");
    assert.equal(b.runtime.breakerStates()[0]?.state, "closed");
    assert.ok(!views[0]?.published.includes("breaker"));
  });
});
