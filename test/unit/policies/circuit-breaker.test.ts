import assert from "node:assert/strict";
import { afterEach, beforeEach, describe, mock, test } from "node:test";
import { CircuitOpen, GatewayError } from "../../../src/core/errors.ts";
import type { CallToolResult } from "../../../src/core/types.ts";
import {
  binding,
  callOf,
  deferred,
  errorText,
  fakeNext,
  flush,
  makeCtx,
  makeRuntime,
  T0,
  text,
  tick,
  useFakeTimers,
} from "./_helpers.ts";

const down = () => new GatewayError("backend_unavailable", "connection refused");

describe("circuit breaker", () => {
  beforeEach(useFakeTimers);
  afterEach(() => mock.timers.reset());

  test("N consecutive failures open it; calls then fail fast naming the server and when to retry", async () => {
    const { handlerFor, events, runtime } = makeRuntime({
      servers: { db: { policies: { circuitBreaker: { consecutiveFailures: 3, openMs: 10_000 } } } },
    });
    const b = binding("db__query");
    const next = fakeNext(() => {
      throw down();
    });
    const handler = handlerFor(b, next.handler);
    for (let i = 0; i < 3; i++)
      await assert.rejects(handler(callOf(b), makeCtx()), { code: "backend_unavailable" });
    assert.equal(next.calls.length, 3);

    const error = await handler(callOf(b), makeCtx()).catch((e: unknown) => e);
    assert.ok(error instanceof CircuitOpen);
    assert.equal(next.calls.length, 3, "failed fast: the backend was not called");
    assert.match(error.message, /Server "db"/);
    assert.match(error.message, /3 consecutive failures/);
    assert.match(error.message, new RegExp(new Date(T0 + 10_000).toISOString().replace(/[.]/g, "\\.")));
    assert.equal(error.retryAt, T0 + 10_000);
    assert.deepEqual(events.breaker, [
      {
        server: "db",
        from: "closed",
        to: "open",
        reason: "3 consecutive failures (last: connection refused)",
        retryAt: T0 + 10_000,
      },
    ]);
    assert.deepEqual(runtime.breakerStates(), [{ server: "db", state: "open", retryAt: T0 + 10_000 }]);
  });

  test("one breaker per server: failures of one tool open it for all the server's tools", async () => {
    const { handlerFor } = makeRuntime({ policies: { circuitBreaker: { consecutiveFailures: 2 } } });
    const a = binding("db__query");
    const other = binding("db__list");
    const elsewhere = binding("crm__get_user");
    const failing = fakeNext(() => {
      throw down();
    });
    const fine = fakeNext(() => text("ok"));
    await assert.rejects(handlerFor(a, failing.handler)(callOf(a), makeCtx()));
    await assert.rejects(handlerFor(a, failing.handler)(callOf(a), makeCtx()));
    await assert.rejects(handlerFor(other, fine.handler)(callOf(other), makeCtx()), CircuitOpen);
    assert.deepEqual(await handlerFor(elsewhere, fine.handler)(callOf(elsewhere), makeCtx()), text("ok"));
  });

  test("after openMs it is half-open: only halfOpenMaxCalls probes pass at once; a success closes it", async () => {
    const { handlerFor, events } = makeRuntime({
      policies: { circuitBreaker: { consecutiveFailures: 1, openMs: 5_000, halfOpenMaxCalls: 2 } },
    });
    const b = binding("db__query");
    const probes: ReturnType<typeof deferred<CallToolResult>>[] = [];
    let failNext = true;
    const next = fakeNext(() => {
      if (failNext) {
        failNext = false;
        throw down();
      }
      const probe = deferred<CallToolResult>();
      probes.push(probe);
      return probe.promise;
    });
    const handler = handlerFor(b, next.handler);
    await assert.rejects(handler(callOf(b), makeCtx()), { code: "backend_unavailable" });
    await tick(4_999);
    await assert.rejects(handler(callOf(b), makeCtx()), CircuitOpen);
    await tick(1);

    const first = handler(callOf(b), makeCtx());
    const second = handler(callOf(b), makeCtx());
    const third = handler(callOf(b), makeCtx()).catch((e: unknown) => e);
    await flush();
    assert.equal(probes.length, 2, "two probes reached the backend");
    const refused = await third;
    assert.ok(refused instanceof CircuitOpen);
    assert.match(refused.message, /recovering/);

    probes[0]?.resolve(text("up again"));
    assert.deepEqual(await first, text("up again"));
    probes[1]?.resolve(text("me too"));
    await second;
    assert.deepEqual(
      events.breaker.map((e) => `${e.from}->${e.to}`),
      ["closed->open", "open->half-open", "half-open->closed"],
    );

    // Closed again: calls flow freely.
    const after = handler(callOf(b), makeCtx());
    await flush();
    probes[2]?.resolve(text("normal"));
    assert.deepEqual(await after, text("normal"));
  });

  test("a failed probe opens it again for another openMs", async () => {
    const { handlerFor, events } = makeRuntime({
      policies: { circuitBreaker: { consecutiveFailures: 1, openMs: 1_000 } },
    });
    const b = binding("db__query");
    const next = fakeNext(() => {
      throw down();
    });
    const handler = handlerFor(b, next.handler);
    await assert.rejects(handler(callOf(b), makeCtx()));
    await tick(1_000);
    await assert.rejects(handler(callOf(b), makeCtx()), { code: "backend_unavailable" });
    const error = await handler(callOf(b), makeCtx()).catch((e: unknown) => e);
    assert.ok(error instanceof CircuitOpen);
    assert.equal(error.retryAt, T0 + 2_000);
    assert.deepEqual(
      events.breaker.map((e) => e.to),
      ["open", "half-open", "open"],
    );
    assert.match(events.breaker[2]?.reason ?? "", /trial call failed/);
  });

  test("a cancelled probe frees its slot for another probe", async () => {
    const { handlerFor } = makeRuntime({
      policies: { circuitBreaker: { consecutiveFailures: 1, openMs: 1_000 } },
    });
    const b = binding("db__query");
    let n = 0;
    const next = fakeNext(() => {
      n++;
      if (n === 1) throw down();
      if (n === 2) return new Promise<CallToolResult>(() => {});
      return text("ok");
    });
    const handler = handlerFor(b, next.handler);
    await assert.rejects(handler(callOf(b), makeCtx()));
    await tick(1_000);
    const controller = new AbortController();
    const probe = handler(callOf(b), makeCtx({ signal: controller.signal })).catch((e: unknown) => e);
    await flush();
    await assert.rejects(handler(callOf(b), makeCtx()), CircuitOpen);
    controller.abort();
    assert.equal(((await probe) as GatewayError).code, "cancelled");
    assert.deepEqual(await handler(callOf(b), makeCtx()), text("ok"));
  });

  test("opens on a failure ratio over the window once there are minCalls calls", async () => {
    const { handlerFor, events } = makeRuntime({
      policies: {
        circuitBreaker: { consecutiveFailures: 100, failureRatio: 0.5, minCalls: 6, windowMs: 60_000 },
      },
    });
    const b = binding("db__query");
    // Alternating failure and success never makes 2 in a row, but is a 50 % failure ratio.
    const next = fakeNext((_c, _x, n) => {
      if (n % 2 === 1) throw down();
      return text("ok");
    });
    const handler = handlerFor(b, next.handler);
    for (let i = 0; i < 5; i++) await handler(callOf(b), makeCtx()).catch(() => undefined);
    assert.equal(events.breaker.length, 0, "5 calls: under minCalls");
    await handler(callOf(b), makeCtx()).catch(() => undefined); // 6th call succeeds: 3/6
    await handler(callOf(b), makeCtx()).catch(() => undefined); // 7th fails: 4/7 ≥ 0.5
    assert.equal(events.breaker.length, 1);
    assert.match(events.breaker[0]?.reason ?? "", /4 failures in 7 calls/);
  });

  test("timeouts count as failures; isError answers do not unless countIsError", async () => {
    const b = binding("db__query");
    const withTimeouts = makeRuntime({
      policies: { circuitBreaker: { consecutiveFailures: 2 } },
      servers: { db: { timeoutMs: 100 } },
    });
    const hang = fakeNext(() => new Promise<CallToolResult>(() => {}));
    const handler = withTimeouts.handlerFor(b, hang.handler);
    for (let i = 0; i < 2; i++) {
      const outcome = handler(callOf(b), makeCtx()).catch((e: unknown) => e);
      await tick(100);
      assert.equal(((await outcome) as GatewayError).code, "timeout");
    }
    await assert.rejects(handler(callOf(b), makeCtx()), CircuitOpen);

    const isErrors = fakeNext(() => errorText("row not found"));
    const lenient = makeRuntime({ policies: { circuitBreaker: { consecutiveFailures: 2 } } });
    for (let i = 0; i < 5; i++) await lenient.handlerFor(b, isErrors.handler)(callOf(b), makeCtx());
    assert.equal(lenient.events.breaker.length, 0);

    const strict = makeRuntime({
      policies: { circuitBreaker: { consecutiveFailures: 2, countIsError: true } },
    });
    for (let i = 0; i < 2; i++) await strict.handlerFor(b, isErrors.handler)(callOf(b), makeCtx());
    await assert.rejects(strict.handlerFor(b, isErrors.handler)(callOf(b), makeCtx()), CircuitOpen);
  });

  test("a success resets the consecutive count", async () => {
    const { handlerFor, events } = makeRuntime({ policies: { circuitBreaker: { consecutiveFailures: 3 } } });
    const b = binding("db__query");
    const pattern = [false, false, true, false, false, true, false, false];
    const next = fakeNext((_c, _x, n) => {
      if (!pattern[n - 1]) throw down();
      return text("ok");
    });
    for (let i = 0; i < pattern.length; i++)
      await handlerFor(b, next.handler)(callOf(b), makeCtx()).catch(() => undefined);
    assert.equal(events.breaker.length, 0);
  });

  test("failures the supervisor explains (the process died, a restart is under way) do not count", async () => {
    const { handlerFor, events } = makeRuntime({ policies: { circuitBreaker: { consecutiveFailures: 2 } } });
    const b = binding("db__query");
    const restarting = () =>
      new GatewayError("backend_unavailable", "went away", { data: { server: "db", restarting: true } });
    const next = fakeNext(() => {
      throw restarting();
    });
    for (let i = 0; i < 5; i++)
      await assert.rejects(handlerFor(b, next.handler)(callOf(b), makeCtx()), {
        code: "backend_unavailable",
      });
    assert.equal(next.calls.length, 5, "every call reached the backend");
    assert.equal(events.breaker.length, 0, "the circuit stayed closed");
    // Other outages still count.
    const failing = fakeNext(() => {
      throw down();
    });
    for (let i = 0; i < 2; i++) await assert.rejects(handlerFor(b, failing.handler)(callOf(b), makeCtx()));
    assert.equal(events.breaker.at(-1)?.to, "open");
  });

  test("an open circuit lets trial calls through as soon as its server is up again", async () => {
    const { handlerFor, events, runtime } = makeRuntime({
      policies: { circuitBreaker: { consecutiveFailures: 1, openMs: 30_000 } },
    });
    const b = binding("db__query");
    let up = false;
    const next = fakeNext(() => {
      if (!up) throw down();
      return text("ok");
    });
    await assert.rejects(handlerFor(b, next.handler)(callOf(b), makeCtx()));
    await assert.rejects(handlerFor(b, next.handler)(callOf(b), makeCtx()), CircuitOpen);
    runtime.backendUp("crm");
    await assert.rejects(
      handlerFor(b, next.handler)(callOf(b), makeCtx()),
      CircuitOpen,
      "another server's news",
    );
    up = true;
    runtime.backendUp("db");
    assert.deepEqual(events.breaker.at(-1), {
      server: "db",
      from: "open",
      to: "half-open",
      reason: "the server is up again; letting trial calls through",
    });
    assert.deepEqual(await handlerFor(b, next.handler)(callOf(b), makeCtx()), text("ok"));
    assert.equal(events.breaker.at(-1)?.to, "closed", "the trial call closed it, long before openMs");
    runtime.backendUp("db");
    assert.equal(events.breaker.at(-1)?.to, "closed", "a closed circuit is left alone");
  });
});
