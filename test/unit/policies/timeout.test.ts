import assert from "node:assert/strict";
import { afterEach, beforeEach, describe, mock, test } from "node:test";
import { GatewayError } from "../../../src/core/errors.ts";
import type { CallToolResult } from "../../../src/core/types.ts";
import {
  binding,
  callOf,
  deferred,
  fakeNext,
  makeCtx,
  makeRuntime,
  text,
  tick,
  useFakeTimers,
} from "./_helpers.ts";

describe("timeout policy", () => {
  beforeEach(useFakeTimers);
  afterEach(() => mock.timers.reset());

  test("aborts the signal given to next and fails naming server, tool and ms", async () => {
    const { handlerFor } = makeRuntime({ servers: { db: { timeoutMs: 5_000 } } });
    const b = binding("db__query");
    let backendSignal: AbortSignal | undefined;
    const next = fakeNext((_call, ctx) => {
      backendSignal = ctx.signal;
      return new Promise<CallToolResult>(() => {}); // a backend that never answers
    });
    const outcome = handlerFor(b, next.handler)(callOf(b), makeCtx()).catch((error: unknown) => error);
    await tick(4_999);
    assert.equal(backendSignal?.aborted, false);
    await tick(1);
    const error = await outcome;
    assert.ok(error instanceof GatewayError);
    assert.equal(error.code, "timeout");
    assert.match(error.message, /"db__query"/);
    assert.match(error.message, /server "db"/);
    assert.match(error.message, /tool "query"/);
    assert.match(error.message, /5000 ms/);
    assert.deepEqual(error.data, { server: "db", tool: "db__query", timeoutMs: 5_000 });
    assert.equal(backendSignal?.aborted, true, "the backend request is cancelled");
    assert.equal(backendSignal?.reason, error);
  });

  test("a tool rule's timeout beats the server's timeoutMs", async () => {
    const { handlerFor } = makeRuntime({
      servers: { db: { timeoutMs: 5_000 } },
      toolPolicies: { "db__slow*": { timeout: 20_000 } },
    });
    const b = binding("db__slow_report");
    const next = fakeNext(() => new Promise<CallToolResult>(() => {}));
    let settled = false;
    const outcome = handlerFor(b, next.handler)(callOf(b), makeCtx()).catch((error: unknown) => {
      settled = true;
      return error;
    });
    await tick(19_999);
    assert.equal(settled, false);
    await tick(1);
    assert.equal(((await outcome) as GatewayError).data.timeoutMs, 20_000);
  });

  test("an answer in time passes through and clears the timer", async () => {
    const { handlerFor } = makeRuntime({ servers: { db: { timeoutMs: 1_000 } } });
    const b = binding("db__query");
    const answer = deferred<CallToolResult>();
    const next = fakeNext(() => answer.promise);
    const ctx = makeCtx();
    const outcome = handlerFor(b, next.handler)(callOf(b), ctx);
    await tick(500);
    answer.resolve(text("ok"));
    assert.deepEqual(await outcome, text("ok"));
    assert.equal(next.calls[0]?.ctx.signal.aborted, false);
    await tick(1_000);
    assert.equal(next.calls[0]?.ctx.signal.aborted, false, "no timer fired after the answer");
    assert.equal(ctx.notes.get("source"), "backend");
  });

  test("the caller's cancel reaches the backend and ends the call as cancelled", async () => {
    const { handlerFor } = makeRuntime({ servers: { db: { timeoutMs: 1_000 } } });
    const b = binding("db__query");
    const next = fakeNext(() => new Promise<CallToolResult>(() => {}));
    const controller = new AbortController();
    const outcome = handlerFor(b, next.handler)(callOf(b), makeCtx({ signal: controller.signal })).catch(
      (error: unknown) => error,
    );
    await tick(10);
    controller.abort();
    const error = (await outcome) as GatewayError;
    assert.equal(error.code, "cancelled");
    assert.equal(next.calls[0]?.ctx.signal.aborted, true);
  });

  test("a backend that ignores its signal still cannot hold the caller past the timeout", async () => {
    const { handlerFor } = makeRuntime({ servers: { db: { timeoutMs: 100 } } });
    const b = binding("db__query");
    const late = deferred<CallToolResult>();
    const next = fakeNext(() => late.promise);
    const outcome = handlerFor(b, next.handler)(callOf(b), makeCtx()).catch((error: unknown) => error);
    await tick(100);
    assert.equal(((await outcome) as GatewayError).code, "timeout");
    late.resolve(text("too late")); // settles nothing, throws nothing
  });
});
