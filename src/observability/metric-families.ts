/**
 * Every metric a gateway serves, defined in one place: name (after the configured prefix), help text
 * and labels. Two gauges are read at scrape time (PostgreSQL pools, the store's health); the rest are
 * set by PrometheusMetrics (metrics.ts) as calls and policy events happen.
 *
 * Node's process metrics (CPU, memory, event loop, GC) describe the process, not a gateway, so they
 * come from one collector per process, served by every gateway that asks for them. prom-client's
 * collector starts a GC observer and an event-loop timer that it never stops; one per gateway would
 * pile up with every gateway a process creates.
 */
import { Counter, collectDefaultMetrics, Gauge, Histogram, Registry } from "prom-client";
import type { HealthResult } from "../core/types.ts";
import type { BreakerState } from "../policies/types.ts";

/**
 * Buckets from 0.5 ms (a cache hit) to 30 s (a slow tool near a typical timeout), about ×2–2.5
 * apart so that any quantile is estimated within a bucket of that width.
 */
export const DURATION_BUCKETS: readonly number[] = Object.freeze([
  0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30,
]);

/** The value of `breaker_state` for each state. */
export const BREAKER_VALUE: Readonly<Record<BreakerState, number>> = { closed: 0, "half-open": 1, open: 2 };

/** What `registerPoolStats` reads on every scrape; `max` is optional. */
export interface PoolCounts {
  readonly total: number;
  readonly idle: number;
  readonly waiting: number;
  readonly max?: number;
}

export interface MetricFamilies {
  readonly calls: Counter<string>;
  readonly duration: Histogram<string>;
  readonly served: Counter<string>;
  readonly inFlight: Gauge<string>;
  readonly cache: Counter<string>;
  readonly invalidatedEntries: Counter<string>;
  readonly rejections: Counter<string>;
  readonly waits: Counter<string>;
  readonly restarts: Counter<string>;
  readonly retries: Counter<string>;
  readonly budgetExhausted: Counter<string>;
  readonly fallbacks: Counter<string>;
  readonly bulkhead: Counter<string>;
  readonly breakerTransitions: Counter<string>;
  readonly breaker: Gauge<string>;
  readonly backendUp: Gauge<string>;
  readonly storeUp: Gauge<string>;
  readonly reloads: Counter<string>;
  readonly definitionChanges: Counter<string>;
}

/** What the scrape-time gauges read: the pools registered now, and the store's health reader. */
export interface ScrapeSources {
  readonly pools: ReadonlyMap<string, () => PoolCounts>;
  storeHealth(): (() => HealthResult) | undefined;
}

/** The metrics of one gateway, registered on `registry` with names that start with `prefix`. */
export function createMetricFamilies(
  registry: Registry,
  prefix: string,
  sources: ScrapeSources,
): MetricFamilies {
  const registers = [registry];
  const counter = (name: string, help: string, labelNames: string[]) =>
    new Counter({ name: prefix + name, help, labelNames, registers });
  const gauge = (name: string, help: string, labelNames: string[]) =>
    new Gauge({ name: prefix + name, help, labelNames, registers });

  const families = {
    calls: counter(
      "calls_total",
      "Requests through the gateway by kind (tools/call, resources/read, prompts/get, completion/complete), " +
        "route (the exposed tool or prompt, or <kind>@<server>) and outcome (ok, tool_error, error, denied, " +
        "rate_limited, invalid, timeout, circuit_open, bulkhead_full, cancelled, unavailable).",
      ["server", "tool", "outcome", "kind"],
    ),
    duration: new Histogram({
      name: `${prefix}call_duration_seconds`,
      help: "Duration of requests through the gateway, policies included, by kind and outcome.",
      labelNames: ["server", "tool", "outcome", "kind"],
      buckets: [...DURATION_BUCKETS],
      registers,
    }),
    served: counter(
      "calls_served_total",
      "Answered tool calls by who answered: backend, cache or fallback.",
      ["server", "tool", "source"],
    ),
    inFlight: gauge("calls_in_flight", "Tool calls in progress.", ["server"]),
    cache: counter(
      "cache_events_total",
      "Result cache events (hit, miss, coalesced, stored, skipped, invalidated, error); tool is empty " +
        "for server-wide invalidations.",
      ["server", "tool", "outcome"],
    ),
    invalidatedEntries: counter(
      "cache_invalidated_entries_total",
      "Cached results dropped by invalidations.",
      ["server"],
    ),
    rejections: counter("rate_limit_rejections_total", "Calls refused by a rate limit, by limit scope.", [
      "server",
      "tool",
      "scope",
    ]),
    waits: counter("rate_limit_waits_total", "Calls that waited for a rate limit's tokens, by limit scope.", [
      "server",
      "tool",
      "scope",
    ]),
    restarts: counter("backend_restarts_total", "Times a backend came back up after being down.", ["server"]),
    reloads: counter(
      "config_reloads_total",
      "Config reloads by outcome: applied, or invalid (the file was refused and the gateway kept running " +
        "the config it had).",
      ["outcome"],
    ),
    definitionChanges: counter(
      "tool_definition_changes_total",
      "Tool definitions seen that differ from the pinned ones (config pinning), once per new definition, by " +
        "mode: warn (still listed) or block (hidden until approved).",
      ["server", "tool", "mode"],
    ),
    retries: counter("retries_total", "Retried attempts of tool calls.", ["server", "tool"]),
    budgetExhausted: counter(
      "retry_budget_exhausted_total",
      "Retries wanted but refused by the server's retry budget.",
      ["server", "tool"],
    ),
    fallbacks: counter("fallbacks_total", "Fallback chains run, by outcome (answered, exhausted).", [
      "server",
      "tool",
      "outcome",
    ]),
    bulkhead: counter(
      "bulkhead_events_total",
      "Calls that queued for, or were refused by, a server's bulkhead.",
      ["server", "tool", "outcome"],
    ),
    breakerTransitions: counter(
      "breaker_transitions_total",
      "Circuit breaker state changes, by the state entered.",
      ["server", "to"],
    ),
    breaker: gauge("breaker_state", "Circuit breaker state: 0 closed, 1 half-open, 2 open.", ["server"]),
    backendUp: gauge("backend_up", "1 when the backend is connected and serving, else 0.", ["server"]),
  };
  registerPoolGauge(prefix, registry, sources.pools);
  return {
    ...families,
    storeUp: new Gauge({
      name: `${prefix}store_up`,
      help: "1 when the store (memory or Redis) is healthy, else 0.",
      registers,
      collect() {
        const read = sources.storeHealth();
        if (!read) return;
        try {
          this.set(read().status === "healthy" ? 1 : 0);
        } catch {
          this.set(0);
        }
      },
    }),
  };
}

/** PostgreSQL pool connections, read from `pools` at scrape time. */
function registerPoolGauge(
  prefix: string,
  registry: Registry,
  pools: ReadonlyMap<string, () => PoolCounts>,
): void {
  // Registered for its collect callback only: it reads the pools at scrape time.
  new Gauge({
    name: `${prefix}pg_pool_connections`,
    help: "PostgreSQL pool connections by state (total, idle, waiting calls, max), read at scrape time.",
    labelNames: ["server", "state"],
    registers: [registry],
    collect() {
      // Reset so that a pool unregistered since the last scrape leaves no stale series.
      this.reset();
      for (const [server, read] of pools) {
        let counts: PoolCounts;
        try {
          counts = read();
        } catch {
          continue; // A pool that cannot report must not fail the whole scrape.
        }
        this.labels(server, "total").set(counts.total);
        this.labels(server, "idle").set(counts.idle);
        this.labels(server, "waiting").set(counts.waiting);
        if (counts.max !== undefined) this.labels(server, "max").set(counts.max);
      }
    },
  });
}

let processRegistry: Registry | undefined;

/** The process-wide registry of Node's default metrics, started on first use. */
export function processMetrics(): Registry {
  if (!processRegistry) {
    processRegistry = new Registry();
    collectDefaultMetrics({ register: processRegistry });
  }
  return processRegistry;
}
