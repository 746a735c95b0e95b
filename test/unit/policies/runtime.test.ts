import assert from "node:assert/strict";
import { describe, test } from "node:test";
import { POLICY_ORDER } from "../../../src/policies/runtime.ts";
import { binding, callOf, fakeNext, makeCtx, makeRuntime, READ_ONLY, text } from "./_helpers.ts";

const everything = {
  rateLimit: { capacity: 10, refillPerSecond: 1 },
  cache: {},
  fallback: { chain: [{ static: { text: "fb" } }] },
  invalidates: ["x__*"],
  circuitBreaker: {},
  bulkhead: {},
  retry: {},
  timeout: 1_000,
};

describe("PolicyRuntime", () => {
  test("chain order, outermost first: rate limit ▸ cache ▸ fallback ▸ invalidate ▸ breaker ▸ bulkhead ▸ retry ▸ timeout", () => {
    const { runtime } = makeRuntime({ policies: everything });
    const names = runtime.entriesFor(binding("db__query", READ_ONLY)).map((e) => e.name);
    assert.deepEqual(names, [
      "rateLimit",
      "cache",
      "fallback",
      "invalidate",
      "circuitBreaker",
      "bulkhead",
      "retry",
      "timeout",
    ]);
    assert.deepEqual(names, [...POLICY_ORDER]);
    assert.equal(runtime.chainFor(binding("db__query", READ_ONLY)).length, 8);
  });

  test("unconfigured policies are not in the chain; the timeout always is", () => {
    const { runtime } = makeRuntime();
    assert.deepEqual(
      runtime.entriesFor(binding("db__query", READ_ONLY)).map((e) => e.name),
      ["timeout"],
    );
  });

  test("a tool rule can switch a policy off for one tool", () => {
    const { runtime } = makeRuntime({
      policies: everything,
      toolPolicies: { "db__*": { retry: false, cache: false } },
    });
    const names = runtime.entriesFor(binding("db__query", READ_ONLY)).map((e) => e.name);
    assert.equal(names.includes("retry"), false);
    assert.equal(names.includes("cache"), false);
    assert.equal(names.includes("circuitBreaker"), true);
  });

  test("chains are built once per tool and rebuilt when the tool definition changes", () => {
    const { runtime } = makeRuntime({ policies: everything });
    const b = binding("db__query", READ_ONLY);
    assert.equal(runtime.entriesFor(b), runtime.entriesFor(b));
    assert.notEqual(runtime.entriesFor(b), runtime.entriesFor({ ...b, tool: { ...b.tool } }));
  });

  test("a throwing event listener does not fail the call", async () => {
    const { runtime, handlerFor } = makeRuntime({ policies: { cache: {} } });
    runtime.on("cache", () => {
      throw new Error("listener bug");
    });
    const b = binding("db__query", READ_ONLY);
    assert.deepEqual(
      await handlerFor(b, fakeNext(() => text("ok")).handler)(callOf(b), makeCtx()),
      text("ok"),
    );
  });

  test("invalidateServer never rejects, even when the store fails", async () => {
    const { runtime, store, warnings } = makeRuntime();
    store.close();
    await runtime.invalidateServer("db");
    assert.equal(warnings.length, 1);
  });

  test("close makes the runtime refuse new chains", async () => {
    const { runtime } = makeRuntime();
    await runtime.close();
    await runtime.close();
    assert.throws(() => runtime.chainFor(binding("db__query")), /closed/);
  });
});
