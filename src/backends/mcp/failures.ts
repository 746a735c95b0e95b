/**
 * What a failed request to an MCP server becomes for the gateway: a timeout, the server gone (marked
 * `restarting` when its supervisor is bringing it back, so the circuit breaker does not count it), or
 * the server's own JSON-RPC error, passed on with its code and its message as the server meant it.
 */
import { ProtocolError } from "@modelcontextprotocol/client";
import { describeError, GatewayError } from "../../core/errors.ts";
import { CONNECTION_CLOSED } from "./fast-path.ts";

export interface FailureContext {
  readonly server: string;
  /** What was asked: `tool "x"`, `resource "y"`… */
  readonly what: string;
  readonly timeoutMs: number;
  /** Whether the backend is still up (a failure while it is not is the server going away). */
  readonly up: boolean;
  /** Whether a restart of the server is under way. */
  readonly restarting: boolean;
}

/** A failure the caller did not cause (that case is the backend base's `stoppedByCaller`). */
export function translateFailure(error: unknown, context: FailureContext): unknown {
  const { server, what, timeoutMs } = context;
  if (error instanceof GatewayError) return error;
  // A JSON-RPC error from the server itself keeps its code and message, whatever its words say.
  if (ProtocolError.isInstance(error) && error.code !== CONNECTION_CLOSED) return withoutCodePrefix(error);
  const message = describeError(error);
  if (/timed? ?out/i.test(message)) {
    return new GatewayError(
      "timeout",
      `Server "${server}" did not answer ${what} within ${timeoutMs} ms. ` +
        "Raise timeoutMs for this server if the tool is slow, or check the server.",
      { cause: error, data: { server, timeoutMs } },
    );
  }
  if (/connection closed|not connected|transport closed|EPIPE/i.test(message) || !context.up) {
    // `restarting`: the supervisor saw the server die and is bringing it back; the failure says
    // nothing about its health that the restart does not already handle.
    return new GatewayError(
      "backend_unavailable",
      `Server "${server}" went away during ${what} (${message}). It is being restarted; try again shortly.`,
      { cause: error, data: { server, ...(context.restarting ? { restarting: true } : {}) } },
    );
  }
  return ProtocolError.isInstance(error) ? withoutCodePrefix(error) : error;
}

/**
 * An SDK v1 server sends its McpError's message, which already reads "MCP error <code>: …"; clients
 * put that prefix in front of the message themselves, so it is passed on without it (however many
 * proxies on the way added it again).
 */
export function withoutCodePrefix(error: ProtocolError): ProtocolError {
  const prefix = `MCP error ${error.code}: `;
  let message = error.message;
  while (message.startsWith(prefix)) message = message.slice(prefix.length);
  return message === error.message ? error : new ProtocolError(error.code, message, error.data);
}
