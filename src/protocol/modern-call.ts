/**
 * Plain 2026-07-28 `tools/call` requests, answered without the SDK's request pipeline by the plain
 * paths of HTTP (server/http/modern-fast-path.ts) and stdio (server/stdio/fast-path.ts). A request is
 * plain when it needs nothing else from the SDK: a `tools/call` with only `name`, `arguments` and the
 * `_meta` envelope of this revision (no progress token, no log level, no task, no answers to earlier
 * questions) from a client that declares no capabilities, so that nothing can be asked of it and no
 * input round can start. Anything else goes to the SDK, which answers it as it always has.
 *
 * The answer is encoded as the SDK encodes a 2026-07-28 `tools/call` result; the path-equivalence suite
 * proves that the bytes are the same on every path.
 */
import {
  CLIENT_CAPABILITIES_META_KEY,
  CLIENT_INFO_META_KEY,
  PROTOCOL_VERSION_META_KEY,
  SERVER_INFO_META_KEY,
} from "@modelcontextprotocol/server";
import type { CallerChannel, CallToolResult, Principal } from "../core/types.ts";
import type { Gateway } from "../gateway/gateway.ts";
import { VERSION } from "../version.ts";
import { isPlainObject, plainToolCall } from "./in-flight.ts";
import { CapabilityRefusals } from "./refusals.ts";
import { answerToolCall, responseMessage, type ToolCallRequest } from "./tool-call.ts";

/** The revision the plain paths serve; a newer one goes to the SDK until they are taught it. */
export const MODERN_REVISION = "2026-07-28";

/** The `_meta` keys a plain request may carry: the envelope, and nothing that changes how it is served. */
const ENVELOPE_KEYS: ReadonlySet<string> = new Set([
  PROTOCOL_VERSION_META_KEY,
  CLIENT_INFO_META_KEY,
  CLIENT_CAPABILITIES_META_KEY,
]);
const CLIENT_INFO_KEYS: ReadonlySet<string> = new Set(["name", "version", "title"]);

/** The JSON-RPC error the 2026-07-28 revision answers in place of -32002 (resource not found). */
const RESOURCE_NOT_FOUND = -32002;
const INVALID_PARAMS = -32602;
/** Errors are HTTP 200 in band, except a client capability the request needs (as the SDK answers). */
const MISSING_CAPABILITY = -32021;

/** The request, if `message` is a plain 2026-07-28 `tools/call` (see the module comment). */
export function modernPlainCall(message: Record<string, unknown>): ToolCallRequest | undefined {
  if (message.jsonrpc !== "2.0") return undefined;
  const request = plainToolCall(message);
  return request && isPlainEnvelope(request.meta) ? request : undefined;
}

/** Where a plain call came from. */
export interface ModernCallSite {
  readonly principal: Principal;
  readonly transport: "stdio" | "http";
  readonly profile: string | undefined;
  /** The connection's session (stdio); over HTTP a 2026-07-28 client has none. */
  readonly session: string | undefined;
  readonly signal: AbortSignal;
  readonly headerMeta?: Readonly<Record<string, unknown>> | undefined;
  /** Aborts the call: a question the client cannot answer ends it. */
  readonly abort: (reason: unknown) => void;
}

export interface ModernAnswer {
  /** The HTTP status the SDK would answer with. */
  readonly status: 200 | 400;
  readonly message: Record<string, unknown>;
}

/** Answers a plain call; undefined when the client cancelled it (no response is sent). */
export async function answerModernPlainCall(
  gateway: Gateway,
  request: ToolCallRequest,
  site: ModernCallSite,
): Promise<ModernAnswer | undefined> {
  const refusals = new CapabilityRefusals(() => site.abort(refusals.error));
  let answered = false;
  let outcome: Awaited<ReturnType<typeof answerToolCall>>;
  try {
    outcome = await answerToolCall(gateway, request, {
      principal: site.principal,
      transport: site.transport,
      profile: site.profile,
      // Without a connection, the principal stands for the client's session (as on the SDK path).
      session: site.session ?? `principal:${site.principal.id}`,
      signal: site.signal,
      headerMeta: site.headerMeta,
      logLevel: null,
      client: refusingChannel(refusals, () => answered),
      project: appendTextForNonObject,
    });
  } finally {
    answered = true;
  }
  const refused = refusals.error;
  if (refused) {
    const error = { code: refused.code, message: refused.message, data: refused.data };
    return { status: 400, message: responseMessage(request.id, { kind: "error", error }) };
  }
  if (outcome.kind === "cancelled") return undefined;
  if (outcome.kind === "result") {
    const result = encodeResult(outcome.result, gateway.config.gateway.name);
    return { status: 200, message: responseMessage(request.id, { kind: "result", result }) };
  }
  const code = outcome.error.code === RESOURCE_NOT_FOUND ? INVALID_PARAMS : outcome.error.code;
  return {
    status: code === MISSING_CAPABILITY ? 400 : 200,
    message: responseMessage(request.id, { kind: "error", error: { ...outcome.error, code } }),
  };
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
  if (meta?.[PROTOCOL_VERSION_META_KEY] !== MODERN_REVISION) return false;
  for (const key of Object.keys(meta)) if (!ENVELOPE_KEYS.has(key)) return false;
  const capabilities = meta[CLIENT_CAPABILITIES_META_KEY];
  if (!isPlainObject(capabilities) || Object.keys(capabilities).length > 0) return false;
  const info = meta[CLIENT_INFO_META_KEY];
  if (info === undefined) return true;
  if (!isPlainObject(info) || typeof info.name !== "string" || typeof info.version !== "string") return false;
  return Object.entries(info).every(([key, value]) => CLIENT_INFO_KEYS.has(key) && typeof value === "string");
}
