/**
 * Prometheus metrics of one gateway, on a registry of its own: several gateways live in one process
 * in tests and embeddings, and prom-client's global registry would make their metrics collide.
 *
 * The `tool` label is always the exposed tool name ("db__query"), the name clients and the policy
 * events use. Label values come from the catalog and the config, never from what a client sent:
 * a call for a tool that does not exist must not reach `callStarted`, or any client could create
 * series at will.
 *
 * Node's process metrics (CPU, memory, event loop, GC) describe the process, not a gateway, so they
 * come from one collector per process, served by every gateway that asks for them. prom-client's
 * collector starts a GC observer and an event-loop timer that it never stops; one per gateway would
 * pile up with every gateway a process creates.
 */
import type { EventEmitter } from "node:events";
import { performance } from "node:perf_hooks";
import { Counter, collectDefaultMetrics, Gauge, Histogram, Registry } from "prom-client";
import { isGatewayError } from "../core/errors.ts";
import type { ChainResult, HealthResult, RequestKind } from "../core/types.ts";
import type { BreakerState, PolicyEventMap } from "../policies/types.ts";
import { METRICS_DEFAULTS } from "./config.ts";

/**
 * How a call ended, as the `outcome` label of calls_total and call_duration_seconds:
 * - ok: the tool answered (from the backend, the cache or a fallback);
 * - tool_error: the tool ran and answered `isError` (its own failure, e.g. an SQL error);
 * - error: anything else that went wrong (a protocol error from the backend, an internal error);
 * - denied: the principal may not call the tool (unauthorized, forbidden);
 * - rate_limited: a rate limit refused the call;
 * - invalid: the arguments did not match the tool's input schema;
 * - timeout: the call ran out of time;
 * - circuit_open: the server's circuit breaker refused the call;
 * - bulkhead_full: the server's bulkhead had no free slot or queue place;
 * - cancelled: the client cancelled the call;
 * - unavailable: the backend (or a fail-closed store) could not be reached.
 */
export const CALL_OUTCOMES = [
  "ok",
  "tool_error",
  "error",
  "denied",
  "rate_limited",
  "invalid",
  "timeout",
  "circuit_open",
  "bulkhead_full",
  "cancelled",
  "unavailable",
] as const;

export type CallOutcome = (typeof CALL_OUTCOMES)[number];

/** Gateway error codes -> outcomes; codes not listed are "error". */
const OUTCOME_OF_CODE: Readonly<Record<string, CallOutcome>> = {
  backend_error: "tool_error",
  unauthorized: "denied",
  forbidden: "denied",
  rate_limited: "rate_limited",
  invalid_arguments: "invalid",
  timeout: "timeout",
  circuit_open: "circuit_open",
  bulkhead_full: "bulkhead_full",
  cancelled: "cancelled",
  backend_unavailable: "unavailable",
  store_unavailable: "unavailable",
  audit_unavailable: "unavailable",
};

/**
 * The outcome of a call that returned. An `isError` result made by the gateway (errors.ts
 * `errorResult`) carries its code under `_meta["switchboard/error"]`; one without a code came from
 * the tool itself.
 */
export function outcomeOfResult(result: ChainResult): CallOutcome {
  if (result.isError !== true) return "ok";
  const error = result._meta?.["switchboard/error"];
  const code = typeof error === "object" && error !== null ? (error as { code?: unknown }).code : undefined;
  return typeof code === "string" ? (OUTCOME_OF_CODE[code] ?? "error") : "tool_error";
}

/** The outcome of a call that threw. */
export function outcomeOfError(error: unknown): CallOutcome {
  return isGatewayError(error) ? (OUTCOME_OF_CODE[error.code] ?? "error") : "error";
}

/**
 * Buckets from 0.5 ms (a cache hit) to 30 s (a slow tool near a typical timeout), about ×2–2.5
 * apart so that any quantile is estimated within a bucket of that width.
 */
export const DURATION_BUCKETS: readonly number[] = Object.freeze([
  0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30,
]);

const BREAKER_VALUE: Readonly<Record<BreakerState, number>> = { closed: 0, "half-open": 1, open: 2 };

/** What `registerPoolStats` reads on every scrape; `max` is optional. */
export interface PoolCounts {
  readonly total: number;
  readonly idle: number;
  readonly waiting: number;
  readonly max?: number;
}

/**
 * Ends the measurement begun by `callStarted` and returns the call's duration in ms (e.g. for
 * ToolStats). `source` is the `notes` value "backend" | "cache" | "fallback:…" when known. Calling
 * it again does nothing and returns the first duration.
 */
export type CallDone = (outcome: CallOutcome, source?: string) => number;

/** Anything that emits the policy events: the PolicyRuntime. */
export type PolicyEventSource = Pick<EventEmitter<PolicyEventMap>, "on" | "off">;

export interface MetricsOptions {
  /** Start of every Switchboard metric name. Default: the config's `observability.metrics.prefix`. */
  readonly prefix?: string;
  /**
   * Also serve Node's process metrics (shared by the gateways of a process). Default: the config's
   * `observability.metrics.defaultMetrics`.
   */
  readonly defaultMetrics?: boolean;
}

export interface Metrics {
  /** This gateway's registry (without the process metrics, which `render` adds). */
  readonly registry: Registry;
  /** The Content-Type of `render()`'s output, for the /metrics response. */
  readonly contentType: string;
  /**
   * Call when a request enters its chain; call what it returns exactly once when it ends. `tool` is the
   * route's name (the exposed tool or prompt name, or `<kind>@<server>`).
   */
  callStarted(server: string, tool: string, kind?: RequestKind): CallDone;
  /** Counts one policy event. `subscribe` does this for every event of a runtime. */
  onPolicyEvent<K extends keyof PolicyEventMap>(event: K, payload: PolicyEventMap[K][0]): void;
  /** Listens to every policy event of `source`; returns the function that stops listening. */
  subscribe(source: PolicyEventSource): () => void;
  /** Sets `backend_up` (1 when the backend's state is "up"). */
  setBackendUp(server: string, up: boolean): void;
  /** Counts one restart (a reconnect after the backend went down). */
  backendRestarted(server: string): void;
  /** Sets `breaker_state`, e.g. at start from `PolicyRuntime.breakerStates()`; events keep it current. */
  setBreakerState(server: string, state: BreakerState): void;
  /** Reads a backend's pool on every scrape; returns the function that stops it. */
  registerPoolStats(server: string, read: () => PoolCounts): () => void;
  /** Reads the store's health on every scrape for `store_up`; returns the function that stops it. */
  registerStoreHealth(read: () => HealthResult): () => void;
  /** Sets `store_up` when no reader is registered. */
  setStoreUp(up: boolean): void;
  /**
   * Removes a server's gauges (up, breaker, in flight, pool) when it leaves the config; its counters
   * stay, as Prometheus expects. Call it once the server's calls have ended.
   */
  forgetServer(server: string): void;
  /** The Prometheus text exposition of this gateway's metrics (and the process metrics if enabled). */
  render(): Promise<string>;
}

interface OutcomeSeries {
  readonly calls: Counter.Internal;
  readonly duration: Histogram.Internal<string>;
}

/** The children of one (server, tool), bound once so a call does no label hashing. */
interface ToolSeries {
  readonly server: string;
  readonly tool: string;
  readonly kind: RequestKind;
  readonly inFlight: Gauge.Internal<string>;
  readonly outcomes: Map<CallOutcome, OutcomeSeries>;
  readonly sources: Map<string, Counter.Internal>;
}

let processRegistry: Registry | undefined;

/** The process-wide registry of Node's default metrics, started on first use. */
function processMetrics(): Registry {
  if (!processRegistry) {
    processRegistry = new Registry();
    collectDefaultMetrics({ register: processRegistry });
  }
  return processRegistry;
}

export function createMetrics(options: MetricsOptions = {}): Metrics {
  return new PrometheusMetrics(
    options.prefix ?? METRICS_DEFAULTS.prefix,
    options.defaultMetrics ?? METRICS_DEFAULTS.defaultMetrics,
  );
}

class PrometheusMetrics implements Metrics {
  readonly registry = new Registry();
  readonly contentType = this.registry.contentType;
  readonly #process: Registry | undefined;
  readonly #tools = new Map<string, Map<string, ToolSeries>>();
  /** Bound children of the event counters, by metric and label values. */
  readonly #children = new Map<Counter<string>, Map<string, Counter.Internal>>();
  readonly #pools = new Map<string, () => PoolCounts>();
  #storeHealth: (() => HealthResult) | undefined;

  readonly #calls: Counter<string>;
  readonly #duration: Histogram<string>;
  readonly #served: Counter<string>;
  readonly #inFlight: Gauge<string>;
  readonly #cache: Counter<string>;
  readonly #invalidatedEntries: Counter<string>;
  readonly #rejections: Counter<string>;
  readonly #waits: Counter<string>;
  readonly #restarts: Counter<string>;
  readonly #retries: Counter<string>;
  readonly #budgetExhausted: Counter<string>;
  readonly #fallbacks: Counter<string>;
  readonly #bulkhead: Counter<string>;
  readonly #breakerTransitions: Counter<string>;
  readonly #breaker: Gauge<string>;
  readonly #backendUp: Gauge<string>;
  readonly #storeUp: Gauge<string>;

  constructor(prefix: string, defaultMetrics: boolean) {
    const registers = [this.registry];
    const counter = (name: string, help: string, labelNames: string[]) =>
      new Counter({ name: prefix + name, help, labelNames, registers });
    const gauge = (name: string, help: string, labelNames: string[]) =>
      new Gauge({ name: prefix + name, help, labelNames, registers });

    this.#process = defaultMetrics ? processMetrics() : undefined;
    this.#calls = counter(
      "calls_total",
      "Requests through the gateway by kind (tools/call, resources/read, prompts/get, completion/complete), " +
        "route (the exposed tool or prompt, or <kind>@<server>) and outcome (ok, tool_error, error, denied, " +
        "rate_limited, invalid, timeout, circuit_open, bulkhead_full, cancelled, unavailable).",
      ["server", "tool", "outcome", "kind"],
    );
    this.#duration = new Histogram({
      name: `${prefix}call_duration_seconds`,
      help: "Duration of requests through the gateway, policies included, by kind and outcome.",
      labelNames: ["server", "tool", "outcome", "kind"],
      buckets: [...DURATION_BUCKETS],
      registers,
    });
    this.#served = counter(
      "calls_served_total",
      "Answered tool calls by who answered: backend, cache or fallback.",
      ["server", "tool", "source"],
    );
    this.#inFlight = gauge("calls_in_flight", "Tool calls in progress.", ["server"]);
    this.#cache = counter(
      "cache_events_total",
      "Result cache events (hit, miss, coalesced, stored, skipped, invalidated, error); tool is empty " +
        "for server-wide invalidations.",
      ["server", "tool", "outcome"],
    );
    this.#invalidatedEntries = counter(
      "cache_invalidated_entries_total",
      "Cached results dropped by invalidations.",
      ["server"],
    );
    this.#rejections = counter(
      "rate_limit_rejections_total",
      "Calls refused by a rate limit, by limit scope.",
      ["server", "tool", "scope"],
    );
    this.#waits = counter(
      "rate_limit_waits_total",
      "Calls that waited for a rate limit's tokens, by limit scope.",
      ["server", "tool", "scope"],
    );
    this.#restarts = counter("backend_restarts_total", "Times a backend came back up after being down.", [
      "server",
    ]);
    this.#retries = counter("retries_total", "Retried attempts of tool calls.", ["server", "tool"]);
    this.#budgetExhausted = counter(
      "retry_budget_exhausted_total",
      "Retries wanted but refused by the server's retry budget.",
      ["server", "tool"],
    );
    this.#fallbacks = counter("fallbacks_total", "Fallback chains run, by outcome (answered, exhausted).", [
      "server",
      "tool",
      "outcome",
    ]);
    this.#bulkhead = counter(
      "bulkhead_events_total",
      "Calls that queued for, or were refused by, a server's bulkhead.",
      ["server", "tool", "outcome"],
    );
    this.#breakerTransitions = counter(
      "breaker_transitions_total",
      "Circuit breaker state changes, by the state entered.",
      ["server", "to"],
    );
    this.#breaker = gauge("breaker_state", "Circuit breaker state: 0 closed, 1 half-open, 2 open.", [
      "server",
    ]);
    this.#backendUp = gauge("backend_up", "1 when the backend is connected and serving, else 0.", ["server"]);

    const pools = this.#pools;
    // Registered for its collect callback only: it reads the pools at scrape time.
    new Gauge({
      name: `${prefix}pg_pool_connections`,
      help: "PostgreSQL pool connections by state (total, idle, waiting calls, max), read at scrape time.",
      labelNames: ["server", "state"],
      registers,
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

    const self = this;
    this.#storeUp = new Gauge({
      name: `${prefix}store_up`,
      help: "1 when the store (memory or Redis) is healthy, else 0.",
      registers,
      collect() {
        const read = self.#storeHealth;
        if (!read) return;
        try {
          this.set(read().status === "healthy" ? 1 : 0);
        } catch {
          this.set(0);
        }
      },
    });
  }

  callStarted(server: string, tool: string, kind: RequestKind = "tools/call"): CallDone {
    const series = this.#series(server, tool, kind);
    series.inFlight.inc();
    const start = performance.now();
    let durationMs = -1;
    return (outcome, source) => {
      if (durationMs >= 0) return durationMs;
      durationMs = performance.now() - start;
      series.inFlight.dec();
      const bound = this.#outcome(series, outcome);
      bound.calls.inc();
      bound.duration.observe(durationMs / 1000);
      if (source !== undefined) this.#source(series, source).inc();
      return durationMs;
    };
  }

  onPolicyEvent<K extends keyof PolicyEventMap>(event: K, payload: PolicyEventMap[K][0]): void {
    // The map's payload type is not narrowed by `event` inside a generic body; the cast restores it.
    const e = { event, payload } as PolicyEvent;
    switch (e.event) {
      case "breaker": {
        const { server, to } = e.payload;
        this.#breaker.labels(server).set(BREAKER_VALUE[to]);
        this.#count(this.#breakerTransitions, server, to);
        return;
      }
      case "limit": {
        const { server, tool, scope, outcome } = e.payload;
        this.#count(outcome === "rejected" ? this.#rejections : this.#waits, server, tool, scope);
        return;
      }
      case "cache": {
        const { server, tool, outcome, count } = e.payload;
        this.#count(this.#cache, server, tool ?? "", outcome);
        if (outcome === "invalidated" && count !== undefined && count > 0) {
          this.#add(this.#invalidatedEntries, count, server);
        }
        return;
      }
      case "retry": {
        const { server, tool, outcome } = e.payload;
        this.#count(outcome === "retrying" ? this.#retries : this.#budgetExhausted, server, tool);
        return;
      }
      case "fallback": {
        const { server, tool, outcome } = e.payload;
        this.#count(this.#fallbacks, server, tool, outcome);
        return;
      }
      case "bulkhead": {
        const { server, tool, outcome } = e.payload;
        this.#count(this.#bulkhead, server, tool, outcome);
        return;
      }
    }
  }

  subscribe(source: PolicyEventSource): () => void {
    const listeners = {
      breaker: (p: PolicyEventMap["breaker"][0]) => this.onPolicyEvent("breaker", p),
      limit: (p: PolicyEventMap["limit"][0]) => this.onPolicyEvent("limit", p),
      cache: (p: PolicyEventMap["cache"][0]) => this.onPolicyEvent("cache", p),
      retry: (p: PolicyEventMap["retry"][0]) => this.onPolicyEvent("retry", p),
      fallback: (p: PolicyEventMap["fallback"][0]) => this.onPolicyEvent("fallback", p),
      bulkhead: (p: PolicyEventMap["bulkhead"][0]) => this.onPolicyEvent("bulkhead", p),
    };
    source.on("breaker", listeners.breaker);
    source.on("limit", listeners.limit);
    source.on("cache", listeners.cache);
    source.on("retry", listeners.retry);
    source.on("fallback", listeners.fallback);
    source.on("bulkhead", listeners.bulkhead);
    return () => {
      source.off("breaker", listeners.breaker);
      source.off("limit", listeners.limit);
      source.off("cache", listeners.cache);
      source.off("retry", listeners.retry);
      source.off("fallback", listeners.fallback);
      source.off("bulkhead", listeners.bulkhead);
    };
  }

  setBackendUp(server: string, up: boolean): void {
    this.#backendUp.labels(server).set(up ? 1 : 0);
  }

  backendRestarted(server: string): void {
    this.#count(this.#restarts, server);
  }

  setBreakerState(server: string, state: BreakerState): void {
    this.#breaker.labels(server).set(BREAKER_VALUE[state]);
  }

  registerPoolStats(server: string, read: () => PoolCounts): () => void {
    this.#pools.set(server, read);
    return () => {
      if (this.#pools.get(server) === read) this.#pools.delete(server);
    };
  }

  registerStoreHealth(read: () => HealthResult): () => void {
    this.#storeHealth = read;
    return () => {
      if (this.#storeHealth === read) this.#storeHealth = undefined;
    };
  }

  setStoreUp(up: boolean): void {
    this.#storeUp.set(up ? 1 : 0);
  }

  forgetServer(server: string): void {
    this.#backendUp.remove(server);
    this.#breaker.remove(server);
    this.#inFlight.remove(server);
    this.#pools.delete(server);
    this.#tools.delete(server);
  }

  async render(): Promise<string> {
    const own = await this.registry.metrics();
    if (!this.#process) return own;
    return `${own}\n${await this.#process.metrics()}`;
  }

  #series(server: string, tool: string, kind: RequestKind): ToolSeries {
    let byTool = this.#tools.get(server);
    if (!byTool) {
      byTool = new Map();
      this.#tools.set(server, byTool);
    }
    // A tool and a prompt may share an exposed name: the kind keeps their series apart.
    const key = kind === "tools/call" ? tool : `${kind}\u0000${tool}`;
    let series = byTool.get(key);
    if (!series) {
      series = {
        server,
        tool,
        kind,
        inFlight: this.#inFlight.labels(server),
        outcomes: new Map(),
        sources: new Map(),
      };
      byTool.set(key, series);
    }
    return series;
  }

  #outcome(series: ToolSeries, outcome: CallOutcome): OutcomeSeries {
    let bound = series.outcomes.get(outcome);
    if (!bound) {
      bound = {
        calls: this.#calls.labels(series.server, series.tool, outcome, series.kind),
        duration: this.#duration.labels(series.server, series.tool, outcome, series.kind),
      };
      series.outcomes.set(outcome, bound);
    }
    return bound;
  }

  /** "fallback:1:tool:db__backup" and the like become "fallback": the label must stay low-cardinality. */
  #source(series: ToolSeries, source: string): Counter.Internal {
    const colon = source.indexOf(":");
    const kind = colon < 0 ? source : source.slice(0, colon);
    let counter = series.sources.get(kind);
    if (!counter) {
      counter = this.#served.labels(series.server, series.tool, kind);
      series.sources.set(kind, counter);
    }
    return counter;
  }

  #count(metric: Counter<string>, ...values: string[]): void {
    this.#add(metric, 1, ...values);
  }

  /** Adds to the child of `metric` for these label values, binding it on first use. */
  #add(metric: Counter<string>, amount: number, ...values: string[]): void {
    let children = this.#children.get(metric);
    if (!children) {
      children = new Map();
      this.#children.set(metric, children);
    }
    const key = values.join("\u0000");
    let child = children.get(key);
    if (!child) {
      child = metric.labels(...values);
      children.set(key, child);
    }
    child.inc(amount);
  }
}

type PolicyEvent = {
  [K in keyof PolicyEventMap]: { event: K; payload: PolicyEventMap[K][0] };
}[keyof PolicyEventMap];
