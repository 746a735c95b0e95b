/**
 * Adapts the gateway to the SDK's low-level `Server`: one factory builds an instance whose handlers
 * delegate to the gateway. The SDK's serving entries call it per stdio connection, per 2025-era HTTP
 * session, and per 2026-07-28 HTTP request, so an instance must be cheap: it holds no state of its own.
 *
 * The low-level `Server` is used rather than `McpServer` because the gateway does not declare tools
 * with schemas of its own: it forwards lists and calls verbatim.
 */
import { randomUUID } from "node:crypto";
import {
  type McpRequestContext,
  ProtocolError,
  Server,
  type ServerContext,
} from "@modelcontextprotocol/server";
import { GatewayError, JSON_RPC, jsonRpcCode } from "../core/errors.ts";
import { ANONYMOUS, type Principal } from "../core/types.ts";
import type { Gateway, RequestOptions } from "../gateway/gateway.ts";
import { VERSION } from "../version.ts";

/** Instances that hold a long-lived connection, so that change notifications can reach them. */
export class LiveServers {
  readonly #servers = new Set<Server>();

  add(server: Server): void {
    this.#servers.add(server);
    const previous = server.onclose;
    server.onclose = () => {
      this.#servers.delete(server);
      previous?.();
    };
  }

  get size(): number {
    return this.#servers.size;
  }

  /** Sends to every live connection; a connection that fails to take it is dropped from the set. */
  broadcast(send: (server: Server) => Promise<void> | void): void {
    for (const server of this.#servers) {
      try {
        const sent = send(server);
        if (sent) sent.catch(() => this.#servers.delete(server));
      } catch {
        this.#servers.delete(server);
      }
    }
  }
}

/** How long a result waits after the last progress update (see `settled` below). */
const PROGRESS_GAP_MS = 3;

export interface ServerFactoryOptions {
  /** Resolves the principal for a request (HTTP auth); stdio uses the configured local principal. */
  readonly principalOf?: (ctx: ServerContext) => Principal;
}

export function createServerFactory(gateway: Gateway, options: ServerFactoryOptions = {}) {
  const info = { name: gateway.config.gateway.name, version: VERSION };
  const principalOf = options.principalOf ?? (() => ANONYMOUS);

  /**
   * The gateway's view of one request. Progress notifications are sent as they arrive; `settled`
   * waits for those still being written, so that none reaches the client after the result (a
   * client drops progress for a request it has already seen answered).
   */
  const requestOptions = (ctx: ServerContext, withProgress: boolean) => {
    const meta = { ...(ctx.mcpReq._meta ?? {}) } as Record<string, unknown>;
    const progressToken = meta.progressToken as string | number | undefined;
    delete meta.progressToken;
    const sending = new Set<Promise<void>>();
    let lastProgressAt: number | undefined;
    const options: RequestOptions = {
      principal: principalOf(ctx),
      signal: ctx.mcpReq.signal,
      meta,
      requestId: String(ctx.mcpReq.id),
      ...(withProgress && progressToken !== undefined
        ? {
            onProgress: (update) => {
              const sent = ctx.mcpReq
                .notify({ method: "notifications/progress", params: { progressToken, ...update } })
                .catch(() => undefined);
              lastProgressAt = performance.now();
              sending.add(sent);
              void sent.finally(() => sending.delete(sent));
            },
          }
        : {}),
    };
    // SDK clients dispatch notifications a microtask after responses, so a progress update that
    // arrives in the same read as the result is dropped. The result therefore waits until the last
    // update is written and a moment has passed for the client to read it on its own.
    const settled = async () => {
      if (lastProgressAt === undefined) return;
      await Promise.all(sending);
      const wait = PROGRESS_GAP_MS - (performance.now() - lastProgressAt);
      if (wait > 0) await new Promise((resolve) => setTimeout(resolve, wait));
    };
    return { options, settled };
  };

  return function createServer(_context?: McpRequestContext): Server {
    const server = new Server(info, {
      capabilities: {
        tools: { listChanged: true },
        resources: { listChanged: true },
        prompts: { listChanged: true },
        logging: {},
      },
      instructions:
        "Switchboard gateway: tools from several MCP servers, named <server>" +
        `${gateway.config.gateway.separator}<tool>.`,
    });

    server.setRequestHandler("tools/list", () => ({ tools: gateway.catalog.tools() as never }));
    server.setRequestHandler("tools/call", async (request, ctx) => {
      const { name, arguments: args } = request.params;
      const call = requestOptions(ctx, true);
      const result = await asJsonRpc(gateway, () => gateway.callTool(name, args, call.options));
      await call.settled();
      const route = gateway.catalog.tool(name);
      return server.projectCallToolResult(result as never, route?.definition.outputSchema) as never;
    });
    server.setRequestHandler("resources/list", () => ({ resources: gateway.catalog.resources() as never }));
    server.setRequestHandler("resources/templates/list", () => ({
      resourceTemplates: gateway.catalog.resourceTemplates() as never,
    }));
    server.setRequestHandler(
      "resources/read",
      (request, ctx) =>
        asJsonRpc(gateway, () =>
          gateway.readResource(request.params.uri, requestOptions(ctx, false).options),
        ) as never,
    );
    server.setRequestHandler("prompts/list", () => ({ prompts: gateway.catalog.prompts() as never }));
    server.setRequestHandler(
      "prompts/get",
      (request, ctx) =>
        asJsonRpc(gateway, () =>
          gateway.getPrompt(
            request.params.name,
            request.params.arguments,
            requestOptions(ctx, false).options,
          ),
        ) as never,
    );
    return server;
  };
}

/**
 * Request-level failures become JSON-RPC errors, in one place: a GatewayError maps through
 * `jsonRpcCode`; a JSON-RPC error from a backend keeps its code and message; anything else is
 * -32603, logged with its stack and never shown to the client.
 */
async function asJsonRpc<T>(gateway: Gateway, run: () => Promise<T>): Promise<T> {
  try {
    return await run();
  } catch (error) {
    if (error instanceof GatewayError) {
      throw new ProtocolError(jsonRpcCode(error) ?? JSON_RPC.INTERNAL_ERROR, error.message, {
        code: error.code,
        ...error.data,
      });
    }
    if (ProtocolError.isInstance(error)) throw error;
    const id = randomUUID();
    gateway.logger.error({ err: error, errorId: id }, "unexpected error while serving a request");
    throw new ProtocolError(JSON_RPC.INTERNAL_ERROR, `Internal error (id ${id}); see the gateway log.`);
  }
}
