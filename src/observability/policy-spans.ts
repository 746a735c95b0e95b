/**
 * The policy events as span events: each step a policy took for a call (a cache hit, a wait for a
 * rate-limit token, a retry, a timeout, a circuit that opened or refused, a fallback that answered)
 * becomes an event on that call's span, named `<policy>.<what happened>`, with what an operator needs
 * to read it. Which span is the call's is the tracing's business (tracing.ts); this file only says what
 * each event looks like.
 */
import type { Attributes } from "@opentelemetry/api";
import type { PolicyEvent } from "./policy-events.ts";

export interface SpanEvent {
  readonly name: string;
  readonly attributes: Attributes;
}

/** Reasons are error messages: enough of one to tell what failed, not a whole backend answer. */
const MAX_REASON = 500;

const reasonOf = (reason: string) => reason.slice(0, MAX_REASON);

/** A wait or a date as an attribute; none for "never" (OpenTelemetry attributes want finite numbers). */
const finite = (key: string, value: number): Attributes => (Number.isFinite(value) ? { [key]: value } : {});

export function policySpanEvent(e: PolicyEvent): SpanEvent {
  switch (e.event) {
    case "breaker": {
      const { server, from, to, reason, retryAt, remote } = e.payload;
      return {
        name: `circuit_breaker.${to}`,
        attributes: {
          "switchboard.server": server,
          "switchboard.circuit_breaker.from": from,
          "switchboard.circuit_breaker.reason": reasonOf(reason),
          ...(retryAt === undefined ? {} : { "switchboard.circuit_breaker.retry_at": isoDate(retryAt) }),
          ...(remote ? { "switchboard.circuit_breaker.remote": true } : {}),
        },
      };
    }
    case "breakerRejected": {
      const { server, tool, state, retryAt } = e.payload;
      return {
        name: "circuit_breaker.rejected",
        attributes: {
          "switchboard.server": server,
          "switchboard.tool": tool,
          "switchboard.circuit_breaker.state": state,
          "switchboard.circuit_breaker.retry_at": isoDate(retryAt),
        },
      };
    }
    case "timeout": {
      const { server, tool, timeoutMs } = e.payload;
      return {
        name: "timeout",
        attributes: {
          "switchboard.server": server,
          "switchboard.tool": tool,
          "switchboard.timeout_ms": timeoutMs,
        },
      };
    }
    case "limit": {
      const { server, tool, scope, outcome, retryAfterMs } = e.payload;
      return {
        name: `rate_limit.${outcome}`,
        attributes: {
          "switchboard.server": server,
          "switchboard.tool": tool,
          "switchboard.rate_limit.scope": scope,
          ...finite("switchboard.rate_limit.wait_ms", retryAfterMs),
        },
      };
    }
    case "cache": {
      const { server, tool, outcome, reason, count } = e.payload;
      return {
        name: `cache.${outcome}`,
        attributes: {
          "switchboard.server": server,
          ...(tool === undefined ? {} : { "switchboard.tool": tool }),
          ...(reason === undefined ? {} : { "switchboard.cache.reason": reasonOf(reason) }),
          ...(count === undefined ? {} : { "switchboard.cache.entries": count }),
        },
      };
    }
    case "retry": {
      const { server, tool, attempt, delayMs, reason, outcome } = e.payload;
      return {
        name: outcome === "retrying" ? "retry.attempt" : "retry.budget_exhausted",
        attributes: {
          "switchboard.server": server,
          "switchboard.tool": tool,
          "switchboard.retry.attempt": attempt,
          "switchboard.retry.delay_ms": delayMs,
          "switchboard.retry.reason": reasonOf(reason),
        },
      };
    }
    case "fallback": {
      const { server, tool, outcome, source, reasons } = e.payload;
      return {
        name: `fallback.${outcome}`,
        attributes: {
          "switchboard.server": server,
          "switchboard.tool": tool,
          ...(source === undefined ? {} : { "switchboard.source": source }),
          "switchboard.fallback.reasons": reasons.map(reasonOf),
        },
      };
    }
    case "bulkhead": {
      const { server, tool, outcome, running, queued } = e.payload;
      return {
        name: `bulkhead.${outcome}`,
        attributes: {
          "switchboard.server": server,
          "switchboard.tool": tool,
          "switchboard.bulkhead.running": running,
          "switchboard.bulkhead.queued": queued,
        },
      };
    }
  }
}

function isoDate(ms: number): string {
  return Number.isFinite(ms) && Math.abs(ms) <= 8.64e15 ? new Date(ms).toISOString() : "never";
}
