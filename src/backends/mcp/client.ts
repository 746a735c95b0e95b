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
  CLIENT_CAPABILITIES_META_KEY,
  Client,
  type ClientCapabilities,
  type ListRootsResult,
  LOG_LEVEL_META_KEY,
  type McpSubscription,
  ProtocolError,
  ProtocolErrorCode,
  type RequestOptions,
  type Root,
  type SubscriptionFilter,
} from "@modelcontextprotocol/client";
import { describeError } from "../../core/errors.ts";
import {
  type AskOptions,
  type BackendCatalog,
  type BackendEvents,
  type BackendLogMessage,
  type CallContext,
  type CallerChannel,
  type ListChanged,
  NOTE_ASKED_CLIENT,
} from "../../core/types.ts";
import type { Logger } from "../../observability/logger.ts";
import { readSkills } from "./skills.ts";
import { TASKS_EXTENSION, withTaskMarked } from "./tasks.ts";

/**
 * The request whose `input_required` result the SDK is fulfilling, for the request handlers it calls:
 * its abort signal, which names the call. The SDK runs that fulfilment from the response path, outside
 * the call's async context, so it is set again here from the request options the SDK hands over. Set
 * only there: a handler that finds it knows its request is an embedded one, whose id is its key in the
 * backend's `inputRequests`.
 */
const callScope = new AsyncLocalStorage<{ readonly signal: AbortSignal | undefined }>();

/**
 * The log level the gateway listens at for a 2026-07-28 server's log messages outside any request: all
 * of them, as the gateway filters them per client (by level and by who may see the server).
 */
const BACKGROUND_LOG_LEVEL = "debug";

/**
 * The SDK client, with the request in scope while it fulfils an `input_required` result, and with
 * the log level named on its list-change `subscriptions/listen` stream (the one it opens at connect on
 * a 2026-07-28 connection), so that a server which sends log messages on such a stream (a Switchboard
 * does) sends the ones outside any request there. Resource streams do not name one: a message would
 * otherwise arrive once per stream.
 */
class GatewayClient extends Client {
  /** The filter of the listen request being built; `listen` builds it before it awaits anything. */
  #listening: SubscriptionFilter | undefined;

  override listen(filter: SubscriptionFilter, options?: RequestOptions): Promise<McpSubscription> {
    this.#listening = filter;
    try {
      return super.listen(filter, options);
    } finally {
      this.#listening = undefined;
    }
  }

  protected override _outboundMetaEnvelope(): Readonly<Record<string, unknown>> | undefined {
    const envelope = super._outboundMetaEnvelope();
    if (!envelope || !this.#listening || this.#listening.resourceSubscriptions !== undefined) return envelope;
    return { ...envelope, [LOG_LEVEL_META_KEY]: BACKGROUND_LOG_LEVEL };
  }

  /** A server's task-creating answer is kept for the task layer instead of refused (see tasks.ts). */
  protected override _onresponse(response: Parameters<Client["_onresponse"]>[0]): void {
    super._onresponse("result" in response ? withTaskMarked(response) : response);
  }

  protected override _resolveNonCompleteResult(
    ...args: Parameters<Client["_resolveNonCompleteResult"]>
  ): Promise<unknown> {
    return callScope.run({ signal: args[1].options?.signal }, () => super._resolveNonCompleteResult(...args));
  }
}

/** What the gateway can pass on of a client's capabilities: the questions a server may ask it. */
const FORWARDED: readonly (keyof ClientCapabilities)[] = ["sampling", "elicitation", "roots"];

/**
 * The capabilities a 2026-07-28 backend is told, per request, in place of the connection's: what the
 * calling client declared of sampling and elicitation, so the server asks only what that client can
 * answer; roots always, as the gateway answers them from the config when the client has none. A
 * request the gateway makes on its own has no client to ask.
 */
export function capabilitiesFor(caller: CallerChannel | undefined): ClientCapabilities {
  const declared = caller?.capabilities ?? {};
  const passed: Record<string, unknown> = {};
  for (const key of FORWARDED) {
    if (declared[key] !== undefined) passed[key] = declared[key];
  }
  passed.roots ??= {};
  // A client that takes tasks lets the server run the call as one (the task layer keeps track of it).
  const extensions = (declared as { extensions?: Record<string, unknown> }).extensions;
  if (extensions?.[TASKS_EXTENSION] !== undefined) passed.extensions = { [TASKS_EXTENSION]: {} };
  return passed as ClientCapabilities;
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
export async function listAll(client: Client, log: Logger): Promise<BackendCatalog> {
  const caps = client.getServerCapabilities() ?? {};
  const [tools, resources, resourceTemplates, prompts, skills] = await Promise.all([
    caps.tools ? client.listTools().then((r) => r.tools) : [],
    caps.resources ? client.listResources().then((r) => r.resources) : [],
    caps.resources
      ? client
          .listResourceTemplates()
          .then((r) => r.resourceTemplates)
          .catch(() => [])
      : [],
    caps.prompts ? client.listPrompts().then((r) => r.prompts) : [],
    readSkills(client, log),
  ]);
  return { tools, resources, resourceTemplates, prompts, ...(skills ? { skills } : {}) };
}

/** `catalog` with the lists that changed read again (skills with the resources: they are resources). */
export async function relist(
  client: Client,
  catalog: BackendCatalog,
  changed: ListChanged,
  log: Logger,
): Promise<BackendCatalog> {
  const caps = client.getServerCapabilities() ?? {};
  const next: { -readonly [K in keyof BackendCatalog]: BackendCatalog[K] } = { ...catalog };
  if (changed.tools && caps.tools) next.tools = (await client.listTools()).tools;
  if (changed.prompts && caps.prompts) next.prompts = (await client.listPrompts()).prompts;
  if (changed.resources && caps.resources) {
    next.resources = (await client.listResources()).resources;
    next.resourceTemplates = (
      await client.listResourceTemplates().catch(() => ({ resourceTemplates: [] }))
    ).resourceTemplates;
    const skills = await readSkills(client, log);
    if (skills) next.skills = skills;
    else delete next.skills;
  }
  return next;
}

/**
 * The request a server's question belongs to, and the key the server gave the question: on a
 * 2026-07-28 connection the SDK asks each question of an `input_required` result under its key.
 */
function askedFor(events: () => BackendEvents | undefined, id: string | number) {
  const scope = callScope.getStore();
  return {
    call: events()?.callerOf?.(scope?.signal),
    ask: scope ? { key: String(id) } : {},
  };
}

/** Answers the server's sampling and elicitation requests by asking the client of the request. */
function answerServerRequests(client: Client, server: string, events: () => BackendEvents | undefined): void {
  const askCaller = async <T>(
    method: string,
    request: { readonly id: string | number; readonly signal: AbortSignal },
    ask: (caller: CallerChannel, signal: AbortSignal, options: AskOptions) => Promise<T>,
  ): Promise<T> => {
    const { call, ask: options } = askedFor(events, request.id);
    if (!call) {
      throw new ProtocolError(
        ProtocolErrorCode.InvalidRequest,
        `Switchboard cannot forward ${method} from server "${server}": it was not asked while serving a ` +
          "request (tools/call, prompts/get, resources/read) whose client is still waiting, and only that " +
          "client can answer. Ask for input while handling such a request.",
      );
    }
    if (!call.client) {
      // A request the gateway made itself, or one whose client declared nothing it could be asked.
      throw new ProtocolError(
        ProtocolErrorCode.MethodNotFound,
        `Switchboard cannot forward ${method} from server "${server}": the client of this request cannot be ` +
          "asked (it declared none of sampling, elicitation and roots).",
      );
    }
    call.notes.set(NOTE_ASKED_CLIENT, true);
    try {
      return await ask(call.client, AbortSignal.any([request.signal, call.signal]), options);
    } catch (error) {
      if (ProtocolError.isInstance(error)) throw error;
      throw new ProtocolError(
        ProtocolErrorCode.InternalError,
        `The client that called server "${server}" did not answer ${method}: ${describeError(error)}`,
      );
    }
  };
  client.setRequestHandler("sampling/createMessage", (request, ctx) =>
    askCaller("sampling/createMessage", ctx.mcpReq, (caller, signal, options) =>
      caller.createMessage(withoutProgressToken(request.params), signal, options),
    ),
  );
  client.setRequestHandler("elicitation/create", (request, ctx) =>
    askCaller("elicitation/create", ctx.mcpReq, (caller, signal, options) =>
      caller.elicit(withoutProgressToken(request.params), signal, options),
    ),
  );
}

/**
 * `roots/list`: during a request, the roots of the client that made it (when it offers roots);
 * otherwise the server's configured roots, none by default.
 */
function answerRoots(
  client: Client,
  server: string,
  events: () => BackendEvents | undefined,
  configured: readonly Root[],
): void {
  client.setRequestHandler("roots/list", async (_request, ctx): Promise<ListRootsResult> => {
    const { call, ask } = askedFor(events, ctx.mcpReq.id);
    if (call?.client) {
      let answer: ListRootsResult | undefined;
      try {
        answer = await call.client.listRoots(AbortSignal.any([ctx.mcpReq.signal, call.signal]), ask);
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

/**
 * The request's `_meta`: the client's own keys; for a 2026-07-28 server, also the capabilities of the
 * client that made the request, in place of the connection's (see capabilitiesFor).
 */
export function metaParam(
  ctx: CallContext,
  client: Client,
  meta: Readonly<Record<string, unknown>> = ctx.meta,
): { _meta?: Record<string, unknown> } {
  if (client.getProtocolEra() === "modern") {
    return { _meta: { ...meta, [CLIENT_CAPABILITIES_META_KEY]: capabilitiesFor(ctx.client) } };
  }
  return Object.keys(meta).length > 0 ? { _meta: { ...meta } } : {};
}
