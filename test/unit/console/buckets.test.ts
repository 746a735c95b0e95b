import assert from "node:assert/strict";
import { test } from "node:test";
import { BucketWatch } from "../../../src/console/buckets.ts";
import type { FinishedCall } from "../../../src/gateway/observe.ts";
import type { RateLimitOptions } from "../../../src/policies/config.ts";
import { bucketKey } from "../../../src/policies/rate-limit.ts";
import { NOTES } from "../../../src/policies/runtime.ts";

const tool = { name: "echo", inputSchema: { type: "object" as const } };
const route = { kind: "tools/call" as const, name: "a__echo", server: "a", tool, access: "tool" as const };
const binding = { exposedName: route.name, server: route.server, tool };
const perTool: RateLimitOptions = {
  scope: "tool",
  perPrincipal: false,
  capacity: 10,
  refillPerSecond: 1,
  mode: "reject",
  maxWaitMs: 5_000,
};
const perCaller: RateLimitOptions = { ...perTool, scope: "principal", capacity: 100 };

function watch() {
  let now = 1_000_000;
  const policies = { policiesFor: () => ({ timeoutMs: 1_000, rateLimit: [perTool, perCaller] }) };
  const buckets = new BucketWatch(policies, () => now);
  const call = (limit: unknown, principal = "alice"): FinishedCall => ({
    route,
    principal,
    outcome: "ok",
    durationMs: 1,
    notes: new Map([[NOTES.limit, limit]]),
  });
  return { buckets, call, advance: (ms: number) => (now += ms) };
}

test("a bucket below a quarter of its size is near empty; its level refills with time", () => {
  const { buckets, call, advance } = watch();
  const key = bucketKey(perTool, binding, "alice");
  buckets.record(call({ key, remaining: 1, waitedMs: 0 }));
  let [row] = buckets.nearEmpty();
  assert.equal(row?.key, key);
  assert.equal(row?.capacity, 10);
  assert.equal(row?.level, 1);
  assert.equal(row?.scope, "tool");
  advance(1_000);
  [row] = buckets.nearEmpty();
  assert.equal(row?.level, 2);
  advance(1_000);
  assert.deepEqual(buckets.nearEmpty(), [], "2.x of 10 is no longer near empty");
});

test("the key names the limit: a per-caller bucket is matched to its own size", () => {
  const { buckets, call } = watch();
  const key = bucketKey(perCaller, binding, "bob");
  buckets.record(call({ key, remaining: 0, rejected: true }, "bob"));
  const [row] = buckets.nearEmpty();
  assert.equal(row?.capacity, 100);
  assert.equal(row?.rejected, true);
});

test("calls without a limit note, or with a key no limit makes, are ignored; full buckets are forgotten", () => {
  const { buckets, call, advance } = watch();
  buckets.record({ ...call(undefined), notes: new Map() });
  buckets.record(call({ key: "rl:other", remaining: 0 }));
  assert.deepEqual(buckets.nearEmpty(), []);
  buckets.record(call({ key: bucketKey(perTool, binding, "alice"), remaining: 0 }));
  advance(60_000);
  assert.deepEqual(buckets.nearEmpty(), []);
});
