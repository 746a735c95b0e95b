/**
 * The running gateway: it applies a plan (plan.ts) — runs its backends, keeps the aggregated catalog
 * current, and passes every request through its route's chain (chains.ts). What clients hold on it
 * lives in sessions.ts, what replicas tell each other in replica-sync.ts, what a principal may see in
 * visibility.ts. It knows nothing of transports: protocol/ and server/ adapt it to stdio and HTTP.
 */
import { EventEmitter } from "node:events";
import type { AuditLog } from "../audit/index.ts";
import { GatewayToolsBackend } from "../backends/gateway-tools.ts";
import { gatewayUpstreamDeps } from "../backends/mcp/upstream.ts";
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
  ReadResourceResult,
  Store,
  Tool,
  ToolCall,
} from "../core/types.ts";
import type { Logger } from "../observability/logger.ts";
import { PolicyRuntime } from "../policies/runtime.ts";
import type { AccessControl } from "../security/access.ts";
import { GatewayTasks } from "../tasks/service.ts";
import { VERSION } from "../version.ts";
import { recordUnknownTool } from "./audit-policy.ts";
import { type BackendFactoryDeps, createBackend } from "./backend-factory.ts";
import type { Catalog } from "./catalog.ts";
import { InFlightRequests, withoutSignature } from "./chains.ts";
import { ConfigStatus } from "./config-status.ts";
import { LiveCatalog } from "./live-catalog.ts";
import type { Observability } from "./observe.ts";
import { Outbound } from "./outbound.ts";
import { DefinitionPins } from "./pinning.ts";
import { buildPlan, type Plan } from "./plan.ts";
import { entriesOf, entryOf, type PlanState, planState, type ServerEntry } from "./plan-state.ts";
import { unknownProfile } from "./profiles.ts";
import { Reloader, type ReloadReport } from "./reload.ts";
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
import { closeServices, openServices, type ServicesOptions } from "./services.ts";
import { reportStartup, type StartupGates, startupGates } from "./startup.ts";
import { ownToolSources } from "./tool-search.ts";

export type { RequestOptions } from "./running.ts";

import { ClientSessions, type Holder } from "./sessions.ts";
import type { Visibility } from "./visibility.ts";

export type { ReloadReport } from "./reload.ts";
export type { Holder } from "./sessions.ts";

export interface GatewayOptions extends ServicesOptions {
  /** Names this replica in audit records, when several share a sink. Default: none. */
  readonly replica?: string;
}

export interface GatewayEvents {
  listChanged: [ListChanged];
  log: [{ server: string } & BackendLogMessage];
  resourceUpdated: [string];
  backendState: [{ server: string; state: BackendState; reason?: string | undefined }];
}

export class Gateway extends EventEmitter<GatewayEvents> {
  readonly logger: Logger;
  readonly policies: PolicyRuntime;
  /** Rate-limit buckets, cached results and what replicas share (config `store`); closed by `close`. */
  readonly store: Store;
  /** Metrics, traces, per-tool statistics and the health checker. */
  readonly observability: Observability;
  /** One record per call (config `audit`); disabled unless configured. */
  readonly audit: AuditLog;
  /** Whether the running config is the file's (see config-status.ts). */
  readonly configStatus = new ConfigStatus();
  /** Tool definition pins (config `pinning`): what changed since it was pinned. */
  readonly pins: DefinitionPins;
  /** The tasks clients started, answered for on any replica (src/tasks/). */
  readonly tasks: GatewayTasks;
  /** The plan running now and what was built from it; a reload swaps it whole. */
  #state: PlanState;
  readonly #outbound: Outbound;
  readonly #sessions: ClientSessions;
  readonly #sync: ReplicaSync;
  readonly #replica: string | undefined;
  readonly #events: ServerEvents;
  readonly #catalog: LiveCatalog;
  readonly #inFlightRequests = new InFlightRequests();
  readonly #backendDeps: BackendFactoryDeps;
  readonly #reloader: Reloader;
  #closing = false;
  readonly #running = new RunningRequests();
  /** What requests wait for while the servers start (startupGates); resolved before `start`. */
  #gates: StartupGates = { firstList: Promise.resolve(), ended: Promise.resolve() };

  constructor(config: Config, logger: Logger, backends?: readonly Backend[], options: GatewayOptions = {}) {
    super();
    this.logger = logger;
    this.#replica = options.replica;
    const secretValues = options.secretValues ?? (() => []);
    this.#outbound = new Outbound(secretValues);
    const plan = buildPlan(config);
    this.pins = new DefinitionPins(this, options.baseDir ?? process.cwd(), () => this.#rebuildCatalog());
    this.#catalog = new LiveCatalog(
      () => this.config.gateway.separator,
      () => this.#state.entries,
      (name) => this.#state.byName.get(name),
      logger,
      (naming, catalog, separator) => this.pins.filter(naming, catalog, separator),
    );
    // The first plan's backends are made before the gateway has a state: they start with this config.
    const currentConfig = () => (this.#state ? this.config : config);
    this.#backendDeps = {
      logger,
      clientInfo: { name: config.gateway.name, version: VERSION },
      connectTimeoutMs: config.gateway.startupTimeoutMs,
      redact: (text) => redactSecrets(text, secretValues()),
      metrics: () => this.observability.metrics,
      upstream: gatewayUpstreamDeps(currentConfig, () => this.store, options.baseDir ?? process.cwd()),
      gatewayTools: ownToolSources(this, this.#catalog, () => currentConfig().gateway.separator),
    };
    const entries = entriesOf(plan, backends ?? [], (server) => createBackend(server, this.#backendDeps));
    const services = openServices(
      config,
      logger,
      () => this.#state.entries.map((e) => e.backend).filter((b) => !(b instanceof GatewayToolsBackend)),
      { ...options, extraChecks: [this.configStatus.check()] },
    );
    this.store = services.store;
    this.audit = services.audit;
    this.observability = services.observability;
    const store = this.store;
    this.policies = new PolicyRuntime(plan.policies, {
      store,
      logger,
      tools: () =>
        this.#catalog.current
          .toolRoutes()
          .map((r) => ({ exposedName: r.exposedName, server: r.server, tool: r.original })),
      // A fallback's call is the gateway's own: the client's signature covered the primary call.
      callTool: (exposedName, args, ctx) => this.#callTool(exposedName, args, withoutSignature(ctx)),
    });
    const tasksDeps = { store, logger, settings: () => this.config.gateway.tasks };
    this.tasks = new GatewayTasks({ ...tasksDeps, backend: (name) => this.#state.byName.get(name)?.backend });
    this.#sync = new ReplicaSync({
      store,
      logger,
      onRemoteListChanged: (server, changed) => this.#events.remoteListChanged(server, changed),
      onStoreRecovered: () => void this.policies.storeRecovered(),
    });
    this.#sessions = new ClientSessions({
      logger,
      ownerOf: (uri) => this.#catalog.resourceOwner(uri),
      servers: () => this.#state.entries,
      offers: (holder, server) => this.#state.visibilityFor(holder.profile ?? "")?.offers(server) ?? false,
      checkRead: (holder, uri, server) =>
        this.visibilityFor(holder.profile).checkRead(holder.principal, uri, server),
      maySeeServer: (holder, server) => this.maySeeServer(holder.principal, server, holder.profile),
    });
    this.observability.metrics?.subscribe(this.policies);
    this.observability.tracing.subscribe(this.policies);
    this.#state = planState(plan, entries, this.#stateDeps());
    this.#events = new ServerEvents({
      logger,
      policies: this.policies,
      store,
      sessions: this.#sessions,
      sync: this.#sync,
      metrics: () => this.observability.metrics,
      inFlight: (backend) => this.#inFlightRequests.on(backend),
      server: (name) => this.#state.byName.get(name),
      rebuildCatalog: () => this.#rebuildCatalog(),
      redact: (value) => this.#outbound.redact(value),
      emit: {
        backendState: (event) => this.emit("backendState", event),
        listChanged: (changed) => this.emit("listChanged", changed),
        log: (message) => this.emit("log", message),
        resourceUpdated: (uri) => this.emit("resourceUpdated", uri),
      },
    });
    this.#reloader = new Reloader({
      logger,
      current: () => this.#state,
      makeEntry: (server) => entryOf(server, createBackend(server, this.#backendDeps)),
      start: (entry) => entry.backend.start(this.#events.for(entry)),
      swap: (plan, entries) => this.#swap(plan, entries),
      idle: (backend, ms) => this.#inFlightRequests.idle(backend, ms),
    });
  }

  /** The config the gateway runs now. */
  get config(): Config {
    return this.#state.plan.config;
  }

  /** Per-principal access rules (config `access`); undefined when everyone may call everything. */
  get access(): AccessControl | undefined {
    return this.#state.access;
  }

  /** The principal of local stdio clients (config `auth.stdioPrincipal`, else anonymous). */
  get stdioPrincipal(): Principal {
    return this.#state.stdioPrincipal;
  }

  /**
   * Applies a new config while the gateway runs: servers added start, servers removed drain and stop,
   * servers whose launch settings changed are restarted (the new one up before the old one goes),
   * every other server keeps its backend; policies, access rules, limits and auth swap at once for
   * the next requests. Reloads run one at a time. See reload.ts.
   */
  async reload(config: Config): Promise<ReloadReport> {
    const report = await this.#reloader.apply(config);
    this.configStatus.applied(report);
    this.observability.metrics?.configReloaded("applied");
    this.logger.info({ ...report }, "config reloaded");
    return report;
  }

  /** `value` with every secret value of the config taken out: for what is shown outside a call (the console). */
  redact<T>(value: T): T {
    return this.#outbound.redact(value);
  }

  /** A reload was refused (the file did not load or validate): the running config stays. */
  reloadRefused(reason: string): void {
    this.configStatus.refused(reason);
    this.observability.metrics?.configReloaded("invalid");
  }

  get catalog(): Catalog {
    return this.#catalog.current;
  }

  /**
   * What a principal may see at an endpoint ("" the default one, else a profile's): a client never
   * learns of what it cannot call. Throws for a profile the running config does not have.
   */
  visibilityFor(profile = ""): Visibility {
    const visibility = this.#state.visibilityFor(profile);
    if (!visibility) throw unknownProfile(profile);
    return visibility;
  }

  /** The tools a principal may see and call at an endpoint, under their exposed names. */
  toolsFor(principal: Principal, profile = ""): readonly Tool[] {
    return this.visibilityFor(profile).tools(principal);
  }

  /**
   * Whether the principal may see anything of `server` at an endpoint: one of its tools or prompts, or
   * its resources. Log messages and statistics of a server go only to those who may.
   */
  maySeeServer(principal: Principal, server: string, profile = ""): boolean {
    return this.#state.visibilityFor(profile)?.maySeeServer(principal, server) ?? false;
  }

  /** Whether some server offers `uri` at an endpoint and the principal may read its resources. */
  mayReadResource(principal: Principal, uri: string, profile = ""): boolean {
    const entry = this.#catalog.resourceOwner(uri);
    return (
      entry !== undefined && (this.#state.visibilityFor(profile)?.mayRead(principal, entry.name) ?? false)
    );
  }

  /** What a client's first list waits for while servers start (`startupGates`); at once before `start`. */
  settled(): Promise<void> {
    return this.#gates.firstList;
  }

  get inFlight(): number {
    return this.#running.count;
  }

  backends(): readonly Backend[] {
    return this.#state.entries.map((e) => e.backend);
  }

  /**
   * Starts every backend in parallel; resolves when each is up or failed its first attempt, or at the
   * start-up timeout: the gateway serves what is up and says what is not. `gateway.startupWaitMs`
   * counts from `waitFrom` (a `performance.now()` time, default now; the CLI passes its start).
   */
  async start(options: { readonly waitFrom?: number } = {}): Promise<void> {
    const storeReady = this.#sync.connect().then(() => this.tasks.start());
    const pinsRead = storeReady.then(() => this.pins.start(this.#state.entries.map((e) => e.name)));
    const started = Promise.allSettled([
      ...this.#state.entries.map((entry) => entry.backend.start(this.#events.for(entry))),
      pinsRead,
    ]).then(() => this.#rebuildCatalog());
    this.#gates = startupGates(started, storeReady, this.config.gateway, options.waitFrom);
    await this.#gates.ended;
    this.#rebuildCatalog();
    reportStartup(this.logger, this.#state.entries, this.#catalog.current);
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
    return this.#request((offers) => resourceRequest(this.#catalog, uri, offers), options);
  }

  getPrompt(
    name: string,
    args: Record<string, string> | undefined,
    options: RequestOptions = {},
  ): Promise<GetPromptResult> {
    return this.#request((offers) => promptRequest(this.#catalog, name, args, offers), options);
  }

  complete(params: CompleteRequestParams, options: RequestOptions = {}): Promise<CompleteResult> {
    return this.#request((offers) => completionRequest(this.#catalog, params, offers), options);
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

  /** Forgets a holder's subscriptions and log level, and its session's servers, when its connection closes. */
  release(holder: Holder): void {
    this.#sessions.release(holder);
    const session = holder.session;
    if (session !== undefined)
      for (const entry of this.#state.entries) entry.backend.releaseSession?.(session);
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
    await this.tasks.close();
    await this.pins.close();
    await Promise.allSettled(this.#state.entries.map((e) => e.backend.close()));
    await this.policies.close();
    await closeServices(this, this.logger);
  }

  // Requests through their chains.

  async #callTool(name: string, args: Record<string, unknown>, ctx: CallContext): Promise<CallToolResult> {
    let routed: Routed;
    try {
      // A tool not listed yet may be a server's that is still starting: the caller named it, so wait
      // for the start to end (within gateway.startupTimeoutMs), not only as long as a list waits.
      if (!this.#catalog.toolRoute(name)) await this.#gates.ended;
      routed = toolRequest(this.#catalog, name, args, this.visibilityFor(ctx.profile).offers);
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
  #request<R>(routed: (offers: Visibility["offers"]) => Routed, options: RequestOptions): Promise<R> {
    return this.#outbound.redacting(async () => {
      const { route, call } = routed(this.visibilityFor(options.profile).offers);
      return (await this.#run(route, call, contextOf(options))) as R;
    });
  }

  /** Runs one request through its route's chain, at the endpoint it came to. */
  #run(route: Route, call: ToolCall, ctx: CallContext): Promise<ChainResult> {
    const chains = this.#state.chainsFor(ctx.profile ?? "");
    if (!chains) throw unknownProfile(ctx.profile ?? "");
    return this.#running.run(chains.handlerFor(route), call, ctx);
  }

  #stateDeps() {
    return {
      logger: this.logger,
      policies: this.policies,
      observability: this.observability,
      audit: this.audit,
      store: this.store,
      replica: this.#replica,
      inFlight: this.#inFlightRequests,
      catalog: () => this.#catalog.current,
      templateServer: (uriTemplate: string) => this.#catalog.templateOwner(uriTemplate)?.name,
    };
  }

  /** Makes `plan` and `entries` the running ones, at once, and tells clients what changed. */
  #swap(plan: Plan, entries: readonly ServerEntry[]): void {
    const before = this.#state;
    this.policies.reconfigure(plan.policies);
    this.#state = planState(plan, entries, this.#stateDeps());
    for (const entry of entries) {
      if (before.byName.get(entry.name)?.backend === entry.backend) continue;
      // A backend that came with this plan: what its events said before it was current counts now.
      this.observability.metrics?.setBackendUp(entry.name, entry.backend.state === "up");
      if (entry.backend.state === "up") this.#sessions.restore(entry);
    }
    for (const entry of before.entries)
      if (!this.#state.byName.has(entry.name)) this.#sessions.forget(entry.name);
    this.#catalog.forgetRemoved(before.entries, entries);
    this.#rebuildCatalog();
  }

  /** Rebuilds the aggregated catalog and returns which exposed lists changed. */
  #rebuildCatalog(): ListChanged {
    const changed = this.#catalog.rebuild();
    this.#state.catalogChanged();
    // Only what really differs is announced: a backend's list_changed that changes nothing we expose
    // (a filtered-out tool, say) stays quiet.
    if (changed.tools || changed.resources || changed.prompts) this.emit("listChanged", changed);
    return changed;
  }
}
