/**
 * Token-bucket rate limits, held in the Store (`takeTokens`) so that a Redis store shares them across
 * gateway instances. Every limit in the list must allow the call. The store has no refund, so a limit
 * that refuses does not give back the tokens the limits before it took; limits are therefore taken
 * narrowest first (per caller and tool … global), so that a caller over its own limit is refused at
 * its own bucket and never drains the buckets it shares with everyone else.
 *
 * In "wait" mode the call sleeps exactly the wait the bucket computed, then takes again; it never
 * polls. Another caller may take the refilled token first, in which case the new exact wait is
 * slept, as long as the total stays within `maxWaitMs`.
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
  // A wait past the last date a Date can hold (a refill of 1e-13/s, say) is as good as never.
  if (!Number.isFinite(retryAfterMs) || now + retryAfterMs > 8.64e15) {
    return new RateLimited(
      `Rate limit reached for "${binding.exposedName}" (${describeLimit(limit)}); this limit does not refill ` +
        "enough for the call, so retrying will not help.",
      retryAfterMs,
      data,
    );
  }
  const seconds = (retryAfterMs / 1000).toFixed(retryAfterMs < 10_000 ? 1 : 0);
  return new RateLimited(
    `Rate limit reached for "${binding.exposedName}" (${describeLimit(limit)}); try again in ${seconds} s ` +
      `(after ${new Date(now + retryAfterMs).toISOString()}).`,
    retryAfterMs,
    data,
  );
}

/** Narrower buckets first: per caller before shared, tool before server before global. */
function breadth(limit: RateLimitOptions): number {
  const shared = { tool: 0, server: 1, principal: 2, global: 2 }[limit.scope];
  const perCaller = limit.scope === "principal" || limit.perPrincipal;
  return (perCaller ? 0 : 3) + shared;
}

export function rateLimitPolicy(limits: readonly RateLimitOptions[], env: PolicyEnv): Policy {
  const { binding } = env;
  const ordered = [...limits].sort((a, b) => breadth(a) - breadth(b));
  return (next) => async (call, ctx) => {
    let tightest: { key: string; remaining: number; waitedMs: number } | undefined;
    for (const limit of ordered) {
      const key = bucketKey(limit, binding, ctx.principal.id);
      const bucket = { capacity: limit.capacity, refillPerSec: refillPerSec(limit) };
      const start = env.now();
      for (;;) {
        let taken: { ok: boolean; retryAfterMs: number; remaining: number };
        try {
          taken = await env.store.takeTokens(key, bucket, 1);
        } catch (error) {
          if (error instanceof GatewayError && error.code === "store_unavailable") {
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
          break;
        }
        const waitedMs = env.now() - start;
        if (taken.ok) {
          if (!tightest || taken.remaining < tightest.remaining)
            tightest = { key, remaining: taken.remaining, waitedMs };
          break;
        }
        const wait = taken.retryAfterMs;
        const event = { server: binding.server, tool: binding.exposedName, scope: limit.scope, key };
        if (limit.mode === "wait" && Number.isFinite(wait) && waitedMs + wait <= limit.maxWaitMs) {
          env.emit("limit", { ...event, outcome: "waited", retryAfterMs: wait });
          await sleep(wait, ctx.signal, binding);
          continue;
        }
        env.emit("limit", { ...event, outcome: "rejected", retryAfterMs: wait });
        ctx.notes.set(NOTES.limit, { key, remaining: 0, rejected: true });
        throw rejection(limit, binding, key, wait, env.now());
      }
    }
    if (tightest) ctx.notes.set(NOTES.limit, tightest);
    return next(call, ctx);
  };
}
