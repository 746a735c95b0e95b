/**
 * The MCP client side of the e2e tests: an SDK v1 client connected over Streamable HTTP, the shape of
 * the tool results the tests read, and raw JSON-RPC POSTs for what the SDK would not send or hides.
 * Shared so that every suite talks to a gateway the same way.
 */
import assert from "node:assert/strict";
import { Client } from "@modelcontextprotocol/sdk/client/index.js";
import { StreamableHTTPClientTransport } from "@modelcontextprotocol/sdk/client/streamableHttp.js";

/** A tools/call result as the tests read it (the SDK's own type is wider than they need). */
export type ToolResult = {
  content: { type: string; text?: string }[];
  structuredContent?: Record<string, unknown>;
  isError?: boolean;
  _meta?: Record<string, unknown>;
};

/** Every text block of a result, one per line. */
export const textOf = (result: ToolResult) => result.content.map((c) => c.text ?? "").join("\n");

/**
 * The first content block's text, as a string ("undefined" when there is none): for a result straight
 * from `callTool`, whose type the tests do not narrow.
 */
export const firstTextOf = (result: unknown) => String((result as ToolResult).content[0]?.text);

export interface HttpClientOptions {
  /** The client name sent in `initialize` (tells the suites' clients apart in gateway logs). */
  readonly name: string;
  /** Sent with every request: credentials, a traceparent… */
  readonly headers?: Record<string, string>;
}

/** Connects an SDK v1 client to a gateway's Streamable HTTP endpoint. The caller closes it. */
export async function connectHttpClient(url: string, options: HttpClientOptions): Promise<Client> {
  const client = new Client({ name: options.name, version: "1" });
  const transport = new StreamableHTTPClientTransport(
    new URL(url),
    options.headers === undefined ? undefined : { requestInit: { headers: options.headers } },
  );
  await client.connect(transport);
  return client;
}

/** What a Streamable HTTP client must accept. */
export const MCP_HEADERS = {
  "content-type": "application/json",
  accept: "application/json, text/event-stream",
};

/** An HTTP answer read whole, for tests that check what the SDK hides: status, headers, raw body. */
export interface RawAnswer {
  readonly status: number;
  readonly headers: Headers;
  readonly text: string;
}

/** POSTs a JSON-RPC body to an MCP endpoint without the SDK, so that a test can send anything. */
export async function postMcp(
  url: string,
  body: string,
  headers: Record<string, string> = {},
  timeoutMs = 10_000,
): Promise<RawAnswer> {
  const response = await fetch(url, {
    method: "POST",
    headers: { ...MCP_HEADERS, ...headers },
    body,
    signal: AbortSignal.timeout(timeoutMs),
  });
  return { status: response.status, headers: response.headers, text: await response.text() };
}

/** The JSON-RPC message of a plain JSON answer or of the first event of an SSE answer. */
export function jsonRpcMessage(answer: RawAnswer): {
  result?: Record<string, unknown>;
  error?: { code?: number; message: string };
} {
  const type = answer.headers.get("content-type") ?? "";
  if (type.startsWith("text/event-stream")) {
    // The first event with data: a resumable stream opens with a priming event whose data is empty.
    const data = answer.text.split("\n").find((line) => line.startsWith("data: ") && line.trim() !== "data:");
    assert.ok(data, `an SSE answer with a data line: ${answer.text}`);
    return JSON.parse(data.slice("data: ".length));
  }
  return JSON.parse(answer.text);
}

/**
 * Opens a 2026-07-28 `subscriptions/listen` stream that asks for list changes and for the log messages
 * at `level` and above that servers send outside any request; the caller reads (and aborts) it.
 */
export function listenForLogs(url: string, level: string, signal?: AbortSignal): Promise<Response> {
  return fetch(url, {
    method: "POST",
    ...(signal ? { signal } : {}),
    headers: {
      "content-type": "application/json",
      accept: "application/json, text/event-stream",
      "mcp-protocol-version": "2026-07-28",
      "mcp-method": "subscriptions/listen",
    },
    body: JSON.stringify({
      jsonrpc: "2.0",
      id: "logs-1",
      method: "subscriptions/listen",
      params: {
        notifications: { toolsListChanged: true },
        _meta: {
          "io.modelcontextprotocol/protocolVersion": "2026-07-28",
          "io.modelcontextprotocol/clientCapabilities": {},
          "io.modelcontextprotocol/logLevel": level,
        },
      },
    }),
  });
}
