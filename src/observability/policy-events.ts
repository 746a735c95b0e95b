/**
 * Listening to the policy events (breaker, limit, cache, retry, fallback, bulkhead, timeout…) of a
 * policy runtime, for every subscriber that turns them into something operators see: metric updates
 * (policy-metrics.ts) and span events (policy-spans.ts).
 */
import type { EventEmitter } from "node:events";
import type { PolicyEventMap } from "../policies/types.ts";

/** Anything that emits the policy events: the PolicyRuntime. */
export type PolicyEventSource = Pick<EventEmitter<PolicyEventMap>, "on" | "off">;

export type PolicyEvent = {
  [K in keyof PolicyEventMap]: { event: K; payload: PolicyEventMap[K][0] };
}[keyof PolicyEventMap];

/** Every policy event, as a record so that a new one fails to compile until it is listed here. */
const POLICY_EVENTS = Object.keys({
  breaker: true,
  breakerRejected: true,
  timeout: true,
  limit: true,
  cache: true,
  retry: true,
  fallback: true,
  bulkhead: true,
} satisfies Record<keyof PolicyEventMap, true>) as (keyof PolicyEventMap)[];

/** Calls `onEvent` for every policy event of `source`; returns the function that stops listening. */
export function listenToPolicyEvents(
  source: PolicyEventSource,
  onEvent: (e: PolicyEvent) => void,
): () => void {
  const stops = POLICY_EVENTS.map((event) => listen(source, event, onEvent));
  return () => {
    for (const stop of stops) stop();
  };
}

function listen<K extends keyof PolicyEventMap>(
  source: PolicyEventSource,
  event: K,
  onEvent: (e: PolicyEvent) => void,
): () => void {
  // The payload's type is not narrowed by `event` inside a generic body, nor is the listener's that
  // the typed emitter wants: the untyped view and the cast stand for what `K` guarantees.
  const emitter = source as Pick<EventEmitter, "on" | "off">;
  const listener = (payload: PolicyEventMap[K][0]) => onEvent({ event, payload } as PolicyEvent);
  emitter.on(event, listener);
  return () => {
    emitter.off(event, listener);
  };
}
