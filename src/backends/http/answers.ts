/**
 * An HTTP answer as a tool result: the status line and the headers worth showing a model, then the
 * body as text (and as structured content when it is JSON) or, when it is binary, as base64 in the
 * block its media type calls for. Bodies are read only up to the backend's limit.
 */
import { STATUS_CODES } from "node:http";
import type { Readable } from "node:stream";
import type { CallToolResult } from "../../core/types.ts";
import { binaryBlock, isUtf8Text } from "../content.ts";
import type { HttpMethod } from "./config.ts";

export type ResponseHeaders = Record<string, string | string[] | undefined>;

export interface Answer {
  readonly status: number;
  readonly url: URL;
  readonly method: HttpMethod;
  readonly headers: ResponseHeaders;
  readonly body: Buffer;
  readonly redirects: number;
}

/** Response headers worth showing a model; others (set-cookie…) stay out of results. */
const SHOWN_HEADERS = ["content-type", "location", "retry-after", "etag", "last-modified", "link"];

const TEXT_TYPES =
  /^(text\/|application\/(json|xml|javascript|ecmascript|x-www-form-urlencoded|graphql|yaml|x-yaml|x-ndjson|problem\+json|problem\+xml)\b)|[+](json|xml)\b/i;
const JSON_TYPES = /^application\/(json|problem\+json)\b|[+]json\b/i;

export function headerValue(value: string | string[] | undefined): string | undefined {
  return Array.isArray(value) ? value.join(", ") : value;
}

/** "HTTP 404 Not Found". */
export function statusText(status: number): string {
  return `HTTP ${status} ${STATUS_CODES[status] ?? ""}`.trimEnd();
}

function decodeText(body: Buffer, contentType: string | undefined): string {
  const charset = /charset=["']?([^;"'\s]+)/i.exec(contentType ?? "")?.[1] ?? "utf-8";
  try {
    return new TextDecoder(charset).decode(body);
  } catch {
    return new TextDecoder("utf-8").decode(body);
  }
}

export type Body = AsyncIterable<Buffer> & Pick<Readable, "destroy" | "on">;

/** Stops reading a body and closes its connection; undici reports that as an abort nobody needs to hear. */
export function discard(body: Body): void {
  body.on("error", () => undefined);
  body.destroy();
}

/** Reads a body up to `limit` bytes; past it the read is aborted and undefined returned. */
export async function readLimited(body: Body, limit: number): Promise<Buffer | undefined> {
  const chunks: Buffer[] = [];
  let size = 0;
  for await (const chunk of body) {
    size += chunk.length;
    if (size > limit) {
      discard(body);
      return undefined;
    }
    chunks.push(chunk);
  }
  return Buffer.concat(chunks);
}

/** The answer as the caller's result; with `errorOnStatus`, a status outside 2xx makes it isError. */
export function answerResult(answer: Answer, errorOnStatus: boolean): CallToolResult {
  const { status, url, method, headers, body } = answer;
  const contentType = headerValue(headers["content-type"]);
  const lines = [
    statusText(status) +
      ` (${method} ${url.href}${answer.redirects > 0 ? `, after ${answer.redirects} redirect(s)` : ""})`,
  ];
  const shown: Record<string, string> = {};
  for (const name of SHOWN_HEADERS) {
    const value = headerValue(headers[name]);
    if (value !== undefined) {
      shown[name] = value;
      lines.push(`${name}: ${value}`);
    }
  }
  const isError = errorOnStatus && (status < 200 || status > 299);
  const structured = { status, url: url.href, headers: shown };
  const textual = contentType ? TEXT_TYPES.test(contentType) : isUtf8Text(body);
  if (body.length === 0 || textual) {
    const text = decodeText(body, contentType);
    const result: CallToolResult = {
      content: [{ type: "text", text: `${lines.join("\n")}\n\n${text || "(empty body)"}` }],
      ...(isError ? { isError } : {}),
    };
    if (text && (contentType === undefined || JSON_TYPES.test(contentType))) {
      try {
        result.structuredContent = { ...structured, body: JSON.parse(text) as unknown };
      } catch {
        // Not JSON after all: the text is the answer.
      }
    }
    return result;
  }
  const mimeType =
    (contentType ?? "application/octet-stream").split(";")[0]?.trim() ?? "application/octet-stream";
  const head = { type: "text" as const, text: `${lines.join("\n")}\n\n(binary body, ${body.length} bytes)` };
  return {
    content: [head, binaryBlock(body.toString("base64"), mimeType, url.href)],
    ...(isError ? { isError } : {}),
  };
}
