/**
 * The one answerer of `tools/call`. Every transport and era hands its calls here — the SDK's request
 * handler, and the stdio and HTTP paths that read and write the bytes themselves — so what a call
 * means is written once: the options the gateway gets (principal, `_meta`, log level, progress, the
 * client to ask), the wait that lets progress reach the client before the result, the result's shape
 * and the mapping of failures to JSON-RPC errors. The paths differ only in how they read a request and
 * write its answer.
 */
import { LOG_LEVEL_META_KEY } from "@modelcontextprotocol/server";
import type {
  CallerChannel,
  CallToolResult,
  LoggingLevel,
  Principal,
  ProgressUpdate,
} from "../core/types.ts";
import type { Gateway, RequestOptions } from "../gateway/gateway.ts";
import { cancelledByClient } from "../gateway/running.ts";
import { type JsonRpcErrorObject, toJsonRpcError } from "./json-rpc-errors.ts";
import { waitAfterProgress } from "./leg.ts";
import { type Projector, shapeToolResult } from "./result-shape.ts";

export type RequestId = string | number;

/** A `tools/call` request as it arrived, parsed. */
export interface ToolCallRequest {
  readonly id: RequestId;
  readonly name: string;
  readonly arguments?: Record<string, unknown> | undefined;
  /** The request's own `_meta`, progress token included. */
  readonly meta?: Readonly<Record<string, unknown>> | undefined;
}

/** What the path a call arrived on contributes to it. */
export interface CallSite {
  readonly principal: Principal;
  readonly transport: "stdio" | "http";
  /** The profile whose endpoint the call came to (config `profiles`); absent for the default one. */
  readonly profile?: string | undefined;
  /** The client session the call belongs to (see CallContext.session). */
  readonly session?: string | undefined;
  /** Aborted when the client cancels (or goes away): the backend request is cancelled with it. */
  readonly signal: AbortSignal;
  /** `_meta` keys the transport learned elsewhere (HTTP headers); the request's own `_meta` wins. */
  readonly headerMeta?: Readonly<Record<string, unknown>> | undefined;
  /**
   * The log level that applies to the call: a 2025-era connection's, or a 2026-07-28 request's own.
   * It rides in `_meta` under the reserved key, which is how a 2026-07-28 backend learns it.
   */
  readonly logLevel?: LoggingLevel | null | undefined;
  /** Sends a progress update for this request; absent when the request asked for none. */
  readonly progress?: ((update: ProgressUpdate) => void) | undefined;
  /** The client a backend may ask for sampling or elicitation, and send the call's log messages to. */
  readonly client?: CallerChannel | undefined;
  /** Projects the result for the client's era. */
  readonly project: Projector;
  /** Resolves when the call's notifications are written (the SDK's request stream). */
  readonly settled?: (() => Promise<void>) | undefined;
}

export type ToolCallAnswer =
  | { readonly kind: "result"; readonly result: CallToolResult }
  | { readonly kind: "error"; readonly error: JsonRpcErrorObject }
  /** The client cancelled: JSON-RPC cancellation asks for no response. */
  | { readonly kind: "cancelled" };

/** The gateway's view of one call request: the one place that builds it. */
export function callOptions(request: ToolCallRequest, site: CallSite): RequestOptions {
  const meta: Record<string, unknown> = { ...site.headerMeta, ...request.meta };
  delete meta.progressToken;
  if (site.logLevel) meta[LOG_LEVEL_META_KEY] = site.logLevel;
  return {
    principal: site.principal,
    transport: site.transport,
    signal: site.signal,
    meta,
    requestId: String(request.id),
    ...(site.progress ? { onProgress: site.progress } : {}),
    ...(site.client ? { client: site.client } : {}),
    ...(site.profile ? { profile: site.profile } : {}),
    ...(site.session ? { session: site.session } : {}),
  };
}

/** The result as a client receives it, on every path. */
export function shapeFor(gateway: Gateway, name: string, result: CallToolResult, project: Projector) {
  const route = gateway.catalog.tool(name);
  return shapeToolResult(result, {
    tool: name,
    server: route?.server,
    outputSchema: route?.definition.outputSchema,
    project,
    logger: gateway.logger,
  });
}

export async function answerToolCall(
  gateway: Gateway,
  request: ToolCallRequest,
  site: CallSite,
): Promise<ToolCallAnswer> {
  let lastProgressAt: number | undefined;
  const progress = site.progress;
  const options = callOptions(request, {
    ...site,
    progress: progress
      ? (update) => {
          progress(update);
          lastProgressAt = performance.now();
        }
      : undefined,
  });
  try {
    const result = await gateway.callTool(request.name, request.arguments, options);
    if (cancelledByClient(site.signal)) return { kind: "cancelled" };
    await site.settled?.();
    await waitAfterProgress(lastProgressAt);
    return { kind: "result", result: shapeFor(gateway, request.name, result, site.project) };
  } catch (error) {
    if (cancelledByClient(site.signal)) return { kind: "cancelled" };
    await site.settled?.();
    return { kind: "error", error: toJsonRpcError(error, gateway.logger) };
  }
}

/**
 * The JSON-RPC response for an answer, as a plain path writes it: with its keys in the order the SDK
 * writes them on its own path (a result first; an error last), so that the bytes do not tell a client
 * which path answered.
 */
export function responseMessage(
  id: RequestId,
  answer: Exclude<ToolCallAnswer, { kind: "cancelled" }>,
): Record<string, unknown> {
  return answer.kind === "result"
    ? { result: answer.result, jsonrpc: "2.0", id }
    : { jsonrpc: "2.0", id, error: answer.error };
}
