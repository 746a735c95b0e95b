/**
 * Retries with exponential backoff and jitter, for tools where repeating a call cannot do harm:
 * annotated readOnlyHint or idempotentHint, or marked `safe` in the config. `destructiveHint: true`
 * beats `safe`: repeating a destructive call that may have half-happened is the one mistake a
 * gateway must not make for its users, so no config can ask for it.
 *
 * A retry budget per server caps retries to a share of the calls, so that when a backend struggles
 * the gateway does not multiply its load by maxAttempts just when it can least take it.
 */
import { describeError } from "../core/errors.ts";
import type { ChainResult, Policy, Tool } from "../core/types.ts";
import type { RetryBudgetOptions, RetryOptions } from "./config.ts";
import { NOTES, type PolicyEnv } from "./types.ts";
import { cancelledError, failureKind, resultText, SlidingWindow, sleep } from "./util.ts";

/** Whether this tool may be retried at all (the policy is left out of its chain when not). */
export function isRetrySafe(tool: Tool, options: Pick<RetryOptions, "safe">): boolean {
  const annotations = tool.annotations ?? {};
  if (annotations.destructiveHint === true) return false;
  return annotations.readOnlyHint === true || annotations.idempotentHint === true || options.safe;
}

/**
 * Retries in the window may not exceed `minPerSec × window seconds + ratio × calls in the window`
 * (the reserve plus the share; Finagle's retry budget works the same way).
 */
export class RetryBudget {
  readonly #options: RetryBudgetOptions;
  readonly #window: SlidingWindow<"calls" | "retries">;

  constructor(options: RetryBudgetOptions, now: () => number) {
    this.#options = options;
    this.#window = new SlidingWindow(options.windowMs, ["calls", "retries"], now);
  }

  recordCall(): void {
    this.#window.add("calls");
  }

  /** Takes one retry from the budget if there is one left. */
  tryRetry(): boolean {
    const { calls, retries } = this.#window.totals();
    const allowed = (this.#options.minPerSec * this.#options.windowMs) / 1000 + this.#options.ratio * calls;
    if (retries + 1 > allowed) return false;
    this.#window.add("retries");
    return true;
  }
}

/** The backoff before retry number `retry` (1-based), jittered. */
export function backoffMs(options: RetryOptions, retry: number, random: () => number): number {
  const raw = Math.min(options.maxDelayMs, options.baseDelayMs * options.factor ** (retry - 1));
  switch (options.jitter) {
    case "none":
      return Math.round(raw);
    case "equal":
      return Math.round(raw / 2 + random() * (raw / 2));
    case "full":
      return Math.round(random() * raw);
  }
}

type Outcome = { readonly result: ChainResult } | { readonly error: unknown };

export function retryPolicy(options: RetryOptions, budget: RetryBudget | undefined, env: PolicyEnv): Policy {
  const retryOn = new Set(options.retryOn);
  const { server, exposedName } = env.binding;
  return (next) => async (call, ctx) => {
    budget?.recordCall();
    let retries = 0;
    const finish = (outcome: Outcome): ChainResult => {
      if (retries > 0) ctx.notes.set(NOTES.retries, retries);
      if ("error" in outcome) throw outcome.error;
      return outcome.result;
    };
    for (let attempt = 1; ; attempt++) {
      let outcome: Outcome;
      let reason: string;
      try {
        const result = await next(call, ctx);
        outcome = { result };
        if (!result.isError || !retryOn.has("isError") || ctx.signal.aborted) return finish(outcome);
        reason = `isError: ${resultText(result)}`;
      } catch (error) {
        outcome = { error };
        const kind = failureKind(error, ctx.signal);
        if ((kind !== "error" && kind !== "timeout") || !retryOn.has(kind)) return finish(outcome);
        reason = describeError(error);
      }
      if (attempt >= options.maxAttempts) return finish(outcome);
      const delayMs = backoffMs(options, attempt, env.random);
      const retry = { server, tool: exposedName, attempt: attempt + 1, delayMs, reason };
      if (budget && !budget.tryRetry()) {
        env.emit("retry", { ...retry, outcome: "budget_exhausted" });
        return finish(outcome);
      }
      env.emit("retry", { ...retry, outcome: "retrying" });
      env.logger.debug(retry, "retrying tool call");
      // Ends with `cancelled` if the caller leaves during the backoff: no retry after an abort.
      try {
        if (delayMs > 0) await sleep(delayMs, ctx.signal, env.binding);
        else if (ctx.signal.aborted) throw cancelledError(env.binding);
      } catch (error) {
        return finish({ error });
      }
      retries++;
    }
  };
}
