/**
 * Tests against a real Redis. The server comes from REDIS_URL; without it the tests are skipped with a
 * message that says how to run them, except in CI (CI=true), where a missing service is a failure.
 *
 * Each run uses its own key prefix, so test files running in parallel (or a developer's leftovers)
 * never collide, and deletes its keys by prefix with SCAN (never KEYS) when done.
 */
import { randomUUID } from "node:crypto";
import { Redis } from "ioredis";
import { describeWithService, REDIS, serviceUrl } from "./services.ts";

export const REDIS_URL = serviceUrl(REDIS);

/**
 * Registers `body` as a suite when REDIS_URL is set. Otherwise: a failing test in CI, a skipped suite
 * elsewhere (the rule every service test follows; see services.ts).
 */
export function describeWithRedis(name: string, body: (url: string) => void): void {
  describeWithService(REDIS, name, body);
}

/** A key prefix no other test run uses. */
export function uniquePrefix(label = "test"): string {
  return `switchboard-test:${label}:${randomUUID()}:`;
}

/** Deletes every key under `prefix` (SCAN + UNLINK); returns how many went. */
export async function deleteByPrefix(url: string, prefix: string): Promise<number> {
  const redis = new Redis(url, { lazyConnect: true, maxRetriesPerRequest: 1 });
  await redis.connect();
  try {
    const pattern = `${prefix.replace(/[*?[\]\\]/g, "\\$&")}*`;
    let cursor = "0";
    let deleted = 0;
    do {
      const [next, keys] = await redis.scan(cursor, "MATCH", pattern, "COUNT", 1000);
      cursor = next;
      if (keys.length > 0) deleted += await redis.unlink(...keys);
    } while (cursor !== "0");
    return deleted;
  } finally {
    redis.disconnect();
  }
}

/** A plain client for looking at what a store wrote. Disconnect it when done. */
export async function rawClient(url: string): Promise<Redis> {
  const redis = new Redis(url, { lazyConnect: true, maxRetriesPerRequest: 1 });
  await redis.connect();
  return redis;
}

export { TcpProxy } from "../../bench/lib/tcp-proxy.ts";
