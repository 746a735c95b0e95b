/**
 * What an MCP client backend reads and writes on the transport itself, ahead of the SDK client.
 *
 * Tool calls to 2025-era servers: the request is written straight to the transport and its response
 * is picked off the transport before the SDK sees it. The SDK client would validate the result
 * against its schemas and the tool's output schema, keep a response cache and arm a timer for every
 * call; a gateway passes results through and leaves validation to the client that receives them, and
 * its timeout policy already bounds the call. Ids are strings with a prefix the SDK never uses (it
 * numbers its own requests), so the two share the connection safely.
 *
 * Progress is routed by our own tokens, straight off the transport: the SDK dispatches notifications
 * a microtask after responses, so a server's last progress before its result would otherwise arrive
 * after the request is settled and be dropped. Log messages too: the SDK would try each message
 * against three JSON-RPC schemas first (zod failures are costly), which makes a chatty server
 * expensive.
 */
import { ProtocolError, type Transport } from "@modelcontextprotocol/client";
import { describeError } from "../../core/errors.ts";
import {
  type BackendLogMessage,
  type CallToolResult,
  type LoggingLevel,
  MCP_LOG_LEVELS,
  type ProgressUpdate,
} from "../../core/types.ts";

interface RawResponse {
  readonly result?: unknown;
  readonly error?: { readonly code: number; readonly message: string; readonly data?: unknown };
}

/** The code the raw path uses for calls cut off by a lost connection (JSON-RPC's server-error range). */
export const CONNECTION_CLOSED = -32000;

export class FastPath {
  readonly #server: string;
  /** Tool calls sent on the raw path, by id, waiting for their response. */
  readonly #pending = new Map<string, (message: RawResponse) => void>();
  #seq = 0;
  readonly #progressRoutes = new Map<string, (update: ProgressUpdate) => void>();
  #progressSeq = 0;

  constructor(server: string) {
    this.#server = server;
  }

  /** A progress token of ours for one call; its server's progress goes to `onProgress` until `unroute`. */
  routeProgress(onProgress: (update: ProgressUpdate) => void): string {
    const token = `${this.#server}-${++this.#progressSeq}`;
    this.#progressRoutes.set(token, onProgress);
    return token;
  }

  unroute(token: string): void {
    this.#progressRoutes.delete(token);
  }

  /** `tools/call` written straight to the transport; its response settles it (see `intercept`). */
  call(transport: Transport, params: Record<string, unknown>, signal: AbortSignal): Promise<CallToolResult> {
    if (signal.aborted) return Promise.reject(signal.reason);
    const id = `sb:${++this.#seq}`;
    return new Promise<CallToolResult>((resolve, reject) => {
      const onAbort = () => {
        this.#pending.delete(id);
        void transport
          .send({
            jsonrpc: "2.0",
            method: "notifications/cancelled",
            params: { requestId: id, reason: describeError(signal.reason) },
          })
          .catch(() => undefined);
        reject(signal.reason);
      };
      signal.addEventListener("abort", onAbort, { once: true });
      this.#pending.set(id, (message) => {
        signal.removeEventListener("abort", onAbort);
        if (message.error) {
          const { code, message: text, data } = message.error;
          reject(new ProtocolError(code, text, data));
        } else if (typeof message.result === "object" && message.result !== null) {
          resolve(message.result as CallToolResult);
        } else {
          reject(new Error("the server answered tools/call with a result that is not an object"));
        }
      });
      transport
        .send({ jsonrpc: "2.0", id, method: "tools/call", params } as never)
        .catch((error: unknown) => {
          this.#pending.delete(id);
          signal.removeEventListener("abort", onAbort);
          reject(error);
        });
    });
  }

  /** Fails every call still waiting on the raw path: its connection is gone. */
  failAll(reason: string): void {
    const pending = [...this.#pending.values()];
    this.#pending.clear();
    // The backend's reasons for a lost connection already say so ("connection closed; its stderr…").
    const message = reason.startsWith("connection closed") ? reason : `connection closed (${reason})`;
    for (const settle of pending) settle({ error: { code: CONNECTION_CLOSED, message } });
  }

  /** Takes raw responses, progress and log messages off `transport` before the SDK sees them. */
  intercept(transport: Transport, log: (message: BackendLogMessage) => void): void {
    const deliver = transport.onmessage;
    if (!deliver) return;
    transport.onmessage = (message, extra) => {
      const m = message as { id?: unknown; method?: string; params?: { progressToken?: unknown } };
      if (typeof m.id === "string" && m.method === undefined) {
        const settle = this.#pending.get(m.id);
        if (settle) {
          this.#pending.delete(m.id);
          settle(message as RawResponse);
          return;
        }
      }
      if (m.method === "notifications/message" && isLogParams(m.params)) {
        const { level, data, logger } = m.params;
        log({ level, data, ...(typeof logger === "string" ? { logger } : {}) });
        return;
      }
      if (m.method === "notifications/progress" && typeof m.params?.progressToken === "string") {
        const route = this.#progressRoutes.get(m.params.progressToken);
        if (route) {
          const { progress, total, message: text } = m.params as ProgressUpdate;
          route({
            progress,
            ...(total !== undefined ? { total } : {}),
            ...(text !== undefined ? { message: text } : {}),
          });
        }
        return;
      }
      deliver.call(transport, message, extra);
    };
  }
}

const LOG_LEVELS: ReadonlySet<string> = new Set(MCP_LOG_LEVELS);

function isLogParams(params: unknown): params is { level: LoggingLevel; data: unknown; logger?: unknown } {
  if (typeof params !== "object" || params === null) return false;
  const p = params as { level?: unknown; data?: unknown; logger?: unknown };
  return (
    typeof p.level === "string" &&
    LOG_LEVELS.has(p.level) &&
    "data" in p &&
    (p.logger === undefined || typeof p.logger === "string")
  );
}
