/**
 * Start-up: with 10 stdio servers configured, how long from the gateway's process being spawned to the
 * answer to a client's first `tools/list`, over stdio and over Streamable HTTP. Servers still starting
 * when that list is answered appear later (list_changed); the time until all ten are listed is
 * recorded next to it, for information.
 *
 * - stdio: the client writes `initialize`, `notifications/initialized` and `tools/list` as soon as the
 *   process is spawned (as an MCP client does); the clock stops at the list's answer.
 * - HTTP: the client waits for the `listening` log line (it cannot connect before), then initializes
 *   a 2025-era session and lists; the clock runs from spawn to the list's answer.
 *
 * Each transport is measured `rounds` times (alternating), medians reported. The servers are the SDK v1
 * fixture (a typical server); BENCH_STARTUP_SERVER=everything uses server-everything instead. Run alone
 * with `npx tsx bench/startup.ts`; `npm run bench` runs it with the rest.
 */
import { join } from "node:path";
import { GATEWAY_ARGV, ROOT, SDK_SERVER, writeBenchConfig } from "./lib/gateway.ts";
import { HttpSessionRpc, type RpcClient, StdioRpc } from "./lib/load.ts";
import { type BenchRatio, startHttpGateway } from "./lib/process.ts";

const EVERYTHING = join(ROOT, "node_modules/@modelcontextprotocol/server-everything/dist/index.js");
const TARGET_MS = 1_000;

export interface StartupOptions {
  /** Servers configured. Default 10. */
  readonly servers?: number;
  /** Measurements per transport. Default 3. */
  readonly rounds?: number;
  /** The server each entry runs. Default the SDK v1 fixture. */
  readonly server?: "sdk" | "everything";
  /** The node arguments that run the CLI: another build's, for A/B runs. Default: this one's. */
  readonly cli?: readonly string[];
}

/** One start of the gateway, in ms from spawn. */
export interface StartupRun {
  /** The first `tools/list` answered. */
  readonly firstListMs: number;
  /** Servers whose tools that first list held. */
  readonly serversInFirstList: number;
  /** Every configured server's tools listed. */
  readonly allListedMs: number;
  /** HTTP only: the `listening` line. */
  readonly listeningMs?: number;
}

export interface StartupReport {
  readonly servers: number;
  readonly server: string;
  readonly stdio: readonly StartupRun[];
  readonly http: readonly StartupRun[];
  /** Medians over the rounds. */
  readonly stdioFirstListMs: number;
  readonly httpFirstListMs: number;
  readonly stdioAllListedMs: number;
  readonly httpAllListedMs: number;
  readonly ratios: readonly BenchRatio[];
}

function median(values: readonly number[]): number {
  const sorted = [...values].sort((a, b) => a - b);
  return sorted[Math.floor(sorted.length / 2)] ?? 0;
}

/** The servers (by prefix) whose tools a `tools/list` result holds. */
async function listedServers(client: RpcClient): Promise<Set<string>> {
  const { tools } = (await client.request("tools/list", {})) as { tools: { name: string }[] };
  return new Set(
    tools.filter((t) => !t.name.startsWith("switchboard__")).map((t) => t.name.split("__")[0] as string),
  );
}

/** Lists until all `servers` are there (a benchmark, not a test: polling is fine); ms from `t0`. */
async function untilAllListed(client: RpcClient, servers: number, t0: number): Promise<number> {
  const deadline = performance.now() + 60_000;
  for (;;) {
    if ((await listedServers(client)).size >= servers) return performance.now() - t0;
    if (performance.now() > deadline) throw new Error(`not all ${servers} servers listed within 60 s`);
    await new Promise((resolve) => setTimeout(resolve, 25));
  }
}

async function stdioRun(config: string, servers: number, cli: readonly string[]): Promise<StartupRun> {
  const t0 = performance.now();
  const client = new StdioRpc(process.execPath, [...cli, "serve", "--config", config, "--stdio"]);
  try {
    await client.initialize();
    const first = await listedServers(client);
    const firstListMs = performance.now() - t0;
    const allListedMs = await untilAllListed(client, servers, t0);
    return { firstListMs, serversInFirstList: first.size, allListedMs };
  } finally {
    await client.close();
  }
}

async function httpRun(config: string, servers: number, cli: readonly string[]): Promise<StartupRun> {
  const t0 = performance.now();
  const gateway = await startHttpGateway(config, { cli, untilReady: false });
  const listeningMs = performance.now() - t0;
  const client = new HttpSessionRpc(gateway.url);
  try {
    await client.initialize();
    const first = await listedServers(client);
    const firstListMs = performance.now() - t0;
    const allListedMs = await untilAllListed(client, servers, t0);
    return { firstListMs, serversInFirstList: first.size, allListedMs, listeningMs };
  } finally {
    await client.close();
    await gateway.stop();
  }
}

export async function measureStartup(options: StartupOptions = {}): Promise<StartupReport> {
  const servers = options.servers ?? 10;
  const rounds = options.rounds ?? 3;
  const server = options.server ?? (process.env.BENCH_STARTUP_SERVER === "everything" ? "everything" : "sdk");
  const script = server === "everything" ? EVERYTHING : SDK_SERVER;
  const cli = options.cli ?? GATEWAY_ARGV;
  const config = writeBenchConfig(
    {
      mcpServers: Object.fromEntries(
        Array.from({ length: servers }, (_, i) => [`s${i}`, { command: process.execPath, args: [script] }]),
      ),
      logging: { level: "warn" },
    },
    "startup",
  );
  const stdio: StartupRun[] = [];
  const http: StartupRun[] = [];
  for (let round = 0; round < rounds; round++) {
    // Alternating, so that a busy spell on a shared machine does not fall on one transport only.
    if (round % 2 === 0) {
      stdio.push(await stdioRun(config, servers, cli));
      http.push(await httpRun(config, servers, cli));
    } else {
      http.push(await httpRun(config, servers, cli));
      stdio.push(await stdioRun(config, servers, cli));
    }
  }
  const stdioFirstListMs = median(stdio.map((r) => r.firstListMs));
  const httpFirstListMs = median(http.map((r) => r.firstListMs));
  return {
    servers,
    server,
    stdio,
    http,
    stdioFirstListMs,
    httpFirstListMs,
    stdioAllListedMs: median(stdio.map((r) => r.allListedMs)),
    httpAllListedMs: median(http.map((r) => r.allListedMs)),
    ratios: [
      {
        what: `start-up to first tools/list, ${servers} stdio servers, stdio (ms)`,
        measured: stdioFirstListMs,
        target: `< ${TARGET_MS}`,
        ok: stdioFirstListMs < TARGET_MS,
      },
      {
        what: `start-up to first tools/list, ${servers} stdio servers, HTTP (ms)`,
        measured: httpFirstListMs,
        target: `< ${TARGET_MS}`,
        ok: httpFirstListMs < TARGET_MS,
      },
    ],
  };
}

export function printStartup(report: StartupReport): void {
  const widths = [10, 12, 16, 12, 14];
  const row = (cells: readonly string[]) => cells.map((c, i) => c.padEnd(widths[i] ?? 0)).join("  ");
  console.log(row(["transport", "listening", "first list", "servers in it", "all listed"]));
  for (const [name, runs] of [
    ["stdio", report.stdio],
    ["HTTP", report.http],
  ] as const) {
    for (const r of runs) {
      console.log(
        row([
          name,
          r.listeningMs === undefined ? "-" : `${r.listeningMs.toFixed(0)} ms`,
          `${r.firstListMs.toFixed(0)} ms`,
          `${r.serversInFirstList}/${report.servers}`,
          `${r.allListedMs.toFixed(0)} ms`,
        ]),
      );
    }
  }
  for (const r of report.ratios) {
    console.log(
      `${r.what.padEnd(64)} ${r.measured.toFixed(0).padStart(7)}  ${r.target.padEnd(7)} ${r.ok ? "ok" : "NOT MET"}`,
    );
  }
}

if (import.meta.url === `file://${process.argv[1]}`) {
  printStartup(await measureStartup());
}
