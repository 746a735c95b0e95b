/**
 * Fallback chains: when the primary fails (throws, times out, circuit open; isError too with
 * `onIsError`), the alternatives are tried in order and the first that answers wins. Its result says
 * who answered in `_meta["switchboard/source"]` ("fallback:<n>:tool:<name>", "fallback:<n>:cache:stale",
 * "fallback:<n>:static"), so clients and audit can tell a degraded answer from a real one.
 *
 * When every alternative fails, the primary's own failure is what the caller gets, and each reason
 * is logged. A call the caller cancelled never falls back.
 *
 * The "last good" results behind `{ cache: "stale" }` are written here, on each successful primary
 * call, only for tools that may be cached at all (readOnlyHint or `cacheable: true`): serving a
 * remembered answer for a write would be a lie. They carry the cache's tags, so a write that
 * invalidates a tool's cache drops its last good results too.
 */
import { AsyncLocalStorage } from "node:async_hooks";
import { describeError, GatewayError } from "../core/errors.ts";
import type { CallContext, CallToolResult, ChainResult, Policy } from "../core/types.ts";
import { type CacheState, cacheKey, cacheTags, loadResult, storeResult } from "./cache.ts";
import { type CacheOptions, cacheSchema, type FallbackOptions, type FallbackStep } from "./config.ts";
import { NOTES, type PolicyDeps, type PolicyEnv } from "./types.ts";
import { cancelledError, failureKind, resultText, withSource } from "./util.ts";

const MAX_DEPTH = 4;
/** Without a cache policy, last good results are bounded like cached ones at the cache's default. */
const DEFAULT_MAX_ENTRY_BYTES = cacheSchema.parse({}).maxEntryBytes;

/**
 * The exposed tools a fallback call is nested in. Kept in async context rather than in `ctx` so the
 * loop guard holds whatever context the gateway builds for the nested call.
 */
const fallbackPath = new AsyncLocalStorage<readonly string[]>();

const TEMPLATE = /\{\{\s*args((?:\.[^.}\s]+)*)\s*\}\}/g;
const WHOLE_TEMPLATE = /^\{\{\s*args((?:\.[^.}\s]+)*)\s*\}\}$/;

/**
 * Maps the original arguments into a fallback tool's arguments. In `template`, a string that is
 * exactly "{{args.a.b}}" becomes that value (any type; an object key whose value is missing is
 * dropped), "{{args}}" is all of them, and "{{args.x}}" inside a longer string is interpolated
 * (objects as JSON, missing as ""). Array indexes are path segments: "{{args.items.0}}".
 */
export function mapArgs(template: unknown, args: Readonly<Record<string, unknown>>): unknown {
  if (typeof template === "string") {
    const whole = WHOLE_TEMPLATE.exec(template);
    if (whole) return lookup(args, whole[1] ?? "");
    return template.replace(TEMPLATE, (_match, path: string) => {
      const value = lookup(args, path);
      if (value === undefined || value === null) return "";
      return typeof value === "object" ? JSON.stringify(value) : String(value);
    });
  }
  if (Array.isArray(template)) return template.map((item) => mapArgs(item, args) ?? null);
  if (template !== null && typeof template === "object") {
    const out: Record<string, unknown> = {};
    for (const [key, value] of Object.entries(template)) {
      const mapped = mapArgs(value, args);
      if (mapped !== undefined) out[key] = mapped;
    }
    return out;
  }
  return template;
}

function lookup(args: unknown, path: string): unknown {
  let current: unknown = args;
  for (const segment of path.split(".").slice(1)) {
    if (current === null || typeof current !== "object") return undefined;
    // Own properties only: a template must not reach "__proto__" or "constructor".
    if (!Object.hasOwn(current, segment)) return undefined;
    current = (current as Record<string, unknown>)[segment];
  }
  return current;
}

export interface FallbackSetup {
  readonly options: FallbackOptions;
  readonly callTool: PolicyDeps["callTool"];
  readonly state: CacheState;
  /** The tool's effective cache options, if any (partitioning and size limit for last good results). */
  readonly cache: CacheOptions | undefined;
  /** Whether this tool's results may be kept as last good results. */
  readonly cacheable: boolean;
}

function stepLabel(step: FallbackStep): string {
  if ("tool" in step) return `tool ${step.tool}`;
  if ("cache" in step) return "stale cache";
  return "static";
}

export function fallbackPolicy(setup: FallbackSetup, env: PolicyEnv): Policy {
  const { options, state, cache, cacheable } = setup;
  const { binding } = env;
  const { server, exposedName } = binding;
  const tags = cacheTags(binding);
  const staleStep = options.chain.find(
    (step): step is Extract<FallbackStep, { cache: "stale" }> => "cache" in step,
  );
  const keepLastGood = staleStep !== undefined && cacheable;
  const maxEntryBytes = cache?.maxEntryBytes ?? DEFAULT_MAX_ENTRY_BYTES;

  const staleKeyFor = (args: unknown, ctx: CallContext): string | undefined => {
    try {
      return cacheKey("stale", binding, cache?.shared ? null : ctx.principal.id, args, ctx);
    } catch {
      return undefined;
    }
  };

  const runStep = async (
    step: FallbackStep,
    n: number,
    args: Readonly<Record<string, unknown>>,
    ctx: CallContext,
  ): Promise<{ result: ChainResult; source: string }> => {
    if ("tool" in step) {
      const path = fallbackPath.getStore() ?? [];
      if (step.tool === exposedName || path.includes(step.tool)) {
        throw new Error(`it would call ${[...path, exposedName, step.tool].join(" → ")} in a loop`);
      }
      if (path.length >= MAX_DEPTH) throw new Error(`fallbacks nested more than ${MAX_DEPTH} deep`);
      const mapped = (step.args ? mapArgs(step.args, args) : { ...args }) as Record<string, unknown>;
      // Fresh notes: the nested call's policies must not overwrite this call's facts.
      const nested: CallContext = { ...ctx, notes: new Map() };
      const result = await fallbackPath.run([...path, exposedName], () =>
        setup.callTool(step.tool, mapped, nested),
      );
      if (result.isError) throw new Error(`isError: ${resultText(result)}`);
      return { result, source: `fallback:${n}:tool:${step.tool}` };
    }
    if ("cache" in step) {
      if (!cacheable) throw new Error("the tool is not cacheable, so no last good result is kept");
      const key = staleKeyFor(args, ctx);
      if (key === undefined) throw new Error("the arguments have no canonical JSON form");
      const result = await loadResult(env, key);
      if (!result) throw new Error("no last good result for these arguments");
      ctx.notes.set(NOTES.cache, "stale");
      return { result, source: `fallback:${n}:cache:stale` };
    }
    const fixed = step.static;
    const result: CallToolResult =
      "text" in fixed
        ? { content: [{ type: "text", text: fixed.text }] }
        : (structuredClone(fixed) as unknown as CallToolResult);
    return { result, source: `fallback:${n}:static` };
  };

  return (next) => async (call, ctx) => {
    const generation = state.generation(tags);
    let primary: { readonly result: ChainResult } | { readonly error: unknown };
    let reason: string;
    try {
      const result = await next(call, ctx);
      if (!result.isError && keepLastGood && staleStep) {
        const key = staleKeyFor(call.args, ctx);
        if (key !== undefined) {
          await storeResult(
            env,
            state,
            result,
            {
              key,
              tags,
              generation,
              ttlMs: staleStep.staleTtlMs,
              maxEntryBytes,
            },
            ctx,
          );
        }
      }
      if (!result.isError || !options.onIsError) return result;
      primary = { result };
      reason = `isError: ${resultText(result)}`;
    } catch (error) {
      if (failureKind(error, ctx.signal) === "cancelled") throw error;
      primary = { error };
      reason = describeError(error);
    }

    const reasons = [`primary: ${reason}`];
    env.logger.info({ server, tool: exposedName, reason }, "tool call failed; trying fallbacks");
    for (const [i, step] of options.chain.entries()) {
      if (ctx.signal.aborted) throw cancelledError(binding);
      const n = i + 1;
      try {
        const { result, source } = await runStep(step, n, call.args, ctx);
        ctx.notes.set(NOTES.source, source);
        ctx.notes.set(NOTES.fallbackReasons, reasons);
        env.emit("fallback", { server, tool: exposedName, outcome: "answered", source, reasons });
        env.logger.info({ server, tool: exposedName, source, reasons }, "fallback answered");
        return withSource(result, source);
      } catch (error) {
        if (error instanceof GatewayError && error.code === "cancelled" && ctx.signal.aborted) throw error;
        const why = `fallback ${n} (${stepLabel(step)}): ${describeError(error)}`;
        reasons.push(why);
        env.logger.warn(
          { server, tool: exposedName, step: n, reason: describeError(error) },
          "fallback failed",
        );
      }
    }
    ctx.notes.set(NOTES.fallbackReasons, reasons);
    env.emit("fallback", { server, tool: exposedName, outcome: "exhausted", reasons });
    env.logger.warn({ server, tool: exposedName, reasons }, "all fallbacks failed");
    if ("error" in primary) throw primary.error;
    return primary.result;
  };
}
