/**
 * A lightweight JSON-RPC load client for MCP over stdio and Streamable HTTP. It is deliberately not
 * the SDK client: validating every message with schemas costs more than the gateway being measured.
 */
import { type ChildProcess, spawn } from "node:child_process";
import { createInterface } from "node:readline";
import { Pool } from "undici";

type Pending = { resolve: (value: unknown) => void; reject: (error: Error) => void };

export interface RpcClient {
  request(method: string, params?: unknown): Promise<unknown>;
  close(): Promise<void>;
}

const INIT_PARAMS = {
  protocolVersion: "2025-06-18",
  capabilities: {},
  clientInfo: { name: "switchboard-bench", version: "1.0.0" },
};

/** Speaks newline-delimited JSON-RPC to a child process, with any number of requests in flight. */
export class StdioRpc implements RpcClient {
  readonly child: ChildProcess;
  #nextId = 1;
  readonly #pending = new Map<number, Pending>();

  constructor(command: string, args: readonly string[], env: Record<string, string> = {}) {
    this.child = spawn(command, [...args], {
      stdio: ["pipe", "pipe", "ignore"],
      env: { ...process.env, ...env },
    });
    createInterface({ input: this.child.stdout as NodeJS.ReadableStream }).on("line", (line) => {
      if (!line.startsWith("{")) return;
      const message = JSON.parse(line) as { id?: number; result?: unknown; error?: { message: string } };
      if (message.id === undefined) return;
      const pending = this.#pending.get(message.id);
      if (!pending) return;
      this.#pending.delete(message.id);
      if (message.error) pending.reject(new Error(message.error.message));
      else pending.resolve(message.result);
    });
    this.child.once("exit", (code) => {
      for (const p of this.#pending.values()) p.reject(new Error(`process exited with ${code}`));
      this.#pending.clear();
    });
  }

  /** Runs the 2025 handshake. */
  async initialize(): Promise<void> {
    await this.request("initialize", INIT_PARAMS);
    this.notify("notifications/initialized");
  }

  request(method: string, params?: unknown): Promise<unknown> {
    const id = this.#nextId++;
    return new Promise((resolve, reject) => {
      this.#pending.set(id, { resolve, reject });
      this.child.stdin?.write(`${JSON.stringify({ jsonrpc: "2.0", id, method, params })}\n`);
    });
  }

  notify(method: string, params?: unknown): void {
    this.child.stdin?.write(`${JSON.stringify({ jsonrpc: "2.0", method, params })}\n`);
  }

  async close(): Promise<void> {
    if (this.child.exitCode !== null) return;
    const exited = new Promise((r) => this.child.once("exit", r));
    this.child.stdin?.end();
    const timer = setTimeout(() => this.child.kill("SIGKILL"), 5_000);
    await exited;
    clearTimeout(timer);
  }
}

/** A 2025-era Streamable HTTP session over one keep-alive connection. */
export class HttpSessionRpc implements RpcClient {
  readonly #pool: Pool;
  readonly #path: string;
  #session: string | undefined;
  #nextId = 1;

  constructor(url: string) {
    const parsed = new URL(url);
    this.#pool = new Pool(parsed.origin, { connections: 1, pipelining: 1 });
    this.#path = parsed.pathname;
  }

  async initialize(): Promise<void> {
    await this.request("initialize", INIT_PARAMS);
    await this.#post({ jsonrpc: "2.0", method: "notifications/initialized" });
  }

  async request(method: string, params?: unknown): Promise<unknown> {
    const id = this.#nextId++;
    const text = await this.#post({ jsonrpc: "2.0", id, method, params });
    const message = parseResponse(text) as { result?: unknown; error?: { message: string } };
    if (message.error) throw new Error(message.error.message);
    return message.result;
  }

  async #post(body: unknown): Promise<string> {
    const headers: Record<string, string> = {
      "content-type": "application/json",
      accept: "application/json, text/event-stream",
    };
    if (this.#session) {
      headers["mcp-session-id"] = this.#session;
      headers["mcp-protocol-version"] = INIT_PARAMS.protocolVersion;
    }
    const response = await this.#pool.request({
      method: "POST",
      path: this.#path,
      headers,
      body: JSON.stringify(body),
    });
    const session = response.headers["mcp-session-id"];
    if (typeof session === "string") this.#session = session;
    const text = await response.body.text();
    if (response.statusCode >= 400) throw new Error(`HTTP ${response.statusCode}: ${text}`);
    return text;
  }

  async close(): Promise<void> {
    await this.#pool.close();
  }
}

/**
 * 2026-07-28 stateless requests over one keep-alive connection: no session, each request names its
 * protocol version, client and capabilities in `_meta`, and its method in the `Mcp-Method` header.
 */
export class HttpModernRpc implements RpcClient {
  readonly #pool: Pool;
  readonly #path: string;
  #nextId = 1;

  constructor(url: string) {
    const parsed = new URL(url);
    this.#pool = new Pool(parsed.origin, { connections: 1, pipelining: 1 });
    this.#path = parsed.pathname;
  }

  async request(method: string, params: Record<string, unknown> = {}): Promise<unknown> {
    const id = this.#nextId++;
    const name = typeof params.name === "string" ? { "mcp-name": params.name } : {};
    const response = await this.#pool.request({
      method: "POST",
      path: this.#path,
      headers: {
        "content-type": "application/json",
        accept: "application/json, text/event-stream",
        "mcp-protocol-version": MODERN_VERSION,
        "mcp-method": method,
        ...name,
      },
      body: JSON.stringify({ jsonrpc: "2.0", id, method, params: { ...params, _meta: MODERN_ENVELOPE } }),
    });
    const text = await response.body.text();
    if (response.statusCode >= 400) throw new Error(`HTTP ${response.statusCode}: ${text}`);
    const message = parseResponse(text) as { result?: unknown; error?: { message: string } };
    if (message.error) throw new Error(message.error.message);
    return message.result;
  }

  async close(): Promise<void> {
    await this.#pool.close();
  }
}

const MODERN_VERSION = "2026-07-28";
const MODERN_ENVELOPE = {
  "io.modelcontextprotocol/protocolVersion": MODERN_VERSION,
  "io.modelcontextprotocol/clientInfo": INIT_PARAMS.clientInfo,
  "io.modelcontextprotocol/clientCapabilities": {},
};

/** A JSON body, or the last `data:` event of an SSE body that carries a response. */
function parseResponse(text: string): unknown {
  const trimmed = text.trimStart();
  if (trimmed.startsWith("{") || trimmed.startsWith("[")) return JSON.parse(trimmed);
  let last: unknown;
  for (const line of text.split("\n")) {
    if (!line.startsWith("data:")) continue;
    const data = line.slice(5).trim();
    if (!data) continue;
    const message = JSON.parse(data) as { id?: unknown };
    if (message.id !== undefined) last = message;
  }
  if (last === undefined) throw new Error(`no JSON-RPC response in: ${text.slice(0, 200)}`);
  return last;
}

export interface LoadResult {
  readonly calls: number;
  readonly seconds: number;
  readonly perSecond: number;
  readonly p50Ms: number;
  readonly p99Ms: number;
}

/**
 * Runs `total` calls with `concurrency` workers, after `warmup` calls that are not measured. Each
 * worker uses its own client (so 8 workers over HTTP are 8 sessions on 8 connections).
 */
export async function runLoad(
  clients: readonly RpcClient[],
  call: (client: RpcClient, i: number) => Promise<unknown>,
  { total, warmup }: { total: number; warmup: number },
): Promise<LoadResult> {
  const concurrency = clients.length;
  for (let i = 0; i < warmup; i++) await call(clients[i % concurrency] as RpcClient, i);
  const latencies = new Float64Array(total);
  let next = 0;
  const started = performance.now();
  await Promise.all(
    clients.map(async (client) => {
      while (next < total) {
        const i = next++;
        const t0 = performance.now();
        await call(client, i);
        latencies[i] = performance.now() - t0;
      }
    }),
  );
  const seconds = (performance.now() - started) / 1000;
  latencies.sort();
  return {
    calls: total,
    seconds,
    perSecond: total / seconds,
    p50Ms: latencies[Math.floor(total * 0.5)] ?? 0,
    p99Ms: latencies[Math.min(total - 1, Math.floor(total * 0.99))] ?? 0,
  };
}

function median(values: readonly number[]): number {
  const sorted = [...values].sort((a, b) => a - b);
  return sorted[Math.floor(sorted.length / 2)] ?? 0;
}

/** Blocks of one side as one result: calls over summed time; p50 and p99 are medians over blocks. */
export function combineBlocks(blocks: readonly LoadResult[]): LoadResult {
  const calls = blocks.reduce((sum, b) => sum + b.calls, 0);
  const seconds = blocks.reduce((sum, b) => sum + b.seconds, 0);
  return {
    calls,
    seconds,
    perSecond: calls / seconds,
    p50Ms: median(blocks.map((b) => b.p50Ms)),
    p99Ms: median(blocks.map((b) => b.p99Ms)),
  };
}
