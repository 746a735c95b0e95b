/**
 * The transport to an MCP server: a spawned child over stdio (stdio-client-transport.ts), or
 * Streamable HTTP or legacy SSE. A child's stderr is logged, and its last lines are kept: they are
 * usually the real reason it failed or exited.
 */
import { createInterface } from "node:readline";
import type { Readable } from "node:stream";
import {
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
    };

/** How many stderr lines are kept to explain a failure. */
const STDERR_TAIL_LINES = 3;

/** The last lines a server wrote to stderr since it was started. */
export class StderrTail {
  #lines: string[] = [];

  add(line: string): void {
    this.#lines.push(line.length > 300 ? `${line.slice(0, 300)}…` : line);
    if (this.#lines.length > STDERR_TAIL_LINES) this.#lines.shift();
  }

  /** A failure reason with the server's last stderr lines, when it wrote any. */
  explain(reason: string): string {
    const tail = this.#lines.join(" | ");
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
        tail.add(redact(line));
        log.info({ stderr: line }, "server stderr");
      });
    }
    return transport;
  }
  const url = new URL(config.url);
  const requestInit = { headers: { ...config.headers } };
  return config.type === "sse"
    ? (new SSEClientTransport(url, { requestInit }) as Transport)
    : (new StreamableHTTPClientTransport(url, { requestInit }) as Transport);
}
