/**
 * Soak: the gateway under mixed traffic for a long time while faults are injected, watching that it
 * keeps serving, that no call hangs, and that its memory stays flat. Not part of `npm test`.
 *
 *   npx tsx bench/soak.ts                  15 minutes
 *   SOAK_MINUTES=1 npx tsx bench/soak.ts   one minute
 *
 * Environment (all optional):
 *   SOAK_MINUTES         run time, default 15
 *   SOAK_CLIENTS         concurrent clients (2025-era HTTP sessions), default 8
 *   SOAK_RATE            calls per second across all clients, default 300 (0: as fast as it goes)
 *   SOAK_FAULT_SECONDS   seconds between faults, default 5
 *   SOAK_REPORT_SECONDS  seconds between reports, default 30
 *   SOAK_RSS_GROWTH_MB   allowed RSS growth from the first report after warm-up to the end, default 64
 *   SOAK_USE_BUILD=1     run dist/ (after `npm run build`) instead of the sources through tsx
 *   REDIS_URL            use Redis as the store, through a loopback proxy that faults cut
 *
 * The gateway serves Streamable HTTP in front of four backends: two light servers (one of them with a
 * rate limit and a cache on its tools), and the test fixture server, whose tools are slow, fail, and
 * crash the process. Faults, in turn: SIGKILL a backend process, make a tool hang (a call far longer
 * than the server's timeout), crash a backend from inside (fx__crash), and, with REDIS_URL, cut Redis
 * for a few seconds.
 *
 * Every report prints calls by outcome, errors by cause, p50/p99 latency, and the gateway's RSS (from
 * /proc/<pid>/status). The run fails (exit 1) if a call hangs, the gateway dies or does not exit 0 on
 * SIGTERM, calls still fail once the faults stop, processes are left behind, or RSS grew beyond the
 * bound.
 */
import { type ChildProcess, spawn } from "node:child_process";
import { randomUUID } from "node:crypto";
import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { createInterface } from "node:readline";
import { Redis } from "ioredis";
import { Pool } from "undici";
import { CLI, LIGHT, ROOT } from "./lib/gateway.ts";
import { alive, descendants, jsonRpcOf, MB, rssBytes } from "./lib/process.ts";
import { TcpProxy } from "./lib/tcp-proxy.ts";

// ─── settings ─────────────────────────────────────────────────────────────────────────────────

const num = (name: string, fallback: number) => {
  const value = process.env[name];
  return value === undefined || value === "" ? fallback : Number(value);
};
const MINUTES = num("SOAK_MINUTES", 15);
const CLIENTS = num("SOAK_CLIENTS", 8);
const RATE = num("SOAK_RATE", 300);
const FAULT_EVERY_MS = num("SOAK_FAULT_SECONDS", 5) * 1000;
const REPORT_EVERY_MS = num("SOAK_REPORT_SECONDS", 30) * 1000;
const RSS_GROWTH_MB = num("SOAK_RSS_GROWTH_MB", 64);
const REDIS_URL = process.env.REDIS_URL || undefined;
const FIXTURE = join(ROOT, "test/fixtures/fixture-server.ts");
const BUILT_CLI = join(ROOT, "dist/cli/main.js");
/** A call with no answer after this long has hung: far above every timeout the gateway has. */
const HANG_MS = 30_000;
/** The fixture's timeout: a "hung" tool is cut by the gateway after this long. */
const FX_TIMEOUT_MS = 2_000;
/** The calm end of the run, without faults, in which every call must succeed again. */
const SETTLE_MS = 5_000;
const RECOVERY_MS = 15_000;
const RSS_SAMPLE_MS = 2_000;

for (const [name, value] of Object.entries({ MINUTES, CLIENTS, RATE, FAULT_EVERY_MS, REPORT_EVERY_MS })) {
  if (!Number.isFinite(value) || value < 0 || (name !== "RATE" && value === 0)) {
    console.error(`soak: ${name} must be a positive number, got ${value}`);
    process.exit(2);
  }
}

// ─── a deterministic mix ──────────────────────────────────────────────────────────────────────

/** mulberry32: the same traffic every run, so two runs are comparable. */
function prng(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

interface Request {
  readonly kind: string;
  readonly method: string;
  readonly params?: unknown;
}

/** One request of the mix: cached reads, plain calls, rate-limited calls, lists, failing and slow tools. */
function nextRequest(random: () => number): Request {
  const r = random();
  const call = (kind: string, name: string, args: Record<string, unknown>) => ({
    kind,
    method: "tools/call",
    params: { name, arguments: args },
  });
  if (r < 0.35) return call("cached", "la__echo", { message: `key-${Math.floor(random() * 50)}` });
  if (r < 0.5) return call("plain", `lb__tool_${Math.floor(random() * 5)}`, { message: "hi" });
  if (r < 0.65) return call("limited", "la__tool_0", { message: "limited" });
  if (r < 0.75) return { kind: "list", method: "tools/list" };
  if (r < 0.87) return call("fixture", "fx__echo", { message: `fx-${Math.floor(random() * 1000)}` });
  if (r < 0.95) return call("slow", "fx__slow", { ms: 20 + Math.floor(random() * 200) });
  return call("failing", "fx__fail", { reason: "the soak asked for it" });
}

// ─── outcomes ─────────────────────────────────────────────────────────────────────────────────

/**
 * Outcomes: ok, cache_hit, rate_limited, tool_error (the tool said isError, as fx__fail does), error
 * (the gateway answered isError with a code: a timeout, a backend down…), rejected (a JSON-RPC error),
 * transport (no HTTP answer), hung.
 */
type Outcome =
  | "ok"
  | "cache_hit"
  | "rate_limited"
  | "tool_error"
  | "error"
  | "rejected"
  | "transport"
  | "hung";
const OUTCOMES: readonly Outcome[] = [
  "ok",
  "cache_hit",
  "rate_limited",
  "tool_error",
  "error",
  "rejected",
  "transport",
  "hung",
];

class Tally {
  readonly outcomes = new Map<Outcome, number>();
  readonly causes = new Map<string, number>();
  latencies: number[] = [];
  calls = 0;

  add(outcome: Outcome, cause: string | undefined, ms: number): void {
    this.calls++;
    this.outcomes.set(outcome, (this.outcomes.get(outcome) ?? 0) + 1);
    if (cause !== undefined) this.causes.set(cause, (this.causes.get(cause) ?? 0) + 1);
    this.latencies.push(ms);
  }

  merge(other: Tally): void {
    this.calls += other.calls;
    for (const [k, v] of other.outcomes) this.outcomes.set(k, (this.outcomes.get(k) ?? 0) + v);
    for (const [k, v] of other.causes) this.causes.set(k, (this.causes.get(k) ?? 0) + v);
    // Kept as a sorted sample past 200 000 values: enough for p99, bounded for a long run.
    this.latencies = this.latencies.concat(other.latencies);
    if (this.latencies.length > 200_000) {
      this.latencies.sort((a, b) => a - b);
      this.latencies = this.latencies.filter((_, i) => i % 2 === 0);
    }
  }

  percentile(p: number): number {
    if (this.latencies.length === 0) return 0;
    const sorted = [...this.latencies].sort((a, b) => a - b);
    return sorted[Math.min(sorted.length - 1, Math.floor(sorted.length * p))] ?? 0;
  }

  failures(): number {
    let n = 0;
    for (const outcome of ["error", "rejected", "transport", "hung"] as const)
      n += this.outcomes.get(outcome) ?? 0;
    return n;
  }
}

// ─── an HTTP session client with a hang bound ─────────────────────────────────────────────────

class SessionClient {
  readonly #pool: Pool;
  readonly #path: string;
  #session: string | undefined;
  #id = 1;

  constructor(url: string) {
    const parsed = new URL(url);
    this.#pool = new Pool(parsed.origin, { connections: 1, pipelining: 1 });
    this.#path = parsed.pathname;
  }

  async open(): Promise<void> {
    const opened = await this.#post({
      jsonrpc: "2.0",
      id: 0,
      method: "initialize",
      params: {
        protocolVersion: "2025-06-18",
        capabilities: {},
        clientInfo: { name: "switchboard-soak", version: "1" },
      },
    });
    if (opened.status !== 200 || opened.session === undefined) {
      throw new Error(`initialize failed: HTTP ${opened.status} ${opened.text.slice(0, 200)}`);
    }
    this.#session = opened.session;
    await this.#post({ jsonrpc: "2.0", method: "notifications/initialized" });
  }

  /** One request, classified. A session the gateway forgot (it never should) is opened again. */
  async request(request: Request): Promise<{ outcome: Outcome; cause?: string }> {
    let reply: Awaited<ReturnType<SessionClient["post"]>>;
    try {
      reply = await this.post(request);
    } catch (error) {
      const name = (error as Error).name;
      if (name === "TimeoutError" || name === "AbortError") {
        const tool = (request.params as { name?: string } | undefined)?.name ?? request.method;
        return { outcome: "hung", cause: `no answer from ${tool}` };
      }
      return {
        outcome: "transport",
        cause: (error as NodeJS.ErrnoException).code ?? (error as Error).message,
      };
    }
    if (reply.status === 404) {
      await this.open();
      return { outcome: "rejected", cause: "session lost" };
    }
    if (reply.status >= 400) return { outcome: "rejected", cause: `HTTP ${reply.status}` };
    let message: {
      result?: { isError?: boolean; _meta?: Record<string, unknown> };
      error?: { code: number; message: string };
    };
    try {
      message = jsonRpcOf(reply.text) as typeof message;
    } catch {
      return { outcome: "transport", cause: "unparseable answer" };
    }
    if (message.error) {
      // Names in quotes vary per call; what is left says what went wrong.
      const what = message.error.message.replace(/"[^"]*"/g, "…").slice(0, 70);
      return { outcome: "rejected", cause: `jsonrpc ${message.error.code} ${what}` };
    }
    const result = message.result;
    const error = result?._meta?.["switchboard/error"] as { code?: string } | undefined;
    if (result?.isError) {
      if (error?.code === "rate_limited") return { outcome: "rate_limited" };
      if (error?.code === undefined || error.code === "tool_error") return { outcome: "tool_error" };
      return { outcome: "error", cause: error.code };
    }
    if (result?._meta?.["switchboard/source"] === "cache") return { outcome: "cache_hit" };
    return { outcome: "ok" };
  }

  post(request: Request) {
    return this.#post({ jsonrpc: "2.0", id: this.#id++, method: request.method, params: request.params });
  }

  async #post(body: unknown): Promise<{ status: number; text: string; session: string | undefined }> {
    const headers: Record<string, string> = {
      "content-type": "application/json",
      accept: "application/json, text/event-stream",
    };
    if (this.#session !== undefined) {
      headers["mcp-session-id"] = this.#session;
      headers["mcp-protocol-version"] = "2025-06-18";
    }
    const response = await this.#pool.request({
      method: "POST",
      path: this.#path,
      headers,
      body: JSON.stringify(body),
      signal: AbortSignal.timeout(HANG_MS),
    });
    const text = await response.body.text();
    const session = response.headers["mcp-session-id"];
    return { status: response.statusCode, text, session: typeof session === "string" ? session : undefined };
  }

  close(): Promise<void> {
    return this.#pool.close();
  }
}

// ─── the gateway ──────────────────────────────────────────────────────────────────────────────

interface Gateway {
  readonly child: ChildProcess;
  readonly pid: number;
  readonly url: string;
  readonly logCounts: Map<string, number>;
  readonly exited: Promise<{ code: number | null; signal: NodeJS.Signals | null }>;
}

const LEVELS: Record<string, number> = { trace: 10, debug: 20, info: 30, warn: 40, error: 50, fatal: 60 };

/**
 * Log lines worth counting: warnings and errors, and backend restarts, by message. A message's
 * details after its first ":" (addresses, times) are left out, so that alike lines count together.
 */
function countLog(counts: Map<string, number>, line: string): void {
  let entry: { level?: number | string; msg?: string };
  try {
    entry = JSON.parse(line) as typeof entry;
  } catch {
    return;
  }
  const level = typeof entry.level === "string" ? (LEVELS[entry.level] ?? 0) : (entry.level ?? 0);
  if (level < 40 && entry.msg !== "restarting server") return;
  const label = level >= 50 ? "error" : level >= 40 ? "warn" : "info";
  const key = `${label}: ${String(entry.msg).split(":")[0]}`;
  counts.set(key, (counts.get(key) ?? 0) + 1);
}

async function startGateway(configPath: string): Promise<Gateway> {
  const argv =
    process.env.SOAK_USE_BUILD === "1" && existsSync(BUILT_CLI) ? [BUILT_CLI] : ["--import", "tsx", CLI];
  const child = spawn(
    process.execPath,
    [...argv, "serve", "--config", configPath, "--http", "127.0.0.1:0", "--log-level", "info"],
    { cwd: ROOT, stdio: ["ignore", "ignore", "pipe"] },
  );
  const logCounts = new Map<string, number>();
  const exited = new Promise<{ code: number | null; signal: NodeJS.Signals | null }>((resolve) =>
    child.once("exit", (code, signal) => resolve({ code, signal })),
  );
  const url = await new Promise<string>((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error("the gateway did not listen within 60 s")), 60_000);
    createInterface({ input: child.stderr as NodeJS.ReadableStream }).on("line", (line) => {
      countLog(logCounts, line);
      if (!line.includes('"listening"')) return;
      try {
        const entry = JSON.parse(line) as { msg?: string; url?: string };
        if (entry.msg === "listening" && entry.url) {
          clearTimeout(timer);
          resolve(entry.url);
        }
      } catch {
        // not a log line
      }
    });
    void exited.then(({ code }) => {
      clearTimeout(timer);
      reject(new Error(`the gateway exited (${code}) before listening`));
    });
  });
  return { child, pid: child.pid as number, url, logCounts, exited };
}

function commandLine(pid: number): string {
  try {
    return readFileSync(`/proc/${pid}/cmdline`, "utf8").replaceAll("\0", " ");
  } catch {
    return "";
  }
}

// ─── reporting ────────────────────────────────────────────────────────────────────────────────

const mb = (bytes: number) => `${(bytes / MB).toFixed(1)} MB`;
const clock = (ms: number) => {
  const s = Math.round(ms / 1000);
  return `${String(Math.floor(s / 60)).padStart(2, "0")}:${String(s % 60).padStart(2, "0")}`;
};
const sorted = (map: Map<string, number>) =>
  [...map.entries()]
    .sort((a, b) => b[1] - a[1])
    .map(([k, v]) => `${k} ${v}`)
    .join(", ") || "none";

function outcomeLine(tally: Tally): string {
  return OUTCOMES.filter((o) => (tally.outcomes.get(o) ?? 0) > 0)
    .map((o) => `${o} ${tally.outcomes.get(o)}`)
    .join(", ");
}

// ─── the run ──────────────────────────────────────────────────────────────────────────────────

async function main(): Promise<number> {
  const dir = mkdtempSync(join(tmpdir(), "switchboard-soak-"));
  const prefix = `switchboard-soak:${randomUUID()}:`;
  const proxy = REDIS_URL ? await TcpProxy.start(REDIS_URL) : undefined;
  const storeUrl = REDIS_URL ? proxy?.urlFor(REDIS_URL) : undefined;
  const configPath = join(dir, "soak.json");
  writeFileSync(
    configPath,
    JSON.stringify({
      mcpServers: {
        la: { command: process.execPath, args: [LIGHT], env: { TOOLS: "3" } },
        lb: { command: process.execPath, args: [LIGHT], env: { TOOLS: "5", DELAY_MS: "1" } },
        fx: {
          command: process.execPath,
          args: ["--import", "tsx", FIXTURE],
          cwd: ROOT,
          timeoutMs: FX_TIMEOUT_MS,
          restart: { initialDelayMs: 100, maxDelayMs: 2_000 },
        },
      },
      ...(storeUrl
        ? {
            store: {
              type: "redis",
              url: storeUrl,
              keyPrefix: prefix,
              onStoreError: "fail-open",
              commandTimeoutMs: 500,
              reconnect: { initialDelayMs: 50, maxDelayMs: 500 },
            },
          }
        : {}),
      toolPolicies: {
        la__echo: { cache: { ttlMs: 5_000 } },
        la__tool_0: { rateLimit: { scope: "tool", capacity: 20, refillPerSecond: 20 } },
      },
    }),
  );

  console.log(
    `soak: ${MINUTES} min, ${CLIENTS} clients, ${RATE > 0 ? `${RATE} calls/s` : "unpaced"}, a fault every ` +
      `${FAULT_EVERY_MS / 1000} s, store ${storeUrl ? "Redis (through a cuttable proxy)" : "memory"}, ` +
      `gateway from ${process.env.SOAK_USE_BUILD === "1" && existsSync(BUILT_CLI) ? "dist/" : "sources (tsx)"}`,
  );
  const gateway = await startGateway(configPath);
  // Whatever happens to this script, nothing it started outlives it: only synchronous work runs on
  // exit, so SIGKILL the gateway and every process below it.
  process.once("exit", () => {
    for (const pid of [...descendants(gateway.pid), gateway.pid]) {
      try {
        process.kill(pid, "SIGKILL");
      } catch {
        // already gone
      }
    }
  });
  const clients = Array.from({ length: CLIENTS }, () => new SessionClient(gateway.url));
  await Promise.all(clients.map((c) => c.open()));

  const started = performance.now();
  const runMs = MINUTES * 60_000;
  const total = new Tally();
  let window = new Tally();
  const rss: { at: number; bytes: number }[] = [];
  const reports: { at: number; rss: number }[] = [];
  const faults = new Map<string, number>();
  const timeline: string[] = [];
  let phase: "load" | "settle" | "stopped" = "load";
  const settle = new Tally();
  let slowest = 0;
  let gatewayDied = false;
  void gateway.exited.then(({ code, signal }) => {
    if (phase !== "stopped") {
      gatewayDied = true;
      console.error(`soak: the gateway exited during the run (code ${code}, signal ${signal})`);
    }
  });

  // Pacing: each client waits for its own next slot, so the total rate is RATE whatever the latency.
  const perClientGapMs = RATE > 0 ? (1000 * CLIENTS) / RATE : 0;
  const worker = async (client: SessionClient, index: number) => {
    const random = prng(index + 1);
    let next = performance.now();
    while (phase !== "stopped" && !gatewayDied) {
      const request = nextRequest(random);
      const t0 = performance.now();
      const { outcome, cause } = await client.request(request);
      const ms = performance.now() - t0;
      slowest = Math.max(slowest, ms);
      (phase === "settle" ? settle : window).add(outcome, cause, ms);
      if (perClientGapMs > 0) {
        next += perClientGapMs;
        const wait = next - performance.now();
        if (wait > 0) await new Promise((r) => setTimeout(r, wait));
        else next = performance.now();
      }
    }
  };
  const workers = clients.map((c, i) => worker(c, i));

  const sampleRss = () => {
    const bytes = rssBytes(gateway.pid);
    if (bytes > 0) rss.push({ at: performance.now() - started, bytes });
  };
  const rssTimer = setInterval(sampleRss, RSS_SAMPLE_MS);
  sampleRss();

  // Faults, in turn.
  let faultIndex = 0;
  let hangs: Promise<unknown>[] = [];
  const hangClient = new SessionClient(gateway.url);
  await hangClient.open();
  const injectFault = async () => {
    const kinds = ["kill-backend", "hang-tool", "crash-backend", ...(proxy ? ["cut-redis"] : [])];
    const kind = kinds[faultIndex++ % kinds.length] as string;
    const at = clock(performance.now() - started);
    switch (kind) {
      case "kill-backend": {
        const backends = descendants(gateway.pid).filter((pid) =>
          /light-server\.mjs|fixture-server\.ts/.test(commandLine(pid)),
        );
        const victim = backends[faultIndex % Math.max(1, backends.length)];
        if (victim === undefined) break;
        const what = /fixture-server/.test(commandLine(victim)) ? "fx" : "light";
        process.kill(victim, "SIGKILL");
        timeline.push(`${at} SIGKILL ${what} backend (pid ${victim})`);
        break;
      }
      case "hang-tool": {
        // Three calls that would take a minute: the gateway must cut them at the fixture's timeout.
        hangs = hangs.concat(
          Array.from({ length: 3 }, () =>
            hangClient
              .request({
                kind: "hang",
                method: "tools/call",
                params: { name: "fx__slow", arguments: { ms: 60_000 } },
              })
              .then((r) => {
                const key = `hang → ${r.outcome}${r.cause ? ` (${r.cause})` : ""}`;
                faults.set(key, (faults.get(key) ?? 0) + 1);
              }),
          ),
        );
        timeline.push(`${at} 3 calls to fx__slow for 60 s (timeout ${FX_TIMEOUT_MS} ms)`);
        break;
      }
      case "crash-backend": {
        await hangClient.request({
          kind: "crash",
          method: "tools/call",
          params: { name: "fx__crash", arguments: {} },
        });
        timeline.push(`${at} fx__crash (the fixture exits)`);
        break;
      }
      case "cut-redis": {
        proxy?.cut();
        timeline.push(`${at} Redis cut for 3 s`);
        setTimeout(() => proxy?.restore(), 3_000).unref();
        break;
      }
    }
    faults.set(kind, (faults.get(kind) ?? 0) + 1);
  };
  const faultTimer = setInterval(() => {
    if (phase === "load") void injectFault().catch((error) => timeline.push(`fault failed: ${error}`));
  }, FAULT_EVERY_MS);

  const report = () => {
    const now = performance.now() - started;
    const current = rss.at(-1)?.bytes ?? 0;
    const inWindow = rss.filter((r) => r.at > now - REPORT_EVERY_MS).map((r) => r.bytes);
    console.log(
      `[${clock(now)}] ${window.calls} calls (${(window.calls / (REPORT_EVERY_MS / 1000)).toFixed(0)}/s): ` +
        `${outcomeLine(window) || "none"} | p50 ${window.percentile(0.5).toFixed(1)} ms, ` +
        `p99 ${window.percentile(0.99).toFixed(1)} ms | RSS ${mb(current)} ` +
        `(window ${mb(Math.min(...inWindow, current))}–${mb(Math.max(...inWindow, current))})`,
    );
    console.log(`         errors by cause: ${sorted(window.causes)}`);
    console.log(`         faults so far: ${sorted(faults)}`);
    reports.push({ at: now, rss: current });
    total.merge(window);
    window = new Tally();
  };
  const reportTimer = setInterval(report, REPORT_EVERY_MS);

  const stopSignal = new Promise<void>((resolve) => {
    const onSignal = () => {
      console.log("soak: interrupted; stopping early");
      resolve();
    };
    process.once("SIGINT", onSignal);
    process.once("SIGTERM", onSignal);
  });
  await Promise.race([
    new Promise((resolve) => setTimeout(resolve, Math.max(0, runMs - SETTLE_MS)).unref()),
    stopSignal,
    gateway.exited,
  ]);

  // The calm end: no more faults; every backend comes back and every call succeeds again.
  clearInterval(faultTimer);
  proxy?.restore();
  await Promise.allSettled(hangs);
  let recovered = false;
  const recoveryStarted = performance.now();
  if (!gatewayDied) {
    const probe = new SessionClient(gateway.url);
    await probe.open().catch(() => undefined);
    const deadline = performance.now() + RECOVERY_MS;
    while (performance.now() < deadline && !gatewayDied) {
      const checks = await Promise.all([
        probe.request({
          kind: "check",
          method: "tools/call",
          params: { name: "fx__echo", arguments: { message: "x" } },
        }),
        probe.request({
          kind: "check",
          method: "tools/call",
          params: { name: "lb__echo", arguments: { message: "x" } },
        }),
        probe.request({
          kind: "check",
          method: "tools/call",
          params: { name: "la__tool_1", arguments: { message: "x" } },
        }),
      ]);
      if (checks.every((c) => c.outcome === "ok")) {
        recovered = true;
        break;
      }
      await new Promise((r) => setTimeout(r, 100));
    }
    await probe.close();
  }
  const recoveryMs = performance.now() - recoveryStarted;
  phase = "settle";
  const settleStarted = performance.now();
  await new Promise((r) => setTimeout(r, SETTLE_MS));
  const settleMs = performance.now() - settleStarted;
  phase = "stopped";
  await Promise.all(workers);
  clearInterval(rssTimer);
  clearInterval(reportTimer);
  sampleRss();

  // Stop the gateway the way an orchestrator does, and look for anything left behind.
  const below = descendants(gateway.pid);
  await Promise.all([...clients, hangClient].map((c) => c.close()));
  gateway.child.kill("SIGTERM");
  total.merge(window);
  const killTimer = setTimeout(() => gateway.child.kill("SIGKILL"), 20_000);
  const { code, signal } = await gateway.exited;
  clearTimeout(killTimer);
  const leftDeadline = performance.now() + 5_000;
  let left = below.filter(alive);
  while (left.length > 0 && performance.now() < leftDeadline) {
    await new Promise((r) => setTimeout(r, 50));
    left = left.filter(alive);
  }
  for (const pid of left) process.kill(pid, "SIGKILL");
  await proxy?.close();
  if (REDIS_URL) await deleteByPrefix(REDIS_URL, prefix).catch(() => undefined);
  rmSync(dir, { recursive: true, force: true });

  // ── the summary ──
  const elapsed = performance.now() - started;
  const warm = reports.find((r) => r.at >= Math.min(60_000, elapsed / 4)) ?? reports[0];
  const end = rss.at(-1);
  const growthMB = warm && end ? (end.bytes - warm.rss) / MB : 0;
  const peak = Math.max(...rss.map((r) => r.bytes));
  const failuresAfterFaults = settle.failures();
  const hung = (total.outcomes.get("hung") ?? 0) + (settle.outcomes.get("hung") ?? 0);

  console.log(`\n── soak summary (${clock(elapsed)}) ──`);
  console.log(`calls while faults were injected: ${total.calls}; by outcome: ${outcomeLine(total)}`);
  console.log(`errors by cause: ${sorted(total.causes)}`);
  console.log(
    `latency: p50 ${total.percentile(0.5).toFixed(1)} ms, p99 ${total.percentile(0.99).toFixed(1)} ms, slowest ${slowest.toFixed(0)} ms`,
  );
  console.log(`faults: ${sorted(faults)}`);
  for (const line of timeline.slice(0, 12)) console.log(`  ${line}`);
  if (timeline.length > 12) console.log(`  … ${timeline.length - 12} more`);
  console.log(`gateway log: ${sorted(gateway.logCounts)}`);
  console.log(
    `after the faults: all backends answered ${recovered ? `within ${Math.round(recoveryMs)} ms` : "NOT within the deadline"}; ` +
      `then ${settle.calls} calls in ${(settleMs / 1000).toFixed(1)} s: ${outcomeLine(settle) || "none"}`,
  );
  console.log(
    `RSS over time: ${reports.map((r) => `${clock(r.at)} ${(r.rss / MB).toFixed(0)}`).join(", ")} (MB); peak ${mb(peak)}`,
  );
  console.log(
    `RSS growth from ${warm ? clock(warm.at) : "start"} to the end: ${growthMB.toFixed(1)} MB (bound ${RSS_GROWTH_MB} MB)`,
  );
  console.log(
    `gateway exit on SIGTERM: code ${code}, signal ${signal}; processes left behind: ${left.length}`,
  );

  const problems = [
    gatewayDied ? "the gateway died during the run" : undefined,
    hung > 0 ? `${hung} calls hung (no answer in ${HANG_MS / 1000} s)` : undefined,
    recovered ? undefined : "the backends did not all answer again after the faults stopped",
    failuresAfterFaults > 0 ? `${failuresAfterFaults} calls failed after the faults stopped` : undefined,
    growthMB > RSS_GROWTH_MB ? `RSS grew ${growthMB.toFixed(1)} MB, beyond ${RSS_GROWTH_MB} MB` : undefined,
    code !== 0 ? `the gateway exited with ${code ?? signal} on SIGTERM` : undefined,
    left.length > 0 ? `${left.length} processes were left behind` : undefined,
  ].filter((p): p is string => p !== undefined);
  console.log(problems.length === 0 ? "verdict: PASS" : `verdict: FAIL\n  - ${problems.join("\n  - ")}`);
  return problems.length === 0 ? 0 : 1;
}

/** Deletes the run's keys (SCAN + UNLINK, never KEYS). */
async function deleteByPrefix(url: string, prefix: string): Promise<void> {
  const redis = new Redis(url, { lazyConnect: true, maxRetriesPerRequest: 1 });
  await redis.connect();
  try {
    let cursor = "0";
    do {
      const [next, keys] = await redis.scan(
        cursor,
        "MATCH",
        `${prefix.replace(/[*?[\]\\]/g, "\\$&")}*`,
        "COUNT",
        1000,
      );
      cursor = next;
      if (keys.length > 0) await redis.unlink(...keys);
    } while (cursor !== "0");
  } finally {
    redis.disconnect();
  }
}

main().then(
  (code) => process.exit(code),
  (error: unknown) => {
    console.error("soak: failed:", error);
    process.exit(1);
  },
);
