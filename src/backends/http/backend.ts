/**
 * A built-in backend that turns HTTP APIs into MCP tools: a generic `fetch` tool scoped to a base
 * URL and an allowlist of hosts, and optional `endpoints` declared in config that map named tools to
 * fixed request templates.
 *
 * The model chooses the URL, so every request is treated as a possible SSRF attempt: the scheme and
 * host must be allowed by config (scope.ts), every address the host resolves to must be public
 * (ssrf.ts), the connection is pinned to the addresses that were checked, and redirects are followed
 * here, one hop at a time, each hop checked again before anything is sent (exchange.ts).
 *
 * Each origin gets one keep-alive undici Pool (bounded by `connections`) and its own circuit breaker,
 * so one failing host does not stop calls to the others (origins.ts).
 */
import {
  type BackendCatalog,
  type CallContext,
  type CallToolResult,
  EMPTY_CATALOG,
  type HealthResult,
  NOTE_ERROR_DETAIL,
  type ToolCall,
} from "../../core/types.ts";
import type { Logger } from "../../observability/logger.ts";
import type { Emit, ToolBinding } from "../../policies/types.ts";
import { callTimeoutOf, failureResult, type ToolSpec, ToolsOnlyBackend } from "../base.ts";
import { answerResult } from "./answers.ts";
import type { HttpBackendConfig } from "./config.ts";
import { Exchange } from "./exchange.ts";
import { detailOf } from "./network-errors.ts";
import { Origins } from "./origins.ts";
import { type OutgoingRequest, RequestBuilder, withTraceContext } from "./requests.ts";
import { Scope } from "./scope.ts";
import { type Resolver, systemResolver } from "./ssrf.ts";
import { endpointArgs, endpointTool, type FetchArgs, fetchArgsSchema, fetchTool } from "./tools.ts";

export type { HttpBackendConfig, HttpEndpointConfig } from "./config.ts";

export interface HttpBackendOptions {
  /** How host names become addresses. Default: the system resolver. Tests inject their own. */
  readonly resolve?: Resolver;
  /**
   * Receives the per-origin breakers' events (the same events the pipeline's breakers emit), for
   * whoever embeds the backend to watch an origin being cut off and let back; they are logged either
   * way.
   */
  readonly emit?: Emit;
  /** The clock for the breakers, in ms. Default `Date.now`. */
  readonly now?: () => number;
}

type Config = HttpBackendConfig & { readonly timeoutMs?: number };

/** Each tool builds the request its call sends. */
type HttpTool = ToolSpec<OutgoingRequest>;

export class HttpBackend extends ToolsOnlyBackend<OutgoingRequest> {
  readonly #config: HttpBackendConfig;
  readonly #scope: Scope;
  readonly #origins: Origins;
  readonly #exchange: Exchange;
  readonly #catalog: BackendCatalog;

  constructor(name: string, config: Config, logger: Logger, options: HttpBackendOptions = {}) {
    super(name, logger, { kind: "http" });
    this.#config = config;
    const forward = options.emit;
    const emit: Emit = (event, payload) => {
      this.log.info({ event, detail: payload as unknown }, "origin circuit breaker changed state");
      forward?.(event, payload);
    };
    this.#scope = new Scope(name, config);
    this.#origins = new Origins({
      name,
      config,
      log: this.log,
      resolve: options.resolve ?? systemResolver,
      emit,
      now: options.now ?? Date.now,
      binding: (tool) => this.#binding(tool),
    });
    this.#exchange = new Exchange({
      name,
      config,
      timeoutMs: callTimeoutOf(config),
      log: this.log,
      scope: this.#scope,
      origins: this.#origins,
    });
    this.offer(this.#tools(new RequestBuilder(name, config, this.#scope)));
    this.#catalog = { ...EMPTY_CATALOG, tools: this.tools };
  }

  catalog(): BackendCatalog {
    return this.#catalog;
  }

  protected async open(): Promise<void> {
    // Nothing to connect yet: pools open on first use, per origin.
    this.setState("up");
  }

  async callTool(call: ToolCall, ctx: CallContext): Promise<CallToolResult> {
    // A retry's note must not describe an earlier attempt.
    ctx.notes.delete(NOTE_ERROR_DETAIL);
    try {
      const { spec, args } = this.prepare(call);
      const request = await spec.run(args, undefined);
      const answer = await this.#exchange.send(withTraceContext(request, ctx.meta), call.tool, ctx.signal);
      return answerResult(answer, request.errorOnStatus);
    } catch (error) {
      const detail = detailOf(error);
      // The caller gets the class of the failure; what it hides goes to the audit record.
      if (detail !== undefined) ctx.notes.set(NOTE_ERROR_DETAIL, detail);
      return failureResult(call.tool, error);
    }
  }

  async health(signal: AbortSignal): Promise<HealthResult> {
    const open = this.#origins.troubled();
    const base = this.#scope.base;
    const healthPath = this.#config.healthPath;
    if (healthPath !== undefined && base) {
      const health = await this.probe(
        async () => {
          const url = this.#scope.underBase(healthPath);
          const answer = await this.#exchange.send(
            { method: "GET", url, headers: {}, body: undefined, errorOnStatus: true },
            "health",
            signal,
          );
          if (answer.status < 200 || answer.status > 299) {
            throw new Error(`GET ${url.href} answered HTTP ${answer.status}`);
          }
        },
        (reason) => `health check failed: ${reason}`,
      );
      if (health.status !== "healthy") return health;
      return { ...health, status: open.length > 0 ? "degraded" : "healthy", data: { origins: open } };
    }
    if (open.length > 0) {
      return {
        status: "degraded",
        detail: `circuit not closed for ${open.map((o) => `${o.origin} (${o.state})`).join(", ")}`,
        data: { origins: open },
      };
    }
    return { status: "healthy", data: { origins: this.#origins.size } };
  }

  protected override async release(): Promise<void> {
    await this.#origins.close();
  }

  /** Open pools by origin, for tests and diagnostics. */
  origins(): readonly string[] {
    return this.#origins.keys();
  }

  #tools(requests: RequestBuilder): HttpTool[] {
    const config = this.#config;
    const tools: HttpTool[] = [];
    if (config.fetchTool) {
      const args = fetchArgsSchema(config.methods);
      tools.push({
        tool: fetchTool(this.name, config, this.#scope.base, args),
        args,
        run: async (parsed) => requests.fetch(parsed as FetchArgs),
      });
    }
    for (const endpoint of config.endpoints) {
      tools.push({
        tool: endpointTool(endpoint),
        args: endpointArgs(endpoint),
        run: async (parsed) => requests.endpoint(endpoint, parsed as Record<string, unknown>),
      });
    }
    return tools;
  }

  #binding(tool: string): ToolBinding {
    const definition = this.tools.find((t) => t.name === tool) ?? {
      name: tool,
      inputSchema: { type: "object" },
    };
    return { exposedName: tool, server: this.name, tool: definition };
  }
}

export function createHttpBackend(
  name: string,
  config: Config,
  logger: Logger,
  options: HttpBackendOptions = {},
): HttpBackend {
  return new HttpBackend(name, config, logger, options);
}
