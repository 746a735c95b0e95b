/**
 * The health checker behind /healthz, /readyz and the gateway's health tool.
 *
 * Probes come often and from many places (load balancers, Kubernetes, scrapers, agents), and every
 * report asks every backend. So checks run in parallel, each under its own timeout (a hung backend
 * makes one check unhealthy, never the report late), and a report is reused for `cacheMs`, with
 * callers that arrive while one is being made waiting for that one: however many probes come, the
 * backends see at most one round of checks per `cacheMs`.
 */
import { monitorEventLoopDelay, performance } from "node:perf_hooks";
import { getHeapStatistics } from "node:v8";
import { describeError } from "../core/errors.ts";
import type { Backend, HealthResult } from "../core/types.ts";

export type HealthStatus = HealthResult["status"];

export type HealthCheckKind = "backend" | "store" | "process";

export interface HealthCheck {
  /** Unique among the checks; the key in the report. */
  readonly name: string;
  readonly kind: HealthCheckKind;
  /** When true, this check being unhealthy makes the gateway unhealthy and not ready. */
  readonly required: boolean;
  /** Should stop when `signal` aborts (on timeout); a check that does not is abandoned anyway. */
  run(signal: AbortSignal): Promise<HealthResult> | HealthResult;
  /** Frees what the check holds (timers, monitors); called by the checker's `close`. */
  close?(): void;
}

export interface CheckReport {
  readonly kind: HealthCheckKind;
  readonly required: boolean;
  readonly status: HealthStatus;
  readonly detail?: string;
  /** The check's own latency when it reports one (e.g. a ping), else how long the check took. */
  readonly latencyMs: number;
  readonly data?: Record<string, unknown>;
}

export interface HealthReport {
  /** unhealthy: a required check is unhealthy; degraded: some check is not healthy; else healthy. */
  readonly status: HealthStatus;
  /** True when no required check is unhealthy (for /readyz). */
  readonly ready: boolean;
  /** Why not ready: one "name: detail" per failing required check; empty when ready. */
  readonly reasons: readonly string[];
  /** When the checks started (ISO 8601). */
  readonly checkedAt: string;
  readonly durationMs: number;
  readonly checks: Readonly<Record<string, CheckReport>>;
}

export interface HealthCheckerOptions {
  /** The checks, or a function giving the current ones (servers may come and go). */
  readonly checks: readonly HealthCheck[] | (() => readonly HealthCheck[]);
  /** How long one check may take before it is unhealthy, in ms. */
  readonly timeoutMs: number;
  /** How long a report is reused, in ms; 0 reuses none (concurrent callers still share one run). */
  readonly cacheMs: number;
  /** Clock for `checkedAt` and the cache, in epoch ms. Default `Date.now`. */
  readonly now?: () => number;
}

export interface HealthChecker {
  /** The current report: cached if fresh, the one being made if any, else a new one. Never rejects. */
  report(): Promise<HealthReport>;
  /** Closes the checks that hold resources (see `eventLoopCheck`). */
  close(): void;
}

export function createHealthChecker(options: HealthCheckerOptions): HealthChecker {
  const { timeoutMs, cacheMs } = options;
  const now = options.now ?? (() => Date.now());
  const current =
    typeof options.checks === "function" ? options.checks : () => options.checks as HealthCheck[];
  let cached: { report: HealthReport; expiresAt: number } | undefined;
  let running: Promise<HealthReport> | undefined;

  const make = async (): Promise<HealthReport> => {
    const checks = current();
    const startedAt = now();
    const started = performance.now();
    const results = await Promise.all(checks.map((check) => runCheck(check, timeoutMs)));
    const report = summarize(checks, results, startedAt, performance.now() - started);
    cached = { report, expiresAt: now() + cacheMs };
    return report;
  };

  return {
    report() {
      if (cached && now() < cached.expiresAt) return Promise.resolve(cached.report);
      running ??= make().finally(() => {
        running = undefined;
      });
      return running;
    },
    close() {
      for (const check of current()) check.close?.();
    },
  };
}

async function runCheck(check: HealthCheck, timeoutMs: number): Promise<CheckReport> {
  // Read once: a check may compute it (storeCheck), and the report must agree with itself.
  const required = check.required;
  const controller = new AbortController();
  let timer: NodeJS.Timeout | undefined;
  const timedOut = new Promise<HealthResult>((resolve) => {
    timer = setTimeout(() => {
      controller.abort(new Error(`health check "${check.name}" timed out after ${timeoutMs} ms`));
      resolve({ status: "unhealthy", detail: `timed out after ${timeoutMs} ms` });
    }, timeoutMs);
    // A check in progress is no reason to keep a shutting-down process alive.
    timer.unref();
  });
  const started = performance.now();
  let result: HealthResult;
  try {
    result = await Promise.race([Promise.resolve().then(() => check.run(controller.signal)), timedOut]);
  } catch (error) {
    result = { status: "unhealthy", detail: describeError(error) };
  } finally {
    clearTimeout(timer);
  }
  const latencyMs = result.latencyMs ?? Math.round((performance.now() - started) * 100) / 100;
  return {
    kind: check.kind,
    required,
    status: result.status,
    ...(result.detail === undefined ? {} : { detail: result.detail }),
    latencyMs,
    ...(result.data === undefined ? {} : { data: result.data }),
  };
}

function summarize(
  checks: readonly HealthCheck[],
  results: readonly CheckReport[],
  startedAt: number,
  durationMs: number,
): HealthReport {
  const byName: Record<string, CheckReport> = {};
  const reasons: string[] = [];
  let degraded = false;
  let unhealthy = false;
  checks.forEach((check, i) => {
    const result = results[i] as CheckReport;
    byName[check.name] = result;
    if (result.status !== "healthy") degraded = true;
    if (result.required && result.status === "unhealthy") {
      unhealthy = true;
      reasons.push(`${check.name}: ${result.detail ?? "unhealthy"}`);
    }
  });
  return {
    status: unhealthy ? "unhealthy" : degraded ? "degraded" : "healthy",
    ready: !unhealthy,
    reasons,
    checkedAt: new Date(startedAt).toISOString(),
    durationMs: Math.round(durationMs * 100) / 100,
    checks: byName,
  };
}

/** A check of one backend through its own `health(signal)`. */
export function backendCheck(backend: Pick<Backend, "name" | "health">, required: boolean): HealthCheck {
  return {
    name: backend.name,
    kind: "backend",
    required,
    run: (signal) => backend.health(signal),
  };
}

/**
 * A check of the store. Its health is known without a round trip (the store tracks its connection),
 * so it costs nothing. Make it required when the store fails closed for some use: then an outage
 * fails calls, and the gateway should not get traffic.
 */
export function storeCheck(
  store: { health(): HealthResult },
  required: boolean | (() => boolean),
  name = "store",
): HealthCheck {
  return {
    name,
    kind: "store",
    get required() {
      return typeof required === "function" ? required() : required;
    },
    run: () => store.health(),
  };
}

/**
 * Degraded when the V8 heap holds more than `threshold` (0 to 1) of its limit: the process is near
 * an out-of-memory crash and spends ever more time in GC.
 */
export function heapCheck(threshold: number, name = "heap"): HealthCheck {
  return {
    name,
    kind: "process",
    required: false,
    run: () => {
      const { used_heap_size: used, heap_size_limit: limit } = getHeapStatistics();
      const ratio = used / limit;
      const data = { usedBytes: used, limitBytes: limit, ratio: Math.round(ratio * 1000) / 1000 };
      const percent = `${(ratio * 100).toFixed(1)}% of the heap limit in use`;
      return ratio > threshold
        ? {
            status: "degraded",
            detail: `${percent}, above ${(threshold * 100).toFixed(0)}%; the process may run out of memory`,
            data,
          }
        : { status: "healthy", detail: percent, data };
    },
  };
}

/**
 * Degraded when the event loop's delay (p99 since the previous check) is above `thresholdMs`: every
 * call waits that long on top of its own work. The delay monitor starts with the check and runs
 * until `close()`; it does not keep the process alive. After each read the monitor needs one tick
 * (10 ms) to start measuring again, so a stall in that moment is missed: a trade for reports that
 * say how the loop is now rather than since start.
 */
export function eventLoopCheck(thresholdMs: number, name = "eventLoop"): HealthCheck {
  const resolutionMs = 10;
  const histogram = monitorEventLoopDelay({ resolution: resolutionMs });
  histogram.enable();
  // The monitor records the time between its timer's runs, which includes the timer's own interval.
  const delayMs = (ns: number) => round(Math.max(0, ns / 1e6 - resolutionMs));
  let closed = false;
  return {
    name,
    kind: "process",
    required: false,
    run: () => {
      if (closed) return { status: "healthy", detail: "not measured (closed)" };
      if (histogram.count === 0) return { status: "healthy", detail: "no samples yet" };
      const data = {
        p50Ms: delayMs(histogram.percentile(50)),
        p99Ms: delayMs(histogram.percentile(99)),
        maxMs: delayMs(histogram.max),
      };
      // Each report covers the time since the last one, so that an old stall does not linger.
      histogram.reset();
      return data.p99Ms > thresholdMs
        ? {
            status: "degraded",
            detail: `event loop delay p99 ${data.p99Ms} ms, above ${thresholdMs} ms`,
            data,
          }
        : { status: "healthy", detail: `event loop delay p99 ${data.p99Ms} ms`, data };
    },
    close: () => {
      if (closed) return;
      closed = true;
      histogram.disable();
    },
  };
}

function round(ms: number): number {
  return Math.round(ms * 100) / 100;
}

/**
 * The report as table rows for the CLI's printer: a header row, then one row per check, required
 * checks first, each group by name.
 */
export function healthRows(report: HealthReport): string[][] {
  const rows = Object.entries(report.checks)
    .sort(([a, x], [b, y]) => Number(y.required) - Number(x.required) || a.localeCompare(b))
    .map(([name, check]) => [
      name,
      check.kind,
      check.required ? "yes" : "no",
      check.status,
      `${Math.round(check.latencyMs)} ms`,
      check.detail ?? "",
    ]);
  return [["check", "kind", "required", "status", "latency", "detail"], ...rows];
}
