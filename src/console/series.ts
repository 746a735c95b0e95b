/**
 * The gateway's tool calls as a time series, for the console's charts: calls per second, error rate,
 * p50 and p99 of each interval, over the last 15 minutes.
 *
 * A sampler reads the per-tool statistics the gateway keeps anyway (observability/tool-stats.ts): the
 * counts since start, and the durations of the calls made since its previous reading. A call pays
 * nothing for it, whether or not anyone watches; the sampler's cost is one pass over the tools called
 * and the interval's durations. When a tool gets more calls in one interval than its statistics keep
 * (1 024), its latest ones stand for the interval's percentiles.
 */
import { percentile } from "../observability/tool-stats.ts";

/** How often a point is taken, in ms. */
export const SAMPLE_INTERVAL_MS = 2_000;
/** How far back the charts reach, in ms. */
export const SERIES_SPAN_MS = 15 * 60_000;

export interface SeriesPoint {
  /** When the interval ended, epoch ms. */
  readonly at: number;
  readonly calls: number;
  readonly callsPerSecond: number;
  /** Calls whose outcome was not "ok", over all calls of the interval; null without calls. */
  readonly errorRate: number | null;
  /** Latency percentiles of the interval's calls, in ms; null without calls. */
  readonly p50Ms: number | null;
  readonly p99Ms: number | null;
}

/** What the series reads: the gateway's ToolStats. */
export interface CallTotals {
  totals(): Map<string, { readonly count: number; readonly errors: number }>;
  latest(tool: string, n: number): Float64Array;
}

export class CallSeries {
  readonly #source: CallTotals;
  readonly #now: () => number;
  readonly #spanMs: number;
  #previous: Map<string, { readonly count: number; readonly errors: number }>;
  #previousAt: number;
  readonly #points: SeriesPoint[] = [];

  constructor(source: CallTotals, now: () => number = Date.now, spanMs = SERIES_SPAN_MS) {
    this.#source = source;
    this.#now = now;
    this.#spanMs = spanMs;
    // What was called before the console started belongs to no interval of its charts.
    this.#previous = source.totals();
    this.#previousAt = now();
  }

  /** Takes the point of the interval since the previous one, keeps it, and returns it. */
  sample(): SeriesPoint {
    const at = this.#now();
    const totals = this.#source.totals();
    let calls = 0;
    let errors = 0;
    const durations: Float64Array[] = [];
    for (const [tool, now] of totals) {
      const before = this.#previous.get(tool);
      // A tool forgotten and called again starts counting from zero.
      const fresh = before === undefined || now.count < before.count;
      const added = fresh ? now.count : now.count - before.count;
      if (added === 0) continue;
      calls += added;
      errors += fresh ? now.errors : Math.max(0, now.errors - before.errors);
      durations.push(this.#source.latest(tool, added));
    }
    this.#previous = totals;
    const seconds = Math.max(0.001, (at - this.#previousAt) / 1000);
    this.#previousAt = at;
    const sorted = concat(durations).sort();
    const point: SeriesPoint = {
      at,
      calls,
      callsPerSecond: round(calls / seconds),
      errorRate: calls === 0 ? null : round(errors / calls, 4),
      p50Ms: sorted.length === 0 ? null : round(percentile(sorted, 50)),
      p99Ms: sorted.length === 0 ? null : round(percentile(sorted, 99)),
    };
    this.#points.push(point);
    const oldest = at - this.#spanMs;
    while ((this.#points[0]?.at ?? oldest) < oldest) this.#points.shift();
    return point;
  }

  /** The points of the last 15 minutes, oldest first. */
  points(): readonly SeriesPoint[] {
    return this.#points;
  }
}

function concat(parts: readonly Float64Array[]): Float64Array {
  let length = 0;
  for (const part of parts) length += part.length;
  const out = new Float64Array(length);
  let offset = 0;
  for (const part of parts) {
    out.set(part, offset);
    offset += part.length;
  }
  return out;
}

function round(value: number, digits = 2): number {
  const scale = 10 ** digits;
  return Math.round(value * scale) / scale;
}
