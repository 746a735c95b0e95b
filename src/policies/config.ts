/**
 * The `policies` block of the config, shared by the top level, each server and each tool rule
 * (`toolPolicies`), and how the levels combine for one tool.
 *
 * Every key is optional; an absent key inherits from the level above, `false` switches that policy
 * off at this level, and an object replaces the inherited one entirely (options are not merged
 * inside a policy: a tool's `cache: { ttlMs: 5000 }` means the defaults for everything else, not
 * the server's other cache options). Defaults below are the single source of truth: code that needs
 * one reads it from here, and the README's policy tables restate them for people.
 */
import picomatch from "picomatch";
import { z } from "zod";
import { delayMs, durationMs, glob, nonEmpty, nonNegativeInt, positiveInt } from "../config/primitives.ts";

/**
 * Per-call time limit, in ms, when neither a `timeout` policy nor the server's `timeoutMs` says
 * otherwise; also the default of every server's `timeoutMs` (config/schema.ts).
 */
export const DEFAULT_TIMEOUT_MS = 60_000;

/** Per-attempt time limit, in ms. Default: the server's `timeoutMs` (timeouts are always on). */
export const timeoutSchema = durationMs().max(24 * 60 * 60 * 1000);

export const retryBudgetSchema = z.strictObject({
  /** Retries may add this share of the calls in the window. Default 0.2. */
  ratio: z.number().min(0).max(10).default(0.2),
  /** Retries allowed per second of window on top of the ratio, so quiet servers can still retry. Default 1. */
  minPerSec: z.number().min(0).default(1),
  /** The sliding window the budget counts over, in ms. Default 10 000. */
  windowMs: durationMs().default(10_000),
});

export const retrySchema = z.strictObject({
  /** Attempts in total, the first one included. Default 3. */
  maxAttempts: z.number().int().min(1).max(20).default(3),
  /** Backoff before the first retry, in ms; it grows by `factor` each retry. Default 100. */
  baseDelayMs: delayMs().default(100),
  /** Cap on one backoff, in ms. Default 5 000. */
  maxDelayMs: delayMs().default(5_000),
  /** Backoff growth per retry. Default 2. */
  factor: z.number().min(1).default(2),
  /** "full": random in [0, backoff]; "equal": backoff/2 + random in [0, backoff/2]; "none". Default "full". */
  jitter: z.enum(["full", "equal", "none"]).default("full"),
  /**
   * Retry this tool even though its annotations say neither readOnlyHint nor idempotentHint.
   * A tool annotated `destructiveHint: true` is never retried, even with `safe: true`. Default false.
   */
  safe: z.boolean().default(false),
  /**
   * Which outcomes are retried: "error" (thrown failures such as backend_unavailable), "timeout",
   * "isError" (the tool itself answered with an error). Default ["error", "timeout"].
   */
  retryOn: z
    .array(z.enum(["error", "timeout", "isError"]))
    .min(1)
    .default(["error", "timeout"]),
  /** Caps retries to a share of calls, per server; `false` for no cap. Default { ratio 0.2, minPerSec 1, windowMs 10 000 }. */
  budget: z.union([z.literal(false), retryBudgetSchema]).prefault({}),
});

export const bulkheadSchema = z.strictObject({
  /** Calls running at once against the server. Default 10. */
  maxConcurrent: positiveInt().default(10),
  /** Calls waiting for a slot; one more is refused with `bulkhead_full`. Default 100. */
  maxQueue: nonNegativeInt().default(100),
  /** Longest wait in the queue, in ms, before `bulkhead_full`. Default 30 000. */
  maxQueueWaitMs: durationMs().default(30_000),
});

export const circuitBreakerSchema = z.strictObject({
  /** Opens after this many failures in a row. Default 5. */
  consecutiveFailures: positiveInt().default(5),
  /** Also opens when failures / calls in `windowMs` reaches this (0–1, with at least `minCalls`). Default: off. */
  failureRatio: z.number().gt(0).max(1).optional(),
  /** The window of the failure ratio, in ms. Default 60 000. */
  windowMs: durationMs().default(60_000),
  /** Fewest calls in the window before the ratio is judged. Default 10. */
  minCalls: positiveInt().default(10),
  /** How long the circuit stays open before letting probes through, in ms. Default 30 000. */
  openMs: durationMs().default(30_000),
  /** Probe calls let through at once while half-open. Default 1. */
  halfOpenMaxCalls: positiveInt().default(1),
  /** Count isError results from the tool as failures (timeouts and thrown errors always count). Default false. */
  countIsError: z.boolean().default(false),
  /**
   * Share the circuit with every replica that uses the same shared store (`store.type: redis`): a
   * circuit that opens or closes on one replica does so on all of them, and a replica that starts
   * while it is open starts open. Each replica still counts failures and lets its own trial calls
   * through when half-open. Off by default because one replica's trouble (its own network path, say)
   * then stops the calls of all of them. Default false.
   */
  shared: z.boolean().default(false),
});

const staticResultSchema = z.union([
  z.strictObject({ text: z.string() }),
  z.strictObject({
    content: z.array(z.looseObject({ type: z.string() })),
    structuredContent: z.record(z.string(), z.unknown()).optional(),
    isError: z.boolean().optional(),
  }),
]);

export const fallbackStepSchema = z.union([
  z.strictObject({
    /** Another exposed tool, called through the gateway's full chain. */
    tool: nonEmpty(),
    /**
     * Arguments for it: a template in which a string that is exactly "{{args.path}}" becomes that
     * value of the original arguments (any type; the key is dropped when it is missing) and
     * "{{args.path}}" inside a longer string is interpolated. Default: the original arguments unchanged.
     */
    args: z.record(z.string(), z.unknown()).optional(),
  }),
  z.strictObject({
    /** The last good result for the same arguments (and principal), kept after the cache TTL. */
    cache: z.literal("stale"),
    /** How long a last good result is kept, in ms. Default 86 400 000 (24 h). */
    staleTtlMs: durationMs().default(86_400_000),
  }),
  z.strictObject({
    /** A fixed answer: `{ text }` or a whole CallToolResult. */
    static: staticResultSchema,
  }),
]);

export const fallbackSchema = z.strictObject({
  /** Alternatives tried in order after the primary fails (threw, timed out, circuit open). */
  chain: z.array(fallbackStepSchema).min(1),
  /** Also fall back when the tool answers with an isError result. Default false. */
  onIsError: z.boolean().default(false),
});

export const rateLimitSchema = z
  .strictObject({
    /**
     * Which calls share a bucket: "tool" (each exposed tool), "server", "global" (all tools under this
     * rule), "principal" (each caller, across tools). Default "tool".
     */
    scope: z.enum(["tool", "server", "global", "principal"]).default("tool"),
    /** Give each principal its own bucket within the scope. Default false. */
    perPrincipal: z.boolean().default(false),
    /** Bucket size: the burst allowed at once. Required. */
    capacity: positiveInt(),
    /** Tokens added per second. Give this or refillPerMinute. */
    refillPerSecond: z.number().min(0).optional(),
    /** Tokens added per minute. Give this or refillPerSecond. */
    refillPerMinute: z.number().min(0).optional(),
    /**
     * "reject": fail with rate_limited at once; "wait": take a place in line (first come, first
     * served) and sleep until its turn, if that comes within maxWaitMs. Default "reject".
     */
    mode: z.enum(["reject", "wait"]).default("reject"),
    /**
     * Longest wait in "wait" mode, in ms; a call whose turn (behind the calls already waiting) would
     * come later is refused at once. Default 30 000: per-minute limits are common, and at 10/min one
     * token comes every 6 s, so a shorter default would turn away the second waiter of a quiet tool;
     * 30 s queues five callers there while staying well inside the 60 s that MCP clients commonly
     * allow a request. Default 30 000.
     */
    maxWaitMs: delayMs().default(30_000),
  })
  .refine((limit) => (limit.refillPerSecond === undefined) !== (limit.refillPerMinute === undefined), {
    error: "give exactly one of refillPerSecond or refillPerMinute",
  });

export const cacheSchema = z.strictObject({
  /** How long a result is served from the cache, in ms. Default 60 000. */
  ttlMs: durationMs().default(60_000),
  /** Cache this tool even without readOnlyHint (true), or never (false). Default: its readOnlyHint. */
  cacheable: z.boolean().optional(),
  /** One entry for all principals instead of one per principal. Default false. */
  shared: z.boolean().default(false),
  /** Results whose JSON is larger than this many bytes are not cached. Default 1 048 576. */
  maxEntryBytes: positiveInt().default(1_048_576),
});

const off = z.literal(false);

export const policySetSchema = z.strictObject({
  timeout: timeoutSchema.optional(),
  retry: z.union([off, retrySchema]).optional(),
  bulkhead: z.union([off, bulkheadSchema]).optional(),
  circuitBreaker: z.union([off, circuitBreakerSchema]).optional(),
  fallback: z.union([off, fallbackSchema]).optional(),
  /** One limit, or a list that must all allow the call (e.g. global plus per principal). */
  rateLimit: z.union([off, rateLimitSchema, z.array(rateLimitSchema).min(1)]).optional(),
  cache: z.union([off, cacheSchema]).optional(),
  /**
   * Exposed tool names or globs whose cached results a successful (non-isError) call of this tool
   * drops, e.g. ["crm__get_user", "crm__list_*"]. Default: none.
   */
  invalidates: z.union([off, z.array(glob()).min(1)]).optional(),
});

export type PolicySet = z.infer<typeof policySetSchema>;
export type RetryOptions = z.infer<typeof retrySchema>;
export type RetryBudgetOptions = z.infer<typeof retryBudgetSchema>;
export type BulkheadOptions = z.infer<typeof bulkheadSchema>;
export type CircuitBreakerOptions = z.infer<typeof circuitBreakerSchema>;
export type FallbackOptions = z.infer<typeof fallbackSchema>;
export type FallbackStep = z.infer<typeof fallbackStepSchema>;
export type RateLimitOptions = z.infer<typeof rateLimitSchema>;
export type CacheOptions = z.infer<typeof cacheSchema>;

/** The policy-relevant part of the whole config, as the runtime receives it. */
export interface PolicyConfig {
  readonly policies: PolicySet;
  readonly servers: Readonly<Record<string, { readonly policies: PolicySet; readonly timeoutMs?: number }>>;
  readonly toolPolicies: Readonly<Record<string, PolicySet>>;
}

/** What applies to one tool after merging the levels; a key is absent when its policy is off. */
export interface EffectivePolicies {
  readonly timeoutMs: number;
  readonly retry?: RetryOptions;
  readonly bulkhead?: BulkheadOptions;
  readonly circuitBreaker?: CircuitBreakerOptions;
  readonly fallback?: FallbackOptions;
  readonly rateLimit?: readonly RateLimitOptions[];
  readonly cache?: CacheOptions;
  readonly invalidates?: readonly string[];
}

export interface ToolRule {
  readonly pattern: string;
  readonly glob: boolean;
  /** Characters of the pattern that are not glob syntax: more means more specific. */
  readonly literals: number;
  readonly policies: PolicySet;
  readonly matches: (exposedName: string) => boolean;
}

/**
 * Compiles `toolPolicies` once, into the order they apply in: least specific first, so that a later
 * rule overrides an earlier one. Exact names come last; globs by ascending literal characters; among
 * globs equally specific, the one written later in the config wins (as in CSS).
 */
export function compileToolRules(toolPolicies: Readonly<Record<string, PolicySet>>): readonly ToolRule[] {
  const rules = Object.entries(toolPolicies).map(([pattern, policies], index) => {
    const glob = picomatch.scan(pattern).isGlob;
    const matcher = glob ? picomatch(pattern, { dot: true }) : undefined;
    return {
      index,
      rule: {
        pattern,
        glob,
        literals: glob ? literalLength(pattern) : pattern.length,
        policies,
        matches: matcher ? (name: string) => matcher(name) : (name: string) => name === pattern,
      } satisfies ToolRule,
    };
  });
  rules.sort(
    (a, b) =>
      Number(!a.rule.glob) - Number(!b.rule.glob) || a.rule.literals - b.rule.literals || a.index - b.index,
  );
  return rules.map((r) => r.rule);
}

const POLICY_KEYS = [
  "timeout",
  "retry",
  "bulkhead",
  "circuitBreaker",
  "fallback",
  "rateLimit",
  "cache",
  "invalidates",
] as const satisfies readonly (keyof PolicySet)[];

/**
 * Merges global ▸ server ▸ matching tool rules (least to most specific) per policy key: the most
 * specific level that mentions a key decides it, `false` included.
 */
export function mergePolicySets(layers: readonly PolicySet[]): PolicySet {
  const merged: Record<string, unknown> = {};
  for (const layer of layers) {
    for (const key of POLICY_KEYS) {
      const value = layer[key];
      if (value !== undefined) merged[key] = value;
    }
  }
  return merged as PolicySet;
}

/**
 * The effective policies of one exposed tool. The timeout comes from the most specific `timeout`
 * policy, else the server's `timeoutMs`, else DEFAULT_TIMEOUT_MS: timeouts cannot be switched off.
 */
export function resolvePolicies(
  config: PolicyConfig,
  rules: readonly ToolRule[],
  exposedName: string,
  server: string,
): EffectivePolicies {
  const serverConfig = config.servers[server];
  const layers: PolicySet[] = [config.policies];
  if (serverConfig) layers.push(serverConfig.policies);
  for (const rule of rules) if (rule.matches(exposedName)) layers.push(rule.policies);
  const merged = mergePolicySets(layers);

  const timeoutMs = merged.timeout ?? serverConfig?.timeoutMs ?? DEFAULT_TIMEOUT_MS;
  const rateLimit =
    merged.rateLimit === false || merged.rateLimit === undefined ? undefined : merged.rateLimit;
  return dropUndefined({
    timeoutMs,
    retry: merged.retry || undefined,
    bulkhead: merged.bulkhead || undefined,
    circuitBreaker: merged.circuitBreaker || undefined,
    fallback: merged.fallback || undefined,
    rateLimit: rateLimit === undefined ? undefined : Array.isArray(rateLimit) ? rateLimit : [rateLimit],
    cache: merged.cache || undefined,
    invalidates: merged.invalidates || undefined,
  });
}

function dropUndefined<T extends object>(value: T): T {
  for (const key of Object.keys(value) as (keyof T)[]) if (value[key] === undefined) delete value[key];
  return value;
}

/** Pattern length minus glob syntax; a bracket or brace group counts as no literal characters. */
function literalLength(pattern: string): number {
  return pattern
    .replace(/\\./g, "x")
    .replace(/\[[^\]]*\]/g, "")
    .replace(/\{[^}]*\}/g, "")
    .replace(/[*?!+@()|]/g, "").length;
}
