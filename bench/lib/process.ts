/**
 * Process helpers the benchmarks share: start the gateway (or any served process) and find its URL,
 * read a process's memory after a full GC, walk and stop its process tree, and keep a pool of 2025-era
 * HTTP sessions on a bounded number of sockets.
 */
import { type ChildProcess, spawn } from "node:child_process";
import { readdirSync, readFileSync } from "node:fs";
import { createInterface } from "node:readline";
import { Pool } from "undici";
import { GATEWAY_ARGV, ROOT } from "./gateway.ts";

export interface BenchRatio {
  readonly what: string;
  readonly measured: number;
  readonly target: string;
  readonly ok: boolean;
}

export const MB = 2 ** 20;

/* ------------------------------------------------------------------------------------------------ */
/* Processes                                                                                         */
/* ------------------------------------------------------------------------------------------------ */

/** Every process a benchmark started and has not yet seen exit: killed if the benchmark dies. */
const live = new Set<ChildProcess>();
let exitHookInstalled = false;
function track(child: ChildProcess): void {
  live.add(child);
  child.once("exit", () => live.delete(child));
  if (exitHookInstalled) return;
  exitHookInstalled = true;
  // Only synchronous work runs on exit: SIGKILL, so that no gateway (and, through its closed stdin
  // pipes, no backend) outlives a benchmark that threw.
  process.once("exit", () => {
    for (const c of live) c.kill("SIGKILL");
  });
}

/** A process's resident set (VmRSS), in bytes; 0 once it is gone. */
export function rssBytes(pid: number): number {
  try {
    const status = readFileSync(`/proc/${pid}/status`, "utf8");
    const kb = /^VmRSS:\s+(\d+)\s+kB/m.exec(status)?.[1];
    return kb === undefined ? 0 : Number(kb) * 1024;
  } catch {
    return 0;
  }
}

/** The pids of every process below `pid`, read from /proc (children first found, then theirs). */
export function descendants(pid: number): number[] {
  const parentOf = new Map<number, number>();
  for (const entry of readdirSync("/proc")) {
    if (!/^\d+$/.test(entry)) continue;
    try {
      // The command name in parentheses may hold spaces; ppid is the second field after it.
      const stat = readFileSync(`/proc/${entry}/stat`, "utf8");
      const ppid = Number(stat.slice(stat.lastIndexOf(")") + 2).split(" ")[1]);
      parentOf.set(Number(entry), ppid);
    } catch {
      // gone while we looked
    }
  }
  const found: number[] = [];
  const queue = [pid];
  while (queue.length > 0) {
    const parent = queue.shift() as number;
    for (const [child, ppid] of parentOf) {
      if (ppid === parent) {
        found.push(child);
        queue.push(child);
      }
    }
  }
  return found;
}

/** Whether a process with this pid still exists. */
export function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
}

export const delay = (ms: number) => new Promise((r) => setTimeout(r, ms));

/**
 * Ends `child` with SIGTERM (SIGKILL after `graceMs`), then any of the processes it had started that
 * are still there: backends normally leave when their stdin closes, but a benchmark must not rely on it.
 */
export async function stopProcessTree(child: ChildProcess, graceMs = 15_000): Promise<void> {
  const below = child.pid === undefined ? [] : descendants(child.pid);
  if (child.exitCode === null && child.signalCode === null) {
    const exited = new Promise((r) => child.once("exit", r));
    child.kill("SIGTERM");
    const timer = setTimeout(() => child.kill("SIGKILL"), graceMs);
    await exited;
    clearTimeout(timer);
  }
  const deadline = Date.now() + 3_000;
  let left = below.filter(alive);
  while (left.length > 0 && Date.now() < deadline) {
    await delay(50);
    left = left.filter(alive);
  }
  for (const pid of left) {
    try {
      process.kill(pid, "SIGKILL");
    } catch {
      // already gone
    }
  }
}

/** What a process reports from the GC hook: its memory right after a full collection. */
export interface GcReading {
  readonly rssBytes: number;
  readonly heapUsedBytes: number;
  /** The heap V8 has committed (used or not). */
  readonly heapTotalBytes: number;
  /** Memory outside the JS heap that V8 knows of (Buffers, mostly). */
  readonly externalBytes: number;
}

/** The hook: two collections (the second takes what finalizers of the first released), then a report. */
const GC_HOOK =
  'process.on("SIGUSR2",()=>{globalThis.gc();globalThis.gc();const m=process.memoryUsage();' +
  'process.stderr.write(JSON.stringify({msg:"bench-gc",rss:m.rss,heapUsed:m.heapUsed,heapTotal:m.heapTotal,external:m.external})+"\\n")})';

/** Node flags that install the GC hook; a process started with them answers `collect()`. */
export const GC_FLAGS: readonly string[] = [
  "--expose-gc",
  "--import",
  `data:text/javascript,${encodeURIComponent(GC_HOOK)}`,
];

export interface ServedProcess {
  readonly child: ChildProcess;
  readonly pid: number;
  /** The MCP endpoint. */
  readonly url: string;
  /** From spawn to the `listening` line, in ms. */
  readonly startupMs: number;
  /** The fields of the `gateway ready` log line (servers, up, tools…), when the process logs one. */
  readonly ready: Readonly<Record<string, unknown>> | undefined;
  /** Collects garbage and reads memory; needs a process started with `GC_FLAGS`. */
  collect(): Promise<GcReading>;
  /** Resolves at the `gateway ready` line: every server's first start has ended (up or not). */
  whenReady(): Promise<void>;
  stop(): Promise<void>;
}

/**
 * Starts a process that logs JSON lines on stderr and serves HTTP, and waits for its
 * `{"msg":"listening","url":…}` line. Killed (with whatever it started) if it does not get there.
 */
export async function startServedProcess(
  args: readonly string[],
  { timeoutMs = 60_000, env = {} }: { timeoutMs?: number; env?: Record<string, string> } = {},
): Promise<ServedProcess> {
  const started = performance.now();
  const child = spawn(process.execPath, [...args], {
    cwd: ROOT,
    stdio: ["ignore", "ignore", "pipe"],
    env: { ...process.env, ...env },
  });
  track(child);
  const listeners = new Set<(entry: Record<string, unknown>) => void>();
  let ready: Record<string, unknown> | undefined;
  let onReady: () => void = () => {};
  const readyLine = new Promise<void>((resolve, reject) => {
    onReady = resolve;
    child.once("exit", (code) => reject(new Error(`process exited (${code}) before "gateway ready"`)));
  });
  // Handled here too: a process stopped before it was ready, with nobody waiting, is no error.
  readyLine.catch(() => undefined);
  const tail: string[] = [];
  createInterface({ input: child.stderr as NodeJS.ReadableStream }).on("line", (line) => {
    let entry: Record<string, unknown>;
    try {
      entry = JSON.parse(line) as Record<string, unknown>;
    } catch {
      tail.push(line);
      if (tail.length > 20) tail.shift();
      return;
    }
    if (entry.msg === "gateway ready") {
      ready = entry;
      onReady();
    }
    for (const listener of listeners) listener(entry);
  });
  const next = (msg: string, ms: number) =>
    new Promise<Record<string, unknown>>((resolve, reject) => {
      const done = (error?: Error, entry?: Record<string, unknown>) => {
        clearTimeout(timer);
        listeners.delete(listener);
        child.off("exit", onExit);
        if (error) reject(error);
        else resolve(entry as Record<string, unknown>);
      };
      const listener = (entry: Record<string, unknown>) => {
        if (entry.msg === msg) done(undefined, entry);
      };
      const onExit = (code: number | null) =>
        done(new Error(`process exited (${code}) before "${msg}": ${tail.join("\n")}`));
      const timer = setTimeout(() => done(new Error(`no "${msg}" within ${ms} ms`)), ms);
      listeners.add(listener);
      child.once("exit", onExit);
    });

  let url: string;
  try {
    const listening = await next("listening", timeoutMs);
    url = String(listening.url);
  } catch (error) {
    await stopProcessTree(child, 2_000);
    throw error;
  }
  const startupMs = performance.now() - started;
  const pid = child.pid as number;
  return {
    child,
    pid,
    url,
    startupMs,
    ready,
    async collect() {
      const answer = next("bench-gc", 30_000);
      child.kill("SIGUSR2");
      const entry = await answer;
      return {
        rssBytes: rssBytes(pid) || Number(entry.rss),
        heapUsedBytes: Number(entry.heapUsed),
        heapTotalBytes: Number(entry.heapTotal),
        externalBytes: Number(entry.external),
      };
    },
    whenReady: () => readyLine,
    stop: () => stopProcessTree(child),
  };
}

/**
 * Starts `switchboard serve --http 127.0.0.1:0` on `config`. `--log-level info` because the
 * `listening` and `gateway ready` lines are info lines; nothing is logged per call at that level.
 * Resolves once the gateway is ready (its servers' first starts ended), unless `untilReady` is false:
 * a client's first list waits for servers only within gateway.startupWaitMs of the start.
 */
export async function startHttpGateway(
  config: string,
  {
    gcHook = false,
    timeoutMs,
    nodeFlags = [],
    cli = GATEWAY_ARGV,
    untilReady = true,
  }: {
    gcHook?: boolean;
    timeoutMs?: number;
    /** More node flags (a heap-snapshot signal, say). */
    nodeFlags?: readonly string[];
    /** The node arguments that run the CLI: another build's, for A/B runs. Default: this one's. */
    cli?: readonly string[];
    /** Wait for the `gateway ready` line too. Default true. */
    untilReady?: boolean;
  } = {},
): Promise<ServedProcess> {
  const served = await startServedProcess(
    [
      ...(gcHook ? GC_FLAGS : []),
      ...nodeFlags,
      ...cli,
      "serve",
      "--config",
      config,
      "--http",
      "127.0.0.1:0",
      "--log-level",
      "info",
    ],
    timeoutMs === undefined ? {} : { timeoutMs },
  );
  if (untilReady) await served.whenReady();
  return served;
}

/** The process figures the gateway exports on /metrics (prom-client's default metrics). */
export async function scrapeProcessMetrics(
  mcpUrl: string,
): Promise<{ rssBytes: number; heapUsedBytes: number }> {
  const response = await fetch(new URL("/metrics", mcpUrl));
  const text = await response.text();
  const value = (name: string) => Number(new RegExp(`^${name} (\\S+)`, "m").exec(text)?.[1] ?? Number.NaN);
  return {
    rssBytes: value("process_resident_memory_bytes"),
    heapUsedBytes: value("nodejs_heap_size_used_bytes"),
  };
}

/* ------------------------------------------------------------------------------------------------ */
/* Many sessions on few sockets                                                                      */
/* ------------------------------------------------------------------------------------------------ */

const PROTOCOL = "2025-06-18";

/**
 * 2025-era sessions that share one pool of keep-alive sockets: a session is its `Mcp-Session-Id`, not
 * a connection, so 1 000 of them need not mean 1 000 sockets.
 */
export class SessionPool {
  readonly #pool: Pool;
  readonly #path: string;

  constructor(url: string, connections: number) {
    const parsed = new URL(url);
    this.#pool = new Pool(parsed.origin, { connections, pipelining: 1 });
    this.#path = parsed.pathname;
  }

  /** Posts one JSON-RPC message; answers the raw body and the session header the server set. */
  async post(
    message: unknown,
    session?: string,
  ): Promise<{ status: number; text: string; session: string | undefined }> {
    const headers: Record<string, string> = {
      "content-type": "application/json",
      accept: "application/json, text/event-stream",
    };
    if (session !== undefined) {
      headers["mcp-session-id"] = session;
      headers["mcp-protocol-version"] = PROTOCOL;
    }
    const response = await this.#pool.request({
      method: "POST",
      path: this.#path,
      headers,
      body: JSON.stringify(message),
    });
    const text = await response.body.text();
    const header = response.headers["mcp-session-id"];
    return { status: response.statusCode, text, session: typeof header === "string" ? header : undefined };
  }

  /** Opens a session (initialize, then the initialized notification) and returns its id. */
  async open(): Promise<string> {
    const opened = await this.post({
      jsonrpc: "2.0",
      id: 0,
      method: "initialize",
      params: {
        protocolVersion: PROTOCOL,
        capabilities: {},
        clientInfo: { name: "switchboard-bench", version: "1.0.0" },
      },
    });
    if (opened.status !== 200 || opened.session === undefined) {
      throw new Error(`initialize failed: HTTP ${opened.status} ${opened.text.slice(0, 200)}`);
    }
    await this.post({ jsonrpc: "2.0", method: "notifications/initialized" }, opened.session);
    return opened.session;
  }

  /** One request on a session; throws on an HTTP or JSON-RPC error. */
  async request(session: string, id: number, method: string, params?: unknown): Promise<unknown> {
    const { status, text } = await this.post({ jsonrpc: "2.0", id, method, params }, session);
    if (status >= 400) throw new Error(`HTTP ${status}: ${text.slice(0, 200)}`);
    const message = jsonRpcOf(text) as { result?: unknown; error?: { message: string } };
    if (message.error) throw new Error(message.error.message);
    return message.result;
  }

  /** Ends a session the way a client does: DELETE with its id. */
  async end(session: string): Promise<void> {
    const response = await this.#pool.request({
      method: "DELETE",
      path: this.#path,
      headers: { "mcp-session-id": session, "mcp-protocol-version": PROTOCOL },
    });
    await response.body.dump();
  }

  close(): Promise<void> {
    return this.#pool.close();
  }
}

/** The JSON-RPC response in a body that is plain JSON or an SSE stream. */
export function jsonRpcOf(text: string): unknown {
  const trimmed = text.trimStart();
  if (trimmed.startsWith("{")) return JSON.parse(trimmed);
  for (const line of text.split("\n")) {
    if (!line.startsWith("data:")) continue;
    const message = JSON.parse(line.slice(5)) as { id?: unknown };
    if (message.id !== undefined) return message;
  }
  throw new Error(`no JSON-RPC response in: ${text.slice(0, 200)}`);
}

/** Runs `work(i)` for i in [0, count) with at most `limit` at a time. */
export async function inParallel(
  count: number,
  limit: number,
  work: (i: number) => Promise<void>,
): Promise<void> {
  let next = 0;
  await Promise.all(
    Array.from({ length: Math.min(limit, count) }, async () => {
      while (next < count) await work(next++);
    }),
  );
}
