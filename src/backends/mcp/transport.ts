/**
 * The transport to an MCP server: a spawned child over stdio (stdio-client-transport.ts), or
 * Streamable HTTP or legacy SSE. A child's stderr is logged, and its last lines are kept: they are
 * usually the real reason it failed or exited.
 */
import { createInterface } from "node:readline";
import type { Readable } from "node:stream";
import {
  type AuthProvider,
  SSEClientTransport,
  StreamableHTTPClientTransport,
  type Transport,
} from "@modelcontextprotocol/client";
import type { Logger } from "../../observability/logger.ts";
import { BackendStdioTransport } from "./stdio-client-transport.ts";

export type McpTransportConfig =
  | {
      readonly type: "stdio";
      readonly command: string;
      readonly args: readonly string[];
      readonly env: Readonly<Record<string, string>>;
      readonly cwd?: string | undefined;
    }
  | {
      readonly type: "http" | "sse";
      readonly url: string;
      readonly headers: Readonly<Record<string, string>>;
      /** How requests are authenticated beyond `headers` (config `auth`). Default: `headers` only. */
      readonly auth?: UpstreamAuth | undefined;
    };

/**
 * A credential the transport asks for before each request (`Authorization: Bearer …`, over any
 * Authorization in `headers`), and asks to renew once when the server answers 401: an OAuth login
 * (oauth/session.ts) or a caller's own credential (security/upstream/).
 */
export interface UpstreamAuth {
  readonly provider: AuthProvider;
  /**
   * Listens for the credential being gone for good (a revoked login): the connection then ends, and
   * the reason says what to do. Returns a function that stops listening (called when it closes).
   */
  watch?(onLost: (reason: string) => void): () => void;
}

/** How many of a server's last stderr lines are kept: enough to hold a whole stack trace. */
const STDERR_KEPT_LINES = 40;
/** How many of them a failure reason quotes when none names the error. */
const STDERR_QUOTED_LINES = 3;
/** Longer lines are cut: a reason must stay readable. */
const STDERR_LINE_CHARS = 300;

/**
 * A line that names an error, as runtimes print it when a program dies: `TypeError: …`,
 * `Error [ERR_MODULE_NOT_FOUND]: …`, `Uncaught SyntaxError: …`, Python's `ModuleNotFoundError: …`,
 * Java's `Exception in thread "main" …`, Go's `panic: …`, Rust's `thread 'main' panicked at …`.
 * Stack frames (`    at …`, `  File "…"`) never match: they are indented.
 */
const ERROR_LINE =
  /^(?:Uncaught )?(?:(?:[A-Za-z_$][\w$.]*)?(?:Error|Exception)(?: \[[\w.-]+\])?|panic|fatal error): |^Exception in thread |^thread '.*' panicked at /;

/** The last lines a server wrote to stderr since it was started. */
export class StderrTail {
  #lines: string[] = [];
  #cause: string | undefined;

  /** Why the gateway itself ended the connection (its credential is gone), for `explain`. */
  noteCause(cause: string): void {
    this.#cause = cause;
  }

  add(line: string): void {
    this.#lines.push(line.length > STDERR_LINE_CHARS ? `${line.slice(0, STDERR_LINE_CHARS)}…` : line);
    if (this.#lines.length > STDERR_KEPT_LINES) this.#lines.shift();
  }

  /** The lines kept, oldest first: for the log, where the whole tail helps. */
  get lines(): readonly string[] {
    return this.#lines;
  }

  /**
   * A failure reason with what the server's stderr says about it: the last line that names an error
   * (the tail of a stack trace says where, not what), else its last few lines.
   */
  explain(reason: string): string {
    const cause = this.#cause;
    // The SDK wraps it in what it was doing ("Version negotiation probe failed: …"): the cause says it all.
    if (cause !== undefined) return reason.includes(cause) ? cause : `${reason}: ${cause}`;
    const named = this.#lines.findLast((line) => ERROR_LINE.test(line));
    if (named !== undefined) return `${reason}; its stderr said: ${named}`;
    const tail = this.#lines.slice(-STDERR_QUOTED_LINES).join(" | ");
    return tail ? `${reason}; its stderr ended with: ${tail}` : reason;
  }
}

/**
 * A new transport for `config`. Stderr lines are redacted before they are kept (they reach health
 * and clients' errors, not only the redacting logger), and before they are cut, so that no half of a
 * secret survives.
 */
export function openTransport(
  config: McpTransportConfig,
  tail: StderrTail,
  log: Logger,
  redact: (text: string) => string,
): Transport {
  if (config.type === "stdio") {
    const transport = new BackendStdioTransport({
      command: config.command,
      args: [...config.args],
      env: { ...config.env },
      ...(config.cwd ? { cwd: config.cwd } : {}),
      stderr: "pipe",
    });
    const stderr = transport.stderr as Readable | null;
    if (stderr) {
      createInterface({ input: stderr }).on("line", (line) => {
        if (!line.trim()) return;
        tail.add(redact(line.trimEnd()));
        log.info({ stderr: line }, "server stderr");
      });
    }
    return transport;
  }
  const url = new URL(config.url);
  const requestInit = { headers: { ...config.headers } };
  const auth = config.auth;
  const options = { requestInit, ...(auth ? { authProvider: auth.provider } : {}) };
  const transport =
    config.type === "sse"
      ? (new SSEClientTransport(url, options) as Transport)
      : (new StreamableHTTPClientTransport(url, options) as Transport);
  const unwatch = auth?.watch?.((reason) => {
    tail.noteCause(reason);
    void transport.close().catch(() => undefined);
  });
  if (unwatch) {
    const close = transport.close.bind(transport);
    transport.close = async () => {
      unwatch();
      await close();
    };
  }
  return transport;
}
