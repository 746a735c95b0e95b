/**
 * Serves `tools/call` on an established 2025-era stdio session without the SDK's request pipeline
 * (see stdio-transport.ts for why). It does exactly what the SDK path does for the call — progress,
 * cancellation, the era's result projection, JSON-RPC errors mapped in one place — so a client cannot
 * tell which path answered. Anything it is not sure about is left to the SDK.
 */
import type { Server } from "@modelcontextprotocol/server";
import type { Gateway, RequestOptions } from "../gateway/gateway.ts";
import { toJsonRpcError } from "./json-rpc-errors.ts";
import { waitAfterProgress, withoutReservedMeta } from "./mcp-server.ts";
import type { FastPath, GatewayStdioTransport } from "./stdio-transport.ts";

type Id = string | number;

export function createToolCallFastPath(
  gateway: Gateway,
  transport: GatewayStdioTransport,
  pinnedServer: () => Server | undefined,
  /** Adds what the connection contributes to a call: its log level and a channel to its client. */
  withConnection: (options: RequestOptions) => RequestOptions = (options) => options,
): FastPath {
  // A 2025-era session is established once the client sends `notifications/initialized`; 2026-07-28
  // clients never send it, so their requests always take the SDK path (which handles their envelope).
  let established = false;
  const inFlight = new Map<Id, AbortController>();

  const serve = async (
    id: Id,
    name: string,
    args: Record<string, unknown> | undefined,
    meta: Record<string, unknown>,
  ) => {
    const controller = new AbortController();
    inFlight.set(id, controller);
    const progressToken = meta.progressToken as Id | undefined;
    let lastProgressAt: number | undefined;
    if (progressToken !== undefined) {
      meta = { ...meta };
      delete meta.progressToken;
    }
    try {
      const result = await gateway.callTool(
        name,
        args,
        withConnection({
          signal: controller.signal,
          meta,
          requestId: String(id),
          ...(progressToken !== undefined
            ? {
                onProgress: (update) => {
                  lastProgressAt = performance.now();
                  transport.write({
                    jsonrpc: "2.0",
                    method: "notifications/progress",
                    params: { progressToken, ...update },
                  });
                },
              }
            : {}),
        }),
      );
      if (controller.signal.aborted) return; // cancelled: the client expects no response
      await waitAfterProgress(lastProgressAt);
      const server = pinnedServer();
      const outputSchema = gateway.catalog.tool(name)?.definition.outputSchema;
      const passed = withoutReservedMeta(result);
      const projected = server ? server.projectCallToolResult(passed, outputSchema) : passed;
      transport.write({ jsonrpc: "2.0", id, result: projected });
    } catch (error) {
      if (controller.signal.aborted) return;
      transport.write({ jsonrpc: "2.0", id, error: toJsonRpcError(error, gateway.logger) });
    } finally {
      inFlight.delete(id);
    }
  };

  return (message) => {
    const method = message.method;
    if (method === "notifications/initialized") {
      established = true;
      return false;
    }
    if (method === "notifications/cancelled") {
      const requestId = (message.params as { requestId?: Id } | undefined)?.requestId;
      const controller = requestId === undefined ? undefined : inFlight.get(requestId);
      if (!controller) return false;
      controller.abort(new Error("cancelled by the client"));
      return true;
    }
    if (!established || method !== "tools/call") return false;
    const id = message.id;
    const params = message.params as { name?: unknown; arguments?: unknown; _meta?: unknown } | undefined;
    if ((typeof id !== "string" && typeof id !== "number") || inFlight.has(id)) return false;
    if (typeof params !== "object" || params === null || typeof params.name !== "string") return false;
    if (params.arguments !== undefined && !isPlainObject(params.arguments)) return false;
    if (params._meta !== undefined && !isPlainObject(params._meta)) return false;
    void serve(
      id,
      params.name,
      params.arguments as Record<string, unknown> | undefined,
      (params._meta as Record<string, unknown> | undefined) ?? {},
    );
    return true;
  };
}

function isPlainObject(value: unknown): value is Record<string, unknown> {
  return typeof value === "object" && value !== null && !Array.isArray(value);
}
