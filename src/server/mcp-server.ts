/**
 * Adapts the gateway to the SDK's low-level `Server`: one factory builds an instance whose handlers
 * delegate to the gateway. The SDK's serving entries call it per stdio connection, per 2025-era HTTP
 * session, and per 2026-07-28 HTTP request, so an instance must be cheap. What it holds is what a
 * connection owns: the log level a 2025-era client set and the resources it subscribed to.
 *
 * The low-level `Server` is used rather than `McpServer` because the gateway does not declare tools
 * with schemas of its own: it forwards lists and calls verbatim.
 */
import {
  type ElicitRequestFormParams,
  type ElicitRequestURLParams,
  LOG_LEVEL_META_KEY,
  type McpRequestContext,
  ProtocolError,
  Server,
  type ServerContext,
} from "@modelcontextprotocol/server";
import { JSON_RPC } from "../core/errors.ts";
import {
  ANONYMOUS,
  type BackendLogMessage,
  type CallerChannel,
  type CallToolResult,
  type LoggingLevel,
  MCP_LOG_LEVELS,
  type Principal,
  type ProgressUpdate,
} from "../core/types.ts";
import type { Gateway, Holder, RequestOptions } from "../gateway/gateway.ts";
import { VERSION } from "../version.ts";
import { toProtocolError } from "./json-rpc-errors.ts";
import { envelopeOf, InputRounds } from "./rounds.ts";

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

/** How long a result waits after the last progress update (see `waitAfterProgress`). */
const PROGRESS_GAP_MS = 3;

/**
 * SDK clients dispatch notifications a microtask after responses, so a progress update that arrives in
 * the same read as the result is dropped. Every path that answers a call with progress waits here
 * until a moment has passed since its last update, so that the client reads it on its own.
 */
export async function waitAfterProgress(lastProgressAt: number | undefined): Promise<void> {
  if (lastProgressAt === undefined) return;
  const wait = PROGRESS_GAP_MS - (performance.now() - lastProgressAt);
  if (wait > 0) await new Promise((resolve) => setTimeout(resolve, wait));
}

const SEVERITY: ReadonlyMap<LoggingLevel, number> = new Map(
  MCP_LOG_LEVELS.map((level, index) => [level, index]),
);

/**
 * Whether a message at `level` passes a client's `threshold`. A 2025-era client that set no level gets
 * everything, which is what the gateway always sent; a 2026-07-28 request without a level asked for
 * none, so `undefined` there is passed as "none" by the caller.
 */
function passes(level: LoggingLevel, threshold: LoggingLevel | undefined): boolean {
  if (threshold === undefined) return true;
  return (SEVERITY.get(level) ?? 0) >= (SEVERITY.get(threshold) ?? 0);
}

/** What one connection (one `Server` instance) owns. */
interface ConnectionState extends Holder {
  /** Who opened the connection; for a per-request instance, who made its request. */
  principal: Principal;
  /** Set by a 2025-era client with `logging/setLevel`. */
  logLevel: LoggingLevel | undefined;
  readonly subscriptions: Set<string>;
}

const connections = new WeakMap<Server, ConnectionState>();

/** The log level a 2025-era connection asked for with `logging/setLevel`, if it did. */
export function connectionLogLevel(server: Server): LoggingLevel | undefined {
  return connections.get(server)?.logLevel;
}

/**
 * Whether a log message not tied to any call should be sent to this connection: only to a client
 * that asked for log messages (`logging/setLevel`), at its level, and whose access rules let it see
 * the server the message came from.
 */
export function wantsBackgroundLog(gateway: Gateway, server: Server, message: LogFromServer): boolean {
  const state = connections.get(server);
  if (state?.logLevel === undefined) return false;
  return passes(message.level, state.logLevel) && gateway.maySeeServer(state.principal, message.server);
}

/** A log message of a call, sent on that call's connection: at the connection's level, if it set one. */
function wantsCallLog(server: Server, level: LoggingLevel): boolean {
  return passes(level, connections.get(server)?.logLevel);
}

type LogFromServer = { readonly server: string } & BackendLogMessage;

/** Whether this connection subscribed to `uri` (`resources/subscribe`). */
export function isSubscribed(server: Server, uri: string): boolean {
  return connections.get(server)?.subscriptions.has(uri) ?? false;
}

/**
 * One downstream request that carries a call. Progress and log messages go out as notifications
 * related to it, so over HTTP they travel on that request's response stream; `settled` holds the
 * result back until they are written.
 */
export class Leg {
  readonly #ctx: ServerContext;
  readonly #progressToken: string | number | undefined;
  /** `null`: this request wants no log messages (a 2026-07-28 request that named no level). */
  readonly #logLevel: LoggingLevel | undefined | null;
  readonly #sending = new Set<Promise<void>>();
  #lastProgressAt: number | undefined;
  /** Set once the result may follow: nothing more can be sent about the call. */
  #answered = false;

  constructor(ctx: ServerContext, logLevel: LoggingLevel | undefined | null) {
    this.#ctx = ctx;
    this.#progressToken = ctx.mcpReq._meta?.progressToken;
    this.#logLevel = logLevel;
  }

  get wantsProgress(): boolean {
    return this.#progressToken !== undefined;
  }

  progress(update: ProgressUpdate): void {
    if (this.#progressToken === undefined) return;
    this.#send({
      method: "notifications/progress",
      params: { progressToken: this.#progressToken, ...update },
    });
    this.#lastProgressAt = performance.now();
  }

  log(message: BackendLogMessage): boolean {
    if (this.#answered) return false;
    if (this.#logLevel === null || !passes(message.level, this.#logLevel)) return true;
    this.#send({ method: "notifications/message", params: { ...message } });
    return true;
  }

  /** Resolves when the call's notifications are written and the result may follow them. */
  async settled(): Promise<void> {
    if (this.#sending.size > 0) await Promise.all(this.#sending);
    await waitAfterProgress(this.#lastProgressAt);
    this.#answered = true;
  }

  #send(notification: { method: string; params: Record<string, unknown> }): void {
    const sent = this.#ctx.mcpReq.notify(notification).catch(() => undefined);
    this.#sending.add(sent);
    void sent.finally(() => this.#sending.delete(sent));
  }
}

export interface ServerFactoryOptions {
  /** Resolves the principal for a request (HTTP auth); stdio uses the configured local principal. */
  readonly principalOf?: (ctx: ServerContext) => Principal;
  /** How requests arrive, for the audit log. */
  readonly transport?: "stdio" | "http";
  /** `_meta` keys the transport learned elsewhere (HTTP headers); the request's own `_meta` wins. */
  readonly metaOf?: (ctx: ServerContext) => Readonly<Record<string, unknown>> | undefined;
}

export function createServerFactory(gateway: Gateway, options: ServerFactoryOptions = {}) {
  const info = { name: gateway.config.gateway.name, version: VERSION };
  const principalOf = options.principalOf ?? (() => ANONYMOUS);
  // Shared by every instance of this factory: a 2026-07-28 client's retry may arrive on a new instance.
  const rounds = new InputRounds(gateway);

  /**
   * `owner`: the principal of a long-lived connection (stdio, a 2025-era HTTP session), given by the
   * transport that opens it; such a connection may set a log level and subscribe. Per-request
   * instances (2026-07-28) name their principal with each request instead.
   */
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
      instructions:
        "Switchboard gateway: tools from several MCP servers, named <server>" +
        `${gateway.config.gateway.separator}<tool>.`,
    });
    const state: ConnectionState = {
      principal: owner ?? ANONYMOUS,
      logLevel: undefined,
      subscriptions: new Set(),
    };
    connections.set(server, state);
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
     * The gateway's view of one request. The log level rides in `_meta` under the reserved key,
     * which is how a 2026-07-28 backend learns it (a 2025-era backend ignores the key and gets
     * `logging/setLevel` instead).
     */
    const requestOptions = (ctx: ServerContext, leg?: Leg): RequestOptions => {
      const meta = { ...options.metaOf?.(ctx), ...(ctx.mcpReq._meta ?? {}) } as Record<string, unknown>;
      delete meta.progressToken;
      const level = logLevelOf(ctx);
      if (level) meta[LOG_LEVEL_META_KEY] = level;
      return {
        principal: principalOf(ctx),
        ...(options.transport ? { transport: options.transport } : {}),
        signal: ctx.mcpReq.signal,
        meta,
        requestId: String(ctx.mcpReq.id),
        ...(leg?.wantsProgress ? { onProgress: (update: ProgressUpdate) => leg.progress(update) } : {}),
      };
    };

    const project = (name: string, result: CallToolResult) =>
      server.projectCallToolResult(
        withoutReservedMeta(result) as never,
        gateway.catalog.tool(name)?.definition.outputSchema,
      ) as never;

    server.setRequestHandler("tools/list", (_request, ctx) => ({
      tools: gateway.toolsFor(principalOf(ctx)) as never,
    }));
    server.setRequestHandler("tools/call", async (request, ctx) => {
      const { name, arguments: args } = request.params;
      if (era === "modern") {
        // 2026-07-28 clients cannot be sent requests; questions travel as input_required rounds.
        const leg = new Leg(ctx, logLevelOf(ctx));
        const outcome = await rounds.serve(ctx, leg, principalOf(ctx), (call) =>
          asJsonRpc(gateway, () => gateway.callTool(name, args, { ...requestOptions(ctx), ...call })),
        );
        await leg.settled();
        return outcome.kind === "result" ? project(name, outcome.result) : (outcome.inputRequired as never);
      }
      const leg = new Leg(ctx, logLevelOf(ctx));
      const client = pushChannel(ctx, leg);
      const result = await asJsonRpc(gateway, () =>
        gateway.callTool(name, args, { ...requestOptions(ctx, leg), client }),
      );
      await leg.settled();
      return project(name, result);
    });
    server.setRequestHandler("resources/list", (_request, ctx) => ({
      resources: gateway.resourcesFor(principalOf(ctx)) as never,
    }));
    server.setRequestHandler("resources/templates/list", (_request, ctx) => ({
      resourceTemplates: gateway.resourceTemplatesFor(principalOf(ctx)) as never,
    }));
    server.setRequestHandler(
      "resources/read",
      (request, ctx) =>
        asJsonRpc(gateway, () => gateway.readResource(request.params.uri, requestOptions(ctx))).then(
          withoutReservedMeta,
        ) as never,
    );
    server.setRequestHandler("prompts/list", (_request, ctx) => ({
      prompts: gateway.promptsFor(principalOf(ctx)) as never,
    }));
    server.setRequestHandler(
      "prompts/get",
      (request, ctx) =>
        asJsonRpc(gateway, () =>
          gateway.getPrompt(request.params.name, request.params.arguments, requestOptions(ctx)),
        ).then(withoutReservedMeta) as never,
    );
    server.setRequestHandler(
      "completion/complete",
      (request, ctx) =>
        asJsonRpc(gateway, () => gateway.complete(request.params, requestOptions(ctx))).then(
          withoutReservedMeta,
        ) as never,
    );
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
      return {};
    });
    server.setRequestHandler("resources/subscribe", async (request, ctx) => {
      const { uri } = request.params;
      await asJsonRpc(gateway, () => gateway.subscribe(uri, holderOf(ctx)));
      state.subscriptions.add(uri);
      return {};
    });
    server.setRequestHandler("resources/unsubscribe", async (request) => {
      const { uri } = request.params;
      state.subscriptions.delete(uri);
      await asJsonRpc(gateway, () => gateway.unsubscribe(uri, state));
      return {};
    });
    return server;
  };
}

/**
 * The reserved `io.modelcontextprotocol/*` keys of a backend's result (its serverInfo, say) describe
 * the backend's connection to the gateway, not the client's to the gateway; the SDK fills in its own.
 */
export function withoutReservedMeta<R extends { _meta?: Record<string, unknown> }>(result: R): R {
  const meta = result._meta;
  if (meta === undefined || !Object.keys(meta).some((key) => key.startsWith(RESERVED_META_PREFIX)))
    return result;
  const kept = Object.fromEntries(
    Object.entries(meta).filter(([key]) => !key.startsWith(RESERVED_META_PREFIX)),
  );
  const { _meta: _dropped, ...rest } = result;
  return (Object.keys(kept).length > 0 ? { ...rest, _meta: kept } : rest) as R;
}

const RESERVED_META_PREFIX = "io.modelcontextprotocol/";

/**
 * For a path that serves a 2025-era connection's `tools/call` outside the SDK's handlers (the stdio
 * fast path): adds what the SDK path adds to a call, namely the connection's log level in `_meta`
 * and a channel that asks the client and sends it the call's log messages. Over stdio the questions
 * need no link to the call: there is one stream. `write` sends a notification in order with the result.
 */
export function connectionCallOptions(
  server: Server | undefined,
  write: (notification: { jsonrpc: "2.0"; method: string; params: Record<string, unknown> }) => void,
): (options: RequestOptions) => RequestOptions {
  if (!server) return (options) => options;
  const client: CallerChannel = {
    createMessage: (params, signal) => server.createMessage(params, { signal }),
    elicit: (params, signal) =>
      server.elicitInput(params as ElicitRequestFormParams | ElicitRequestURLParams, { signal }),
    log: (message) => {
      if (wantsCallLog(server, message.level)) {
        write({ jsonrpc: "2.0", method: "notifications/message", params: { ...message } });
      }
      return true;
    },
  };
  return (options) => {
    const level = connections.get(server)?.logLevel;
    return {
      ...options,
      ...(level ? { meta: { ...options.meta, [LOG_LEVEL_META_KEY]: level } } : {}),
      client,
    };
  };
}

/**
 * A 2025-era client is asked directly, with requests related to its call: over HTTP they travel on the
 * call's response stream and its answers come back on the same session.
 */
function pushChannel(ctx: ServerContext, leg: Leg): CallerChannel {
  return {
    createMessage: (params, signal) => ctx.mcpReq.requestSampling(params, { signal }),
    elicit: (params, signal) =>
      ctx.mcpReq.elicitInput(params as ElicitRequestFormParams | ElicitRequestURLParams, { signal }),
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
