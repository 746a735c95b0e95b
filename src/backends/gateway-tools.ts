/**
 * Switchboard's own tools, served like any backend's (server "switchboard", so `switchboard__health`,
 * `switchboard__metrics`, `switchboard__search_tools` and `switchboard__call_tool`): they are
 * namespaced, listed, subject to access rules and measured like the rest. Each can be switched off in
 * `gatewayTools`; the search tools are on where an endpoint's discovery is "search".
 */
import { z } from "zod";
import { errorResult, GatewayError } from "../core/errors.ts";
import {
  type BackendCatalog,
  type CallContext,
  type CallToolResult,
  EMPTY_CATALOG,
  type HealthResult,
  type Principal,
  type Tool,
  type ToolCall,
} from "../core/types.ts";
import type { HealthReport } from "../observability/health.ts";
import { type Logger, silentLogger } from "../observability/logger.ts";
import type { ToolSummary } from "../observability/tool-stats.ts";
import { defineTool, type ToolSpec, ToolsOnlyBackend } from "./base.ts";

/** A tool as `switchboard__search_tools` returns it: what a client needs to call it. */
export interface FoundTool {
  readonly name: string;
  /** The config name of the server that offers it. */
  readonly server: string;
  readonly title?: string;
  readonly description?: string;
  readonly inputSchema: Tool["inputSchema"];
  readonly outputSchema?: Tool["outputSchema"];
  readonly annotations?: Tool["annotations"];
}

export interface GatewayToolsSources {
  /** Which tools to offer. */
  readonly health: boolean;
  readonly metrics: boolean;
  readonly search: boolean;
  readonly report: () => Promise<HealthReport>;
  readonly toolStats: () => Record<string, ToolSummary>;
  /**
   * What the caller may see: the health of the servers, and the statistics of the tools, that its
   * access rules let it use (a client never learns of what it cannot call).
   */
  readonly maySeeServer: (principal: Principal, server: string, profile?: string) => boolean;
  readonly maySeeTool: (principal: Principal, exposedName: string, profile?: string) => boolean;
  /**
   * The tools that match `query` best, best first, among those the caller may call at its endpoint
   * (of `server` only, when given), the search tools themselves left out.
   */
  readonly searchTools: (
    caller: Caller,
    query: string,
    options: { readonly server?: string | undefined; readonly limit: number },
  ) => readonly FoundTool[];
  /** Calls a tool by its exposed name as the caller, through that tool's own chain. */
  readonly callTool: (
    name: string,
    args: Record<string, unknown>,
    caller: CallContext,
  ) => Promise<CallToolResult>;
  /** The exposed name of one of these tools (`call_tool` → `switchboard__call_tool`). */
  readonly exposedName: (tool: string) => string;
}

const READ_ONLY = { readOnlyHint: true, destructiveHint: false, idempotentHint: true, openWorldHint: false };

/** Who asks, and at which endpoint (a profile sees only its own servers and tools). */
type Caller = CallContext;

type GatewayTool = ToolSpec<CallToolResult, Caller>;

/** The own names of the search tools (exposed as `switchboard__search_tools`, `switchboard__call_tool`). */
export const SEARCH_TOOL = "search_tools";
export const CALL_TOOL = "call_tool";

/** Most tools one search returns. */
export const MAX_SEARCH_RESULTS = 20;

function gatewayTools(sources: GatewayToolsSources): GatewayTool[] {
  const health = defineTool({
    name: "health",
    description:
      "The gateway's health report: overall status (healthy, degraded, unhealthy), readiness, and each " +
      "backend's, the store's and the process's check with its latency. The same report as GET /healthz.",
    args: z.strictObject({}),
    annotations: { title: "Gateway health", ...READ_ONLY },
    run: async (_args, caller: Caller): Promise<CallToolResult> => {
      const report = visibleReport(await sources.report(), (server) =>
        sources.maySeeServer(caller.principal, server, caller.profile),
      );
      return json(report);
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
    run: async (args, caller: Caller): Promise<CallToolResult> => {
      const tools = Object.fromEntries(
        Object.entries(sources.toolStats()).filter(
          ([name]) => matches(name, args.tool) && sources.maySeeTool(caller.principal, name, caller.profile),
        ),
      );
      return json({ tools });
    },
  });
  const callToolName = sources.exposedName(CALL_TOOL);
  const searchToolName = sources.exposedName(SEARCH_TOOL);
  const search = defineTool({
    name: SEARCH_TOOL,
    description:
      "Finds tools by what they do. Many more tools are available than are listed: describe the task in a " +
      "few words and get the best matching tools, best first, each with its name and input schema. Then " +
      `call one with ${callToolName} (or directly by its name).`,
    args: z.strictObject({
      query: z
        .string()
        .min(1)
        .describe('What the tool should do, in a few words: "read a file", "create an issue", "run SQL".'),
      server: z.string().min(1).optional().describe("Only tools of this server."),
      limit: z
        .number()
        .int()
        .min(1)
        .max(MAX_SEARCH_RESULTS)
        .default(5)
        .describe(`How many tools to return, at most ${MAX_SEARCH_RESULTS}. Default 5.`),
    }),
    annotations: { title: "Search tools", ...READ_ONLY },
    run: async (args, caller: Caller): Promise<CallToolResult> => {
      const tools = sources.searchTools(caller, args.query, { server: args.server, limit: args.limit });
      // Text only, and compact: the answer goes into the model's context, which is what search saves.
      const text = tools.length === 0 ? NOTHING_FOUND : JSON.stringify({ tools });
      return { content: [{ type: "text" as const, text }] } satisfies CallToolResult;
    },
  });
  const call = defineTool({
    name: CALL_TOOL,
    description:
      `Calls a tool by name with its arguments: a tool found with ${searchToolName}, whether or not it is ` +
      "listed. The result is that tool's own result.",
    args: z.strictObject({
      name: z.string().min(1).describe(`The tool's name, as ${searchToolName} returned it.`),
      arguments: z
        .record(z.string(), z.unknown())
        .default({})
        .describe("The tool's arguments, as its inputSchema describes them."),
    }),
    annotations: {
      title: "Call a tool",
      readOnlyHint: false,
      destructiveHint: true,
      idempotentHint: false,
      openWorldHint: true,
    },
    run: async (args, caller: Caller): Promise<CallToolResult> => {
      if (args.name === callToolName || args.name === searchToolName) {
        return errorResult(
          callToolName,
          new GatewayError("invalid_arguments", `Call ${args.name} directly, not through ${callToolName}.`),
        );
      }
      try {
        return await sources.callTool(args.name, args.arguments, caller);
      } catch (error) {
        // A name that does not exist (or that the caller may not see) is something the model can fix.
        if (!(error instanceof GatewayError) || error.code !== "unknown_tool") throw error;
        return errorResult(
          callToolName,
          new GatewayError(
            "unknown_tool",
            `${error.message} Find tools with ${searchToolName}, and pass the name it returns.`,
            { data: error.data },
          ),
        );
      }
    },
  });
  return [
    ...(sources.health ? [health] : []),
    ...(sources.metrics ? [metrics] : []),
    ...(sources.search ? [search, call] : []),
  ];
}

const NOTHING_FOUND = "No tool matches. Try other words: what the tool does, or what it acts on.";

export class GatewayToolsBackend extends ToolsOnlyBackend<CallToolResult, Caller> {
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
    return spec.run(args, ctx);
  }

  protected override whyNoTool(): string {
    return "It may be switched off in gatewayTools.";
  }

  async health(): Promise<HealthResult> {
    return { status: "healthy" };
  }
}

/** A report as a result: its JSON as text, and as structured content. */
function json(body: object): CallToolResult {
  return {
    content: [{ type: "text", text: JSON.stringify(body, null, 2) }],
    structuredContent: body as Record<string, unknown>,
  };
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
