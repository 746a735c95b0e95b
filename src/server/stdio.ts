/**
 * Serves the gateway on this process's stdin/stdout. stdout carries only protocol messages; logs go
 * to stderr. When the client closes stdin, `onClientGone` fires so the process can shut down, as the
 * stdio binding asks of servers.
 */
import type { Server } from "@modelcontextprotocol/server";
import { serveStdio } from "@modelcontextprotocol/server/stdio";
import { describeError } from "../core/errors.ts";
import type { Gateway, RequestOptions } from "../gateway/gateway.ts";
import { connectionCallOptions, createServerFactory, LiveServers } from "./mcp-server.ts";
import { forwardNotifications } from "./notifications.ts";
import { GatewayStdioTransport } from "./stdio-transport.ts";
import { createToolCallFastPath } from "./tool-call-fast-path.ts";

export interface StdioServing {
  close(): Promise<void>;
}

export function serveGatewayOnStdio(gateway: Gateway, onClientGone: () => void): StdioServing {
  const live = new LiveServers();
  const principal = gateway.stdioPrincipal;
  const factory = createServerFactory(gateway, { principalOf: () => principal, transport: "stdio" });
  const stopForwarding = forwardNotifications(gateway, live);
  const transport = new GatewayStdioTransport();
  // The instance the SDK pins to the connection: the fast path projects results through its codec,
  // and takes the connection's log level and client channel from it.
  let pinned: Server | undefined;
  let withConnection: (options: RequestOptions) => RequestOptions = (options) => options;
  transport.fastPath = createToolCallFastPath(
    gateway,
    transport,
    () => pinned,
    (options) => withConnection({ ...options, principal, transport: "stdio" }),
  );
  const handle = serveStdio(
    (context) => {
      const server = factory(context, principal);
      live.add(server);
      pinned = server;
      withConnection = connectionCallOptions(server, (notification) => transport.write(notification));
      return server;
    },
    {
      transport,
      onerror: (error) => gateway.logger.debug({ err: describeError(error) }, "stdio protocol error"),
    },
  );
  process.stdin.once("end", onClientGone);
  process.stdin.once("close", onClientGone);
  return {
    async close() {
      stopForwarding();
      process.stdin.off("end", onClientGone);
      process.stdin.off("close", onClientGone);
      await handle.close();
    },
  };
}
