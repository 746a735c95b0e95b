/**
 * "Try a tool": one call made from the console through the gateway, as the signed-in principal, with
 * its whole chain (access, limits, cache, audit…), answered as a client would see it, with how long it
 * took and who answered: the backend, the cache, a fallback, or the gateway itself (an `isError`
 * result it made, e.g. a refused or invalid call).
 */
import { randomUUID } from "node:crypto";
import { describeError, isGatewayError } from "../core/errors.ts";
import type { CallToolResult, Principal } from "../core/types.ts";
import { SOURCE_META } from "../policies/runtime.ts";

export interface TryRequest {
  readonly tool: string;
  readonly arguments: Record<string, unknown>;
}

export type TryAnswer =
  | {
      readonly ok: true;
      readonly requestId: string;
      readonly result: CallToolResult;
      readonly durationMs: number;
      /** "backend", "cache", "fallback:<n>:…", or "gateway" for an error result the gateway made. */
      readonly source: string;
    }
  | {
      readonly ok: false;
      readonly requestId: string;
      readonly error: string;
      readonly code?: string;
      readonly durationMs: number;
    };

/** What the body of `POST /console/api/call` must be, or why it is not. */
export function parseTryRequest(body: unknown): TryRequest | string {
  if (typeof body !== "object" || body === null || Array.isArray(body)) {
    return 'the body must be a JSON object: { "tool": "<exposed name>", "arguments": { … } }';
  }
  const { tool, arguments: args } = body as { tool?: unknown; arguments?: unknown };
  if (typeof tool !== "string" || tool === "") return '"tool" must be the exposed name of a tool';
  if (args !== undefined && (typeof args !== "object" || args === null || Array.isArray(args))) {
    return '"arguments" must be a JSON object';
  }
  return { tool, arguments: (args ?? {}) as Record<string, unknown> };
}

/** The gateway's `callTool`, as the console uses it. */
export type CallTool = (
  name: string,
  args: Record<string, unknown>,
  options: { principal: Principal; requestId: string; transport: "http" },
) => Promise<CallToolResult>;

export async function tryTool(
  callTool: CallTool,
  principal: Principal,
  request: TryRequest,
): Promise<TryAnswer> {
  const requestId = randomUUID();
  const started = performance.now();
  try {
    const result = await callTool(request.tool, request.arguments, {
      principal,
      requestId,
      transport: "http",
    });
    const durationMs = Math.round((performance.now() - started) * 100) / 100;
    return { ok: true, requestId, result, durationMs, source: sourceOf(result) };
  } catch (error) {
    // A request-level failure (an unknown tool): what a client gets as a JSON-RPC error.
    const durationMs = Math.round((performance.now() - started) * 100) / 100;
    return {
      ok: false,
      requestId,
      error: describeError(error),
      ...(isGatewayError(error) ? { code: error.code } : {}),
      durationMs,
    };
  }
}

function sourceOf(result: CallToolResult): string {
  const meta = result._meta;
  const source = meta?.[SOURCE_META];
  if (typeof source === "string") return source;
  if (result.isError === true && meta?.["switchboard/error"] !== undefined) return "gateway";
  return "backend";
}
