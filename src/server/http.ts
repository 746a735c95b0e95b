/**
 * The HTTP face of the gateway: the MCP endpoint (Streamable HTTP, both protocol eras) and the probe
 * endpoints, on one `node:http` server.
 *
 * Era routing:
 * - 2026-07-28 requests are stateless: each is served by `createMcpHandler` on a fresh per-request
 *   instance, so any replica can answer any request.
 * - 2025-era clients open a session with `initialize`; the session is a `NodeStreamableHTTPServerTransport`
 *   kept in memory and found again by its `Mcp-Session-Id` header. Sessions live on the replica that
 *   created them (run replicas behind sticky sessions for 2025-era clients).
 *
 * Guards before anything is parsed: Host and Origin checks against DNS rebinding, a body limit, and a
 * JSON-RPC parse error for malformed JSON.
 */
import { randomUUID } from "node:crypto";
import {
  createServer,
  type Server as HttpServer,
  type IncomingMessage,
  type ServerResponse,
} from "node:http";
import type { AddressInfo } from "node:net";
import { NodeStreamableHTTPServerTransport, toNodeHandler } from "@modelcontextprotocol/node";
import {
  type AuthInfo,
  createMcpHandler,
  isInitializeRequest,
  localhostAllowedHostnames,
  type Server,
  type ServerContext,
  validateHostHeader,
  validateOriginHeader,
} from "@modelcontextprotocol/server";
import { describeError, JSON_RPC } from "../core/errors.ts";
import { ANONYMOUS, type Principal } from "../core/types.ts";
import type { Gateway } from "../gateway/gateway.ts";
import {
  createAuthenticator,
  httpAuthEnabled,
  protectedResourceMetadata,
  RESOURCE_METADATA_PATH,
  resourceMetadataUrl,
} from "../security/auth.ts";
import { SIGNATURE_HEADERS, SIGNATURE_META_KEY, signatureFromHeaders } from "../security/signing.ts";
import { HttpToolCalls } from "./http-tool-call.ts";
import { createServerFactory, LiveServers } from "./mcp-server.ts";
import { type ShapeProblem, shapeProblem } from "./message-shape.ts";
import { forwardNotifications } from "./notifications.ts";
import { type ProbeHandler, probeRoutes } from "./probes.ts";
import { oneLine } from "./stdio-transport.ts";

/** The longest shutdown waits for responses still being written after their calls finished. */
const ANSWER_FLUSH_MS = 2_000;

export interface HttpOptions {
  readonly host: string;
  readonly port: number;
  readonly path: string;
  readonly maxBodyBytes: number;
  readonly allowedHosts: readonly string[];
  readonly allowedOrigins: readonly string[];
  readonly sessionIdleTimeoutMs: number;
}

export interface HttpServing {
  /** The MCP endpoint, e.g. http://127.0.0.1:8931/mcp. */
  readonly url: string;
  readonly port: number;
  /** Stops accepting connections and closes sessions; call after the gateway has drained. */
  close(): Promise<void>;
  /** Stops accepting new connections, keeping in-flight requests running. */
  stopAccepting(): void;
}

interface Session {
  readonly transport: NodeStreamableHTTPServerTransport;
  readonly server: Server;
  /** Who opened it: only this principal may use it (post to it, listen on it, end it). */
  readonly principal: Principal;
  lastSeen: number;
}

export async function serveGatewayOnHttp(gateway: Gateway, options: HttpOptions): Promise<HttpServing> {
  const log = gateway.logger.child({ component: "http" });
  const factory = createServerFactory(gateway, {
    principalOf: principalOfRequest,
    metaOf: (ctx) => factsOf(ctx)?.metaFromHeaders,
    transport: "http",
  });
  const live = new LiveServers();
  const sessions = new Map<string, Session>();
  const toolCalls = new HttpToolCalls(gateway);
  const mcpHandler = createMcpHandler(factory, {
    legacy: "stateless",
    maxRequestBodySize: options.maxBodyBytes,
    onerror: (error) => log.debug({ err: describeError(error) }, "MCP request rejected"),
  });
  const modern = toNodeHandler(mcpHandler, {
    maxRequestBodySize: options.maxBodyBytes,
    onerror: (error) => log.error({ err: error }, "the MCP handler could not serve a request"),
  });
  const stopForwarding = forwardNotifications(gateway, live, [mcpHandler.notify]);
  const probes: Record<string, ProbeHandler> = probeRoutes(gateway);
  const authConfig = gateway.config.auth;
  const authenticator =
    authConfig && httpAuthEnabled(authConfig) ? createAuthenticator(authConfig) : undefined;
  /** This endpoint as clients reach it: the configured resource, else from the request's Host. */
  const resourceUrl = (req: IncomingMessage) =>
    authConfig?.resourceMetadata?.resource ?? `http://${req.headers.host ?? "localhost"}${options.path}`;
  const metadataPaths = new Set([RESOURCE_METADATA_PATH, `${RESOURCE_METADATA_PATH}${options.path}`]);

  /** Who is calling, or the answer that refuses the request. */
  const admit = async (req: IncomingMessage, res: ServerResponse): Promise<boolean> => {
    if (!authenticator) {
      attachFacts(req, { principal: ANONYMOUS, metaFromHeaders: metaFromHeaders(req) });
      return true;
    }
    const result = await authenticator.authenticate(req.headers, {
      resourceMetadataUrl: resourceMetadataUrl(resourceUrl(req)),
    });
    if (result.ok) {
      attachFacts(req, { principal: result.principal, metaFromHeaders: metaFromHeaders(req) });
      return true;
    }
    log.info({ status: result.status, error: result.error }, `request refused: ${result.description}`);
    res.shouldKeepAlive = req.method !== "POST" || req.readableEnded;
    res
      .writeHead(result.status, {
        "content-type": "application/json",
        "www-authenticate": result.wwwAuthenticate,
        "cache-control": "no-store",
      })
      .end(JSON.stringify({ error: result.error, error_description: result.description }));
    return false;
  };

  const allowedHosts = [...localhostAllowedHostnames(), ...options.allowedHosts];
  const allowedOrigins = [...localhostAllowedHostnames(), ...options.allowedOrigins];
  const anyHost = options.allowedHosts.includes("*");
  const anyOrigin = options.allowedOrigins.includes("*");

  const openSession = async (req: IncomingMessage, res: ServerResponse, body: unknown) => {
    const principal = factsOfRequest(req)?.principal ?? ANONYMOUS;
    const server = factory({ era: "legacy" }, principal);
    const transport = new NodeStreamableHTTPServerTransport({
      sessionIdGenerator: () => randomUUID(),
      onsessioninitialized: (id) => {
        sessions.set(id, { transport, server, principal, lastSeen: Date.now() });
        log.debug({ session: id }, "session opened");
      },
      onsessionclosed: (id) => {
        sessions.delete(id);
        toolCalls.forget(id);
        log.debug({ session: id }, "session closed by the client");
      },
    });
    transport.onclose = () => {
      if (transport.sessionId) {
        sessions.delete(transport.sessionId);
        toolCalls.forget(transport.sessionId);
      }
    };
    await server.connect(transport);
    live.add(server);
    await transport.handleRequest(req, res, body);
    // The SDK refused the opening (a malformed initialize, say): no session exists to own these.
    if (transport.sessionId === undefined) {
      await transport.close().catch(() => undefined);
      await server.close().catch(() => undefined);
    }
  };

  const handleMcp = async (req: IncomingMessage, res: ServerResponse) => {
    let body: unknown;
    let text: string | undefined;
    if (req.method === "POST") {
      const read = await readBody(req, options.maxBodyBytes);
      if (read.kind === "aborted") {
        // The client hung up mid-upload, or node:http refused the body's framing: nobody to answer.
        log.debug("request body aborted by the client");
        res.destroy();
        return;
      }
      if (read.kind === "too_large") {
        if (!read.drained) res.shouldKeepAlive = false;
        return sendJsonRpcError(
          res,
          413,
          JSON_RPC.INVALID_REQUEST,
          `Request body is larger than the limit of ${options.maxBodyBytes} bytes (server.http.maxBodyBytes).`,
        );
      }
      text = read.text;
      try {
        body = JSON.parse(read.text);
      } catch (error) {
        return sendJsonRpcError(
          res,
          400,
          JSON_RPC.PARSE_ERROR,
          `Parse error: the body is not valid JSON (${oneLine(describeError(error))}).`,
        );
      }
    }
    if (req.method === "POST") {
      const problem = bodyProblem(body);
      // An invalid request is an HTTP 400; invalid params of a valid request are answered like any
      // other JSON-RPC error, with 200.
      if (problem) {
        const status = problem.code === JSON_RPC.INVALID_PARAMS ? 200 : 400;
        return sendJsonRpcError(res, status, problem.code, problem.message, problem.id);
      }
    }
    // Listen streams stay open until the client leaves; only answers are worth waiting for at shutdown.
    if (req.method === "POST" && !isListen(body)) trackAnswer(res);
    const sessionId = header(req, "mcp-session-id");
    if (sessionId !== undefined) {
      const session = sessions.get(sessionId);
      // Another principal's session is answered exactly as one that does not exist: holding its id
      // gives neither its traffic nor a way to end it or cancel its calls, nor a sign that it exists.
      if (!session || session.principal.id !== factsOfRequest(req)?.principal.id) {
        return sendJsonRpcError(
          res,
          404,
          -32001,
          `Session "${sessionId}" not found: it expired or the gateway restarted. Start a new session with initialize.`,
        );
      }
      session.lastSeen = Date.now();
      if (req.method === "POST") {
        const facts = factsOfRequest(req);
        if (toolCalls.cancel(sessionId, body)) {
          res.writeHead(202).end();
          return;
        }
        // Draining: what the session already asked is answered, anything new is refused, as it is
        // without a session; notifications and responses (cancellations, answers to the server's own
        // requests) still go through.
        const asked = requestIdOf(body);
        if (gateway.closing && asked !== undefined) {
          return sendJsonRpcError(
            res,
            503,
            JSON_RPC.INTERNAL_ERROR,
            "The gateway is shutting down; retry on another instance.",
            asked,
          );
        }
        if (facts && toolCalls.serve(sessionId, session.server, req, res, body, facts)) return;
      }
      return session.transport.handleRequest(req, res, body);
    }
    if (req.method === "POST" && containsInitialize(body)) return openSession(req, res, body);
    const listened = listenedUris(body);
    if (listened.length > 0) {
      const principal = factsOfRequest(req)?.principal ?? ANONYMOUS;
      const allowed = listened.filter((uri) => gateway.mayReadResource(principal, uri));
      // The SDK sends a stream every update of the URIs it names, whoever caused the backend to send
      // it: a URI this principal may not read is taken out of the request before the SDK sees it.
      if (allowed.length < listened.length) text = JSON.stringify(withListenedUris(body, allowed));
      if (allowed.length > 0) holdSubscriptions(allowed, res, principal);
    }
    return modern(withRawBody(req, text), res);
  };

  /**
   * POST exchanges still being answered. A call the gateway has finished (drain counts calls, not
   * responses) may still be writing its result; shutdown lets it, instead of closing the session
   * under it and leaving the client to time out.
   */
  const answering = new Set<Promise<void>>();
  const trackAnswer = (res: ServerResponse) => {
    const done = new Promise<void>((resolve) => res.once("close", resolve));
    answering.add(done);
    void done.then(() => answering.delete(done));
  };
  const answersWritten = async () => {
    if (answering.size === 0) return;
    let timer: NodeJS.Timeout | undefined;
    await Promise.race([
      Promise.allSettled(answering),
      new Promise((resolve) => {
        timer = setTimeout(resolve, ANSWER_FLUSH_MS);
      }),
    ]);
    clearTimeout(timer);
  };

  /**
   * 2026-07-28 clients subscribe to resources by naming them on a `subscriptions/listen` stream. The SDK
   * serves the stream and filters updates for it; the backends that own the URIs are subscribed for as
   * long as the stream stays open, so that they send the updates in the first place.
   */
  const holdSubscriptions = (uris: readonly string[], res: ServerResponse, principal: Principal) => {
    const holder = { principal };
    for (const uri of uris) {
      gateway
        .subscribe(uri, holder)
        .catch((error: unknown) =>
          log.debug({ uri, err: describeError(error) }, "a listen stream named a resource no server offers"),
        );
    }
    res.once("close", () => gateway.release(holder));
  };

  const httpServer: HttpServer = createServer((req, res) => {
    const started = gateway.closing;
    void (async () => {
      const repeated = repeatedHeader(req);
      if (repeated !== undefined) {
        log.warn(
          { header: repeated },
          "request refused: a header that must be single was sent more than once",
        );
        return sendJsonRpcError(
          res,
          400,
          JSON_RPC.INVALID_REQUEST,
          `The ${repeated} header was sent more than once, so which one counts is ambiguous (a proxy may read ` +
            "another than the gateway does). Send it once.",
        );
      }
      const hostCheck = anyHost ? { ok: true as const } : validateHostHeader(req.headers.host, allowedHosts);
      if (!hostCheck.ok) {
        log.warn({ host: req.headers.host }, "request refused: Host header not allowed");
        return sendJsonRpcError(
          res,
          403,
          JSON_RPC.INVALID_REQUEST,
          `Host "${req.headers.host ?? ""}" is not allowed (a guard against DNS rebinding). ` +
            "Add it to server.http.allowedHosts to accept it.",
        );
      }
      const origin = header(req, "origin");
      if (origin !== undefined && !anyOrigin) {
        const originCheck = validateOriginHeader(origin, allowedOrigins);
        if (!originCheck.ok) {
          log.warn({ origin }, "request refused: Origin not allowed");
          return sendJsonRpcError(
            res,
            403,
            JSON_RPC.INVALID_REQUEST,
            `Origin "${origin}" is not allowed (a guard against DNS rebinding). ` +
              "Add it to server.http.allowedOrigins to accept it.",
          );
        }
      }
      const path = (req.url ?? "/").split("?", 1)[0] ?? "/";
      if (path === options.path) {
        if (started && req.method === "POST" && header(req, "mcp-session-id") === undefined) {
          return sendJsonRpcError(
            res,
            503,
            JSON_RPC.INTERNAL_ERROR,
            "The gateway is shutting down; retry on another instance.",
          );
        }
        if (!(await admit(req, res))) return;
        return handleMcp(req, res);
      }
      if (authConfig && metadataPaths.has(path) && (req.method === "GET" || req.method === "HEAD")) {
        res
          .writeHead(200, { "content-type": "application/json", "cache-control": "max-age=300" })
          .end(JSON.stringify(protectedResourceMetadata(authConfig, resourceUrl(req))));
        return;
      }
      const probe = probes[path];
      if (probe) {
        if (req.method === "GET" || req.method === "HEAD") return probe(req, res);
        res
          .writeHead(405, { "content-type": "application/json", allow: "GET, HEAD" })
          .end(JSON.stringify({ error: `${req.method} is not allowed on ${path}; use GET.` }));
        return;
      }
      res
        .writeHead(404, { "content-type": "application/json" })
        .end(JSON.stringify({ error: `Not found: ${path}. The MCP endpoint is ${options.path}.` }));
    })().catch((error) => {
      log.error({ err: error }, "unexpected error while serving an HTTP request");
      if (!res.headersSent)
        sendJsonRpcError(res, 500, JSON_RPC.INTERNAL_ERROR, "Internal error; see the gateway log.");
      else res.destroy();
    });
  });
  httpServer.headersTimeout = 30_000;
  httpServer.requestTimeout = 0; // SSE streams and long tool calls are legitimate; idle sockets time out below.
  httpServer.keepAliveTimeout = 5_000;

  const sweep = setInterval(
    () => {
      const cutoff = Date.now() - options.sessionIdleTimeoutMs;
      for (const [id, session] of sessions) {
        if (session.lastSeen < cutoff) {
          sessions.delete(id);
          void session.transport.close().catch(() => undefined);
          log.debug({ session: id }, "idle session closed");
        }
      }
    },
    Math.min(60_000, Math.max(1_000, options.sessionIdleTimeoutMs / 4)),
  );
  sweep.unref();

  await new Promise<void>((resolve, reject) => {
    httpServer.once("error", reject);
    httpServer.listen(options.port, options.host, () => {
      httpServer.off("error", reject);
      resolve();
    });
  });
  const address = httpServer.address() as AddressInfo;
  const hostForUrl = address.family === "IPv6" ? `[${address.address}]` : address.address;
  const url = `http://${hostForUrl}:${address.port}${options.path}`;

  return {
    url,
    port: address.port,
    stopAccepting() {
      httpServer.close();
    },
    async close() {
      clearInterval(sweep);
      stopForwarding();
      httpServer.close();
      await answersWritten();
      await Promise.allSettled([...sessions.values()].map((s) => s.transport.close()));
      sessions.clear();
      await mcpHandler.close();
      httpServer.closeAllConnections();
    },
  };
}

/**
 * What the HTTP layer learned about a request before the MCP handlers run: who is calling (from
 * authentication) and the request's HTTP headers that stand in for `_meta` keys (trace context,
 * signature). It travels to the handlers as the SDK's pass-through `authInfo.extra`.
 */
interface RequestFacts {
  readonly principal: Principal;
  readonly metaFromHeaders: Readonly<Record<string, unknown>>;
}

const FACTS_KEY = "switchboard/request";

function attachFacts(req: IncomingMessage, facts: RequestFacts): void {
  (req as IncomingMessage & { auth?: AuthInfo }).auth = {
    token: "",
    clientId: facts.principal.id,
    scopes: [...facts.principal.roles],
    extra: { [FACTS_KEY]: facts },
  };
}

function factsOfRequest(req: IncomingMessage): RequestFacts | undefined {
  return (req as IncomingMessage & { auth?: AuthInfo }).auth?.extra?.[FACTS_KEY] as RequestFacts | undefined;
}

function factsOf(ctx: ServerContext): RequestFacts | undefined {
  return ctx.http?.authInfo?.extra?.[FACTS_KEY] as RequestFacts | undefined;
}

function principalOfRequest(ctx: ServerContext): Principal {
  return factsOf(ctx)?.principal ?? ANONYMOUS;
}

/**
 * HTTP headers that carry what `_meta` would: W3C trace context and a request signature. `_meta`
 * wins when both are sent.
 */
function metaFromHeaders(req: IncomingMessage): Record<string, unknown> {
  const meta: Record<string, unknown> = {};
  const signature = signatureFromHeaders(req.headers);
  if (signature !== undefined) meta[SIGNATURE_META_KEY] = signature;
  const traceparent = header(req, "traceparent");
  if (traceparent !== undefined) {
    meta.traceparent = traceparent;
    const tracestate = header(req, "tracestate");
    if (tracestate !== undefined) meta.tracestate = tracestate;
  }
  return meta;
}

export interface ProbeServing {
  /** e.g. http://127.0.0.1:9090 */
  readonly url: string;
  close(): Promise<void>;
}

/**
 * The probe and metrics endpoints alone, for a gateway that serves MCP over stdio only
 * (`--probe-port`): a sidecar-less way for Kubernetes and Prometheus to see it.
 */
export async function serveProbes(
  gateway: Gateway,
  where: { readonly host: string; readonly port: number },
): Promise<ProbeServing> {
  const probes = probeRoutes(gateway);
  const server = createServer((req, res) => {
    const path = (req.url ?? "/").split("?", 1)[0] ?? "/";
    const probe = probes[path];
    if (!probe) {
      res.writeHead(404, { "content-type": "application/json" }).end(
        JSON.stringify({
          error: `Not found: ${path}. This port serves ${Object.keys(probes).join(", ")}.`,
        }),
      );
      return;
    }
    if (req.method !== "GET" && req.method !== "HEAD") {
      res
        .writeHead(405, { "content-type": "application/json", allow: "GET, HEAD" })
        .end(JSON.stringify({ error: `${req.method} is not allowed on ${path}; use GET.` }));
      return;
    }
    Promise.resolve(probe(req, res)).catch((error: unknown) => {
      gateway.logger.error({ err: error }, "unexpected error while serving a probe");
      if (!res.headersSent) res.writeHead(500).end();
      else res.destroy();
    });
  });
  await new Promise<void>((resolve, reject) => {
    server.once("error", reject);
    server.listen(where.port, where.host, () => {
      server.off("error", reject);
      resolve();
    });
  });
  const address = server.address() as AddressInfo;
  const host = address.family === "IPv6" ? `[${address.address}]` : address.address;
  return {
    url: `http://${host}:${address.port}`,
    close: () =>
      new Promise<void>((resolve) => {
        server.closeAllConnections();
        server.close(() => resolve());
      }),
  };
}

/**
 * The request for the SDK's Node adapter, with its body as the text already read. Given the parsed
 * body instead, the adapter serialises it again with JSON.stringify, which recurses: a small but
 * deeply nested request (a few thousand levels) would fail there with a bare 500 before the argument
 * limits that exist to refuse it could answer.
 */
function withRawBody(req: IncomingMessage, text: string | undefined) {
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

type BodyRead = { kind: "ok"; text: string } | { kind: "too_large"; drained: boolean } | { kind: "aborted" };

/** Past this many bytes of an oversized upload, the connection is cut rather than drained. */
const MAX_DISCARD_BYTES = 64 * 1024 * 1024;

/**
 * Reads a request body, keeping nothing past `limit` bytes. An oversized body is read to its end and
 * thrown away (up to a bound) before the 413 goes out: a client still uploading would otherwise see a
 * broken pipe instead of the answer.
 */
function readBody(req: IncomingMessage, limit: number): Promise<BodyRead> {
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
function bodyProblem(body: unknown): ShapeProblem | undefined {
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
function withListenedUris(body: unknown, uris: readonly string[]): unknown {
  const request = body as { params: { notifications: Record<string, unknown> } };
  return {
    ...request,
    params: {
      ...request.params,
      notifications: { ...request.params.notifications, resourceSubscriptions: [...uris] },
    },
  };
}

function isListen(body: unknown): boolean {
  return (
    typeof body === "object" &&
    body !== null &&
    (body as { method?: unknown }).method === "subscriptions/listen"
  );
}

/** The resource URIs a `subscriptions/listen` request asks updates for. */
function listenedUris(body: unknown): readonly string[] {
  if (!isListen(body)) return [];
  const request = body as { params?: { notifications?: { resourceSubscriptions?: unknown } } };
  const uris = request.params?.notifications?.resourceSubscriptions;
  return Array.isArray(uris) ? uris.filter((uri): uri is string => typeof uri === "string") : [];
}

/** The id of the first JSON-RPC request in a message or batch (not a notification or a response). */
function requestIdOf(body: unknown): string | number | null | undefined {
  for (const message of Array.isArray(body) ? body : [body]) {
    if (typeof message !== "object" || message === null) continue;
    const { id, method } = message as { id?: unknown; method?: unknown };
    if (typeof method === "string" && (typeof id === "string" || typeof id === "number")) return id;
  }
  return undefined;
}

function containsInitialize(body: unknown): boolean {
  return Array.isArray(body) ? body.some((m) => isInitializeRequest(m)) : isInitializeRequest(body);
}

/**
 * Headers that name one thing (who is calling, which session, which host) and that Node would
 * otherwise resolve silently to the first of several: a proxy in front that reads the last would act
 * for another caller than the gateway does, so ambiguity is refused instead.
 */
const SINGLE_HEADERS = [
  "host",
  "authorization",
  "x-api-key",
  "mcp-session-id",
  "mcp-protocol-version",
  "origin",
  ...Object.values(SIGNATURE_HEADERS),
];

function repeatedHeader(req: IncomingMessage): string | undefined {
  const distinct = req.headersDistinct;
  return SINGLE_HEADERS.find((name) => (distinct[name]?.length ?? 0) > 1);
}

function header(req: IncomingMessage, name: string): string | undefined {
  const value = req.headers[name];
  return Array.isArray(value) ? value[0] : value;
}

function sendJsonRpcError(
  res: ServerResponse,
  status: number,
  code: number,
  message: string,
  id: string | number | null = null,
): void {
  if (res.headersSent) {
    res.destroy();
    return;
  }
  res
    .writeHead(status, { "content-type": "application/json" })
    .end(JSON.stringify({ jsonrpc: "2.0", id, error: { code, message } }));
}
