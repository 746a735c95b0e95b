/**
 * The policy events (breaker, limit, cache, retry, fallback, bulkhead) as metric updates: which
 * metric each event counts in, and with which labels. A call refused by an open circuit and a call
 * that timed out are counted by the outcome of the call itself (`calls_total`), not here.
 */
import type { Counter } from "prom-client";
import { BREAKER_VALUE, type MetricFamilies } from "./metric-families.ts";
import type { PolicyEvent } from "./policy-events.ts";

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
    case "breakerRejected":
    case "timeout":
      return;
  }
}
