/**
 * Prometheus metrics of one gateway, on a registry of its own: several gateways live in one process
 * in tests and embeddings, and prom-client's global registry would make their metrics collide.
 *
 * The `tool` label is always the exposed tool name ("db__query"), the name clients and the policy
 * events use. Label values come from the catalog and the config, never from what a client sent:
 * a call for a tool that does not exist must not reach `callStarted`, or any client could create
 * series at will.
 *
 * The metrics themselves are defined in metric-families.ts; how policy events count, in
 * policy-metrics.ts. This file binds a call's series once and counts it as the call ends.
 */
import { performance } from "node:perf_hooks";
import { type Counter, type Gauge, type Histogram, Registry } from "prom-client";
import { isGatewayError } from "../core/errors.ts";
import type { ChainResult, HealthResult, RequestKind } from "../core/types.ts";
import type { BreakerState, PolicyEventMap } from "../policies/types.ts";
import { METRICS_DEFAULTS } from "./config.ts";
import {
  BREAKER_VALUE,
  createMetricFamilies,
  type MetricFamilies,
  type PoolCounts,
  processMetrics,
} from "./metric-families.ts";
import { listenToPolicyEvents, type PolicyEvent, type PolicyEventSource } from "./policy-events.ts";
import { recordPolicyEvent } from "./policy-metrics.ts";

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
 * Ends the measurement begun by `callStarted` and returns the call's duration in ms (e.g. for
 * ToolStats). `source` is the `notes` value "backend" | "cache" | "fallback:…" when known. Calling
 * it again does nothing and returns the first duration.
 */
export type CallDone = (outcome: CallOutcome, source?: string) => number;

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
  /** Counts one config reload, applied or refused as invalid. */
  configReloaded(outcome: "applied" | "invalid"): void;
  /** Counts a tool definition that differs from its pin (config `pinning`), once per new definition. */
  toolDefinitionChanged(server: string, tool: string, mode: "warn" | "block"): void;
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

  readonly #families: MetricFamilies;
  readonly #record = (e: PolicyEvent) =>
    recordPolicyEvent(this.#families, (metric, amount, ...values) => this.#add(metric, amount, ...values), e);

  constructor(prefix: string, defaultMetrics: boolean) {
    this.#process = defaultMetrics ? processMetrics() : undefined;
    this.#families = createMetricFamilies(this.registry, prefix, {
      pools: this.#pools,
      storeHealth: () => this.#storeHealth,
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
    this.#record({ event, payload } as PolicyEvent);
  }

  subscribe(source: PolicyEventSource): () => void {
    return listenToPolicyEvents(source, this.#record);
  }

  setBackendUp(server: string, up: boolean): void {
    this.#families.backendUp.labels(server).set(up ? 1 : 0);
  }

  backendRestarted(server: string): void {
    this.#count(this.#families.restarts, server);
  }

  configReloaded(outcome: "applied" | "invalid"): void {
    this.#families.reloads.labels(outcome).inc();
  }

  toolDefinitionChanged(server: string, tool: string, mode: "warn" | "block"): void {
    this.#families.definitionChanges.labels(server, tool, mode).inc();
  }

  setBreakerState(server: string, state: BreakerState): void {
    this.#families.breaker.labels(server).set(BREAKER_VALUE[state]);
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
    this.#families.storeUp.set(up ? 1 : 0);
  }

  forgetServer(server: string): void {
    this.#families.backendUp.remove(server);
    this.#families.breaker.remove(server);
    this.#families.inFlight.remove(server);
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
        inFlight: this.#families.inFlight.labels(server),
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
        calls: this.#families.calls.labels(series.server, series.tool, outcome, series.kind),
        duration: this.#families.duration.labels(series.server, series.tool, outcome, series.kind),
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
      counter = this.#families.served.labels(series.server, series.tool, kind);
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
