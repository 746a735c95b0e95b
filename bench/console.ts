/**
 * What the web console costs calls: two gateways in one run, alike but for `server.http.console.enabled`,
 * each called by 8 HTTP clients (2025-era sessions) on a near-free backend's `echo`, with a rate limit in
 * the chain (so that calls carry the notes a watching console reads). Rounds run one block of each (idle,
 * disabled, watched, in a rotating order), so that load coming and going on a shared machine falls on all.
 *
 * - idle: the console is enabled and nobody has it open. Its sampler still reads the per-tool counters
 *   every 2 s; a call's path is the same as with the console off. The ratio should be 1 within noise.
 * - watched: one console is open (its live stream read and dropped), for information: then every call
 *   is told to the console's watcher.
 *
 * Throughput: the median over rounds of each round's blocks side by side, with the middle half of the
 * rounds as the noise. Cost: the gateway process's CPU time per call, summed over each kind's blocks,
 * which other processes on a shared machine move far less. Run alone with `npx tsx bench/console.ts`; `npm run bench` runs it last.
 */
import { readFileSync } from "node:fs";
import { LIGHT, writeBenchConfig } from "./lib/gateway.ts";
import { HttpSessionRpc, type LoadResult, type RpcClient, runLoad } from "./lib/load.ts";
import { type BenchRatio, type ServedProcess, startHttpGateway } from "./lib/process.ts";

export interface ConsoleBenchOptions {
  /** Rounds: each runs one block of calls per kind (idle, disabled, watched), in a rotating order. Default 24. */
  readonly rounds?: number;
  /** Calls per block. Default 600. */
  readonly calls?: number;
  /** Concurrent clients. Default 8. */
  readonly clients?: number;
}

type Kind = "idle" | "disabled" | "watched";

export interface ConsoleReport {
  readonly rounds: number;
  /** Calls per second of all the blocks of a kind together. */
  readonly perSecond: Readonly<Record<Kind, number>>;
  /** Median over blocks of each block's p50. */
  readonly p50Ms: Readonly<Record<Kind, number>>;
  /** Median over rounds of idle / disabled and watched / disabled, each round's blocks side by side. */
  readonly idleRatio: number;
  readonly watchedRatio: number;
  /** The middle half of the rounds' idle / disabled ratios: how much the machine's noise moves one. */
  readonly idleRatioSpread: readonly [number, number];
  /**
   * The gateway process's CPU time per call (user + system, summed over every block of a kind), in µs:
   * what the console costs the gateway itself, far less moved by other processes on the machine than
   * calls per second.
   */
  readonly cpuMicrosPerCall: Readonly<Record<Kind, number>>;
  readonly ratios: BenchRatio[];
}

function config(enabled: boolean): unknown {
  return {
    gateway: { reload: { watch: false } },
    server: { http: { console: { enabled } } },
    policies: { rateLimit: { capacity: 1_000_000, refillPerSecond: 1_000_000 } },
    mcpServers: { light: { command: process.execPath, args: [LIGHT] } },
  };
}

interface Side {
  readonly gateway: ServedProcess;
  readonly clients: HttpSessionRpc[];
}

async function side(enabled: boolean, clients: number): Promise<Side> {
  const gateway = await startHttpGateway(
    writeBenchConfig(config(enabled), enabled ? "console-on" : "console-off"),
  );
  const sessions: HttpSessionRpc[] = [];
  for (let i = 0; i < clients; i++) {
    const client = new HttpSessionRpc(gateway.url);
    await client.initialize();
    sessions.push(client);
  }
  return { gateway, clients: sessions };
}

/** A process's CPU time so far (user + system), in ms, from /proc (clock ticks of 10 ms). */
function cpuMs(pid: number): number {
  const stat = readFileSync(`/proc/${pid}/stat`, "utf8");
  const fields = stat.slice(stat.lastIndexOf(")") + 2).split(" ");
  // After the command name: state is field 3, utime 14 and stime 15 (1-based, counting pid and name).
  return (Number(fields[11]) + Number(fields[12])) * 10;
}

const echo = (client: RpcClient) =>
  client.request("tools/call", { name: "light__echo", arguments: { message: "m" } });

function quantile(values: readonly number[], q: number): number {
  const sorted = [...values].sort((a, b) => a - b);
  const at = (sorted.length - 1) * q;
  const low = sorted[Math.floor(at)] ?? Number.NaN;
  const high = sorted[Math.ceil(at)] ?? Number.NaN;
  return low + (high - low) * (at - Math.floor(at));
}

/** Opens the console's live stream and reads it until the returned function is called. */
async function watch(url: string): Promise<() => Promise<void>> {
  const controller = new AbortController();
  const response = await fetch(new URL("/console/api/events", url), { signal: controller.signal });
  if (!response.ok || !response.body) throw new Error(`the console's stream answered ${response.status}`);
  const reader = response.body.getReader();
  await reader.read();
  const reading = (async () => {
    try {
      for (;;) if ((await reader.read()).done) return;
    } catch {
      // aborted
    }
  })();
  return async () => {
    controller.abort();
    await reading;
  };
}

export async function measureConsole(options: ConsoleBenchOptions = {}): Promise<ConsoleReport> {
  const rounds = options.rounds ?? 24;
  const calls = options.calls ?? 600;
  const clientCount = options.clients ?? 8;
  const on = await side(true, clientCount);
  const off = await side(false, clientCount);
  const blocks: Record<Kind, LoadResult[]> = { idle: [], disabled: [], watched: [] };
  const cpu: Record<Kind, number> = { idle: 0, disabled: 0, watched: 0 };
  const run = async (kind: Kind) => {
    const target = kind === "disabled" ? off : on;
    const stop = kind === "watched" ? await watch(on.gateway.url) : undefined;
    try {
      const before = cpuMs(target.gateway.pid);
      blocks[kind].push(await runLoad(target.clients, echo, { total: calls, warmup: 0 }));
      cpu[kind] += cpuMs(target.gateway.pid) - before;
    } finally {
      await stop?.();
    }
  };
  try {
    await runLoad(on.clients, echo, { total: 0, warmup: 1_000 });
    await runLoad(off.clients, echo, { total: 0, warmup: 1_000 });
    const orders: Kind[][] = [
      ["idle", "disabled", "watched"],
      ["disabled", "watched", "idle"],
      ["watched", "idle", "disabled"],
    ];
    // Each kind runs first, second and third equally often.
    for (let round = 0; round < rounds; round++) {
      for (const kind of orders[round % orders.length] as Kind[]) await run(kind);
    }
    const pairRatios = (kind: Kind) =>
      blocks[kind].map((block, i) => block.perSecond / (blocks.disabled[i]?.perSecond ?? Number.NaN));
    const idleRatios = pairRatios("idle");
    const kinds: Kind[] = ["idle", "disabled", "watched"];
    const perSecond = Object.fromEntries(
      kinds.map((kind) => {
        const c = blocks[kind].reduce((sum, b) => sum + b.calls, 0);
        const seconds = blocks[kind].reduce((sum, b) => sum + b.seconds, 0);
        return [kind, c / seconds];
      }),
    ) as Record<Kind, number>;
    const p50Ms = Object.fromEntries(
      kinds.map((kind) => [
        kind,
        quantile(
          blocks[kind].map((b) => b.p50Ms),
          0.5,
        ),
      ]),
    ) as Record<Kind, number>;
    const idleRatio = quantile(idleRatios, 0.5);
    const cpuMicrosPerCall = Object.fromEntries(
      kinds.map((kind) => [kind, (cpu[kind] * 1000) / (blocks[kind].length * calls)]),
    ) as Record<Kind, number>;
    const cpuRatio = cpuMicrosPerCall.idle / cpuMicrosPerCall.disabled;
    return {
      rounds,
      perSecond,
      p50Ms,
      idleRatio,
      watchedRatio: quantile(pairRatios("watched"), 0.5),
      idleRatioSpread: [quantile(idleRatios, 0.25), quantile(idleRatios, 0.75)],
      cpuMicrosPerCall,
      ratios: [
        {
          what: "gateway CPU per call, console enabled and idle / disabled",
          measured: cpuRatio,
          target: "≤ 1.05",
          ok: cpuRatio <= 1.05,
        },
        {
          what: "calls/s, console enabled and idle / disabled",
          measured: idleRatio,
          target: "≥ 0.95",
          ok: idleRatio >= 0.95,
        },
      ],
    };
  } finally {
    await Promise.all([...on.clients, ...off.clients].map((c) => c.close()));
    await Promise.all([on.gateway.stop(), off.gateway.stop()]);
  }
}

export function printConsole(report: ConsoleReport): void {
  const row = (name: string, kind: Kind) =>
    console.log(
      `${name.padEnd(26)} ${report.perSecond[kind].toFixed(0).padStart(8)} calls/s   p50 ${report.p50Ms[kind].toFixed(3)} ms` +
        `   gateway CPU ${report.cpuMicrosPerCall[kind].toFixed(0)} µs/call`,
    );
  row("console disabled", "disabled");
  row("console enabled, idle", "idle");
  row("console enabled, watched", "watched");
  const [low, high] = report.idleRatioSpread;
  console.log(
    `idle / disabled ${report.idleRatio.toFixed(3)} (median of ${report.rounds} rounds; middle half ` +
      `${low.toFixed(3)}–${high.toFixed(3)}); watched / disabled ${report.watchedRatio.toFixed(3)}; ` +
      `CPU per call idle / disabled ${(report.cpuMicrosPerCall.idle / report.cpuMicrosPerCall.disabled).toFixed(3)}`,
  );
}

if (import.meta.url === `file://${process.argv[1]}`) {
  printConsole(await measureConsole());
}
