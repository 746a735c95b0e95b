/**
 * Switchboard against the shape most gateways have (bench/fixtures/sdk-passthrough.mjs: the official
 * SDK v2's McpServer per HTTP session, forwarding each call through an SDK client over stdio), both
 * over Streamable HTTP with 8 concurrent 2025-era sessions, both in front of the same backend, with
 * the same load client and the same number of calls. Switchboard runs with its default config, so no
 * policy but the timeout is in its chain.
 *
 * Both processes run side by side and are measured in alternating blocks (A B B A …), each side's
 * calls and time summed over its blocks: load that comes and goes on a shared machine falls on both.
 */

import { ROOT, writeBenchConfig } from "./lib/gateway.ts";
import { combineBlocks, HttpSessionRpc, type LoadResult, type RpcClient, runLoad } from "./lib/load.ts";
import { type BenchRatio, type ServedProcess, startHttpGateway, startServedProcess } from "./lib/process.ts";
import { BACKENDS, type BackendKind } from "./overhead.ts";

const PASSTHROUGH = `${ROOT}/bench/fixtures/sdk-passthrough.mjs`;

export interface SdkPassthroughOptions {
  readonly total: number;
  readonly warmup: number;
  /** Concurrent sessions. Default 8. */
  readonly concurrency?: number;
  /** The backend both stand in front of. Default "light" (costs ~nothing, so the gateways are measured). */
  readonly backend?: BackendKind;
  /** Blocks per side. Default 4. */
  readonly blocks?: number;
}

export interface SdkPassthroughReport {
  readonly backend: BackendKind;
  readonly concurrency: number;
  /** Calls/s and seconds over all blocks; p50/p99 are the medians of the blocks' figures. */
  readonly switchboard: LoadResult;
  readonly sdkPassthrough: LoadResult;
  /** Switchboard's throughput / the SDK passthrough's. */
  readonly throughputRatio: number;
  readonly startupMs: { readonly switchboard: number; readonly sdkPassthrough: number };
  readonly seconds: number;
  readonly ratios: readonly BenchRatio[];
}

/** Checks that a side answers a call with the backend's echo before timing it. */
async function expectEcho(client: RpcClient, tool: string): Promise<void> {
  const result = (await client.request("tools/call", { name: tool, arguments: { message: "ping" } })) as {
    content?: { text?: string }[];
  };
  const text = result.content?.[0]?.text;
  if (text !== "ping") throw new Error(`${tool} answered ${JSON.stringify(result).slice(0, 200)}`);
}

export async function measureSdkPassthrough(opts: SdkPassthroughOptions): Promise<SdkPassthroughReport> {
  const concurrency = opts.concurrency ?? 8;
  const backend = opts.backend ?? "light";
  const blocks = Math.max(1, opts.blocks ?? 4);
  const began = performance.now();
  const script = BACKENDS[backend];
  const config = writeBenchConfig(
    { mcpServers: { backend: { command: process.execPath, args: [script] } }, logging: { level: "warn" } },
    "sdk-passthrough",
  );

  const started: ServedProcess[] = [];
  const clients: HttpSessionRpc[] = [];
  try {
    const switchboard = await startHttpGateway(config);
    started.push(switchboard);
    const passthrough = await startServedProcess([PASSTHROUGH, script]);
    started.push(passthrough);

    const sides = [
      { served: switchboard, tool: "backend__echo", results: [] as LoadResult[] },
      { served: passthrough, tool: "echo", results: [] as LoadResult[] },
    ];
    const sessions = sides.map((side) => {
      const own = Array.from({ length: concurrency }, () => new HttpSessionRpc(side.served.url));
      clients.push(...own);
      return own;
    });
    await Promise.all(clients.map((c) => c.initialize()));
    for (const [s, side] of sides.entries()) await expectEcho(sessions[s]?.[0] as RpcClient, side.tool);

    const perBlock = Math.ceil(opts.total / blocks);
    for (let b = 0; b < blocks; b++) {
      const order = b % 2 === 0 ? [0, 1] : [1, 0];
      for (const s of order) {
        const side = sides[s] as (typeof sides)[number];
        const total = Math.min(perBlock, opts.total - b * perBlock);
        if (total <= 0) continue;
        side.results.push(
          await runLoad(
            sessions[s] as HttpSessionRpc[],
            (client, i) => client.request("tools/call", { name: side.tool, arguments: { message: `m${i}` } }),
            { total, warmup: b === 0 ? opts.warmup : 0 },
          ),
        );
      }
    }

    const [ours, theirs] = sides.map((side) => combineBlocks(side.results)) as [LoadResult, LoadResult];
    const throughputRatio = ours.perSecond / theirs.perSecond;
    return {
      backend,
      concurrency,
      switchboard: ours,
      sdkPassthrough: theirs,
      throughputRatio,
      startupMs: { switchboard: switchboard.startupMs, sdkPassthrough: passthrough.startupMs },
      seconds: (performance.now() - began) / 1000,
      ratios: [
        {
          what: `HTTP throughput, Switchboard / SDK v2 passthrough, ${concurrency} clients`,
          measured: throughputRatio,
          target: "≥ 2",
          ok: throughputRatio >= 2,
        },
        {
          what: `HTTP p50, SDK v2 passthrough / Switchboard, ${concurrency} clients`,
          measured: theirs.p50Ms / ours.p50Ms,
          target: "-",
          ok: true,
        },
      ],
    };
  } finally {
    await Promise.allSettled(clients.map((c) => c.close()));
    await Promise.allSettled(started.map((p) => p.stop()));
  }
}
