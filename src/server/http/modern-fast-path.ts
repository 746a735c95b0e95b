/**
 * Reads plain 2026-07-28 `tools/call` requests over HTTP and writes their answers as JSON, without the
 * SDK's per-request instance: the SDK serves each stateless request on a new server instance (its
 * handlers registered anew, the request turned into a web Request and back), which costs more than the
 * gateway itself on the hot path. Which requests are plain, and what the answer is, is
 * protocol/modern-call.ts's; this file is only how the bytes are read and written over HTTP.
 */
import type { IncomingMessage, ServerResponse } from "node:http";
import type { Gateway } from "../../gateway/gateway.ts";
import { handOver } from "../../gateway/running.ts";
import { answerModernPlainCall, MODERN_REVISION, modernPlainCall } from "../../protocol/modern-call.ts";
import type { ToolCallRequest } from "../../protocol/tool-call.ts";
import type { RequestFacts } from "./facts.ts";
import { acceptsJson, cancelWhenClosed, writeJson } from "./fast-path.ts";
import { header } from "./guards.ts";

/**
 * Answers `body` if it is a plain 2026-07-28 `tools/call` whose headers agree with it, and returns
 * true; returns false, touching nothing, to leave it to the SDK.
 */
export function servePlainModernCall(
  gateway: Gateway,
  req: IncomingMessage,
  res: ServerResponse,
  body: unknown,
  facts: RequestFacts,
  profile: string | undefined,
): boolean {
  if (typeof body !== "object" || body === null || Array.isArray(body)) return false;
  const request = modernPlainCall(body as Record<string, unknown>);
  if (!request || !acceptsJson(req)) return false;
  // The SDK's own classification (classifyInboundRequest) parses every envelope with zod, a twentieth
  // of a call's CPU; a plain request is one whose headers name exactly the revision, method and tool
  // of its body, which is stricter than what it checks: anything else goes to the SDK.
  if (header(req, "mcp-protocol-version") !== MODERN_REVISION) return false;
  if (header(req, "mcp-method") !== "tools/call" || header(req, "mcp-name") !== request.name) return false;
  void answer(gateway, res, request, facts, profile);
  return true;
}

async function answer(
  gateway: Gateway,
  res: ServerResponse,
  request: ToolCallRequest,
  facts: RequestFacts,
  profile: string | undefined,
): Promise<void> {
  const controller = new AbortController();
  // Made for this call alone: the gateway may abort it itself at its shutdown deadline.
  handOver(controller);
  // A 2026-07-28 client cancels a call by closing its stream.
  const stopWatching = cancelWhenClosed(res, controller);
  let answer: Awaited<ReturnType<typeof answerModernPlainCall>>;
  try {
    answer = await answerModernPlainCall(gateway, request, {
      principal: facts.principal,
      transport: "http",
      profile,
      session: undefined,
      signal: controller.signal,
      headerMeta: facts.metaFromHeaders,
      abort: (reason) => controller.abort(reason),
    });
  } finally {
    stopWatching();
  }
  if (answer && !res.destroyed) writeJson(res, answer.status, answer.message);
}
