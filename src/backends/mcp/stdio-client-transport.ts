/**
 * The transport to a stdio MCP server, in place of the SDK's `StdioClientTransport`.
 *
 * Why our own: on the hot path the SDK's transport validates every incoming message against the whole
 * JSON-RPC schema and writes every outgoing one with its own syscall. A gateway forwards messages; the
 * SDK client still validates what it asked for itself, and the raw tool-call path in mcp.ts only needs
 * the parsed object. This transport parses each line once and sends every message written in one tick
 * with one write.
 *
 * One process per connection: it deliberately lacks what the SDK's version negotiation looks for to
 * spawn a disposable probe sibling (`_serverParams` and an own `_dispose`), so `server/discover` is
 * sent to the process that then serves the session. A sibling would double every start, ignore the
 * start-up bound, drop its stderr, and outlive a gateway that stops while it probes. The rare server
 * that exits on a request before `initialize` is handled by the backend (connect.ts).
 */
import { type ChildProcess, spawn } from "node:child_process";
import { PassThrough, type Readable } from "node:stream";
import type { JSONRPCMessage, Transport } from "@modelcontextprotocol/client";
import { getDefaultEnvironment } from "@modelcontextprotocol/client/stdio";

export interface StdioServerParams {
  readonly command: string;
  readonly args?: readonly string[];
  /** Laid over the SDK's safe inherited set (PATH, HOME, …), as Claude Desktop does. */
  readonly env?: Readonly<Record<string, string>>;
  readonly cwd?: string;
  /** "pipe": readable as `stderr` from construction on; "ignore" drops it. Default "pipe". */
  readonly stderr?: "pipe" | "ignore" | "inherit";
}

/** A line longer than this without a newline is not a message; it is dropped and reported. */
const MAX_LINE_BYTES = 64 * 1024 * 1024;
/** How long close() waits for the process after ending its stdin, and again after SIGTERM. */
const EXIT_GRACE_MS = 2_000;
const NEWLINE = 0x0a;
/** How much of each end of an oversized line is kept to find the id of the request it answers. */
const KEPT_OF_OVERSIZED = 256;

function lastBytes(buffer: Buffer, n: number): Buffer {
  return buffer.length > n ? buffer.subarray(buffer.length - n) : buffer;
}

/**
 * The id of a response from the ends of its text: SDK v1 servers write `{"result":…,"jsonrpc":"2.0","id":…}`
 * (the id last), others `{"jsonrpc":"2.0","id":…,"result":…}` (first). Undefined for a request or
 * a notification (they have a method), or when no id is found.
 */
function responseId(head: string, tail: string): string | number | undefined {
  if (/^\s*\{\s*("jsonrpc"\s*:\s*"2\.0"\s*,\s*)?("id"\s*:\s*[^,]+,\s*)?"method"\s*:/.test(head))
    return undefined;
  const match =
    /"id"\s*:\s*("(?:[^"\\]|\\.)*"|-?\d+)\s*\}\s*$/.exec(tail) ??
    /^\s*\{\s*(?:"jsonrpc"\s*:\s*"2\.0"\s*,\s*)?"id"\s*:\s*("(?:[^"\\]|\\.)*"|-?\d+)/.exec(head);
  if (!match?.[1]) return undefined;
  return JSON.parse(match[1]) as string | number;
}

export class BackendStdioTransport implements Transport {
  onclose?: () => void;
  onerror?: (error: Error) => void;
  onmessage?: (message: JSONRPCMessage) => void;
  readonly #params: StdioServerParams;

  #process: ChildProcess | undefined;
  readonly #stderr: PassThrough | undefined;
  #pending: Buffer[] = [];
  #pendingBytes = 0;
  /** Set while the rest of a line over MAX_LINE_BYTES is skipped: its start, its end so far, its size. */
  #oversized: { head: Buffer; tail: Buffer; bytes: number } | undefined;
  #corked = false;
  #received = 0;
  #exited = false;
  #exitStatus: string | undefined;
  #closing: Promise<void> | undefined;

  constructor(params: StdioServerParams) {
    this.#params = params;
    if ((params.stderr ?? "pipe") === "pipe") this.#stderr = new PassThrough();
  }

  /** The server's stderr, readable before start so that nothing it writes early is lost. */
  get stderr(): Readable | null {
    return this.#stderr ?? null;
  }

  get pid(): number | null {
    return this.#process?.pid ?? null;
  }

  /** How many messages the server has written so far. */
  get received(): number {
    return this.#received;
  }

  /** True once the process has exited (by itself or because it was closed). */
  get exited(): boolean {
    return this.#exited;
  }

  /** How the process ended ("exit code 1", "signal SIGKILL"), once it has. */
  get exitStatus(): string | undefined {
    return this.#exitStatus;
  }

  start(): Promise<void> {
    if (this.#process) throw new Error("BackendStdioTransport already started");
    if (this.#closing) return Promise.reject(new Error("the transport was closed before it started"));
    const params = this.#params;
    return new Promise((resolve, reject) => {
      const child = spawn(params.command, [...(params.args ?? [])], {
        env: { ...getDefaultEnvironment(), ...params.env },
        stdio: ["pipe", "pipe", params.stderr === "inherit" ? "inherit" : this.#stderr ? "pipe" : "ignore"],
        shell: false,
        ...(params.cwd ? { cwd: params.cwd } : {}),
      });
      this.#process = child;
      child.once("error", (error) => {
        reject(error);
        this.onerror?.(error);
      });
      child.once("spawn", () => resolve());
      child.once("exit", (code, signal) => {
        this.#exited = true;
        this.#exitStatus = signal ? `signal ${signal}` : `exit code ${code}`;
      });
      child.once("close", () => {
        this.#exited = true;
        if (this.#process === child) this.#process = undefined;
        this.onclose?.();
      });
      child.stdin?.on("error", (error) => this.onerror?.(error));
      child.stdout?.on("data", (chunk: Buffer) => this.#onData(chunk));
      child.stdout?.on("error", (error) => this.onerror?.(error));
      if (this.#stderr && child.stderr) child.stderr.pipe(this.#stderr);
    });
  }

  /** Queues the message; every message sent in one tick leaves in one write. */
  send(message: JSONRPCMessage): Promise<void> {
    const stdin = this.#process?.stdin;
    if (!stdin || stdin.destroyed)
      return Promise.reject(new Error("Not connected: the server process is not running"));
    if (!this.#corked) {
      this.#corked = true;
      stdin.cork();
      process.nextTick(() => {
        this.#corked = false;
        stdin.uncork();
      });
    }
    stdin.write(`${JSON.stringify(message)}\n`);
    return Promise.resolve();
  }

  /**
   * Stops the process and resolves once it has exited: `graceful` first ends its stdin and gives it
   * EXIT_GRACE_MS to finish (a server that was serving); otherwise, and then, SIGTERM, and SIGKILL
   * after EXIT_GRACE_MS more. Exit, not `close`, is awaited: a grandchild holding the pipes must not
   * hold the gateway.
   */
  close(options: { readonly graceful?: boolean } = {}): Promise<void> {
    // A second close (the SDK's, after the gateway's) waits for the same exit.
    this.#closing ??= this.#stop(options.graceful !== false);
    return this.#closing;
  }

  async #stop(graceful: boolean): Promise<void> {
    const child = this.#process;
    this.#process = undefined;
    if (child) {
      const running = () => child.exitCode === null && child.signalCode === null;
      const exited = new Promise<void>((resolve) => {
        if (!running()) resolve();
        else child.once("exit", () => resolve());
      });
      const within = (ms: number) =>
        Promise.race([exited, new Promise<void>((resolve) => setTimeout(resolve, ms).unref())]);
      try {
        child.stdin?.end();
      } catch {
        // already gone
      }
      if (graceful) await within(EXIT_GRACE_MS);
      if (running()) {
        child.kill("SIGTERM");
        await within(EXIT_GRACE_MS);
      }
      if (running()) {
        child.kill("SIGKILL");
        await exited;
      }
      child.stdout?.destroy();
      child.stderr?.destroy();
    }
    this.#pending = [];
    this.#pendingBytes = 0;
  }

  #onData(chunk: Buffer): void {
    let start = 0;
    let newline = chunk.indexOf(NEWLINE);
    if (this.#oversized) {
      const skipped = this.#oversized;
      const piece = newline === -1 ? chunk : chunk.subarray(0, newline);
      skipped.bytes += piece.length;
      skipped.tail = lastBytes(Buffer.concat([skipped.tail, piece]), KEPT_OF_OVERSIZED);
      if (newline === -1) return;
      this.#oversized = undefined;
      this.#onOversized(skipped);
      start = newline + 1;
      newline = chunk.indexOf(NEWLINE, start);
    }
    while (newline !== -1) {
      const piece = chunk.subarray(start, newline);
      let line: Buffer;
      if (this.#pendingBytes > 0) {
        this.#pending.push(piece);
        line = Buffer.concat(this.#pending);
        this.#pending = [];
        this.#pendingBytes = 0;
      } else {
        line = piece;
      }
      this.#onLine(line);
      start = newline + 1;
      newline = chunk.indexOf(NEWLINE, start);
    }
    if (start < chunk.length) {
      const rest = chunk.subarray(start);
      this.#pendingBytes += rest.length;
      this.#pending.push(rest);
      if (this.#pendingBytes > MAX_LINE_BYTES) {
        // Keep only the ends of the line (a response's id is at one of them) and skip to its newline.
        const head = Buffer.from((this.#pending[0] ?? Buffer.alloc(0)).subarray(0, KEPT_OF_OVERSIZED));
        const tail = Buffer.from(lastBytes(rest, KEPT_OF_OVERSIZED));
        this.#oversized = { head, tail, bytes: this.#pendingBytes };
        this.#pending = [];
        this.#pendingBytes = 0;
      }
    }
  }

  /**
   * A message over MAX_LINE_BYTES is dropped, but when it answers a request that request must not wait
   * for its timeout: it is answered with an error that says what happened.
   */
  #onOversized({ head, tail, bytes }: { head: Buffer; tail: Buffer; bytes: number }): void {
    const mib = (bytes / (1024 * 1024)).toFixed(1);
    const limit = MAX_LINE_BYTES / (1024 * 1024);
    this.onerror?.(
      new Error(`the server wrote a message of ${mib} MiB to stdout, over the ${limit} MiB limit; dropped`),
    );
    const id = responseId(head.toString("utf8"), tail.toString("utf8"));
    if (id === undefined) return;
    this.onmessage?.({
      jsonrpc: "2.0",
      id,
      error: {
        code: -32603,
        message:
          `The server's answer was ${mib} MiB, over the ${limit} MiB limit of one message; it was dropped. ` +
          "Ask the tool for less (a page, a filter).",
      },
    } as JSONRPCMessage);
  }

  #onLine(line: Buffer): void {
    const text = line.toString("utf8").trim();
    if (text === "") return;
    let message: unknown;
    try {
      message = JSON.parse(text);
    } catch {
      this.onerror?.(
        new Error(`the server wrote a line to stdout that is not JSON-RPC (dropped): ${text.slice(0, 200)}`),
      );
      return;
    }
    if (
      typeof message !== "object" ||
      message === null ||
      (message as { jsonrpc?: unknown }).jsonrpc !== "2.0"
    ) {
      this.onerror?.(
        new Error(`the server wrote a message that is not JSON-RPC 2.0 (dropped): ${text.slice(0, 200)}`),
      );
      return;
    }
    try {
      this.#received++;
      this.onmessage?.(message as JSONRPCMessage);
    } catch (error) {
      this.onerror?.(error as Error);
    }
  }
}
