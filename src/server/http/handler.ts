/**
 * The HTTP face of the gateway as a request handler: the MCP endpoints (Streamable HTTP, both protocol
 * eras; the default one and one per profile, endpoint.ts), the probes and the administration endpoint,
 * for any `node:http` server — the gateway's own (serve.ts), or a host program's and its framework's.
 *
 * Era routing:
 * - 2026-07-28 requests are stateless: each is served by `createMcpHandler` on a fresh per-request
 *   instance, so any replica can answer any request.
 * - 2025-era clients open a session with `initialize` (see sessions.ts).
 *
 * Guards before anything is parsed (guards.ts): headers that must not repeat, Host and Origin checks
 * against DNS rebinding, authentication, a body limit, and a JSON-RPC parse error for malformed JSON.
 */
import type { IncomingMessage, ServerResponse } from "node:http";
import { GatewayConsole } from "../../console/console.ts";
import { consoleNeedsPrincipal, isConsolePath, serveConsole } from "../../console/routes.ts";
import { describeError, JSON_RPC } from "../../core/errors.ts";
import { ANONYMOUS, type Principal } from "../../core/types.ts";
import type { Gateway } from "../../gateway/gateway.ts";
import { oneLine } from "../../protocol/message-shape.ts";
import { type BackgroundLog, LogListeners, listenLogLevel } from "../../protocol/notifications.ts";
import { checkParamHeaders, paramHeaders } from "../../protocol/param-headers.ts";
import {
  protectedResourceMetadata,
  RESOURCE_METADATA_PATH,
  resourceMetadataUrl,
} from "../../security/auth.ts";
import { ADMIN_PREFIX, type AdminOptions, type AdminReload, serveAdmin } from "./admin.ts";
import {
  bodyProblem,
  containsInitialize,
  isJsonContentType,
  isListen,
  listenedUris,
  modernToolCall,
  readBody,
  requestIdOf,
  withListenedUris,
  withRawBody,
} from "./body.ts";
import { type McpEndpoint, McpEndpoints } from "./endpoint.ts";
import { attachFacts, factsOfRequest, principalOfRequest } from "./facts.ts";
import { cancelPlainCall, servePlainCall } from "./fast-path.ts";
import { createGuards, header, sendJsonRpcError, sendRefusal } from "./guards.ts";
import { servePlainModernCall } from "./modern-fast-path.ts";
import { type ProbeHandler, probeRoutes } from "./probes.ts";
import { SUSPENDED_OWNER_GONE } from "./replica-relay.ts";
import { joinReplicas } from "./replicas.ts";

/** The longest shutdown waits for responses still being written after their calls finished. */
const ANSWER_FLUSH_MS = 2_000;

export interface HandlerOptions {
  /** Where the MCP endpoint is, e.g. "/mcp" (profiles at "/mcp/<name>"); probes at /livez, /readyz… */
  readonly path: string;
  readonly maxBodyBytes: number;
  readonly allowedHosts: readonly string[];
  readonly allowedOrigins: readonly string[];
  readonly sessionIdleTimeoutMs: number;
  /** Who may use `/admin/…` (config `server.http.admin`). */
  readonly admin: AdminOptions;
  /** Reloads the config file (`POST /admin/reload`); absent for a gateway embedded without a file. */
  readonly reload?: AdminReload | undefined;
  /** The web console at /console (config `server.http.console`); off when absent. */
  readonly console?: { readonly enabled: boolean } | undefined;
}

export interface GatewayHttpHandler {
  /**
   * Answers one request. A path that is not the gateway's goes to `next` when there is one (a
   * framework's next middleware), else gets 404.
   */
  handle(req: IncomingMessage, res: ServerResponse, next?: () => void): void;
  /** Waits for answers still being written, then closes the sessions; call after the gateway drained. */
  close(): Promise<void>;
}

export function createGatewayHttpHandler(gateway: Gateway, options: HandlerOptions): GatewayHttpHandler {
  const log = gateway.logger.child({ component: "http" });
  const replicas = joinReplicas(gateway, options.sessionIdleTimeoutMs, log);
  const endpoints = new McpEndpoints(gateway, options.path, { ...options, replicas }, log);
  const defaultEndpoint = endpoints.at(options.path) as McpEndpoint;
  // What another replica relays here is served by these endpoints (replica-relay.ts).
  replicas?.relay.serveWith(async (relayed, req, res) => {
    const endpoint = endpoints.at(relayed.path);
    attachFacts(req as IncomingMessage, relayed.principal);
    if (!endpoint) {
      res.writeHead(404);
      res.end();
    } else if (relayed.session !== undefined) {
      await endpoint.sessions.resume(relayed.session, relayed.principal, req, res);
    } else {
      await endpoint.serveModern(req, res);
    }
  });
  const probes: Record<string, ProbeHandler> = probeRoutes(gateway);
  const guard = createGuards(options);
  const webConsole = options.console?.enabled ? new GatewayConsole(gateway, { logger: log }) : undefined;
  const logListeners = new LogListeners(gateway);
  // Log messages another replica's servers sent outside any call (see endpoint.ts).
  replicas?.bus.on("backend-log", ({ payload }) => logListeners.deliver(payload as BackgroundLog));

  /** Who is calling, or the answer that refuses the request (each endpoint has its own auth). */
  const admit = async (
    endpoint: McpEndpoint,
    req: IncomingMessage,
    res: ServerResponse,
  ): Promise<boolean> => {
    const authenticator = endpoint.authenticator;
    if (!authenticator) {
      attachFacts(req, ANONYMOUS);
      return true;
    }
    const result = await authenticator.authenticate(req.headers, {
      resourceMetadataUrl: resourceMetadataUrl(endpoint.resourceUrl(req)),
    });
    if (result.ok) {
      attachFacts(req, result.principal);
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

  const handleMcp = async (endpoint: McpEndpoint, req: IncomingMessage, res: ServerResponse) => {
    const sessions = endpoint.sessions;
    let body: unknown;
    let text: string | undefined;
    if (req.method === "POST") {
      // One content-type rule for every path (the SDK's, which the plain paths would otherwise skip).
      if (!isJsonContentType(req)) {
        res.shouldKeepAlive = false;
        return sendJsonRpcError(
          res,
          415,
          JSON_RPC.SERVER_ERROR,
          "Unsupported Media Type: Content-Type must be application/json",
        );
      }
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
      const problem = bodyProblem(body);
      // An invalid request is an HTTP 400; invalid params of a valid request are answered like any
      // other JSON-RPC error, with 200.
      if (problem) {
        const status = problem.code === JSON_RPC.INVALID_PARAMS ? 200 : 400;
        return sendJsonRpcError(res, status, problem.code, problem.message, problem.id);
      }
      // Listen streams stay open until the client leaves; only answers are worth waiting for at shutdown.
      if (!isListen(body)) trackAnswer(res);
    }
    const facts = factsOfRequest(req);
    const principal = facts?.principal ?? principalOfRequest(req);
    const sessionId = header(req, "mcp-session-id");
    if (sessionId !== undefined) {
      // A session another replica opened is rebuilt here from its record (sessions.ts).
      const session = sessions.find(sessionId, principal) ?? (await sessions.adopt(sessionId, principal));
      if (!session) {
        return sendJsonRpcError(
          res,
          404,
          JSON_RPC.SESSION_NOT_FOUND,
          `Session "${sessionId}" not found: it expired or the gateway restarted. Start a new session with initialize.`,
        );
      }
      if (req.method === "POST") {
        if (cancelPlainCall(session, body)) {
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
        if (facts && servePlainCall(gateway, session, req, res, body, facts, endpoint.profile)) return;
      }
      return sessions.serve(session, req, res, body, text);
    }
    if (req.method === "POST" && containsInitialize(body)) {
      return sessions.open(req, res, body, principal, text);
    }
    const listened = listenedUris(body);
    if (listened.length > 0) {
      const allowed = listened.filter((uri) => gateway.mayReadResource(principal, uri, endpoint.profile));
      // The SDK sends a stream every update of the URIs it names, whoever caused the backend to send
      // it: a URI this principal may not read is taken out of the request before the SDK sees it.
      if (allowed.length < listened.length) text = JSON.stringify(withListenedUris(body, allowed));
      if (allowed.length > 0) holdSubscriptions(allowed, res, principal, endpoint.profile);
    }
    if (isListen(body)) holdLogs(body, res, principal, endpoint.profile);
    const mismatch = paramHeaderMismatch(req, body, principal, endpoint.profile);
    if (mismatch) {
      log.debug({ mismatch: mismatch.data.mismatch }, "request refused: Mcp-Param header mismatch");
      return sendJsonRpcError(
        res,
        400,
        mismatch.code,
        mismatch.message,
        requestIdOf(body) ?? null,
        mismatch.data,
      );
    }
    if (facts && servePlainModernCall(gateway, req, res, body, facts, endpoint.profile)) return;
    // A 2026-07-28 retry whose requestState another replica holds is served there.
    const relay = replicas?.relay;
    const owner = await relay?.ownerElsewhere(body, principal);
    if (relay && owner !== undefined) {
      return relay.forward(owner, req, res, text ?? "", {
        path: endpoint.path,
        principal,
        requestId: requestIdOf(body) ?? null,
        goneMessage: SUSPENDED_OWNER_GONE,
        goneReason: "request_state_owner_gone",
      });
    }
    return endpoint.serveModern(withRawBody(req, text), res);
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
  const holdSubscriptions = (
    uris: readonly string[],
    res: ServerResponse,
    principal: Principal,
    profile: string | undefined,
  ) => {
    const holder = { principal, profile };
    for (const uri of uris) {
      gateway
        .subscribe(uri, holder)
        .catch((error: unknown) =>
          log.debug({ uri, err: describeError(error) }, "a listen stream named a resource no server offers"),
        );
    }
    res.once("close", () => gateway.release(holder));
  };

  /**
   * A listen request that names a log level also gets the log messages servers send outside any request
   * (see protocol/notifications.ts). The SDK writes its stream one whole event at a time, its
   * acknowledgement first; these are written between its events, once the stream is open (a refusal is
   * a JSON body the SDK writes and ends at once, with no event between).
   */
  const holdLogs = (
    body: unknown,
    res: ServerResponse,
    principal: Principal,
    profile: string | undefined,
  ) => {
    const level = listenLogLevel(body);
    const subscriptionId = requestIdOf(body);
    if (level === undefined || subscriptionId === undefined || subscriptionId === null) return;
    const stop = logListeners.add({ subscriptionId, level, principal, profile }, (notification) => {
      if (!res.headersSent || res.statusCode !== 200 || res.writableEnded || res.destroyed) return;
      res.write(`event: message\ndata: ${JSON.stringify(notification)}\n\n`);
    });
    res.once("close", stop);
  };

  /**
   * A 2026-07-28 tool call's `Mcp-Param-*` headers against its arguments (protocol/param-headers.ts), for
   * a tool the caller may call here. Checked only once the standard headers agree with the body, so
   * that a request the SDK refuses for those is refused as it would be.
   */
  const paramHeaderMismatch = (
    req: IncomingMessage,
    body: unknown,
    principal: Principal,
    profile: string | undefined,
  ) => {
    const call = modernToolCall(body);
    if (
      !call ||
      header(req, "mcp-method") !== "tools/call" ||
      header(req, "mcp-name")?.trim() !== call.name
    ) {
      return undefined;
    }
    const route = gateway.catalog.tool(call.name);
    if (!route || !gateway.visibilityFor(profile).mayCall(principal, call.name, route.server))
      return undefined;
    const declared = paramHeaders(route.definition.inputSchema);
    if (declared.length === 0) return undefined;
    return checkParamHeaders(declared, call.arguments, (name) => header(req, name));
  };

  const route = async (
    req: IncomingMessage,
    res: ServerResponse,
    started: boolean,
    next: (() => void) | undefined,
  ) => {
    const refusal = guard(req);
    if (refusal) {
      log.warn(refusal.log, `request refused: ${refusal.reason}`);
      return sendRefusal(res, refusal);
    }
    const path = (req.url ?? "/").split("?", 1)[0] ?? "/";
    const endpoint = endpoints.at(path);
    if (endpoint) {
      if (started && req.method === "POST" && header(req, "mcp-session-id") === undefined) {
        return sendJsonRpcError(
          res,
          503,
          JSON_RPC.INTERNAL_ERROR,
          "The gateway is shutting down; retry on another instance.",
        );
      }
      if (!(await admit(endpoint, req, res))) return;
      return handleMcp(endpoint, req, res);
    }
    if (path.startsWith(ADMIN_PREFIX)) {
      if (!(await admit(defaultEndpoint, req, res))) return;
      return serveAdmin(req, res, path, principalOfRequest(req), {
        options: options.admin,
        authenticated: defaultEndpoint.authenticator !== undefined,
        logger: log,
        reload: options.reload,
      });
    }
    if (isConsolePath(path) && (webConsole || !next)) {
      if (consoleNeedsPrincipal(path) && !(await admit(defaultEndpoint, req, res))) return;
      return serveConsole(req, res, path, principalOfRequest(req), {
        gateway,
        console: webConsole,
        admin: options.admin,
        authenticated: defaultEndpoint.authenticator !== undefined,
        logger: log,
      });
    }
    // RFC 9728: the metadata of the resource at <path> is at /.well-known/oauth-protected-resource<path>.
    const described = path.startsWith(RESOURCE_METADATA_PATH)
      ? endpoints.forMetadataSuffix(path.slice(RESOURCE_METADATA_PATH.length))
      : undefined;
    const authConfig = described?.authConfig;
    if (described && authConfig && (req.method === "GET" || req.method === "HEAD")) {
      res
        .writeHead(200, { "content-type": "application/json", "cache-control": "max-age=300" })
        .end(JSON.stringify(protectedResourceMetadata(authConfig, described.resourceUrl(req))));
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
    if (next) return next();
    res
      .writeHead(404, { "content-type": "application/json" })
      .end(JSON.stringify({ error: `Not found: ${path}. The MCP endpoint is ${options.path}.` }));
  };

  return {
    handle(req, res, next) {
      route(req, res, gateway.closing, next).catch((error) => {
        log.error({ err: error }, "unexpected error while serving an HTTP request");
        if (!res.headersSent)
          sendJsonRpcError(res, 500, JSON_RPC.INTERNAL_ERROR, "Internal error; see the gateway log.");
        else res.destroy();
      });
    },
    async close() {
      webConsole?.close();
      await answersWritten();
      await endpoints.close();
      await replicas?.bus.close();
    },
  };
}
