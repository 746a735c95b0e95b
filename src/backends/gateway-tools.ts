/**
 * Switchboard's own tools, served like any backend's (server "switchboard", so `switchboard__health`
 * and `switchboard__metrics`): they are namespaced, listed, subject to access rules and measured like
 * the rest. Each can be switched off in `gatewayTools`.
 */
import { z } from "zod";
import {
  type BackendCatalog,
  type CallContext,
  type CallToolResult,
  EMPTY_CATALOG,
  type HealthResult,
  type Principal,
  type ToolCall,
} from "../core/types.ts";
import type { HealthReport } from "../observability/health.ts";
import { type Logger, silentLogger } from "../observability/logger.ts";
import type { ToolSummary } from "../observability/tool-stats.ts";
import { defineTool, type ToolSpec, ToolsOnlyBackend } from "./base.ts";

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
  readonly maySeeServer: (principal: Principal, server: string, profile?: string) => boolean;
  readonly maySeeTool: (principal: Principal, exposedName: string, profile?: string) => boolean;
}

const READ_ONLY = { readOnlyHint: true, destructiveHint: false, idempotentHint: true, openWorldHint: false };

/** Who asks, and at which endpoint (a profile sees only its own servers and tools). */
interface Caller {
  readonly principal: Principal;
  readonly profile?: string | undefined;
}

type GatewayTool = ToolSpec<Record<string, unknown>, Caller>;

function gatewayTools(sources: GatewayToolsSources): GatewayTool[] {
  const health = defineTool({
    name: "health",
    description:
      "The gateway's health report: overall status (healthy, degraded, unhealthy), readiness, and each " +
      "backend's, the store's and the process's check with its latency. The same report as GET /healthz.",
    args: z.strictObject({}),
    annotations: { title: "Gateway health", ...READ_ONLY },
    run: async (_args, caller: Caller) => {
      const report = visibleReport(await sources.report(), (server) =>
        sources.maySeeServer(caller.principal, server, caller.profile),
      );
      return report as unknown as Record<string, unknown>;
    },
  });
  const metrics = defineTool({
    name: "metrics",
    description:
      "Per-tool call statistics since the gateway started: count, errors, and p50/p95/p99 latency in ms " +
      "over the most recent calls. Pass `tool` (a name or a prefix ending in *) to narrow it down.",
    args: z.strictObject({
      tool: z.string().optional().describe('An exposed tool name, or a prefix with "*" (e.g. "db__*").'),
    }),
    annotations: { title: "Gateway metrics", ...READ_ONLY },
    run: async (args, caller: Caller) => {
      const tools = Object.fromEntries(
        Object.entries(sources.toolStats()).filter(
          ([name]) => matches(name, args.tool) && sources.maySeeTool(caller.principal, name, caller.profile),
        ),
      );
      return { tools };
    },
  });
  return [...(sources.health ? [health] : []), ...(sources.metrics ? [metrics] : [])];
}

export class GatewayToolsBackend extends ToolsOnlyBackend<Record<string, unknown>, Caller> {
  readonly #catalog: BackendCatalog;

  constructor(name: string, sources: GatewayToolsSources, logger?: Logger) {
    super(name, logger ?? silentLogger(), { kind: "gateway tools" });
    this.offer(gatewayTools(sources));
    this.#catalog = { ...EMPTY_CATALOG, tools: this.tools };
  }

  protected async open(): Promise<void> {
    this.setState("up");
  }

  catalog(): BackendCatalog {
    return this.#catalog;
  }

  async callTool(call: ToolCall, ctx: CallContext): Promise<CallToolResult> {
    const { spec, args } = this.prepare(call);
    const body = await spec.run(args, ctx);
    return { content: [{ type: "text", text: JSON.stringify(body, null, 2) }], structuredContent: body };
  }

  protected override whyNoTool(): string {
    return "It may be switched off in gatewayTools.";
  }

  async health(): Promise<HealthResult> {
    return { status: "healthy" };
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
