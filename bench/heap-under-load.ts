/**
 * What the gateway's heap holds at the peak of a load, for sizing: 16 Streamable HTTP clients call a
 * tool of an SDK server as fast as they can while the gateway's RSS is sampled; at the peak a heap
 * snapshot is taken (V8 collects before it writes one, so it shows what is live), and the live heap is
 * summed by constructor. The difference between the peak RSS and the live heap is what a full
 * collection would return: garbage, and heap the runtime keeps reserved.
 *
 *   npm run build && npx tsx bench/heap-under-load.ts
 *
 * BENCH_CALLS sets the calls (default 40 000), BENCH_CLIENTS the clients (default 16).
 */
import { mkdtempSync, readdirSync, readFileSync, rmSync, statSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { SDK_SERVER, writeBenchConfig } from "./lib/gateway.ts";
import { HttpSessionRpc, type RpcClient, runLoad } from "./lib/load.ts";
import { delay, MB, rssBytes, startHttpGateway } from "./lib/process.ts";

const calls = Number(process.env.BENCH_CALLS ?? 40_000);
const clientCount = Number(process.env.BENCH_CLIENTS ?? 16);
const dir = mkdtempSync(join(tmpdir(), "switchboard-heap-"));
const config = writeBenchConfig({
  mcpServers: {
    a: { command: process.execPath, args: [SDK_SERVER] },
    b: { command: process.execPath, args: [SDK_SERVER] },
    c: { command: process.execPath, args: [SDK_SERVER] },
  },
  logging: { level: "warn" },
});

interface Run {
  readonly idle: number;
  readonly peak: number;
  readonly perSecond: number;
  /** The RSS when the snapshot was asked for (0: none). */
  readonly snapshotAt: number;
}

/**
 * One load on a fresh gateway. With `snapshotAbove`, a heap snapshot is asked for the first time the
 * RSS passes it (writing one costs memory of its own, so the peak is measured in a run without one).
 */
async function run(snapshotAbove?: number): Promise<Run> {
  const gateway = await startHttpGateway(config, {
    nodeFlags: ["--heapsnapshot-signal=SIGUSR1", `--diagnostic-dir=${dir}`],
  });
  const idle = rssBytes(gateway.pid);
  const clients = Array.from({ length: clientCount }, () => new HttpSessionRpc(gateway.url));
  await Promise.all(clients.map((c) => c.initialize()));
  let peak = 0;
  let snapshotAt = 0;
  let done = false;
  const sampling = (async () => {
    while (!done) {
      const rss = rssBytes(gateway.pid);
      peak = Math.max(peak, rss);
      if (snapshotAbove !== undefined && snapshotAt === 0 && rss >= snapshotAbove) {
        snapshotAt = rss;
        gateway.child.kill("SIGUSR1");
      }
      await delay(20);
    }
  })();
  let unique = 0;
  const load = await runLoad(
    clients,
    (client: RpcClient) =>
      client.request("tools/call", {
        name: `${"abc"[unique % 3]}__echo`,
        arguments: { message: `m${++unique}` },
      }),
    { total: calls, warmup: 0 },
  );
  done = true;
  await sampling;
  if (snapshotAt > 0) await snapshotWritten();
  await Promise.all(clients.map((c) => c.close()));
  await gateway.stop();
  return { idle, peak, perSecond: load.perSecond, snapshotAt };
}

/** The snapshot's file, once the gateway has finished writing it (its size stops changing). */
async function snapshotWritten(): Promise<string> {
  for (let tries = 0; tries < 600; tries++) {
    const found = readdirSync(dir).find((f) => f.endsWith(".heapsnapshot"));
    if (found) {
      const size = () => statSync(join(dir, found)).size;
      const first = size();
      await delay(500);
      if (first > 0 && size() === first) return join(dir, found);
    } else await delay(200);
  }
  throw new Error("no heap snapshot was written");
}

const measured = await run();
const snapped = await run(measured.peak * 0.9);
if (snapped.snapshotAt === 0) throw new Error("the second run never reached 90% of the first run's peak");
const file = await snapshotWritten();

interface Snapshot {
  snapshot: { meta: { node_fields: string[]; node_types: [string[]] } };
  nodes: number[];
  strings: string[];
}
const snapshot = JSON.parse(readFileSync(file, "utf8")) as Snapshot;
rmSync(dir, { recursive: true, force: true });
const fields = snapshot.snapshot.meta.node_fields;
const width = fields.length;
const typeAt = fields.indexOf("type");
const nameAt = fields.indexOf("name");
const sizeAt = fields.indexOf("self_size");
const types = snapshot.snapshot.meta.node_types[0];
const byKind = new Map<string, { bytes: number; count: number }>();
let live = 0;
for (let i = 0; i < snapshot.nodes.length; i += width) {
  const type = types[snapshot.nodes[i + typeAt] as number] ?? "?";
  const name = snapshot.strings[snapshot.nodes[i + nameAt] as number] ?? "?";
  const bytes = snapshot.nodes[i + sizeAt] as number;
  live += bytes;
  // Constructors by name; strings, code and arrays by their type (their names are their contents).
  const key = type === "object" || type === "closure" ? `${type} ${name}` : type;
  const entry = byKind.get(key) ?? { bytes: 0, count: 0 };
  entry.bytes += bytes;
  entry.count += 1;
  byKind.set(key, entry);
}

console.log(
  `${clientCount} clients, ${calls} calls: ${measured.perSecond.toFixed(0)} calls/s; gateway RSS idle ` +
    `${(measured.idle / MB).toFixed(0)} MB, peak ${(measured.peak / MB).toFixed(0)} MB. In a second run, at RSS ` +
    `${(snapped.snapshotAt / MB).toFixed(0)} MB, the live heap was ${(live / MB).toFixed(1)} MB\n`,
);
console.log("live heap by kind (largest first)      MB   objects");
for (const [kind, { bytes, count }] of [...byKind].sort((a, b) => b[1].bytes - a[1].bytes).slice(0, 20)) {
  console.log(
    `${kind.slice(0, 36).padEnd(36)}${(bytes / MB).toFixed(2).padStart(8)}${String(count).padStart(10)}`,
  );
}
process.exit(0);
