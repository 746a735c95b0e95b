/**
 * Passthrough overhead: one simple tool call, direct to a stdio server vs. through Switchboard over
 * stdio and over Streamable HTTP, with 1 and 8 concurrent clients, all measured in one run.
 *
 * Over stdio, "8 clients" means 8 requests in flight on the one connection (a stdio server has one
 * client by nature); over HTTP it means 8 sessions on 8 keep-alive connections.
 */
import { mkdtempSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { LIGHT, SDK_SERVER, startStdioGateway, writeBenchConfig } from "./lib/gateway.ts";
import {
  combineBlocks,
  HttpSessionRpc,
  type LoadResult,
  type RpcClient,
  runLoad,
  StdioRpc,
} from "./lib/load.ts";
import { startHttpGateway } from "./lib/process.ts";

export interface Scenario {
  readonly name: string;
  readonly concurrency: number;
  readonly result: LoadResult;
}

/** The backend every scenario calls: a typical SDK v1 server, or a hand-written one that costs ~nothing. */
export const BACKENDS = { sdk: SDK_SERVER, light: LIGHT } as const;
export type BackendKind = keyof typeof BACKENDS;

function gatewayConfig(backend: string, chain = false): string {
  return writeBenchConfig({
    mcpServers: { backend: { command: process.execPath, args: [backend] } },
    logging: { level: "warn" },
    ...(chain ? REALISTIC_CHAIN : {}),
  });
}

/**
 * What a production config turns on for every call: a rate limit high enough never to refuse, a cache
 * that misses (every call has new arguments), a circuit breaker, metrics (on by default), argument
 * validation (always on) and the audit log in batched mode. The limit, cache and breaker keep their
 * state in the memory store.
 */
export const REALISTIC_CHAIN = {
  policies: {
    rateLimit: { capacity: 1_000_000, refillPerSecond: 1_000_000 },
    circuitBreaker: { consecutiveFailures: 5 },
    cache: { ttlMs: 60_000 },
  },
  audit: {
    sinks: [
      {
        type: "file",
        path: join(mkdtempSync(join(tmpdir(), "switchboard-bench-audit-")), "audit.jsonl"),
        durability: "batched",
      },
    ],
  },
};

const callEcho = (tool: string) => (client: RpcClient, i: number) =>
  client.request("tools/call", { name: tool, arguments: { message: `m${i}` } });

/** Arguments never seen before, so a cache in the chain misses every time. */
let unique = 0;
const uniqueEcho = (tool: string) => (client: RpcClient) =>
  client.request("tools/call", { name: tool, arguments: { message: `u${++unique}` } });

export async function measureOverhead(
  kind: BackendKind,
  opts: { total: number; warmup: number },
): Promise<Scenario[]> {
  const scenarios: Scenario[] = [];
  const backend = BACKENDS[kind];
  const config = gatewayConfig(backend);
  const chainConfig = gatewayConfig(backend, true);

  // The three stdio sides run side by side and take turns (A B C, C B A, …), each round a fifth of
  // the calls: load that comes and goes on a shared machine falls on all three alike, and the ratios
  // compare like with like. Each side's figures are its rounds combined.
  const rounds = 5;
  for (const concurrency of [1, 8]) {
    const direct = new StdioRpc(process.execPath, [backend]);
    await direct.initialize();
    const viaStdio = await startStdioGateway(config);
    const withChain = await startStdioGateway(chainConfig);
    const sides = [
      { name: "direct stdio", client: direct, call: callEcho("echo") },
      { name: "switchboard stdio", client: viaStdio, call: callEcho("backend__echo") },
      { name: "stdio + chain", client: withChain, call: uniqueEcho("backend__echo") },
    ];
    try {
      const blocks = new Map<string, LoadResult[]>(sides.map((side) => [side.name, []]));
      for (const side of sides) {
        await runLoad(Array(concurrency).fill(side.client), side.call, { total: opts.warmup, warmup: 0 });
      }
      for (let round = 0; round < rounds; round++) {
        for (const side of round % 2 === 0 ? sides : [...sides].reverse()) {
          const total = Math.ceil(opts.total / rounds);
          const result = await runLoad(Array(concurrency).fill(side.client), side.call, { total, warmup: 0 });
          blocks.get(side.name)?.push(result);
        }
      }
      for (const side of sides) {
        scenarios.push({ name: side.name, concurrency, result: combineBlocks(blocks.get(side.name) ?? []) });
      }
    } finally {
      await Promise.all(sides.map((side) => side.client.close()));
    }
  }

  const gateway = await startHttpGateway(config);
  try {
    for (const concurrency of [1, 8]) {
      const clients = Array.from({ length: concurrency }, () => new HttpSessionRpc(gateway.url));
      await Promise.all(clients.map((c) => c.initialize()));
      scenarios.push({
        name: "switchboard http",
        concurrency,
        result: await runLoad(clients, callEcho("backend__echo"), opts),
      });
      await Promise.all(clients.map((c) => c.close()));
    }
  } finally {
    await gateway.stop();
  }
  return scenarios;
}

/** A throughput ratio of one scenario to direct stdio; `target` undefined: shown for information. */
export interface OverheadRatio {
  readonly what: string;
  readonly ratio: number;
  readonly target: number | undefined;
}

function find(scenarios: readonly Scenario[], name: string, concurrency: number): Scenario {
  const found = scenarios.find((s) => s.name === name && s.concurrency === concurrency);
  if (!found) throw new Error(`missing scenario ${name} × ${concurrency}`);
  return found;
}

/** stdio in with the chain off ≥ 0.65x of direct, with the realistic chain ≥ 0.55x; HTTP for information. */
export function overheadRatios(scenarios: readonly Scenario[]): OverheadRatio[] {
  return [1, 8].flatMap((c) => {
    const direct = find(scenarios, "direct stdio", c).result.perSecond;
    return [
      {
        what: `stdio, chain off / direct, ${c} client(s)`,
        ratio: find(scenarios, "switchboard stdio", c).result.perSecond / direct,
        target: 0.65,
      },
      {
        what: `stdio, realistic chain / direct, ${c} client(s)`,
        ratio: find(scenarios, "stdio + chain", c).result.perSecond / direct,
        target: 0.55,
      },
      {
        what: `HTTP, chain off / direct stdio, ${c} client(s)`,
        ratio: find(scenarios, "switchboard http", c).result.perSecond / direct,
        target: undefined,
      },
    ];
  });
}

export function printOverhead(scenarios: readonly Scenario[], ratios: readonly OverheadRatio[]): void {
  const widths = [20, 7, 10, 9, 9];
  const row = (cells: readonly string[]) => cells.map((c, i) => c.padEnd(widths[i] ?? 0)).join("  ");
  console.log(row(["scenario", "clients", "calls/s", "p50 ms", "p99 ms"]));
  for (const s of scenarios) {
    console.log(
      row([
        s.name,
        String(s.concurrency),
        s.result.perSecond.toFixed(0),
        s.result.p50Ms.toFixed(3),
        s.result.p99Ms.toFixed(3),
      ]),
    );
  }
  console.log("\nratio (throughput)                       measured  target");
  for (const r of ratios) {
    const verdict = r.target === undefined ? "" : r.ratio >= r.target ? "  ok" : "  BELOW TARGET";
    console.log(
      `${r.what.padEnd(40)} ${r.ratio.toFixed(2).padStart(8)}  ${r.target === undefined ? "-" : `≥ ${r.target}`}${verdict}`,
    );
  }
}

if (import.meta.url === `file://${process.argv[1]}`) {
  const total = Number(process.env.BENCH_CALLS ?? 5_000);
  const scenarios = await measureOverhead((process.env.BENCH_BACKEND ?? "sdk") as BackendKind, {
    total,
    warmup: Math.min(500, Math.ceil(total / 10)),
  });
  printOverhead(scenarios, overheadRatios(scenarios));
}
