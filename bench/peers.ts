/**
 * Switchboard and its peers, each fronting the same server (the reference `server-everything` over
 * stdio), measured in one run with the same load client: `echo` calls from 8 concurrent clients.
 *
 * - stdio: Switchboard's stdio endpoint against a direct stdio connection to the server (one client
 *   connection, 8 calls in flight), with the chain off and with the realistic chain of overhead.ts
 *   (rate limit, circuit breaker, a cache that misses: every call of that side has new arguments,
 *   metrics, batched audit);
 * - Streamable HTTP, 2025-era sessions: Switchboard, supergateway (stateful stdio→Streamable HTTP)
 *   and punkpeye's mcp-proxy (stream endpoint), 8 sessions each;
 * - Streamable HTTP, 2026-07-28 stateless requests: Switchboard and mcp-proxy (which serves that
 *   revision too; supergateway does not).
 *
 * Every side runs the whole time; rounds alternate between them (A B C … C B A …) and each side's
 * figures are the medians over its rounds, so load that comes and goes on a shared machine falls on
 * all alike. Run alone with `npx tsx bench/peers.ts`; `npm run bench` runs it with the rest.
 */
import { type ChildProcess, spawn } from "node:child_process";
import { createServer } from "node:net";
import { join } from "node:path";
import { ROOT, startStdioGateway, writeBenchConfig } from "./lib/gateway.ts";
import {
  HttpModernRpc,
  HttpSessionRpc,
  type LoadResult,
  type RpcClient,
  runLoad,
  StdioRpc,
} from "./lib/load.ts";
import { type BenchRatio, startHttpGateway, stopProcessTree } from "./lib/process.ts";
import { REALISTIC_CHAIN } from "./overhead.ts";

const EVERYTHING = join(ROOT, "node_modules/@modelcontextprotocol/server-everything/dist/index.js");
const SUPERGATEWAY = join(ROOT, "node_modules/supergateway/dist/index.js");
const MCP_PROXY = join(ROOT, "node_modules/mcp-proxy/dist/bin/mcp-proxy.mjs");
const CLIENTS = 8;

export interface PeersOptions {
  /** Calls per side per round. Default 2 000. */
  readonly calls?: number;
  /** Rounds per side. Default 5. */
  readonly rounds?: number;
}

export interface SideFigures {
  readonly name: string;
  readonly calls: number;
  /** Medians over the rounds. */
  readonly perSecond: number;
  readonly p50Ms: number;
  readonly p99Ms: number;
}

export interface PeersReport {
  readonly sides: readonly SideFigures[];
  readonly ratios: readonly BenchRatio[];
}

interface Side {
  readonly name: string;
  readonly clients: readonly RpcClient[];
  readonly tool: string;
  /** New arguments for every call (so that a cache in the chain misses), rather than m<i>. */
  readonly unique?: boolean;
  close(): Promise<void>;
}

/** The echo call of a side. */
let uniqueCalls = 0;
const echoOf = (side: Side) => (client: RpcClient, i: number) =>
  client.request("tools/call", {
    name: side.tool,
    arguments: { message: side.unique ? `u${++uniqueCalls}` : `m${i}` },
  });

async function freePort(): Promise<number> {
  const server = createServer();
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  const port = (server.address() as { port: number }).port;
  await new Promise((resolve) => server.close(resolve));
  return port;
}

/** Starts a peer and waits until it answers an `initialize` at `url`. */
async function startPeer(args: readonly string[], url: string): Promise<ChildProcess> {
  const child = spawn(process.execPath, [...args], { cwd: ROOT, stdio: ["ignore", "ignore", "ignore"] });
  const deadline = Date.now() + 60_000;
  for (;;) {
    if (child.exitCode !== null) throw new Error(`${args[0]} exited (${child.exitCode}) before it served`);
    try {
      const probe = new HttpSessionRpc(url);
      await probe.initialize();
      await probe.close();
      return child;
    } catch (error) {
      if (Date.now() > deadline) {
        await stopProcessTree(child, 2_000);
        throw new Error(`${args[0]} did not serve ${url} within 60 s: ${String(error)}`);
      }
      await new Promise((resolve) => setTimeout(resolve, 200));
    }
  }
}

async function sessions(url: string): Promise<HttpSessionRpc[]> {
  const clients = Array.from({ length: CLIENTS }, () => new HttpSessionRpc(url));
  await Promise.all(clients.map((c) => c.initialize()));
  return clients;
}

async function sides(): Promise<Side[]> {
  const made: Side[] = [];
  try {
    const direct = new StdioRpc(process.execPath, [EVERYTHING]);
    await direct.initialize();
    made.push({
      name: "direct stdio",
      clients: Array(CLIENTS).fill(direct),
      tool: "echo",
      close: () => direct.close(),
    });

    const config = writeBenchConfig(
      {
        mcpServers: { everything: { command: process.execPath, args: [EVERYTHING] } },
        logging: { level: "warn" },
      },
      "peers",
    );
    const stdio = await startStdioGateway(config);
    made.push({
      name: "switchboard stdio",
      clients: Array(CLIENTS).fill(stdio),
      tool: "everything__echo",
      close: () => stdio.close(),
    });

    const chainConfig = writeBenchConfig(
      {
        mcpServers: { everything: { command: process.execPath, args: [EVERYTHING] } },
        logging: { level: "warn" },
        ...REALISTIC_CHAIN,
      },
      "peers-chain",
    );
    const stdioChain = await startStdioGateway(chainConfig);
    made.push({
      name: "switchboard stdio + chain",
      clients: Array(CLIENTS).fill(stdioChain),
      tool: "everything__echo",
      unique: true,
      close: () => stdioChain.close(),
    });

    const gateway = await startHttpGateway(config, { timeoutMs: 120_000 });
    const legacy = await sessions(gateway.url);
    const modern = Array.from({ length: CLIENTS }, () => new HttpModernRpc(gateway.url));
    made.push({
      name: "switchboard HTTP 2025",
      clients: legacy,
      tool: "everything__echo",
      close: async () => {},
    });
    made.push({
      name: "switchboard HTTP 2026-07-28",
      clients: modern,
      tool: "everything__echo",
      close: async () => {
        await Promise.all([...legacy, ...modern].map((c) => c.close()));
        await gateway.stop();
      },
    });

    const sgPort = await freePort();
    const sgUrl = `http://127.0.0.1:${sgPort}/mcp`;
    const sg = await startPeer(
      [
        SUPERGATEWAY,
        "--stdio",
        `${process.execPath} ${EVERYTHING}`,
        "--outputTransport",
        "streamableHttp",
        "--stateful",
        "--port",
        String(sgPort),
        "--logLevel",
        "none",
      ],
      sgUrl,
    );
    const sgClients = await sessions(sgUrl);
    made.push({
      name: "supergateway 4.0.0",
      clients: sgClients,
      tool: "echo",
      close: async () => {
        await Promise.all(sgClients.map((c) => c.close()));
        await stopProcessTree(sg, 5_000);
      },
    });

    const mpPort = await freePort();
    const mpUrl = `http://127.0.0.1:${mpPort}/mcp`;
    const mp = await startPeer(
      [
        MCP_PROXY,
        "--host",
        "127.0.0.1",
        "--port",
        String(mpPort),
        "--server",
        "stream",
        "--",
        process.execPath,
        EVERYTHING,
      ],
      mpUrl,
    );
    const mpLegacy = await sessions(mpUrl);
    const mpModern = Array.from({ length: CLIENTS }, () => new HttpModernRpc(mpUrl));
    made.push({ name: "mcp-proxy 6.7 (2025)", clients: mpLegacy, tool: "echo", close: async () => {} });
    made.push({
      name: "mcp-proxy 6.7 (2026-07-28)",
      clients: mpModern,
      tool: "echo",
      close: async () => {
        await Promise.all([...mpLegacy, ...mpModern].map((c) => c.close()));
        await stopProcessTree(mp, 5_000);
      },
    });
    return made;
  } catch (error) {
    for (const side of made.reverse()) await side.close().catch(() => undefined);
    throw error;
  }
}

function median(values: readonly number[]): number {
  const sorted = [...values].sort((a, b) => a - b);
  return sorted[Math.floor(sorted.length / 2)] ?? 0;
}

export async function measurePeers(options: PeersOptions = {}): Promise<PeersReport> {
  const calls = options.calls ?? 2_000;
  const rounds = options.rounds ?? 5;
  const all = await sides();
  const results = new Map<string, LoadResult[]>(all.map((s) => [s.name, []]));
  try {
    for (const side of all) await runLoad(side.clients, echoOf(side), { total: 300, warmup: 0 });
    for (let round = 0; round < rounds; round++) {
      const order = round % 2 === 0 ? all : [...all].reverse();
      for (const side of order) {
        results.get(side.name)?.push(await runLoad(side.clients, echoOf(side), { total: calls, warmup: 0 }));
      }
    }
  } finally {
    for (const side of [...all].reverse()) await side.close().catch(() => undefined);
  }
  const figures: SideFigures[] = all.map((side) => {
    const runs = results.get(side.name) ?? [];
    return {
      name: side.name,
      calls: runs.reduce((n, r) => n + r.calls, 0),
      perSecond: median(runs.map((r) => r.perSecond)),
      p50Ms: median(runs.map((r) => r.p50Ms)),
      p99Ms: median(runs.map((r) => r.p99Ms)),
    };
  });
  const of = (name: string) => figures.find((f) => f.name === name) as SideFigures;
  const best = (names: readonly string[]) =>
    names.map(of).reduce((a, b) => (b.perSecond > a.perSecond ? b : a));
  const legacyPeer = best(["supergateway 4.0.0", "mcp-proxy 6.7 (2025)"]);
  const modernPeer = of("mcp-proxy 6.7 (2026-07-28)");
  const stdioRatio = of("switchboard stdio").perSecond / of("direct stdio").perSecond;
  const stdioChainRatio = of("switchboard stdio + chain").perSecond / of("direct stdio").perSecond;
  const legacyRatio = of("switchboard HTTP 2025").perSecond / legacyPeer.perSecond;
  const modernRatio = of("switchboard HTTP 2026-07-28").perSecond / modernPeer.perSecond;
  const ratios: BenchRatio[] = [
    {
      what: "stdio in, chain off / direct (server-everything)",
      measured: stdioRatio,
      target: "≥ 0.65",
      ok: stdioRatio >= 0.65,
    },
    {
      what: "stdio in, realistic chain / direct (server-everything)",
      measured: stdioChainRatio,
      target: "≥ 0.55",
      ok: stdioChainRatio >= 0.55,
    },
    {
      what: `HTTP 2025, 8 clients / best peer (${legacyPeer.name})`,
      measured: legacyRatio,
      target: "≥ 2.5",
      ok: legacyRatio >= 2.5,
    },
    {
      what: `HTTP 2026-07-28, 8 clients / ${modernPeer.name}`,
      measured: modernRatio,
      target: "≥ 2.5",
      ok: modernRatio >= 2.5,
    },
    {
      what: "HTTP 2025: switchboard p99 / best peer's p50",
      measured: of("switchboard HTTP 2025").p99Ms / legacyPeer.p50Ms,
      target: "< 1",
      ok: of("switchboard HTTP 2025").p99Ms < legacyPeer.p50Ms,
    },
    {
      what: "HTTP 2026-07-28: switchboard p99 / peer's p50",
      measured: of("switchboard HTTP 2026-07-28").p99Ms / modernPeer.p50Ms,
      target: "< 1",
      ok: of("switchboard HTTP 2026-07-28").p99Ms < modernPeer.p50Ms,
    },
  ];
  return { sides: figures, ratios };
}

export function printPeers(report: PeersReport): void {
  const widths = [30, 10, 9, 9];
  const row = (cells: readonly string[]) => cells.map((c, i) => c.padEnd(widths[i] ?? 0)).join("  ");
  console.log(row(["side (server-everything echo)", "calls/s", "p50 ms", "p99 ms"]));
  for (const s of report.sides) {
    console.log(row([s.name, s.perSecond.toFixed(0), s.p50Ms.toFixed(3), s.p99Ms.toFixed(3)]));
  }
  for (const r of report.ratios) {
    console.log(
      `${r.what.padEnd(60)} ${r.measured.toFixed(2).padStart(7)}  ${r.target.padEnd(7)} ${r.ok ? "ok" : "NOT MET"}`,
    );
  }
}

if (import.meta.url === `file://${process.argv[1]}`) {
  printPeers(await measurePeers());
}
