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
 *
 * Replicas that share a store share more than its entries and buckets: the runtime announces the
 * cache tags it invalidates on the store's INVALIDATED_CHANNEL (so that reads in flight elsewhere do
 * not store answers older than the write), and shares the circuits of `shared: true` breakers.
 */
import { EventEmitter } from "node:events";
import picomatch from "picomatch";
import { describeError, GatewayError } from "../core/errors.ts";
import type { Policy, Unsubscribe } from "../core/types.ts";
import { canonicalJson, hashJson } from "../stores/canonical-json.ts";
import { Bulkhead, bulkheadPolicy } from "./bulkhead.ts";
import {
  CacheState,
  cachePolicy,
  INVALIDATED_CHANNEL,
  invalidatePolicy,
  isCacheable,
  serverTag,
  toolTag,
} from "./cache.ts";
import { BreakerSharing, CircuitBreaker, circuitBreakerPolicy } from "./circuit-breaker.ts";
import {
  compileToolRules,
  type EffectivePolicies,
  mergePolicySets,
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
import { logSharingFailure } from "./util.ts";

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
export type PolicyRuntimeConfig = PolicyConfig & {
  /** Each profile's own policies and tool rules (config `profiles`). Default: none. */
  readonly profiles?: Readonly<
    Record<
      string,
      { readonly policies: PolicySet; readonly toolPolicies: Readonly<Record<string, PolicySet>> }
    >
  >;
};

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
  /** The policies of the default endpoint and of each profile, by profile name ("" for the default). */
  #views = new Map<string, { readonly config: PolicyConfig; readonly rules: readonly ToolRule[] }>();
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
  readonly #sharing: BreakerSharing;
  readonly #invalidations: Promise<Unsubscribe | undefined>;
  #closed = false;

  constructor(config: PolicyRuntimeConfig, deps: PolicyDeps) {
    super();
    this.#views = policyViews(config);
    this.#deps = deps;
    this.#now = deps.now ?? Date.now;
    this.#random = deps.random ?? Math.random;
    this.#sharing = new BreakerSharing(deps.store, deps.logger, this.#now);
    this.#invalidations = this.#hearInvalidations();
  }

  /**
   * Takes new policy rules (a config reload). Chains are built again for the next calls; calls in
   * flight finish under the chain they started with. What a rule's options decide keeps its state:
   * a breaker, bulkhead or retry budget whose server and options did not change is the same instance,
   * and rate-limit buckets and cached results live in the store under keys made of their rule's
   * numbers, so a rule that did not change keeps its buckets and its entries.
   */
  reconfigure(config: PolicyRuntimeConfig): void {
    this.#views = policyViews(config);
    this.#chains.clear();
    this.#matchers.clear();
  }

  /** The policies for this tool, outermost first. The timeout is always there (timeouts are always on). */
  chainFor(binding: ToolBinding): Policy[] {
    return this.entriesFor(binding).map((entry) => entry.policy);
  }

  /**
   * `chainFor` with each policy's name, for a gateway that inserts its own policies between them.
   * `profile`: the endpoint the request came to, whose own policies (config `profiles`) apply.
   */
  entriesFor(binding: ToolBinding, profile = ""): readonly PolicyEntry[] {
    if (this.#closed) throw new GatewayError("internal", "The policy runtime is closed");
    const key = `${profile}\u0000${binding.exposedName}`;
    const known = this.#chains.get(key);
    if (known && known.binding.server === binding.server && known.binding.tool === binding.tool)
      return known.entries;
    const entries = Object.freeze(this.#build(binding, profile));
    this.#chains.set(key, { binding, entries });
    this.#seen.set(binding.exposedName, binding);
    return entries;
  }

  /** The merged policies of one tool (for diagnostics: what applies to this tool, and why). */
  policiesFor(binding: Pick<ToolBinding, "exposedName" | "server">, profile = ""): EffectivePolicies {
    const view =
      this.#views.get(profile) ??
      (this.#views.get("") as { config: PolicyConfig; rules: readonly ToolRule[] });
    return resolvePolicies(view.config, view.rules, binding.exposedName, binding.server);
  }

  /**
   * Called when a server's tool/resource/prompt list changes: drops its cache entries (by tag).
   * Never rejects, since callers fire and forget it; a store failure is logged and the entries left
   * behind expire by their TTL.
   */
  async invalidateServer(server: string): Promise<void> {
    const tag = serverTag(server);
    this.#cache.bump(tag);
    await this.#announce([tag]);
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
   * Drops the cached results of the exposed tools matching `patterns` (names or globs), among the
   * gateway's tools (`deps.tools`) and those the runtime built chains for. Returns how many entries
   * went.
   */
  async invalidateTools(patterns: readonly string[]): Promise<number> {
    const matchers = patterns.map((pattern) => this.#matcher(pattern));
    const targets = new Map<string, ToolBinding>();
    const consider = (binding: ToolBinding) => {
      if (matchers.some((matches) => matches(binding.exposedName))) {
        targets.set(toolTag(binding.server, binding.tool.name), binding);
      }
    };
    for (const binding of this.#deps.tools?.() ?? []) consider(binding);
    for (const binding of this.#seen.values()) consider(binding);
    // Bump first, here and on the other replicas: a read already in flight must not store its (older)
    // answer after the drop.
    for (const tag of targets.keys()) this.#cache.bump(tag);
    if (targets.size > 0) await this.#announce([...targets.keys()]);
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

  /** A server's backend is up again after being down: its open circuits let trial calls through now. */
  backendUp(server: string): void {
    for (const breaker of this.#breakers.values()) if (breaker.server === server) breaker.backendUp();
  }

  /** The state of every circuit breaker, for health reporting. */
  breakerStates(): BreakerStatus[] {
    return [...this.#breakers.values()].map((breaker) => {
      const retryAt = breaker.retryAt;
      return { server: breaker.server, state: breaker.state, ...(retryAt === undefined ? {} : { retryAt }) };
    });
  }

  /**
   * Call when the shared store is back after an outage: shared circuits are read again, since the
   * messages sent meanwhile were missed. Never rejects.
   */
  async storeRecovered(): Promise<void> {
    if (this.#closed) return;
    await this.#sharing.resync();
  }

  /** Fails queued calls and forgets per-call state. Does not close the store: the gateway owns it. */
  async close(): Promise<void> {
    if (this.#closed) return;
    this.#closed = true;
    const unsubscribe = await this.#invalidations;
    await Promise.all([unsubscribe?.(), this.#sharing.close()]);
    const shuttingDown = new GatewayError(
      "backend_unavailable",
      "The gateway is shutting down; the call was not made.",
    );
    for (const bulkhead of this.#bulkheads.values()) bulkhead.drain(shuttingDown);
    this.#cache.inflight.clear();
    this.#chains.clear();
  }

  /** Tells the other replicas which tags were invalidated, so that their reads in flight do not store. */
  async #announce(tags: readonly string[]): Promise<void> {
    try {
      await this.#deps.store.publish(INVALIDATED_CHANNEL, JSON.stringify(tags));
    } catch (error) {
      logSharingFailure(
        this.#deps.logger,
        error,
        { tags },
        "could not tell other replicas about a cache invalidation; a read in flight there may store an " +
          "older answer, served until its TTL",
      );
    }
  }

  async #hearInvalidations(): Promise<Unsubscribe | undefined> {
    try {
      return await this.#deps.store.subscribe(INVALIDATED_CHANNEL, (message, info) => {
        // This replica bumped its own tags before it announced them.
        if (info.fromSelf) return;
        let tags: unknown;
        try {
          tags = JSON.parse(message);
        } catch {
          tags = undefined;
        }
        if (!Array.isArray(tags)) {
          this.#deps.logger.warn(
            { message: message.slice(0, 200) },
            "ignored a malformed invalidation message",
          );
          return;
        }
        for (const tag of tags) if (typeof tag === "string") this.#cache.bump(tag);
      });
    } catch (error) {
      this.#deps.logger.warn(
        { err: error },
        "could not subscribe to other replicas' cache invalidations; a read in flight here while another " +
          "replica writes may store an older answer, served until its TTL",
      );
      return undefined;
    }
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

  #build(binding: ToolBinding, profile: string): PolicyEntry[] {
    const policies = this.policiesFor(binding, profile);
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
      const retried = policies.retry !== undefined && isRetrySafe(tool, policies.retry);
      const lockTtlMs = longestCallMs(policies, retried);
      entries.push({ name: "cache", policy: cachePolicy(policies.cache, this.#cache, env, lockTtlMs) });
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
      const breaker = shared(this.#breakers, server, options, () =>
        options.shared
          ? this.#sharing.create(breakerId(server, options), server, options, this.#emit)
          : new CircuitBreaker(server, options, this.#now, this.#emit),
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

/** Names a shared circuit the same on every replica with the same config: server and options. */
function breakerId(server: string, options: unknown): string {
  return `${server}:${hashJson(options).slice(0, 16)}`;
}

/**
 * The longest one call through the inner policies can take: the longest wait for a bulkhead slot, then
 * every attempt timing out, with the longest backoff between them.
 */
function longestCallMs(policies: EffectivePolicies, retried: boolean): number {
  const retry = retried ? policies.retry : undefined;
  const attempts = retry?.maxAttempts ?? 1;
  const queued = policies.bulkhead?.maxQueueWaitMs ?? 0;
  return queued + policies.timeoutMs * attempts + (attempts - 1) * (retry?.maxDelayMs ?? 0);
}

/**
 * The policy config of the default endpoint and of each profile: a profile's `policies` replace the
 * top-level ones key by key, and its `toolPolicies` come after the top-level rules (so that, for the
 * same name, the profile's win); server policies stay as they are.
 */
function policyViews(
  config: PolicyRuntimeConfig,
): Map<string, { config: PolicyConfig; rules: readonly ToolRule[] }> {
  const views = new Map<string, { config: PolicyConfig; rules: readonly ToolRule[] }>();
  views.set("", { config, rules: compileToolRules(config.toolPolicies) });
  for (const [name, profile] of Object.entries(config.profiles ?? {})) {
    const derived: PolicyConfig = {
      policies: mergePolicySets([config.policies, profile.policies]),
      servers: config.servers,
      toolPolicies: { ...config.toolPolicies, ...profile.toolPolicies },
    };
    views.set(name, { config: derived, rules: compileToolRules(derived.toolPolicies) });
  }
  return views;
}
