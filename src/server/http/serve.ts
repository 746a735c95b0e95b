/**
 * The gateway on an HTTP server of its own: the request handler (handler.ts) on a `node:http` server,
 * listening where the config or the command line says.
 */
import { createServer, type Server as HttpServer } from "node:http";
import type { Gateway } from "../../gateway/gateway.ts";
import { createGatewayHttpHandler, type HandlerOptions } from "./handler.ts";
import { listenOn } from "./listen.ts";

export interface HttpOptions extends HandlerOptions {
  readonly host: string;
  readonly port: number;
}

export interface HttpServing {
  /** The MCP endpoint, e.g. http://127.0.0.1:8931/mcp. */
  readonly url: string;
  readonly port: number;
  /** Stops accepting connections and closes sessions; call after the gateway has drained. */
  close(): Promise<void>;
  /** Stops accepting new connections, keeping in-flight requests running. */
  stopAccepting(): void;
}

export async function serveGatewayOnHttp(gateway: Gateway, options: HttpOptions): Promise<HttpServing> {
  const handler = createGatewayHttpHandler(gateway, options);
  const httpServer: HttpServer = createServer((req, res) => handler.handle(req, res));
  httpServer.headersTimeout = 30_000;
  httpServer.requestTimeout = 0; // SSE streams and long tool calls are legitimate; idle sockets time out below.
  httpServer.keepAliveTimeout = 5_000;

  const origin = await listenOn(httpServer, options.port, options.host);
  const url = `${origin}${options.path}`;
  return {
    url,
    port: Number(new URL(origin).port),
    stopAccepting() {
      httpServer.close();
    },
    async close() {
      httpServer.close();
      await handler.close();
      httpServer.closeAllConnections();
    },
  };
}
