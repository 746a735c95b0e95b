/**
 * One error type for everything the gateway rejects or fails at. A `code` names the kind of failure
 * for programs; the message says what happened, to what, and what to do next, for people.
 *
 * Two ways out, decided here and nowhere else:
 * - a failure or refusal of a tool call (backend down, timeout, limit, open circuit, access denied,
 *   signature refused…) becomes an `isError` result, because MCP clients show those to the model,
 *   which can act on them (and the code travels in `_meta["switchboard/error"]`);
 * - a malformed request (unknown tool, invalid arguments) becomes a JSON-RPC error with the code from
 *   `jsonRpcCode`. Unexpected exceptions are -32603 and never show their stack.
 */
import type { CallToolResult } from "./types.ts";

/**
 * Every code a GatewayError carries. The README's "Error codes" section lists each with when it
 * happens and what a client should do; test/unit/error-codes.test.ts fails when the two differ.
 */
export const GATEWAY_ERROR_CODES = [
  "config_invalid",
  "config_variable_missing",
  "config_file",
  "unknown_tool",
  "unknown_resource",
  "unknown_prompt",
  "invalid_arguments",
  "backend_unavailable",
  "backend_error",
  "timeout",
  "cancelled",
  "rate_limited",
  "circuit_open",
  "bulkhead_full",
  "unauthorized",
  "forbidden",
  "store_unavailable",
  "audit_unavailable",
  "shutting_down",
  "internal",
] as const;

export type GatewayErrorCode = (typeof GATEWAY_ERROR_CODES)[number];

export interface GatewayErrorOptions {
  readonly data?: Record<string, unknown>;
  readonly cause?: unknown;
}

export class GatewayError extends Error {
  readonly code: GatewayErrorCode;
  readonly data: Record<string, unknown>;

  constructor(code: GatewayErrorCode, message: string, options: GatewayErrorOptions = {}) {
    super(message, options.cause === undefined ? undefined : { cause: options.cause });
    this.name = "GatewayError";
    this.code = code;
    this.data = options.data ?? {};
  }
}

export class RateLimited extends GatewayError {
  readonly retryAfterMs: number;
  constructor(message: string, retryAfterMs: number, data: Record<string, unknown> = {}) {
    super("rate_limited", message, { data: { ...data, retryAfterMs } });
    this.name = "RateLimited";
    this.retryAfterMs = retryAfterMs;
  }
}

export class CircuitOpen extends GatewayError {
  readonly retryAt: number;
  constructor(message: string, retryAt: number, data: Record<string, unknown> = {}) {
    super("circuit_open", message, { data: { ...data, retryAt: new Date(retryAt).toISOString() } });
    this.name = "CircuitOpen";
    this.retryAt = retryAt;
  }
}

export class Unauthorized extends GatewayError {
  constructor(message: string, data: Record<string, unknown> = {}) {
    super("unauthorized", message, { data });
    this.name = "Unauthorized";
  }
}

export class InvalidArguments extends GatewayError {
  constructor(message: string, data: Record<string, unknown> = {}) {
    super("invalid_arguments", message, { data });
    this.name = "InvalidArguments";
  }
}

/**
 * Every JSON-RPC error code the gateway answers its clients with: the JSON-RPC spec's, and MCP's,
 * whether the gateway sends them itself or the MCP SDK's transport does on its behalf (a JSON-RPC
 * error from a backend keeps its own code besides). The README's "Error codes" section lists each;
 * test/unit/error-codes.test.ts fails when the two differ.
 */
export const JSON_RPC = {
  PARSE_ERROR: -32700,
  INVALID_REQUEST: -32600,
  METHOD_NOT_FOUND: -32601,
  INVALID_PARAMS: -32602,
  INTERNAL_ERROR: -32603,
  /**
   * A request other than a tool call refused or failed by a policy or its server (the gateway's code in
   * `data.code`); also the MCP SDK's Streamable HTTP transport, for a request it refuses before it
   * reaches the gateway.
   */
  SERVER_ERROR: -32000,
  /** Streamable HTTP: the `Mcp-Session-Id` names no session (expired, or the gateway restarted). */
  SESSION_NOT_FOUND: -32001,
  /** MCP's code for a resource no server offers. */
  RESOURCE_NOT_FOUND: -32002,
  /** 2026-07-28 over HTTP: a header (`MCP-Protocol-Version`, `Mcp-Method`) disagrees with the body. */
  HEADER_MISMATCH: -32020,
  /** 2026-07-28: the request needs a capability its `clientCapabilities` do not declare. */
  MISSING_CLIENT_CAPABILITY: -32021,
  /** 2026-07-28: the request names a protocol version the gateway does not speak. */
  UNSUPPORTED_PROTOCOL_VERSION: -32022,
} as const;

export type JsonRpcErrorCode = (typeof JSON_RPC)[keyof typeof JSON_RPC];

/** Which failures are a problem with the request (JSON-RPC error) rather than with the call (isError). */
const REQUEST_ERRORS: Partial<Record<GatewayErrorCode, number>> = {
  unknown_tool: JSON_RPC.INVALID_PARAMS,
  unknown_prompt: JSON_RPC.INVALID_PARAMS,
  unknown_resource: JSON_RPC.RESOURCE_NOT_FOUND,
  unauthorized: JSON_RPC.INVALID_REQUEST,
  forbidden: JSON_RPC.INVALID_REQUEST,
};

/** The JSON-RPC code for a request-level failure, or undefined when it should be an isError result. */
export function jsonRpcCode(error: unknown): number | undefined {
  return error instanceof GatewayError ? REQUEST_ERRORS[error.code] : undefined;
}

/**
 * The JSON-RPC code of a failure when the request is not a tool call (a resource read, a prompt, a
 * completion), which has no `isError` result to carry it: a request-level failure keeps its code; a
 * refusal or failure of the request itself (rate limited, timed out, circuit open, server down…) is
 * -32000, the start of JSON-RPC's range for server errors, with the gateway's code in `data.code`; an
 * unexpected one is -32603.
 */
export function jsonRpcCodeOutsideCalls(error: GatewayError): number {
  return jsonRpcCode(error) ?? (error.code === "internal" ? JSON_RPC.INTERNAL_ERROR : JSON_RPC.SERVER_ERROR);
}

export function isGatewayError(error: unknown): error is GatewayError {
  return error instanceof GatewayError;
}

/** A readable one-line reason for any thrown value, without stacks. */
export function describeError(error: unknown): string {
  if (error instanceof Error) return error.message;
  if (typeof error === "string") return error;
  try {
    return JSON.stringify(error);
  } catch {
    return String(error);
  }
}

/**
 * The advice `advice` gives for the errno code of a failed system call (ENOENT, EACCES…), or undefined
 * for a code it does not list and for an error without one.
 */
export function errnoAdvice(error: unknown, advice: Readonly<Record<string, string>>): string | undefined {
  const code = (error as NodeJS.ErrnoException | undefined)?.code;
  return code !== undefined && Object.hasOwn(advice, code) ? advice[code] : undefined;
}

/**
 * The `isError` result a client sees for a failed call. It names the tool as the client knows it, says
 * what happened, and carries the machine-readable code in `_meta`.
 */
export function errorResult(exposedName: string, error: unknown): CallToolResult {
  const gatewayError = error instanceof GatewayError ? error : undefined;
  const code = gatewayError?.code ?? "backend_error";
  const message = gatewayError
    ? gatewayError.message
    : `Tool "${exposedName}" failed: ${describeError(error)}`;
  return {
    content: [{ type: "text", text: message }],
    isError: true,
    _meta: { "switchboard/error": { code, ...(gatewayError?.data ?? {}) } },
  };
}
