import assert from "node:assert/strict";
import { describe, test } from "node:test";
import { createToolStats, percentile } from "../../../src/observability/tool-stats.ts";

/** 1..n in a fixed scrambled order, so that nothing relies on the input being sorted. */
function scrambled(n: number): number[] {
  const values = Array.from({ length: n }, (_, i) => i + 1);
  for (let i = n - 1; i > 0; i--) {
    const j = (i * 7919) % (i + 1);
    [values[i], values[j]] = [values[j] as number, values[i] as number];
  }
  return values;
}

describe("tool stats", () => {
  test("exact nearest-rank percentiles, counts and errors", () => {
    const stats = createToolStats({ window: 1000 });
    for (const ms of scrambled(100)) stats.record("db__query", ms, ms % 10 === 0 ? "tool_error" : "ok");
    assert.deepEqual(stats.summary("db__query"), {
      count: 100,
      errors: 10,
      sampled: 100,
      p50: 50,
      p95: 95,
      p99: 99,
    });

    const few = createToolStats();
    for (const ms of [0.5, 200, 3]) few.record("web__get", ms, "ok");
    assert.deepEqual(few.summary("web__get"), {
      count: 3,
      errors: 0,
      sampled: 3,
      p50: 3,
      p95: 200,
      p99: 200,
    });
  });

  test("percentiles are over the last `window` calls; memory stays bounded", () => {
    const stats = createToolStats({ window: 4 });
    for (let ms = 1; ms <= 10; ms++) stats.record("db__query", ms, ms <= 6 ? "timeout" : "ok");
    // The window holds 7, 8, 9, 10; the counts are since start.
    assert.deepEqual(stats.summary("db__query"), {
      count: 10,
      errors: 6,
      sampled: 4,
      p50: 8,
      p95: 10,
      p99: 10,
    });

    for (let i = 0; i < 50_000; i++) stats.record("db__query", 1, "ok");
    assert.equal(stats.summary("db__query")?.sampled, 4);
    assert.equal(stats.summary("db__query")?.p99, 1);
  });

  test("snapshot by name, unknown tools, forget", () => {
    const stats = createToolStats();
    stats.record("b__x", 1, "ok");
    stats.record("a__y", 2, "error");
    assert.deepEqual(Object.keys(stats.snapshot()), ["a__y", "b__x"]);
    assert.equal(stats.summary("c__z"), undefined);
    stats.forget("a__y");
    assert.deepEqual(Object.keys(stats.snapshot()), ["b__x"]);
    assert.throws(() => createToolStats({ window: 0 }), RangeError);
  });

  test("percentile edge cases", () => {
    assert.equal(percentile([], 50), 0);
    assert.equal(percentile([7], 1), 7);
    assert.equal(percentile([7], 99), 7);
    assert.equal(percentile([1, 2], 50), 1);
    assert.equal(percentile([1, 2], 51), 2);
    assert.equal(percentile([1, 2, 3, 4], 0), 1);
    assert.equal(percentile([1, 2, 3, 4], 100), 4);
  });
});
