/**
 * What the Redis tools share: the connection seen through the backend's `keyPrefix` (tools take and
 * return keys without it; every key sent has it), and the bounds every answer keeps (`maxItems`
 * elements, `maxValueBytes` per value, a bounded number of SCAN rounds per call).
 */
import type { Redis } from "ioredis";
import { z } from "zod";
import type { RedisBackendConfig } from "./config.ts";

/** What a tool computed: its structured result and notes for the reader (cuts, missing keys). */
export interface Output {
  readonly structured: Record<string, unknown>;
  readonly notes?: readonly string[];
}

/** SCAN, SSCAN and HSCAN rounds one call may take: bounded work, whatever the keyspace holds. */
export const MAX_SCAN_ROUNDS = 100;

export const key = () =>
  z.string().min(1).describe("The key (without the backend's key prefix, if it has one).");
export const keys = (max: number) => z.array(z.string().min(1)).min(1).max(max).describe("The keys.");
export const members = (max: number, what: string) => z.array(z.string()).min(1).max(max).describe(what);

/** What a tool description adds when keys are relative to a prefix. */
export function scopeNote(config: RedisBackendConfig): string {
  return config.keyPrefix ? ` Keys are relative to this backend's prefix.` : "";
}

/** A glob that matches `text` literally. */
export function escapeGlob(text: string): string {
  return text.replace(/[*?[\]\\]/g, "\\$&");
}

/** Redis' rule for a range's bounds: negative counts from the end; both ends included. */
export function clampRange(length: number, start: number, stop: number): { from: number; to: number } {
  const from = Math.max(start < 0 ? length + start : start, 0);
  const to = Math.min(stop < 0 ? length + stop : stop, length - 1);
  return { from, to };
}

export class Keyspace {
  readonly redis: Redis;
  readonly config: RedisBackendConfig;

  constructor(redis: Redis, config: RedisBackendConfig) {
    this.redis = redis;
    this.config = config;
  }

  /** The key as stored: with the backend's prefix. */
  key(name: string): string {
    return this.config.keyPrefix + name;
  }

  /** A stored key as tools show it: without the prefix. */
  unprefixed(stored: string): string {
    return stored.slice(this.config.keyPrefix.length);
  }

  /** A string value cut to maxValueBytes, and whether it was. */
  clip(value: string): { value: string; cut: boolean } {
    const max = this.config.maxValueBytes;
    if (value.length * 3 <= max || Buffer.byteLength(value, "utf8") <= max) return { value, cut: false };
    return { value: Buffer.from(value, "utf8").subarray(0, max).toString("utf8"), cut: true };
  }

  cutNote(what: string): string {
    return (
      `Truncated: ${what}. This backend returns at most ${this.config.maxItems} elements (maxItems) and ` +
      `${this.config.maxValueBytes} bytes per value (maxValueBytes); ask for a narrower range to see the rest.`
    );
  }

  /** The results of a pipeline, or the first error in it. */
  async pipeline(pipeline: ReturnType<Redis["pipeline"]>): Promise<unknown[]> {
    const replies = (await pipeline.exec()) ?? [];
    return replies.map(([error, value]) => {
      if (error) throw error;
      return value;
    });
  }

  /** Runs a cursor command (SSCAN, HSCAN) until `limit` elements or the end, in bounded rounds. */
  async collect(step: (cursor: string) => Promise<[string, string[]]>, limit: number): Promise<string[]> {
    const found: string[] = [];
    let cursor = "0";
    for (let round = 0; round < MAX_SCAN_ROUNDS; round++) {
      const [next, batch] = await step(cursor);
      found.push(...batch);
      cursor = next;
      if (cursor === "0" || found.length >= limit) break;
    }
    return found;
  }
}
