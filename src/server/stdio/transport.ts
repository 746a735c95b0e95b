/**
 * The gateway's stdio transport, in place of the SDK's `StdioServerTransport`.
 *
 * Why our own: on a busy stdio connection the SDK's transport and protocol layer cost more than the
 * gateway itself — every message is validated against the full JSON-RPC schema, every request gets
 * a handler context, an AbortController and a result codec, and every message is its own write to the
 * pipe. This transport keeps the SDK for everything but one case: once a 2025-era session is
 * established, `tools/call` requests — the hot path — are parsed once and handed straight to the
 * gateway, and all writes made in one tick leave in one `writev`. Everything else (the handshake,
 * lists, resources, prompts, 2026-07-28 traffic) goes through the SDK unchanged.
 */
import {
  isJSONRPCNotification,
  isJSONRPCRequest,
  isJSONRPCResponse,
  type JSONRPCMessage,
  type Transport,
} from "@modelcontextprotocol/server";
import { JSON_RPC } from "../../core/errors.ts";
import { oneLine, shapeProblem } from "../../protocol/message-shape.ts";

/** Handles a message itself and returns true, or returns false to let the SDK have it. */
export type FastPath = (message: Record<string, unknown>) => boolean;

export class GatewayStdioTransport implements Transport {
  onclose?: () => void;
  onerror?: (error: Error) => void;
  onmessage?: (message: JSONRPCMessage) => void;
  /** Set by the owner once the transport exists; consulted for every inbound message. */
  fastPath: FastPath | undefined;

  readonly #stdin: NodeJS.ReadableStream;
  readonly #stdout: NodeJS.WritableStream & { cork(): void; uncork(): void };
  #buffer = "";
  #started = false;
  #closed = false;
  #corked = false;
  readonly #maxLineBytes: number;

  constructor(
    stdin: NodeJS.ReadableStream = process.stdin,
    stdout: NodeJS.WritableStream = process.stdout,
    options: { maxLineBytes?: number } = {},
  ) {
    this.#stdin = stdin;
    this.#stdout = stdout as NodeJS.WritableStream & { cork(): void; uncork(): void };
    this.#maxLineBytes = options.maxLineBytes ?? 10 * 1024 * 1024;
  }

  async start(): Promise<void> {
    if (this.#started) throw new Error("GatewayStdioTransport already started");
    this.#started = true;
    this.#stdin.setEncoding?.("utf8");
    this.#stdin.on("data", this.#onData);
    this.#stdin.on("error", this.#onError);
    this.#stdin.on("end", this.#onEnd);
    this.#stdout.on("error", this.#onError);
  }

  /** Queues a message; writes made in the same tick are flushed together. */
  send(message: JSONRPCMessage): Promise<void> {
    this.write(message);
    return Promise.resolve();
  }

  write(message: unknown): void {
    if (this.#closed) return;
    if (!this.#corked) {
      this.#corked = true;
      this.#stdout.cork();
      process.nextTick(this.#uncork);
    }
    this.#stdout.write(`${JSON.stringify(message)}\n`);
  }

  async close(): Promise<void> {
    if (this.#closed) return;
    this.#closed = true;
    this.#stdin.off("data", this.#onData);
    this.#stdin.off("error", this.#onError);
    this.#stdin.off("end", this.#onEnd);
    this.#stdout.off("error", this.#onError);
    if (this.#corked) this.#uncork();
    this.#stdin.pause?.();
    this.onclose?.();
  }

  readonly #uncork = () => {
    this.#corked = false;
    this.#stdout.uncork();
  };

  readonly #onData = (chunk: string | Buffer) => {
    this.#buffer += typeof chunk === "string" ? chunk : chunk.toString("utf8");
    let newline = this.#buffer.indexOf("\n");
    while (newline !== -1) {
      const line = this.#buffer.slice(0, newline).replace(/\r$/, "");
      this.#buffer = this.#buffer.slice(newline + 1);
      if (line.trim() !== "") this.#onLine(line);
      newline = this.#buffer.indexOf("\n");
    }
    if (this.#buffer.length > this.#maxLineBytes) {
      this.#buffer = "";
      this.write({
        jsonrpc: "2.0",
        id: null,
        error: {
          code: JSON_RPC.INVALID_REQUEST,
          message: `Message larger than ${this.#maxLineBytes} bytes; dropped.`,
        },
      });
    }
  };

  #onLine(line: string): void {
    let message: unknown;
    try {
      message = JSON.parse(line);
    } catch (error) {
      this.write({
        jsonrpc: "2.0",
        id: null,
        error: { code: JSON_RPC.PARSE_ERROR, message: `Parse error: ${oneLine((error as Error).message)}` },
      });
      return;
    }
    const problem = shapeProblem(message);
    if (problem) {
      // JSON-RPC answers an invalid message with an error whose id is null when no id can be read.
      this.write({ jsonrpc: "2.0", id: problem.id, error: { code: problem.code, message: problem.message } });
      return;
    }
    try {
      if (this.fastPath?.(message as Record<string, unknown>)) return;
      // The SDK drops, without a word, what it cannot read as a request, notification or response
      // (a fractional id, array params, a non-object _meta, an extra member); the client would wait
      // for an answer forever. Answer it as the HTTP transport does. A malformed response is not
      // answered: answering responses invites two peers to trade errors forever.
      if (!isJSONRPCRequest(message) && !isJSONRPCNotification(message) && !isJSONRPCResponse(message)) {
        const m = message as Record<string, unknown>;
        if (m.method === undefined && ("result" in m || "error" in m)) return;
        const id =
          typeof m.id === "string" || (typeof m.id === "number" && Number.isFinite(m.id)) ? m.id : null;
        this.write({
          jsonrpc: "2.0",
          id,
          error: {
            code: JSON_RPC.INVALID_REQUEST,
            message:
              'Invalid request: not a JSON-RPC 2.0 message the gateway can read ("id" a string or an integer, ' +
              '"params" and "params._meta" objects, no other members).',
          },
        });
        return;
      }
      this.onmessage?.(message as JSONRPCMessage);
    } catch (error) {
      this.onerror?.(error as Error);
    }
  }

  readonly #onError = (error: Error) => {
    this.onerror?.(error);
  };

  readonly #onEnd = () => {
    void this.close();
  };
}
