/**
 * The gateway's own memory (its process alone, not its backends), over Streamable HTTP:
 *
 * (a) idle with three light stdio backends: 2 s after start-up, and settled, once V8's idle-time memory
 *     reducer has given back what loading the code had the young generation grow to (it runs after some
 *     15–30 s without work; the wait ends 3 s after RSS has fallen by 10 MB, or after 60 s);
 * (b) after 100 000 calls vs. after a 10 000-call warm-up: growth here is a leak, not a cache warming.
 *     Both readings are settled as in (a): right after a load, RSS holds a young generation grown to
 *     its largest and swings by ±10 MB from one run to the next, which says nothing about leaks;
 * (c) with 1 000 open 2025-era sessions (each initialized and used for one call), and what a session
 *     costs; then again once the sessions are closed, which is a leak check of its own.
 *
 * Readings are taken after a full GC. Nothing outside a process can make it collect, so the gateway is
 * started with `--expose-gc` and a one-line `--import data:` hook that collects on SIGUSR2 and answers
 * with `process.memoryUsage()` on stderr: the gateway's code is untouched, and every reading is of what
 * is live, not of garbage that happened not to be collected yet. RSS is VmRSS from /proc/<pid>/status
 * read as the hook answers; the heap comes from the hook, and the gateway's own /metrics figures are recorded once as a cross-check.
 *
 */

import { LIGHT, writeBenchConfig } from "./lib/gateway.ts";
import { HttpSessionRpc, type LoadResult, type RpcClient, runLoad } from "./lib/load.ts";
import {
  type BenchRatio,
  delay,
  type GcReading,
  inParallel,
  MB,
  rssBytes,
  type ServedProcess,
  SessionPool,
  scrapeProcessMetrics,
  startHttpGateway,
} from "./lib/process.ts";
/* ------------------------------------------------------------------------------------------------ */
/* The benchmark                                                                                     */
/* ------------------------------------------------------------------------------------------------ */

export interface MemoryOptions {
  /** Longest wait for the settled idle reading of (a), in ms. Default 60 000. */
  readonly settleMs?: number;
  /** Calls after the warm-up in (b). Default 100 000. */
  readonly calls?: number;
  /** Warm-up calls in (b). Default 10 000. */
  readonly warmupCalls?: number;
  /** Sessions in flight (and sockets) in (b). Default 8. */
  readonly concurrency?: number;
  /** Sessions in (c). Default 1 000. */
  readonly sessions?: number;
  /** Sockets the sessions of (c) share. Default 64. */
  readonly sockets?: number;
}

export interface MemoryReading {
  readonly rssMB: number;
  readonly heapUsedMB: number;
  /** Committed heap, used or not (from the GC hook; absent from /metrics readings). */
  readonly heapTotalMB?: number;
  readonly externalMB?: number;
}

export interface MemoryReport {
  readonly backends: number;
  /** (a) 2 s after start-up, idle. */
  readonly idle: MemoryReading;
  /** (a) Idle and settled: after V8's memory reducer has run (or `settleMs`). */
  readonly settled: MemoryReading & { readonly afterMs: number };
  /** (a) The same moment as the gateway's /metrics reports it (no GC before the scrape). */
  readonly idleFromMetrics: MemoryReading;
  /** (b) */
  readonly calls: {
    /** Right after the load (1 s pause and a GC), for comparison with the settled readings. */
    readonly rightAfterCalls: MemoryReading;
    readonly warmupCalls: number;
    readonly calls: number;
    readonly concurrency: number;
    readonly afterWarmup: MemoryReading;
    readonly afterCalls: MemoryReading;
    readonly rssGrowthMB: number;
    readonly heapGrowthMB: number;
    readonly load: LoadResult;
  };
  /** (c) */
  readonly sessions: {
    readonly sessions: number;
    readonly sockets: number;
    readonly idle: MemoryReading;
    /** After the first tenth of the sessions: the baseline of the marginal cost, past first-use costs. */
    readonly afterTenth: MemoryReading;
    readonly afterAll: MemoryReading;
    readonly afterClosed: MemoryReading;
    /** (rss after all − rss idle) / sessions: the brief's definition. */
    readonly rssPerSessionKB: number;
    /** (rss after all − rss after a tenth) / (9/10 of the sessions). */
    readonly marginalRssPerSessionKB: number;
    readonly heapPerSessionKB: number;
    readonly openSeconds: number;
  };
  readonly seconds: number;
  readonly ratios: readonly BenchRatio[];
}

function threeBackendConfig(): string {
  return writeBenchConfig(
    {
      mcpServers: Object.fromEntries(
        ["a", "b", "c"].map((name) => [name, { command: process.execPath, args: [LIGHT] }]),
      ),
      logging: { level: "warn" },
    },
    "memory",
  );
}

const reading = (r: GcReading): MemoryReading => ({
  rssMB: r.rssBytes / MB,
  heapUsedMB: r.heapUsedBytes / MB,
  heapTotalMB: r.heapTotalBytes / MB,
  externalMB: r.externalBytes / MB,
});

/**
 * Waits, idle, until V8's memory reducer has run: RSS (read without collecting, which would reset
 * the reducer's view of an idle process) falls by 10 MB (what giving back a grown young generation
 * does; smaller drops are the allocator trimming), then 3 s more for the reducer's further rounds; or
 * until `maxMs` passes. Then a GC reading.
 */
async function settledIdleReading(
  gateway: ServedProcess,
  from: MemoryReading,
  maxMs: number,
): Promise<MemoryReading & { afterMs: number }> {
  const began = performance.now();
  while (performance.now() - began < maxMs) {
    await delay(1_000);
    if (rssBytes(gateway.pid) / MB < from.rssMB - 10) {
      await delay(3_000);
      break;
    }
  }
  const afterMs = performance.now() - began;
  return { ...(await settledReading(gateway, 500)), afterMs };
}

/** A pause first, so that start-up's and the last requests' leftovers (timers, sockets) have settled. */
async function settledReading(gateway: ServedProcess, pauseMs = 1_000): Promise<MemoryReading> {
  await delay(pauseMs);
  return reading(await gateway.collect());
}

const callEcho = (client: RpcClient, i: number) =>
  client.request("tools/call", { name: "a__echo", arguments: { message: `m${i}` } });

export async function measureMemory(opts: MemoryOptions = {}): Promise<MemoryReport> {
  const calls = opts.calls ?? 100_000;
  const warmupCalls = opts.warmupCalls ?? 10_000;
  const concurrency = opts.concurrency ?? 8;
  const sessionCount = opts.sessions ?? 1_000;
  const sockets = opts.sockets ?? 64;
  const settleMs = opts.settleMs ?? 60_000;
  const began = performance.now();
  const config = threeBackendConfig();

  // (a) and (c) on one gateway: (c)'s baseline is (a)'s idle process.
  const first = await startHttpGateway(config, { gcHook: true });
  let idle: MemoryReading;
  let settled: MemoryReport["settled"];
  let idleFromMetrics: MemoryReading;
  let sessions: MemoryReport["sessions"];
  try {
    idle = await settledReading(first, 2_000);
    const scraped = await scrapeProcessMetrics(first.url);
    idleFromMetrics = { rssMB: scraped.rssBytes / MB, heapUsedMB: scraped.heapUsedBytes / MB };
    settled = await settledIdleReading(first, idle, settleMs);

    const pool = new SessionPool(first.url, sockets);
    try {
      const ids: string[] = [];
      const openAndCall = async (i: number) => {
        const session = await pool.open();
        ids[i] = session;
        await pool.request(session, 1, "tools/call", { name: "a__echo", arguments: { message: `s${i}` } });
      };
      const tenth = Math.max(1, Math.floor(sessionCount / 10));
      const t0 = performance.now();
      await inParallel(tenth, sockets, openAndCall);
      const t1 = performance.now();
      const afterTenth = await settledReading(first);
      const t2 = performance.now();
      await inParallel(sessionCount - tenth, sockets, (i) => openAndCall(tenth + i));
      const openSeconds = (t1 - t0 + performance.now() - t2) / 1000;
      const afterAll = await settledReading(first);
      await inParallel(ids.length, sockets, (i) => pool.end(ids[i] as string));
      const afterClosed = await settledReading(first);
      sessions = {
        sessions: sessionCount,
        sockets,
        idle,
        afterTenth,
        afterAll,
        afterClosed,
        rssPerSessionKB: ((afterAll.rssMB - idle.rssMB) * 1024) / sessionCount,
        marginalRssPerSessionKB: ((afterAll.rssMB - afterTenth.rssMB) * 1024) / (sessionCount - tenth),
        heapPerSessionKB: ((afterAll.heapUsedMB - idle.heapUsedMB) * 1024) / sessionCount,
        openSeconds,
      };
    } finally {
      await pool.close();
    }
  } finally {
    await first.stop();
  }

  // (b) on a fresh gateway, so that (c)'s sessions are no part of it.
  const second = await startHttpGateway(config, { gcHook: true });
  let callsPart: MemoryReport["calls"];
  try {
    const clients = Array.from({ length: concurrency }, () => new HttpSessionRpc(second.url));
    try {
      await Promise.all(clients.map((c) => c.initialize()));
      await runLoad(clients, callEcho, { total: warmupCalls, warmup: 0 });
      const afterWarmup = await settledIdleReading(second, await settledReading(second), settleMs);
      const load = await runLoad(clients, callEcho, { total: calls, warmup: 0 });
      const rightAfterCalls = await settledReading(second);
      const afterCalls = await settledIdleReading(second, rightAfterCalls, settleMs);
      callsPart = {
        rightAfterCalls,
        warmupCalls,
        calls,
        concurrency,
        afterWarmup,
        afterCalls,
        rssGrowthMB: afterCalls.rssMB - afterWarmup.rssMB,
        heapGrowthMB: afterCalls.heapUsedMB - afterWarmup.heapUsedMB,
        load,
      };
    } finally {
      await Promise.all(clients.map((c) => c.close()));
    }
  } finally {
    await second.stop();
  }

  return {
    backends: 3,
    idle,
    settled,
    idleFromMetrics,
    calls: callsPart,
    sessions,
    seconds: (performance.now() - began) / 1000,
    ratios: [
      {
        what: "idle RSS, 3 stdio backends, settled (MB)",
        measured: settled.rssMB,
        target: "< 80",
        ok: settled.rssMB < 80,
      },
      {
        what: "idle RSS, 3 stdio backends, 2 s after start (MB)",
        measured: idle.rssMB,
        target: "-",
        ok: true,
      },
      {
        what: `RSS growth, ${calls} calls after ${warmupCalls} (MB)`,
        measured: callsPart.rssGrowthMB,
        target: "≤ 5",
        ok: callsPart.rssGrowthMB <= 5,
      },
      {
        // RSS moves by tens of MB with what the allocator keeps; the live heap is the leak signal.
        what: `heap growth, ${calls} calls after ${warmupCalls} (MB)`,
        measured: callsPart.heapGrowthMB,
        target: "-",
        ok: true,
      },
      {
        what: `RSS per 2025 session, ${sessionCount} open (KB)`,
        measured: sessions.rssPerSessionKB,
        target: "-",
        ok: true,
      },
      {
        what: `heap per 2025 session, ${sessionCount} open (KB)`,
        measured: sessions.heapPerSessionKB,
        target: "-",
        ok: true,
      },
      {
        what: `heap kept after closing ${sessionCount} sessions (MB)`,
        measured: sessions.afterClosed.heapUsedMB - sessions.afterTenth.heapUsedMB,
        target: "-",
        ok: true,
      },
    ],
  };
}

export function printMemory(memory: MemoryReport): void {
  const { idle, settled, calls, sessions } = memory;
  console.log(
    `idle with ${memory.backends} backends: ${idle.rssMB.toFixed(1)} MB RSS 2 s after start (heap ${idle.heapUsedMB.toFixed(1)} of ${idle.heapTotalMB?.toFixed(1)} MB), ` +
      `${settled.rssMB.toFixed(1)} MB settled after ${(settled.afterMs / 1000).toFixed(0)} s (heap ${settled.heapUsedMB.toFixed(1)} of ${settled.heapTotalMB?.toFixed(1)} MB)`,
  );
  console.log(
    `${calls.calls} calls after ${calls.warmupCalls}, settled readings (${calls.concurrency} sessions, ${calls.load.seconds.toFixed(0)} s, ` +
      `${calls.load.perSecond.toFixed(0)} calls/s): RSS ${calls.afterWarmup.rssMB.toFixed(1)} -> ${calls.afterCalls.rssMB.toFixed(1)} MB ` +
      `(${calls.rssGrowthMB >= 0 ? "+" : ""}${calls.rssGrowthMB.toFixed(1)}; ${calls.rightAfterCalls.rssMB.toFixed(1)} MB right after the calls), heap ${calls.afterWarmup.heapUsedMB.toFixed(1)} -> ${calls.afterCalls.heapUsedMB.toFixed(1)} MB`,
  );
  console.log(
    `${sessions.sessions} sessions: ${sessions.rssPerSessionKB.toFixed(1)} KB RSS each (marginal ${sessions.marginalRssPerSessionKB.toFixed(1)} KB); ` +
      `benchmark took ${memory.seconds.toFixed(0)} s`,
  );
  for (const r of memory.ratios) {
    console.log(
      `${r.what.padEnd(56)} ${r.measured.toFixed(1).padStart(8)}  ${r.target.padEnd(6)} ${r.ok ? "ok" : "NOT MET"}`,
    );
  }
}

if (import.meta.url === `file://${process.argv[1]}`) {
  printMemory(await measureMemory());
}
