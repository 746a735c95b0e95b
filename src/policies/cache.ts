/**
 * Result cache for tools/call, in the Store (so Redis can share it), plus the invalidation that
 * writing tools trigger.
 *
 * - Only tools annotated readOnlyHint, or marked `cacheable: true`, are cached; isError results and
 *   answers that did not come from the backend (a fallback's) never are.
 * - Key: sha256 of the canonical JSON of [server, tool, partition, args]; the partition is the
 *   principal id unless the tool is `shared`, so one caller never sees another's results.
 * - Every entry is tagged `tool:<server>:<tool>` and `server:<server>`; invalidation drops tags,
 *   never scans keys.
 * - Concurrent identical misses make one backend call: within a replica they join the call in
 *   flight; across replicas sharing a store, the first to miss takes the store lock `sf:<key>` and the
 *   others wait for its release, then read what it stored (see `cachePolicy`).
 * - A miss that was in flight while its tags were invalidated is not stored: its answer may predate
 *   the write that invalidated it. Replicas tell each other about invalidations on the store channel
 *   INVALIDATED_CHANNEL, so this holds across replicas too, save for the pub/sub delay (a read that
 *   stores within that delay of a write elsewhere can still keep its older answer until its TTL).
 */
import { taskOfAnswer } from "../backends/mcp/tasks.ts";
import { describeError } from "../core/errors.ts";
import type {
  CallContext,
  CallHandler,
  ChainResult,
  Policy,
  StoreLock,
  Tool,
  ToolCall,
} from "../core/types.ts";
import { hashJson } from "../stores/canonical-json.ts";
import type { CacheOptions } from "./config.ts";
import { NOTES, type PolicyEnv, type ToolBinding } from "./types.ts";
import {
  cancelledError,
  failureKind,
  logSharingFailure,
  sourceOf,
  untilAborted,
  withSource,
} from "./util.ts";

/** The store channel on which replicas announce the cache tags they invalidated (a JSON array). */
export const INVALIDATED_CHANNEL = "cache:invalidated";

/**
 * Rounds of waiting for another replica's identical call before calling the backend anyway: a round
 * ends without a stored answer when that call failed, answered isError or was invalidated, and the
 * next round's lock then goes to one of the waiters.
 */
const SINGLE_FLIGHT_ROUNDS = 3;

/** Whether results of this tool may be cached (by the cache, or kept as "last good" for fallbacks). */
export function isCacheable(tool: Tool, options: Pick<CacheOptions, "cacheable"> | undefined): boolean {
  return options?.cacheable ?? tool.annotations?.readOnlyHint === true;
}

export function toolTag(server: string, tool: string): string {
  return `tool:${server}:${tool}`;
}

export function serverTag(server: string): string {
  return `server:${server}`;
}

export function cacheTags(binding: ToolBinding): readonly string[] {
  return [toolTag(binding.server, binding.tool.name), serverTag(binding.server)];
}

/**
 * What one call has already worked out about its arguments and its result. The cache and the
 * fallback's last good copy both key the call's arguments and both store its result; hashing the
 * arguments (canonical JSON, then sha256) and serialising the result are the dearest steps of a miss,
 * so each is done once per call. Kept per call context, not per object: a caller may reuse and modify
 * an arguments object between calls, but neither it nor the result changes while one call runs.
 */
interface CallMemo {
  binding?: ToolBinding;
  args?: unknown;
  partition?: string | null;
  hash?: string;
  result?: ChainResult;
  json?: string;
}

const callMemos = new WeakMap<CallContext, CallMemo>();

function memoOf(ctx: CallContext): CallMemo {
  let memo = callMemos.get(ctx);
  if (!memo) {
    memo = {};
    callMemos.set(ctx, memo);
  }
  return memo;
}

/**
 * Throws TypeError when the arguments have no canonical JSON form (the call then skips the cache).
 * With `ctx`, the hash is computed once per call.
 */
export function cacheKey(
  kind: "cache" | "stale",
  binding: ToolBinding,
  partition: string | null,
  args: unknown,
  ctx?: CallContext,
): string {
  const memo = ctx ? memoOf(ctx) : undefined;
  if (
    memo?.hash !== undefined &&
    memo.binding === binding &&
    memo.args === args &&
    memo.partition === partition
  ) {
    return `${kind}:${memo.hash}`;
  }
  const hash = hashJson([binding.server, binding.tool.name, partition, args]);
  if (memo) {
    memo.binding = binding;
    memo.args = args;
    memo.partition = partition;
    memo.hash = hash;
  }
  return `${kind}:${hash}`;
}

/** JSON.stringify of a result, once per call when `ctx` is given. Throws what JSON.stringify throws. */
function resultJson(result: ChainResult, ctx: CallContext | undefined): string {
  const memo = ctx ? memoOf(ctx) : undefined;
  if (memo?.json !== undefined && memo.result === result) return memo.json;
  const json = JSON.stringify(result);
  if (memo) {
    memo.result = result;
    memo.json = json;
  }
  return json;
}

interface Pending {
  readonly promise: Promise<ChainResult>;
  readonly generation: number;
  readonly signal: AbortSignal;
}

/** Cache state shared by every chain of one runtime. */
export class CacheState {
  readonly inflight = new Map<string, Pending>();
  readonly #generations = new Map<string, number>();

  /**
   * How many times these tags were invalidated in all. Counters only grow, so the sum changes on every
   * invalidation of any of them: comparing two sums tells whether one happened in between.
   */
  generation(tags: readonly string[]): number {
    let sum = 0;
    for (const tag of tags) sum += this.#generations.get(tag) ?? 0;
    return sum;
  }

  bump(tag: string): void {
    this.#generations.set(tag, (this.#generations.get(tag) ?? 0) + 1);
  }
}

export interface StoreResultOptions {
  readonly key: string;
  readonly tags: readonly string[];
  /** The tags' generation when the call started; nothing is stored if it changed since. */
  readonly generation: number;
  readonly ttlMs: number;
  readonly maxEntryBytes: number;
}

function skipped(env: PolicyEnv, reason: string): "skipped" {
  env.emit("cache", {
    server: env.binding.server,
    tool: env.binding.exposedName,
    outcome: "skipped",
    reason,
  });
  return "skipped";
}

/** The store failed a cache read or write: logged (see logSharingFailure) and counted as an error event. */
function storeFailed(env: PolicyEnv, error: unknown, message: string): void {
  const { server, exposedName } = env.binding;
  logSharingFailure(env.logger, error, { server, tool: exposedName }, message);
  env.emit("cache", { server, tool: exposedName, outcome: "error", reason: describeError(error) });
}

/**
 * Stores a result if it may be stored; never throws (a cache that fails must not fail the call).
 * `ctx`, when given, lets a second store of the same result in the same call reuse its JSON.
 */
export async function storeResult(
  env: PolicyEnv,
  state: CacheState,
  result: ChainResult,
  options: StoreResultOptions,
  ctx?: CallContext,
): Promise<"stored" | "skipped"> {
  const { server, exposedName } = env.binding;
  if (result.isError) return skipped(env, "isError result");
  // A task the server started is one caller's: a later call must start its own.
  if (taskOfAnswer(result) !== undefined) return skipped(env, "a task the server runs");
  if (sourceOf(result) !== undefined) return skipped(env, `answer came from ${sourceOf(result)}`);
  if (state.generation(options.tags) !== options.generation) {
    return skipped(env, "invalidated while the call ran");
  }
  let json: string;
  try {
    json = resultJson(result, ctx);
  } catch (error) {
    return skipped(env, `result is not JSON: ${describeError(error)}`);
  }
  // Only a result that may be near the limit needs counting: a UTF-8 byte is at most 3 per UTF-16 unit.
  if (json.length * 3 > options.maxEntryBytes) {
    const bytes = Buffer.byteLength(json, "utf8");
    if (bytes > options.maxEntryBytes) {
      return skipped(env, `result is ${bytes} bytes, over maxEntryBytes ${options.maxEntryBytes}`);
    }
  }
  try {
    await env.store.set(options.key, json, { ttlMs: options.ttlMs, tags: options.tags });
  } catch (error) {
    storeFailed(env, error, "cache store failed; result not cached");
    return "skipped";
  }
  env.emit("cache", { server, tool: exposedName, outcome: "stored" });
  return "stored";
}

/** Reads and parses a stored result; undefined when absent, unreadable, or the store fails. */
export async function loadResult(env: PolicyEnv, key: string): Promise<ChainResult | undefined> {
  const { server, exposedName } = env.binding;
  let raw: string | undefined;
  try {
    raw = await env.store.get(key);
  } catch (error) {
    storeFailed(env, error, "cache read failed; calling the backend");
    return undefined;
  }
  if (raw === undefined) return undefined;
  try {
    return JSON.parse(raw) as ChainResult;
  } catch (error) {
    env.logger.warn({ err: error, server, tool: exposedName }, "unreadable cache entry dropped");
    try {
      await env.store.delete(key);
    } catch {
      // Already logged why the entry is unusable; a failed delete only means it expires by TTL.
    }
    return undefined;
  }
}

/**
 * `lockTtlMs` bounds how long one replica's miss keeps the others waiting: the longest the call can
 * take (queueing, attempts and backoff included). A holder that crashed is waited for that long at
 * most.
 */
export function cachePolicy(
  options: CacheOptions,
  state: CacheState,
  env: PolicyEnv,
  lockTtlMs: number,
): Policy {
  const { binding } = env;
  const { server, exposedName } = binding;
  const tags = cacheTags(binding);
  const storeOptions = { tags, ttlMs: options.ttlMs, maxEntryBytes: options.maxEntryBytes };
  return (next) => {
    // Helpers made once per chain rather than per call: closures on this path are paid on every call.

    /** Waits for an identical call in flight, if one started since the last invalidation. */
    const join = (key: string, call: ToolCall, ctx: CallContext): Promise<ChainResult> | undefined => {
      const pending = state.inflight.get(key);
      if (!pending || pending.generation !== state.generation(tags)) return undefined;
      ctx.notes.set(NOTES.cache, "miss");
      ctx.notes.set(NOTES.coalesced, true);
      env.emit("cache", { server, tool: exposedName, outcome: "coalesced" });
      return untilAborted(pending.promise, ctx.signal, binding).then(
        // A copy: the leader's caller may decorate its result object.
        (result) => structuredClone(result),
        (error: unknown) => {
          // The leader's own caller cancelled: that says nothing about this call, so run it.
          if (pending.signal.aborted && !ctx.signal.aborted) return handler(call, ctx);
          throw error;
        },
      );
    };

    const callAndStore = async (key: string, generation: number, call: ToolCall, ctx: CallContext) => {
      env.emit("cache", { server, tool: exposedName, outcome: "miss" });
      const result = await next(call, ctx);
      await storeResult(env, state, result, { ...storeOptions, key, generation }, ctx);
      return result;
    };

    /** Another call (on this replica or another) stored the answer while this one missed. */
    const served = (cached: ChainResult, ctx: CallContext, waited: boolean) => {
      ctx.notes.set(NOTES.source, "cache");
      if (waited) {
        ctx.notes.set(NOTES.coalesced, true);
        env.emit("cache", { server, tool: exposedName, outcome: "coalesced" });
      } else {
        ctx.notes.set(NOTES.cache, "hit");
        env.emit("cache", { server, tool: exposedName, outcome: "hit" });
      }
      return withSource(cached, "cache");
    };

    /** The coordination failed (fail-closed locks, say): the call must not, so it goes ahead alone. */
    const alone = (error: unknown, key: string, generation: number, call: ToolCall, ctx: CallContext) => {
      env.logger.debug(
        { err: error, server, tool: exposedName },
        "single flight across replicas unavailable; calling the backend",
      );
      return callAndStore(key, generation, call, ctx);
    };

    /**
     * A miss, made once across the replicas that share the store. The holder of `sf:<key>` reads the
     * store again (another replica may have stored the answer between this one's read and its lock),
     * calls the backend, stores, and releases, which wakes the waiters; they read what it stored. Lock
     * and wait failures call the backend: coordination saves backend calls, it never fails one. A
     * store of this process alone needs none of it: the calls in flight here are all there are.
     */
    const fill = async (
      key: string,
      generation: number,
      call: ToolCall,
      ctx: CallContext,
    ): Promise<ChainResult> => {
      if (!env.store.shared) return callAndStore(key, generation, call, ctx);
      const lockName = `sf:${key}`;
      for (let round = 0; round < SINGLE_FLIGHT_ROUNDS; round++) {
        let lock: StoreLock | undefined;
        try {
          lock = await env.store.lock(lockName, lockTtlMs);
        } catch (error) {
          return alone(error, key, generation, call, ctx);
        }
        if (lock) {
          try {
            const cached = await loadResult(env, key);
            if (cached) return served(cached, ctx, round > 0);
            return await callAndStore(key, generation, call, ctx);
          } finally {
            await lock.release();
          }
        }
        try {
          await env.store.waitForUnlock(lockName, lockTtlMs, ctx.signal);
        } catch (error) {
          if (ctx.signal.aborted) throw cancelledError(binding);
          return alone(error, key, generation, call, ctx);
        }
        const cached = await loadResult(env, key);
        if (cached) return served(cached, ctx, true);
      }
      return callAndStore(key, generation, call, ctx);
    };

    const handler: CallHandler = async (call, ctx) => {
      let key: string;
      try {
        key = cacheKey("cache", binding, options.shared ? null : ctx.principal.id, call.args, ctx);
      } catch (error) {
        env.emit("cache", { server, tool: exposedName, outcome: "skipped", reason: describeError(error) });
        return next(call, ctx);
      }

      const early = join(key, call, ctx);
      if (early) return early;
      const cached = await loadResult(env, key);
      if (cached) {
        ctx.notes.set(NOTES.cache, "hit");
        ctx.notes.set(NOTES.source, "cache");
        env.emit("cache", { server, tool: exposedName, outcome: "hit" });
        return withSource(cached, "cache");
      }
      // Another identical call may have started while this one read the store.
      const late = join(key, call, ctx);
      if (late) return late;

      // A miss until another replica's answer turns up (then "hit", or "coalesced" if it was waited for).
      ctx.notes.set(NOTES.cache, "miss");
      const generation = state.generation(tags);
      const promise = fill(key, generation, call, ctx);
      const pending: Pending = { promise, generation, signal: ctx.signal };
      state.inflight.set(key, pending);
      try {
        return await promise;
      } finally {
        if (state.inflight.get(key) === pending) state.inflight.delete(key);
      }
    };
    return handler;
  };
}

/**
 * For writing tools: after a successful (non-isError) call, drops the cached results of the tools
 * named in `invalidates`. Also after a timeout, a backend failure or a cancel, because the write may
 * have happened anyway and a needless miss is cheaper than a stale read; not after an isError answer (the
 * tool says it did not write) nor after a rejection (the call never reached the backend, or the
 * backend refused its arguments). A failed invalidation is logged, not thrown: the write itself is done.
 */
export function invalidatePolicy(
  patterns: readonly string[],
  invalidate: (patterns: readonly string[]) => Promise<number>,
  env: PolicyEnv,
): Policy {
  const run = async () => {
    try {
      await invalidate(patterns);
    } catch (error) {
      env.logger.warn(
        { err: error, server: env.binding.server, tool: env.binding.exposedName, invalidates: patterns },
        "cache invalidation failed; cached reads may be stale until their TTL",
      );
    }
  };
  return (next) => async (call, ctx) => {
    let result: ChainResult;
    try {
      result = await next(call, ctx);
    } catch (error) {
      const kind = failureKind(error, ctx.signal);
      if (kind !== "rejection") await run();
      throw error;
    }
    if (!result.isError) await run();
    return result;
  };
}
