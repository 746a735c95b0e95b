import assert from "node:assert/strict";
import { afterEach, beforeEach, describe, mock, test } from "node:test";
import { GatewayError } from "../../../src/core/errors.ts";
import type { CallToolResult } from "../../../src/core/types.ts";
import {
  binding,
  callOf,
  deferred,
  fakeNext,
  flush,
  makeCtx,
  makeRuntime,
  text,
  tick,
  useFakeTimers,
} from "./_helpers.ts";

function gatedBackend() {
  const gates: ReturnType<typeof deferred<CallToolResult>>[] = [];
  const next = fakeNext(() => {
    const gate = deferred<CallToolResult>();
    gates.push(gate);
    return gate.promise;
  });
  return { gates, next };
}

describe("bulkhead", () => {
  beforeEach(useFakeTimers);
  afterEach(() => mock.timers.reset());

  test("runs at most maxConcurrent, queues up to maxQueue, refuses the rest with bulkhead_full", async () => {
    const { handlerFor, events } = makeRuntime({
      servers: { db: { policies: { bulkhead: { maxConcurrent: 2, maxQueue: 1 } } } },
    });
    const a = binding("db__query");
    const b = binding("db__list");
    const { gates, next } = gatedBackend();
    const first = handlerFor(a, next.handler)(callOf(a), makeCtx());
    const second = handlerFor(b, next.handler)(callOf(b), makeCtx());
    const third = handlerFor(a, next.handler)(callOf(a), makeCtx());
    const fourth = handlerFor(b, next.handler)(callOf(b), makeCtx()).catch((e: unknown) => e);
    await flush();
    assert.equal(gates.length, 2, "two running, one queued");

    const error = (await fourth) as GatewayError;
    assert.equal(error.code, "bulkhead_full");
    assert.match(error.message, /Server "db"/);
    assert.match(error.message, /at most 2 calls at once and 1 waiting/);
    assert.deepEqual(error.data, {
      server: "db",
      tool: "db__list",
      maxConcurrent: 2,
      maxQueue: 1,
      running: 2,
      queued: 1,
    });
    assert.deepEqual(
      events.bulkhead.map((e) => e.outcome),
      ["queued", "rejected"],
    );

    gates[0]?.resolve(text("1"));
    await first;
    await flush();
    assert.equal(gates.length, 3, "the queued call got the freed slot");
    gates[1]?.resolve(text("2"));
    gates[2]?.resolve(text("3"));
    assert.deepEqual(await Promise.all([second, third]), [text("2"), text("3")]);
  });

  test("a queued call that waits longer than maxQueueWaitMs fails with bulkhead_full", async () => {
    const { handlerFor } = makeRuntime({
      policies: { bulkhead: { maxConcurrent: 1, maxQueue: 5, maxQueueWaitMs: 1_000 } },
    });
    const b = binding("db__query");
    const { next } = gatedBackend();
    void handlerFor(b, next.handler)(callOf(b), makeCtx());
    const queued = handlerFor(b, next.handler)(callOf(b), makeCtx()).catch((e: unknown) => e);
    await tick(1_000);
    const error = (await queued) as GatewayError;
    assert.equal(error.code, "bulkhead_full");
    assert.match(error.message, /waited 1000 ms/);
  });

  test("a cancelled queued call leaves the queue without taking a slot", async () => {
    const { handlerFor } = makeRuntime({ policies: { bulkhead: { maxConcurrent: 1, maxQueue: 1 } } });
    const b = binding("db__query");
    const { gates, next } = gatedBackend();
    const running = handlerFor(b, next.handler)(callOf(b), makeCtx());
    const controller = new AbortController();
    const cancelled = handlerFor(b, next.handler)(callOf(b), makeCtx({ signal: controller.signal })).catch(
      (e: unknown) => e,
    );
    await flush();
    controller.abort();
    assert.equal(((await cancelled) as GatewayError).code, "cancelled");
    // The queue has room again, and the slot is still the running call's.
    const waiting = handlerFor(b, next.handler)(callOf(b), makeCtx());
    await flush();
    assert.equal(gates.length, 1);
    gates[0]?.resolve(text("a"));
    await running;
    await flush();
    assert.equal(gates.length, 2);
    gates[1]?.resolve(text("b"));
    assert.deepEqual(await waiting, text("b"));
  });

  test("a failing call releases its slot", async () => {
    const { handlerFor } = makeRuntime({ policies: { bulkhead: { maxConcurrent: 1, maxQueue: 0 } } });
    const b = binding("db__query");
    const next = fakeNext((_c, _x, n) => {
      if (n === 1) throw new GatewayError("backend_error", "boom");
      return text("ok");
    });
    await assert.rejects(handlerFor(b, next.handler)(callOf(b), makeCtx()));
    assert.deepEqual(await handlerFor(b, next.handler)(callOf(b), makeCtx()), text("ok"));
  });

  test("close fails queued calls", async () => {
    const { handlerFor, runtime } = makeRuntime({
      policies: { bulkhead: { maxConcurrent: 1, maxQueue: 1 } },
    });
    const b = binding("db__query");
    const { next } = gatedBackend();
    void handlerFor(b, next.handler)(callOf(b), makeCtx());
    const queued = handlerFor(b, next.handler)(callOf(b), makeCtx()).catch((e: unknown) => e);
    await flush();
    await runtime.close();
    assert.equal(((await queued) as GatewayError).code, "backend_unavailable");
  });
});
