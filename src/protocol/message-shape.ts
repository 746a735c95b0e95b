/**
 * A cheap first look at an inbound message, shared by the stdio and HTTP transports, so that both
 * answer a malformed message the same way: -32600 (or -32602 for a tools/call without a tool name)
 * with one readable sentence, instead of a parse error or a dump of schema errors.
 */
import { JSON_RPC } from "../core/errors.ts";

export interface ShapeProblem {
  readonly id: string | number | null;
  readonly code: number;
  readonly message: string;
}

/** Returns what is wrong with one JSON-RPC message, or undefined when it looks like JSON-RPC 2.0. */
export function shapeProblem(message: unknown): ShapeProblem | undefined {
  if (typeof message !== "object" || message === null || Array.isArray(message)) {
    return {
      id: null,
      code: JSON_RPC.INVALID_REQUEST,
      message: "Invalid request: a JSON-RPC message must be an object.",
    };
  }
  const m = message as Record<string, unknown>;
  const id = typeof m.id === "string" || typeof m.id === "number" ? m.id : null;
  if (m.jsonrpc !== "2.0") {
    return { id, code: JSON_RPC.INVALID_REQUEST, message: 'Invalid request: "jsonrpc" must be "2.0".' };
  }
  if (m.id !== undefined && id === null) {
    return {
      id: null,
      code: JSON_RPC.INVALID_REQUEST,
      message: 'Invalid request: "id" must be a string or a number.',
    };
  }
  const isResponse = m.method === undefined && ("result" in m || "error" in m);
  if (isResponse) return undefined;
  if (typeof m.method !== "string" || m.method === "") {
    return {
      id,
      code: JSON_RPC.INVALID_REQUEST,
      message: 'Invalid request: "method" must be a non-empty string.',
    };
  }
  if (m.params !== undefined && (typeof m.params !== "object" || m.params === null)) {
    return { id, code: JSON_RPC.INVALID_REQUEST, message: 'Invalid request: "params" must be an object.' };
  }
  if (m.method === "tools/call" && id !== null) {
    const params = m.params as { name?: unknown; arguments?: unknown } | undefined;
    if (typeof params?.name !== "string" || params.name === "") {
      return {
        id,
        code: JSON_RPC.INVALID_PARAMS,
        message: "tools/call needs params.name: the name of the tool to call.",
      };
    }
    const args = params.arguments;
    if (args !== undefined && (typeof args !== "object" || args === null || Array.isArray(args))) {
      return { id, code: JSON_RPC.INVALID_PARAMS, message: "tools/call params.arguments must be an object." };
    }
  }
  return undefined;
}

/** A message with its line breaks escaped (a parse error quotes the input), so that it stays one line. */
export function oneLine(text: string): string {
  return text.replace(/\r/g, "\\r").replace(/\n/g, "\\n");
}
