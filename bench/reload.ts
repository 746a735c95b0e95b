/**
 * Config reload with 20 servers behind one gateway over Streamable HTTP, while 8 clients call tools:
 *
 * - reload time, from `POST /admin/reload` to its answer (the reload is applied then): a change of
 *   policies only (no server touched), one server added and one removed, and every one of the 20
 *   servers restarted (their environment changed: each new process comes up before the old drains);
 * - calls/s and errors in windows with a reload in them against windows without, alternating, so that
 *   load that comes and goes on a shared machine falls on both alike.
 *
 * Run alone with `npx tsx bench/reload.ts`; `npm run bench` runs it with the rest.
 */
import { writeFileSync } from "node:fs";
import { LIGHT, writeBenchConfig } from "./lib/gateway.ts";
import { HttpSessionRpc, type RpcClient } from "./lib/load.ts";
import { type BenchRatio, startHttpGateway } from "./lib/process.ts";

export interface ReloadOptions {
  /** Servers behind the gateway. Default 20. */
  readonly servers?: number;
  /** Concurrent clients. Default 8. */
  readonly clients?: number;
  /** Length of one measured window. Default 1 500 ms. */
  readonly windowMs?: number;
  /** Windows of each kind (with a reload, without) per kind of reload. Default 3. */
  readonly windows?: number;
}

export interface WindowFigures {
  readonly callsPerSecond: number;
  readonly errors: number;
  readonly calls: number;
}

export interface VariantFigures {
  readonly variant: Variant;
  /** Median time from `POST /admin/reload` to its answer: the file loaded, validated and applied. */
  readonly totalMs: number;
  /** Median time the gateway took to apply it (its report's durationMs). */
  readonly applyMs: number;
  /** Calls in windows without a reload, and in windows with one of this kind. */
  readonly steady: WindowFigures;
  readonly reloading: WindowFigures;
}

export interface ReloadReport {
  readonly servers: number;
  readonly rows: readonly VariantFigures[];
  readonly ratios: BenchRatio[];
}

export type Variant = "policies" | "add-remove" | "restart-all";

/** What the running config is: each variant of reload changes one of these and nothing else. */
interface ConfigState {
  /** Bumped to restart every server (a changed environment is a changed launch setting). */
  restarts: number;
  /** Flipped to remove the last server and add another, or back. */
  swapped: boolean;
  /** Bumped to change a policy only. */
  policies: number;
}

function configFor(servers: number, state: ConfigState): unknown {
  const mcpServers: Record<string, unknown> = {};
  const server = () => ({
    command: process.execPath,
    args: [LIGHT],
    env: { TOOLS: "5", GENERATION: String(state.restarts) },
  });
  for (let i = 0; i < servers - 1; i++) mcpServers[`s${i}`] = server();
  mcpServers[state.swapped ? "extra" : `s${servers - 1}`] = server();
  return {
    gateway: { reload: { watch: false } },
    observability: { metrics: { enabled: false } },
    policies: { timeout: 30_000 + state.policies },
    mcpServers,
  };
}

/** A reload's time as the caller sees it (load and validate the file, then apply it), and the applying alone. */
interface ReloadTiming {
  readonly totalMs: number;
  readonly applyMs: number;
}

async function postReload(adminUrl: string): Promise<ReloadTiming> {
  const started = performance.now();
  const response = await fetch(adminUrl, { method: "POST" });
  const body = (await response.json()) as { applied?: { durationMs: number }; error_description?: string };
  if (!response.ok || !body.applied) throw new Error(`reload failed: ${body.error_description}`);
  return { totalMs: performance.now() - started, applyMs: body.applied.durationMs };
}

export async function measureReload(options: ReloadOptions = {}): Promise<ReloadReport> {
  const servers = options.servers ?? 20;
  const clientCount = options.clients ?? 8;
  const windowMs = options.windowMs ?? 1_500;
  const windows = options.windows ?? 3;
  const state: ConfigState = { restarts: 0, swapped: false, policies: 0 };
  const file = writeBenchConfig(configFor(servers, state), "reload");
  const gateway = await startHttpGateway(file, { timeoutMs: 120_000 });
  const adminUrl = new URL("/admin/reload", gateway.url).href;
  const clients: HttpSessionRpc[] = [];
  try {
    for (let i = 0; i < clientCount; i++) {
      const client = new HttpSessionRpc(gateway.url);
      await client.initialize();
      clients.push(client);
    }
    const reload = async (variant: Variant) => {
      if (variant === "policies") state.policies++;
      else if (variant === "add-remove") state.swapped = !state.swapped;
      else state.restarts++;
      writeFileSync(file, JSON.stringify(configFor(servers, state)));
      return postReload(adminUrl);
    };
    // Warm up both the calls and the reload path.
    await runWindow(clients, servers, 500);
    await reload("policies");

    const variants: Variant[] = ["policies", "add-remove", "restart-all"];
    const rows: VariantFigures[] = [];
    for (const variant of variants) {
      const steady: WindowFigures[] = [];
      const reloading: WindowFigures[] = [];
      const timings: ReloadTiming[] = [];
      for (let w = 0; w < windows; w++) {
        steady.push(await runWindow(clients, servers, windowMs));
        reloading.push(
          await runWindow(clients, servers, windowMs, async () => {
            timings.push(await reload(variant));
          }),
        );
      }
      rows.push({
        variant,
        totalMs: median(timings.map((t) => t.totalMs)),
        applyMs: median(timings.map((t) => t.applyMs)),
        steady: sum(steady),
        reloading: sum(reloading),
      });
    }
    const errors = rows.reduce((n, r) => n + r.reloading.errors, 0);
    const policies = rows[0] as VariantFigures;
    const policyRatio = policies.reloading.callsPerSecond / policies.steady.callsPerSecond;
    return {
      servers,
      rows,
      ratios: [
        {
          what: `calls/s with a policy reload / without (${servers} servers)`,
          measured: policyRatio,
          target: "≥ 0.8",
          ok: policyRatio >= 0.8,
        },
        { what: "calls failed during reloads", measured: errors, target: "= 0", ok: errors === 0 },
      ],
    };
  } finally {
    await Promise.all(clients.map((c) => c.close()));
    await gateway.stop();
  }
}

/**
 * Every client calls `echo` of the servers in turn for `ms` (and, with `during`, until `during` is
 * done too: it starts after a tenth of the window).
 */
async function runWindow(
  clients: readonly RpcClient[],
  servers: number,
  ms: number,
  during?: () => Promise<void>,
): Promise<WindowFigures> {
  const started = performance.now();
  let duringDone = during === undefined;
  const side = during
    ? new Promise<void>((resolve, reject) => {
        setTimeout(() => {
          during()
            .then(() => {
              duringDone = true;
              resolve();
            })
            .catch(reject);
        }, ms / 10);
      })
    : Promise.resolve();
  let calls = 0;
  let errors = 0;
  let turn = 0;
  await Promise.all(
    clients.map(async (client) => {
      while (performance.now() - started < ms || !duringDone) {
        // s0 … s(n-2) stay in every variant of the config (the last one is removed by add-remove).
        const server = turn++ % (servers - 1);
        try {
          await client.request("tools/call", { name: `s${server}__echo`, arguments: { message: "m" } });
        } catch {
          errors++;
        }
        calls++;
      }
    }),
  );
  await side;
  const seconds = (performance.now() - started) / 1000;
  return { callsPerSecond: calls / seconds, errors, calls };
}

function sum(windows: readonly WindowFigures[]): WindowFigures {
  const calls = windows.reduce((n, w) => n + w.calls, 0);
  const seconds = windows.reduce((n, w) => n + w.calls / w.callsPerSecond, 0);
  return { calls, errors: windows.reduce((n, w) => n + w.errors, 0), callsPerSecond: calls / seconds };
}

function median(values: readonly number[]): number {
  const sorted = [...values].sort((a, b) => a - b);
  return sorted[Math.floor(sorted.length / 2)] ?? 0;
}

const LABELS: Record<Variant, string> = {
  policies: "a policy changed",
  "add-remove": "1 server added, 1 removed",
  "restart-all": "every server restarted",
};

export function printReload(report: ReloadReport): void {
  const widths = [28, 10, 10, 16, 16, 8];
  const row = (cells: readonly string[]) => cells.map((c, i) => c.padEnd(widths[i] ?? 0)).join("  ");
  console.log(row(["reload", "total ms", "apply ms", "calls/s without", "calls/s during", "errors"]));
  for (const r of report.rows) {
    console.log(
      row([
        LABELS[r.variant],
        r.totalMs.toFixed(0),
        r.applyMs.toFixed(0),
        r.steady.callsPerSecond.toFixed(0),
        r.reloading.callsPerSecond.toFixed(0),
        `${r.reloading.errors}/${r.reloading.calls}`,
      ]),
    );
  }
}

if (import.meta.url === `file://${process.argv[1]}`) {
  printReload(await measureReload());
}
