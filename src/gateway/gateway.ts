/**
 * The gateway: owns the backends, keeps the aggregated catalog current, and runs every call through
 * its policy chain. It knows nothing of transports: server/ adapts it to stdio and HTTP.
 */

import { randomUUID } from "node:crypto";
import { EventEmitter } from "node:events";
import { McpBackend, type McpTransportConfig } from "../backends/mcp.ts";
import type { Config, ServerConfig } from "../config/schema.ts";
import { compose } from "../core/compose.ts";
import { errorResult, GatewayError } from "../core/errors.ts";
import {
  ANONYMOUS,
  type Backend,
  type BackendLogMessage,
  type BackendState,
  type CallContext,
  type CallHandler,
  type CallToolResult,
  type GetPromptResult,
  type ListChanged,
  type Principal,
  type ProgressUpdate,
  type ReadResourceResult,
} from "../core/types.ts";
import type { Logger } from "../observability/logger.ts";
import { PolicyRuntime } from "../policies/runtime.ts";
import { createMemoryStore } from "../stores/memory.ts";
import { VERSION } from "../version.ts";
import { Catalog, type ServerNaming, type ToolRoute } from "./catalog.ts";

/** What a transport hands the gateway with each request. */
export interface RequestOptions {
  readonly principal?: Principal;
  readonly signal?: AbortSignal;
  readonly meta?: Readonly<Record<string, unknown>>;
  readonly onProgress?: (update: ProgressUpdate) => void;
  readonly requestId?: string;
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
  #entries: readonly ServerEntry[];
  #byName: ReadonlyMap<string, ServerEntry>;
  #catalog: Catalog = Catalog.empty;
  /** Composed chains per exposed tool, rebuilt when the catalog changes. */
  #handlers = new Map<string, CallHandler>();
  #inFlight = 0;
  #drained: (() => void) | undefined;
  #closing = false;

  constructor(config: Config, logger: Logger, backends?: readonly Backend[]) {
    super();
    this.config = config;
    this.logger = logger;
    const entries: ServerEntry[] = [];
    for (const [name, server] of Object.entries(config.mcpServers)) {
      if (!server.enabled) continue;
      const backend = backends?.find((b) => b.name === name) ?? this.#makeBackend(name, server);
      entries.push({ name, naming: namingOf(name, server), backend });
    }
    this.#entries = entries;
    this.#byName = new Map(entries.map((e) => [e.name, e]));
    this.policies = new PolicyRuntime(
      {
        policies: config.policies,
        servers: Object.fromEntries(
          Object.entries(config.mcpServers).map(([name, s]) => [
            name,
            { policies: s.policies, timeoutMs: s.timeoutMs },
          ]),
        ),
        toolPolicies: config.toolPolicies,
      },
      {
        store: createMemoryStore(),
        logger,
        callTool: (exposedName, args, ctx) => this.#callWithContext(exposedName, args, ctx),
      },
    );
  }

  get catalog(): Catalog {
    return this.#catalog;
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
    const started = Promise.allSettled(
      this.#entries.map((entry) =>
        entry.backend.start({
          state: (state, reason) => this.#onState(entry, state, reason),
          listChanged: () => this.#onListChanged(entry),
          log: (message) => this.emit("log", { server: entry.name, ...message }),
          resourceUpdated: (uri) => this.emit("resourceUpdated", uri),
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
    this.#rebuildCatalog();
    const down = this.#entries.filter((e) => e.backend.state !== "up");
    for (const entry of down) {
      const reason = entry.backend instanceof McpBackend ? entry.backend.lastError : entry.backend.state;
      this.logger.warn(
        { server: entry.name, state: entry.backend.state, reason },
        `server "${entry.name}" is not up yet; serving the others and retrying it in the background`,
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
    const ctx: CallContext = {
      requestId: options.requestId ?? randomUUID(),
      signal: options.signal ?? new AbortController().signal,
      principal: options.principal ?? ANONYMOUS,
      meta: options.meta ?? {},
      notes: new Map(),
      ...(options.onProgress ? { onProgress: options.onProgress } : {}),
    };
    return this.#callWithContext(name, args ?? {}, ctx);
  }

  async #callWithContext(
    name: string,
    args: Record<string, unknown>,
    ctx: CallContext,
  ): Promise<CallToolResult> {
    const route = this.#catalog.tool(name);
    if (!route) throw this.#unknownTool(name);
    const handler = this.#handlerFor(route);
    this.#begin();
    try {
      return await handler({ server: route.server, tool: route.tool, args }, ctx);
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
      this.#end();
    }
  }

  async readResource(uri: string, options: RequestOptions = {}): Promise<ReadResourceResult> {
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
    this.#begin();
    try {
      return await entry.backend.readResource(uri, this.#context(options));
    } finally {
      this.#end();
    }
  }

  async getPrompt(
    name: string,
    args: Record<string, string> | undefined,
    options: RequestOptions = {},
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
    this.#begin();
    try {
      return await entry.backend.getPrompt(route.prompt, args, this.#context(options));
    } finally {
      this.#end();
    }
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

  get closing(): boolean {
    return this.#closing;
  }

  async close(): Promise<void> {
    this.#closing = true;
    await Promise.allSettled(this.#entries.map((e) => e.backend.close()));
    await this.policies.close();
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

  #begin(): void {
    this.#inFlight++;
  }

  #end(): void {
    this.#inFlight--;
    if (this.#inFlight === 0 && this.#drained) this.#drained();
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
      const terminal: CallHandler = (call, ctx) => backend.callTool(call, ctx);
      handler = compose(
        this.policies.chainFor({
          exposedName: route.exposedName,
          server: route.server,
          tool: route.original,
        }),
        terminal,
      );
      this.#handlers.set(route.exposedName, handler);
    }
    return handler;
  }

  #onState(entry: ServerEntry, state: BackendState, reason?: string): void {
    this.emit("backendState", { server: entry.name, state, reason });
    if (state === "up" || state === "down") {
      if (state === "up") void this.policies.invalidateServer(entry.name);
      this.#rebuildCatalog();
    }
  }

  #onListChanged(entry: ServerEntry): void {
    void this.policies.invalidateServer(entry.name);
    this.#rebuildCatalog();
  }

  #rebuildCatalog(): void {
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
    this.#catalog = next;
    this.#handlers = new Map();
    // Only what really differs is announced: a backend's list_changed that changes nothing we expose
    // (a filtered-out tool, say) stays quiet.
    const changed = next.diff(previous);
    if (changed.tools || changed.resources || changed.prompts) this.emit("listChanged", changed);
  }

  #makeBackend(name: string, server: ServerConfig): Backend {
    return new McpBackend({
      name,
      transport: transportOf(server),
      timeoutMs: server.timeoutMs,
      restart: server.restart,
      connectTimeoutMs: this.config.gateway.startupTimeoutMs,
      logger: this.logger,
      clientInfo: { name: this.config.gateway.name, version: VERSION },
    });
  }
}

function namingOf(name: string, server: ServerConfig): ServerNaming {
  return {
    server: name,
    prefix: server.prefix ?? name,
    include: server.tools.include ?? [],
    exclude: server.tools.exclude ?? [],
    rename: server.tools.rename ?? {},
    descriptions: server.tools.descriptions ?? {},
  };
}

function transportOf(server: ServerConfig): McpTransportConfig {
  if (server.type === "http" || server.type === "sse") {
    return { type: server.type, url: server.url, headers: server.headers };
  }
  return { type: "stdio", command: server.command, args: server.args, env: server.env, cwd: server.cwd };
}

function isProtocolError(error: unknown): error is Error & { code: number } {
  return error instanceof Error && typeof (error as { code?: unknown }).code === "number";
}
