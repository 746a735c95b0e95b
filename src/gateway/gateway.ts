/**
 * The gateway: owns the backends, keeps the aggregated catalog current, and runs every call through
 * its policy chain. It knows nothing of transports: server/ adapts it to stdio and HTTP.
 */

import { randomUUID } from "node:crypto";
import { EventEmitter } from "node:events";
import { ProtocolError } from "@modelcontextprotocol/server";
import type { SpanExporter } from "@opentelemetry/sdk-trace-base";
import { type AuditLog, createAuditLog } from "../audit/index.ts";
import { GatewayToolsBackend } from "../backends/gateway-tools.ts";
import { LazyBackend } from "../backends/lazy.ts";
import { McpBackend, type McpTransportConfig } from "../backends/mcp/backend.ts";
import {
  type AnyServerConfig,
  type BuiltinBackendConfig,
  type Config,
  GATEWAY_TOOLS_SERVER,
  type ServerConfig,
} from "../config/schema.ts";
import { compose } from "../core/compose.ts";
import { errorResult, GatewayError } from "../core/errors.ts";
import { redactDeep, redactSecrets } from "../core/redact.ts";
import {
  ANONYMOUS,
  type Backend,
  type BackendLogMessage,
  type BackendState,
  type CallContext,
  type CallerChannel,
  type CallHandler,
  type CallToolResult,
  type CompleteRequestParams,
  type CompleteResult,
  type GetPromptResult,
  type ListChanged,
  type LoggingLevel,
  MCP_LOG_LEVELS,
  type Principal,
  type ProgressUpdate,
  type Prompt,
  type ReadResourceResult,
  type Resource,
  type ResourceTemplate,
  type Store,
  type Tool,
  type Unsubscribe,
} from "../core/types.ts";
import type { Logger } from "../observability/logger.ts";
import { PolicyRuntime } from "../policies/runtime.ts";
import { type AccessControl, accessPolicy, createAccessControl } from "../security/access.ts";
import { argumentsPolicy, createArgumentValidator } from "../security/arguments.ts";
import { stdioPrincipal } from "../security/auth.ts";
import {
  createSignatureVerifier,
  SIGNATURE_META_KEY,
  type SignatureVerifier,
  signaturePolicy,
} from "../security/signing.ts";
import { failClosedUses, openStore, ResilientStore } from "../stores/index.ts";
import { VERSION } from "../version.ts";
import { auditPolicy } from "./audit-policy.ts";
import { Catalog, type ServerNaming, type ToolRoute } from "./catalog.ts";
import { createObservability, type Observability } from "./observe.ts";

export interface GatewayOptions {
  /** Where spans go instead of OTLP (tests pass an in-memory exporter). */
  readonly spanExporter?: SpanExporter;
  /** Every secret value of the config, redacted from audit records (SecretResolver.values). */
  readonly secretValues?: () => readonly string[];
  /** Where relative paths of the config start (the audit file): the config file's folder. Default: cwd. */
  readonly baseDir?: string;
  /** Names this replica in audit records, when several share a sink. Default: none. */
  readonly replica?: string;
}

/** What a transport hands the gateway with each request. */
export interface RequestOptions {
  readonly principal?: Principal;
  readonly signal?: AbortSignal;
  readonly meta?: Readonly<Record<string, unknown>>;
  readonly onProgress?: (update: ProgressUpdate) => void;
  readonly requestId?: string;
  /** The calling client, for backends that ask it for sampling or elicitation during a call. */
  readonly client?: CallerChannel;
  readonly transport?: "stdio" | "http";
}

/**
 * Whoever holds subscriptions or a log level (a client connection, a listen stream): a key released
 * with `release` when it goes away, and the principal whose access rules decide what it may hear.
 */
export interface Holder {
  readonly principal: Principal;
}

/**
 * The store channel on which a replica announces that a backend's lists changed (JSON
 * `{ server, changed }`), for replicas whose own connection to that server may not have heard it.
 */
const LIST_CHANGED_CHANNEL = "catalog:list-changed";

export interface GatewayEvents {
  listChanged: [ListChanged];
  log: [{ server: string } & BackendLogMessage];
  resourceUpdated: [string];
  backendState: [{ server: string; state: BackendState; reason?: string | undefined }];
}

interface ServerEntry {
  readonly name: string;
  readonly naming: ServerNaming;
  readonly backend: Backend;
}

export class Gateway extends EventEmitter<GatewayEvents> {
  readonly config: Config;
  readonly logger: Logger;
  readonly policies: PolicyRuntime;
  /** Rate-limit buckets, cached results and what replicas share (config `store`); closed by `close`. */
  readonly store: Store;
  /** Metrics, traces, per-tool statistics and the health checker. */
  readonly observability: Observability;
  /** One record per call (config `audit`); disabled unless configured. */
  readonly audit: AuditLog;
  /** Per-principal access rules (config `access`); undefined when everyone may call everything. */
  readonly access: AccessControl | undefined;
  /** The principal of local stdio clients (config `auth.stdioPrincipal`, else anonymous). */
  readonly stdioPrincipal: Principal;
  readonly #signatures: SignatureVerifier | undefined;
  readonly #validator = createArgumentValidator({
    onCompileError: (schema, error) =>
      this.logger.warn(
        { err: error, schema },
        "a tool's inputSchema does not compile; its calls are passed on without argument validation",
      ),
  });
  readonly #replica: string | undefined;
  readonly #secretValues: () => readonly string[];
  /** The last state each backend reported, to count restarts (down, then up again). */
  readonly #lastState = new Map<string, BackendState>();
  #entries: readonly ServerEntry[];
  #byName: ReadonlyMap<string, ServerEntry>;
  #catalog: Catalog = Catalog.empty;
  /** Composed chains per exposed tool, rebuilt when the catalog changes. */
  #handlers = new Map<string, CallHandler>();
  #inFlight = 0;
  /** Tool calls in flight per server, oldest first: where a backend's questions and logs go. */
  readonly #calls = new Map<string, Set<CallContext>>();
  /** Resource subscriptions: URI to the holders subscribed to it. A backend hears once per URI. */
  readonly #subscriptions = new Map<string, Set<Holder>>();
  /**
   * Long-lived client connections and the log level each asked for (undefined: none yet). A backend
   * gets the most verbose level among the clients that may see it (see #applyLogLevel).
   */
  readonly #logLevels = new Map<Holder, LoggingLevel | undefined>();
  /** The level each backend was last told, by server name. */
  readonly #backendLogLevels = new Map<string, LoggingLevel>();
  /** Whether a principal may see a server at all, per catalog: see maySeeServer. */
  #visibleServers = new Map<string, boolean>();
  #drained: (() => void) | undefined;
  #closing = false;
  /**
   * Routes of tools hidden because their server is not up, kept so that a call to one still reaches
   * the server's backend, which answers that it is unavailable and why (and the policies, a fallback
   * included, see that failure), rather than the caller being told that the tool does not exist.
   */
  readonly #hiddenRoutes = new Map<string, ToolRoute>();
  /** One per tool call in flight: aborted when shutdown gives up waiting for the calls. */
  readonly #running = new Set<AbortController>();
  #listChangedSubscription: Unsubscribe | undefined;
  /** undefined until the store's first connection attempt is over (start() reports that one). */
  #storeDown: boolean | undefined;
  /** Servers whose lists are being re-read because another replica said so: not announced again. */
  readonly #refreshing = new Set<string>();

  constructor(config: Config, logger: Logger, backends?: readonly Backend[], options: GatewayOptions = {}) {
    super();
    // Before the backends are made: their failure reasons are redacted with it.
    this.#secretValues = options.secretValues ?? (() => []);
    this.config = config;
    this.logger = logger;
    const entries: ServerEntry[] = [];
    const add = (name: string, server: AnyServerConfig, make: () => Backend) => {
      if (!server.enabled) return;
      const backend = backends?.find((b) => b.name === name) ?? make();
      entries.push({ name, naming: namingOf(name, server), backend });
    };
    for (const [name, server] of Object.entries(config.mcpServers)) {
      add(name, server, () => this.#makeMcpBackend(name, server));
    }
    for (const [name, backend] of Object.entries(config.backends)) {
      add(name, backend, () => this.#makeBuiltin(name, backend));
    }
    const ownTools = config.gatewayTools;
    if (ownTools.health || ownTools.metrics) {
      entries.push({
        name: GATEWAY_TOOLS_SERVER,
        naming: { ...namingOf(GATEWAY_TOOLS_SERVER, undefined), prefix: GATEWAY_TOOLS_SERVER },
        backend: new GatewayToolsBackend(GATEWAY_TOOLS_SERVER, {
          health: ownTools.health,
          metrics: ownTools.metrics,
          report: () => this.observability.health.report(),
          toolStats: () => this.observability.toolStats.snapshot(),
          maySeeServer: (principal, server) => this.maySeeServer(principal, server),
          maySeeTool: (principal, exposedName) => {
            const route = this.#catalog.tool(exposedName) ?? this.#hiddenRoutes.get(exposedName);
            if (!this.access) return true;
            return route !== undefined && this.access.canCall(principal, exposedName, route.server);
          },
        }),
      });
    }
    this.#entries = entries;
    this.#byName = new Map(entries.map((e) => [e.name, e]));
    // Opened here, connected in start(): the policy runtime needs its store from the start.
    this.store = openStore(config.store, {
      onListenerError: ({ channel, error }) =>
        logger.error({ err: error, channel }, "a handler of a store message threw"),
    });
    this.#watchStore();
    this.policies = new PolicyRuntime(
      {
        policies: config.policies,
        servers: Object.fromEntries(
          allServers(config).map(([name, s]) => [name, { policies: s.policies, timeoutMs: s.timeoutMs }]),
        ),
        toolPolicies: config.toolPolicies,
      },
      {
        store: this.store,
        logger,
        tools: () =>
          this.#catalog
            .toolRoutes()
            .map((r) => ({ exposedName: r.exposedName, server: r.server, tool: r.original })),
        // A fallback's call is the gateway's own: the client's signature covered the primary call.
        callTool: (exposedName, args, ctx) => this.#callWithContext(exposedName, args, withoutSignature(ctx)),
      },
    );
    const store = this.store;
    this.#replica = options.replica;
    this.access = config.access ? createAccessControl(config.access) : undefined;
    this.#signatures = config.signing ? createSignatureVerifier(config.signing, store) : undefined;
    this.stdioPrincipal = stdioPrincipal(config.auth);
    this.audit = createAuditLog(config.audit, {
      logger,
      ...(options.secretValues ? { secretValues: options.secretValues } : {}),
      ...(options.baseDir ? { baseDir: options.baseDir } : {}),
    });
    const audit = this.audit;
    this.observability = createObservability(config.observability, {
      extraChecks: audit.enabled
        ? [{ name: "audit", kind: "store", required: true, run: async () => audit.health() }]
        : [],
      logger,
      store,
      backends: () => this.#entries.map((e) => e.backend).filter((b) => !(b instanceof GatewayToolsBackend)),
      storeRequired: () => failClosedUses(store).length > 0,
      ...(options.spanExporter ? { spanExporter: options.spanExporter } : {}),
    });
    this.observability.metrics?.subscribe(this.policies);
  }

  get catalog(): Catalog {
    return this.#catalog;
  }

  // What one principal may see: a client never learns of what it cannot call (config `access`).

  toolsFor(principal: Principal): readonly Tool[] {
    const catalog = this.#catalog;
    const tools = catalog.tools();
    if (!this.access) return tools;
    return this.access.filter(principal, tools, (tool) => ({
      name: tool.name,
      server: catalog.tool(tool.name)?.server ?? "",
    }));
  }

  promptsFor(principal: Principal): readonly Prompt[] {
    const catalog = this.#catalog;
    const prompts = catalog.prompts();
    if (!this.access) return prompts;
    return this.access.filter(principal, prompts, (prompt) => ({
      name: prompt.name,
      server: catalog.prompt(prompt.name)?.server ?? "",
    }));
  }

  resourcesFor(principal: Principal): readonly Resource[] {
    const catalog = this.#catalog;
    const resources = catalog.resources();
    if (!this.access) return resources;
    return this.access.filterResources(principal, resources, (r) => catalog.resourceServer(r.uri) ?? "");
  }

  resourceTemplatesFor(principal: Principal): readonly ResourceTemplate[] {
    const templates = this.#catalog.resourceTemplates();
    if (!this.access) return templates;
    return this.access.filterResources(
      principal,
      templates,
      (t) => this.#templateOwner(t.uriTemplate)?.name ?? "",
    );
  }

  get inFlight(): number {
    return this.#inFlight;
  }

  backends(): readonly Backend[] {
    return this.#entries.map((e) => e.backend);
  }

  /**
   * Starts every backend in parallel and resolves when each has come up or failed its first attempt,
   * or when the start-up timeout passes: the gateway serves what is up and says what is not.
   */
  async start(): Promise<void> {
    const storeReady = this.#connectStore();
    const started = Promise.allSettled(
      this.#entries.map((entry) =>
        entry.backend.start({
          state: (state, reason) => this.#onState(entry, state, reason),
          listChanged: (changed) => this.#onListChanged(entry, changed),
          log: (message) => this.#onLog(entry, message),
          resourceUpdated: (uri) => this.emit("resourceUpdated", uri),
          callerOf: (signal) => this.#callerOf(entry.name, signal),
        }),
      ),
    );
    let timer: NodeJS.Timeout | undefined;
    await Promise.race([
      started,
      new Promise<void>((resolve) => {
        timer = setTimeout(resolve, this.config.gateway.startupTimeoutMs);
      }),
    ]);
    clearTimeout(timer);
    await storeReady;
    this.#rebuildCatalog();
    const down = this.#entries.filter((e) => e.backend.state !== "up");
    for (const entry of down) {
      const reason = entry.backend instanceof McpBackend ? entry.backend.lastError : entry.backend.state;
      this.logger.warn(
        { server: entry.name, state: entry.backend.state, reason },
        entry.backend instanceof McpBackend && entry.backend.gaveUp
          ? `server "${entry.name}" is not up and will not be retried; serving the others`
          : `server "${entry.name}" is not up yet; serving the others and retrying it in the background`,
      );
    }
    this.logger.info(
      {
        servers: this.#entries.length,
        up: this.#entries.length - down.length,
        tools: this.#catalog.tools().length,
        resources: this.#catalog.resources().length,
        prompts: this.#catalog.prompts().length,
      },
      "gateway ready",
    );
  }

  /** One tools/call. Request-level failures throw (JSON-RPC errors); call failures return isError. */
  callTool(
    name: string,
    args: Record<string, unknown> | undefined,
    options: RequestOptions = {},
  ): Promise<CallToolResult> {
    const onProgress = options.onProgress;
    const ctx: CallContext = {
      requestId: options.requestId ?? randomUUID(),
      signal: options.signal ?? new AbortController().signal,
      principal: options.principal ?? ANONYMOUS,
      meta: options.meta ?? {},
      notes: new Map(),
      ...(onProgress ? { onProgress: (update: ProgressUpdate) => onProgress(this.#redact(update)) } : {}),
      ...(options.client ? { client: options.client } : {}),
      ...(options.transport ? { transport: options.transport } : {}),
    };
    return this.#callWithContext(name, args ?? {}, ctx).then(
      (result) => (result.isError ? this.#redact(result) : result),
      (error: unknown) => {
        throw this.#redactError(error);
      },
    );
  }

  /**
   * Everything a client is sent that is not a tool's own successful result (errors, `isError`
   * results, progress and log messages) passes here: no secret value of the config reaches a client.
   */
  #redact<T>(value: T): T {
    return redactDeep(value, this.#secretValues());
  }

  #redactError(error: unknown): unknown {
    const secrets = this.#secretValues();
    if (secrets.length === 0) return error;
    if (error instanceof GatewayError) {
      return new GatewayError(error.code, redactSecrets(error.message, secrets), {
        data: redactDeep(error.data, secrets),
      });
    }
    if (isProtocolError(error)) {
      const data = (error as { data?: unknown }).data;
      return new ProtocolError(error.code, redactSecrets(error.message, secrets), redactDeep(data, secrets));
    }
    return error;
  }

  /** Runs a resource, prompt or completion request, with its failure redacted like a call's. */
  async #redacting<T>(run: () => Promise<T>): Promise<T> {
    try {
      return await run();
    } catch (error) {
      throw this.#redactError(error);
    }
  }

  async #callWithContext(
    name: string,
    args: Record<string, unknown>,
    ctx: CallContext,
  ): Promise<CallToolResult> {
    const route = this.#catalog.tool(name) ?? this.#hiddenRoute(name);
    if (!route) {
      const error = this.#unknownTool(name);
      if (this.audit.enabled) await this.#auditUnknown(name, args, ctx, error);
      throw error;
    }
    const handler = this.#handlerFor(route);
    this.#begin();
    // The caller's signal, forwarded to one the gateway can abort too (at the shutdown deadline).
    const controller = new AbortController();
    const forward = () => controller.abort(ctx.signal.reason);
    if (ctx.signal.aborted) forward();
    else ctx.signal.addEventListener("abort", forward, { once: true });
    this.#running.add(controller);
    try {
      // A tools/call chain answers a tool result (only other kinds' chains answer other results).
      return (await handler(
        { server: route.server, tool: route.tool, args },
        { ...ctx, signal: controller.signal },
      )) as CallToolResult;
    } catch (error) {
      if (error instanceof GatewayError) {
        if (error.code === "unknown_tool" || error.code === "invalid_arguments") throw error;
        return errorResult(name, error);
      }
      // A JSON-RPC error from the backend keeps its code and message (the server layer maps it).
      if (isProtocolError(error)) throw error;
      this.logger.error(
        { err: error, tool: name, requestId: ctx.requestId },
        "unexpected error in a tool call",
      );
      return errorResult(
        name,
        new GatewayError(
          "internal",
          `Tool "${name}" failed unexpectedly; see the gateway log (request ${ctx.requestId}).`,
        ),
      );
    } finally {
      ctx.signal.removeEventListener("abort", forward);
      this.#running.delete(controller);
      this.#end();
    }
  }

  readResource(uri: string, options: RequestOptions = {}): Promise<ReadResourceResult> {
    return this.#redacting(() => this.#readResource(uri, options));
  }

  async #readResource(uri: string, options: RequestOptions): Promise<ReadResourceResult> {
    const server = this.#catalog.resourceServer(uri);
    const entry = server === undefined ? undefined : this.#byName.get(server);
    if (!entry) {
      throw new GatewayError(
        "unknown_resource",
        `Resource "${uri}" is not offered by any connected server.`,
        {
          data: { uri },
        },
      );
    }
    this.access?.check(options.principal ?? ANONYMOUS, uri, entry.name, "resource");
    this.#begin();
    try {
      return await entry.backend.readResource(uri, this.#context(options));
    } finally {
      this.#end();
    }
  }

  getPrompt(
    name: string,
    args: Record<string, string> | undefined,
    options: RequestOptions = {},
  ): Promise<GetPromptResult> {
    return this.#redacting(() => this.#getPrompt(name, args, options));
  }

  async #getPrompt(
    name: string,
    args: Record<string, string> | undefined,
    options: RequestOptions,
  ): Promise<GetPromptResult> {
    const route = this.#catalog.prompt(name);
    const entry = route ? this.#byName.get(route.server) : undefined;
    if (!route || !entry) {
      throw new GatewayError(
        "unknown_prompt",
        `Prompt "${name}" does not exist. List prompts to see what is available.`,
        {
          data: { prompt: name },
        },
      );
    }
    this.access?.check(options.principal ?? ANONYMOUS, name, entry.name, "prompt");
    this.#begin();
    try {
      return await entry.backend.getPrompt(route.prompt, args, this.#context(options));
    } finally {
      this.#end();
    }
  }

  /**
   * `completion/complete`: a prompt reference is renamed to the backend's own prompt name; a resource
   * reference goes to the server that offers that template (or URI).
   */
  complete(params: CompleteRequestParams, options: RequestOptions = {}): Promise<CompleteResult> {
    return this.#redacting(() => this.#complete(params, options));
  }

  async #complete(params: CompleteRequestParams, options: RequestOptions): Promise<CompleteResult> {
    const ref = params.ref;
    let entry: ServerEntry | undefined;
    let forwarded = params;
    if (ref.type === "ref/prompt") {
      const route = this.#catalog.prompt(ref.name);
      entry = route ? this.#byName.get(route.server) : undefined;
      if (!route || !entry) {
        throw new GatewayError(
          "unknown_prompt",
          `Cannot complete arguments of prompt "${ref.name}": no such prompt. List prompts to see what is available.`,
          { data: { prompt: ref.name } },
        );
      }
      forwarded = { ...params, ref: { ...ref, name: route.prompt } };
    } else {
      entry = this.#templateOwner(ref.uri) ?? this.#resourceOwner(ref.uri);
      if (!entry) {
        throw new GatewayError(
          "unknown_resource",
          `Cannot complete arguments of resource "${ref.uri}": no connected server offers that resource ` +
            "template. List resource templates to see what is available.",
          { data: { uri: ref.uri } },
        );
      }
    }
    const principal = options.principal ?? ANONYMOUS;
    if (ref.type === "ref/prompt") this.access?.check(principal, ref.name, entry.name, "prompt");
    else this.access?.check(principal, ref.uri, entry.name, "resource");
    if (!entry.backend.complete) return { completion: { values: [] } };
    this.#begin();
    try {
      return await entry.backend.complete(forwarded, this.#context(options));
    } finally {
      this.#end();
    }
  }

  /**
   * `resources/subscribe` for one holder. The owning backend is told once per URI, and again after it
   * reconnects; `notifications/resources/updated` then arrives as the `resourceUpdated` event.
   */
  subscribe(uri: string, holder: Holder): Promise<void> {
    return this.#redacting(() => this.#subscribe(uri, holder));
  }

  async #subscribe(uri: string, holder: Holder): Promise<void> {
    const entry = this.#resourceOwner(uri);
    if (!entry) {
      throw new GatewayError(
        "unknown_resource",
        `Cannot subscribe to resource "${uri}": no connected server offers it. List resources to see what is available.`,
        { data: { uri } },
      );
    }
    // As for resources/read: a subscription delivers the resource's updates, so it needs the same right.
    this.access?.check(holder.principal, uri, entry.name, "resource");
    let holders = this.#subscriptions.get(uri);
    if (holders?.has(holder)) return;
    if (!holders) {
      holders = new Set();
      this.#subscriptions.set(uri, holders);
    }
    holders.add(holder);
    if (holders.size > 1) return;
    try {
      await entry.backend.subscribeResource?.(uri);
    } catch (error) {
      holders.delete(holder);
      if (holders.size === 0) this.#subscriptions.delete(uri);
      throw error;
    }
  }

  async unsubscribe(uri: string, holder: Holder): Promise<void> {
    const holders = this.#subscriptions.get(uri);
    if (!holders?.delete(holder) || holders.size > 0) return;
    this.#subscriptions.delete(uri);
    const entry = this.#resourceOwner(uri);
    await entry?.backend.unsubscribeResource?.(uri);
  }

  /**
   * `logging/setLevel` from one holder. 2025-era backends are shared by every client, so they get the
   * most verbose level any client wants, and each client's own level filters what it is sent.
   */
  async setLogLevel(holder: Holder, level: LoggingLevel): Promise<void> {
    this.#logLevels.set(holder, level);
    await this.#applyLogLevel();
  }

  /**
   * A long-lived client connection (stdio, a 2025-era session) that has not set a log level: it
   * receives its own calls' log messages as the backends send them, so no other client's level may
   * make a backend it can see quieter than its default (see #applyLogLevel).
   */
  attachClient(holder: Holder): void {
    if (!this.#logLevels.has(holder)) this.#logLevels.set(holder, undefined);
  }

  /** The log level a client asked for with `logging/setLevel`, if it did. */
  logLevelOf(holder: Holder): LoggingLevel | undefined {
    return this.#logLevels.get(holder);
  }

  /**
   * Whether the principal may see anything of `server`: one of its tools or prompts, or its resources.
   * Log messages and statistics of a server go only to those who may.
   */
  maySeeServer(principal: Principal, server: string): boolean {
    const access = this.access;
    if (!access) return true;
    const key = `${principal.id}\u0000${principal.roles.join("\u0001")}\u0000${server}`;
    let visible = this.#visibleServers.get(key);
    if (visible === undefined) {
      const catalog = this.#catalog;
      visible =
        access.canReadServer(principal, server) ||
        catalog
          .toolRoutes()
          .some((r) => r.server === server && access.canCall(principal, r.exposedName, server)) ||
        catalog
          .prompts()
          .some(
            (p) => catalog.prompt(p.name)?.server === server && access.canCall(principal, p.name, server),
          );
      if (this.#visibleServers.size >= 10_000) this.#visibleServers.clear();
      this.#visibleServers.set(key, visible);
    }
    return visible;
  }

  /** Whether some server offers `uri` and the principal may read that server's resources. */
  mayReadResource(principal: Principal, uri: string): boolean {
    const entry = this.#resourceOwner(uri);
    if (!entry) return false;
    return this.access?.canReadServer(principal, entry.name) ?? true;
  }

  /** Forgets a holder's subscriptions and log level, when its connection closes. */
  release(holder: Holder): void {
    for (const [uri, holders] of this.#subscriptions) {
      if (!holders.has(holder)) continue;
      this.unsubscribe(uri, holder).catch((error) =>
        this.logger.debug({ uri, err: error }, "could not unsubscribe from a resource"),
      );
    }
    if (this.#logLevels.delete(holder)) void this.#applyLogLevel();
  }

  /** Waits for in-flight calls to finish, up to `deadlineMs`. Resolves true when all finished. */
  async drain(deadlineMs: number): Promise<boolean> {
    this.#closing = true;
    if (this.#inFlight === 0) return true;
    let timer: NodeJS.Timeout | undefined;
    const finished = await Promise.race([
      new Promise<boolean>((resolve) => {
        this.#drained = () => resolve(true);
      }),
      new Promise<boolean>((resolve) => {
        timer = setTimeout(() => resolve(false), deadlineMs);
      }),
    ]);
    clearTimeout(timer);
    return finished;
  }

  /**
   * Stops every tool call still running with `reason` (shutdown, past its deadline): each caller is
   * answered with that error instead of losing its connection unanswered.
   */
  abortInFlight(reason: GatewayError): void {
    for (const controller of this.#running) controller.abort(reason);
  }

  get closing(): boolean {
    return this.#closing;
  }

  async close(): Promise<void> {
    this.#closing = true;
    await this.#listChangedSubscription?.();
    await Promise.allSettled(this.#entries.map((e) => e.backend.close()));
    await this.policies.close();
    await this.observability.close();
    await this.audit.close();
    try {
      await this.store.close();
    } catch (error) {
      this.logger.warn({ err: error }, "could not close the store cleanly");
    }
  }

  /**
   * Waits for a shared store's first connection (bounded by its connect timeout) and subscribes to
   * other replicas' list changes. An unreachable store is logged, not fatal: it reconnects by itself,
   * and `store.onStoreError` says what calls do meanwhile.
   */
  async #connectStore(): Promise<void> {
    if (this.store instanceof ResilientStore) {
      const health = await this.store.connect();
      this.#storeDown = health.status !== "healthy";
      if (!this.#storeDown) this.logger.info({ store: health.data }, "shared store connected");
      else this.logger.warn({ store: health.data }, `shared store unavailable at start: ${health.detail}`);
    }
    try {
      this.#listChangedSubscription = await this.store.subscribe(LIST_CHANGED_CHANNEL, (message, info) => {
        if (!info.fromSelf) this.#onRemoteListChanged(message);
      });
    } catch (error) {
      this.logger.warn(
        { err: error },
        "could not subscribe to other replicas' list changes; clients of this replica hear only its own",
      );
    }
  }

  /** Logs the shared store's outages and recoveries; a recovery re-reads shared circuit state. */
  #watchStore(): void {
    const store = this.store;
    if (!(store instanceof ResilientStore)) return;
    store.on("state", (health) => {
      if (this.#storeDown === undefined) return;
      if (health.status === "healthy") {
        if (!this.#storeDown) return;
        this.#storeDown = false;
        this.logger.info({ store: health.data }, "shared store available again; state is shared again");
        void this.policies.storeRecovered();
      } else if (!this.#storeDown) {
        this.#storeDown = true;
        this.logger.warn({ store: health.data }, `shared store unavailable: ${health.detail}`);
      }
    });
    store.on("fallback", (event) =>
      this.logger.debug(event, "a store operation was served by this replica's memory (fail-open)"),
    );
    store.on("skipped", (event) =>
      this.logger.debug(event, "a value was too large for the shared store and was not stored"),
    );
  }

  #context(options: RequestOptions): CallContext {
    return {
      requestId: options.requestId ?? randomUUID(),
      signal: options.signal ?? new AbortController().signal,
      principal: options.principal ?? ANONYMOUS,
      meta: options.meta ?? {},
      notes: new Map(),
    };
  }

  #resourceOwner(uri: string): ServerEntry | undefined {
    const server = this.#catalog.resourceServer(uri);
    return server === undefined ? undefined : this.#byName.get(server);
  }

  /** The first server in config order that lists this exact URI template, as the catalog keeps it. */
  #templateOwner(uriTemplate: string): ServerEntry | undefined {
    return this.#entries.find(
      (e) =>
        e.backend.state === "up" &&
        e.backend.catalog().resourceTemplates.some((t) => t.uriTemplate === uriTemplate),
    );
  }

  /**
   * With a signal the backend knows which request asked, and only the tool call with that signal may
   * answer (none, if the request was not a tool call). Without one, the most recent call on the
   * server is the best guess; with a single call in flight it is the right one.
   */
  #callerOf(server: string, signal?: AbortSignal): CallContext | undefined {
    const calls = this.#calls.get(server);
    if (!calls) return undefined;
    let latest: CallContext | undefined;
    for (const call of calls) {
      if (signal !== undefined) {
        if (call.signal === signal) return call;
        continue;
      }
      latest = call;
    }
    return latest;
  }

  /**
   * A backend log goes to the caller when exactly one call is in flight on that backend (so it rides
   * on that call's response stream); otherwise (or when that call was answered in the meantime) it
   * cannot be attributed and goes to the clients that asked for log messages and may see the server.
   */
  #onLog(entry: ServerEntry, received: BackendLogMessage): void {
    const message = this.#redact(received);
    const calls = this.#calls.get(entry.name);
    if (calls?.size === 1) {
      const [only] = calls;
      const logger = message.logger ? `${entry.name}/${message.logger}` : entry.name;
      if (only?.client?.log({ ...message, logger })) return;
    }
    this.emit("log", { server: entry.name, ...message });
  }

  /**
   * Backends are shared by every client, so each is told the most verbose level among the clients
   * that may see it, and every client filters what it is sent by its own level (a client's level
   * never reaches a backend it may not see). A client that set no level counts as wanting what the
   * backend sends by default: once a backend has been told a level, it is put back to "debug" (the
   * most verbose) for such a client, rather than left at another client's quieter level.
   */
  async #applyLogLevel(): Promise<void> {
    await Promise.all(
      this.#entries.map((entry) => {
        const level = this.#wantedLogLevel(entry.name);
        if (level === undefined || level === this.#backendLogLevels.get(entry.name)) return undefined;
        this.#backendLogLevels.set(entry.name, level);
        return this.#sendLogLevel(entry, level);
      }),
    );
  }

  #wantedLogLevel(server: string): LoggingLevel | undefined {
    let index: number | undefined;
    let unset = false;
    for (const [holder, level] of this.#logLevels) {
      if (!this.maySeeServer(holder.principal, server)) continue;
      if (level === undefined) unset = true;
      else index = Math.min(index ?? MCP_LOG_LEVELS.length, MCP_LOG_LEVELS.indexOf(level));
    }
    if (index === undefined) return undefined;
    return unset ? MCP_LOG_LEVELS[0] : MCP_LOG_LEVELS[index];
  }

  async #sendLogLevel(entry: ServerEntry, level: LoggingLevel): Promise<void> {
    try {
      await entry.backend.setLogLevel?.(level);
    } catch (error) {
      this.logger.warn(
        { server: entry.name, level, err: error },
        `could not set the log level of server "${entry.name}"; its log messages may be filtered differently`,
      );
    }
  }

  /** A reconnected backend has forgotten its subscriptions and log level; tell it again. */
  #restoreSessionState(entry: ServerEntry): void {
    const level = this.#backendLogLevels.get(entry.name);
    if (level !== undefined) void this.#sendLogLevel(entry, level);
    for (const uri of this.#subscriptions.keys()) {
      if (this.#resourceOwner(uri) !== entry) continue;
      entry.backend
        .subscribeResource?.(uri)
        .catch((error) =>
          this.logger.warn(
            { server: entry.name, uri, err: error },
            `could not renew the subscription to "${uri}" after server "${entry.name}" reconnected`,
          ),
        );
    }
  }

  #begin(): void {
    this.#inFlight++;
  }

  #end(): void {
    this.#inFlight--;
    if (this.#inFlight === 0 && this.#drained) this.#drained();
  }

  /** A call to a tool that does not exist is still a call someone made: it is recorded as invalid. */
  async #auditUnknown(name: string, args: Record<string, unknown>, ctx: CallContext, error: GatewayError) {
    try {
      await this.audit.record({
        requestId: ctx.requestId,
        principal: ctx.principal.id,
        server: "",
        tool: name,
        arguments: args,
        outcome: "invalid",
        error: error.message,
        durationMs: 0,
        source: "none",
        ...(ctx.transport ? { transport: ctx.transport } : {}),
        ...(this.#replica ? { replica: this.#replica } : {}),
      });
    } catch (unrecorded) {
      this.logger.error({ err: unrecorded, tool: name }, "could not record a call to an unknown tool");
    }
  }

  /** The route of a tool hidden because its server is down, while that server is still not up. */
  #hiddenRoute(name: string): ToolRoute | undefined {
    const route = this.#hiddenRoutes.get(name);
    return route && this.#byName.get(route.server)?.backend.state !== "up" ? route : undefined;
  }

  #unknownTool(name: string): GatewayError {
    return new GatewayError(
      "unknown_tool",
      `Tool "${name}" does not exist. List tools to see what is available` +
        (this.#entries.some((e) => e.backend.state !== "up")
          ? " (some servers are down and their tools are hidden)."
          : "."),
      { data: { tool: name } },
    );
  }

  #handlerFor(route: ToolRoute): CallHandler {
    let handler = this.#handlers.get(route.exposedName);
    if (!handler) {
      const entry = this.#byName.get(route.server) as ServerEntry;
      const backend = entry.backend;
      let calls = this.#calls.get(route.server);
      if (!calls) {
        calls = new Set();
        this.#calls.set(route.server, calls);
      }
      const inFlight = calls;
      // The context registered is the one the backend receives, after every policy has wrapped it: its
      // signal is the one the backend hands back with a server-to-client request (see callerOf).
      const terminal: CallHandler = (call, received) => {
        const ctx = withoutGatewayMeta(received);
        inFlight.add(ctx);
        return backend.callTool(call, ctx).finally(() => inFlight.delete(ctx));
      };
      const binding = { exposedName: route.exposedName, server: route.server, tool: route.original };
      const configured = this.policies.entriesFor(binding);
      // Arguments are checked after the rate limit (a flood of invalid calls is still limited) and
      // before everything that would store or send them.
      const limits = configured.findIndex((entry) => entry.name !== "rateLimit");
      const split = limits === -1 ? configured.length : limits;
      handler = compose(
        [
          this.observability.observe(route.exposedName, route.server, route.tool),
          ...(this.audit.enabled
            ? [auditPolicy(this.audit, route.exposedName, route.server, this.#replica)]
            : []),
          ...(this.access ? [accessPolicy(this.access, binding)] : []),
          ...(this.#signatures ? [signaturePolicy(this.#signatures, binding)] : []),
          ...configured.slice(0, split).map((entry) => entry.policy),
          argumentsPolicy({ limits: this.config.argumentLimits, validator: this.#validator }, binding),
          ...configured.slice(split).map((entry) => entry.policy),
        ],
        terminal,
      );
      this.#handlers.set(route.exposedName, handler);
    }
    return handler;
  }

  #onState(entry: ServerEntry, state: BackendState, reason?: string): void {
    this.emit("backendState", { server: entry.name, state, reason });
    const metrics = this.observability.metrics;
    if (metrics) {
      metrics.setBackendUp(entry.name, state === "up");
      if (state === "up" && this.#lastState.get(entry.name) === "down") metrics.backendRestarted(entry.name);
    }
    this.#lastState.set(entry.name, state);
    if (state === "up" || state === "down") {
      if (state === "up") void this.policies.invalidateServer(entry.name);
      this.#rebuildCatalog();
      if (state === "up") this.#restoreSessionState(entry);
    }
  }

  #onListChanged(entry: ServerEntry, changed: ListChanged): void {
    void this.policies.invalidateServer(entry.name);
    const exposed = this.#rebuildCatalog();
    if (!(exposed.tools || exposed.resources || exposed.prompts) || this.#refreshing.has(entry.name)) return;
    void this.#announceListChanged(entry.name, changed);
  }

  async #announceListChanged(server: string, changed: ListChanged): Promise<void> {
    try {
      await this.store.publish(LIST_CHANGED_CHANNEL, JSON.stringify({ server, changed }));
    } catch (error) {
      this.logger.warn(
        { err: error, server },
        "could not tell other replicas that a server's lists changed; their clients may list stale tools",
      );
    }
  }

  /**
   * Another replica heard that a server's lists changed. Its connection to that server is not this
   * one's: a backend that can re-read its lists does (and reports a change as usual); otherwise this
   * replica's clients are told to list again.
   */
  #onRemoteListChanged(message: string): void {
    let parsed: { server?: unknown; changed?: ListChanged } | undefined;
    try {
      parsed = JSON.parse(message) as typeof parsed;
    } catch {
      parsed = undefined;
    }
    const entry = typeof parsed?.server === "string" ? this.#byName.get(parsed.server) : undefined;
    const changed = parsed?.changed;
    if (!entry || typeof changed !== "object" || changed === null) return;
    const backend = entry.backend;
    if (!backend.refreshLists) {
      this.emit("listChanged", {
        ...(changed.tools ? { tools: true } : {}),
        ...(changed.resources ? { resources: true } : {}),
        ...(changed.prompts ? { prompts: true } : {}),
      });
      return;
    }
    this.#refreshing.add(entry.name);
    backend
      .refreshLists(changed)
      .catch((error: unknown) =>
        this.logger.warn(
          { err: error, server: entry.name },
          `could not re-read the lists of server "${entry.name}" after another replica saw them change`,
        ),
      )
      .finally(() => this.#refreshing.delete(entry.name));
  }

  /** Rebuilds the aggregated catalog and returns which exposed lists changed. */
  #rebuildCatalog(): ListChanged {
    const previous = this.#catalog;
    const next = Catalog.build(
      this.config.gateway.separator,
      this.#entries.map((e) => ({ naming: e.naming, catalog: e.backend.catalog() })),
    );
    for (const c of next.collisions) {
      this.logger.error(
        { kind: c.kind, name: c.name, kept: c.kept, dropped: c.dropped },
        `${c.kind} "${c.name}" is offered by both "${c.kept.server}" and "${c.dropped.server}"; ` +
          `keeping "${c.kept.server}". Give one of them a prefix or a rename.`,
      );
    }
    for (const route of previous.toolRoutes()) {
      if (!next.tool(route.exposedName) && this.#byName.get(route.server)?.backend.state !== "up") {
        this.#hiddenRoutes.set(route.exposedName, route);
      }
    }
    for (const route of next.toolRoutes()) this.#hiddenRoutes.delete(route.exposedName);
    this.#catalog = next;
    this.#handlers = new Map();
    this.#visibleServers = new Map();
    // Only what really differs is announced: a backend's list_changed that changes nothing we expose
    // (a filtered-out tool, say) stays quiet.
    const changed = next.diff(previous);
    if (changed.tools || changed.resources || changed.prompts) this.emit("listChanged", changed);
    return changed;
  }

  /** Built-ins load their module (and driver) when they start: see backends/lazy.ts. */
  #makeBuiltin(name: string, backend: BuiltinBackendConfig): Backend {
    const reconnect = backend.restart;
    switch (backend.type) {
      case "postgres":
        return new LazyBackend(
          name,
          async () =>
            (await import("../backends/postgres.ts")).createPostgresBackend(name, backend, this.logger, {
              reconnect,
            }),
          (loaded) => this.observability.metrics?.registerPoolStats(name, () => loaded.stats()),
        );
      case "redis":
        return new LazyBackend(name, async () =>
          (await import("../backends/redis/backend.ts")).createRedisBackend(name, backend, this.logger, {
            reconnect,
          }),
        );
      case "http":
        return new LazyBackend(name, async () =>
          (await import("../backends/http/backend.ts")).createHttpBackend(name, backend, this.logger),
        );
      case "filesystem":
        return new LazyBackend(name, async () =>
          (await import("../backends/filesystem/backend.ts")).createFilesystemBackend(
            name,
            backend,
            this.logger,
          ),
        );
    }
  }

  #makeMcpBackend(name: string, server: ServerConfig): Backend {
    return new McpBackend({
      name,
      transport: transportOf(server),
      timeoutMs: server.timeoutMs,
      restart: server.restart,
      connectTimeoutMs: this.config.gateway.startupTimeoutMs,
      logger: this.logger,
      clientInfo: { name: this.config.gateway.name, version: VERSION },
      redact: (text) => redactSecrets(text, this.#secretValues()),
    });
  }
}

/** MCP servers and built-in backends: one namespace of server names (the config checks it). */
function allServers(config: Config): [string, AnyServerConfig][] {
  return [...Object.entries(config.mcpServers), ...Object.entries(config.backends)];
}

function namingOf(name: string, server: AnyServerConfig | undefined): ServerNaming {
  return {
    server: name,
    prefix: server?.prefix ?? name,
    include: server?.tools.include ?? [],
    exclude: server?.tools.exclude ?? [],
    rename: server?.tools.rename ?? {},
    descriptions: server?.tools.descriptions ?? {},
  };
}

function transportOf(server: ServerConfig): McpTransportConfig {
  if (server.type === "http" || server.type === "sse") {
    return { type: server.type, url: server.url, headers: server.headers };
  }
  return { type: "stdio", command: server.command, args: server.args, env: server.env, cwd: server.cwd };
}

/**
 * The gateway's own `_meta` keys (`switchboard/…`: a request signature, say) are for the gateway: a
 * backend gets the client's `_meta` without them.
 */
function withoutGatewayMeta(ctx: CallContext): CallContext {
  let found = false;
  for (const key in ctx.meta) {
    if (key.startsWith(GATEWAY_META_PREFIX)) {
      found = true;
      break;
    }
  }
  if (!found) return ctx;
  const meta = Object.fromEntries(
    Object.entries(ctx.meta).filter(([key]) => !key.startsWith(GATEWAY_META_PREFIX)),
  );
  return { ...ctx, meta };
}

const GATEWAY_META_PREFIX = "switchboard/";

function withoutSignature(ctx: CallContext): CallContext {
  if (!(SIGNATURE_META_KEY in ctx.meta)) return ctx;
  const { [SIGNATURE_META_KEY]: _dropped, ...meta } = ctx.meta;
  return { ...ctx, meta };
}

function isProtocolError(error: unknown): error is Error & { code: number } {
  return error instanceof Error && typeof (error as { code?: unknown }).code === "number";
}
