/**
 * The per-tool summary behind the gateway's metrics tool: calls, errors and latency percentiles of
 * each exposed tool.
 *
 * Percentiles are exact over a sliding window: the last `window` durations of each tool, kept in a
 * ring buffer and sorted (a copy) only when read. Reads are rare (a person or an agent asking) and
 * writes are every call, so the write is an array store and the sort is paid on read. Memory is
 * bounded: `window` doubles per tool (8 KiB at the default 1024), allocated on the tool's first
 * call; with a sketch the numbers would be approximate and harder to check, and a window also
 * answers "how is it now" rather than "how was it since start".
 */

import type { CallOutcome } from "./metrics.ts";

export interface ToolSummary {
  /** Calls since start. */
  readonly count: number;
  /** Calls since start whose outcome was not "ok". */
  readonly errors: number;
  /** Calls the percentiles are over: the last `window` ones. */
  readonly sampled: number;
  /** Latency percentiles in ms (nearest rank), over the last `sampled` calls; 0 when none. */
  readonly p50: number;
  readonly p95: number;
  readonly p99: number;
}

export interface ToolStatsOptions {
  /** Durations kept per tool for the percentiles. Default 1024. */
  readonly window?: number;
}

export interface ToolStats {
  readonly window: number;
  /** Records one finished call of an exposed tool. */
  record(tool: string, durationMs: number, outcome: CallOutcome): void;
  summary(tool: string): ToolSummary | undefined;
  /** Every tool called so far, by name. */
  snapshot(): Record<string, ToolSummary>;
  /** Drops a tool that is no longer exposed. */
  forget(tool: string): void;
  /** Every tool's calls and errors since start, without the percentiles (nothing sorted). */
  totals(): Map<string, { readonly count: number; readonly errors: number }>;
  /**
   * The durations of the tool's last `n` calls (at most `window`), oldest first: with `totals`, what a
   * sampler needs for the percentiles of the calls since its previous reading.
   */
  latest(tool: string, n: number): Float64Array;
}

export function createToolStats(options: ToolStatsOptions = {}): ToolStats {
  const window = options.window ?? 1024;
  if (!Number.isInteger(window) || window < 1) {
    throw new RangeError(`window must be a positive integer, got ${window}`);
  }
  return new WindowedToolStats(window);
}

class Ring {
  readonly durations: Float64Array;
  /** Where the next duration goes. */
  next = 0;
  filled = 0;
  count = 0;
  errors = 0;

  constructor(size: number) {
    this.durations = new Float64Array(size);
  }
}

class WindowedToolStats implements ToolStats {
  readonly window: number;
  readonly #tools = new Map<string, Ring>();

  constructor(window: number) {
    this.window = window;
  }

  record(tool: string, durationMs: number, outcome: CallOutcome): void {
    let ring = this.#tools.get(tool);
    if (!ring) {
      ring = new Ring(this.window);
      this.#tools.set(tool, ring);
    }
    ring.durations[ring.next] = durationMs;
    ring.next = (ring.next + 1) % this.window;
    if (ring.filled < this.window) ring.filled++;
    ring.count++;
    if (outcome !== "ok") ring.errors++;
  }

  summary(tool: string): ToolSummary | undefined {
    const ring = this.#tools.get(tool);
    return ring ? summarize(ring) : undefined;
  }

  snapshot(): Record<string, ToolSummary> {
    const names = [...this.#tools.keys()].sort();
    const out: Record<string, ToolSummary> = {};
    for (const name of names) out[name] = summarize(this.#tools.get(name) as Ring);
    return out;
  }

  forget(tool: string): void {
    this.#tools.delete(tool);
  }

  totals(): Map<string, { readonly count: number; readonly errors: number }> {
    const out = new Map<string, { count: number; errors: number }>();
    for (const [name, ring] of this.#tools) out.set(name, { count: ring.count, errors: ring.errors });
    return out;
  }

  latest(tool: string, n: number): Float64Array {
    const ring = this.#tools.get(tool);
    const take = ring ? Math.max(0, Math.min(Math.floor(n), ring.filled)) : 0;
    const out = new Float64Array(take);
    if (!ring) return out;
    // The ring's newest duration is just before `next`; the `take` before it, in order.
    const start = (ring.next - take + this.window) % this.window;
    for (let i = 0; i < take; i++) out[i] = ring.durations[(start + i) % this.window] as number;
    return out;
  }
}

function summarize(ring: Ring): ToolSummary {
  // Order does not matter for percentiles, so the filled prefix is all that is needed.
  const sorted = ring.durations.slice(0, ring.filled).sort();
  return {
    count: ring.count,
    errors: ring.errors,
    sampled: ring.filled,
    p50: percentile(sorted, 50),
    p95: percentile(sorted, 95),
    p99: percentile(sorted, 99),
  };
}

/** Nearest-rank percentile: the smallest value with at least p% of the values at or below it. */
export function percentile(sorted: ArrayLike<number>, p: number): number {
  if (sorted.length === 0) return 0;
  const rank = Math.max(1, Math.ceil((p / 100) * sorted.length));
  return sorted[Math.min(rank, sorted.length) - 1] ?? 0;
}
