/**
 * Reads `tools/call` requests of an established 2025-era HTTP session and writes their answers as
 * plain JSON, without the SDK's Streamable HTTP transport: it turns every request into a web Request,
 * routes it through a stream per request and answers through web streams, which for the hot path of
 * a gateway costs more than the gateway itself. What the call means is the one answerer's
 * (protocol/tool-call.ts); this file is only how its bytes are read and written.
 *
 * A plain JSON response is something Streamable HTTP allows for any request, so this path is taken
 * only when nothing else needs the request's stream: the client accepts JSON, asked for no progress,
 * declared neither sampling, elicitation nor roots (a backend cannot ask it anything mid-call), and set no
 * log level (log messages about the call would go on that stream). Anything else goes to the SDK.
 */
import type { IncomingMessage, ServerResponse } from "node:http";
import type { Gateway } from "../../gateway/gateway.ts";
import { connectionLogLevel, connectionSession } from "../../protocol/connection.ts";
import { cancelledRequestId, isPlainObject, plainToolCall } from "../../protocol/in-flight.ts";
import { answerToolCall, responseMessage, type ToolCallRequest } from "../../protocol/tool-call.ts";
import type { RequestFacts } from "./facts.ts";
import type { Session } from "./sessions.ts";

/** Handles `notifications/cancelled` for a call this path serves; false when it is not one. */
export function cancelPlainCall(session: Session, body: unknown): boolean {
  if (!isPlainObject(body)) return false;
  const id = cancelledRequestId(body);
  return id !== undefined && session.calls.cancel(id);
}

/**
 * Answers `body` if it is a `tools/call` this path can serve (see the module comment) and returns
 * true; returns false, touching nothing, to leave it to the SDK.
 */
export function servePlainCall(
  gateway: Gateway,
  session: Session,
  req: IncomingMessage,
  res: ServerResponse,
  body: unknown,
  facts: RequestFacts,
  profile: string | undefined,
): boolean {
  if (!isPlainObject(body)) return false;
  const request = plainToolCall(body);
  if (!request || request.meta?.progressToken !== undefined || !acceptsJson(req)) return false;
  const capabilities = session.server.getClientCapabilities();
  if (capabilities?.sampling !== undefined || capabilities?.elicitation !== undefined) return false;
  if (capabilities?.roots !== undefined) return false;
  if (connectionLogLevel(session.server) !== undefined) return false;
  const controller = session.calls.start(request.id);
  if (!controller) return false;
  void answer(gateway, session, res, request, { facts, profile, controller });
  return true;
}

async function answer(
  gateway: Gateway,
  session: Session,
  res: ServerResponse,
  request: ToolCallRequest,
  {
    facts,
    profile,
    controller,
  }: { facts: RequestFacts; profile: string | undefined; controller: AbortController },
): Promise<void> {
  const stopWatching = cancelWhenClosed(res, controller);
  let outcome: Awaited<ReturnType<typeof answerToolCall>>;
  try {
    outcome = await answerToolCall(gateway, request, {
      principal: facts.principal,
      transport: "http",
      profile,
      session: connectionSession(session.server),
      signal: controller.signal,
      headerMeta: facts.metaFromHeaders,
      project: (result, outputSchema) => session.server.projectCallToolResult(result, outputSchema),
    });
  } finally {
    session.calls.end(request.id, controller);
    stopWatching();
  }
  // A cancelled call gets no response (as JSON-RPC cancellation asks); its HTTP exchange still ends.
  if (outcome.kind === "cancelled") {
    if (!res.headersSent) res.writeHead(202).end();
    return;
  }
  if (res.destroyed) return;
  writeJson(res, 200, responseMessage(request.id, outcome), { "mcp-session-id": session.id });
}

/** A client that goes away cancels its call, as on the SDK path; returns what stops watching. */
export function cancelWhenClosed(res: ServerResponse, controller: AbortController): () => void {
  const onClose = () => {
    if (!res.writableFinished) controller.abort(new Error("the client closed the connection"));
  };
  res.once("close", onClose);
  return () => res.off("close", onClose);
}

/** A plain answer, its length known so that it goes out in one piece, without chunked framing. */
export function writeJson(
  res: ServerResponse,
  status: number,
  message: unknown,
  headers: Readonly<Record<string, string>> = {},
): void {
  const text = JSON.stringify(message);
  res
    .writeHead(status, {
      "content-type": "application/json",
      "content-length": Buffer.byteLength(text),
      ...headers,
    })
    .end(text);
}

/** Whether the client takes a plain JSON answer (Streamable HTTP lets any request have one). */
export function acceptsJson(req: IncomingMessage): boolean {
  const accept = req.headers.accept;
  return accept === undefined || accept.includes("application/json") || accept.includes("*/*");
}
