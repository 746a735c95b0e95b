/**
 * An MCP server behind the gateway: spawned over stdio, or reached over Streamable HTTP or legacy SSE
 * (transport.ts).
 *
 * The backend is supervised: when the connection drops (a crashed child, a closed HTTP session) it
 * goes `down`, its lists empty, and it reconnects with exponential backoff and jitter until it is
 * closed. A server that never starts keeps retrying in the background without blocking the others.
 * A restart is not an outage: calls made while a server that was up is being restarted wait for it
 * (bounded by their own time limit), and the calls its death cut off are marked `restarting`, so that
 * the circuit breaker does not count what the supervisor already explains and repairs.
 *
 * Both protocol eras are spoken, negotiated on the one connection (connect.ts): `server/discover`
 * first, the 2025 `initialize` handshake for older servers. Health is checked with what the era has:
 * `ping` on 2025-era connections, `server/discover` on 2026-07-28 ones.
 */
import type { Client, McpSubscription, Root, Transport } from "@modelcontextprotocol/client";
import { untilAborted } from "../../core/abort.ts";
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
import { metaParam, relist } from "./client.ts";
import { connect, type EraHint } from "./connect.ts";
import { translateFailure } from "./failures.ts";
import { FastPath } from "./fast-path.ts";
import { newRestart, type Restart } from "./restart.ts";
import { offersTasks, type TaskMethod, taskRequest, withTasksDeclared } from "./tasks.ts";
import type { McpTransportConfig, StderrTail } from "./transport.ts";

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
  /** The roots the server is given when it asks outside a call (config `roots`). Default: none. */
  readonly roots?: readonly Root[];
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

/** How long a health check waits for the server's answer. */
const HEALTH_TIMEOUT_MS = 5_000;

export class McpBackend extends BackendBase {
  readonly #options: McpBackendOptions;
  #client: Client | undefined;
  #transport: Transport | undefined;
  #catalog: BackendCatalog = EMPTY_CATALOG;
  #restartTimer: NodeJS.Timeout | undefined;
  #attempt = 0;
  #upSince = 0;
  #gaveUp = false;
  /** How the next connection starts: negotiating the era, or (a server that exits on the probe) not. */
  #era: EraHint = "negotiate";
  /** The connection attempt in progress: aborted and awaited when the backend closes. */
  #connecting: { readonly controller: AbortController; readonly done: Promise<unknown> } | undefined;
  #restart: Restart | undefined;
  #instructions: string | undefined;
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

  instructions(): string | undefined {
    return this.#instructions;
  }

  /** 2025-era servers hear of it; a 2026-07-28 server asks for roots when it needs them. */
  rootsListChanged(): void {
    const client = this.#client;
    if (!client || this.state !== "up" || client.getProtocolEra() === "modern") return;
    client.sendRootsListChanged().catch((error: unknown) => {
      this.log.debug({ err: describeError(error) }, "could not tell the server that the roots changed");
    });
  }

  async callTool(call: ToolCall, ctx: CallContext): Promise<CallToolResult> {
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
      const client = await this.#clientFor(ctx.signal);
      if (this.#transport && client.getProtocolEra() === "legacy") {
        return await this.#fast.call(
          this.#transport,
          withTasksDeclared(params, client, ctx.client, this.#catalog.tools),
          ctx.signal,
        );
      }
      const result = await client.callTool(
        { ...params, arguments: { ...call.args }, ...metaParam(ctx, client, meta) },
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

  /** Whether the server runs tool calls as tasks (see tasks.ts). */
  offersTasks = (): boolean => this.state === "up" && this.#client !== undefined && offersTasks(this.#client);

  /** True when every replica reaches this same server (HTTP), so any of them may ask about its tasks. */
  get sharedByReplicas(): boolean {
    return this.#options.transport.type !== "stdio";
  }

  /** A request about a task the server runs (`tasks/get`, `tasks/update`, `tasks/cancel`). */
  async taskRequest(
    method: TaskMethod,
    params: Record<string, unknown>,
    signal: AbortSignal = NEVER_ABORTED,
  ): Promise<Record<string, unknown>> {
    try {
      const client = await this.#clientFor(signal);
      return await taskRequest(client, method, params, { signal, timeout: this.#options.timeoutMs });
    } catch (error) {
      throw this.#translate(error, `task "${String(params.taskId)}"`, signal);
    }
  }

  async readResource(uri: string, ctx: CallContext): Promise<ReadResourceResult> {
    try {
      const client = await this.#clientFor(ctx.signal);
      return (await client.readResource({ uri, ...metaParam(ctx, client) }, {
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
    try {
      const client = await this.#clientFor(ctx.signal);
      return (await client.getPrompt(
        { name, ...(args ? { arguments: args } : {}), ...metaParam(ctx, client) },
        { signal: ctx.signal, timeout: this.#options.timeoutMs },
      )) as GetPromptResult;
    } catch (error) {
      throw this.#translate(error, `prompt "${name}"`, ctx.signal);
    }
  }

  async complete(params: CompleteRequestParams, ctx: CallContext): Promise<CompleteResult> {
    const { _meta: _ignored, ...rest } = params;
    const what =
      params.ref.type === "ref/prompt"
        ? `completion of prompt "${params.ref.name}"`
        : `completion of resource "${params.ref.uri}"`;
    try {
      const client = await this.#clientFor(ctx.signal);
      // A server without completions has no suggestions; an empty answer is what a client expects then.
      if (!client.getServerCapabilities()?.completions) return { completion: { values: [] } };
      return await client.complete(
        { ...rest, ...metaParam(ctx, client) },
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
    const options = { timeout: this.#options.timeoutMs };
    try {
      const client = this.#upClient();
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
    // 2026-07-28 has no ping: asking the server what it is is what proves it answers.
    const modern = client.getProtocolEra() === "modern";
    const options = { signal, timeout: HEALTH_TIMEOUT_MS };
    return this.probe(
      () => (modern ? client.discover(options) : client.ping(options)),
      (reason) => `${modern ? "server/discover" : "ping"} failed: ${reason}`,
    );
  }

  protected async open(): Promise<void> {
    await this.#connect();
  }

  protected override async release(): Promise<void> {
    this.#transport = undefined;
    this.#fast.failAll("the gateway is shutting down");
    clearTimeout(this.#restartTimer);
    this.#restart?.settle(this.#unavailable());
    this.#restart = undefined;
    // An attempt in progress stops, and its process has exited, before the backend says it is closed.
    const connecting = this.#connecting;
    this.#connecting = undefined;
    connecting?.controller.abort();
    await connecting?.done;
    const client = this.#client;
    this.#client = undefined;
    this.#listens.clear();
    if (client) await client.close().catch(() => undefined);
  }

  /**
   * The connection to call on: the current one, or, while a server that was up is being restarted,
   * the next one (the wait ends with the caller's signal, or when the restart fails).
   */
  async #clientFor(signal: AbortSignal): Promise<Client> {
    if (this.state === "up" && this.#client) return this.#client;
    const restart = this.#restart;
    if (restart) {
      // Someone is waiting for it now: the restart must happen even if nothing else keeps the process.
      this.#restartTimer?.ref();
      await untilAborted(restart.done, signal);
      if (this.state === "up" && this.#client) return this.#client;
    }
    throw this.#unavailable();
  }

  /** The current connection, for requests that do not wait for a restart (subscriptions). */
  #upClient(): Client {
    if (this.state !== "up" || !this.#client) throw this.#unavailable();
    return this.#client;
  }

  #unavailable(): GatewayError {
    const why = this.closed ? "the gateway is shutting down" : this.lastError || this.state;
    return new GatewayError(
      "backend_unavailable",
      `Server "${this.name}" is not available (${why}). ` +
        (this.closed
          ? "Try again on another instance."
          : "Switchboard is reconnecting to it; try again shortly."),
      { data: { server: this.name } },
    );
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
    return translateFailure(error, {
      server: this.name,
      what,
      timeoutMs: this.#options.timeoutMs,
      up: this.state === "up",
      restarting: this.#restart !== undefined,
    });
  }

  // ─── supervision ────────────────────────────────────────────────────────────────────────────

  async #connect(): Promise<void> {
    if (this.closed) return;
    this.setState("starting");
    const controller = new AbortController();
    const attempt = connect(
      {
        server: this.name,
        transport: this.#options.transport,
        clientInfo: this.#options.clientInfo,
        roots: this.#options.roots ?? [],
        timeoutMs: this.#options.connectTimeoutMs,
        log: this.log,
        events: () => this.events,
        onChanged: (from, changed) => void this.#refresh(from, changed),
        onClosed: (client, stderr) => this.#onDisconnect(client, stderr.explain("connection closed"), stderr),
        redact: (text) => this.redact(text),
      },
      this.#era,
      controller.signal,
    );
    const connecting = { controller, done: attempt };
    this.#connecting = connecting;
    const outcome = await attempt;
    if (this.#connecting === connecting) this.#connecting = undefined;
    this.#era = outcome.era;
    if (!outcome.ok) {
      if (this.closed) return;
      this.log.warn(
        { err: outcome.reason, attempt: this.#attempt, stderr: outcome.stderr },
        "server failed to start",
      );
      this.setState("down", outcome.reason);
      this.#restart?.settle(this.#unavailable());
      this.#restart = undefined;
      this.#scheduleRestart();
      return;
    }
    const { client, transport, catalog } = outcome.connection;
    if (this.closed) {
      await client.close().catch(() => undefined);
      return;
    }
    this.#fast.intercept(transport, (message) => this.events?.log(message));
    this.#transport = transport;
    this.#catalog = catalog;
    this.#client = client;
    this.#instructions = client.getInstructions() || undefined;
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
    this.#restart?.settle();
    this.#restart = undefined;
  }

  async #refresh(client: Client, changed: ListChanged): Promise<void> {
    if (client !== this.#client || this.state !== "up") return;
    try {
      const next = await relist(client, this.#catalog, changed, this.log);
      if (client !== this.#client) return;
      this.#catalog = next;
      this.log.debug({ changed }, "server lists changed");
      this.events?.listChanged(changed);
    } catch (error) {
      this.log.warn({ err: describeError(error) }, "could not re-read the server's lists after list_changed");
    }
  }

  #onDisconnect(client: Client, reason: string, stderr: StderrTail): void {
    if (client !== this.#client || this.closed) return;
    this.#client = undefined;
    this.#transport = undefined;
    this.#catalog = EMPTY_CATALOG;
    if (Date.now() - this.#upSince > STABLE_UPTIME_MS) this.#attempt = 0;
    this.log.warn({ reason, stderr: stderr.lines }, "server went down");
    this.setState("down", reason);
    this.#scheduleRestart();
    // Before the calls in flight fail, so that their failures are marked as explained by the restart.
    if (!this.#gaveUp) this.#restart ??= newRestart();
    this.#fast.failAll(reason);
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
