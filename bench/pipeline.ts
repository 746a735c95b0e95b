/**
 * What the policy chain costs, measured through the real gateway over stdio with the lightweight
 * load client, in one run:
 *
 * (a) every call a cache miss, with the full chain (rate limit, cache, fallback keeping a stale copy,
 *     circuit breaker, bulkhead, retry, timeout) vs. the chain off (only the timeout, which is always
 *     on). Against a backend that takes ~1 ms, as a real one does, this is the target; against one
 *     that answers at once the gateway itself is the bottleneck, and the ratio shows the chain's raw
 *     CPU cost (for information).
 * (b) a cache hit through the gateway vs. a direct call to a backend that takes ~1 ms: what a hit
 *     saves over the call it replaces.
 *
 * The two sides of (a) are two tools of one server in one gateway, measured in short alternating
 * blocks with each side's time summed over its blocks: on a shared machine, load that comes and goes
 * then falls on both alike, and neither side gets a better CPU or a warmer process than the other.
 *
 * `invalidates` is the one policy left out: on a read it would drop the very entries the cache
 * stores, so a call could be neither a miss that stores nor a hit.
 */
import { LIGHT, startStdioGateway, writeBenchConfig } from "./lib/gateway.ts";
import { combineBlocks, type LoadResult, type RpcClient, runLoad, StdioRpc } from "./lib/load.ts";

/**
 * Every policy, with limits far above what the benchmark reaches: each is taken on every call and
 * none refuses one. `cacheable` and `safe` let the cache and retries apply to the light server's
 * unannotated `tool_0`, which (a) uses as the tool with the chain.
 */
const FULL_CHAIN = {
  rateLimit: { capacity: 1_000_000_000, refillPerSecond: 1_000_000_000 },
  cache: { ttlMs: 600_000, cacheable: true },
  fallback: { chain: [{ cache: "stale" }, { static: { text: "unavailable" } }] },
  circuitBreaker: { consecutiveFailures: 5, openMs: 30_000 },
  bulkhead: { maxConcurrent: 64, maxQueue: 1_000 },
  retry: { maxAttempts: 3, safe: true },
  timeout: 30_000,
};

export interface PipelineRow {
  readonly name: string;
  /** How long the backend takes per call. */
  readonly backendMs: number;
  readonly concurrency: number;
  readonly result: LoadResult;
}

export interface PipelineRatio {
  readonly what: string;
  readonly ratio: number;
  /** The ratio must be at least this; undefined for ratios shown for information. */
  readonly target?: number;
}

export interface PipelineReport {
  readonly rows: readonly PipelineRow[];
  readonly ratios: readonly PipelineRatio[];
}

interface Opts {
  readonly total: number;
  readonly warmup: number;
}

type Call = (client: RpcClient, i: number) => Promise<unknown>;

/** One light backend with two tools: `echo` with no policies but the timeout, `tool_0` with all of them. */
function writeConfig(delayMs: number): string {
  return writeBenchConfig(
    {
      mcpServers: {
        backend: { command: process.execPath, args: [LIGHT], env: { DELAY_MS: String(delayMs), TOOLS: "1" } },
      },
      toolPolicies: { backend__tool_0: FULL_CHAIN },
      logging: { level: "warn" },
    },
    "pipeline",
  );
}

let run = 0;
/** Every call unique, so every call is a miss, across blocks too. */
function uniqueEcho(tool: string): Call {
  const prefix = `r${++run}-`;
  return (client, i) => client.request("tools/call", { name: tool, arguments: { message: `${prefix}${i}` } });
}

function sameEcho(tool: string): Call {
  return (client) =>
    client.request("tools/call", { name: tool, arguments: { message: "the same question" } });
}

/** Runs `total` calls of each tool in alternating blocks of `block` calls, every call a miss. */
async function alternate(
  clients: readonly RpcClient[],
  tools: readonly string[],
  opts: Opts,
  block: number,
): Promise<LoadResult[]> {
  for (const tool of tools) await runLoad(clients, uniqueEcho(tool), { total: opts.warmup, warmup: 0 });
  const blocks = tools.map((): LoadResult[] => []);
  for (let done = 0; done < opts.total; done += block) {
    const size = Math.min(block, opts.total - done);
    for (const [i, tool] of tools.entries()) {
      blocks[i]?.push(await runLoad(clients, uniqueEcho(tool), { total: size, warmup: 0 }));
    }
  }
  return blocks.map(combineBlocks);
}

/**
 * Both sides run in the same gateway process against the same backend process, as two tools of one
 * server, so that neither gets a better CPU or a warmer process than the other.
 */
async function measureMisses(
  backendMs: number,
  concurrency: number,
  opts: Opts,
  target: number | undefined,
): Promise<PipelineReport> {
  const gateway = await startStdioGateway(writeConfig(backendMs));
  try {
    const clients = Array<RpcClient>(concurrency).fill(gateway);
    const [off, full] = (await alternate(
      clients,
      ["backend__echo", "backend__tool_0"],
      opts,
      50 * concurrency,
    )) as [LoadResult, LoadResult];
    return {
      rows: [
        { name: "chain off", backendMs, concurrency, result: off },
        { name: "full chain, miss", backendMs, concurrency, result: full },
      ],
      ratios: [
        {
          what: `miss, full chain / off, ${backendMs} ms backend, ${concurrency} client(s)`,
          ratio: full.perSecond / off.perSecond,
          ...(target === undefined ? {} : { target }),
        },
      ],
    };
  } finally {
    await gateway.close();
  }
}

async function measureHits(opts: Opts): Promise<PipelineReport> {
  const direct = new StdioRpc(process.execPath, [LIGHT], { DELAY_MS: "1" });
  await direct.initialize();
  const directResult = await runLoad([direct], uniqueEcho("echo"), opts);
  await direct.close();

  const gateway = await startStdioGateway(writeConfig(1));
  let hitResult: LoadResult;
  try {
    // The warm-up's first call is the one miss; every measured call is a hit.
    hitResult = await runLoad([gateway], sameEcho("backend__tool_0"), opts);
  } finally {
    await gateway.close();
  }
  return {
    rows: [
      { name: "direct to backend", backendMs: 1, concurrency: 1, result: directResult },
      { name: "full chain, hit", backendMs: 1, concurrency: 1, result: hitResult },
    ],
    ratios: [
      {
        what: "hit / direct call to a 1 ms backend, 1 client",
        ratio: hitResult.perSecond / directResult.perSecond,
        target: 3,
      },
    ],
  };
}

export async function measurePipeline(opts: Opts): Promise<PipelineReport> {
  // A 1 ms backend caps one client near 800 calls/s: fewer calls measure it just as well.
  const slow = { total: Math.min(opts.total, 2_000), warmup: Math.min(opts.warmup, 200) };
  const parts = [
    await measureMisses(1, 1, slow, 0.9),
    await measureMisses(1, 8, opts, 0.9),
    await measureMisses(0, 8, opts, undefined),
    await measureHits(slow),
  ];
  return { rows: parts.flatMap((p) => p.rows), ratios: parts.flatMap((p) => p.ratios) };
}
