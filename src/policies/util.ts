/** Small pieces several policies need: abortable waits, failure kinds, sliding windows, result `_meta`. */
import { untilAborted as waitUnlessAborted } from "../core/abort.ts";
import { GatewayError, type GatewayErrorCode, JSON_RPC } from "../core/errors.ts";
import type { CallContext, CallHandler, ChainResult, ToolCall } from "../core/types.ts";
import type { Logger } from "../observability/logger.ts";
import { SOURCE_META, type ToolBinding } from "./types.ts";

export function cancelledError(binding: ToolBinding, signal?: AbortSignal): GatewayError {
  // The gateway itself stopped the call (it is shutting down): say so, not that the client cancelled.
  if (signal?.reason instanceof GatewayError && signal.reason.code === "shutting_down") return signal.reason;
  return new GatewayError("cancelled", `The call to "${binding.exposedName}" was cancelled by the client.`, {
    data: { server: binding.server, tool: binding.exposedName },
  });
}

/** Resolves after `ms`; rejects with `cancelled` as soon as `signal` aborts. A timer, never a loop. */
export function sleep(ms: number, signal: AbortSignal, binding: ToolBinding): Promise<void> {
  if (signal.aborted) return Promise.reject(cancelledError(binding));
  return new Promise((resolve, reject) => {
    const onAbort = () => {
      clearTimeout(timer);
      reject(cancelledError(binding));
    };
    const timer = setTimeout(() => {
      signal.removeEventListener("abort", onAbort);
      resolve();
    }, ms);
    signal.addEventListener("abort", onAbort, { once: true });
  });
}

/** `promise`, or `cancelled` as soon as `signal` aborts (the promise itself runs on regardless). */
export function untilAborted<T>(promise: Promise<T>, signal: AbortSignal, binding: ToolBinding): Promise<T> {
  return waitUnlessAborted(promise, signal, { reasonOf: () => cancelledError(binding) });
}

/** Calls a handler so that a synchronous throw becomes a rejection, like an async function's would. */
export function invoke(next: CallHandler, call: ToolCall, ctx: CallContext): Promise<ChainResult> {
  try {
    return next(call, ctx);
  } catch (error) {
    return Promise.reject(error);
  }
}

export function withSignal(ctx: CallContext, signal: AbortSignal): CallContext {
  return { ...ctx, signal };
}

/**
 * Logs a store failure that a call survives (the cache, shared state): a warning, except while the
 * store is unavailable, since the gateway reports that outage once and one line per call would drown
 * it.
 */
export function logSharingFailure(
  logger: Logger,
  error: unknown,
  fields: Record<string, unknown>,
  message: string,
): void {
  const outage = error instanceof GatewayError && error.code === "store_unavailable";
  logger[outage ? "debug" : "warn"]({ err: error, ...fields }, message);
}

/** A copy of `result` whose `_meta` says who answered (`switchboard/source`). */
export function withSource(result: ChainResult, source: string): ChainResult {
  return { ...result, _meta: { ...(result._meta ?? {}), [SOURCE_META]: source } };
}

export function sourceOf(result: ChainResult): string | undefined {
  const source = result._meta?.[SOURCE_META];
  return typeof source === "string" ? source : undefined;
}

/**
 * How a thrown failure counts:
 * - "cancelled": the caller went away; never retried, never a backend failure, never a fallback;
 * - "rejection": the gateway itself refused (limits, open circuit, full bulkhead, bad arguments…),
 *   or the backend answered "invalid params" (JSON-RPC -32602): the request was at fault, not the
 *   backend, so it says nothing about the backend's health and repeating it cannot help. Without
 *   this, a client that keeps sending bad arguments (models do) would open the circuit for everyone;
 * - "timeout" and "error": the backend failed, including any other JSON-RPC error it answered with.
 */
export type FailureKind = "cancelled" | "rejection" | "timeout" | "error";

const REJECTIONS: ReadonlySet<GatewayErrorCode> = new Set<GatewayErrorCode>([
  "rate_limited",
  "circuit_open",
  "bulkhead_full",
  "invalid_arguments",
  "unauthorized",
  "forbidden",
  "unknown_tool",
  "unknown_resource",
  "unknown_prompt",
  "config_invalid",
  "config_variable_missing",
  "config_file",
]);

export function failureKind(error: unknown, callerSignal: AbortSignal): FailureKind {
  if (callerSignal.aborted) return "cancelled";
  if (error instanceof GatewayError) {
    if (error.code === "cancelled") return "cancelled";
    if (error.code === "timeout") return "timeout";
    if (REJECTIONS.has(error.code)) return "rejection";
  } else if (error instanceof Error && (error as { code?: unknown }).code === JSON_RPC.INVALID_PARAMS) {
    return "rejection";
  }
  return "error";
}

/** The text of an isError result, for logs and reasons. */
export function resultText(result: ChainResult): string {
  const texts: string[] = [];
  for (const item of result.content ?? []) if (item.type === "text") texts.push(item.text);
  return texts.join(" ").slice(0, 500) || "the tool returned isError with no text";
}

/**
 * Counts over the last `windowMs`, in `slots` buckets: memory is fixed whatever the call rate, and a
 * count leaves the window at most one slot late.
 */
export class SlidingWindow<F extends string> {
  readonly #slotMs: number;
  readonly #slots: { index: number; counts: Record<F, number> }[];
  readonly #fields: readonly F[];
  readonly #now: () => number;

  constructor(windowMs: number, fields: readonly F[], now: () => number, slots = 10) {
    this.#slotMs = Math.max(1, Math.ceil(windowMs / slots));
    this.#fields = fields;
    this.#now = now;
    this.#slots = Array.from({ length: slots }, () => ({ index: -1, counts: this.#zero() }));
  }

  add(field: F, n = 1): void {
    const index = Math.floor(this.#now() / this.#slotMs);
    const slot = this.#slots[index % this.#slots.length] as { index: number; counts: Record<F, number> };
    if (slot.index !== index) {
      slot.index = index;
      slot.counts = this.#zero();
    }
    slot.counts[field] += n;
  }

  totals(): Record<F, number> {
    const current = Math.floor(this.#now() / this.#slotMs);
    const totals = this.#zero();
    for (const slot of this.#slots) {
      if (slot.index > current - this.#slots.length && slot.index <= current) {
        for (const field of this.#fields) totals[field] += slot.counts[field];
      }
    }
    return totals;
  }

  reset(): void {
    for (const slot of this.#slots) slot.index = -1;
  }

  #zero(): Record<F, number> {
    const counts = {} as Record<F, number>;
    for (const field of this.#fields) counts[field] = 0;
    return counts;
  }
}
