/**
 * Switchboard's own tools, served like any backend's (server "switchboard", so `switchboard__health`
 * and `switchboard__metrics`): they are namespaced, listed, subject to access rules and measured like
 * the rest. Each can be switched off in `gatewayTools`.
 */
import { GatewayError } from "../core/errors.ts";
import type {
  Backend,
  BackendCatalog,
  BackendEvents,
  BackendState,
  CallContext,
  CallToolResult,
  GetPromptResult,
  HealthResult,
  Principal,
  ReadResourceResult,
  Tool,
  ToolCall,
} from "../core/types.ts";
import type { HealthReport } from "../observability/health.ts";
import type { ToolSummary } from "../observability/tool-stats.ts";
import { noPrompt, noResource } from "./tools-only.ts";

export interface GatewayToolsSources {
  /** Which tools to offer. */
  readonly health: boolean;
  readonly metrics: boolean;
  readonly report: () => Promise<HealthReport>;
  readonly toolStats: () => Record<string, ToolSummary>;
  /**
   * What the caller may see: the health of the servers, and the statistics of the tools, that its
   * access rules let it use (a client never learns of what it cannot call).
   */
  readonly maySeeServer: (principal: Principal, server: string) => boolean;
  readonly maySeeTool: (principal: Principal, exposedName: string) => boolean;
}

const READ_ONLY = { readOnlyHint: true, destructiveHint: false, idempotentHint: true, openWorldHint: false };

const HEALTH_TOOL: Tool = {
  name: "health",
  description:
    "The gateway's health report: overall status (healthy, degraded, unhealthy), readiness, and each " +
    "backend's, the store's and the process's check with its latency. The same report as GET /healthz.",
  inputSchema: { type: "object", properties: {}, additionalProperties: false },
  annotations: { title: "Gateway health", ...READ_ONLY },
};

const METRICS_TOOL: Tool = {
  name: "metrics",
  description:
    "Per-tool call statistics since the gateway started: count, errors, and p50/p95/p99 latency in ms " +
    "over the most recent calls. Pass `tool` (a name or a prefix ending in *) to narrow it down.",
  inputSchema: {
    type: "object",
    properties: {
      tool: { type: "string", description: 'An exposed tool name, or a prefix with "*" (e.g. "db__*").' },
    },
    additionalProperties: false,
  },
  annotations: { title: "Gateway metrics", ...READ_ONLY },
};

export class GatewayToolsBackend implements Backend {
  readonly name: string;
  readonly #sources: GatewayToolsSources;
  readonly #catalog: BackendCatalog;
  #state: BackendState = "starting";

  constructor(name: string, sources: GatewayToolsSources) {
    this.name = name;
    this.#sources = sources;
    const tools = [...(sources.health ? [HEALTH_TOOL] : []), ...(sources.metrics ? [METRICS_TOOL] : [])];
    this.#catalog = { tools, resources: [], resourceTemplates: [], prompts: [] };
  }

  get state(): BackendState {
    return this.#state;
  }

  async start(events: BackendEvents): Promise<void> {
    this.#state = "up";
    events.state("up");
  }

  catalog(): BackendCatalog {
    return this.#catalog;
  }

  async callTool(call: ToolCall, ctx: CallContext): Promise<CallToolResult> {
    const principal = ctx.principal;
    if (call.tool === "health" && this.#sources.health) {
      const report = visibleReport(await this.#sources.report(), (server) =>
        this.#sources.maySeeServer(principal, server),
      );
      return {
        content: [{ type: "text", text: JSON.stringify(report, null, 2) }],
        structuredContent: report as unknown as Record<string, unknown>,
      };
    }
    if (call.tool === "metrics" && this.#sources.metrics) {
      const filter = typeof call.args.tool === "string" ? call.args.tool : undefined;
      const all = this.#sources.toolStats();
      const tools = Object.fromEntries(
        Object.entries(all).filter(
          ([name]) => matches(name, filter) && this.#sources.maySeeTool(principal, name),
        ),
      );
      const body = { tools };
      return {
        content: [{ type: "text", text: JSON.stringify(body, null, 2) }],
        structuredContent: body,
      };
    }
    throw new GatewayError(
      "unknown_tool",
      `The gateway has no tool "${call.tool}" (it may be switched off in gatewayTools); list tools to see what it offers.`,
      {
        data: { tool: call.tool },
      },
    );
  }

  async readResource(uri: string): Promise<ReadResourceResult> {
    throw noResource(this.name, "gateway tools", uri);
  }

  async getPrompt(name: string): Promise<GetPromptResult> {
    throw noPrompt(this.name, "gateway tools", name);
  }

  async health(): Promise<HealthResult> {
    return { status: "healthy" };
  }

  async close(): Promise<void> {
    this.#state = "stopped";
  }
}

/** The report without the checks (and their reasons) of backends the caller may not see. */
function visibleReport(report: HealthReport, maySee: (server: string) => boolean): HealthReport {
  const hidden = Object.entries(report.checks)
    .filter(([name, check]) => check.kind === "backend" && !maySee(name))
    .map(([name]) => name);
  if (hidden.length === 0) return report;
  return {
    ...report,
    reasons: report.reasons.filter((reason) => !hidden.some((name) => reason.startsWith(`${name}: `))),
    checks: Object.fromEntries(Object.entries(report.checks).filter(([name]) => !hidden.includes(name))),
  };
}

function matches(name: string, filter: string | undefined): boolean {
  if (filter === undefined || filter === "" || filter === "*") return true;
  return filter.endsWith("*") ? name.startsWith(filter.slice(0, -1)) : name === filter;
}
