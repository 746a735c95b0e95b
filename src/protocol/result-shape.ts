/**
 * What a client receives as a result, shaped in one place for every path and era: the backend's
 * reserved `_meta` keys dropped, a `tools/call` result checked against the MCP schema (a malformed one
 * becomes an `isError` result that says so, instead of reaching the client on one path and being
 * refused on another), then projected for the era the client speaks.
 */
import { specTypeSchemas } from "@modelcontextprotocol/server";
import { errorResult, GatewayError } from "../core/errors.ts";
import type { CallToolResult } from "../core/types.ts";
import type { Logger } from "../observability/logger.ts";

const RESERVED_META_PREFIX = "io.modelcontextprotocol/";

/**
 * The reserved `io.modelcontextprotocol/*` keys of a backend's result (its serverInfo, say) describe
 * the backend's connection to the gateway, not the client's to the gateway; the SDK fills in its own.
 */
export function withoutReservedMeta<R extends { _meta?: Record<string, unknown> }>(result: R): R {
  const meta = result._meta;
  if (meta === undefined) return result;
  let reserved = false;
  for (const key in meta) {
    if (key.startsWith(RESERVED_META_PREFIX)) {
      reserved = true;
      break;
    }
  }
  if (!reserved) return result;
  const kept = Object.fromEntries(
    Object.entries(meta).filter(([key]) => !key.startsWith(RESERVED_META_PREFIX)),
  );
  const { _meta: _dropped, ...rest } = result;
  return (Object.keys(kept).length > 0 ? { ...rest, _meta: kept } : rest) as R;
}

/** Projects a result for the client's negotiated era (the SDK's wire codec does it). */
export type Projector = (
  result: CallToolResult,
  outputSchema: Readonly<Record<string, unknown>> | undefined,
) => CallToolResult;

interface StandardIssue {
  readonly message: string;
  readonly path?: readonly (PropertyKey | { key: PropertyKey })[];
  /** A union's issues, one list per member. */
  readonly errors?: readonly (readonly StandardIssue[])[];
}

const callToolResultSchema = (
  specTypeSchemas as unknown as {
    CallToolResult: {
      "~standard": { validate(value: unknown): { value?: unknown; issues?: readonly StandardIssue[] } };
    };
  }
).CallToolResult["~standard"];

export interface ShapeContext {
  /** The tool as the client named it. */
  readonly tool: string;
  /** The server that answered, when known. */
  readonly server?: string | undefined;
  readonly outputSchema?: Readonly<Record<string, unknown>> | undefined;
  readonly project: Projector;
  readonly logger: Logger;
}

/** The one shaping of a `tools/call` result, whatever path answers it. */
export function shapeToolResult(result: CallToolResult, context: ShapeContext): CallToolResult {
  const passed = withoutReservedMeta(result);
  // A result without content is valid in the spec's eyes (content defaults to []); say it explicitly,
  // as the SDK does before it validates.
  const normalized = passed.content === undefined ? { ...passed, content: [] } : passed;
  const checked = callToolResultSchema.validate(normalized);
  if (!checked.issues) return context.project(checked.value as CallToolResult, context.outputSchema);
  const problem = describeIssue(checked.issues);
  context.logger.warn(
    { tool: context.tool, server: context.server, problem },
    "a backend answered a tool call with a malformed result; the client gets an error result",
  );
  const refusal = errorResult(
    context.tool,
    new GatewayError(
      "backend_error",
      `Tool "${context.tool}" answered with a result that is not valid MCP (${problem}), so the gateway ` +
        `cannot pass it on. This is a fault of ${context.server ? `server "${context.server}"` : "the server"}: ` +
        "report it to its maintainers.",
      { data: { tool: context.tool, ...(context.server ? { server: context.server } : {}) } },
    ),
  );
  // Through the same check, so that its keys come out in the order every valid result's do.
  return context.project(callToolResultSchema.validate(refusal).value as CallToolResult, undefined);
}

function describeIssue(issues: readonly StandardIssue[]): string {
  const first = issues[0];
  if (!first) return "unknown problem";
  let issue: StandardIssue = first;
  let path = [...(issue.path ?? [])];
  // Which kind of content block was meant? A union reports one list of issues per member; the member
  // with the fewest is the one the block was closest to, and its first issue is the readable one.
  while (issue.errors && issue.errors.length > 0) {
    const closest: readonly StandardIssue[] | undefined = [...issue.errors].sort(
      (a, b) => a.length - b.length,
    )[0];
    const inner: StandardIssue | undefined = closest?.[0];
    if (!inner) break;
    issue = inner;
    path = [...path, ...(inner.path ?? [])];
  }
  const where = path.map((part) => String(typeof part === "object" ? part.key : part)).join(".");
  return where ? `${where}: ${issue.message}` : issue.message;
}
