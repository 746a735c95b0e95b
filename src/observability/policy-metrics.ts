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

/** Calls `onEvent` for every policy event of `source`; returns the function that stops listening. */
export function listenToPolicyEvents(
  source: PolicyEventSource,
  onEvent: (e: PolicyEvent) => void,
): () => void {
  const listeners = {
    breaker: (p: PolicyEventMap["breaker"][0]) => onEvent({ event: "breaker", payload: p }),
    limit: (p: PolicyEventMap["limit"][0]) => onEvent({ event: "limit", payload: p }),
    cache: (p: PolicyEventMap["cache"][0]) => onEvent({ event: "cache", payload: p }),
    retry: (p: PolicyEventMap["retry"][0]) => onEvent({ event: "retry", payload: p }),
    fallback: (p: PolicyEventMap["fallback"][0]) => onEvent({ event: "fallback", payload: p }),
    bulkhead: (p: PolicyEventMap["bulkhead"][0]) => onEvent({ event: "bulkhead", payload: p }),
  };
  source.on("breaker", listeners.breaker);
  source.on("limit", listeners.limit);
  source.on("cache", listeners.cache);
  source.on("retry", listeners.retry);
  source.on("fallback", listeners.fallback);
  source.on("bulkhead", listeners.bulkhead);
  return () => {
    source.off("breaker", listeners.breaker);
    source.off("limit", listeners.limit);
    source.off("cache", listeners.cache);
    source.off("retry", listeners.retry);
    source.off("fallback", listeners.fallback);
    source.off("bulkhead", listeners.bulkhead);
  };
}
