/**
 * An MCP server behind the gateway: spawned over stdio, or reached over Streamable HTTP or legacy SSE
 * (transport.ts).
 *
 * The backend is supervised: when the connection drops (a crashed child, a closed HTTP session) it
 * goes `down`, its lists empty, and it reconnects with exponential backoff and jitter until it is
 * closed. A server that never starts keeps retrying in the background without blocking the others.
 * Both protocol eras are spoken: the client probes with `server/discover` and falls back to the
 * 2025 `initialize` handshake for older servers.
 */
import {
  type Client,
  type McpSubscription,
  ProtocolError,
  type Transport,
} from "@modelcontextprotocol/client";
import { describeError, GatewayError } from "../../core/errors.ts";
import {
  type BackendCatalog,
  type CallContext,
  type CallToolResult,
  type CompleteRequestParams,
  type CompleteResult,
  EMPTY_CATALOG,
  type GetPromptResult,
  type HealthResult,
  type ListChanged,
  type LoggingLevel,
  type ReadResourceResult,
  type ToolCall,
} from "../../core/types.ts";
import type { Logger } from "../../observability/logger.ts";
import { BackendBase } from "../base.ts";
import { backoffDelay } from "../reconnect.ts";
import { listAll, newClient, relist } from "./client.ts";
import { CONNECTION_CLOSED, FastPath } from "./fast-path.ts";
import { type McpTransportConfig, openTransport, StderrTail } from "./transport.ts";

export type { McpTransportConfig } from "./transport.ts";

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
   * /healthz, the health tool and clients' errors, not only the (redacting) logger, and to health
   * details. Default: none.
   */
  readonly redact?: (text: string) => string;
}

/** An uptime after which a later crash counts as new trouble, not part of a crash loop. */
const STABLE_UPTIME_MS = 10_000;

/** For requests the gateway makes on its own, which no client can cancel. */
const NEVER_ABORTED = new AbortController().signal;

export class McpBackend extends BackendBase {
  readonly #options: McpBackendOptions;
  #client: Client | undefined;
  #transport: Transport | undefined;
  #catalog: BackendCatalog = EMPTY_CATALOG;
  #restartTimer: NodeJS.Timeout | undefined;
  #attempt = 0;
  #upSince = 0;
  #gaveUp = false;
  #stderr = new StderrTail();
  readonly #fast: FastPath;
  /** `subscriptions/listen` streams held for resource subscriptions on 2026-07-28 connections, by URI. */
  readonly #listens = new Map<string, { readonly client: Client; readonly subscription: McpSubscription }>();

  constructor(options: McpBackendOptions) {
    super(options.name, options.logger, options.redact ? { redact: options.redact } : {});
    this.#options = options;
    this.#fast = new FastPath(options.name);
  }

  /** True once the backend stopped retrying (restart.maxRestarts reached). */
  get gaveUp(): boolean {
    return this.#gaveUp;
  }

  /** The protocol version agreed with the server ("2026-07-28", "2025-11-25"…); undefined while not up. */
  get protocolVersion(): string | undefined {
    return this.state === "up" ? this.#client?.getNegotiatedProtocolVersion() : undefined;
  }

  catalog(): BackendCatalog {
    return this.#catalog;
  }

  async callTool(call: ToolCall, ctx: CallContext): Promise<CallToolResult> {
    const client = this.#requireClient();
    const meta: Record<string, unknown> = { ...ctx.meta };
    let progressToken: string | undefined;
    if (ctx.onProgress) {
      progressToken = this.#fast.routeProgress(ctx.onProgress);
      meta.progressToken = progressToken;
    }
    const params = {
      name: call.tool,
      arguments: call.args,
      ...(Object.keys(meta).length > 0 ? { _meta: meta } : {}),
    };
    try {
      if (this.#transport && client.getProtocolEra() === "legacy") {
        return await this.#fast.call(this.#transport, params, ctx.signal);
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
      if (progressToken !== undefined) this.#fast.unroute(progressToken);
    }
  }

  async readResource(uri: string, ctx: CallContext): Promise<ReadResourceResult> {
    const client = this.#requireClient();
    try {
      return (await client.readResource({ uri, ...metaParam(ctx) }, {
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
        { name, ...(args ? { arguments: args } : {}), ...metaParam(ctx) },
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
        { ...rest, ...metaParam(ctx) },
        { signal: ctx.signal, timeout: this.#options.timeoutMs },
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
    if (!client || this.state !== "up" || client.getProtocolEra() === "modern") return;
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
    if (!client || this.state !== "up" || client.getProtocolEra() === "modern") return;
    if (!client.getServerCapabilities()?.logging) return;
    try {
      await client.setLoggingLevel(level, { timeout: this.#options.timeoutMs });
    } catch (error) {
      throw this.#translate(error, `logging/setLevel "${level}"`, NEVER_ABORTED);
    }
  }

  async health(signal: AbortSignal): Promise<HealthResult> {
    const client = this.#client;
    if (this.state !== "up" || !client) {
      return { status: "unhealthy", detail: `not connected: ${this.lastError || this.state}` };
    }
    return this.probe(
      () => client.ping({ signal, timeout: 5_000 }),
      (reason) => `ping failed: ${reason}`,
    );
  }

  protected async open(): Promise<void> {
    await this.#connect();
  }

  protected override async release(): Promise<void> {
    this.#transport = undefined;
    this.#fast.failAll("the gateway is shutting down");
    clearTimeout(this.#restartTimer);
    const client = this.#client;
    this.#client = undefined;
    this.#listens.clear();
    if (client) await client.close().catch(() => undefined);
  }

  #requireClient(): Client {
    if (this.state !== "up" || !this.#client) {
      throw new GatewayError(
        "backend_unavailable",
        `Server "${this.name}" is not available (${this.lastError || this.state}). ` +
          "Switchboard is reconnecting to it; try again shortly.",
        { data: { server: this.name } },
      );
    }
    return this.#client;
  }

  #translate(error: unknown, what: string, signal: AbortSignal): unknown {
    const cancelled = this.stoppedByCaller(
      signal,
      `The call to ${what} on server "${this.name}" was cancelled.`,
      {
        cause: error,
        data: { server: this.name },
      },
    );
    if (cancelled) return cancelled;
    if (error instanceof GatewayError) return error;
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
    if (/connection closed|not connected|transport closed|EPIPE/i.test(message) || this.state !== "up") {
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

  // ─── supervision ────────────────────────────────────────────────────────────────────────────

  async #connect(): Promise<void> {
    if (this.closed) return;
    this.setState("starting");
    const client = newClient({
      server: this.name,
      clientInfo: this.#options.clientInfo,
      log: this.log,
      events: () => this.events,
      onChanged: (from, changed) => void this.#refresh(from, changed),
    });
    this.#stderr = new StderrTail();
    const transport = openTransport(this.#options.transport, this.#stderr, this.log, (text) =>
      this.redact(text),
    );
    let connected = false;
    client.onclose = () => {
      if (connected) this.#onDisconnect(client, this.#stderr.explain("connection closed"));
    };
    try {
      await withTimeout(
        (async () => {
          await client.connect(transport);
          this.#catalog = await listAll(client);
        })(),
        this.#options.connectTimeoutMs,
        `did not finish its handshake within ${this.#options.connectTimeoutMs} ms`,
      );
      connected = true;
      this.#fast.intercept(transport, (message) => this.events?.log(message));
      this.#transport = transport;
    } catch (error) {
      await client.close().catch(() => undefined);
      const reason = this.#stderr.explain(describeError(error));
      this.log.warn({ err: reason, attempt: this.#attempt }, "server failed to start");
      this.setState("down", reason);
      this.#scheduleRestart();
      return;
    }
    if (this.closed) {
      await client.close().catch(() => undefined);
      return;
    }
    this.#client = client;
    this.#upSince = Date.now();
    const version = client.getServerVersion();
    this.log.info(
      {
        protocol: client.getNegotiatedProtocolVersion(),
        serverInfo: version ? `${version.name}@${version.version}` : undefined,
        tools: this.#catalog.tools.length,
        resources: this.#catalog.resources.length,
        prompts: this.#catalog.prompts.length,
      },
      "server up",
    );
    this.setState("up");
  }

  async #refresh(client: Client, changed: ListChanged): Promise<void> {
    if (client !== this.#client || this.state !== "up") return;
    try {
      const next = await relist(client, this.#catalog, changed);
      if (client !== this.#client) return;
      this.#catalog = next;
      this.log.debug({ changed }, "server lists changed");
      this.events?.listChanged(changed);
    } catch (error) {
      this.log.warn({ err: describeError(error) }, "could not re-read the server's lists after list_changed");
    }
  }

  #onDisconnect(client: Client, reason: string): void {
    if (client !== this.#client || this.closed) return;
    this.#client = undefined;
    this.#transport = undefined;
    this.#fast.failAll(reason);
    this.#catalog = EMPTY_CATALOG;
    if (Date.now() - this.#upSince > STABLE_UPTIME_MS) this.#attempt = 0;
    this.log.warn({ reason }, "server went down");
    this.setState("down", reason);
    this.#scheduleRestart();
  }

  #scheduleRestart(): void {
    if (this.closed) return;
    const { initialDelayMs, maxDelayMs, maxRestarts } = this.#options.restart;
    if (maxRestarts !== undefined && this.#attempt >= maxRestarts) {
      this.#gaveUp = true;
      this.noteError(
        `${this.lastError}; gave up after ${this.#attempt} restarts (restart.maxRestarts). ` +
          "Fix the server, then restart the gateway.",
      );
      this.log.error(
        { restarts: this.#attempt, reason: this.lastError },
        "server gave up after its maximum number of restarts",
      );
      return;
    }
    const delay = backoffDelay(this.#attempt, initialDelayMs, maxDelayMs);
    this.#attempt++;
    this.log.info({ inMs: Math.round(delay), attempt: this.#attempt }, "restarting server");
    this.#restartTimer = setTimeout(() => void this.#connect(), delay);
    this.#restartTimer.unref();
  }
}

function metaParam(ctx: CallContext): { _meta?: Record<string, unknown> } {
  return Object.keys(ctx.meta).length > 0 ? { _meta: { ...ctx.meta } } : {};
}

function withTimeout<T>(promise: Promise<T>, ms: number, message: string): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error(message)), ms);
  });
  return Promise.race([promise, timeout]).finally(() => clearTimeout(timer));
}
