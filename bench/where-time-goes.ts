/**
 * Where the gateway's CPU goes per call: the gateway runs under `node --cpu-prof` while 8 clients call
 * `echo` on an SDK backend, and the samples taken while the load ran (start-up excluded) are summed by
 * what they are: our files, each package, Node's own modules, syscalls, GC. Prints µs of gateway CPU
 * per call for each, per scenario: the table in the README's performance section comes from here.
 *
 *   npm run build && npx tsx bench/where-time-goes.ts            # all scenarios
 *   BENCH_ONLY=HTTP BENCH_CALLS=20000 npx tsx bench/where-time-goes.ts
 *   BENCH_CLI=/tmp/before/dist/cli/main.js npx tsx bench/where-time-goes.ts   # another build
 *
 * Both the profile's timestamps and `process.hrtime` read the monotonic clock, which is how the load's
 * window is cut out of the profile.
 */
import { mkdtempSync, readdirSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { GATEWAY_ARGV, sdkBackendConfigs, startStdioGateway, untilServersListed } from "./lib/gateway.ts";
import { HttpModernRpc, HttpSessionRpc, type RpcClient, runLoad } from "./lib/load.ts";
import { startHttpGateway } from "./lib/process.ts";

const total = Number(process.env.BENCH_CALLS ?? 20_000);
const warmup = 1_000;
const CLIENTS = 8;
/** The CLI to profile: this build's unless BENCH_CLI names another's. */
const CLI_ARGV: readonly string[] = process.env.BENCH_CLI ? [process.env.BENCH_CLI] : GATEWAY_ARGV;

const { plain, chained } = sdkBackendConfigs();

interface CpuProfile {
  readonly nodes: readonly {
    readonly id: number;
    readonly callFrame: { readonly functionName: string; readonly url: string };
  }[];
  readonly startTime: number;
  readonly samples: readonly number[];
  readonly timeDeltas: readonly number[];
}

/** What a sampled frame is, for the table: our file, a package, a part of Node, or the engine. */
function categoryOf(functionName: string, url: string): string | undefined {
  if (functionName === "(idle)") return undefined;
  if (functionName === "(garbage collector)") return "V8: garbage collection";
  if (url === "") {
    if (/^write|^writev/.test(functionName)) return "syscalls: writes to sockets and pipes";
    if (functionName === "parse") return "JSON.parse";
    if (functionName === "stringify") return "JSON.stringify";
    return `V8/native: ${functionName}`;
  }
  const ours = /\/dist\/(.+)\.js$/.exec(url);
  if (ours && !url.includes("/node_modules/")) return `src/${ours[1]}.ts`;
  const pkg = /\/node_modules\/((?:@[^/]+\/)?[^/]+)\//.exec(url);
  if (pkg) return `package ${pkg[1]}`;
  if (url.startsWith("node:")) {
    const module = url.slice(5).replace(/^internal\//, "");
    if (/^(http|_http)/.test(module) || module.startsWith("http")) return "Node: http";
    if (/^(net|stream_base|streams|stream)/.test(module)) return "Node: net and streams";
    if (/abort_controller|event_target/.test(module)) return "Node: AbortController and EventTarget";
    if (/^(events|process\/task_queues|timers)/.test(module)) return "Node: events, ticks and timers";
    return `Node: ${module.split("/")[0]}`;
  }
  return "other";
}

/** µs of CPU per call by category, counting only samples taken between `from` and `to` (µs). */
function attribute(profile: CpuProfile, from: number, to: number, calls: number): Map<string, number> {
  const frames = new Map(profile.nodes.map((n) => [n.id, n.callFrame]));
  const totals = new Map<string, number>();
  let at = profile.startTime;
  for (let i = 0; i < profile.samples.length; i++) {
    const delta = profile.timeDeltas[i] ?? 0;
    at += delta;
    if (at < from || at > to) continue;
    const frame = frames.get(profile.samples[i] as number);
    const category = frame && categoryOf(frame.functionName, frame.url);
    if (category === undefined) continue;
    totals.set(category, (totals.get(category) ?? 0) + delta / calls);
  }
  return totals;
}

let unique = 0;
const echo = (client: RpcClient) =>
  client.request("tools/call", { name: "backend__echo", arguments: { message: `u${++unique}` } });

const nowUs = () => Number(process.hrtime.bigint() / 1000n);

interface Scenario {
  readonly name: string;
  /** Runs the load against a gateway started with `flags`; returns the window it ran in and its rate. */
  run(flags: readonly string[]): Promise<{ from: number; to: number; perSecond: number }>;
}

async function measured(clients: readonly RpcClient[]) {
  await runLoad(clients, echo, { total: warmup, warmup: 0 });
  const from = nowUs();
  const result = await runLoad(clients, echo, { total, warmup: 0 });
  return { from, to: nowUs(), perSecond: result.perSecond };
}

const stdio = (name: string, config: string): Scenario => ({
  name,
  async run(flags) {
    const gateway = await startStdioGateway(config, [...flags, ...CLI_ARGV]);
    try {
      return await measured(Array(CLIENTS).fill(gateway));
    } finally {
      await gateway.close();
    }
  },
});

const http = (
  name: string,
  client: (url: string) => RpcClient & { initialize?(): Promise<void> },
): Scenario => ({
  name,
  async run(flags) {
    const gateway = await startHttpGateway(plain, { nodeFlags: flags, cli: CLI_ARGV });
    const clients = Array.from({ length: CLIENTS }, () => client(gateway.url));
    try {
      await Promise.all(clients.map((c) => c.initialize?.()));
      await untilServersListed(clients[0] as RpcClient, plain);
      return await measured(clients);
    } finally {
      await Promise.all(clients.map((c) => c.close()));
      await gateway.stop();
    }
  },
});

const scenarios: Scenario[] = [
  stdio("stdio 2025, chain off", plain),
  stdio("stdio 2025, realistic chain", chained),
  http("HTTP 2025 session", (url) => new HttpSessionRpc(url)),
  http("HTTP 2026-07-28", (url) => new HttpModernRpc(url)),
];

/** The README's coarser view: our code by folder, the rest by what it is. */
function groupOf(category: string): string {
  const ours = /^src\/([^/]+)\//.exec(category);
  if (ours) return `ours: src/${ours[1]}/`;
  if (category.startsWith("src/")) return "ours: src/ (top level)";
  if (category.startsWith("syscalls")) return category;
  if (category === "V8: garbage collection") return category;
  if (category.startsWith("JSON.")) return "JSON.parse and JSON.stringify";
  if (category.startsWith("Node: ")) return "Node.js runtime (http, net, streams, events, AbortSignal)";
  if (category.startsWith("package @modelcontextprotocol/")) return "MCP SDK";
  if (category.startsWith("package ")) return "other packages (prom-client, zod, lru-cache, …)";
  return "V8, other (microtasks, program)";
}

const only = process.env.BENCH_ONLY;
const grouped = new Map<string, Map<string, number>>();
console.log(`gateway CPU per call, µs (${total} calls, ${CLIENTS} clients, echo on an SDK backend)\n`);
for (const scenario of scenarios.filter((s) => only === undefined || s.name.includes(only))) {
  const dir = mkdtempSync(join(tmpdir(), "switchboard-prof-"));
  const window = await scenario.run(["--cpu-prof", `--cpu-prof-dir=${dir}`]);
  // The profile is written as the gateway exits.
  const file = readdirSync(dir).find((f) => f.endsWith(".cpuprofile"));
  if (!file) throw new Error(`no profile written to ${dir}`);
  const profile = JSON.parse(readFileSync(join(dir, file), "utf8")) as CpuProfile;
  rmSync(dir, { recursive: true, force: true });
  const rows = [...attribute(profile, window.from, window.to, total)].sort((a, b) => b[1] - a[1]);
  const busy = rows.reduce((sum, [, us]) => sum + us, 0);
  console.log(
    `${scenario.name}: ${window.perSecond.toFixed(0)} calls/s, ${busy.toFixed(0)} µs of CPU per call`,
  );
  for (const [category, us] of rows.filter(([, us]) => us >= 1)) {
    console.log(
      `  ${us.toFixed(1).padStart(7)}  ${((us / busy) * 100).toFixed(0).padStart(3)}%  ${category}`,
    );
  }
  console.log();
  const groups = new Map<string, number>([["total", busy]]);
  for (const [category, us] of rows) groups.set(groupOf(category), (groups.get(groupOf(category)) ?? 0) + us);
  grouped.set(scenario.name, groups);
}

// One table for the README: a row per group, a column per scenario, µs per call.
const columns = [...grouped.keys()];
const first = grouped.get(columns[0] ?? "");
const rowsOf = [...new Set([...grouped.values()].flatMap((g) => [...g.keys()]))]
  .filter((name) => name !== "total")
  .sort((a, b) => (first?.get(b) ?? 0) - (first?.get(a) ?? 0));
console.log(`| µs of gateway CPU per call | ${columns.join(" | ")} |`);
console.log(`| --- | ${columns.map(() => "---:").join(" | ")} |`);
for (const name of [...rowsOf, "total"]) {
  const cells = columns.map((c) => (grouped.get(c)?.get(name) ?? 0).toFixed(0));
  console.log(`| ${name} | ${cells.join(" | ")} |`);
}
process.exit(0);
