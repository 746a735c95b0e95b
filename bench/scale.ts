/**
 * Many backends: 100 light stdio servers with 100 tools each (10 000 tools) behind one gateway, over
 * Streamable HTTP, against a gateway with one such server:
 *
 * - start-up, from spawn to the `listening` line (the gateway listens once every backend is up or the
 *   start-up timeout has passed, so this includes starting the 100 servers);
 * - `tools/list` of 10 000 tools: the median of repeated requests on one session, timed to the last
 *   byte of the body, which is also measured (the gateway does not paginate: one answer holds all);
 * - the latency of single calls spread over all 100 servers vs. the same tools on a one-server
 *   gateway: a call is a map lookup, so 10 000 tools should cost nothing per call;
 * - the gateway process's memory (not its backends'), after a full GC.
 *
 * The two gateways run side by side and calls alternate between them in short blocks, so that load
 * that comes and goes on a shared machine falls on both alike.
 */
import { LIGHT, writeBenchConfig } from "./lib/gateway.ts";
import { HttpSessionRpc, StdioRpc } from "./lib/load.ts";
import {
  type BenchRatio,
  jsonRpcOf,
  type ServedProcess,
  SessionPool,
  startHttpGateway,
} from "./lib/process.ts";

export interface ScaleOptions {
  /** Default 100. */
  readonly backends?: number;
  /** Tools per backend, `echo` included. Default 100. */
  readonly toolsPerBackend?: number;
  /** `tools/list` requests timed (after one untimed). Default 20. */
  readonly listRequests?: number;
  /** Calls timed on each gateway. Default 2 000. */
  readonly calls?: number;
  /** Untimed calls on each gateway first (at least `spread`). Default 200. */
  readonly warmup?: number;
  /** Distinct tools the timed calls cycle over on the big gateway. Default 1 000. */
  readonly spread?: number;
  /** First calls timed on tools not called before. Default 200. */
  readonly coldCalls?: number;
}

export interface ToolsListTiming {
  readonly tools: number;
  /** The body of one answer (SSE framing included), in bytes. */
  readonly bytes: number;
  /** Whether the answer had a `nextCursor`. */
  readonly paginated: boolean;
  /** The first request on a fresh session, untimed in the median. */
  readonly firstMs: number;
  readonly medianMs: number;
  readonly minMs: number;
  readonly maxMs: number;
}

export interface LatencyFigures {
  readonly p50Ms: number;
  readonly p90Ms: number;
  readonly p99Ms: number;
}

export interface ScaleSide {
  readonly backends: number;
  readonly tools: number;
  /** Spawn → `listening`. */
  readonly startupMs: number;
  /**
   * Servers up / configured when the gateway said it was ready, from its `gateway ready` line; they
   * include its built-in `switchboard` tools server.
   */
  readonly serversUp: number;
  readonly servers: number;
  readonly toolsList: ToolsListTiming;
  readonly calls: LatencyFigures;
  /** The gateway process alone, after a full GC, once start-up is done. */
  readonly rssAfterStartMB: number;
  /** The same after the tools/list requests and the calls. */
  readonly rssAfterLoadMB: number;
  readonly heapUsedAfterLoadMB: number;
  readonly heapTotalAfterLoadMB: number;
}

export interface ScaleReport {
  readonly many: ScaleSide;
  readonly one: ScaleSide;
  /** p50 latency of a call, many backends / one backend. */
  readonly callLatencyRatio: number;
  /** Calls through the big gateway to one of its backends only (b0's tools). */
  readonly oneBackendOfMany: LatencyFigures;
  /** The first call of each of `coldCalls` tools through the big gateway (not in the warm-up). */
  readonly firstCalls: LatencyFigures;
  /**
   * The same servers without a gateway: `spawnMs` is the floor under the big gateway's start-up (the
   * bench spawning as many servers at once and waiting for each to answer `initialize`);
   * `spreadP50Ms − oneP50Ms` is what spreading calls over the processes costs with no gateway at all.
   */
  readonly direct: DirectFloor;
  readonly seconds: number;
  readonly ratios: readonly BenchRatio[];
}

const MB = 2 ** 20;

function config(backends: number, toolsPerBackend: number): string {
  return writeBenchConfig(
    {
      mcpServers: Object.fromEntries(
        Array.from({ length: backends }, (_, b) => [
          `b${b}`,
          { command: process.execPath, args: [LIGHT], env: { TOOLS: String(toolsPerBackend - 1) } },
        ]),
      ),
      logging: { level: "warn" },
    },
    "scale",
  );
}

function percentile(sorted: readonly number[], p: number): number {
  return sorted[Math.min(sorted.length - 1, Math.floor(sorted.length * p))] ?? 0;
}

async function timeToolsList(url: string, requests: number): Promise<ToolsListTiming> {
  const pool = new SessionPool(url, 1);
  try {
    const session = await pool.open();
    const list = async (id: number) => {
      const t0 = performance.now();
      const { status, text } = await pool.post({ jsonrpc: "2.0", id, method: "tools/list" }, session);
      const ms = performance.now() - t0;
      if (status !== 200) throw new Error(`tools/list: HTTP ${status} ${text.slice(0, 200)}`);
      return { ms, text };
    };
    const first = await list(1);
    const answer = jsonRpcOf(first.text) as { result?: { tools?: unknown[]; nextCursor?: string } };
    const times: number[] = [];
    for (let i = 0; i < requests; i++) times.push((await list(2 + i)).ms);
    times.sort((a, b) => a - b);
    return {
      tools: answer.result?.tools?.length ?? 0,
      bytes: Buffer.byteLength(first.text),
      paginated: answer.result?.nextCursor !== undefined,
      firstMs: first.ms,
      medianMs: percentile(times, 0.5),
      minMs: times[0] ?? 0,
      maxMs: times[times.length - 1] ?? 0,
    };
  } finally {
    await pool.close();
  }
}

/** What a gateway's work is measured against: the same servers, driven by the bench directly. */
interface DirectFloor {
  readonly spawnMs: number;
  readonly oneP50Ms: number;
  readonly spreadP50Ms: number;
}

/**
 * Spawns `count` light servers at once and waits until each has answered `initialize` (what starting
 * that many processes costs here, before any gateway work); then times direct stdio calls to one of
 * them vs. to each in turn, in alternating blocks (what waking a different process per call costs).
 */
async function directFloor(count: number, toolsPerBackend: number, calls: number): Promise<DirectFloor> {
  const t0 = performance.now();
  const servers = Array.from(
    { length: count },
    () => new StdioRpc(process.execPath, [LIGHT], { TOOLS: String(toolsPerBackend - 1) }),
  );
  try {
    await Promise.all(servers.map((s) => s.initialize()));
    const spawnMs = performance.now() - t0;
    const one: number[] = [];
    const spread: number[] = [];
    const call = async (server: StdioRpc, i: number) => {
      const started = performance.now();
      await server.request("tools/call", {
        name: `tool_${(i * 7) % (toolsPerBackend - 1)}`,
        arguments: { message: `m${i}` },
      });
      return performance.now() - started;
    };
    for (let done = 0; done < calls; done += 50) {
      for (let i = done; i < Math.min(calls, done + 50); i++) one.push(await call(servers[0] as StdioRpc, i));
      for (let i = done; i < Math.min(calls, done + 50); i++) {
        spread.push(await call(servers[i % count] as StdioRpc, i));
      }
    }
    one.sort((x, y) => x - y);
    spread.sort((x, y) => x - y);
    return { spawnMs, oneP50Ms: percentile(one, 0.5), spreadP50Ms: percentile(spread, 0.5) };
  } finally {
    // close() ends stdin and SIGKILLs a server that has not left 5 s later.
    await Promise.allSettled(servers.map((s) => s.close()));
  }
}

export async function measureScale(opts: ScaleOptions = {}): Promise<ScaleReport> {
  const backends = opts.backends ?? 100;
  const toolsPerBackend = opts.toolsPerBackend ?? 100;
  const listRequests = opts.listRequests ?? 20;
  const calls = opts.calls ?? 2_000;
  const warmup = opts.warmup ?? 200;
  const spread = Math.min(opts.spread ?? 1_000, backends * (toolsPerBackend - 1));
  const coldCalls = Math.min(opts.coldCalls ?? 200, backends * (toolsPerBackend - 1) - spread);
  const began = performance.now();
  const direct = await directFloor(backends, toolsPerBackend, calls);

  const started: ServedProcess[] = [];
  const clients: HttpSessionRpc[] = [];
  try {
    // The small one first, so that its start-up does not compete with 100 servers starting.
    const one = await startHttpGateway(config(1, toolsPerBackend), { gcHook: true });
    started.push(one);
    const many = await startHttpGateway(config(backends, toolsPerBackend), {
      gcHook: true,
      timeoutMs: 120_000,
    });
    started.push(many);
    const sides = [
      { gateway: one, backends: 1 },
      { gateway: many, backends },
    ];
    const afterStart = [];
    for (const side of sides) afterStart.push(await side.gateway.collect());

    const lists = [];
    for (const side of sides) lists.push(await timeToolsList(side.gateway.url, listRequests));

    // The gateway builds a tool's policy chain, metrics series and argument validator on its first
    // call, so the steady state is measured on a working set of `spread` tools over all the backends
    // (the pair (i mod backends, 7i mod tools) repeats only after backends × (tools − 1) calls), each
    // called once in the warm-up; the one-backend side calls the same tool numbers on its server.
    // A third series calls only b0's tools through the big gateway: against the one-backend side it
    // isolates the size of the catalog from spreading calls over 100 backend processes.
    const toolNumber = (i: number) => (i * 7) % (toolsPerBackend - 1);
    const series = [
      { gateway: one, name: (i: number) => `b0__tool_${toolNumber(i)}` },
      { gateway: many, name: (i: number) => `b${i % backends}__tool_${toolNumber(i)}` },
      { gateway: many, name: (i: number) => `b0__tool_${toolNumber(i)}` },
    ];
    for (const s of series) {
      const client = new HttpSessionRpc(s.gateway.url);
      clients.push(client);
      await client.initialize();
    }
    const callOnce = async (s: number, i: number) => {
      const name = (series[s] as (typeof series)[number]).name(i);
      const client = clients[s] as HttpSessionRpc;
      const t0 = performance.now();
      await client.request("tools/call", { name, arguments: { message: `m${i}` } });
      return performance.now() - t0;
    };
    for (let i = 0; i < Math.max(warmup, spread); i++) {
      for (let s = 0; s < series.length; s++) await callOnce(s, i);
    }
    const latencies: number[][] = series.map(() => []);
    const block = 50;
    for (let done = 0; done < calls; done += block) {
      for (let s = 0; s < series.length; s++) {
        for (let i = done; i < Math.min(calls, done + block); i++) {
          latencies[s]?.push(await callOnce(s, i % spread));
        }
      }
    }
    // First calls: tools past the working set, never called before (b0's were, by the third series).
    const cold: number[] = [];
    for (let i = spread; cold.length < coldCalls && i < backends * (toolsPerBackend - 1); i++) {
      if (i % backends !== 0) cold.push(await callOnce(1, i));
    }
    const figuresOf = (l: number[]): LatencyFigures => {
      l.sort((x, y) => x - y);
      return { p50Ms: percentile(l, 0.5), p90Ms: percentile(l, 0.9), p99Ms: percentile(l, 0.99) };
    };
    const figures = latencies.map(figuresOf);
    const firstCalls = figuresOf(cold);

    const report: ScaleSide[] = [];
    for (const [s, side] of sides.entries()) {
      const after = await side.gateway.collect();
      report.push({
        backends: side.backends,
        tools: lists[s]?.tools ?? 0,
        startupMs: side.gateway.startupMs,
        serversUp: Number(side.gateway.ready?.up ?? Number.NaN),
        servers: Number(side.gateway.ready?.servers ?? Number.NaN),
        toolsList: lists[s] as ToolsListTiming,
        calls: figures[s] as LatencyFigures,
        rssAfterStartMB: (afterStart[s]?.rssBytes ?? 0) / MB,
        rssAfterLoadMB: after.rssBytes / MB,
        heapUsedAfterLoadMB: after.heapUsedBytes / MB,
        heapTotalAfterLoadMB: after.heapTotalBytes / MB,
      });
    }
    const [oneSide, manySide] = report as [ScaleSide, ScaleSide];
    const callLatencyRatio = manySide.calls.p50Ms / oneSide.calls.p50Ms;
    const oneBackendOfMany = figures[2] as LatencyFigures;
    const spreadNet = manySide.calls.p50Ms - (direct.spreadP50Ms - direct.oneP50Ms);
    const toolCount = backends * toolsPerBackend;
    return {
      many: manySide,
      one: oneSide,
      callLatencyRatio,
      oneBackendOfMany,
      firstCalls,
      direct,
      seconds: (performance.now() - began) / 1000,
      ratios: [
        {
          what: `tools/list of ${manySide.tools} tools, median (ms)`,
          measured: manySide.toolsList.medianMs,
          target: "< 100",
          ok: manySide.toolsList.medianMs < 100,
        },
        {
          what: `call p50, ${toolCount} tools / ${toolsPerBackend} tools`,
          measured: callLatencyRatio,
          target: "≤ 1.10",
          ok: callLatencyRatio <= 1.1,
        },
        {
          what: `call p50, ${toolCount} tools (one backend's) / ${toolsPerBackend} tools`,
          measured: oneBackendOfMany.p50Ms / oneSide.calls.p50Ms,
          target: "-",
          ok: true,
        },
        {
          // Waking a different backend process per call costs the same with no gateway in between
          // (direct.spreadP50Ms − direct.oneP50Ms); taken out, what is left is the gateway's own.
          what: `call p50, ${toolCount} tools / ${toolsPerBackend}, less the direct spreading cost`,
          measured: spreadNet / oneSide.calls.p50Ms,
          target: "≤ 1.10",
          ok: spreadNet / oneSide.calls.p50Ms <= 1.1,
        },
        {
          what: "first call of a tool, p50 (ms)",
          measured: firstCalls.p50Ms,
          target: "-",
          ok: true,
        },
        {
          what: `start-up with ${backends} stdio backends (ms)`,
          measured: manySide.startupMs,
          target: "-",
          ok: manySide.serversUp === manySide.servers,
        },
        {
          what: `gateway RSS with ${toolCount} tools (MB)`,
          measured: manySide.rssAfterLoadMB,
          target: "-",
          ok: true,
        },
      ],
    };
  } finally {
    await Promise.allSettled(clients.map((c) => c.close()));
    await Promise.allSettled(started.map((g) => g.stop()));
  }
}
