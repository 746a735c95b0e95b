/**
 * Serves the gateway on this process's stdin/stdout. stdout carries only protocol messages; logs go
 * to stderr. When the client closes stdin, `onClientGone` fires so the process can shut down, as the
 * stdio binding asks of servers.
 */
import type { Server } from "@modelcontextprotocol/server";
import { serveStdio } from "@modelcontextprotocol/server/stdio";
import { describeError } from "../../core/errors.ts";
import type { Gateway } from "../../gateway/gateway.ts";
import { LiveServers } from "../../protocol/connection.ts";
import { forwardNotifications } from "../../protocol/notifications.ts";
import { createServerFactory } from "../../protocol/sdk-server.ts";
import { createToolCallFastPath } from "./fast-path.ts";
import { GatewayStdioTransport } from "./transport.ts";

export interface StdioServing {
  close(): Promise<void>;
}

export interface StdioOptions {
  /** Serve one profile's view of the gateway (config `profiles`) instead of the whole of it. */
  readonly profile?: string | undefined;
}

export function serveGatewayOnStdio(
  gateway: Gateway,
  onClientGone: () => void,
  options: StdioOptions = {},
): StdioServing {
  const live = new LiveServers();
  const profile = options.profile;
  // Read at each request: a reload may change auth.stdioPrincipal.
  const principal = () => gateway.stdioPrincipal;
  const factory = createServerFactory(gateway, { principalOf: principal, transport: "stdio", profile });
  const stopForwarding = forwardNotifications(gateway, live);
  const transport = new GatewayStdioTransport();
  // The instance the SDK pins to the connection: the plain path projects results through its codec,
  // and takes the connection's log level and client channel from it.
  let pinned: Server | undefined;
  transport.fastPath = createToolCallFastPath(gateway, transport, principal, () => pinned, profile);
  const handle = serveStdio(
    (context) => {
      const server = factory(context, principal());
      live.add(server);
      pinned = server;
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
