/**
 * A/B: this build of the gateway against another build (an earlier commit checked out and built in a
 * folder of its own), measured in one run, in alternating rounds, so that the machine's drift falls on
 * both sides alike. Prints each side's median calls/s and p50 per scenario and their ratio.
 *
 *   git worktree add /tmp/before <commit> && (cd /tmp/before && npm ci && npm run build)
 *   npm run build && npx tsx bench/compare.ts /tmp/before
 *   npx tsx bench/compare.ts /tmp/before /tmp/after     # two other builds: "after" is "this"
 *
 * BENCH_CALLS sets the calls per round (default 3 000), BENCH_ROUNDS the rounds per side (default 5),
 * BENCH_ONLY a word the names of the scenarios to run contain (e.g. "HTTP").
 */
import { existsSync } from "node:fs";
import { join, resolve } from "node:path";
import { ROOT, sdkBackendConfigs, startStdioGateway, untilServersListed } from "./lib/gateway.ts";
import { HttpModernRpc, HttpSessionRpc, type LoadResult, type RpcClient, runLoad } from "./lib/load.ts";
import { startHttpGateway } from "./lib/process.ts";

const other = process.argv[2];
if (!other) {
  console.error("usage: npx tsx bench/compare.ts <folder of another build> (see the comment at the top)");
  process.exit(2);
}
// A second folder stands for "this build", to compare two other builds (one change at a time).
const mine = process.argv[3];
const sides = [
  {
    name: mine ? `this (${mine})` : "this build",
    cli: join(mine ? resolve(mine) : ROOT, "dist/cli/main.js"),
  },
  { name: `other (${other})`, cli: join(resolve(other), "dist/cli/main.js") },
];
for (const side of sides) {
  if (!existsSync(side.cli)) {
    console.error(`no build at ${side.cli}: run npm run build there first`);
    process.exit(2);
  }
}
const total = Number(process.env.BENCH_CALLS ?? 3_000);
const rounds = Number(process.env.BENCH_ROUNDS ?? 5);
const warmup = Math.min(500, Math.ceil(total / 10));
const CLIENTS = 8;

const { plain, chained } = sdkBackendConfigs();

let unique = 0;
const echo = (client: RpcClient) =>
  client.request("tools/call", { name: "backend__echo", arguments: { message: `u${++unique}` } });

interface ScenarioRun {
  readonly name: string;
  run(cli: string): Promise<LoadResult>;
}

const scenarios: ScenarioRun[] = [
  {
    name: "stdio, chain off",
    async run(cli) {
      const gateway = await startStdioGateway(plain, [cli]);
      try {
        return await runLoad(Array(CLIENTS).fill(gateway), echo, { total, warmup });
      } finally {
        await gateway.close();
      }
    },
  },
  {
    name: "stdio, chain on",
    async run(cli) {
      const gateway = await startStdioGateway(chained, [cli]);
      try {
        return await runLoad(Array(CLIENTS).fill(gateway), echo, { total, warmup });
      } finally {
        await gateway.close();
      }
    },
  },
  {
    name: "HTTP 2025 sessions",
    async run(cli) {
      const gateway = await startHttpGateway(plain, { cli: [cli] });
      const clients = Array.from({ length: CLIENTS }, () => new HttpSessionRpc(gateway.url));
      try {
        await Promise.all(clients.map((c) => c.initialize()));
        return await runLoad(clients, echo, { total, warmup });
      } finally {
        await Promise.all(clients.map((c) => c.close()));
        await gateway.stop();
      }
    },
  },
  {
    name: "HTTP 2026-07-28",
    async run(cli) {
      const gateway = await startHttpGateway(plain, { cli: [cli] });
      const clients = Array.from({ length: CLIENTS }, () => new HttpModernRpc(gateway.url));
      try {
        await untilServersListed(clients[0] as RpcClient, plain);
        return await runLoad(clients, echo, { total, warmup });
      } finally {
        await Promise.all(clients.map((c) => c.close()));
        await gateway.stop();
      }
    },
  },
];

const median = (values: readonly number[]) =>
  [...values].sort((a, b) => a - b)[Math.floor(values.length / 2)] ?? 0;

console.log(`A/B, ${CLIENTS} clients, ${total} calls a round, ${rounds} rounds a side, alternating\n`);
console.log("scenario              this calls/s  other calls/s  ratio   this p50 ms  other p50 ms");
const only = process.env.BENCH_ONLY;
for (const scenario of scenarios.filter((s) => only === undefined || s.name.includes(only))) {
  const results: LoadResult[][] = sides.map(() => []);
  for (let round = 0; round < rounds; round++) {
    // Alternate which side goes first, so that neither always runs on a warmer machine.
    const order = round % 2 === 0 ? [0, 1] : [1, 0];
    for (const index of order)
      results[index]?.push(await scenario.run((sides[index] as { cli: string }).cli));
  }
  const [mine, theirs] = results.map((r) => ({
    perSecond: median(r.map((x) => x.perSecond)),
    p50: median(r.map((x) => x.p50Ms)),
  })) as [{ perSecond: number; p50: number }, { perSecond: number; p50: number }];
  console.log(
    `${scenario.name.padEnd(22)}${mine.perSecond.toFixed(0).padStart(12)}${theirs.perSecond.toFixed(0).padStart(15)}` +
      `${(mine.perSecond / theirs.perSecond).toFixed(2).padStart(7)}${mine.p50.toFixed(3).padStart(14)}${theirs.p50.toFixed(3).padStart(14)}`,
  );
}
process.exit(0);
