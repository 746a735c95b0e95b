/**
 * The calls a connection's plain paths are answering, by request id, so that
 * `notifications/cancelled` from the same connection (and only from it) can abort one. The SDK path
 * keeps its own; a request id the SDK holds is not here, and its cancellation goes to the SDK.
 */
import { handOver } from "../gateway/running.ts";
import type { RequestId } from "./tool-call.ts";

export class InFlightCalls {
  readonly #calls = new Map<RequestId, AbortController>();

  /** Starts tracking a call; undefined when the id is already in flight (the SDK then decides). */
  start(id: RequestId): AbortController | undefined {
    if (this.#calls.has(id)) return undefined;
    const controller = new AbortController();
    // Made for this call alone: the gateway may abort it itself at its shutdown deadline.
    handOver(controller);
    this.#calls.set(id, controller);
    return controller;
  }

  end(id: RequestId, controller: AbortController): void {
    if (this.#calls.get(id) === controller) this.#calls.delete(id);
  }

  /** Aborts the call with this id; false when none of ours is in flight under it. */
  cancel(id: RequestId): boolean {
    const controller = this.#calls.get(id);
    if (!controller) return false;
    controller.abort(new Error("cancelled by the client"));
    return true;
  }

  get size(): number {
    return this.#calls.size;
  }
}

/** The request id a `notifications/cancelled` message names, if it is one. */
export function cancelledRequestId(message: Record<string, unknown>): RequestId | undefined {
  if (message.method !== "notifications/cancelled") return undefined;
  const params = message.params as { requestId?: unknown } | undefined;
  const id = params?.requestId;
  return typeof id === "string" || typeof id === "number" ? id : undefined;
}

/**
 * The parts of a `tools/call` request a plain path can serve, or undefined to leave the request to
 * the SDK (which answers anything unusual, malformed params included, as it always has).
 */
export function plainToolCall(message: Record<string, unknown>):
  | {
      readonly id: RequestId;
      readonly name: string;
      readonly arguments: Record<string, unknown> | undefined;
      readonly meta: Record<string, unknown> | undefined;
    }
  | undefined {
  if (message.method !== "tools/call") return undefined;
  const id = message.id;
  if (typeof id !== "string" && typeof id !== "number") return undefined;
  const params = message.params;
  if (!isPlainObject(params) || typeof params.name !== "string") return undefined;
  // Anything more (a task to create, say) changes how the call is served: the SDK decides.
  for (const key in params) if (!PLAIN_PARAMS.has(key)) return undefined;
  if (params.arguments !== undefined && !isPlainObject(params.arguments)) return undefined;
  if (params._meta !== undefined && !isPlainObject(params._meta)) return undefined;
  return {
    id,
    name: params.name,
    arguments: params.arguments as Record<string, unknown> | undefined,
    meta: params._meta as Record<string, unknown> | undefined,
  };
}

const PLAIN_PARAMS: ReadonlySet<string> = new Set(["name", "arguments", "_meta"]);

/** A JSON object: not null, not an array. */
export function isPlainObject(value: unknown): value is Record<string, unknown> {
  return typeof value === "object" && value !== null && !Array.isArray(value);
}
