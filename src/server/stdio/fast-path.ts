/**
 * Reads `tools/call` requests of an established 2025-era stdio session, and plain ones of a 2026-07-28
 * connection (protocol/modern-call.ts), off the line and writes their answers, without the SDK's request pipeline (see transport.ts for why). What the call means is the
 * one answerer's (protocol/tool-call.ts); this file is only how its bytes are read and written, so a
 * client cannot tell which path answered. Anything else is left to the SDK.
 */
import type { Server } from "@modelcontextprotocol/server";
import type { Principal } from "../../core/types.ts";
import type { Gateway } from "../../gateway/gateway.ts";
import { connectionClient, connectionLogLevel, connectionSession } from "../../protocol/connection.ts";
import { cancelledRequestId, InFlightCalls, plainToolCall } from "../../protocol/in-flight.ts";
import { answerModernPlainCall, modernPlainCall } from "../../protocol/modern-call.ts";
import { answerToolCall, responseMessage, type ToolCallRequest } from "../../protocol/tool-call.ts";
import type { FastPath, GatewayStdioTransport } from "./transport.ts";

export function createToolCallFastPath(
  gateway: Gateway,
  transport: GatewayStdioTransport,
  /** The principal of stdio clients, read at each call (a reload may change it). */
  principal: () => Principal,
  /** The instance the SDK pins to the connection, once the client has initialized. */
  pinnedServer: () => Server | undefined,
  /** The profile served (`serve --stdio --profile`); undefined for the whole gateway. */
  profile?: string,
): FastPath {
  // A 2025-era session is established once the client sends `notifications/initialized`; 2026-07-28
  // clients never send it: only their plain calls are served here, the rest by the SDK.
  let established = false;
  const inFlight = new InFlightCalls();
  const write = (message: unknown) => transport.write(message);

  const serve = async (server: Server, request: ToolCallRequest, controller: AbortController) => {
    const token = request.meta?.progressToken as string | number | undefined;
    try {
      const answer = await answerToolCall(gateway, request, {
        principal: principal(),
        transport: "stdio",
        profile,
        session: connectionSession(server),
        signal: controller.signal,
        logLevel: connectionLogLevel(server),
        progress:
          token === undefined
            ? undefined
            : (update) =>
                write({
                  jsonrpc: "2.0",
                  method: "notifications/progress",
                  params: { progressToken: token, ...update },
                }),
        client: connectionClient(server, write),
        project: (result, outputSchema) => server.projectCallToolResult(result, outputSchema),
      });
      if (answer.kind !== "cancelled") write(responseMessage(request.id, answer));
    } finally {
      inFlight.end(request.id, controller);
    }
  };

  const serveModern = async (server: Server, request: ToolCallRequest, controller: AbortController) => {
    try {
      const answer = await answerModernPlainCall(gateway, request, {
        principal: principal(),
        transport: "stdio",
        profile,
        session: connectionSession(server),
        signal: controller.signal,
        abort: (reason) => controller.abort(reason),
      });
      if (answer) write(answer.message);
    } finally {
      inFlight.end(request.id, controller);
    }
  };

  return (message) => {
    if (message.method === "notifications/initialized") {
      established = true;
      return false;
    }
    const cancelled = cancelledRequestId(message);
    if (cancelled !== undefined) return inFlight.cancel(cancelled);
    const server = pinnedServer();
    if (!server) return false;
    if (!established) {
      // A 2026-07-28 connection: its plain calls are answered here too (protocol/modern-call.ts).
      const modern = modernPlainCall(message);
      const controller = modern && inFlight.start(modern.id);
      if (!modern || !controller) return false;
      void serveModern(server, modern, controller);
      return true;
    }
    const request = plainToolCall(message);
    if (!request) return false;
    const controller = inFlight.start(request.id);
    if (!controller) return false;
    void serve(server, request, controller);
    return true;
  };
}
