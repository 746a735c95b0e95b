/**
 * An MCP server behind the gateway: spawned over stdio, or reached over Streamable HTTP or legacy SSE.
 *
 * The backend is supervised: when the connection drops (a crashed child, a closed HTTP session) it
 * goes `down`, its lists empty, and it reconnects with exponential backoff and jitter until it is
 * closed. A server that never starts keeps retrying in the background without blocking the others.
 * Both protocol eras are spoken: the client probes with `server/discover` and falls back to the
 * 2025 `initialize` handshake for older servers.
 */
import { AsyncLocalStorage } from "node:async_hooks";
import { createInterface } from "node:readline";
import type { Readable } from "node:stream";
import {
  Client,
  type McpSubscription,
  ProtocolError,
  ProtocolErrorCode,
  SSEClientTransport,
  StreamableHTTPClientTransport,
  type Transport,
} from "@modelcontextprotocol/client";
import { describeError, GatewayError } from "../../core/errors.ts";
import {
  type Backend,
  type BackendCatalog,
  type BackendEvents,
  type BackendLogMessage,
  type BackendState,
  type CallContext,
  type CallerChannel,
  type CallToolResult,
  type CompleteRequestParams,
  type CompleteResult,
  EMPTY_CATALOG,
  type GetPromptResult,
  type HealthResult,
  type LoggingLevel,
  MCP_LOG_LEVELS,
  NOTE_ASKED_CLIENT,
  type ProgressUpdate,
  type ReadResourceResult,
  type ToolCall,
} from "../../core/types.ts";
import type { Logger } from "../../observability/logger.ts";
import { backoffDelay } from "../reconnect.ts";
import { BackendStdioTransport } from "./stdio-client-transport.ts";

export type McpTransportConfig =
  | {
      readonly type: "stdio";
      readonly command: string;
      readonly args: readonly string[];
      readonly env: Readonly<Record<string, string>>;
      readonly cwd?: string | undefined;
    }
  | {
      readonly type: "http" | "sse";
      readonly url: string;
      readonly headers: Readonly<Record<string, string>>;
    };

export interface RestartPolicy {
  readonly initialDelayMs: number;
  readonly maxDelayMs: number;
  /** Undefined: restart forever. */
  readonly maxRestarts?: number | undefined;
}

export interface McpBackendOptions {
  readonly name: string;
  readonly transport: McpTransportConfig;
  readonly timeoutMs: number;
  readonly restart: RestartPolicy;
  /** How long one connection attempt (spawn + handshake + first listing) may take. */
  readonly connectTimeoutMs: number;
  readonly logger: Logger;
  readonly clientInfo: { readonly name: string; readonly version: string };
  /**
   * Applied to what the server prints on stderr before it is kept for failure reasons, which reach
   * /healthz, the health tool and clients' errors, not only the (redacting) logger. Default: none.
   */
  readonly redact?: (text: string) => string;
}

interface RawResponse {
  readonly result?: unknown;
  readonly error?: { readonly code: number; readonly message: string; readonly data?: unknown };
}

/** The code the raw path uses for calls cut off by a lost connection (JSON-RPC's server-error range). */
const CONNECTION_CLOSED = -32000;

/** How many stderr lines are kept to explain a failure. */
const STDERR_TAIL_LINES = 3;

/** An uptime after which a later crash counts as new trouble, not part of a crash loop. */
const STABLE_UPTIME_MS = 10_000;

export class McpBackend implements Backend {
  readonly name: string;
  #state: BackendState = "stopped";
  #client: Client | undefined;
  #catalog: BackendCatalog = EMPTY_CATALOG;
  #events: BackendEvents | undefined;
  #restartTimer: NodeJS.Timeout | undefined;
  #attempt = 0;
  #upSince = 0;
  #lastError = "";
  #gaveUp = false;
  /** The last lines the server wrote to stderr: usually the real reason it failed or exited. */
  #stderrTail: string[] = [];
  #closed = false;
  /**
   * Progress is routed by our own tokens, straight off the transport. The SDK dispatches
   * notifications a microtask after responses, so a server's last progress before its result would
   * otherwise arrive after the request is settled and be dropped.
   */
  readonly #progressRoutes = new Map<string, (update: ProgressUpdate) => void>();
  #progressSeq = 0;
  /** Tool calls sent on the raw path, by id, waiting for their response. */
  readonly #rawPending = new Map<string, (message: RawResponse) => void>();
  #rawSeq = 0;
  #transport: Transport | undefined;
  /** `subscriptions/listen` streams held for resource subscriptions on 2026-07-28 connections, by URI. */
  readonly #listens = new Map<string, { readonly client: Client; readonly subscription: McpSubscription }>();
  readonly #options: McpBackendOptions;
  readonly #log: Logger;

  constructor(options: McpBackendOptions) {
    this.name = options.name;
    this.#options = options;
    this.#log = options.logger.child({ server: options.name });
  }

  get state(): BackendState {
    return this.#state;
  }

  /** True once the backend stopped retrying (restart.maxRestarts reached). */
  get gaveUp(): boolean {
    return this.#gaveUp;
  }

  /** Why the backend is not up, for logs and health. */
  get lastError(): string {
    return this.#lastError;
  }

  catalog(): BackendCatalog {
    return this.#catalog;
  }

  async start(events: BackendEvents): Promise<void> {
    this.#events = events;
    this.#closed = false;
    await this.#connect();
  }

  async callTool(call: ToolCall, ctx: CallContext): Promise<CallToolResult> {
    const client = this.#requireClient();
    const meta: Record<string, unknown> = { ...ctx.meta };
    let progressToken: string | undefined;
    if (ctx.onProgress) {
      progressToken = `${this.name}-${++this.#progressSeq}`;
      this.#progressRoutes.set(progressToken, ctx.onProgress);
      meta.progressToken = progressToken;
    }
    const params = {
      name: call.tool,
      arguments: call.args,
      ...(Object.keys(meta).length > 0 ? { _meta: meta } : {}),
    };
    try {
      if (this.#transport && client.getProtocolEra() === "legacy") {
        return await this.#rawCall(this.#transport, params, ctx.signal);
      }
      const result = await client.callTool(
        { ...params, arguments: { ...call.args } },
        {
          signal: ctx.signal,
          // The gateway's timeout policy is authoritative; this bound only guards against a policy-less
          // chain, so it sits a little past it.
          timeout: this.#options.timeoutMs + 1_000,
        },
      );
      return result as CallToolResult;
    } catch (error) {
      throw this.#translate(error, `tool "${call.tool}"`, ctx.signal);
    } finally {
      if (progressToken !== undefined) this.#progressRoutes.delete(progressToken);
    }
  }

  /**
   * The hot path for 2025-era servers: the request is written straight to the transport and its
   * response is picked off the transport before the SDK sees it. The SDK client would validate the
   * result against its schemas and the tool's output schema, keep a response cache and arm a timer
   * for every call; a gateway passes results through and leaves validation to the client that
   * receives them, and its timeout policy already bounds the call. Ids are strings with a prefix the
   * SDK never uses (it numbers its own requests), so the two share the connection safely.
   */
  #rawCall(
    transport: Transport,
    params: Record<string, unknown>,
    signal: AbortSignal,
  ): Promise<CallToolResult> {
    if (signal.aborted) return Promise.reject(signal.reason);
    const id = `sb:${++this.#rawSeq}`;
    return new Promise<CallToolResult>((resolve, reject) => {
      const onAbort = () => {
        this.#rawPending.delete(id);
        void transport
          .send({
            jsonrpc: "2.0",
            method: "notifications/cancelled",
            params: { requestId: id, reason: describeError(signal.reason) },
          })
          .catch(() => undefined);
        reject(signal.reason);
      };
      signal.addEventListener("abort", onAbort, { once: true });
      this.#rawPending.set(id, (message) => {
        signal.removeEventListener("abort", onAbort);
        if (message.error) {
          const { code, message: text, data } = message.error;
          reject(new ProtocolError(code, text, data));
        } else if (typeof message.result === "object" && message.result !== null) {
          resolve(message.result as CallToolResult);
        } else {
          reject(new Error("the server answered tools/call with a result that is not an object"));
        }
      });
      transport
        .send({ jsonrpc: "2.0", id, method: "tools/call", params } as never)
        .catch((error: unknown) => {
          this.#rawPending.delete(id);
          signal.removeEventListener("abort", onAbort);
          reject(error);
        });
    });
  }

  async readResource(uri: string, ctx: CallContext): Promise<ReadResourceResult> {
    const client = this.#requireClient();
    try {
      return (await client.readResource({ uri, ...this.#metaParam(ctx) }, {
        signal: ctx.signal,
        timeout: this.#options.timeoutMs,
        cacheMode: "bypass",
      } as never)) as ReadResourceResult;
    } catch (error) {
      throw this.#translate(error, `resource "${uri}"`, ctx.signal);
    }
  }

  async getPrompt(
    name: string,
    args: Record<string, string> | undefined,
    ctx: CallContext,
  ): Promise<GetPromptResult> {
    const client = this.#requireClient();
    try {
      return (await client.getPrompt(
        { name, ...(args ? { arguments: args } : {}), ...this.#metaParam(ctx) },
        { signal: ctx.signal, timeout: this.#options.timeoutMs },
      )) as GetPromptResult;
    } catch (error) {
      throw this.#translate(error, `prompt "${name}"`, ctx.signal);
    }
  }

  async complete(params: CompleteRequestParams, ctx: CallContext): Promise<CompleteResult> {
    const client = this.#requireClient();
    // A server without completions has no suggestions; an empty answer is what a client expects then.
    if (!client.getServerCapabilities()?.completions) return { completion: { values: [] } };
    const { _meta: _ignored, ...rest } = params;
    const what =
      params.ref.type === "ref/prompt"
        ? `completion of prompt "${params.ref.name}"`
        : `completion of resource "${params.ref.uri}"`;
    try {
      return await client.complete(
        { ...rest, ...this.#metaParam(ctx) },
        {
          signal: ctx.signal,
          timeout: this.#options.timeoutMs,
        },
      );
    } catch (error) {
      throw this.#translate(error, what, ctx.signal);
    }
  }

  /**
   * 2025-era servers get `resources/subscribe` (when they offer it); 2026-07-28 servers have no such
   * method, so a `subscriptions/listen` stream for the URI is held open instead. Updates arrive through
   * the same notification handler either way.
   */
  async subscribeResource(uri: string): Promise<void> {
    const client = this.#requireClient();
    const options = { timeout: this.#options.timeoutMs };
    try {
      if (client.getProtocolEra() === "modern") {
        if (this.#listens.get(uri)?.client === client) return;
        const subscription = await client.listen({ resourceSubscriptions: [uri] }, options);
        this.#listens.set(uri, { client, subscription });
        return;
      }
      if (!client.getServerCapabilities()?.resources?.subscribe) return;
      await client.subscribeResource({ uri }, options);
    } catch (error) {
      throw this.#translate(error, `subscription to resource "${uri}"`, NEVER_ABORTED);
    }
  }

  async unsubscribeResource(uri: string): Promise<void> {
    const listen = this.#listens.get(uri);
    if (listen) {
      this.#listens.delete(uri);
      await listen.subscription.close();
      return;
    }
    const client = this.#client;
    if (!client || this.#state !== "up" || client.getProtocolEra() === "modern") return;
    if (!client.getServerCapabilities()?.resources?.subscribe) return;
    try {
      await client.unsubscribeResource({ uri }, { timeout: this.#options.timeoutMs });
    } catch (error) {
      throw this.#translate(error, `unsubscription from resource "${uri}"`, NEVER_ABORTED);
    }
  }

  /**
   * Only 2025-era servers have `logging/setLevel`; a 2026-07-28 server reads the level from each
   * request's `_meta`, which the gateway fills in per call.
   */
  async setLogLevel(level: LoggingLevel): Promise<void> {
    const client = this.#client;
    if (!client || this.#state !== "up" || client.getProtocolEra() === "modern") return;
    if (!client.getServerCapabilities()?.logging) return;
    try {
      await client.setLoggingLevel(level, { timeout: this.#options.timeoutMs });
    } catch (error) {
      throw this.#translate(error, `logging/setLevel "${level}"`, NEVER_ABORTED);
    }
  }

  async health(signal: AbortSignal): Promise<HealthResult> {
    if (this.#state !== "up" || !this.#client) {
      return { status: "unhealthy", detail: `not connected: ${this.#lastError || this.#state}` };
    }
    const started = performance.now();
    try {
      await this.#client.ping({ signal, timeout: 5_000 });
      return { status: "healthy", latencyMs: performance.now() - started };
    } catch (error) {
      return { status: "unhealthy", detail: `ping failed: ${describeError(error)}` };
    }
  }

  async close(): Promise<void> {
    this.#closed = true;
    this.#transport = undefined;
    this.#failRawPending("the gateway is shutting down");
    clearTimeout(this.#restartTimer);
    const client = this.#client;
    this.#client = undefined;
    this.#listens.clear();
    this.#setState("stopped");
    if (client) await client.close().catch(() => undefined);
  }

  #failRawPending(reason: string): void {
    const pending = [...this.#rawPending.values()];
    this.#rawPending.clear();
    for (const settle of pending) {
      settle({ error: { code: CONNECTION_CLOSED, message: `connection closed (${reason})` } });
    }
  }

  #metaParam(ctx: CallContext): { _meta?: Record<string, unknown> } {
    return Object.keys(ctx.meta).length > 0 ? { _meta: { ...ctx.meta } } : {};
  }

  #requireClient(): Client {
    if (this.#state !== "up" || !this.#client) {
      throw new GatewayError(
        "backend_unavailable",
        `Server "${this.name}" is not available (${this.#lastError || this.#state}). ` +
          "Switchboard is reconnecting to it; try again shortly.",
        { data: { server: this.name } },
      );
    }
    return this.#client;
  }

  #translate(error: unknown, what: string, signal: AbortSignal): unknown {
    if (error instanceof GatewayError) return error;
    if (signal.aborted) {
      const reason = signal.reason;
      if (reason instanceof GatewayError) return reason;
      return new GatewayError("cancelled", `The call to ${what} on server "${this.name}" was cancelled.`, {
        cause: error,
        data: { server: this.name },
      });
    }
    // A JSON-RPC error from the server itself keeps its code and message, whatever its words say.
    if (ProtocolError.isInstance(error) && error.code !== CONNECTION_CLOSED) return error;
    const message = describeError(error);
    if (/timed? ?out/i.test(message)) {
      return new GatewayError(
        "timeout",
        `Server "${this.name}" did not answer ${what} within ${this.#options.timeoutMs} ms. ` +
          "Raise timeoutMs for this server if the tool is slow, or check the server.",
        { cause: error, data: { server: this.name, timeoutMs: this.#options.timeoutMs } },
      );
    }
    if (/connection closed|not connected|transport closed|EPIPE/i.test(message) || this.#state !== "up") {
      return new GatewayError(
        "backend_unavailable",
        `Server "${this.name}" went away during ${what} (${message}). It is being restarted; try again shortly.`,
        { cause: error, data: { server: this.name } },
      );
    }
    // A JSON-RPC error from the server itself: keep its code and message so the client sees what the
    // server said.
    return error;
  }

  async #connect(): Promise<void> {
    if (this.#closed) return;
    this.#setState("starting");
    const client = new GatewayClient(
      { name: this.#options.clientInfo.name, version: this.#options.clientInfo.version },
      {
        versionNegotiation: { mode: "auto" },
        // Declared so that servers may ask; each question goes to the client that made the call, which
        // may still refuse it (see #answerServerRequests).
        capabilities: { sampling: {}, elicitation: { form: {}, url: {} } },
        listChanged: {
          tools: {
            autoRefresh: false,
            debounceMs: 20,
            onChanged: () => this.#refresh(client, { tools: true }),
          },
          prompts: {
            autoRefresh: false,
            debounceMs: 20,
            onChanged: () => this.#refresh(client, { prompts: true }),
          },
          resources: {
            autoRefresh: false,
            debounceMs: 20,
            onChanged: () => this.#refresh(client, { resources: true }),
          },
        },
      } as ConstructorParameters<typeof Client>[1],
    );
    client.setNotificationHandler("notifications/message", (notification) => {
      const params = notification.params as BackendLogMessage;
      this.#events?.log({
        level: params.level,
        data: params.data,
        ...(params.logger ? { logger: params.logger } : {}),
      });
    });
    client.setNotificationHandler("notifications/resources/updated", (notification) => {
      this.#events?.resourceUpdated(notification.params.uri);
    });
    this.#answerServerRequests(client);
    client.onerror = (error) => this.#log.debug({ err: describeError(error) }, "transport error");

    const transport = this.#makeTransport();
    let connected = false;
    client.onclose = () => {
      if (connected) this.#onDisconnect(client, this.#withStderr("connection closed"));
    };
    try {
      await withTimeout(
        (async () => {
          await client.connect(transport);
          this.#catalog = await this.#listAll(client);
        })(),
        this.#options.connectTimeoutMs,
        `did not finish its handshake within ${this.#options.connectTimeoutMs} ms`,
      );
      connected = true;
      this.#interceptProgress(transport);
      this.#transport = transport;
    } catch (error) {
      await client.close().catch(() => undefined);
      this.#lastError = this.#withStderr(describeError(error));
      this.#log.warn({ err: this.#lastError, attempt: this.#attempt }, "server failed to start");
      this.#setState("down", this.#lastError);
      this.#scheduleRestart();
      return;
    }
    if (this.#closed) {
      await client.close().catch(() => undefined);
      return;
    }
    this.#client = client;
    this.#upSince = Date.now();
    this.#lastError = "";
    const version = client.getServerVersion();
    this.#log.info(
      {
        protocol: client.getNegotiatedProtocolVersion(),
        serverInfo: version ? `${version.name}@${version.version}` : undefined,
        tools: this.#catalog.tools.length,
        resources: this.#catalog.resources.length,
        prompts: this.#catalog.prompts.length,
      },
      "server up",
    );
    this.#setState("up");
  }

  #interceptProgress(transport: Transport): void {
    const deliver = transport.onmessage;
    if (!deliver) return;
    transport.onmessage = (message, extra) => {
      const m = message as { id?: unknown; method?: string; params?: { progressToken?: unknown } };
      if (typeof m.id === "string" && m.method === undefined) {
        const settle = this.#rawPending.get(m.id);
        if (settle) {
          this.#rawPending.delete(m.id);
          settle(message as RawResponse);
          return;
        }
      }
      // Log messages too: the SDK would try each message against three JSON-RPC schemas first (zod
      // failures are costly), which makes a chatty server expensive.
      if (m.method === "notifications/message" && isLogParams(m.params)) {
        const { level, data, logger } = m.params;
        this.#events?.log({ level, data, ...(typeof logger === "string" ? { logger } : {}) });
        return;
      }
      if (m.method === "notifications/progress" && typeof m.params?.progressToken === "string") {
        const route = this.#progressRoutes.get(m.params.progressToken);
        if (route) {
          const { progress, total, message: text } = m.params as ProgressUpdate;
          route({
            progress,
            ...(total !== undefined ? { total } : {}),
            ...(text !== undefined ? { message: text } : {}),
          });
        }
        return;
      }
      deliver.call(transport, message, extra);
    };
  }

  /**
   * Sampling and elicitation requests from the server, forwarded to the client whose call caused them.
   * On 2026-07-28 connections they come from the SDK fulfilling an `input_required` result, inside
   * `callScope` (see GatewayClient); on 2025-era connections they arrive on their own, and the gateway
   * picks the call by what is in flight on this server.
   */
  #answerServerRequests(client: Client): void {
    client.setRequestHandler("sampling/createMessage", (request, ctx) =>
      this.#askCaller("sampling/createMessage", ctx.mcpReq.signal, (caller, signal) =>
        caller.createMessage(withoutProgressToken(request.params), signal),
      ),
    );
    client.setRequestHandler("elicitation/create", (request, ctx) =>
      this.#askCaller("elicitation/create", ctx.mcpReq.signal, (caller, signal) =>
        caller.elicit(withoutProgressToken(request.params), signal),
      ),
    );
  }

  async #askCaller<T>(
    method: string,
    requestSignal: AbortSignal,
    ask: (caller: CallerChannel, signal: AbortSignal) => Promise<T>,
  ): Promise<T> {
    const call = this.#events?.callerOf?.(callScope.getStore());
    if (!call?.client) {
      throw new ProtocolError(
        ProtocolErrorCode.InvalidRequest,
        `Switchboard cannot forward ${method} from server "${this.name}": it was not asked during a ` +
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
        `The client that called server "${this.name}" did not answer ${method}: ${describeError(error)}`,
      );
    }
  }

  /** A failure reason with the server's last stderr lines, when it wrote any since it was started. */
  #withStderr(reason: string): string {
    const tail = this.#stderrTail.join(" | ");
    return tail ? `${reason}; its stderr ended with: ${tail}` : reason;
  }

  #makeTransport(): Transport {
    this.#stderrTail = [];
    const t = this.#options.transport;
    if (t.type === "stdio") {
      const transport = new BackendStdioTransport({
        command: t.command,
        args: [...t.args],
        env: { ...t.env },
        ...(t.cwd ? { cwd: t.cwd } : {}),
        stderr: "pipe",
      });
      const stderr = transport.stderr as Readable | null;
      if (stderr) {
        createInterface({ input: stderr }).on("line", (line) => {
          if (!line.trim()) return;
          // Redacted before it is cut, so that no half of a secret survives.
          const shown = this.#options.redact?.(line) ?? line;
          this.#stderrTail.push(shown.length > 300 ? `${shown.slice(0, 300)}…` : shown);
          if (this.#stderrTail.length > STDERR_TAIL_LINES) this.#stderrTail.shift();
          this.#log.info({ stderr: line }, "server stderr");
        });
      }
      return transport;
    }
    const url = new URL(t.url);
    const requestInit = { headers: { ...t.headers } };
    return t.type === "sse"
      ? (new SSEClientTransport(url, { requestInit }) as Transport)
      : (new StreamableHTTPClientTransport(url, { requestInit }) as Transport);
  }

  async #listAll(client: Client): Promise<BackendCatalog> {
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

  async #refresh(client: Client, changed: { tools?: boolean; resources?: boolean; prompts?: boolean }) {
    if (client !== this.#client || this.#state !== "up") return;
    try {
      const caps = client.getServerCapabilities() ?? {};
      const next = { ...this.#catalog };
      if (changed.tools && caps.tools) next.tools = (await client.listTools()).tools;
      if (changed.prompts && caps.prompts) next.prompts = (await client.listPrompts()).prompts;
      if (changed.resources && caps.resources) {
        next.resources = (await client.listResources()).resources;
        next.resourceTemplates = (
          await client.listResourceTemplates().catch(() => ({ resourceTemplates: [] }))
        ).resourceTemplates;
      }
      if (client !== this.#client) return;
      this.#catalog = next;
      this.#log.debug({ changed }, "server lists changed");
      this.#events?.listChanged(changed);
    } catch (error) {
      this.#log.warn(
        { err: describeError(error) },
        "could not re-read the server's lists after list_changed",
      );
    }
  }

  #onDisconnect(client: Client, reason: string): void {
    if (client !== this.#client || this.#closed) return;
    this.#client = undefined;
    this.#transport = undefined;
    this.#failRawPending(reason);
    this.#catalog = EMPTY_CATALOG;
    this.#lastError = reason;
    if (Date.now() - this.#upSince > STABLE_UPTIME_MS) this.#attempt = 0;
    this.#log.warn({ reason }, "server went down");
    this.#setState("down", reason);
    this.#scheduleRestart();
  }

  #scheduleRestart(): void {
    if (this.#closed) return;
    const { initialDelayMs, maxDelayMs, maxRestarts } = this.#options.restart;
    if (maxRestarts !== undefined && this.#attempt >= maxRestarts) {
      this.#gaveUp = true;
      this.#lastError =
        `${this.#lastError}; gave up after ${this.#attempt} restarts (restart.maxRestarts). ` +
        "Fix the server, then restart the gateway.";
      this.#log.error(
        { restarts: this.#attempt, reason: this.#lastError },
        "server gave up after its maximum number of restarts",
      );
      return;
    }
    const delay = backoffDelay(this.#attempt, initialDelayMs, maxDelayMs);
    this.#attempt++;
    this.#log.info({ inMs: Math.round(delay), attempt: this.#attempt }, "restarting server");
    this.#restartTimer = setTimeout(() => void this.#connect(), delay);
    this.#restartTimer.unref();
  }

  #setState(state: BackendState, reason?: string): void {
    if (this.#state === state) return;
    this.#state = state;
    this.#events?.state(state, reason);
  }
}

const LOG_LEVELS: ReadonlySet<string> = new Set(MCP_LOG_LEVELS);

function isLogParams(params: unknown): params is { level: LoggingLevel; data: unknown; logger?: unknown } {
  if (typeof params !== "object" || params === null) return false;
  const p = params as { level?: unknown; data?: unknown; logger?: unknown };
  return (
    typeof p.level === "string" &&
    LOG_LEVELS.has(p.level) &&
    "data" in p &&
    (p.logger === undefined || typeof p.logger === "string")
  );
}

/** For requests the gateway makes on its own, which no client can cancel. */
const NEVER_ABORTED = new AbortController().signal;

/** The server's own progress token on a request to us means nothing to the client we forward it to. */
function withoutProgressToken<P extends { _meta?: Record<string, unknown> }>(params: P): P {
  if (params._meta?.progressToken === undefined) return params;
  const { progressToken: _dropped, ...meta } = params._meta;
  if (Object.keys(meta).length > 0) return { ...params, _meta: meta };
  const { _meta: _empty, ...rest } = params;
  return rest as P;
}

/**
 * The abort signal of the tool call whose `input_required` result the SDK is fulfilling, for the
 * request handlers it calls. The SDK runs that fulfilment from the response path, outside the call's
 * async context, so it is set again here from the request options the SDK hands over.
 */
const callScope = new AsyncLocalStorage<AbortSignal | undefined>();

class GatewayClient extends Client {
  protected override _resolveNonCompleteResult(
    ...args: Parameters<Client["_resolveNonCompleteResult"]>
  ): Promise<unknown> {
    return callScope.run(args[1].options?.signal, () => super._resolveNonCompleteResult(...args));
  }
}

function withTimeout<T>(promise: Promise<T>, ms: number, message: string): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error(message)), ms);
  });
  return Promise.race([promise, timeout]).finally(() => clearTimeout(timer));
}
