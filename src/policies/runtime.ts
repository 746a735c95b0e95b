/**
 * The one seam between the gateway and the call policies. The runtime resolves each tool's
 * effective policies (global ▸ server ▸ tool rules, most specific wins), builds its chain, and holds
 * the state that must be shared by every chain of a server: its circuit breaker, its bulkhead, its
 * retry budget, and the cache's single-flight and invalidation bookkeeping. Rate-limit buckets and
 * cached results live in the Store.
 *
 * Chain order, first = outermost: rateLimit ▸ cache ▸ fallback ▸ invalidate ▸ circuitBreaker ▸
 * bulkhead ▸ retry ▸ timeout. The gateway adds metrics, audit, access, signature and validation
 * around or between these (see `entriesFor` and POLICY_ORDER).
 */
import { EventEmitter } from "node:events";
import picomatch from "picomatch";
import { describeError, GatewayError } from "../core/errors.ts";
import type { Policy } from "../core/types.ts";
import { canonicalJson } from "../stores/canonical-json.ts";
import { Bulkhead, bulkheadPolicy } from "./bulkhead.ts";
import { CacheState, cachePolicy, invalidatePolicy, isCacheable, serverTag, toolTag } from "./cache.ts";
import { CircuitBreaker, circuitBreakerPolicy } from "./circuit-breaker.ts";
import {
  compileToolRules,
  type EffectivePolicies,
  type PolicyConfig,
  type PolicySet,
  resolvePolicies,
  type ToolRule,
} from "./config.ts";
import { fallbackPolicy } from "./fallback.ts";
import { rateLimitPolicy } from "./rate-limit.ts";
import { isRetrySafe, RetryBudget, retryPolicy } from "./retry.ts";
import { timeoutPolicy } from "./timeout.ts";
import type { BreakerState, Emit, PolicyDeps, PolicyEnv, PolicyEventMap, ToolBinding } from "./types.ts";

export type {
  BreakerEvent,
  BreakerState,
  BulkheadEvent,
  CacheEvent,
  FallbackEvent,
  LimitEvent,
  PolicyDeps,
  PolicyEventMap,
  RetryEvent,
  ToolBinding,
} from "./types.ts";
export { NOTES, SOURCE_META } from "./types.ts";

export type PolicyName =
  | "rateLimit"
  | "cache"
  | "fallback"
  | "invalidate"
  | "circuitBreaker"
  | "bulkhead"
  | "retry"
  | "timeout";

/** The order of the runtime's policies in a chain, first = outermost. */
export const POLICY_ORDER: readonly PolicyName[] = Object.freeze([
  "rateLimit",
  "cache",
  "fallback",
  "invalidate",
  "circuitBreaker",
  "bulkhead",
  "retry",
  "timeout",
]);

export interface PolicyEntry {
  readonly name: PolicyName;
  readonly policy: Policy;
}

/** What the runtime needs from the config: `policies` at three levels and each server's timeout. */
export interface PolicyRuntimeConfig {
  readonly policies: PolicySet;
  readonly servers: Readonly<Record<string, { readonly policies: PolicySet; readonly timeoutMs?: number }>>;
  readonly toolPolicies: Readonly<Record<string, PolicySet>>;
}

export interface BreakerStatus {
  readonly server: string;
  readonly state: BreakerState;
  /** When an open circuit lets a trial call through (epoch ms). */
  readonly retryAt?: number;
}

interface Chain {
  readonly binding: ToolBinding;
  readonly entries: readonly PolicyEntry[];
}

export class PolicyRuntime extends EventEmitter<PolicyEventMap> {
  readonly #config: PolicyConfig;
  readonly #rules: readonly ToolRule[];
  readonly #deps: PolicyDeps;
  readonly #now: () => number;
  readonly #random: () => number;
  readonly #cache = new CacheState();
  readonly #breakers = new Map<string, CircuitBreaker>();
  readonly #bulkheads = new Map<string, Bulkhead>();
  readonly #budgets = new Map<string, RetryBudget>();
  readonly #chains = new Map<string, Chain>();
  /** Every exposed tool a chain was built for: what `invalidates` globs are matched against. */
  readonly #seen = new Map<string, ToolBinding>();
  readonly #matchers = new Map<string, (name: string) => boolean>();
  #closed = false;

  constructor(config: PolicyRuntimeConfig, deps: PolicyDeps) {
    super();
    this.#config = config;
    this.#rules = compileToolRules(config.toolPolicies);
    this.#deps = deps;
    this.#now = deps.now ?? Date.now;
    this.#random = deps.random ?? Math.random;
  }

  /** The policies for this tool, outermost first. The timeout is always there (timeouts are always on). */
  chainFor(binding: ToolBinding): Policy[] {
    return this.entriesFor(binding).map((entry) => entry.policy);
  }

  /** `chainFor` with each policy's name, for a gateway that inserts its own policies between them. */
  entriesFor(binding: ToolBinding): readonly PolicyEntry[] {
    if (this.#closed) throw new GatewayError("internal", "The policy runtime is closed");
    const known = this.#chains.get(binding.exposedName);
    if (known && known.binding.server === binding.server && known.binding.tool === binding.tool)
      return known.entries;
    const entries = Object.freeze(this.#build(binding));
    this.#chains.set(binding.exposedName, { binding, entries });
    this.#seen.set(binding.exposedName, binding);
    return entries;
  }

  /** The merged policies of one tool (for diagnostics: what applies to this tool, and why). */
  policiesFor(binding: Pick<ToolBinding, "exposedName" | "server">): EffectivePolicies {
    return resolvePolicies(this.#config, this.#rules, binding.exposedName, binding.server);
  }

  /**
   * Called when a server's tool/resource/prompt list changes: drops its cache entries (by tag).
   * Never rejects, since callers fire and forget it; a store failure is logged and the entries left
   * behind expire by their TTL.
   */
  async invalidateServer(server: string): Promise<void> {
    const tag = serverTag(server);
    this.#cache.bump(tag);
    try {
      const count = await this.#deps.store.invalidateTag(tag);
      this.#emit("cache", {
        server,
        outcome: "invalidated",
        reason: "server lists changed",
        tags: [tag],
        count,
      });
    } catch (error) {
      this.#deps.logger.warn({ err: error, server }, "could not drop the server's cached results");
      this.#emit("cache", { server, outcome: "error", reason: describeError(error) });
    }
  }

  /**
   * Drops the cached results of the exposed tools matching `patterns` (names or globs), among the tools
   * the runtime has built chains for (a tool without a chain has nothing cached). Returns how many
   * entries went.
   */
  async invalidateTools(patterns: readonly string[]): Promise<number> {
    const matchers = patterns.map((pattern) => this.#matcher(pattern));
    const targets = new Map<string, ToolBinding>();
    for (const binding of this.#seen.values()) {
      if (matchers.some((matches) => matches(binding.exposedName))) {
        targets.set(toolTag(binding.server, binding.tool.name), binding);
      }
    }
    // Bump first: a read already in flight must not store its (older) answer after the drop.
    for (const tag of targets.keys()) this.#cache.bump(tag);
    let total = 0;
    for (const [tag, binding] of targets) {
      const count = await this.#deps.store.invalidateTag(tag);
      total += count;
      this.#emit("cache", {
        server: binding.server,
        tool: binding.exposedName,
        outcome: "invalidated",
        tags: [tag],
        count,
      });
    }
    return total;
  }

  /** The state of every circuit breaker, for health reporting. */
  breakerStates(): BreakerStatus[] {
    return [...this.#breakers.values()].map((breaker) => {
      const retryAt = breaker.retryAt;
      return { server: breaker.server, state: breaker.state, ...(retryAt === undefined ? {} : { retryAt }) };
    });
  }

  /** Fails queued calls and forgets per-call state. Does not close the store: the gateway owns it. */
  async close(): Promise<void> {
    if (this.#closed) return;
    this.#closed = true;
    const shuttingDown = new GatewayError(
      "backend_unavailable",
      "The gateway is shutting down; the call was not made.",
    );
    for (const bulkhead of this.#bulkheads.values()) bulkhead.drain(shuttingDown);
    this.#cache.inflight.clear();
    this.#chains.clear();
  }

  #matcher(pattern: string): (name: string) => boolean {
    let matches = this.#matchers.get(pattern);
    if (!matches) {
      matches = picomatch.scan(pattern).isGlob
        ? picomatch(pattern, { dot: true })
        : (name) => name === pattern;
      this.#matchers.set(pattern, matches);
    }
    return matches;
  }

  #build(binding: ToolBinding): PolicyEntry[] {
    const policies = this.policiesFor(binding);
    const env: PolicyEnv = {
      binding,
      store: this.#deps.store,
      logger: this.#deps.logger,
      now: this.#now,
      random: this.#random,
      emit: this.#emit,
    };
    const { server, tool } = binding;
    const cacheable = isCacheable(tool, policies.cache);
    const entries: PolicyEntry[] = [];

    if (policies.rateLimit)
      entries.push({ name: "rateLimit", policy: rateLimitPolicy(policies.rateLimit, env) });
    if (policies.cache && cacheable) {
      entries.push({ name: "cache", policy: cachePolicy(policies.cache, this.#cache, env) });
    }
    if (policies.fallback) {
      const setup = {
        options: policies.fallback,
        callTool: this.#deps.callTool,
        state: this.#cache,
        cache: policies.cache,
        cacheable,
      };
      entries.push({ name: "fallback", policy: fallbackPolicy(setup, env) });
    }
    if (policies.invalidates) {
      const patterns = policies.invalidates;
      const invalidate = (p: readonly string[]) => this.invalidateTools(p);
      entries.push({ name: "invalidate", policy: invalidatePolicy(patterns, invalidate, env) });
    }
    if (policies.circuitBreaker) {
      const options = policies.circuitBreaker;
      const breaker = shared(
        this.#breakers,
        server,
        options,
        () => new CircuitBreaker(server, options, this.#now, this.#emit),
      );
      entries.push({ name: "circuitBreaker", policy: circuitBreakerPolicy(breaker, env) });
    }
    if (policies.bulkhead) {
      const options = policies.bulkhead;
      const bulkhead = shared(this.#bulkheads, server, options, () => new Bulkhead(server, options));
      entries.push({ name: "bulkhead", policy: bulkheadPolicy(bulkhead, env) });
    }
    if (policies.retry && isRetrySafe(tool, policies.retry)) {
      const options = policies.retry;
      const budgetOptions = options.budget;
      const budget =
        budgetOptions === false
          ? undefined
          : shared(this.#budgets, server, budgetOptions, () => new RetryBudget(budgetOptions, this.#now));
      entries.push({ name: "retry", policy: retryPolicy(options, budget, env) });
    }
    entries.push({ name: "timeout", policy: timeoutPolicy(policies.timeoutMs, env) });
    return entries;
  }

  // A listener that throws must not fail the call that emitted the event.
  readonly #emit: Emit = (event, payload) => {
    try {
      (this.emit as (event: string, payload: unknown) => boolean)(event, payload);
    } catch (error) {
      this.#deps.logger.error({ err: error, event }, "a policy event listener threw");
    }
  };
}

/**
 * One instance per server and options: tools of a server that end up with the same options share
 * it; a tool rule with different options gets its own.
 */
function shared<T>(map: Map<string, T>, server: string, options: unknown, make: () => T): T {
  const key = `${server}\u0000${canonicalJson(options)}`;
  let instance = map.get(key);
  if (!instance) {
    instance = make();
    map.set(key, instance);
  }
  return instance;
}
