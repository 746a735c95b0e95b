/**
 * `npm run bench`: every benchmark in one run, ratios printed next to their targets, results written
 * to bench/results/latest.json. Set BENCH_CALLS to change the number of measured calls per scenario.
 */
import { mkdirSync, writeFileSync } from "node:fs";
import { cpus, loadavg, totalmem } from "node:os";
import { join, resolve } from "node:path";
import { measureConsole, printConsole } from "./console.ts";
import type { BenchRatio } from "./lib/process.ts";
import { measureMemory, printMemory } from "./memory.ts";
import { type BackendKind, measureOverhead, overheadRatios, printOverhead } from "./overhead.ts";
import { measurePeers, printPeers } from "./peers.ts";
import { measurePipeline, type PipelineReport } from "./pipeline.ts";
import { measureRedis, type RedisReport } from "./redis.ts";
import { measureReload, printReload } from "./reload.ts";
import { measureScale } from "./scale.ts";
import { measureSdkPassthrough } from "./sdk-passthrough.ts";
import { measureStartup, printStartup } from "./startup.ts";
import { measureToolSearch, printToolSearch } from "./tool-search.ts";

const total = Number(process.env.BENCH_CALLS ?? 5_000);
const warmup = Math.min(500, Math.ceil(total / 10));

function row(cells: readonly string[], widths: readonly number[]): string {
  return cells.map((c, i) => c.padEnd(widths[i] ?? 0)).join("  ");
}

/** The 1-minute load average over the cores: absolute figures mean little when it is well above 1. */
const loadNow = () => `${loadavg()[0]?.toFixed(1)} on ${cpus().length} cores`;

const machine = `${cpus().length} × ${cpus()[0]?.model ?? "cpu"}, ${(totalmem() / 2 ** 30).toFixed(0)} GiB, Node ${process.version}`;
console.log(
  `Switchboard benchmarks — ${machine}; load average ${loadNow()}; ${total} calls per scenario after ${warmup} warm-up calls\n`,
);

const backendKind = (process.env.BENCH_BACKEND ?? "sdk") as BackendKind;
console.log(
  `passthrough backend: ${backendKind === "sdk" ? "an SDK v1 McpServer (typical server)" : "a hand-written server that costs ~nothing"}`,
);
const overhead = await measureOverhead(backendKind, { total, warmup });
const ratios = overheadRatios(overhead);
printOverhead(overhead, ratios);

function printPipeline(report: PipelineReport): void {
  const widths = [20, 8, 7, 10, 9, 9];
  console.log(row(["scenario", "backend", "clients", "calls/s", "p50 ms", "p99 ms"], widths));
  for (const r of report.rows) {
    console.log(
      row(
        [
          r.name,
          `${r.backendMs} ms`,
          String(r.concurrency),
          r.result.perSecond.toFixed(0),
          r.result.p50Ms.toFixed(3),
          r.result.p99Ms.toFixed(3),
        ],
        widths,
      ),
    );
  }
  console.log(`\n${"ratio (throughput)".padEnd(56)} measured  target`);
  for (const r of report.ratios) {
    const verdict = r.target === undefined ? "" : r.ratio >= r.target ? "  ok" : "  BELOW TARGET";
    console.log(
      `${r.what.padEnd(56)} ${r.ratio.toFixed(2).padStart(8)}  ${r.target === undefined ? "-" : `≥ ${r.target}`}${verdict}`,
    );
  }
}

console.log("\npolicy chain: full chain (every policy but invalidates) vs. off, and cache hits");
const pipeline = await measurePipeline({ total, warmup });
printPipeline(pipeline);

function printRedis(report: RedisReport | undefined): void {
  if (!report) {
    console.log("skipped: set REDIS_URL (e.g. redis://127.0.0.1:6379) to measure the Redis store");
    return;
  }
  const widths = [12, 7, 7, 10, 9, 9, 12, 12];
  console.log(
    row(["scenario", "store", "clients", "calls/s", "p50 ms", "p99 ms", "added p50", "added p99"], widths),
  );
  for (const r of report.rows) {
    for (const [store, result] of [
      ["memory", r.memory],
      ["redis", r.redis],
    ] as const) {
      const added = store === "redis" ? [r.addedP50Ms.toFixed(3), r.addedP99Ms.toFixed(3)] : ["", ""];
      console.log(
        row(
          [
            store === "memory" ? r.scenario : "",
            store,
            String(r.concurrency),
            result.perSecond.toFixed(0),
            result.p50Ms.toFixed(3),
            result.p99Ms.toFixed(3),
            ...added,
          ],
          widths,
        ),
      );
    }
  }
}

console.log("\nRedis store vs. memory store: rate limiting and caching, added latency per call");
const redis = await measureRedis({ total, warmup });
printRedis(redis);

console.log(
  "\nStreamable HTTP: Switchboard vs. an SDK-built passthrough (SDK v2 server forwarding to an SDK v2 client)",
);
const sdk = await measureSdkPassthrough({ total, warmup, concurrency: 8, backend: backendKind });
console.log(
  `switchboard ${sdk.switchboard.perSecond.toFixed(0)} calls/s (p50 ${sdk.switchboard.p50Ms.toFixed(3)} ms), ` +
    `SDK passthrough ${sdk.sdkPassthrough.perSecond.toFixed(0)} calls/s (p50 ${sdk.sdkPassthrough.p50Ms.toFixed(3)} ms)`,
);

console.log("\nscale: 100 backends × 100 tools vs. 1 backend");
const scale = await measureScale();
console.log(
  `start-up ${scale.many.startupMs.toFixed(0)} ms (1 backend: ${scale.one.startupMs.toFixed(0)} ms); ` +
    `tools/list of ${scale.many.tools} tools ${scale.many.toolsList.medianMs.toFixed(1)} ms, ` +
    `${(scale.many.toolsList.bytes / 1e6).toFixed(2)} MB; RSS ${scale.many.rssAfterLoadMB.toFixed(0)} MB`,
);

console.log("\ntool search: the catalog a client receives in full vs search mode, and search recall");
const toolSearch = await measureToolSearch();
printToolSearch(toolSearch);

console.log("\nmemory of the gateway process (after a full GC)");
const memory = await measureMemory();
printMemory(memory);

console.log(
  `\nstart-up: 10 stdio servers configured, spawn to the first tools/list answered (load average ${loadNow()})`,
);
const startup = await measureStartup();
printStartup(startup);

console.log("\nconfig reload: 20 servers, 8 clients calling meanwhile");
const reload = await measureReload();
printReload(reload);

console.log("\nweb console: calls/s with the console enabled and idle vs. disabled, alternating rounds");
const consoleCost = await measureConsole();
printConsole(consoleCost);

console.log("\npeers: each in front of server-everything, echo, 8 clients, alternating rounds");
const peers = await measurePeers();
printPeers(peers);

/** A "higher is better" ratio with a target, as a summary line; ratios shown for information are left out. */
function atLeast(r: { what: string; ratio: number; target?: number | undefined }): BenchRatio[] {
  return r.target === undefined
    ? []
    : [{ what: r.what, measured: r.ratio, target: `≥ ${r.target}`, ok: r.ratio >= r.target }];
}

const summary: BenchRatio[] = [
  ...ratios.flatMap(atLeast),
  ...pipeline.ratios.flatMap(atLeast),
  ...sdk.ratios,
  ...scale.ratios,
  ...toolSearch.ratios,
  ...memory.ratios,
  ...startup.ratios,
  ...reload.ratios,
  ...peers.ratios,
  ...consoleCost.ratios,
];
console.log(`\n${"summary".padEnd(64)} measured  target      (load average ${loadNow()})`);
for (const r of summary) {
  console.log(
    `${r.what.padEnd(64)} ${r.measured.toFixed(2).padStart(8)}  ${r.target.padEnd(10)} ${r.ok ? "ok" : "NOT MET"}`,
  );
}

const out = resolve(import.meta.dirname, "results");
mkdirSync(out, { recursive: true });
writeFileSync(
  join(out, "latest.json"),
  JSON.stringify(
    {
      machine,
      total,
      warmup,
      overhead,
      ratios,
      pipeline,
      redis,
      sdk,
      scale,
      toolSearch,
      memory,
      startup,
      reload,
      peers,
      console: consoleCost,
      summary,
    },
    null,
    2,
  ),
);
console.log(`\nresults written to ${join("bench", "results", "latest.json")}`);
