import assert from "node:assert/strict";
import { afterEach, describe, mock, test } from "node:test";
import type { HealthResult } from "../../../src/core/types.ts";
import {
  backendCheck,
  createHealthChecker,
  eventLoopCheck,
  type HealthCheck,
  healthRows,
  heapCheck,
  storeCheck,
} from "../../../src/observability/health.ts";

function deferred<T = void>() {
  let resolve!: (value: T) => void;
  const promise = new Promise<T>((r) => {
    resolve = r;
  });
  return { promise, resolve };
}

/** Lets promise callbacks run (setImmediate is not faked). */
async function flush(rounds = 5): Promise<void> {
  for (let i = 0; i < rounds; i++) await new Promise((resolve) => setImmediate(resolve));
}

function fixed(
  name: string,
  result: HealthResult,
  required = true,
  kind: HealthCheck["kind"] = "backend",
): HealthCheck & { runs: number } {
  const check = {
    name,
    kind,
    required,
    runs: 0,
    run: () => {
      check.runs++;
      return Promise.resolve(result);
    },
  };
  return check;
}

describe("health checker", () => {
  afterEach(() => mock.timers.reset());

  test("runs the checks in parallel", async () => {
    let running = 0;
    let most = 0;
    const bothStarted = deferred();
    const slow = (name: string): HealthCheck => ({
      name,
      kind: "backend",
      required: true,
      run: async () => {
        running++;
        most = Math.max(most, running);
        if (running === 2) bothStarted.resolve();
        // Each waits for the other to have started: run one after the other, they would time out.
        await bothStarted.promise;
        running--;
        return { status: "healthy" };
      },
    });
    const checker = createHealthChecker({ checks: [slow("a"), slow("b")], timeoutMs: 10_000, cacheMs: 0 });
    const report = await checker.report();
    assert.equal(most, 2);
    assert.equal(report.status, "healthy");
    assert.deepEqual(Object.keys(report.checks), ["a", "b"]);
  });

  test("a hung check times out as unhealthy, is aborted, and does not hold up the others", async () => {
    mock.timers.enable({ apis: ["setTimeout"] });
    let seen: AbortSignal | undefined;
    const hung: HealthCheck = {
      name: "hung",
      kind: "backend",
      required: true,
      run: (signal) => {
        seen = signal;
        return new Promise<HealthResult>(() => {});
      },
    };
    const checker = createHealthChecker({
      checks: [hung, fixed("fine", { status: "healthy", latencyMs: 3 })],
      timeoutMs: 2000,
      cacheMs: 0,
    });
    let settled = false;
    const pending = checker.report().then((report) => {
      settled = true;
      return report;
    });
    await flush();
    mock.timers.tick(1999);
    await flush();
    assert.equal(settled, false);
    assert.equal(seen?.aborted, false);
    mock.timers.tick(1);
    const report = await pending;
    assert.equal(seen?.aborted, true);
    assert.deepEqual(report.checks.hung, {
      kind: "backend",
      required: true,
      status: "unhealthy",
      detail: "timed out after 2000 ms",
      latencyMs: report.checks.hung?.latencyMs,
    });
    assert.equal(report.checks.fine?.status, "healthy");
    assert.equal(report.checks.fine?.latencyMs, 3, "a check's own latency is kept");
    assert.equal(report.status, "unhealthy");
    assert.equal(report.ready, false);
    assert.deepEqual(report.reasons, ["hung: timed out after 2000 ms"]);
  });

  test("reuses a report for cacheMs and gives concurrent callers the one in progress", async () => {
    let now = 1_000_000;
    const gate = deferred();
    let runs = 0;
    const gated: HealthCheck = {
      name: "db",
      kind: "backend",
      required: true,
      run: async () => {
        runs++;
        await gate.promise;
        return { status: "healthy" };
      },
    };
    const checker = createHealthChecker({
      checks: [gated],
      timeoutMs: 10_000,
      cacheMs: 1000,
      now: () => now,
    });
    const first = checker.report();
    const second = checker.report();
    const third = checker.report();
    gate.resolve();
    const reports = await Promise.all([first, second, third]);
    assert.equal(runs, 1);
    assert.ok(reports.every((report) => report === reports[0]));
    assert.equal(reports[0]?.checkedAt, new Date(1_000_000).toISOString());

    now += 999;
    assert.equal(await checker.report(), reports[0]);
    assert.equal(runs, 1);
    now += 1;
    const fresh = await checker.report();
    assert.equal(runs, 2);
    assert.notEqual(fresh, reports[0]);

    const uncached = fixed("db", { status: "healthy" });
    const noCache = createHealthChecker({ checks: [uncached], timeoutMs: 1000, cacheMs: 0, now: () => now });
    await Promise.all([noCache.report(), noCache.report()]);
    assert.equal(uncached.runs, 1, "concurrent callers share a run even without caching");
    await noCache.report();
    assert.equal(uncached.runs, 2);
  });

  test("status rules: required unhealthy is unhealthy and not ready; anything else not healthy degrades", async () => {
    const statusOf = async (checks: HealthCheck[]) => {
      const report = await createHealthChecker({ checks, timeoutMs: 1000, cacheMs: 0 }).report();
      return { status: report.status, ready: report.ready, reasons: report.reasons };
    };
    const up = fixed("up", { status: "healthy" });
    assert.deepEqual(await statusOf([up]), { status: "healthy", ready: true, reasons: [] });
    assert.deepEqual(await statusOf([]), { status: "healthy", ready: true, reasons: [] });
    assert.deepEqual(
      await statusOf([up, fixed("optional", { status: "unhealthy", detail: "down" }, false)]),
      { status: "degraded", ready: true, reasons: [] },
    );
    assert.deepEqual(await statusOf([up, fixed("slow", { status: "degraded", detail: "busy" })]), {
      status: "degraded",
      ready: true,
      reasons: [],
    });
    assert.deepEqual(
      await statusOf([
        up,
        fixed("db", { status: "unhealthy", detail: "connection refused" }),
        fixed("optional", { status: "unhealthy" }, false),
      ]),
      { status: "unhealthy", ready: false, reasons: ["db: connection refused"] },
    );
  });

  test("a check that throws or rejects is unhealthy with its message", async () => {
    const throwing: HealthCheck = {
      name: "sync",
      kind: "store",
      required: false,
      run: () => {
        throw new Error("no store");
      },
    };
    const rejecting: HealthCheck = {
      name: "async",
      kind: "backend",
      required: true,
      run: () => Promise.reject(new Error("ECONNREFUSED")),
    };
    const report = await createHealthChecker({
      checks: [throwing, rejecting],
      timeoutMs: 1000,
      cacheMs: 0,
    }).report();
    assert.equal(report.checks.sync?.status, "unhealthy");
    assert.equal(report.checks.sync?.detail, "no store");
    assert.equal(report.checks.async?.detail, "ECONNREFUSED");
    assert.deepEqual(report.reasons, ["async: ECONNREFUSED"]);
  });

  test("the report shape, and checks given as a function are read on every run", async () => {
    let checks: HealthCheck[] = [
      fixed("db", { status: "healthy", latencyMs: 2, data: { pool: { idle: 1 } } }),
    ];
    const checker = createHealthChecker({ checks: () => checks, timeoutMs: 1000, cacheMs: 0 });
    const report = await checker.report();
    assert.deepEqual(Object.keys(report).sort(), [
      "checkedAt",
      "checks",
      "durationMs",
      "ready",
      "reasons",
      "status",
    ]);
    assert.deepEqual(report.checks.db, {
      kind: "backend",
      required: true,
      status: "healthy",
      latencyMs: 2,
      data: { pool: { idle: 1 } },
    });
    assert.doesNotThrow(() => JSON.parse(JSON.stringify(report)));
    checks = [fixed("web", { status: "healthy" })];
    assert.deepEqual(Object.keys((await checker.report()).checks), ["web"]);
  });

  test("backend and store adapters", async () => {
    let signalSeen: AbortSignal | undefined;
    const backend = backendCheck(
      {
        name: "db",
        health: async (signal) => {
          signalSeen = signal;
          return { status: "degraded", detail: "pool busy" };
        },
      },
      false,
    );
    let failClosed = false;
    const store = storeCheck(
      { health: () => ({ status: "unhealthy", detail: "redis down" }) },
      () => failClosed,
    );
    const checker = createHealthChecker({ checks: [backend, store], timeoutMs: 1000, cacheMs: 0 });
    let report = await checker.report();
    assert.ok(signalSeen instanceof AbortSignal);
    assert.equal(report.checks.db?.kind, "backend");
    assert.equal(report.checks.store?.kind, "store");
    assert.equal(report.checks.store?.required, false);
    assert.equal(report.status, "degraded");
    failClosed = true;
    report = await checker.report();
    assert.equal(report.checks.store?.required, true);
    assert.deepEqual(report.reasons, ["store: redis down"]);
  });

  test("heap check", async () => {
    const fine = await heapCheck(1).run(new AbortController().signal);
    assert.equal(fine.status, "healthy");
    assert.ok((fine.data?.usedBytes as number) > 0);
    assert.ok((fine.data?.limitBytes as number) > (fine.data?.usedBytes as number));
    const tight = await heapCheck(1e-9).run(new AbortController().signal);
    assert.equal(tight.status, "degraded");
    assert.match(tight.detail ?? "", /of the heap limit in use, above 0%/);
  });

  test("event loop check: degraded after a stall, then measured afresh; close stops it", async () => {
    const check = eventLoopCheck(50);
    const signal = new AbortController().signal;
    /** The next result with samples in it (each such result starts a new measurement). */
    const measured = async () => {
      const deadline = Date.now() + 5000;
      for (;;) {
        const result = await check.run(signal);
        if (result.detail !== "no samples yet") return result;
        assert.ok(Date.now() < deadline, "the delay monitor took no samples within 5 s");
        await new Promise((resolve) => setImmediate(resolve));
      }
    };
    try {
      await measured(); // whatever start-up cost, from here on the loop is measured afresh
      // After each read the monitor's next tick only marks a start: a stall before it goes unseen.
      // Its timer (every 10 ms) is due before one set for 11 ms, and libuv runs due timers in order,
      // so once this one fires, the monitor has ticked.
      // On a loaded machine the monitor's tick can still land after the stall: a few tries, each a
      // stall of its own, and at least one must be seen.
      let stalled: Awaited<ReturnType<typeof measured>>;
      let attempts = 0;
      do {
        await new Promise((resolve) => setTimeout(resolve, 11));
        const stallUntil = performance.now() + 150;
        while (performance.now() < stallUntil) {
          // Blocks the event loop, as a synchronous hot spot would.
        }
        stalled = await measured();
      } while (stalled.status !== "degraded" && ++attempts < 5);
      assert.equal(stalled.status, "degraded", stalled.detail);
      assert.ok((stalled.data?.p99Ms as number) > 50);
      assert.match(stalled.detail ?? "", /above 50 ms/);
    } finally {
      check.close?.();
      check.close?.();
    }
    assert.equal((await check.run(signal)).detail, "not measured (closed)");

    const checker = createHealthChecker({ checks: [eventLoopCheck(1000)], timeoutMs: 1000, cacheMs: 0 });
    const report = await checker.report();
    assert.equal(report.checks.eventLoop?.kind, "process");
    assert.equal(report.checks.eventLoop?.required, false);
    checker.close();
  });

  test("rows for the CLI table: header, then required checks first, by name", async () => {
    const report = await createHealthChecker({
      checks: [
        fixed("heap", { status: "healthy", detail: "12.0% of the heap limit in use" }, false, "process"),
        fixed("web", { status: "unhealthy", detail: "refused", latencyMs: 12.6 }),
        fixed("db", { status: "healthy", latencyMs: 1 }),
      ],
      timeoutMs: 1000,
      cacheMs: 0,
    }).report();
    const rows = healthRows(report);
    assert.deepEqual(rows[0], ["check", "kind", "required", "status", "latency", "detail"]);
    assert.deepEqual(rows.slice(1, 3), [
      ["db", "backend", "yes", "healthy", "1 ms", ""],
      ["web", "backend", "yes", "unhealthy", "13 ms", "refused"],
    ]);
    assert.deepEqual(rows[3]?.slice(0, 4), ["heap", "process", "no", "healthy"]);
    assert.equal(rows.length, 4);
  });
});
