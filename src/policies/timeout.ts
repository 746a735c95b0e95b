/**
 * Per-attempt time limit, innermost in the chain so that each retry gets its own. The backend gets a
 * signal that aborts on the caller's cancel or on the timer, so a timed-out request is cancelled at
 * the backend, not just forgotten; the policy also stops waiting by itself, for backends that
 * ignore their signal.
 */
import { GatewayError } from "../core/errors.ts";
import type { Policy } from "../core/types.ts";
import { NOTES, type PolicyEnv } from "./types.ts";
import { cancelledError, invoke, withSignal } from "./util.ts";

export function timeoutError(env: PolicyEnv, timeoutMs: number): GatewayError {
  const { exposedName, server, tool } = env.binding;
  return new GatewayError(
    "timeout",
    `Tool "${exposedName}" (server "${server}", tool "${tool.name}") timed out after ${timeoutMs} ms; ` +
      "the backend call was cancelled. Try again, or ask for a longer timeout for this tool.",
    { data: { server, tool: exposedName, timeoutMs } },
  );
}

export function timeoutPolicy(timeoutMs: number, env: PolicyEnv): Policy {
  return (next) => (call, ctx) => {
    const caller = ctx.signal;
    if (caller.aborted) return Promise.reject(cancelledError(env.binding));
    // One controller, aborted by the timer or forwarded from the caller's abort below: cheaper on the
    // hot path than AbortSignal.any, which keeps weak references per signal.
    const controller = new AbortController();
    const signal = controller.signal;
    return new Promise((resolve, reject) => {
      const settle = () => {
        clearTimeout(timer);
        caller.removeEventListener("abort", onCallerAbort);
      };
      const onCallerAbort = () => {
        settle();
        controller.abort(caller.reason);
        reject(cancelledError(env.binding, caller));
      };
      const timer = setTimeout(() => {
        const error = timeoutError(env, timeoutMs);
        env.emit("timeout", { server: env.binding.server, tool: env.binding.exposedName, timeoutMs });
        settle();
        controller.abort(error);
        reject(error);
      }, timeoutMs);
      caller.addEventListener("abort", onCallerAbort, { once: true });
      // The timeout is the innermost policy and always present, so this is where "the backend answered"
      // is noted; a cache hit or a fallback further out overwrites it.
      ctx.notes.set(NOTES.source, "backend");
      // A late answer or failure after the timer fired settles nothing: the promise is already settled.
      invoke(next, call, withSignal(ctx, signal)).then(
        (result) => {
          settle();
          resolve(result);
        },
        (error: unknown) => {
          settle();
          reject(error);
        },
      );
    });
  };
}
