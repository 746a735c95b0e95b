/**
 * Serves `tools/call` on an established 2025-era HTTP session without the SDK's Streamable HTTP
 * transport, as the stdio fast path does for stdio (see stdio-transport.ts). The SDK transport turns
 * every request into a web Request, routes it through a stream per request and answers through web
 * streams; for the hot path of a gateway that costs more than the gateway itself.
 *
 * The answer is a plain JSON response, which Streamable HTTP allows for any request. So this path is
 * taken only when nothing else needs the request's stream: the client accepts JSON, asked for no
 * progress, declared neither sampling nor elicitation (a backend cannot ask it anything mid-call), and
 * set no log level (log messages about the call would go on that stream). Anything else goes to the
 * SDK, which handles it in full. Results, errors and cancellation are what the SDK path gives.
 */
import type { IncomingMessage, ServerResponse } from "node:http";
import type { Server } from "@modelcontextprotocol/server";
import type { Principal } from "../core/types.ts";
import type { Gateway } from "../gateway/gateway.ts";
import { toJsonRpcError } from "./json-rpc-errors.ts";
import { connectionLogLevel, withoutReservedMeta } from "./mcp-server.ts";

type Id = string | number;

export interface FastCallFacts {
  readonly principal: Principal;
  /** `_meta` keys taken from HTTP headers (trace context, signature); the request's own win. */
  readonly metaFromHeaders: Readonly<Record<string, unknown>>;
}

export class HttpToolCalls {
  readonly #gateway: Gateway;
  /** Calls in flight by session and request id, for `notifications/cancelled`. */
  readonly #inFlight = new Map<string, Map<Id, AbortController>>();

  constructor(gateway: Gateway) {
    this.#gateway = gateway;
  }

  /**
   * Answers `body` if it is a `tools/call` this path can serve (see the module comment) and returns
   * true; returns false, touching nothing, to leave it to the SDK.
   */
  serve(
    sessionId: string,
    server: Server,
    req: IncomingMessage,
    res: ServerResponse,
    body: unknown,
    facts: FastCallFacts,
  ): boolean {
    if (!isPlainObject(body) || body.method !== "tools/call") return false;
    const id = body.id;
    if (typeof id !== "string" && typeof id !== "number") return false;
    const params = body.params;
    if (!isPlainObject(params) || typeof params.name !== "string") return false;
    if (params.arguments !== undefined && !isPlainObject(params.arguments)) return false;
    const meta = params._meta;
    if (meta !== undefined && (!isPlainObject(meta) || meta.progressToken !== undefined)) return false;
    if (!acceptsJson(req)) return false;
    const capabilities = server.getClientCapabilities();
    if (capabilities?.sampling !== undefined || capabilities?.elicitation !== undefined) return false;
    if (connectionLogLevel(server) !== undefined) return false;
    const calls = this.#callsOf(sessionId);
    if (calls.has(id)) return false;
    void this.#answer(sessionId, calls, server, res, id, params.name, params.arguments, meta, facts);
    return true;
  }

  /** Handles `notifications/cancelled` for a call this path serves; false when it is not one. */
  cancel(sessionId: string, body: unknown): boolean {
    if (!isPlainObject(body) || body.method !== "notifications/cancelled") return false;
    const requestId = isPlainObject(body.params) ? body.params.requestId : undefined;
    if (typeof requestId !== "string" && typeof requestId !== "number") return false;
    const controller = this.#inFlight.get(sessionId)?.get(requestId);
    if (!controller) return false;
    controller.abort(new Error("cancelled by the client"));
    return true;
  }

  /** Forgets a closed session's bookkeeping (its calls, if any, end with their connections). */
  forget(sessionId: string): void {
    this.#inFlight.delete(sessionId);
  }

  #callsOf(sessionId: string): Map<Id, AbortController> {
    let calls = this.#inFlight.get(sessionId);
    if (!calls) {
      calls = new Map();
      this.#inFlight.set(sessionId, calls);
    }
    return calls;
  }

  async #answer(
    sessionId: string,
    calls: Map<Id, AbortController>,
    server: Server,
    res: ServerResponse,
    id: Id,
    name: string,
    args: unknown,
    meta: unknown,
    facts: FastCallFacts,
  ): Promise<void> {
    const gateway = this.#gateway;
    const controller = new AbortController();
    calls.set(id, controller);
    // A client that goes away cancels its call, as on the SDK path.
    const onClose = () => {
      if (!res.writableFinished) controller.abort(new Error("the client closed the connection"));
    };
    res.once("close", onClose);
    let answer: string;
    try {
      const result = await gateway.callTool(name, args as Record<string, unknown> | undefined, {
        principal: facts.principal,
        transport: "http",
        signal: controller.signal,
        meta: { ...facts.metaFromHeaders, ...(meta as Record<string, unknown> | undefined) },
        requestId: String(id),
      });
      const outputSchema = gateway.catalog.tool(name)?.definition.outputSchema;
      const projected = server.projectCallToolResult(withoutReservedMeta(result), outputSchema);
      answer = JSON.stringify({ jsonrpc: "2.0", id, result: projected });
    } catch (error) {
      answer = JSON.stringify({ jsonrpc: "2.0", id, error: toJsonRpcError(error, gateway.logger) });
    } finally {
      calls.delete(id);
      res.off("close", onClose);
    }
    // A cancelled call gets no response (as JSON-RPC cancellation asks); its HTTP exchange still ends.
    if (controller.signal.aborted) {
      if (!res.headersSent) res.writeHead(202).end();
      return;
    }
    if (res.destroyed) return;
    res.writeHead(200, { "content-type": "application/json", "mcp-session-id": sessionId }).end(answer);
  }
}

function acceptsJson(req: IncomingMessage): boolean {
  const accept = req.headers.accept;
  return accept === undefined || accept.includes("application/json") || accept.includes("*/*");
}

function isPlainObject(value: unknown): value is Record<string, unknown> {
  return typeof value === "object" && value !== null && !Array.isArray(value);
}
