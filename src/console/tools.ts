/**
 * The console's tools page: every exposed tool with its server, the policies in force as the gateway
 * resolved them (the chain `PolicyRuntime.entriesFor` builds for it, each with its options, and the
 * config layers they came from: global, the server's, each matching `toolPolicies` rule), and how it
 * is doing: calls, errors, latency percentiles, cache hits.
 */
import type { Config } from "../config/schema.ts";
import type { ToolRoute } from "../gateway/catalog.ts";
import type { Metrics } from "../observability/metrics.ts";
import type { ToolSummary } from "../observability/tool-stats.ts";
import { compileToolRules, type EffectivePolicies } from "../policies/config.ts";
import type { PolicyName, PolicyRuntime } from "../policies/runtime.ts";

export interface PolicyInForce {
  readonly name: PolicyName;
  /** The resolved options: defaults filled in, layers merged. */
  readonly options: unknown;
}

export interface ToolRow {
  readonly name: string;
  readonly server: string;
  readonly description?: string;
  /** Outermost first, as the chain runs them. */
  readonly policies: readonly PolicyInForce[];
  /** The config layers that set them, least specific first: "policies", "server <name>", rule patterns. */
  readonly from: readonly string[];
}

export interface ToolLive {
  readonly calls: number;
  readonly errors: number;
  readonly p50Ms: number;
  readonly p95Ms: number;
  readonly p99Ms: number;
  readonly cacheHits?: number;
  readonly cacheMisses?: number;
}

export interface CacheCounts {
  readonly hits: number;
  readonly misses: number;
}

/** The tools of the catalog, with their policies. */
export function toolRows(routes: readonly ToolRoute[], policies: PolicyRuntime, config: Config): ToolRow[] {
  const rules = compileToolRules(config.toolPolicies);
  const globalSet = Object.keys(config.policies).length > 0;
  return routes.map((route) => {
    const binding = { exposedName: route.exposedName, server: route.server, tool: route.original };
    const effective = policies.policiesFor(binding);
    const serverPolicies =
      config.mcpServers[route.server]?.policies ?? config.backends[route.server]?.policies;
    const from = [
      ...(globalSet ? ["policies"] : []),
      ...(serverPolicies && Object.keys(serverPolicies).length > 0 ? [`server ${route.server}`] : []),
      ...rules.filter((rule) => rule.matches(route.exposedName)).map((rule) => rule.pattern),
    ];
    return {
      name: route.exposedName,
      server: route.server,
      ...(route.definition.description === undefined ? {} : { description: route.definition.description }),
      policies: policies.entriesFor(binding).map((entry) => ({
        name: entry.name,
        options: optionsOf(entry.name, effective),
      })),
      from,
    };
  });
}

function optionsOf(name: PolicyName, effective: EffectivePolicies): unknown {
  switch (name) {
    case "rateLimit":
      return effective.rateLimit;
    case "cache":
      return effective.cache;
    case "fallback":
      return effective.fallback;
    case "invalidate":
      return { tools: effective.invalidates };
    case "circuitBreaker":
      return effective.circuitBreaker;
    case "bulkhead":
      return effective.bulkhead;
    case "retry":
      return effective.retry;
    case "timeout":
      return { ms: effective.timeoutMs };
  }
}

/** Each called tool's figures, with its cache hits and misses when the cache counted any. */
export function toolLive(
  stats: Readonly<Record<string, ToolSummary>>,
  cache: ReadonlyMap<string, CacheCounts>,
): Record<string, ToolLive> {
  const out: Record<string, ToolLive> = {};
  for (const [name, summary] of Object.entries(stats)) {
    const counts = cache.get(name);
    out[name] = {
      calls: summary.count,
      errors: summary.errors,
      p50Ms: round(summary.p50),
      p95Ms: round(summary.p95),
      p99Ms: round(summary.p99),
      ...(counts ? { cacheHits: counts.hits, cacheMisses: counts.misses } : {}),
    };
  }
  return out;
}

/**
 * Cache hits and misses by exposed tool since start, read from the gateway's metrics (the counters
 * behind `cache_events_total`), so that counting them costs a call nothing more. Empty when metrics are
 * off.
 */
export async function cacheCounts(
  metrics: Metrics | undefined,
  prefix: string,
): Promise<Map<string, CacheCounts>> {
  const out = new Map<string, { hits: number; misses: number }>();
  const metric = metrics?.registry.getSingleMetric(`${prefix}cache_events_total`);
  if (!metric) return out;
  const { values } = await metric.get();
  for (const { labels, value } of values) {
    const tool = labels.tool;
    if (typeof tool !== "string" || tool === "") continue;
    if (labels.outcome !== "hit" && labels.outcome !== "miss") continue;
    const counts = out.get(tool) ?? { hits: 0, misses: 0 };
    if (labels.outcome === "hit") counts.hits += value;
    else counts.misses += value;
    out.set(tool, counts);
  }
  return out;
}

function round(ms: number): number {
  return Math.round(ms * 100) / 100;
}
