import assert from "node:assert/strict";
import { test } from "node:test";
import { CallSeries, SERIES_SPAN_MS } from "../../../src/console/series.ts";
import { createToolStats } from "../../../src/observability/tool-stats.ts";

function clock(start = 1_000_000) {
  let now = start;
  return { now: () => now, advance: (ms: number) => (now += ms) };
}

test("a point counts the calls of its interval only, with their error rate and percentiles", () => {
  const stats = createToolStats();
  stats.record("a", 100, "ok"); // before the console started: in no interval
  const time = clock();
  const series = new CallSeries(stats, time.now);
  for (let ms = 1; ms <= 100; ms++) stats.record("a", ms, ms % 10 === 0 ? "error" : "ok");
  stats.record("b", 500, "ok");
  time.advance(2_000);
  const point = series.sample();
  assert.equal(point.calls, 101);
  assert.equal(point.callsPerSecond, 50.5);
  assert.equal(point.errorRate, Math.round((10 / 101) * 10_000) / 10_000);
  assert.equal(point.p50Ms, 51);
  assert.equal(point.p99Ms, 100);

  time.advance(2_000);
  const quiet = series.sample();
  assert.deepEqual(
    [quiet.calls, quiet.callsPerSecond, quiet.errorRate, quiet.p50Ms, quiet.p99Ms],
    [0, 0, null, null, null],
  );
});

test("a tool forgotten and called again counts from zero; more calls than kept use the latest", () => {
  const stats = createToolStats({ window: 4 });
  const time = clock();
  const series = new CallSeries(stats, time.now);
  for (const ms of [1, 2, 3, 4, 5, 6]) stats.record("a", ms, "ok");
  time.advance(1_000);
  const point = series.sample();
  assert.equal(point.calls, 6);
  assert.equal(point.p50Ms, 4); // over the 4 kept: 3, 4, 5, 6
  stats.forget("a");
  stats.record("a", 9, "error");
  time.advance(1_000);
  const after = series.sample();
  assert.deepEqual([after.calls, after.errorRate, after.p99Ms], [1, 1, 9]);
});

test("the series keeps 15 minutes", () => {
  const stats = createToolStats();
  const time = clock();
  const series = new CallSeries(stats, time.now);
  for (let i = 0; i < 500; i++) {
    time.advance(2_000);
    series.sample();
  }
  const points = series.points();
  assert.equal(points.length, SERIES_SPAN_MS / 2_000 + 1);
  assert.ok((points[0]?.at ?? 0) >= time.now() - SERIES_SPAN_MS);
});

test("latest() gives a tool's last durations in order, and totals() its counts", () => {
  const stats = createToolStats({ window: 3 });
  for (const ms of [1, 2, 3, 4, 5]) stats.record("a", ms, ms === 5 ? "timeout" : "ok");
  assert.deepEqual([...stats.latest("a", 2)], [4, 5]);
  assert.deepEqual([...stats.latest("a", 10)], [3, 4, 5]);
  assert.deepEqual([...stats.latest("missing", 2)], []);
  assert.deepEqual(stats.totals().get("a"), { count: 5, errors: 1 });
});
