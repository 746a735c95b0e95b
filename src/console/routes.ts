/**
 * The console's HTTP routes under `/console` on the gateway's listener.
 *
 * Who may: as for the administration endpoints (server/http/admin.ts). From loopback only unless
 * `server.http.admin.allowRemote`; and every `/console/api/…` request (all the data the console shows
 * and the calls it makes) needs the credentials the MCP endpoint takes (the handler authenticates it
 * before it gets here) and, with `auth` configured, one of `server.http.admin.roles`. The page, its
 * scripts and styles hold no data: they are served to whoever may reach the console, and the page asks
 * for credentials when the API wants them.
 *
 * Requests that change something (a tool call) must be `application/json`: a browser sends that from
 * another site only after a CORS preflight, which the gateway does not grant.
 */
import type { IncomingMessage, ServerResponse } from "node:http";
import type { Principal } from "../core/types.ts";
import type { Gateway } from "../gateway/gateway.ts";
import type { Logger } from "../observability/logger.ts";
import { type AdminOptions, adminRefusal, fromLoopback } from "../server/http/admin.ts";
import { isJsonContentType, readBody } from "../server/http/body.ts";
import { asset, SECURITY_HEADERS, sendAsset } from "./assets.ts";
import { parseAuditQuery } from "./audit.ts";
import type { GatewayConsole } from "./console.ts";
import { parseTryRequest, tryTool } from "./try-call.ts";

export const CONSOLE_PATH = "/console";
const API_PREFIX = `${CONSOLE_PATH}/api/`;
/** Larger than any form a person fills in. */
const MAX_CALL_BODY_BYTES = 1024 * 1024;

export interface ConsoleRouteDeps {
  readonly gateway: Gateway;
  /** Undefined when `server.http.console.enabled` is false. */
  readonly console: GatewayConsole | undefined;
  readonly admin: AdminOptions;
  /** Whether the listener authenticates callers (config `auth`). */
  readonly authenticated: boolean;
  readonly logger: Logger;
}

export function isConsolePath(path: string): boolean {
  return path === CONSOLE_PATH || path.startsWith(`${CONSOLE_PATH}/`);
}

/** Whether the handler must authenticate the request before `serveConsole` (the API's requests). */
export function consoleNeedsPrincipal(path: string): boolean {
  return path.startsWith(API_PREFIX);
}

function send(
  res: ServerResponse,
  status: number,
  body: unknown,
  headers: Record<string, string> = {},
): void {
  res
    .writeHead(status, {
      ...SECURITY_HEADERS,
      "content-type": "application/json",
      "cache-control": "no-store",
      ...headers,
    })
    .end(JSON.stringify(body));
}

function methodNotAllowed(
  res: ServerResponse,
  method: string | undefined,
  path: string,
  allowed: string,
): void {
  send(res, 405, { error: `${method} is not allowed on ${path}; use ${allowed}.` }, { allow: allowed });
}

/** Serves one request under /console (see `isConsolePath`); `principal` is who the handler authenticated. */
export async function serveConsole(
  req: IncomingMessage,
  res: ServerResponse,
  path: string,
  principal: Principal,
  deps: ConsoleRouteDeps,
): Promise<void> {
  const app = deps.console;
  if (!app) {
    send(res, 404, {
      error:
        `Not found: ${path}. The console is off: set server.http.console.enabled to true in the config ` +
        "and restart the gateway to serve it here.",
    });
    return;
  }
  const adminDeps = {
    options: deps.admin,
    authenticated: deps.authenticated,
    logger: deps.logger,
    reload: undefined,
  };
  if (!consoleNeedsPrincipal(path)) {
    if (!deps.admin.allowRemote && !fromLoopback(req)) {
      send(res, 403, {
        error: "forbidden",
        error_description: "the console is served to loopback only (server.http.admin.allowRemote is false)",
      });
      return;
    }
    return serveFile(req, res, path);
  }
  const refusal = adminRefusal(req, principal, adminDeps);
  if (refusal) {
    deps.logger.warn({ principal: principal.id, path }, `console refused: ${refusal}`);
    send(res, 403, { error: "forbidden", error_description: refusal });
    return;
  }
  return serveApi(req, res, path.slice(API_PREFIX.length), principal, app, deps.gateway);
}

function serveFile(req: IncomingMessage, res: ServerResponse, path: string): void {
  if (req.method !== "GET" && req.method !== "HEAD") {
    methodNotAllowed(res, req.method, path, "GET");
    return;
  }
  const name =
    path === CONSOLE_PATH || path === `${CONSOLE_PATH}/` ? "index.html" : path.slice(CONSOLE_PATH.length + 1);
  const file = name.includes("/") ? undefined : asset(name);
  if (!file) {
    send(res, 404, { error: `Not found: ${path}. The console is at ${CONSOLE_PATH}/.` });
    return;
  }
  sendAsset(res, file, req.method === "HEAD");
}

async function serveApi(
  req: IncomingMessage,
  res: ServerResponse,
  route: string,
  principal: Principal,
  app: GatewayConsole,
  gateway: Gateway,
): Promise<void> {
  const path = `${API_PREFIX}${route}`;
  if (route === "call") {
    if (req.method !== "POST") return methodNotAllowed(res, req.method, path, "POST");
    return serveCall(req, res, principal, gateway);
  }
  if (req.method !== "GET") return methodNotAllowed(res, req.method, path, "GET");
  switch (route) {
    case "session":
      return send(res, 200, { principal });
    case "events":
      return app.stream(res, principal);
    case "tools":
      return send(res, 200, { tools: app.tools(), live: (await app.live()).tools });
    case "callable":
      // What this principal may call at the default endpoint, as a client would list it.
      return send(res, 200, { tools: gateway.toolsFor(principal) });
    case "config":
      return send(res, 200, app.config());
    case "audit":
      return serveAuditSearch(req, res, app);
    default:
      return send(res, 404, {
        error: `Not found: ${path}. The console's API has session, events, tools, callable, call, audit and config.`,
      });
  }
}

async function serveCall(
  req: IncomingMessage,
  res: ServerResponse,
  principal: Principal,
  gateway: Gateway,
): Promise<void> {
  if (!isJsonContentType(req)) {
    res.shouldKeepAlive = false;
    return send(res, 415, { error: "Unsupported Media Type: send the call as application/json." });
  }
  const read = await readBody(req, MAX_CALL_BODY_BYTES);
  if (read.kind === "aborted") {
    res.destroy();
    return;
  }
  if (read.kind === "too_large") {
    if (!read.drained) res.shouldKeepAlive = false;
    return send(res, 413, { error: `The call is larger than ${MAX_CALL_BODY_BYTES} bytes.` });
  }
  let body: unknown;
  try {
    body = JSON.parse(read.text);
  } catch {
    return send(res, 400, { error: "The body is not valid JSON." });
  }
  const request = parseTryRequest(body);
  if (typeof request === "string") return send(res, 400, { error: request });
  const answer = await tryTool(
    (name, args, options) => gateway.callTool(name, args, options),
    principal,
    request,
  );
  send(res, 200, answer);
}

async function serveAuditSearch(
  req: IncomingMessage,
  res: ServerResponse,
  app: GatewayConsole,
): Promise<void> {
  const unavailable = app.audit.unavailable;
  if (unavailable) return send(res, 409, { error: "unavailable", error_description: unavailable });
  const query = parseAuditQuery(new URL(req.url ?? "/", "http://console").searchParams);
  if (!query.ok) return send(res, 400, { error: "invalid_query", error_description: query.error });
  try {
    send(res, 200, await app.audit.search(query.filter));
  } catch (error) {
    send(res, 502, {
      error: "audit_unreadable",
      error_description: `the audit log could not be searched: ${error instanceof Error ? error.message : String(error)}`,
    });
  }
}
