/**
 * What the policies share with the runtime: the tool a chain is for, the runtime's services, and the
 * resilience events that metrics, health and audit subscribe to (a breaker, limiter or cache whose
 * state nobody can see cannot be operated).
 */
import type { CallContext, CallToolResult, Store, Tool } from "../core/types.ts";
import type { Logger } from "../observability/logger.ts";

/** One exposed tool. */
export interface ToolBinding {
  /** The name clients see, e.g. "db__query". */
  readonly exposedName: string;
  /** The backend's config key, e.g. "db". */
  readonly server: string;
  /** The backend's own definition; its annotations decide what is safe to retry and cache. */
  readonly tool: Tool;
}

export interface PolicyDeps {
  /** Memory store by default; Redis when configured. */
  readonly store: Store;
  readonly logger: Logger;
  /** Calls another exposed tool through the gateway's full chain (for fallbacks). */
  readonly callTool: (
    exposedName: string,
    args: Record<string, unknown>,
    ctx: CallContext,
  ) => Promise<CallToolResult>;
  /**
   * Every tool the gateway exposes now, for `invalidates` globs to match. With a shared store a tool
   * this replica never called may still have results cached by another replica. Default: only the
   * tools this runtime built chains for.
   */
  readonly tools?: () => Iterable<ToolBinding>;
  /** The clock, in ms. Default `Date.now`. */
  readonly now?: () => number;
  /** Uniform in [0, 1), for backoff jitter. Default `Math.random`. */
  readonly random?: () => number;
}

export type BreakerState = "closed" | "open" | "half-open";

export interface BreakerEvent {
  readonly server: string;
  readonly from: BreakerState;
  readonly to: BreakerState;
  readonly reason: string;
  /** When an open circuit will let a probe through (epoch ms); only when `to` is "open". */
  readonly retryAt?: number;
  /** True when another replica made the transition and this one applied it (shared circuits). */
  readonly remote?: boolean;
}

export interface LimitEvent {
  readonly server: string;
  /** The exposed tool name. */
  readonly tool: string;
  readonly scope: string;
  readonly key: string;
  readonly outcome: "rejected" | "waited";
  /** For "rejected": the wait that would have been needed (Infinity: never); for "waited": the wait. */
  readonly retryAfterMs: number;
}

export interface CacheEvent {
  readonly server: string;
  /** The exposed tool name; absent for server-wide invalidations. */
  readonly tool?: string;
  readonly outcome: "hit" | "miss" | "coalesced" | "stored" | "skipped" | "invalidated" | "error";
  readonly reason?: string;
  /** For "invalidated": the tags dropped and how many entries went with them. */
  readonly tags?: readonly string[];
  readonly count?: number;
}

export interface RetryEvent {
  readonly server: string;
  readonly tool: string;
  /** The attempt about to run (2 for the first retry). */
  readonly attempt: number;
  readonly delayMs: number;
  readonly reason: string;
  /** "budget_exhausted": a retry was wanted but the server's retry budget refused it. */
  readonly outcome: "retrying" | "budget_exhausted";
}

export interface FallbackEvent {
  readonly server: string;
  readonly tool: string;
  readonly outcome: "answered" | "exhausted";
  /** For "answered": the `switchboard/source` of the answer. */
  readonly source?: string;
  /** Why the primary and each failed alternative failed, in order. */
  readonly reasons: readonly string[];
}

export interface BulkheadEvent {
  readonly server: string;
  readonly tool: string;
  readonly outcome: "queued" | "rejected";
  readonly running: number;
  readonly queued: number;
}

/** A call refused by an open (or busy half-open) circuit, without reaching the server. */
export interface BreakerRejectedEvent {
  readonly server: string;
  readonly tool: string;
  readonly state: BreakerState;
  /** When the circuit lets a trial call through (epoch ms). */
  readonly retryAt: number;
}

/** An attempt that ran out of time (the backend request was cancelled). */
export interface TimeoutEvent {
  readonly server: string;
  readonly tool: string;
  readonly timeoutMs: number;
}

export interface PolicyEventMap {
  breaker: [BreakerEvent];
  breakerRejected: [BreakerRejectedEvent];
  timeout: [TimeoutEvent];
  limit: [LimitEvent];
  cache: [CacheEvent];
  retry: [RetryEvent];
  fallback: [FallbackEvent];
  bulkhead: [BulkheadEvent];
}

export type Emit = <K extends keyof PolicyEventMap>(event: K, payload: PolicyEventMap[K][0]) => void;

/** What every policy factory receives besides its options. */
export interface PolicyEnv {
  readonly binding: ToolBinding;
  readonly store: Store;
  readonly logger: Logger;
  readonly now: () => number;
  readonly random: () => number;
  readonly emit: Emit;
}

/** Keys policies write in `ctx.notes`, for audit and metrics. */
export const NOTES = {
  /** "hit" | "miss" | "stale" (served by the stale fallback); "coalesced" is noted separately. */
  cache: "cache",
  /** true when this call waited for an identical call in flight instead of calling the backend. */
  coalesced: "coalesced",
  /** "backend" | "cache" | "fallback:<n>:<kind>[:<name>]": who answered. */
  source: "source",
  /** How many retries ran. */
  retries: "retries",
  /** { key, remaining, waitedMs } of the tightest limit that let the call through. */
  limit: "limit",
  /** The reasons the primary and failed fallbacks gave, when a fallback ran. */
  fallbackReasons: "fallbackReasons",
  /** How long the call waited for a bulkhead slot, in ms, when it had to wait. */
  queuedMs: "queuedMs",
} as const;

/** The `_meta` key of a result that did not come straight from the backend. */
export const SOURCE_META = "switchboard/source";
