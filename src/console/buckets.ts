/**
 * Rate-limit buckets near empty, for the console's resilience page. Each call that passed (or hit) a
 * rate limit notes the tightest bucket it drew from and what was left in it; the bucket's size and
 * refill come from the limit that makes that key. From the last reading and the refill rate the
 * console estimates each bucket's level now, and shows those below a quarter of their size.
 *
 * Buckets are learned from calls only while someone watches the console (see console.ts): a call
 * pays for this only then.
 */
import type { FinishedCall } from "../gateway/observe.ts";
import type { RateLimitOptions } from "../policies/config.ts";
import { bucketKey, refillPerSec } from "../policies/rate-limit.ts";
import { NOTES, type PolicyRuntime } from "../policies/runtime.ts";

/** A bucket is "near empty" below this share of its capacity. */
export const NEAR_EMPTY = 0.25;
/** Buckets remembered at most; the least recently seen go first. */
const MAX_BUCKETS = 1_000;
/** Buckets shown at most, emptiest first. */
const SHOWN = 20;

export interface BucketRow {
  readonly key: string;
  readonly tool: string;
  readonly server: string;
  readonly scope: RateLimitOptions["scope"];
  readonly capacity: number;
  readonly refillPerSecond: number;
  /** Estimated tokens now, from the last reading and the refill since. */
  readonly level: number;
  /** True when the last call that drew from it was refused. */
  readonly rejected: boolean;
  /** When it was last read, epoch ms. */
  readonly seenAt: number;
}

interface Reading {
  readonly tool: string;
  readonly server: string;
  readonly limit: RateLimitOptions;
  readonly remaining: number;
  readonly rejected: boolean;
  readonly at: number;
}

interface LimitNote {
  readonly key?: unknown;
  readonly remaining?: unknown;
  readonly rejected?: unknown;
}

export class BucketWatch {
  readonly #policies: Pick<PolicyRuntime, "policiesFor">;
  readonly #now: () => number;
  readonly #readings = new Map<string, Reading>();

  constructor(policies: Pick<PolicyRuntime, "policiesFor">, now: () => number = Date.now) {
    this.#policies = policies;
    this.#now = now;
  }

  /** One finished call: its limit note, if it has one, is the bucket's newest reading. */
  record(call: FinishedCall): void {
    const note = call.notes.get(NOTES.limit) as LimitNote | undefined;
    if (typeof note?.key !== "string" || typeof note.remaining !== "number") return;
    const { route } = call;
    const binding = { exposedName: route.name, server: route.server, tool: route.tool };
    const limits = this.#policies.policiesFor(binding).rateLimit ?? [];
    const limit = limits.find((l) => bucketKey(l, binding, call.principal) === note.key);
    if (!limit) return;
    this.#readings.delete(note.key);
    this.#readings.set(note.key, {
      tool: route.name,
      server: route.server,
      limit,
      remaining: note.remaining,
      rejected: note.rejected === true,
      at: this.#now(),
    });
    if (this.#readings.size > MAX_BUCKETS) {
      const oldest = this.#readings.keys().next().value;
      if (oldest !== undefined) this.#readings.delete(oldest);
    }
  }

  /** The buckets estimated below a quarter of their size now, emptiest first. */
  nearEmpty(): BucketRow[] {
    const now = this.#now();
    const rows: BucketRow[] = [];
    for (const [key, reading] of this.#readings) {
      const refill = refillPerSec(reading.limit);
      const capacity = reading.limit.capacity;
      const level = Math.min(capacity, reading.remaining + (refill * (now - reading.at)) / 1000);
      if (level >= capacity) {
        // Full again: nothing to show until a call draws from it.
        this.#readings.delete(key);
        continue;
      }
      if (level / capacity >= NEAR_EMPTY) continue;
      rows.push({
        key,
        tool: reading.tool,
        server: reading.server,
        scope: reading.limit.scope,
        capacity,
        refillPerSecond: refill,
        level: Math.round(level * 100) / 100,
        rejected: reading.rejected,
        seenAt: reading.at,
      });
    }
    return rows.sort((a, b) => a.level / a.capacity - b.level / b.capacity).slice(0, SHOWN);
  }
}
