/**
 * The audit step of every call's chain: one record per call, written before the answer goes out.
 * It wraps access, signature, limits and everything inside, so refusals are recorded too. With a
 * `sync` sink the record is durable before the client sees the result; when it cannot be made
 * durable, the call fails instead of being answered unrecorded ("an audit log that loses nothing").
 */
import type { AuditLog } from "../audit/index.ts";
import type { AuditOutcome } from "../audit/record.ts";
import { describeError, errorResult, type GatewayError } from "../core/errors.ts";
import {
  type CallContext,
  type ChainResult,
  NOTE_ERROR_DETAIL,
  NOTE_UPSTREAM_AS,
  type Policy,
} from "../core/types.ts";
import type { Logger } from "../observability/logger.ts";
import { type CallOutcome, outcomeOfError, outcomeOfResult } from "../observability/metrics.ts";
import { NOTES } from "../policies/types.ts";
import type { Route } from "./route.ts";

/** Longest error text kept in a record: tool errors can be whole pages. */
const MAX_ERROR_CHARS = 2_000;

export function auditPolicy(log: AuditLog, route: Route, replica: string | undefined): Policy {
  const { kind, server } = route;
  const isTool = kind === "tools/call";
  return (next) => async (call, ctx) => {
    const startedAt = new Date();
    const started = performance.now();
    let result: ChainResult | undefined;
    let failure: unknown;
    try {
      result = await next(call, ctx);
    } catch (error) {
      failure = error;
    }
    const outcome = result ? outcomeOfResult(result) : outcomeOfError(failure);
    const source = ctx.notes.get(NOTES.source);
    const upstreamAs = ctx.notes.get(NOTE_UPSTREAM_AS);
    const error = withDetail(
      result ? (result.isError ? textOf(result) : undefined) : describeError(failure),
      ctx.notes.get(NOTE_ERROR_DETAIL),
    );
    try {
      await log.record({
        time: startedAt,
        requestId: ctx.requestId,
        principal: ctx.principal.id,
        ...(ctx.principal.roles.length > 0 ? { roles: ctx.principal.roles } : {}),
        server,
        // A resource has no exposed name: its record names the URI read.
        tool: route.access === "resource" ? call.tool : route.name,
        ...(isTool ? {} : { kind }),
        arguments: call.args,
        outcome: auditOutcome(outcome),
        ...(error === undefined ? {} : { error }),
        durationMs: Math.round((performance.now() - started) * 1000) / 1000,
        source: typeof source === "string" ? source : failure === undefined ? "backend" : "none",
        ...(ctx.transport ? { transport: ctx.transport } : {}),
        ...(replica ? { replica } : {}),
        ...(typeof upstreamAs === "string" ? { upstreamAs } : {}),
      });
    } catch (unrecorded) {
      // Answered unrecorded, never: a tool call fails as a tool call does, another request as an error.
      if (isTool) return errorResult(route.name, unrecorded);
      throw unrecorded;
    }
    if (result) return result;
    throw failure;
  };
}

function auditOutcome(outcome: CallOutcome): AuditOutcome {
  switch (outcome) {
    case "ok":
    case "tool_error":
    case "denied":
    case "rate_limited":
    case "invalid":
      return outcome;
    default:
      return "error";
  }
}

/**
 * The error as the client saw it, then the detail the backend kept from the client (resolved
 * addresses, socket errors…), which the record keeps for the operator.
 */
function withDetail(error: string | undefined, detail: unknown): string | undefined {
  if (error === undefined) return undefined;
  const shown = error.slice(0, MAX_ERROR_CHARS);
  if (typeof detail !== "string" || detail === "") return shown;
  return `${shown}\nDetail (not sent to the client): ${detail.slice(0, MAX_ERROR_CHARS)}`;
}

function textOf(result: ChainResult): string {
  return (result.content ?? [])
    .map((part) => (part.type === "text" ? part.text : `[${part.type}]`))
    .join("\n");
}

/** A call to a tool that does not exist is still a call someone made: it is recorded as invalid. */
export async function recordUnknownTool(
  log: AuditLog,
  name: string,
  args: Record<string, unknown>,
  ctx: CallContext,
  error: GatewayError,
  replica: string | undefined,
  logger: Logger,
): Promise<void> {
  try {
    await log.record({
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
      ...(replica ? { replica } : {}),
    });
  } catch (unrecorded) {
    logger.error({ err: unrecorded, tool: name }, "could not record a call to an unknown tool");
  }
}
