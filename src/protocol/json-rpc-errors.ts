/**
 * The one place where a failure of a request becomes a JSON-RPC error object: a GatewayError maps
 * through `jsonRpcCode`; a JSON-RPC error from a backend keeps its code, message and data; anything
 * else is -32603, logged with its stack and never shown to the client.
 */
import { randomUUID } from "node:crypto";
import { ProtocolError } from "@modelcontextprotocol/server";
import { GatewayError, JSON_RPC, jsonRpcCodeOutsideCalls } from "../core/errors.ts";
import type { Logger } from "../observability/logger.ts";

export interface JsonRpcErrorObject {
  readonly code: number;
  readonly message: string;
  readonly data?: unknown;
}

export function toJsonRpcError(error: unknown, logger: Logger): JsonRpcErrorObject {
  if (error instanceof GatewayError) {
    return {
      code: jsonRpcCodeOutsideCalls(error),
      message: error.message,
      data: { code: error.code, ...error.data },
    };
  }
  if (ProtocolError.isInstance(error)) {
    return {
      code: error.code,
      message: error.message,
      ...(error.data !== undefined ? { data: error.data } : {}),
    };
  }
  const id = randomUUID();
  logger.error({ err: error, errorId: id }, "unexpected error while serving a request");
  return { code: JSON_RPC.INTERNAL_ERROR, message: `Internal error (id ${id}); see the gateway log.` };
}

/** The same mapping as a thrown error, for SDK request handlers. */
export function toProtocolError(error: unknown, logger: Logger): ProtocolError {
  if (ProtocolError.isInstance(error)) return error;
  const { code, message, data } = toJsonRpcError(error, logger);
  return new ProtocolError(code, message, data);
}
