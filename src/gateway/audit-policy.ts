/**
 * The audit step of every call's chain: one record per call, written before the answer goes out.
 * It wraps access, signature, limits and everything inside, so refusals are recorded too. With a
 * `sync` sink the record is durable before the client sees the result; when it cannot be made
 * durable, the call fails instead of being answered unrecorded ("an audit log that loses nothing").
 */
import type { AuditLog } from "../audit/index.ts";
import type { AuditOutcome } from "../audit/record.ts";
import { describeError, errorResult } from "../core/errors.ts";
import { type ChainResult, NOTE_ERROR_DETAIL, type Policy } from "../core/types.ts";
import { type CallOutcome, outcomeOfError, outcomeOfResult } from "../observability/metrics.ts";
import { NOTES } from "../policies/types.ts";

/** Longest error text kept in a record: tool errors can be whole pages. */
const MAX_ERROR_CHARS = 2_000;

export function auditPolicy(
  log: AuditLog,
  exposedName: string,
  server: string,
  replica: string | undefined,
): Policy {
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
        tool: exposedName,
        arguments: call.args,
        outcome: auditOutcome(outcome),
        ...(error === undefined ? {} : { error }),
        durationMs: Math.round((performance.now() - started) * 1000) / 1000,
        source: typeof source === "string" ? source : failure === undefined ? "backend" : "none",
        ...(ctx.transport ? { transport: ctx.transport } : {}),
        ...(replica ? { replica } : {}),
      });
    } catch (unrecorded) {
      return errorResult(exposedName, unrecorded);
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
