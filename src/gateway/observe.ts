/**
 * What the gateway measures about itself, assembled from the config: Prometheus metrics, per-tool
 * latency statistics (the metrics tool), OpenTelemetry traces and the health checker behind the
 * probes. `observe` is the outermost step of every call's chain: it sees each call once, whatever the
 * policies inside it did, and hands the call's trace context on to the backend.
 */

import type { SpanExporter } from "@opentelemetry/sdk-trace-base";
import type { Backend, CallContext, Policy, Store } from "../core/types.ts";
import type { ObservabilityConfig } from "../observability/config.ts";
import { isRequiredServer } from "../observability/config.ts";
import {
  backendCheck,
  createHealthChecker,
  eventLoopCheck,
  type HealthCheck,
  type HealthChecker,
  heapCheck,
  storeCheck,
} from "../observability/health.ts";
import type { Logger } from "../observability/logger.ts";
import {
  type CallOutcome,
  createMetrics,
  type Metrics,
  outcomeOfError,
  outcomeOfResult,
} from "../observability/metrics.ts";
import { createToolStats, type ToolStats } from "../observability/tool-stats.ts";
import { createTracing, type Tracing } from "../observability/tracing.ts";
import { NOTES } from "../policies/types.ts";
import type { Route } from "./route.ts";

export interface ObservabilityDeps {
  readonly logger: Logger;
  readonly store: Store & { health(): import("../core/types.ts").HealthResult };
  /** Every backend serving now (read at each health check, so restarts and reloads are seen). */
  readonly backends: () => readonly Backend[];
  /** True when some use of the store fails closed: then its outage makes the gateway unready. */
  readonly storeRequired: () => boolean;
  /** Where spans go instead of OTLP (tests use an in-memory exporter). */
  readonly spanExporter?: SpanExporter;
  /** More checks for the report (the audit log's sinks). */
  readonly extraChecks?: readonly HealthCheck[];
}

/** One call as it ended, for whoever watches calls (the console, while someone has it open). */
export interface FinishedCall {
  readonly route: Route;
  readonly principal: string;
  readonly outcome: CallOutcome;
  readonly durationMs: number;
  /** What the policies noted (cache, source, limit…; see NOTES). */
  readonly notes: ReadonlyMap<string, unknown>;
}

/**
 * Who watches calls as they end. Nobody, most of the time: then a call pays one size check, and no
 * object is made for it.
 */
export class CallWatchers {
  readonly #watchers = new Set<(call: FinishedCall) => void>();

  get watched(): boolean {
    return this.#watchers.size > 0;
  }

  /** Calls `watcher` for every call that ends from now on; returns the function that stops it. */
  watch(watcher: (call: FinishedCall) => void): () => void {
    this.#watchers.add(watcher);
    return () => {
      this.#watchers.delete(watcher);
    };
  }

  tell(call: FinishedCall): void {
    for (const watcher of this.#watchers) watcher(call);
  }
}

export interface Observability {
  /** Undefined when `observability.metrics.enabled` is false. */
  readonly metrics: Metrics | undefined;
  readonly toolStats: ToolStats;
  readonly tracing: Tracing;
  readonly health: HealthChecker;
  /** Calls as they end, for watchers that come and go (the console). */
  readonly calls: CallWatchers;
  /** The outermost policy of one route's chain. */
  observe(route: Route): Policy;
  close(): Promise<void>;
}

export function createObservability(config: ObservabilityConfig, deps: ObservabilityDeps): Observability {
  const metrics = config.metrics.enabled
    ? createMetrics({ prefix: config.metrics.prefix, defaultMetrics: config.metrics.defaultMetrics })
    : undefined;
  const toolStats = createToolStats();
  const tracing = createTracing(config.tracing, {
    ...(deps.spanExporter ? { exporter: deps.spanExporter } : {}),
    onError: (error) =>
      deps.logger.warn(
        { err: error },
        "exporting traces failed; spans are dropped until the collector answers",
      ),
  });
  // Created once: the event-loop monitor runs for the gateway's life.
  const processChecks: HealthCheck[] = [
    heapCheck(config.health.heapUsedRatio),
    eventLoopCheck(config.health.eventLoopLagMs),
  ];
  const health = createHealthChecker({
    timeoutMs: config.health.timeoutMs,
    cacheMs: config.health.cacheMs,
    checks: () => [
      ...deps.backends().map((b) => backendCheck(b, isRequiredServer(config.health, b.name))),
      storeCheck(deps.store, deps.storeRequired),
      ...(deps.extraChecks ?? []),
      ...processChecks,
    ],
  });
  metrics?.registerStoreHealth(() => deps.store.health());
  const calls = new CallWatchers();

  const observe =
    (route: Route): Policy =>
    (next) =>
    async (call, ctx) => {
      const done = metrics?.callStarted(route.server, route.name, route.kind);
      const started = done ? 0 : performance.now();
      const span = tracing.startCallSpan(route.name, route.server, call.tool, ctx.meta, undefined, {
        "mcp.method.name": route.kind,
        "jsonrpc.request.id": ctx.requestId,
      });
      const carrier = span.inject();
      // The backend continues this call's trace: its traceparent is our span, not the client's.
      const inner: CallContext = carrier ? { ...ctx, meta: { ...ctx.meta, ...carrier } } : ctx;
      let outcome: ReturnType<typeof outcomeOfResult> = "error";
      let failure: unknown;
      try {
        // The policies' events while the call runs become events of its span.
        const result = await tracing.withSpan(span, () => next(call, inner));
        outcome = outcomeOfResult(result);
        return result;
      } catch (error) {
        outcome = outcomeOfError(error);
        failure = error;
        throw error;
      } finally {
        const source = ctx.notes.get(NOTES.source);
        span.recordNotes(ctx.notes);
        span.end(outcome, failure);
        const ms = done
          ? done(outcome, typeof source === "string" ? source : undefined)
          : performance.now() - started;
        if (route.kind === "tools/call") toolStats.record(route.name, ms, outcome);
        if (calls.watched) {
          calls.tell({ route, principal: ctx.principal.id, outcome, durationMs: ms, notes: ctx.notes });
        }
      }
    };

  return {
    metrics,
    toolStats,
    tracing,
    health,
    calls,
    observe,
    async close() {
      health.close();
      await tracing.shutdown();
    },
  };
}
