/**
 * How every supervised backend backs off between attempts to reach its server: restarted MCP servers,
 * the PostgreSQL backend's probes and the Redis backend's reconnects (through ioredis' retryStrategy).
 * One formula, so that replicas that lost a server together do not all come back in step.
 */
import { RESTART_DEFAULTS } from "../config/schema.ts";

/** The backoff of a backend that reconnects by itself; what it leaves out is the config's `restart` default. */
export interface ReconnectOptions {
  readonly initialDelayMs?: number;
  readonly maxDelayMs?: number;
}

/** `options` with the config's `restart` defaults filled in. */
export function reconnectBackoff(options: ReconnectOptions = {}): Required<ReconnectOptions> {
  return {
    initialDelayMs: options.initialDelayMs ?? RESTART_DEFAULTS.initialDelayMs,
    maxDelayMs: options.maxDelayMs ?? RESTART_DEFAULTS.maxDelayMs,
  };
}

/** Exponential backoff with "equal jitter": half the step is fixed, half random, so restarts spread out. */
export function backoffDelay(
  attempt: number,
  initialMs: number,
  maxMs: number,
  random = Math.random,
): number {
  const step = Math.min(maxMs, initialMs * 2 ** Math.min(attempt, 30));
  return step / 2 + (random() * step) / 2;
}

/** `backoffDelay` in whole milliseconds, as timers and ioredis want it. `attempt` counts from 0. */
export function reconnectDelay(attempt: number, initialDelayMs: number, maxDelayMs: number): number {
  return Math.round(backoffDelay(attempt, initialDelayMs, maxDelayMs));
}
