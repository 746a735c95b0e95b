/**
 * Token-bucket rate limits, held in the Store (`takeTokens`) so that a Redis store shares them across
 * gateway instances. Every limit in the list must allow the call. Limits are taken narrowest first
 * (per caller and tool … global), so that a caller over its own limit is refused at its own bucket
 * without touching the buckets it shares with everyone else; a call that one limit refuses gives back
 * what the limits before it gave (`returnTokens`).
 *
 * In "wait" mode a call that finds its bucket empty takes its place in line: the store reserves the
 * token its turn brings (stores/contract.ts), so waiters are served first come, first served on every
 * replica, and a call whose turn would come later than `maxWaitMs` is refused at once instead of
 * waiting in vain. The call then sleeps exactly until its turn (the longest of its limits' waits); it
 * never polls. A call cancelled while it waits gives its place back.
 *
 * While a shared store is unavailable, `store.onStoreError` decides: in "fail-open" (the default) the
 * store itself answers from this replica's memory, so limits become per replica and this policy never
 * sees the outage; in "fail-closed" the store throws `store_unavailable`, which fails the call with
 * that error (a limit that cannot be checked is not waived). Any other store failure lets the call
 * through with a warning: a limiter bug should not become a gateway outage.
 */
import { GatewayError, RateLimited } from "../core/errors.ts";
import type { Policy } from "../core/types.ts";
import type { RateLimitOptions } from "./config.ts";
import { NOTES, type PolicyEnv, type ToolBinding } from "./types.ts";
import { sleep } from "./util.ts";

export function refillPerSec(limit: RateLimitOptions): number {
  return limit.refillPerSecond ?? (limit.refillPerMinute ?? 0) / 60;
}

/**
 * The bucket a call draws from: calls with the same key share one bucket. The limit's own numbers are
 * part of the key: two limits of one scope (a burst and a sustained rate, or two rules' "global"
 * limits) that drew on one bucket would each refill it at their own rate, and the slower would not
 * hold.
 */
export function bucketKey(limit: RateLimitOptions, binding: ToolBinding, principalId: string): string {
  return `${scopeKey(limit, binding, principalId)}:${limit.capacity}/${refillPerSec(limit)}`;
}

function scopeKey(limit: RateLimitOptions, binding: ToolBinding, principalId: string): string {
  let key: string;
  switch (limit.scope) {
    case "global":
      key = "rl:global";
      break;
    case "server":
      key = `rl:server:${binding.server}`;
      break;
    case "tool":
      key = `rl:tool:${binding.exposedName}`;
      break;
    case "principal":
      return `rl:principal:${principalId}`;
  }
  return limit.perPrincipal ? `${key}:principal:${principalId}` : key;
}

export function describeLimit(limit: RateLimitOptions): string {
  const refill =
    limit.refillPerMinute !== undefined ? `${limit.refillPerMinute}/min` : `${limit.refillPerSecond}/s`;
  const who = limit.scope === "principal" ? "per-caller" : `per-${limit.scope}`;
  return `${who}${limit.perPrincipal && limit.scope !== "principal" ? " per-caller" : ""} limit: burst ${limit.capacity}, ${refill}`;
}

function rejection(
  limit: RateLimitOptions,
  binding: ToolBinding,
  key: string,
  retryAfterMs: number,
  now: number,
) {
  const data = { server: binding.server, tool: binding.exposedName, scope: limit.scope, key };
  const what = `Rate limit reached for "${binding.exposedName}" (${describeLimit(limit)})`;
  // A wait past the last date a Date can hold (a refill of 1e-13/s, say) is as good as never.
  if (!Number.isFinite(retryAfterMs) || now + retryAfterMs > 8.64e15) {
    return new RateLimited(
      `${what}; this limit does not refill enough for the call, so retrying will not help.`,
      retryAfterMs,
      data,
    );
  }
  const seconds = (retryAfterMs / 1000).toFixed(retryAfterMs < 10_000 ? 1 : 0);
  const retry = `try again in ${seconds} s (after ${new Date(now + retryAfterMs).toISOString()})`;
  if (limit.mode === "wait") {
    return new RateLimited(
      `${what}: behind the calls already waiting for this limit, the call would wait ${seconds} s, longer ` +
        `than its maxWaitMs (${limit.maxWaitMs} ms) in mode "wait", so it was refused at once. ` +
        `${capitalized(retry)}, or raise maxWaitMs if callers may wait that long.`,
      retryAfterMs,
      data,
    );
  }
  return new RateLimited(`${what}; ${retry}.`, retryAfterMs, data);
}

function capitalized(text: string): string {
  return text.charAt(0).toUpperCase() + text.slice(1);
}

/** Narrower buckets first: per caller before shared, tool before server before global. */
function breadth(limit: RateLimitOptions): number {
  const shared = { tool: 0, server: 1, principal: 2, global: 2 }[limit.scope];
  const perCaller = limit.scope === "principal" || limit.perPrincipal;
  return (perCaller ? 0 : 3) + shared;
}

/** Tokens a call holds from one limit: taken at once (`waitMs` 0) or reserved for `dueAt`. */
interface Held {
  readonly key: string;
  readonly bucket: { readonly capacity: number; readonly refillPerSec: number };
  /** When the token may be used (env clock, ms). */
  readonly dueAt: number;
}

export function rateLimitPolicy(limits: readonly RateLimitOptions[], env: PolicyEnv): Policy {
  const { binding } = env;
  const ordered = [...limits].sort((a, b) => breadth(a) - breadth(b));

  /** Gives back what a call that will not go on holds. Never throws: the call's own error matters. */
  const giveBack = async (held: readonly Held[]) => {
    for (const { key, bucket, dueAt } of held) {
      try {
        await env.store.returnTokens(key, bucket, 1, Math.max(0, dueAt - env.now()));
      } catch (error) {
        env.logger.debug(
          { err: error, key, tool: binding.exposedName },
          "could not give a rate-limit token back",
        );
      }
    }
  };

  return (next) => async (call, ctx) => {
    const start = env.now();
    const held: Held[] = [];
    let tightest: { key: string; remaining: number } | undefined;
    let dueAt = start;
    for (const limit of ordered) {
      const key = bucketKey(limit, binding, ctx.principal.id);
      const bucket = { capacity: limit.capacity, refillPerSec: refillPerSec(limit) };
      let taken: { ok: boolean; retryAfterMs: number; remaining: number };
      try {
        taken = await env.store.takeTokens(
          key,
          bucket,
          1,
          limit.mode === "wait" ? { maxWaitMs: limit.maxWaitMs } : undefined,
        );
      } catch (error) {
        if (error instanceof GatewayError && error.code === "store_unavailable") {
          await giveBack(held);
          throw new GatewayError(
            "store_unavailable",
            `"${binding.exposedName}" was not called: its ${describeLimit(limit)} could not be checked. ` +
              error.message,
            { cause: error, data: { ...error.data, server: binding.server, tool: binding.exposedName } },
          );
        }
        env.logger.warn(
          { err: error, key, tool: binding.exposedName },
          "rate limit store failed; allowing the call",
        );
        continue;
      }
      const event = { server: binding.server, tool: binding.exposedName, scope: limit.scope, key };
      const wait = taken.retryAfterMs;
      if (!taken.ok) {
        env.emit("limit", { ...event, outcome: "rejected", retryAfterMs: wait });
        ctx.notes.set(NOTES.limit, { key, remaining: 0, rejected: true });
        await giveBack(held);
        throw rejection(limit, binding, key, wait, env.now());
      }
      const now = env.now();
      held.push({ key, bucket, dueAt: now + wait });
      dueAt = Math.max(dueAt, now + wait);
      if (wait > 0) env.emit("limit", { ...event, outcome: "waited", retryAfterMs: wait });
      if (!tightest || taken.remaining < tightest.remaining) tightest = { key, remaining: taken.remaining };
    }
    const sleepMs = dueAt - env.now();
    if (sleepMs > 0) {
      try {
        await sleep(sleepMs, ctx.signal, binding);
      } catch (error) {
        await giveBack(held);
        throw error;
      }
    }
    if (tightest) ctx.notes.set(NOTES.limit, { ...tightest, waitedMs: env.now() - start });
    return next(call, ctx);
  };
}
