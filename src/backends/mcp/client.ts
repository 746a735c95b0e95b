/**
 * The SDK client as an MCP client backend uses it: both protocol eras (`server/discover` first, then
 * the 2025 `initialize` handshake; see connect.ts), list changes reported to the backend, log and
 * resource-update notifications passed to the gateway, and the server's sampling, elicitation and
 * roots requests forwarded to the client whose call caused them (roots outside a call are answered
 * from the server's config).
 *
 * On 2026-07-28 connections those requests come from the SDK fulfilling an `input_required` result,
 * inside `callScope` (see GatewayClient); on 2025-era connections they arrive on their own, and the
 * gateway picks the call by what is in flight on this server.
 */
import { AsyncLocalStorage } from "node:async_hooks";
import {
  Client,
  type ListRootsResult,
  ProtocolError,
  ProtocolErrorCode,
  type Root,
} from "@modelcontextprotocol/client";
import { describeError } from "../../core/errors.ts";
import {
  type BackendCatalog,
  type BackendEvents,
  type BackendLogMessage,
  type CallerChannel,
  type ListChanged,
  NOTE_ASKED_CLIENT,
} from "../../core/types.ts";
import type { Logger } from "../../observability/logger.ts";

/**
 * The abort signal of the tool call whose `input_required` result the SDK is fulfilling, for the
 * request handlers it calls. The SDK runs that fulfilment from the response path, outside the call's
 * async context, so it is set again here from the request options the SDK hands over.
 */
const callScope = new AsyncLocalStorage<AbortSignal | undefined>();

/** The SDK client, with the tool call in scope while it fulfils an `input_required` result. */
class GatewayClient extends Client {
  protected override _resolveNonCompleteResult(
    ...args: Parameters<Client["_resolveNonCompleteResult"]>
  ): Promise<unknown> {
    return callScope.run(args[1].options?.signal, () => super._resolveNonCompleteResult(...args));
  }
}

export interface ClientOptions {
  readonly server: string;
  readonly clientInfo: { readonly name: string; readonly version: string };
  readonly log: Logger;
  /** Where the backend's events go (once it started). */
  readonly events: () => BackendEvents | undefined;
  /** The server said these lists changed. */
  readonly onChanged: (client: Client, changed: ListChanged) => void;
  /** The roots the server is given when it asks outside a call (config `roots`). */
  readonly roots: readonly Root[];
  /**
   * "negotiate": `server/discover` first, on the connection itself, waiting at most `probeTimeoutMs`
   * for its answer; "legacy": straight to `initialize`.
   */
  readonly era: "negotiate" | "legacy";
  readonly probeTimeoutMs: number;
}

export function newClient(options: ClientOptions): Client {
  const { server, clientInfo, log, events } = options;
  const onChanged = (changed: ListChanged) => () => options.onChanged(client, changed);
  const client = new GatewayClient({ name: clientInfo.name, version: clientInfo.version }, {
    versionNegotiation:
      options.era === "negotiate"
        ? { mode: "auto", probe: { timeoutMs: options.probeTimeoutMs } }
        : undefined,
    // Declared so that servers may ask; each question goes to the client that made the call, which
    // may still refuse it (see answerServerRequests). Roots have an answer even outside a call.
    capabilities: { sampling: {}, elicitation: { form: {}, url: {} }, roots: { listChanged: true } },
    listChanged: {
      tools: { autoRefresh: false, debounceMs: 20, onChanged: onChanged({ tools: true }) },
      prompts: { autoRefresh: false, debounceMs: 20, onChanged: onChanged({ prompts: true }) },
      resources: { autoRefresh: false, debounceMs: 20, onChanged: onChanged({ resources: true }) },
    },
  } as ConstructorParameters<typeof GatewayClient>[1]);
  client.setNotificationHandler("notifications/message", (notification) => {
    const params = notification.params as BackendLogMessage;
    events()?.log({
      level: params.level,
      data: params.data,
      ...(params.logger ? { logger: params.logger } : {}),
    });
  });
  client.setNotificationHandler("notifications/resources/updated", (notification) => {
    events()?.resourceUpdated(notification.params.uri);
  });
  answerServerRequests(client, server, events);
  answerRoots(client, server, events, options.roots);
  client.onerror = (error) => log.debug({ err: describeError(error) }, "transport error");
  return client;
}

/** Everything the server offers, for the lists its capabilities say it has. */
export async function listAll(client: Client): Promise<BackendCatalog> {
  const caps = client.getServerCapabilities() ?? {};
  const [tools, resources, resourceTemplates, prompts] = await Promise.all([
    caps.tools ? client.listTools().then((r) => r.tools) : [],
    caps.resources ? client.listResources().then((r) => r.resources) : [],
    caps.resources
      ? client
          .listResourceTemplates()
          .then((r) => r.resourceTemplates)
          .catch(() => [])
      : [],
    caps.prompts ? client.listPrompts().then((r) => r.prompts) : [],
  ]);
  return { tools, resources, resourceTemplates, prompts };
}

/** `catalog` with the lists that changed read again. */
export async function relist(
  client: Client,
  catalog: BackendCatalog,
  changed: ListChanged,
): Promise<BackendCatalog> {
  const caps = client.getServerCapabilities() ?? {};
  const next = { ...catalog };
  if (changed.tools && caps.tools) next.tools = (await client.listTools()).tools;
  if (changed.prompts && caps.prompts) next.prompts = (await client.listPrompts()).prompts;
  if (changed.resources && caps.resources) {
    next.resources = (await client.listResources()).resources;
    next.resourceTemplates = (
      await client.listResourceTemplates().catch(() => ({ resourceTemplates: [] }))
    ).resourceTemplates;
  }
  return next;
}

/** Answers the server's sampling and elicitation requests by asking the caller of the tool call. */
function answerServerRequests(client: Client, server: string, events: () => BackendEvents | undefined): void {
  const askCaller = async <T>(
    method: string,
    requestSignal: AbortSignal,
    ask: (caller: CallerChannel, signal: AbortSignal) => Promise<T>,
  ): Promise<T> => {
    const call = events()?.callerOf?.(callScope.getStore());
    if (!call?.client) {
      throw new ProtocolError(
        ProtocolErrorCode.InvalidRequest,
        `Switchboard cannot forward ${method} from server "${server}": it was not asked during a ` +
          "tool call whose client is still waiting, and only that client can answer. Ask for input " +
          "while handling tools/call.",
      );
    }
    call.notes.set(NOTE_ASKED_CLIENT, true);
    try {
      return await ask(call.client, AbortSignal.any([requestSignal, call.signal]));
    } catch (error) {
      if (ProtocolError.isInstance(error)) throw error;
      throw new ProtocolError(
        ProtocolErrorCode.InternalError,
        `The client that called server "${server}" did not answer ${method}: ${describeError(error)}`,
      );
    }
  };
  client.setRequestHandler("sampling/createMessage", (request, ctx) =>
    askCaller("sampling/createMessage", ctx.mcpReq.signal, (caller, signal) =>
      caller.createMessage(withoutProgressToken(request.params), signal),
    ),
  );
  client.setRequestHandler("elicitation/create", (request, ctx) =>
    askCaller("elicitation/create", ctx.mcpReq.signal, (caller, signal) =>
      caller.elicit(withoutProgressToken(request.params), signal),
    ),
  );
}

/**
 * `roots/list`: during a call, the roots of the client that made it (when it offers roots); otherwise
 * the server's configured roots, none by default.
 */
function answerRoots(
  client: Client,
  server: string,
  events: () => BackendEvents | undefined,
  configured: readonly Root[],
): void {
  client.setRequestHandler("roots/list", async (_request, ctx): Promise<ListRootsResult> => {
    const call = events()?.callerOf?.(callScope.getStore());
    if (call?.client) {
      let answer: ListRootsResult | undefined;
      try {
        answer = await call.client.listRoots(AbortSignal.any([ctx.mcpReq.signal, call.signal]));
      } catch (error) {
        if (ProtocolError.isInstance(error)) throw error;
        throw new ProtocolError(
          ProtocolErrorCode.InternalError,
          `The client that called server "${server}" did not answer roots/list: ${describeError(error)}`,
        );
      }
      if (answer) {
        call.notes.set(NOTE_ASKED_CLIENT, true);
        return answer;
      }
    }
    return { roots: configured.map((root) => ({ ...root })) };
  });
}

/** The server's own progress token on a request to us means nothing to the client we forward it to. */
function withoutProgressToken<P extends { _meta?: Record<string, unknown> }>(params: P): P {
  if (params._meta?.progressToken === undefined) return params;
  const { progressToken: _dropped, ...meta } = params._meta;
  if (Object.keys(meta).length > 0) return { ...params, _meta: meta };
  const { _meta: _empty, ...rest } = params;
  return rest as P;
}
