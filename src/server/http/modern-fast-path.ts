/**
 * Reads plain 2026-07-28 `tools/call` requests and writes their answers as JSON, without the SDK's
 * per-request instance. The SDK serves each stateless request on a new server instance (its handlers
 * registered anew, the request turned into a web Request and back), which costs more than the gateway
 * itself on the hot path. What the call means is the one answerer's (protocol/tool-call.ts); this file
 * is only how its bytes are read and written, as the 2025-era session's plain path (fast-path.ts) does.
 *
 * The path is taken only for a request that needs nothing else from the SDK: one whose headers and
 * envelope agree that it is a 2026-07-28 `tools/call` of the tool it names; a `tools/call` with only `name`, `arguments` and the
 * `_meta` envelope (no progress token, no log level, no task, no answers to earlier questions); a
 * client that declares no capabilities (nothing can be asked of it, so no input rounds) and accepts
 * JSON. Anything else goes to the SDK, which answers it as it always has.
 *
 * The answer is encoded as the SDK encodes a 2026-07-28 `tools/call` result (see `encodeResult`); the
 * path-equivalence suite proves the bytes are the same on both paths.
 */
import type { IncomingMessage, ServerResponse } from "node:http";
import {
  CLIENT_CAPABILITIES_META_KEY,
  CLIENT_INFO_META_KEY,
  PROTOCOL_VERSION_META_KEY,
  SERVER_INFO_META_KEY,
} from "@modelcontextprotocol/server";
import type { CallerChannel, CallToolResult } from "../../core/types.ts";
import type { Gateway } from "../../gateway/gateway.ts";
import { plainToolCall } from "../../protocol/in-flight.ts";
import { CapabilityRefusals } from "../../protocol/refusals.ts";
import { answerToolCall, responseMessage, type ToolCallRequest } from "../../protocol/tool-call.ts";
import { VERSION } from "../../version.ts";
import type { RequestFacts } from "./facts.ts";
import { acceptsJson } from "./fast-path.ts";
import { header } from "./guards.ts";

/** The `_meta` keys a plain request may carry: the envelope, and nothing that changes how it is served. */
const ENVELOPE_KEYS: ReadonlySet<string> = new Set([
  PROTOCOL_VERSION_META_KEY,
  CLIENT_INFO_META_KEY,
  CLIENT_CAPABILITIES_META_KEY,
]);
/** The revision this path serves; a newer one goes to the SDK until this path is taught it. */
const MODERN_REVISION = "2026-07-28";
const CLIENT_INFO_KEYS: ReadonlySet<string> = new Set(["name", "version", "title"]);

/** The JSON-RPC error the 2026-07-28 revision answers in place of -32002 (resource not found). */
const RESOURCE_NOT_FOUND = -32002;
const INVALID_PARAMS = -32602;
/** In-band errors are HTTP 200, except a client capability the request needs (as the SDK answers). */
const MISSING_CAPABILITY = -32021;

/**
 * Answers `body` if it is a plain 2026-07-28 `tools/call` (see the module comment) and returns true;
 * returns false, touching nothing, to leave it to the SDK.
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
  const request = plainToolCall(body as Record<string, unknown>);
  if (!request || !isPlainEnvelope(request.meta) || !acceptsJson(req)) return false;
  // The SDK's own classification (classifyInboundRequest) parses every envelope with zod, a twentieth
  // of a call's CPU; a plain request is one whose headers and envelope name exactly this revision, this
  // method and this tool, which is stricter than what it checks: anything else goes to the SDK.
  if ((body as { jsonrpc?: unknown }).jsonrpc !== "2.0") return false;
  if (request.meta?.[PROTOCOL_VERSION_META_KEY] !== MODERN_REVISION) return false;
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
  // A 2026-07-28 client cancels a call by closing its stream, as on the SDK path.
  const onClose = () => {
    if (!res.writableFinished) controller.abort(new Error("the client closed the connection"));
  };
  res.once("close", onClose);
  const refusals = new CapabilityRefusals(() => controller.abort(refusals.error));
  let answered = false;
  let outcome: Awaited<ReturnType<typeof answerToolCall>>;
  try {
    outcome = await answerToolCall(gateway, request, {
      principal: facts.principal,
      transport: "http",
      profile,
      // A 2026-07-28 client has no session: its principal stands for it (as on the SDK path).
      session: `principal:${facts.principal.id}`,
      signal: controller.signal,
      headerMeta: facts.metaFromHeaders,
      logLevel: null,
      client: refusingChannel(refusals, () => answered),
      project: appendTextForNonObject,
    });
  } finally {
    answered = true;
    res.off("close", onClose);
  }
  if (res.destroyed) return;
  const refused = refusals.error;
  if (refused) {
    const message = responseMessage(request.id, {
      kind: "error",
      error: { code: refused.code, message: refused.message, data: refused.data },
    });
    res.writeHead(400, { "content-type": "application/json" }).end(JSON.stringify(message));
    return;
  }
  if (outcome.kind === "cancelled") return;
  const message =
    outcome.kind === "result"
      ? responseMessage(request.id, {
          kind: "result",
          result: encodeResult(outcome.result, gateway.config.gateway.name),
        })
      : responseMessage(request.id, {
          kind: "error",
          error: {
            ...outcome.error,
            code: outcome.error.code === RESOURCE_NOT_FOUND ? INVALID_PARAMS : outcome.error.code,
          },
        });
  const status = outcome.kind === "error" && outcome.error.code === MISSING_CAPABILITY ? 400 : 200;
  res.writeHead(status, { "content-type": "application/json" }).end(JSON.stringify(message));
}

/**
 * The client of a request that declared no capabilities: every question a backend asks is refused,
 * and ends the request with -32021 naming what the client lacks (as an input round would).
 */
function refusingChannel(refusals: CapabilityRefusals, answered: () => boolean): CallerChannel {
  return {
    capabilities: {},
    createMessage: (params) => refusals.refuse("sampling/createMessage", params) as never,
    elicit: (params) => refusals.refuse("elicitation/create", params) as never,
    listRoots: () => Promise.resolve(undefined),
    // A request that named no log level wants none; once answered, a message is no longer the call's.
    log: () => !answered(),
  };
}

/**
 * The 2026-07-28 encoding of a `tools/call` result, in the SDK's order: `resultType` stamped when
 * absent, then the server's identity added to `_meta` unless the result names one.
 */
function encodeResult(result: CallToolResult, serverName: string): CallToolResult {
  const typed: Record<string, unknown> =
    (result as { resultType?: unknown }).resultType === undefined
      ? { ...result, resultType: "complete" }
      : { ...result };
  const meta = typed._meta;
  const serverInfo = { name: serverName, version: VERSION };
  if (meta === undefined) typed._meta = { [SERVER_INFO_META_KEY]: serverInfo };
  else if (isPlainObject(meta) && meta[SERVER_INFO_META_KEY] === undefined) {
    typed._meta = { ...meta, [SERVER_INFO_META_KEY]: serverInfo };
  }
  return typed as CallToolResult;
}

/**
 * What the SDK does to every era's tool result: a non-object `structuredContent` gets a text rendering
 * when the result has no text block, for clients that read only `content`.
 */
function appendTextForNonObject(result: CallToolResult): CallToolResult {
  const structured = result.structuredContent as unknown;
  if (structured === undefined || isPlainObject(structured)) return result;
  if (result.content?.some((block) => block.type === "text")) return result;
  return {
    ...result,
    content: [...(result.content ?? []), { type: "text", text: JSON.stringify(structured) }],
  };
}

function isPlainEnvelope(meta: Readonly<Record<string, unknown>> | undefined): boolean {
  if (meta === undefined) return false;
  for (const key of Object.keys(meta)) if (!ENVELOPE_KEYS.has(key)) return false;
  const capabilities = meta[CLIENT_CAPABILITIES_META_KEY];
  if (!isPlainObject(capabilities) || Object.keys(capabilities).length > 0) return false;
  const info = meta[CLIENT_INFO_META_KEY];
  if (info === undefined) return true;
  if (!isPlainObject(info) || typeof info.name !== "string" || typeof info.version !== "string") return false;
  return Object.entries(info).every(([key, value]) => CLIENT_INFO_KEYS.has(key) && typeof value === "string");
}

function isPlainObject(value: unknown): value is Record<string, unknown> {
  return typeof value === "object" && value !== null && !Array.isArray(value);
}
