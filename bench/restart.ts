/**
 * A restart under load: a stdio backend (the SDK v1 echo server) is killed with SIGKILL while clients
 * keep calling it through the gateway, with the default circuit breaker and retry policies. Prints
 * calls/s and errors (by code) before the kill and in the 10 s after it, second by second, how long
 * until the first success after the kill, and how many calls an open circuit refused.
 *
 *   npm run build && npx tsx bench/restart.ts                 this build
 *   npx tsx bench/restart.ts <folder of another build>        that build too, for before and after
 *
 * (An earlier commit as a build of its own: `git archive <commit> | tar -x -C /tmp/before`, link
 * node_modules into it, and `npx tsc -p tsconfig.build.json` there.)
 *
 * BENCH_CLIENTS sets the clients (2025-era HTTP sessions, one call in flight each; default 8),
 * BENCH_AFTER_S the seconds measured after the kill (default 10).
 */
import { readFileSync } from "node:fs";
import { join, resolve } from "node:path";
import { ROOT, SDK_SERVER, writeBenchConfig } from "./lib/gateway.ts";
import { HttpSessionRpc } from "./lib/load.ts";
import { delay, descendants, startHttpGateway } from "./lib/process.ts";

const CLIENTS = Number(process.env.BENCH_CLIENTS ?? 8);
const AFTER_S = Number(process.env.BENCH_AFTER_S ?? 10);
const WARMUP_MS = 3_000;
const BEFORE_MS = 5_000;

const config = writeBenchConfig(
  {
    mcpServers: { backend: { command: process.execPath, args: [SDK_SERVER] } },
    logging: { level: "warn" },
    // The defaults: a breaker that opens after 5 failures in a row for 30 s, 3 attempts per call.
    policies: { circuitBreaker: {}, retry: {} },
  },
  "restart",
);

interface Outcome {
  /** When the call ended (performance.now()). */
  readonly at: number;
  /** "ok", or the error code. */
  readonly code: string;
}

interface Run {
  /** The calls that ended in the BEFORE_MS before the kill. */
  readonly before: readonly Outcome[];
  /** Those that ended in the AFTER_S seconds after it, `at` in ms since the kill. */
  readonly after: readonly Outcome[];
}

async function measure(cli: string): Promise<Run> {
  const gateway = await startHttpGateway(config, { cli: [cli] });
  const clients = Array.from({ length: CLIENTS }, () => new HttpSessionRpc(gateway.url));
  try {
    await Promise.all(clients.map((c) => c.initialize()));
    let stop = false;
    const outcomes: Outcome[] = [];
    let n = 0;
    const loops = clients.map(async (client) => {
      while (!stop) {
        const code = await client
          .request("tools/call", { name: "backend__echo", arguments: { message: `m${++n}` } })
          .then(
            (result) => {
              const r = result as { isError?: boolean; _meta?: Record<string, { code?: string }> };
              return r.isError ? (r._meta?.["switchboard/error"]?.code ?? "isError") : "ok";
            },
            () => "jsonrpc_error",
          );
        outcomes.push({ at: performance.now(), code });
      }
    });
    await delay(WARMUP_MS + BEFORE_MS);
    const backend = backendPid(gateway.pid);
    const killedAt = performance.now();
    process.kill(backend, "SIGKILL");
    await delay(AFTER_S * 1_000);
    stop = true;
    await Promise.all(loops);
    return {
      before: outcomes.filter((o) => o.at < killedAt && o.at >= killedAt - BEFORE_MS),
      after: outcomes
        .filter((o) => o.at >= killedAt && o.at < killedAt + AFTER_S * 1_000)
        .map((o) => ({ ...o, at: o.at - killedAt })),
    };
  } finally {
    await Promise.all(clients.map((c) => c.close()));
    await gateway.stop();
  }
}

/** The backend process under the gateway: the one running the SDK server. */
function backendPid(gatewayPid: number): number {
  const pid = descendants(gatewayPid).find((p) => {
    try {
      return readFileSync(`/proc/${p}/cmdline`, "utf8").includes("sdk-server.mjs");
    } catch {
      return false;
    }
  });
  if (pid === undefined) throw new Error("no backend process found under the gateway");
  return pid;
}

function report(name: string, run: Run): void {
  const perSecondBefore = run.before.length / (BEFORE_MS / 1_000);
  const errorsBefore = run.before.filter((o) => o.code !== "ok").length;
  const ok = run.after.filter((o) => o.code === "ok");
  const errors = new Map<string, number>();
  for (const o of run.after) if (o.code !== "ok") errors.set(o.code, (errors.get(o.code) ?? 0) + 1);
  const firstOk = ok.length > 0 ? Math.min(...ok.map((o) => o.at)) : undefined;
  console.log(`\n${name}`);
  console.log(`  before the kill: ${perSecondBefore.toFixed(0)} calls/s, ${errorsBefore} errors`);
  console.log(
    `  ${AFTER_S} s after:      ${(ok.length / AFTER_S).toFixed(0)} successful calls/s, ${run.after.length - ok.length} errors` +
      (errors.size > 0 ? ` (${[...errors].map(([code, count]) => `${code} ${count}`).join(", ")})` : ""),
  );
  console.log(
    `  first success after the kill: ${firstOk === undefined ? "none" : `${Math.round(firstOk)} ms`}`,
  );
  const seconds = Array.from({ length: AFTER_S }, (_, s) => {
    const inSecond = run.after.filter((o) => o.at >= s * 1_000 && o.at < (s + 1) * 1_000);
    const good = inSecond.filter((o) => o.code === "ok").length;
    return `${good}/${inSecond.length - good}`;
  });
  console.log(`  per second (ok/errors): ${seconds.join("  ")}`);
}

const sides = [{ name: "this build", cli: join(ROOT, "dist/cli/main.js") }];
const other = process.argv[2];
if (other) sides.push({ name: `other (${other})`, cli: join(resolve(other), "dist/cli/main.js") });
console.log(`SIGKILL of a stdio backend under load: ${CLIENTS} clients, default breaker and retry`);
for (const side of sides) report(side.name, await measure(side.cli));
process.exit(0);
