/**
 * Adapts the gateway to the SDK's low-level `Server`: one factory builds an instance whose handlers
 * hand each request to its one answerer. The SDK's serving entries call it per stdio connection, per
 * 2025-era HTTP session, and per 2026-07-28 HTTP request, so an instance must be cheap. What it holds
 * is what a connection owns (see connection.ts).
 *
 * The low-level `Server` is used rather than `McpServer` because the gateway does not declare tools
 * with schemas of its own: it forwards lists and calls verbatim.
 */
import { randomUUID } from "node:crypto";
import {
  type ElicitRequestFormParams,
  type ElicitRequestURLParams,
  LOG_LEVEL_META_KEY,
  type McpRequestContext,
  ProtocolError,
  Server,
  type ServerContext,
} from "@modelcontextprotocol/server";
import { taskOfAnswer } from "../backends/mcp/tasks.ts";
import { JSON_RPC } from "../core/errors.ts";
import { ANONYMOUS, type CallerChannel, type LoggingLevel, type Principal } from "../core/types.ts";
import type { Gateway, RequestOptions } from "../gateway/gateway.ts";
import { VERSION } from "../version.ts";
import { assertDeclared, type ConnectionState, registerConnection } from "./connection.ts";
import { toProtocolError } from "./json-rpc-errors.ts";
import { Leg } from "./leg.ts";
import type { RequestStateTokens } from "./request-state.ts";
import { withoutReservedMeta } from "./result-shape.ts";
import { envelopeOf, type InputRequired, InputRounds } from "./rounds.ts";
import { serveSkills } from "./skills.ts";
import {
  asGatewayTask,
  declareTasks,
  requestTakesTasks,
  serveTasks,
  startLegacyTask,
  TaskCreated,
} from "./tasks.ts";
import { answerToolCall, type CallSite, callOptions, shapeFor } from "./tool-call.ts";

export interface ServerFactoryOptions {
  /** Resolves the principal for a request (HTTP auth); stdio uses the configured local principal. */
  readonly principalOf?: (ctx: ServerContext) => Principal;
  /** How requests arrive, for the audit log. */
  readonly transport?: "stdio" | "http";
  /** The profile this endpoint serves (config `profiles`); absent for the default endpoint. */
  readonly profile?: string | undefined;
  /** `_meta` keys the transport learned elsewhere (HTTP headers); the request's own `_meta` wins. */
  readonly metaOf?: (ctx: ServerContext) => Readonly<Record<string, unknown>> | undefined;
  /** How 2026-07-28 request states are signed and whose they are (replicas share the key). */
  readonly requestStates?: RequestStateTokens | undefined;
}

export type ServerFactory = (context?: McpRequestContext, owner?: Principal) => Server;

export function createServerFactory(gateway: Gateway, options: ServerFactoryOptions = {}): ServerFactory {
  const info = { name: gateway.config.gateway.name, version: VERSION };
  const principalOf = options.principalOf ?? (() => ANONYMOUS);
  const transport = options.transport ?? "stdio";
  const profile = options.profile;
  // Shared by every instance of this factory: a 2026-07-28 client's retry may arrive on a new instance.
  const rounds = new InputRounds(gateway, options.requestStates);

  /**
   * `owner`: the principal of a long-lived connection (stdio, a 2025-era HTTP session), given by the
   * transport that opens it; such a connection may set a log level and subscribe. Per-request
   * instances (2026-07-28) name their principal with each request instead.
   */
  /** Who a per-request instance serves, from the authentication its request carries. */
  const principalOfInstance = (context?: McpRequestContext): Principal =>
    context?.authInfo ? principalOf({ http: { authInfo: context.authInfo } } as ServerContext) : ANONYMOUS;

  return function createServer(context?: McpRequestContext, owner?: Principal): Server {
    const era = context?.era ?? "legacy";
    const server = new GatewayServer(info, {
      capabilities: {
        tools: { listChanged: true },
        resources: { subscribe: true, listChanged: true },
        prompts: { listChanged: true },
        logging: {},
        completions: {},
      },
      instructions: instructionsFor(gateway, owner ?? principalOfInstance(context), profile),
    });
    const state: ConnectionState = {
      principal: owner ?? ANONYMOUS,
      profile,
      session: owner ? randomUUID() : undefined,
      logLevel: undefined,
      subscriptions: new Set(),
    };
    registerConnection(server, state);
    serveSkills(server, gateway, { principalOf, profile, modern: era === "modern" });
    declareTasks(server, era);
    serveTasks(server, gateway, era, principalOf);
    /** Whether the request's client takes tasks: per request in 2026-07-28, per connection in 2025. */
    const takesTasks = (ctx: ServerContext): boolean =>
      era === "modern" ? requestTakesTasks(ctx) : server.getClientCapabilities()?.tasks !== undefined;
    if (owner) gateway.attachClient(state);
    server.onclose = () => {
      // Most instances (every 2026-07-28 request has its own) never held anything.
      if (owner || state.subscriptions.size > 0 || state.logLevel !== undefined) gateway.release(state);
    };

    /** The log level this request asked for: per connection in 2025, per request in 2026-07-28. */
    const logLevelOf = (ctx: ServerContext): LoggingLevel | undefined | null =>
      era === "modern"
        ? ((envelopeOf(ctx)[LOG_LEVEL_META_KEY] as LoggingLevel | undefined) ?? null)
        : state.logLevel;

    /**
     * The client session of a request: the connection's own; a 2026-07-28 client has none, so its
     * principal stands for it.
     */
    const sessionOf = (ctx: ServerContext): string => state.session ?? `principal:${principalOf(ctx).id}`;

    /** What this request's path contributes to a call (see protocol/tool-call.ts). */
    const siteOf = (ctx: ServerContext, leg?: Leg): CallSite => ({
      principal: principalOf(ctx),
      transport,
      profile,
      session: sessionOf(ctx),
      signal: ctx.mcpReq.signal,
      headerMeta: options.metaOf?.(ctx),
      logLevel: logLevelOf(ctx),
      progress: leg?.wantsProgress ? (update) => leg.progress(update) : undefined,
      project: (result, outputSchema) => server.projectCallToolResult(result as never, outputSchema) as never,
      settled: leg ? () => leg.settled() : undefined,
    });

    /** The gateway's view of a request that is not a tool call. */
    const requestOptions = (ctx: ServerContext): RequestOptions =>
      callOptions({ id: ctx.mcpReq.id, meta: ctx.mcpReq._meta, name: "" }, siteOf(ctx));

    /**
     * Runs a request other than a tool call whose backend may ask the client for input while serving
     * it (`prompts/get`, `resources/read`): a 2025-era client is asked directly; a 2026-07-28 client
     * through input_required rounds, as for tool calls.
     */
    const askingClient = async <T>(
      ctx: ServerContext,
      run: (extra: Pick<RequestOptions, "signal" | "client">) => Promise<T>,
    ): Promise<T | InputRequired> => {
      // Like a first list, these wait for servers still starting: they name what the servers offer.
      await gateway.settled();
      const leg = new Leg(ctx, logLevelOf(ctx));
      if (era === "modern") {
        const outcome = await rounds.serve(ctx, leg, principalOf(ctx), (suspended) =>
          run({ signal: suspended.signal, client: suspended.client }),
        );
        await leg.settled();
        return outcome.kind === "result" ? outcome.result : outcome.inputRequired;
      }
      try {
        return await run({ client: pushChannel(ctx, leg, server) });
      } finally {
        await leg.settled();
      }
    };

    // Each server hears that its client's roots may have changed, and asks again if it cares.
    server.setNotificationHandler("notifications/roots/list_changed", () => {
      for (const backend of gateway.backends()) backend.rootsListChanged?.();
    });
    // A client's first list waits (within gateway.startupWaitMs) for servers still starting.
    server.setRequestHandler("tools/list", async (_request, ctx) => {
      await gateway.settled();
      return {
        tools: gateway.visibilityFor(profile).tools(principalOf(ctx), { tasks: takesTasks(ctx) }) as never,
      };
    });
    server.setRequestHandler("tools/call", async (request, ctx) => {
      const call = {
        id: ctx.mcpReq.id,
        name: request.params.name,
        arguments: request.params.arguments,
        meta: ctx.mcpReq._meta,
      };
      const leg = new Leg(ctx, logLevelOf(ctx));
      if (era === "modern") {
        // 2026-07-28 clients cannot be sent requests; questions travel as input_required rounds. The
        // suspended call, not this request, owns the signal, the client and progress: a retry carries on.
        const site = siteOf(ctx);
        const outcome = await rounds.serve(ctx, leg, site.principal, (suspended) =>
          asJsonRpc(gateway, () =>
            gateway.callTool(call.name, call.arguments, {
              ...callOptions(call, site),
              signal: suspended.signal,
              client: suspended.client,
              ...(suspended.onProgress ? { onProgress: suspended.onProgress } : {}),
            }),
          ),
        );
        await leg.settled();
        if (outcome.kind !== "result") return outcome.inputRequired as never;
        const task = takesTasks(ctx)
          ? await asGatewayTask(gateway, site.principal, call.name, outcome.result)
          : undefined;
        return (task ?? shapeFor(gateway, call.name, outcome.result, site.project)) as never;
      }
      if ((request.params as { task?: unknown }).task !== undefined) {
        // A 2025-11-25 call made as a task: answered at once, run on (protocol/tasks.ts).
        const site = siteOf(ctx);
        const created = await startLegacyTask(gateway, site.principal, call.name, async (client, signal) => {
          const result = await gateway.callTool(call.name, call.arguments, {
            ...callOptions(call, site),
            signal,
            client,
          });
          return taskOfAnswer(result) ? result : shapeFor(gateway, call.name, result, site.project);
        });
        throw new TaskCreated(created);
      }
      const answer = await answerToolCall(gateway, call, {
        ...siteOf(ctx, leg),
        client: pushChannel(ctx, leg, server),
      });
      if (answer.kind === "result") return answer.result as never;
      if (answer.kind === "error")
        throw new ProtocolError(answer.error.code, answer.error.message, answer.error.data);
      // Cancelled: the SDK sends no response to a cancelled request; this only ends the handler.
      throw new ProtocolError(JSON_RPC.INTERNAL_ERROR, "The request was cancelled.");
    });
    server.setRequestHandler("resources/list", async (_request, ctx) => {
      await gateway.settled();
      return { resources: gateway.visibilityFor(profile).resources(principalOf(ctx)) as never };
    });
    server.setRequestHandler("resources/templates/list", async (_request, ctx) => {
      await gateway.settled();
      return {
        resourceTemplates: gateway.visibilityFor(profile).resourceTemplates(principalOf(ctx)) as never,
      };
    });
    server.setRequestHandler(
      "resources/read",
      (request, ctx) =>
        askingClient(ctx, (extra) =>
          asJsonRpc(gateway, () =>
            gateway.readResource(request.params.uri, { ...requestOptions(ctx), ...extra }),
          ).then(withoutReservedMeta),
        ) as never,
    );
    server.setRequestHandler("prompts/list", async (_request, ctx) => {
      await gateway.settled();
      return { prompts: gateway.visibilityFor(profile).prompts(principalOf(ctx)) as never };
    });
    server.setRequestHandler(
      "prompts/get",
      (request, ctx) =>
        askingClient(ctx, (extra) =>
          asJsonRpc(gateway, () =>
            gateway.getPrompt(request.params.name, request.params.arguments, {
              ...requestOptions(ctx),
              ...extra,
            }),
          ).then(withoutReservedMeta),
        ) as never,
    );
    // Like a first list, a completion waits for servers still starting: it names what they offer.
    server.setRequestHandler("completion/complete", async (request, ctx) => {
      await gateway.settled();
      return asJsonRpc(gateway, () => gateway.complete(request.params, requestOptions(ctx))).then(
        withoutReservedMeta,
      ) as never;
    });
    // 2025-era methods: the SDK answers them only on 2025-era instances, so `state` is a connection's.
    /** A per-request instance learns its principal from the request it serves. */
    const holderOf = (ctx: ServerContext): ConnectionState => {
      if (!owner) state.principal = principalOf(ctx);
      return state;
    };
    server.setRequestHandler("logging/setLevel", async (request, ctx) => {
      holderOf(ctx);
      state.logLevel = request.params.level;
      await gateway.setLogLevel(state, request.params.level);
      await state.onChange?.();
      return {};
    });
    server.setRequestHandler("resources/subscribe", async (request, ctx) => {
      const { uri } = request.params;
      await asJsonRpc(gateway, () => gateway.subscribe(uri, holderOf(ctx)));
      state.subscriptions.add(uri);
      await state.onChange?.();
      return {};
    });
    server.setRequestHandler("resources/unsubscribe", async (request) => {
      const { uri } = request.params;
      state.subscriptions.delete(uri);
      await asJsonRpc(gateway, () => gateway.unsubscribe(uri, state));
      await state.onChange?.();
      return {};
    });
    return server;
  };
}

/**
 * The gateway's own sentence, then what each server the principal may see told its clients, under the
 * server's name. Read when an instance is made: at initialize for a 2025-era session, per request for
 * 2026-07-28.
 */
function instructionsFor(gateway: Gateway, principal: Principal, profile: string | undefined): string {
  const sections = [
    "Switchboard gateway: tools from several MCP servers, named <server>" +
      `${gateway.config.gateway.separator}<tool>.`,
  ];
  for (const backend of gateway.backends()) {
    const text = backend.instructions?.()?.trim();
    if (text && gateway.maySeeServer(principal, backend.name, profile))
      sections.push(`## ${backend.name}\n${text}`);
  }
  return sections.join("\n\n");
}

/**
 * A 2025-era client is asked directly, with requests related to its call: over HTTP they travel on the
 * call's response stream and its answers come back on the same session.
 */
function pushChannel(ctx: ServerContext, leg: Leg, server: Server): CallerChannel {
  return {
    get capabilities() {
      return server.getClientCapabilities() ?? {};
    },
    createMessage: (params, signal) => {
      assertDeclared(server.getClientCapabilities(), "sampling/createMessage", params);
      return ctx.mcpReq.requestSampling(params, { signal });
    },
    elicit: (params, signal) => {
      assertDeclared(server.getClientCapabilities(), "elicitation/create", params);
      return ctx.mcpReq.elicitInput(params as ElicitRequestFormParams | ElicitRequestURLParams, { signal });
    },
    // Related to the call, so that over HTTP it travels on the call's response stream.
    listRoots: async (signal) =>
      server.getClientCapabilities()?.roots
        ? ctx.mcpReq.send({ method: "roots/list" }, { signal })
        : undefined,
    log: (message) => leg.log(message),
  };
}

/**
 * Request-level failures become JSON-RPC errors, in one place: a GatewayError maps through
 * `jsonRpcCode`; a JSON-RPC error from a backend keeps its code and message; anything else is
 * -32603, logged with its stack and never shown to the client.
 */
export async function asJsonRpc<T>(gateway: Gateway, run: () => Promise<T>): Promise<T> {
  try {
    return await run();
  } catch (error) {
    throw toProtocolError(error, gateway.logger);
  }
}

/**
 * The SDK validates the params of spec methods before their handlers run and, when they do not fit,
 * throws a plain Error whose message is the schema errors as JSON: the client would get -32603 and a
 * dump. The gateway's own handlers throw ProtocolErrors only (asJsonRpc), so anything else here is the
 * SDK refusing the params: -32602, in one line.
 */
class GatewayServer extends Server {
  protected override _wrapHandler(
    method: string,
    handler: Parameters<Server["_wrapHandler"]>[1],
  ): ReturnType<Server["_wrapHandler"]> {
    const inner = super._wrapHandler(method, handler);
    return async (request, ctx) => {
      try {
        return await inner(request, ctx);
      } catch (error) {
        if (error instanceof TaskCreated) return error.result as never;
        if (ProtocolError.isInstance(error)) throw error;
        throw new ProtocolError(
          JSON_RPC.INVALID_PARAMS,
          `Invalid params for ${method}: ${describeIssues(error)}`,
        );
      }
    };
  }
}

function describeIssues(error: unknown): string {
  try {
    const issues = JSON.parse((error as Error).message) as { path?: unknown[]; message?: string }[];
    return issues.map((i) => `${(i.path ?? []).join(".") || "params"}: ${i.message}`).join("; ");
  } catch {
    return "they do not match the method's schema";
  }
}
