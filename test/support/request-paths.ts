/**
 * Every way a request reaches the gateway, as raw JSON-RPC, so that tests can run one case over all of
 * them and compare what each answers byte for byte:
 *
 * - Streamable HTTP, a 2025-era session whose calls need no stream (the gateway's plain-JSON path);
 * - Streamable HTTP, a 2025-era session of a client that can be asked questions (the SDK's path);
 * - Streamable HTTP, 2026-07-28 stateless requests of a client that declares nothing (the gateway's
 *   plain path) and of one that can be asked questions (the SDK's path, with input rounds);
 * - stdio, a 2025-era session;
 * - stdio, 2026-07-28 requests, plain and through the SDK as over HTTP.
 *
 * A session collects the notifications that arrive for each request (on its response stream over HTTP,
 * before its response over stdio) and, where the era has one, those on the background channel.
 */
import assert from "node:assert/strict";
import { type ChildProcess, spawn } from "node:child_process";
import { createInterface } from "node:readline";
import { stdioGatewayCommand } from "./gateway-process.ts";

export type Id = string | number;

export interface JsonRpcMessage {
  readonly jsonrpc?: "2.0";
  readonly id?: Id | null;
  readonly method?: string;
  readonly params?: Record<string, unknown>;
  readonly result?: Record<string, unknown>;
  readonly error?: { code: number; message: string; data?: unknown };
}

export interface Exchange {
  /** The response to the request. */
  readonly response: JsonRpcMessage;
  /** Notifications sent about the request before its response, in order. */
  readonly notifications: readonly JsonRpcMessage[];
  /** The response exactly as it was written (one JSON text), for byte comparisons. */
  readonly raw: string;
  /** HTTP status, where there is one. */
  readonly status?: number;
}

export interface RequestOptions {
  /** Ask for progress (a progressToken in `_meta`). */
  readonly progress?: boolean;
  /** More `_meta` for the request. */
  readonly meta?: Record<string, unknown>;
  /** More HTTP headers (over HTTP only). */
  readonly headers?: Record<string, string>;
}

export interface PathSession {
  /** One request and what came back for it. */
  request(method: string, params?: Record<string, unknown>, options?: RequestOptions): Promise<Exchange>;
  /** Sends a request and says its id at once (to cancel it, say); `exchange` settles with its answer. */
  send(
    method: string,
    params?: Record<string, unknown>,
    options?: RequestOptions,
  ): { readonly id: Id; readonly exchange: Promise<Exchange> };
  /** A notification from the client (cancellation, say). */
  notify(method: string, params?: Record<string, unknown>): Promise<void>;
  /** Background notifications received so far (not tied to a request). */
  readonly background: readonly JsonRpcMessage[];
  /** Resolves with the first background notification (seen or future) that matches; fails at `timeoutMs`. */
  waitForBackground(match: (m: JsonRpcMessage) => boolean, timeoutMs?: number): Promise<JsonRpcMessage>;
  close(): Promise<void>;
}

export type Era = "2025" | "2026-07-28";

export interface RequestPath {
  readonly name: string;
  readonly transport: "http" | "stdio";
  readonly era: Era;
  open(): Promise<PathSession>;
}

export const LEGACY_VERSION = "2025-11-25";
export const MODERN_VERSION = "2026-07-28";
const CLIENT_INFO = { name: "request-paths", version: "1" };

/** The `_meta` envelope a 2026-07-28 request carries. */
function envelope(capabilities: Record<string, unknown> = {}): Record<string, unknown> {
  return {
    "io.modelcontextprotocol/protocolVersion": MODERN_VERSION,
    "io.modelcontextprotocol/clientInfo": CLIENT_INFO,
    "io.modelcontextprotocol/clientCapabilities": capabilities,
  };
}

/** Waiters on a growing list of messages. */
class Inbox {
  readonly messages: JsonRpcMessage[] = [];
  readonly #waiters = new Set<{
    match: (m: JsonRpcMessage) => boolean;
    resolve: (m: JsonRpcMessage) => void;
  }>();

  push(message: JsonRpcMessage): void {
    this.messages.push(message);
    for (const waiter of this.#waiters) {
      if (waiter.match(message)) {
        this.#waiters.delete(waiter);
        waiter.resolve(message);
      }
    }
  }

  wait(match: (m: JsonRpcMessage) => boolean, timeoutMs: number, what: string): Promise<JsonRpcMessage> {
    const seen = this.messages.find(match);
    if (seen) return Promise.resolve(seen);
    return new Promise((resolve, reject) => {
      const waiter = {
        match,
        resolve: (m: JsonRpcMessage) => {
          clearTimeout(timer);
          resolve(m);
        },
      };
      const timer = setTimeout(() => {
        this.#waiters.delete(waiter);
        reject(
          new Error(
            `timed out after ${timeoutMs} ms waiting for ${what}; received: ${JSON.stringify(this.messages)}`,
          ),
        );
      }, timeoutMs);
      this.#waiters.add(waiter);
    });
  }
}

/** The JSON-RPC messages of an HTTP answer: one JSON body, or the data lines of an SSE stream. */
function messagesOf(contentType: string, text: string): { message: JsonRpcMessage; raw: string }[] {
  if (!contentType.startsWith("text/event-stream")) {
    return text.trim() === "" ? [] : [{ message: JSON.parse(text) as JsonRpcMessage, raw: text }];
  }
  const out: { message: JsonRpcMessage; raw: string }[] = [];
  for (const event of text.split(/\r?\n\r?\n/)) {
    const data = event
      .split(/\r?\n/)
      .filter((line) => line.startsWith("data:"))
      .map((line) => line.slice(5).replace(/^ /, ""))
      .join("\n");
    if (data.trim() !== "") out.push({ message: JSON.parse(data) as JsonRpcMessage, raw: data });
  }
  return out;
}

function splitAnswer(id: Id, parsed: { message: JsonRpcMessage; raw: string }[], status: number): Exchange {
  const index = parsed.findIndex((p) => p.message.id === id && p.message.method === undefined);
  assert.ok(
    index >= 0,
    `no response with id ${id} (HTTP ${status}): ${JSON.stringify(parsed.map((p) => p.raw))}`,
  );
  const answer = parsed[index] as { message: JsonRpcMessage; raw: string };
  return {
    response: answer.message,
    raw: answer.raw,
    status,
    notifications: parsed
      .slice(0, index)
      .map((p) => p.message)
      .filter((m) => m.method !== undefined),
  };
}

const HTTP_HEADERS = { "content-type": "application/json", accept: "application/json, text/event-stream" };

/** A 2025-era Streamable HTTP session; `capabilities` decide which path its calls take. */
function httpSession(
  name: string,
  url: () => string,
  capabilities: Record<string, unknown>,
  headers: Record<string, string>,
): RequestPath {
  return {
    name,
    transport: "http",
    era: "2025",
    async open() {
      let nextId = 1;
      const inbox = new Inbox();
      const post = async (body: unknown, extra: Record<string, string> = {}) => {
        const response = await fetch(url(), {
          method: "POST",
          headers: { ...HTTP_HEADERS, ...headers, ...extra },
          body: JSON.stringify(body),
          signal: AbortSignal.timeout(30_000),
        });
        return { response, text: await response.text() };
      };
      const init = await post({
        jsonrpc: "2.0",
        id: 0,
        method: "initialize",
        params: { protocolVersion: LEGACY_VERSION, capabilities, clientInfo: CLIENT_INFO },
      });
      const session = init.response.headers.get("mcp-session-id");
      assert.ok(session, `a session id (HTTP ${init.response.status}: ${init.text})`);
      const sessionHeaders = { "mcp-session-id": session, "mcp-protocol-version": LEGACY_VERSION };
      await post({ jsonrpc: "2.0", method: "notifications/initialized" }, sessionHeaders);
      // The background stream, for notifications not tied to a request.
      const stream = new AbortController();
      const opened = fetch(url(), {
        method: "GET",
        headers: { accept: "text/event-stream", ...headers, ...sessionHeaders },
        signal: stream.signal,
      }).then(async (response) => {
        if (!response.ok || !response.body) return;
        const decoder = new TextDecoder();
        let buffer = "";
        try {
          for await (const chunk of response.body) {
            buffer += decoder.decode(chunk as Uint8Array, { stream: true });
            let end = buffer.search(/\r?\n\r?\n/);
            while (end >= 0) {
              const event = buffer.slice(0, end);
              buffer = buffer.slice(end).replace(/^\r?\n\r?\n/, "");
              for (const { message } of messagesOf("text/event-stream", `${event}\n\n`)) inbox.push(message);
              end = buffer.search(/\r?\n\r?\n/);
            }
          }
        } catch {
          // Closed by close().
        }
      });
      opened.catch(() => undefined);
      const send = (method: string, params: Record<string, unknown> = {}, options: RequestOptions = {}) => {
        const id = nextId++;
        const meta = { ...(options.progress ? { progressToken: `p${id}` } : {}), ...options.meta };
        const exchange = post(
          {
            jsonrpc: "2.0",
            id,
            method,
            params: Object.keys(meta).length > 0 ? { ...params, _meta: meta } : params,
          },
          { ...sessionHeaders, ...options.headers },
        ).then((answer) =>
          splitAnswer(
            id,
            messagesOf(answer.response.headers.get("content-type") ?? "", answer.text),
            answer.response.status,
          ),
        );
        return { id, exchange };
      };
      return {
        send,
        request: (method, params, options) => send(method, params, options).exchange,
        async notify(method, params = {}) {
          await post({ jsonrpc: "2.0", method, params }, sessionHeaders);
        },
        get background() {
          return inbox.messages;
        },
        waitForBackground: (match, timeoutMs = 10_000) =>
          inbox.wait(match, timeoutMs, `a background notification on ${name}`),
        async close() {
          stream.abort();
          await fetch(url(), { method: "DELETE", headers: { ...headers, ...sessionHeaders } }).catch(
            () => undefined,
          );
        },
      };
    },
  };
}

/** 2026-07-28 requests over Streamable HTTP: each one stands alone. */
function httpModern(
  name: string,
  url: () => string,
  capabilities: Record<string, unknown>,
  headers: Record<string, string>,
): RequestPath {
  return {
    name,
    transport: "http",
    era: "2026-07-28",
    async open() {
      let nextId = 1;
      const inbox = new Inbox();
      const send = (method: string, params: Record<string, unknown> = {}, options: RequestOptions = {}) => {
        const id = nextId++;
        const meta = {
          ...envelope(capabilities),
          ...(options.progress ? { progressToken: `p${id}` } : {}),
          ...options.meta,
        };
        const exchange = (async () => {
          const response = await fetch(url(), {
            method: "POST",
            headers: {
              ...HTTP_HEADERS,
              "mcp-protocol-version": MODERN_VERSION,
              "mcp-method": method,
              ...(typeof params.name === "string" ? { "mcp-name": params.name } : {}),
              ...headers,
              ...options.headers,
            },
            body: JSON.stringify({ jsonrpc: "2.0", id, method, params: { ...params, _meta: meta } }),
            signal: AbortSignal.timeout(30_000),
          });
          const text = await response.text();
          return splitAnswer(
            id,
            messagesOf(response.headers.get("content-type") ?? "", text),
            response.status,
          );
        })();
        return { id, exchange };
      };
      return {
        send,
        request: (method, params, options) => send(method, params, options).exchange,
        async notify() {
          // A 2026-07-28 client has no session to notify; a cancelled request closes its stream instead.
        },
        get background() {
          return inbox.messages;
        },
        waitForBackground: (match, timeoutMs = 10_000) =>
          inbox.wait(match, timeoutMs, `a background notification on ${name}`),
        async close() {},
      };
    },
  };
}

/** A gateway over stdio, its own child process; `era` decides how it is spoken to. */
function stdio(
  name: string,
  configPath: string,
  era: Era,
  { env = {}, stdioArgs = [] }: PathOptions,
  /** What a 2026-07-28 client declares in each request's envelope. */
  capabilities: Record<string, unknown> = {},
): RequestPath {
  return {
    name,
    transport: "stdio",
    era,
    async open() {
      const command = stdioGatewayCommand(configPath);
      const child: ChildProcess = spawn(command.command, [...command.args, ...stdioArgs], {
        cwd: command.cwd,
        stdio: ["pipe", "pipe", "ignore"],
        env: { ...process.env, ...env },
      });
      // Over stdio every notification shares the one pipe: each is kept as "background" too.
      const inbox = new Inbox();
      const lines = new Inbox();
      createInterface({ input: child.stdout as NodeJS.ReadableStream }).on("line", (line) => {
        const parsed = JSON.parse(line) as JsonRpcMessage;
        lines.push({ ...parsed, raw: line } as JsonRpcMessage);
        if (parsed.method !== undefined) inbox.push(parsed);
      });
      const write = (message: unknown) => child.stdin?.write(`${JSON.stringify(message)}\n`);
      let nextId = 1;
      let seen = 0;
      /** Everything since the last exchange that is not a response: notifications and server requests. */
      const take = async (id: Id): Promise<Exchange> => {
        const response = (await lines.wait(
          (m) => m.id === id && m.method === undefined,
          30_000,
          `the response to request ${id} on ${name}`,
        )) as JsonRpcMessage & { raw: string };
        const index = lines.messages.indexOf(response);
        const before = lines.messages.slice(seen, index).filter((m) => m.method !== undefined);
        seen = Math.max(seen, index + 1);
        const { raw, ...clean } = response;
        return {
          response: clean,
          raw,
          notifications: before.map((m) => {
            const { raw: _raw, ...rest } = m as JsonRpcMessage & { raw: string };
            return rest;
          }),
        };
      };
      if (era === "2025") {
        write({
          jsonrpc: "2.0",
          id: 0,
          method: "initialize",
          params: { protocolVersion: LEGACY_VERSION, capabilities: {}, clientInfo: CLIENT_INFO },
        });
        await take(0);
        write({ jsonrpc: "2.0", method: "notifications/initialized" });
      }
      lines.messages.length = 0;
      seen = 0;
      const exited = new Promise<void>((resolve) => child.once("exit", () => resolve()));
      const send = (method: string, params: Record<string, unknown> = {}, options: RequestOptions = {}) => {
        const id = nextId++;
        const meta = {
          ...(era === "2026-07-28" ? envelope(capabilities) : {}),
          ...(options.progress ? { progressToken: `p${id}` } : {}),
          ...options.meta,
        };
        write({
          jsonrpc: "2.0",
          id,
          method,
          params: Object.keys(meta).length > 0 ? { ...params, _meta: meta } : params,
        });
        return { id, exchange: take(id) };
      };
      return {
        send,
        request: (method, params, options) => send(method, params, options).exchange,
        async notify(method, params = {}) {
          write({ jsonrpc: "2.0", method, params });
        },
        get background() {
          return inbox.messages;
        },
        waitForBackground: (match, timeoutMs = 10_000) =>
          inbox.wait(match, timeoutMs, `a notification on ${name}`),
        async close() {
          child.stdin?.end();
          const timer = setTimeout(() => child.kill("SIGKILL"), 10_000);
          await exited;
          clearTimeout(timer);
        },
      };
    },
  };
}

export interface PathOptions {
  /** Credentials and other headers for every HTTP request. */
  readonly headers?: Record<string, string>;
  /** Environment for stdio gateways (secrets the config reads). */
  readonly env?: Record<string, string>;
  /** More arguments for stdio gateways' `serve --stdio` (`--profile dev`, say). */
  readonly stdioArgs?: readonly string[];
}

/** Every request path of one gateway config: `httpUrl` is the running HTTP gateway's MCP endpoint. */
export function requestPaths(
  configPath: string,
  httpUrl: () => string,
  options: PathOptions = {},
): RequestPath[] {
  const headers = options.headers ?? {};
  return [
    httpSession("HTTP 2025 session, plain-JSON path", httpUrl, {}, headers),
    // A client that can be asked for elicitation keeps its calls on the SDK's streaming path.
    httpSession("HTTP 2025 session, SDK path", httpUrl, { elicitation: {} }, headers),
    httpModern("HTTP 2026-07-28, plain path", httpUrl, {}, headers),
    // A client that can be asked for elicitation has its calls served by the SDK (input rounds).
    httpModern("HTTP 2026-07-28, SDK path", httpUrl, { elicitation: {} }, headers),
    stdio("stdio 2025 session", configPath, "2025", options),
    stdio("stdio 2026-07-28, plain path", configPath, "2026-07-28", options),
    stdio("stdio 2026-07-28, SDK path", configPath, "2026-07-28", options, { elicitation: {} }),
  ];
}

/** Only the HTTP paths, for tests about HTTP principals and sessions. */
export function httpPaths(httpUrl: () => string, headers: Record<string, string> = {}): RequestPath[] {
  return [
    httpSession("HTTP 2025 session, plain-JSON path", httpUrl, {}, headers),
    httpSession("HTTP 2025 session, SDK path", httpUrl, { elicitation: {} }, headers),
    httpModern("HTTP 2026-07-28, plain path", httpUrl, {}, headers),
    httpModern("HTTP 2026-07-28, SDK path", httpUrl, { elicitation: {} }, headers),
  ];
}
