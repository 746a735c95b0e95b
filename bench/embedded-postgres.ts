/**
 * `tsx bench/embedded-postgres.ts`: what one call to the embedded PostgreSQL backend (PGlite, in
 * its worker thread) costs, through the Backend interface in this process: p50 and p99 of `query`
 * with a one-row result and with a 1 000-row result. BENCH_CALLS sets the calls per scenario.
 *
 * Set BENCH_BASELINE to another checkout of this repository to measure its embedded backend in the
 * same run, in alternating blocks, so that load on a shared machine falls on both alike.
 */
import { join, resolve } from "node:path";
import { pathToFileURL } from "node:url";
import { postgresBackendSchema } from "../src/backends/postgres/config.ts";
import type { Backend, CallContext } from "../src/core/types.ts";
import { silentLogger } from "../src/observability/logger.ts";

interface Subject {
  readonly label: string;
  readonly backend: Backend;
}

const total = Number(process.env.BENCH_CALLS ?? 2_000);
const BLOCKS = 10;

const SCENARIOS = [
  { name: "one row", sql: "SELECT name, email FROM customers WHERE id = $1", params: [2] },
  { name: "1 000 rows", sql: "SELECT g, md5(g::text) FROM generate_series(1, 1000) g", params: [] },
] as const;

async function subject(label: string, root: string): Promise<Subject> {
  const module = pathToFileURL(join(root, "src/backends/postgres/backend.ts")).href;
  const { createPostgresBackend } = (await import(
    module
  )) as typeof import("../src/backends/postgres/backend.ts");
  const backend = createPostgresBackend(
    label,
    postgresBackendSchema.parse({ type: "postgres" }),
    silentLogger(),
  );
  const ignore = () => undefined;
  await backend.start({ state: ignore, listChanged: ignore, log: ignore, resourceUpdated: ignore });
  if (backend.state !== "up") throw new Error(`${label}: the embedded database did not start`);
  return { label, backend };
}

function percentile(sorted: readonly number[], p: number): number {
  return sorted[Math.min(sorted.length - 1, Math.floor(sorted.length * p))] ?? Number.NaN;
}

const context = { signal: new AbortController().signal } as CallContext;

async function block(s: Subject, scenario: (typeof SCENARIOS)[number], calls: number): Promise<number[]> {
  const times: number[] = [];
  for (let i = 0; i < calls; i++) {
    const started = performance.now();
    const result = await s.backend.callTool(
      { server: s.label, tool: "query", args: { sql: scenario.sql, params: scenario.params } },
      context,
    );
    times.push(performance.now() - started);
    if (result.isError) throw new Error(`${s.label}: ${JSON.stringify(result.content)}`);
  }
  return times;
}

const subjects = [await subject("this", resolve(import.meta.dirname, ".."))];
if (process.env.BENCH_BASELINE) subjects.push(await subject("baseline", resolve(process.env.BENCH_BASELINE)));

console.log(`embedded PostgreSQL: ${total} calls per scenario and backend, in ${BLOCKS} alternating blocks`);
console.log(["scenario".padEnd(12), "backend".padEnd(10), "p50 ms".padEnd(9), "p99 ms"].join("  "));
for (const scenario of SCENARIOS) {
  for (const s of subjects) await block(s, scenario, 50);
  const times = new Map(subjects.map((s) => [s.label, [] as number[]]));
  for (let b = 0; b < BLOCKS; b++) {
    for (const s of subjects)
      times.get(s.label)?.push(...(await block(s, scenario, Math.ceil(total / BLOCKS))));
  }
  for (const s of subjects) {
    const sorted = [...(times.get(s.label) ?? [])].sort((a, b) => a - b);
    console.log(
      [
        scenario.name.padEnd(12),
        s.label.padEnd(10),
        percentile(sorted, 0.5).toFixed(3).padEnd(9),
        percentile(sorted, 0.99).toFixed(3),
      ].join("  "),
    );
  }
}
await Promise.all(subjects.map((s) => s.backend.close()));
