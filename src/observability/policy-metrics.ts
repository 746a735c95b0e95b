/**
 * The policy events (breaker, limit, cache, retry, fallback, bulkhead) as metric updates: which
 * metric each event counts in, and with which labels.
 */
import type { EventEmitter } from "node:events";
import type { Counter } from "prom-client";
import type { PolicyEventMap } from "../policies/types.ts";
import { BREAKER_VALUE, type MetricFamilies } from "./metric-families.ts";

/** Anything that emits the policy events: the PolicyRuntime. */
export type PolicyEventSource = Pick<EventEmitter<PolicyEventMap>, "on" | "off">;

export type PolicyEvent = {
  [K in keyof PolicyEventMap]: { event: K; payload: PolicyEventMap[K][0] };
}[keyof PolicyEventMap];

/** Adds `amount` to the child of `metric` for these label values. */
export type AddToCounter = (metric: Counter<string>, amount: number, ...values: string[]) => void;

/** Counts one policy event in `families`, through `add` (which binds each child once). */
export function recordPolicyEvent(families: MetricFamilies, add: AddToCounter, e: PolicyEvent): void {
  const tally = (metric: Counter<string>, ...values: string[]) => add(metric, 1, ...values);
  switch (e.event) {
    case "breaker": {
      const { server, to } = e.payload;
      families.breaker.labels(server).set(BREAKER_VALUE[to]);
      tally(families.breakerTransitions, server, to);
      return;
    }
    case "limit": {
      const { server, tool, scope, outcome } = e.payload;
      tally(outcome === "rejected" ? families.rejections : families.waits, server, tool, scope);
      return;
    }
    case "cache": {
      const { server, tool, outcome, count } = e.payload;
      tally(families.cache, server, tool ?? "", outcome);
      if (outcome === "invalidated" && count !== undefined && count > 0) {
        add(families.invalidatedEntries, count, server);
      }
      return;
    }
    case "retry": {
      const { server, tool, outcome } = e.payload;
      tally(outcome === "retrying" ? families.retries : families.budgetExhausted, server, tool);
      return;
    }
    case "fallback": {
      const { server, tool, outcome } = e.payload;
      tally(families.fallbacks, server, tool, outcome);
      return;
    }
    case "bulkhead": {
      const { server, tool, outcome } = e.payload;
      tally(families.bulkhead, server, tool, outcome);
      return;
    }
  }
}

/** Every policy event, as a record so that a new one fails to compile until it is listed here. */
const POLICY_EVENTS = Object.keys({
  breaker: true,
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
