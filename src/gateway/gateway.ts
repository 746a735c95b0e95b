/**
 * The running gateway: it applies a plan (plan.ts) — runs its backends, keeps the aggregated catalog
 * current, and passes every request through its route's chain (chains.ts). What clients hold on it
 * lives in sessions.ts, what replicas tell each other in replica-sync.ts, what a principal may see in
 * visibility.ts. It knows nothing of transports: protocol/ and server/ adapt it to stdio and HTTP.
 */
import { EventEmitter } from "node:events";
import type { SpanExporter } from "@opentelemetry/sdk-trace-base";
import { type AuditLog, type AuditSink, createAuditLog } from "../audit/index.ts";
import { GatewayToolsBackend } from "../backends/gateway-tools.ts";
import type { Config } from "../config/schema.ts";
import type { GatewayError } from "../core/errors.ts";
import { redactSecrets } from "../core/redact.ts";
import type {
  Backend,
  BackendLogMessage,
  BackendState,
  CallContext,
  CallToolResult,
  ChainResult,
  CompleteRequestParams,
  CompleteResult,
  GetPromptResult,
  ListChanged,
  LoggingLevel,
  Principal,
  Prompt,
  ReadResourceResult,
  Resource,
  ResourceTemplate,
  Store,
  Tool,
  ToolCall,
} from "../core/types.ts";
import type { Logger } from "../observability/logger.ts";
import { PolicyRuntime } from "../policies/runtime.ts";
import { type AccessControl, createAccessControl } from "../security/access.ts";
import { createArgumentValidator } from "../security/arguments.ts";
import { stdioPrincipal } from "../security/auth.ts";
import { createSignatureVerifier, SIGNATURE_META_KEY } from "../security/signing.ts";
import { failClosedUses, openStore } from "../stores/index.ts";
import { VERSION } from "../version.ts";
import { recordUnknownTool } from "./audit-policy.ts";
import { createBackend } from "./backend-factory.ts";
import type { Catalog, ServerNaming } from "./catalog.ts";
import { Chains } from "./chains.ts";
import { LiveCatalog } from "./live-catalog.ts";
import { createObservability, type Observability } from "./observe.ts";
import { Outbound } from "./outbound.ts";
import { buildPlan, namingOf, type Plan } from "./plan.ts";
import { ReplicaSync } from "./replica-sync.ts";
import {
  completionRequest,
  promptRequest,
  type Routed,
  resourceRequest,
  toolFailure,
  toolRequest,
} from "./requests.ts";
import type { Route } from "./route.ts";
import { contextOf, type RequestOptions, RunningRequests } from "./running.ts";
import { ServerEvents } from "./server-events.ts";

export type { RequestOptions } from "./running.ts";

import { ClientSessions, type Holder } from "./sessions.ts";
import { Visibility } from "./visibility.ts";

export type { Holder } from "./sessions.ts";

export interface GatewayOptions {
  /** Where spans go instead of OTLP (tests pass an in-memory exporter). */
  readonly spanExporter?: SpanExporter;
  /** Every secret value of the config, redacted from audit records (SecretResolver.values). */
  readonly secretValues?: () => readonly string[];
  /** Where relative paths of the config start (the audit file): the config file's folder. Default: cwd. */
  readonly baseDir?: string;
  /** Names this replica in audit records, when several share a sink. Default: none. */
  readonly replica?: string;
  /** The store to use instead of the one config `store` describes; the gateway closes it. */
  readonly store?: Store;
  /** Audit sinks besides those of config `audit` (auditing is on when there are any); closed with it. */
  readonly auditSinks?: readonly AuditSink[];
}

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
  readonly #plan: Plan;
  readonly #outbound: Outbound;
  readonly #visibility: Visibility;
  readonly #sessions: ClientSessions;
  readonly #sync: ReplicaSync;
  readonly #chains: Chains;
  readonly #replica: string | undefined;
  readonly #events: ServerEvents;
  readonly #entries: readonly ServerEntry[];
  readonly #byName: ReadonlyMap<string, ServerEntry>;
  readonly #catalog: LiveCatalog;
  #closing = false;
  readonly #running = new RunningRequests();
  #startup: Promise<void> = Promise.resolve();

  constructor(config: Config, logger: Logger, backends?: readonly Backend[], options: GatewayOptions = {}) {
    super();
    this.config = config;
    this.logger = logger;
    this.#replica = options.replica;
    const secretValues = options.secretValues ?? (() => []);
    this.#outbound = new Outbound(secretValues);
    this.#plan = buildPlan(config);
    this.access = config.access ? createAccessControl(config.access) : undefined;
    this.stdioPrincipal = stdioPrincipal(config.auth);
    this.#catalog = new LiveCatalog(
      config.gateway.separator,
      () => this.#entries,
      (name) => this.#byName.get(name),
      logger,
    );
    this.#visibility = new Visibility(
      this.access,
      () => this.#catalog.current,
      (uriTemplate) => this.#catalog.templateOwner(uriTemplate)?.name,
    );
    const planned = this.#plan.servers.map((server) => ({
      name: server.name,
      naming: server.naming,
      backend:
        backends?.find((b) => b.name === server.name) ??
        createBackend(server, {
          logger,
          clientInfo: { name: config.gateway.name, version: VERSION },
          connectTimeoutMs: config.gateway.startupTimeoutMs,
          redact: (text) => redactSecrets(text, secretValues()),
          metrics: () => this.observability.metrics,
          gatewayTools: {
            report: () => this.observability.health.report(),
            toolStats: () => this.observability.toolStats.snapshot(),
            maySeeServer: (principal, server) => this.maySeeServer(principal, server),
            maySeeTool: (principal, exposedName) => {
              const route = this.#catalog.toolRoute(exposedName);
              return route !== undefined && this.#visibility.mayCall(principal, exposedName, route.server);
            },
          },
        }),
    }));
    // A backend the config does not name is served under its own name, like a server with no settings.
    const embedded = (backends ?? [])
      .filter((backend) => !planned.some((entry) => entry.name === backend.name))
      .map((backend) => ({ name: backend.name, naming: namingOf(backend.name, undefined), backend }));
    const entries = [...planned, ...embedded];
    this.#entries = entries;
    this.#byName = new Map(entries.map((e) => [e.name, e]));
    // Opened here, connected in start(): the policy runtime needs its store from the start.
    this.store =
      options.store ??
      openStore(config.store, {
        onListenerError: ({ channel, error }) =>
          logger.error({ err: error, channel }, "a handler of a store message threw"),
      });
    const store = this.store;
    this.policies = new PolicyRuntime(this.#plan.policies, {
      store,
      logger,
      tools: () =>
        this.#catalog.current
          .toolRoutes()
          .map((r) => ({ exposedName: r.exposedName, server: r.server, tool: r.original })),
      // A fallback's call is the gateway's own: the client's signature covered the primary call.
      callTool: (exposedName, args, ctx) => this.#callTool(exposedName, args, withoutSignature(ctx)),
    });
    this.#sync = new ReplicaSync({
      store,
      logger,
      onRemoteListChanged: (server, changed) => this.#events.remoteListChanged(server, changed),
      onStoreRecovered: () => void this.policies.storeRecovered(),
    });
    this.#sessions = new ClientSessions({
      logger,
      ownerOf: (uri) => this.#catalog.resourceOwner(uri),
      servers: () => this.#entries,
      checkRead: (principal, uri, server) => this.access?.check(principal, uri, server, "resource"),
      maySeeServer: (principal, server) => this.maySeeServer(principal, server),
    });
    this.audit = createAuditLog(config.audit, {
      logger,
      ...(options.secretValues ? { secretValues: options.secretValues } : {}),
      ...(options.baseDir ? { baseDir: options.baseDir } : {}),
      ...(options.auditSinks ? { sinks: options.auditSinks } : {}),
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
    this.#chains = new Chains({
      policies: this.policies,
      observability: this.observability,
      audit,
      access: this.access,
      signatures: config.signing ? createSignatureVerifier(config.signing, store) : undefined,
      validator: createArgumentValidator({
        onCompileError: (schema, error) =>
          logger.warn(
            { err: error, schema },
            "a tool's inputSchema does not compile; its calls are passed on without argument validation",
          ),
      }),
      argumentLimits: config.argumentLimits,
      replica: options.replica,
      backendOf: (server) => (this.#byName.get(server) as ServerEntry).backend,
    });
    this.#events = new ServerEvents({
      logger,
      policies: this.policies,
      sessions: this.#sessions,
      sync: this.#sync,
      metrics: () => this.observability.metrics,
      inFlight: (server) => this.#chains.inFlight(server),
      server: (name) => this.#byName.get(name),
      rebuildCatalog: () => this.#rebuildCatalog(),
      redact: (value) => this.#outbound.redact(value),
      emit: {
        backendState: (event) => this.emit("backendState", event),
        listChanged: (changed) => this.emit("listChanged", changed),
        log: (message) => this.emit("log", message),
        resourceUpdated: (uri) => this.emit("resourceUpdated", uri),
      },
    });
  }

  get catalog(): Catalog {
    return this.#catalog.current;
  }

  // What one principal may see: a client never learns of what it cannot call (config `access`).

  toolsFor(principal: Principal): readonly Tool[] {
    return this.#visibility.tools(principal);
  }

  promptsFor(principal: Principal): readonly Prompt[] {
    return this.#visibility.prompts(principal);
  }

  resourcesFor(principal: Principal): readonly Resource[] {
    return this.#visibility.resources(principal);
  }

  resourceTemplatesFor(principal: Principal): readonly ResourceTemplate[] {
    return this.#visibility.resourceTemplates(principal);
  }

  /**
   * Whether the principal may see anything of `server`: one of its tools or prompts, or its resources.
   * Log messages and statistics of a server go only to those who may.
   */
  maySeeServer(principal: Principal, server: string): boolean {
    return this.#visibility.maySeeServer(principal, server);
  }

  /** Whether some server offers `uri` and the principal may read that server's resources. */
  mayReadResource(principal: Principal, uri: string): boolean {
    const entry = this.#catalog.resourceOwner(uri);
    return entry !== undefined && this.#visibility.mayRead(principal, entry.name);
  }

  /**
   * Resolves when every server has had its first start attempt, or when `gateway.startupWaitMs` has
   * passed since `start`: what a client's first list waits for (servers up later are announced with
   * list_changed). Resolved at once before `start` and after the wait.
   */
  settled(): Promise<void> {
    return this.#startup;
  }

  get inFlight(): number {
    return this.#running.count;
  }

  backends(): readonly Backend[] {
    return this.#entries.map((e) => e.backend);
  }

  /**
   * Starts every backend in parallel and resolves when each has come up or failed its first attempt,
   * or when the start-up timeout passes: the gateway serves what is up and says what is not.
   */
  async start(): Promise<void> {
    const storeReady = this.#sync.connect();
    const started = Promise.allSettled(
      this.#entries.map((entry) => entry.backend.start(this.#events.for(entry))),
    ).then(() => this.#rebuildCatalog());
    this.#startup = Promise.all([startedWithin(started, this.config.gateway.startupWaitMs), storeReady]).then(
      () => undefined,
    );
    await Promise.all([startedWithin(started, this.config.gateway.startupTimeoutMs), storeReady]);
    this.#rebuildCatalog();
    const down = this.#entries.filter((e) => e.backend.state !== "up");
    for (const entry of down) {
      const backend = entry.backend as Backend & { lastError?: string; gaveUp?: boolean };
      this.logger.warn(
        { server: entry.name, state: backend.state, reason: backend.lastError ?? backend.state },
        backend.gaveUp
          ? `server "${entry.name}" is not up and will not be retried; serving the others`
          : `server "${entry.name}" is not up yet; serving the others and retrying it in the background`,
      );
    }
    this.logger.info(
      {
        servers: this.#entries.length,
        up: this.#entries.length - down.length,
        tools: this.#catalog.current.tools().length,
        resources: this.#catalog.current.resources().length,
        prompts: this.#catalog.current.prompts().length,
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
    const ctx = contextOf({
      ...options,
      ...(onProgress ? { onProgress: (update) => onProgress(this.#outbound.redact(update)) } : {}),
    });
    return this.#callTool(name, args ?? {}, ctx).then(
      (result) => (result.isError ? this.#outbound.redact(result) : result),
      (error: unknown) => {
        throw this.#outbound.redactError(error);
      },
    );
  }

  readResource(uri: string, options: RequestOptions = {}): Promise<ReadResourceResult> {
    return this.#request(() => resourceRequest(this.#catalog, uri), options);
  }

  getPrompt(
    name: string,
    args: Record<string, string> | undefined,
    options: RequestOptions = {},
  ): Promise<GetPromptResult> {
    return this.#request(() => promptRequest(this.#catalog, name, args), options);
  }

  complete(params: CompleteRequestParams, options: RequestOptions = {}): Promise<CompleteResult> {
    return this.#request(() => completionRequest(this.#catalog, params), options);
  }

  // What clients hold on the shared backends (sessions.ts).

  /** `resources/subscribe` for one holder; updates then arrive as the `resourceUpdated` event. */
  subscribe(uri: string, holder: Holder): Promise<void> {
    return this.#outbound.redacting(() => this.#sessions.subscribe(uri, holder));
  }

  unsubscribe(uri: string, holder: Holder): Promise<void> {
    return this.#sessions.unsubscribe(uri, holder);
  }

  /** `logging/setLevel` from one holder. */
  setLogLevel(holder: Holder, level: LoggingLevel): Promise<void> {
    return this.#sessions.setLogLevel(holder, level);
  }

  /** A long-lived client connection (stdio, a 2025-era session), known before it sets a level. */
  attachClient(holder: Holder): void {
    this.#sessions.attach(holder);
  }

  /** Forgets a holder's subscriptions and log level, when its connection closes. */
  release(holder: Holder): void {
    this.#sessions.release(holder);
  }

  /** Waits for in-flight requests to finish, up to `deadlineMs`. Resolves true when all finished. */
  drain(deadlineMs: number): Promise<boolean> {
    this.#closing = true;
    return this.#running.drain(deadlineMs);
  }

  /**
   * Stops every request still running with `reason` (shutdown, past its deadline): each caller is
   * answered with that error instead of losing its connection unanswered.
   */
  abortInFlight(reason: GatewayError): void {
    this.#running.abortAll(reason);
  }

  get closing(): boolean {
    return this.#closing;
  }

  async close(): Promise<void> {
    this.#closing = true;
    await this.#sync.close();
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

  // Requests through their chains.

  async #callTool(name: string, args: Record<string, unknown>, ctx: CallContext): Promise<CallToolResult> {
    let routed: Routed;
    try {
      // A tool not listed yet may be a server's that is still starting: wait for it, within bounds.
      if (!this.#catalog.toolRoute(name)) await this.#startup;
      routed = toolRequest(this.#catalog, name, args);
    } catch (error) {
      if (this.audit.enabled) {
        await recordUnknownTool(
          this.audit,
          name,
          args,
          ctx,
          error as GatewayError,
          this.#replica,
          this.logger,
        );
      }
      throw error;
    }
    try {
      // A tools/call chain answers a tool result (only other kinds' chains answer other results).
      return (await this.#run(routed.route, routed.call, ctx)) as CallToolResult;
    } catch (error) {
      return toolFailure(name, error, ctx.requestId, this.logger);
    }
  }

  /** A request of another kind than tools/call: its failures are JSON-RPC errors, redacted. */
  #request<R>(routed: () => Routed, options: RequestOptions): Promise<R> {
    return this.#outbound.redacting(async () => {
      const { route, call } = routed();
      return (await this.#run(route, call, contextOf(options))) as R;
    });
  }

  /** Runs one request through its route's chain. */
  #run(route: Route, call: ToolCall, ctx: CallContext): Promise<ChainResult> {
    return this.#running.run(this.#chains.handlerFor(route), call, ctx);
  }

  /** Rebuilds the aggregated catalog and returns which exposed lists changed. */
  #rebuildCatalog(): ListChanged {
    const changed = this.#catalog.rebuild();
    this.#chains.reset();
    this.#visibility.reset();
    // Only what really differs is announced: a backend's list_changed that changes nothing we expose
    // (a filtered-out tool, say) stays quiet.
    if (changed.tools || changed.resources || changed.prompts) this.emit("listChanged", changed);
    return changed;
  }
}

function withoutSignature(ctx: CallContext): CallContext {
  if (!(SIGNATURE_META_KEY in ctx.meta)) return ctx;
  const { [SIGNATURE_META_KEY]: _dropped, ...meta } = ctx.meta;
  return { ...ctx, meta };
}

/** Resolves when `started` does or when `ms` have passed, whichever is first. */
function startedWithin(started: Promise<unknown>, ms: number): Promise<void> {
  let timer: NodeJS.Timeout | undefined;
  return Promise.race([
    started.then(() => undefined),
    new Promise<void>((resolve) => {
      timer = setTimeout(resolve, ms);
      timer.unref();
    }),
  ]).finally(() => clearTimeout(timer));
}
