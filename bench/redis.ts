/**
 * What sharing state in Redis adds to a call, in one run: the same gateway config served twice over
 * stdio, once on the memory store and once on a Redis store (REDIS_URL, a key prefix of this run's
 * own, deleted afterwards), against a backend that answers at once so that the store's round trips
 * stand out. Three scenarios:
 *
 * - rate limit: one token taken per call (a Lua script on Redis);
 * - cache hit: one read;
 * - cache miss: a read, the single-flight lock, a second read, the write and the release.
 *
 * The two gateways run in short alternating blocks, so that load on a shared machine falls on both
 * alike; p50 and p99 are medians over blocks. Redis on loopback is the best case: add the network's
 * round trip per store operation for a remote one.
 */
import { randomUUID } from "node:crypto";
import { Redis } from "ioredis";
import { LIGHT, startStdioGateway, writeBenchConfig } from "./lib/gateway.ts";
import { combineBlocks, type LoadResult, type RpcClient, runLoad, type StdioRpc } from "./lib/load.ts";

export interface RedisRow {
  readonly scenario: string;
  readonly concurrency: number;
  readonly memory: LoadResult;
  readonly redis: LoadResult;
  /** redis − memory, in ms. */
  readonly addedP50Ms: number;
  readonly addedP99Ms: number;
}

export interface RedisReport {
  readonly url: string;
  readonly rows: readonly RedisRow[];
}

interface Opts {
  readonly total: number;
  readonly warmup: number;
}

type Call = (client: RpcClient, i: number) => Promise<unknown>;

/** Limits far above what the benchmark reaches: a token is taken on every call, none is refused. */
const POLICIES = {
  backend__tool_0: { rateLimit: { capacity: 1_000_000_000, refillPerSecond: 1_000_000_000 } },
  backend__tool_1: { cache: { ttlMs: 600_000, cacheable: true } },
};

function writeConfig(store: unknown): string {
  return writeBenchConfig(
    {
      mcpServers: {
        backend: { command: process.execPath, args: [LIGHT], env: { DELAY_MS: "0", TOOLS: "2" } },
      },
      toolPolicies: POLICIES,
      store,
      logging: { level: "warn" },
    },
    "bench-redis",
  );
}

let run = 0;
const scenarios: Record<string, () => Call> = {
  "rate limit": () => (client, i) =>
    client.request("tools/call", { name: "backend__tool_0", arguments: { message: String(i) } }),
  "cache hit": () => (client) =>
    client.request("tools/call", { name: "backend__tool_1", arguments: { message: "the same question" } }),
  // Unique across blocks and gateways too, so that every call is a miss.
  "cache miss": () => {
    const prefix = `r${++run}-`;
    return (client, i) =>
      client.request("tools/call", { name: "backend__tool_1", arguments: { message: `${prefix}${i}` } });
  },
};

async function compare(
  gateways: { memory: StdioRpc; redis: StdioRpc },
  scenario: string,
  concurrency: number,
  opts: Opts,
): Promise<RedisRow> {
  const make = scenarios[scenario] as () => Call;
  const sides = [gateways.memory, gateways.redis];
  const blocks: LoadResult[][] = [[], []];
  for (const gateway of sides) {
    await runLoad(Array(concurrency).fill(gateway), make(), { total: opts.warmup, warmup: 0 });
  }
  const block = 100 * concurrency;
  for (let done = 0; done < opts.total; done += block) {
    const size = Math.min(block, opts.total - done);
    for (const [i, gateway] of sides.entries()) {
      blocks[i]?.push(await runLoad(Array(concurrency).fill(gateway), make(), { total: size, warmup: 0 }));
    }
  }
  const [memory, redis] = blocks.map(combineBlocks) as [LoadResult, LoadResult];
  return {
    scenario,
    concurrency,
    memory,
    redis,
    addedP50Ms: redis.p50Ms - memory.p50Ms,
    addedP99Ms: redis.p99Ms - memory.p99Ms,
  };
}

/** Deletes this run's keys (SCAN + UNLINK, never KEYS). */
async function deletePrefix(url: string, prefix: string): Promise<void> {
  const redis = new Redis(url, { maxRetriesPerRequest: 1 });
  try {
    let cursor = "0";
    do {
      const [next, keys] = await redis.scan(cursor, "MATCH", `${prefix}*`, "COUNT", 1000);
      cursor = next;
      if (keys.length > 0) await redis.unlink(...keys);
    } while (cursor !== "0");
  } finally {
    redis.disconnect();
  }
}

/** Undefined when REDIS_URL is not set. */
export async function measureRedis(opts: Opts): Promise<RedisReport | undefined> {
  const url = process.env.REDIS_URL;
  if (!url) return undefined;
  const keyPrefix = `switchboard-bench:${randomUUID()}:`;
  const memory = await startStdioGateway(writeConfig({ type: "memory" }));
  const redis = await startStdioGateway(writeConfig({ type: "redis", url, keyPrefix }));
  try {
    const rows: RedisRow[] = [];
    for (const concurrency of [1, 8]) {
      for (const scenario of Object.keys(scenarios)) {
        rows.push(await compare({ memory, redis }, scenario, concurrency, opts));
      }
    }
    return { url: url.replace(/\/\/[^@/]*@/, "//***@"), rows };
  } finally {
    await Promise.all([memory.close(), redis.close()]);
    await deletePrefix(url, keyPrefix);
  }
}
