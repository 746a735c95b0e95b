/**
 * The config of metrics, tracing and health, and of the gateway's own tools that report them. Strict
 * like the rest of the config (config/schema.ts): a misspelt key is an error with its path, and
 * every default is written next to the option it belongs to.
 */
import { z } from "zod";
import { delayMs, durationMs, headerMap, httpPath, httpUrl, nonEmpty } from "../config/primitives.ts";

/** Prometheus metric name characters; the prefix is the start of every Switchboard metric's name. */
const METRIC_PREFIX = /^([a-zA-Z_:][a-zA-Z0-9_:]*)?$/;

export const metricsConfigSchema = z.strictObject({
  /** Serve Prometheus metrics (on the HTTP server, at `path`). Default true. */
  enabled: z.boolean().default(true),
  /** Path of the Prometheus endpoint on the HTTP server. Default "/metrics". */
  path: httpPath().default("/metrics"),
  /**
   * Also export the Node.js process metrics (CPU, memory, event loop lag, GC, handles), under their
   * usual unprefixed names (`process_*`, `nodejs_*`) so that stock dashboards work. Default true.
   */
  defaultMetrics: z.boolean().default(true),
  /** Start of the name of every Switchboard metric, e.g. "switchboard_calls_total". Default "switchboard_". */
  prefix: z
    .string()
    .regex(METRIC_PREFIX, { error: 'may only hold letters, digits, "_" and ":", and not start with a digit' })
    .default("switchboard_"),
});

export const otlpConfigSchema = z.strictObject({
  /** The OTLP/HTTP traces endpoint, e.g. "http://localhost:4318/v1/traces". Required. */
  url: httpUrl("http://localhost:4318/v1/traces"),
  /** Headers sent with every export (e.g. an API key; use ${VAR} for secrets). Default {}. */
  headers: headerMap().default({}),
});

export const tracingConfigSchema = z.strictObject({
  /** Create OpenTelemetry spans for tool calls. Default false: no spans, no cost. */
  enabled: z.boolean().default(false),
  /** The `service.name` of the spans. Default "switchboard". */
  serviceName: nonEmpty().default("switchboard"),
  /**
   * Where spans go. Default: none set, which uses the OTLP exporter's own default, i.e. the
   * OTEL_EXPORTER_OTLP_TRACES_ENDPOINT / OTEL_EXPORTER_OTLP_ENDPOINT environment variables, else
   * http://localhost:4318/v1/traces.
   */
  otlp: otlpConfigSchema.optional(),
  /**
   * Share of new traces recorded, 0 to 1. A call that arrives with a trace context follows its
   * parent's decision instead. Default 1 (all).
   */
  sampleRatio: z.number().min(0).max(1).default(1),
});

export const healthConfigSchema = z.strictObject({
  /** How long one check may take before it counts as unhealthy, in ms. Default 2000. */
  timeoutMs: durationMs().default(2000),
  /**
   * How long a health report is reused, in ms, so that probes and scrapers cannot load the
   * backends. 0 reuses nothing (calls made meanwhile still share one run). Default 1000.
   */
  cacheMs: delayMs().default(1000),
  /**
   * The servers (mcpServers and backends names) that must be up for the gateway to be ready and
   * healthy; the others only degrade it. Default [] (none): replicas share their backends, so if
   * one backend's outage made every replica unready, the load balancer would drop the gateway
   * entirely, and with it every other server. Name the ones without which the gateway is useless.
   */
  required: z.array(nonEmpty()).default([]),
  /** Event loop delay (p99 since the previous check) above which the process is degraded, in ms. Default 200. */
  eventLoopLagMs: z.number().positive().default(200),
  /** Share of the V8 heap limit in use above which the process is degraded, 0 to 1. Default 0.9. */
  heapUsedRatio: z.number().gt(0).max(1).default(0.9),
});

export const observabilitySchema = z.strictObject({
  /** Default {}: every option at its default. */
  metrics: metricsConfigSchema.prefault({}),
  /** Default {}: tracing off. */
  tracing: tracingConfigSchema.prefault({}),
  /** Default {}: every option at its default. */
  health: healthConfigSchema.prefault({}),
});

/** The tools the gateway itself offers to clients, next to the servers' tools. */
export const gatewayToolsSchema = z.strictObject({
  /** A tool that returns the health report (the same as /healthz). Default true. */
  health: z.boolean().default(true),
  /** A tool that returns per-tool call counts, errors and latency percentiles. Default true. */
  metrics: z.boolean().default(true),
  /**
   * `switchboard__search_tools` (find tools by what they do) and `switchboard__call_tool` (call one by
   * name). true offers them at every endpoint, false nowhere (no endpoint may then be in search
   * mode). Default: offered at the endpoints whose `discovery` is "search", and only there.
   */
  search: z.boolean().optional(),
});

/** Metrics options as the schema fills them in, for code that makes a registry without a config. */
export const METRICS_DEFAULTS = metricsConfigSchema.parse({});
/** Tracing options as the schema fills them in, for code that starts tracing without a config. */
export const TRACING_DEFAULTS = tracingConfigSchema.parse({});

export type MetricsConfig = z.output<typeof metricsConfigSchema>;
export type TracingConfig = z.output<typeof tracingConfigSchema>;
export type HealthConfig = z.output<typeof healthConfigSchema>;
export type ObservabilityConfig = z.output<typeof observabilitySchema>;
export type GatewayToolsConfig = z.output<typeof gatewayToolsSchema>;

/**
 * The names in `health.required` that are not servers of the config: for the config schema's
 * cross-checks, which know every server name.
 */
export function unknownRequiredServers(health: HealthConfig, servers: Iterable<string>): string[] {
  const known = new Set(servers);
  return health.required.filter((name) => !known.has(name));
}

/** Whether a server must be up for the gateway to be ready (see `health.required`). */
export function isRequiredServer(health: HealthConfig, server: string): boolean {
  return health.required.includes(server);
}
