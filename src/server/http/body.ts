/**
 * Reading a POST body and taking a first look at it: its size bound, its JSON-RPC shape, and what
 * the routing needs to know (an initialize, a listen request, the id of the first request).
 */
import type { IncomingMessage } from "node:http";
import type { AuthInfo } from "@modelcontextprotocol/server";
import { isInitializeRequest, PROTOCOL_VERSION_META_KEY } from "@modelcontextprotocol/server";
import { JSON_RPC } from "../../core/errors.ts";
import { type ShapeProblem, shapeProblem } from "../../protocol/message-shape.ts";

/**
 * The request for the SDK's Node adapter, with its body as the text already read. Given the parsed
 * body instead, the adapter serialises it again with JSON.stringify, which recurses: a small but
 * deeply nested request (a few thousand levels) would fail there with a bare 500 before the argument
 * limits that exist to refuse it could answer.
 */
export function withRawBody(req: IncomingMessage, text: string | undefined) {
  const auth = (req as IncomingMessage & { auth?: AuthInfo }).auth;
  return {
    method: req.method,
    url: req.url,
    headers: req.headers,
    ...(auth ? { auth } : {}),
    async *[Symbol.asyncIterator]() {
      if (text) yield Buffer.from(text, "utf8");
    },
  };
}

export type BodyRead =
  | { kind: "ok"; text: string }
  | { kind: "too_large"; drained: boolean }
  | { kind: "aborted" };

/** Past this many bytes of an oversized upload, the connection is cut rather than drained. */
const MAX_DISCARD_BYTES = 64 * 1024 * 1024;

/**
 * Reads a request body, keeping nothing past `limit` bytes. An oversized body is read to its end and
 * thrown away (up to a bound) before the 413 goes out: a client still uploading would otherwise see a
 * broken pipe instead of the answer.
 */
export function readBody(req: IncomingMessage, limit: number): Promise<BodyRead> {
  const declared = Number(req.headers["content-length"]);
  const tooLargeUpFront = Number.isFinite(declared) && declared > limit;
  return new Promise((resolve) => {
    const chunks: Buffer[] = [];
    let size = 0;
    let tooLarge = tooLargeUpFront;
    req.on("data", (chunk: Buffer) => {
      size += chunk.length;
      if (!tooLarge && size > limit) {
        tooLarge = true;
        chunks.length = 0;
      }
      if (tooLarge) {
        if (size > MAX_DISCARD_BYTES) {
          req.pause();
          resolve({ kind: "too_large", drained: false });
        }
        return;
      }
      chunks.push(chunk);
    });
    req.on("end", () => {
      resolve(
        tooLarge
          ? { kind: "too_large", drained: true }
          : { kind: "ok", text: Buffer.concat(chunks).toString("utf8") },
      );
    });
    req.on("error", () => resolve({ kind: "aborted" }));
  });
}

/** What is wrong with a POST body: one message, or a batch of them (2025-03-26 clients batch). */
export function bodyProblem(body: unknown): ShapeProblem | undefined {
  if (!Array.isArray(body)) return shapeProblem(body);
  if (body.length === 0) {
    return { id: null, code: JSON_RPC.INVALID_REQUEST, message: "Invalid request: the batch is empty." };
  }
  for (const [index, message] of body.entries()) {
    const problem = shapeProblem(message);
    if (problem) return { ...problem, id: null, message: `${problem.message} (batch element ${index})` };
  }
  return undefined;
}

/** The `subscriptions/listen` request with its resource subscriptions narrowed to `uris`. */
export function withListenedUris(body: unknown, uris: readonly string[]): unknown {
  const request = body as { params: { notifications: Record<string, unknown> } };
  return {
    ...request,
    params: {
      ...request.params,
      notifications: { ...request.params.notifications, resourceSubscriptions: [...uris] },
    },
  };
}

export function isListen(body: unknown): boolean {
  return (
    typeof body === "object" &&
    body !== null &&
    (body as { method?: unknown }).method === "subscriptions/listen"
  );
}

/** The resource URIs a `subscriptions/listen` request asks updates for. */
export function listenedUris(body: unknown): readonly string[] {
  if (!isListen(body)) return [];
  const request = body as { params?: { notifications?: { resourceSubscriptions?: unknown } } };
  const uris = request.params?.notifications?.resourceSubscriptions;
  return Array.isArray(uris) ? uris.filter((uri): uri is string => typeof uri === "string") : [];
}

/** The id of the first JSON-RPC request in a message or batch (not a notification or a response). */
export function requestIdOf(body: unknown): string | number | null | undefined {
  for (const message of Array.isArray(body) ? body : [body]) {
    if (typeof message !== "object" || message === null) continue;
    const { id, method } = message as { id?: unknown; method?: unknown };
    if (typeof method === "string" && (typeof id === "string" || typeof id === "number")) return id;
  }
  return undefined;
}

export function containsInitialize(body: unknown): boolean {
  return Array.isArray(body) ? body.some(isInitialize) : isInitialize(body);
}

/** The SDK's check parses the message with zod: on every request of a busy endpoint, only when it could be one. */
function isInitialize(message: unknown): boolean {
  return (message as { method?: unknown } | null)?.method === "initialize" && isInitializeRequest(message);
}

/** Whether a POST says its body is JSON (`application/json`, any parameters, any case). */
export function isJsonContentType(req: IncomingMessage): boolean {
  const type = req.headers["content-type"];
  return typeof type === "string" && type.split(";", 1)[0]?.trim().toLowerCase() === "application/json";
}

/** A single 2026-07-28 `tools/call` request (its `_meta` names a protocol version): its tool and arguments. */
export function modernToolCall(body: unknown): { name: string; arguments: unknown } | undefined {
  if (typeof body !== "object" || body === null || Array.isArray(body)) return undefined;
  const { method, params } = body as { method?: unknown; params?: Record<string, unknown> };
  if (method !== "tools/call" || typeof params?.name !== "string") return undefined;
  const meta = params._meta as Record<string, unknown> | undefined;
  if (typeof meta?.[PROTOCOL_VERSION_META_KEY] !== "string") return undefined;
  return { name: params.name, arguments: params.arguments };
}
