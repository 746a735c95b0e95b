/**
 * What every HTTP request passes before anything is parsed: headers that must not repeat, the Host
 * and Origin checks against DNS rebinding, and the one way a refusal is written.
 */
import type { IncomingMessage, ServerResponse } from "node:http";
import {
  localhostAllowedHostnames,
  validateHostHeader,
  validateOriginHeader,
} from "@modelcontextprotocol/server";
import { JSON_RPC } from "../../core/errors.ts";
import { SIGNATURE_HEADERS } from "../../security/signing.ts";

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

/** How many accepted Host values are remembered (see createGuards). */
const ACCEPTED_HOSTS_KEPT = 64;

export interface GuardOptions {
  readonly allowedHosts: readonly string[];
  readonly allowedOrigins: readonly string[];
}

export interface Refusal {
  readonly status: number;
  readonly message: string;
  /** What the log says about it. */
  readonly log: Record<string, unknown>;
  readonly reason: string;
}

/** The checks, compiled once; `check` returns why a request is refused, or undefined to let it in. */
export function createGuards(options: GuardOptions): (req: IncomingMessage) => Refusal | undefined {
  const allowedHosts = [...localhostAllowedHostnames(), ...options.allowedHosts];
  const allowedOrigins = [...localhostAllowedHostnames(), ...options.allowedOrigins];
  const anyHost = options.allowedHosts.includes("*");
  const anyOrigin = options.allowedOrigins.includes("*");
  // The SDK's check parses the Host value as a URL; a client sends the same few values over and over, so
  // the values it accepted are remembered (a bounded set: a flood of made-up hosts only fills it once).
  const acceptedHosts = new Set<string>();
  const hostAllowed = (host: string | undefined): boolean => {
    if (host !== undefined && acceptedHosts.has(host)) return true;
    if (!validateHostHeader(host, allowedHosts).ok) return false;
    if (host !== undefined && acceptedHosts.size < ACCEPTED_HOSTS_KEPT) acceptedHosts.add(host);
    return true;
  };
  return (req) => {
    const distinct = req.headersDistinct;
    const repeated = SINGLE_HEADERS.find((name) => (distinct[name]?.length ?? 0) > 1);
    if (repeated !== undefined) {
      return {
        status: 400,
        message:
          `The ${repeated} header was sent more than once, so which one counts is ambiguous (a proxy may read ` +
          "another than the gateway does). Send it once.",
        log: { header: repeated },
        reason: "a header that must be single was sent more than once",
      };
    }
    if (!anyHost && !hostAllowed(req.headers.host)) {
      return {
        status: 403,
        message:
          `Host "${req.headers.host ?? ""}" is not allowed (a guard against DNS rebinding). ` +
          "Add it to server.http.allowedHosts to accept it.",
        log: { host: req.headers.host },
        reason: "Host header not allowed",
      };
    }
    const origin = header(req, "origin");
    if (origin !== undefined && !anyOrigin && !validateOriginHeader(origin, allowedOrigins).ok) {
      return {
        status: 403,
        message:
          `Origin "${origin}" is not allowed (a guard against DNS rebinding). ` +
          "Add it to server.http.allowedOrigins to accept it.",
        log: { origin },
        reason: "Origin not allowed",
      };
    }
    return undefined;
  };
}

export function header(req: IncomingMessage, name: string): string | undefined {
  const value = req.headers[name];
  return Array.isArray(value) ? value[0] : value;
}

export function sendJsonRpcError(
  res: ServerResponse,
  status: number,
  code: number,
  message: string,
  id: string | number | null = null,
  data?: unknown,
): void {
  if (res.headersSent) {
    res.destroy();
    return;
  }
  res.writeHead(status, { "content-type": "application/json" }).end(
    JSON.stringify({
      jsonrpc: "2.0",
      id,
      error: { code, message, ...(data !== undefined ? { data } : {}) },
    }),
  );
}

export function sendRefusal(res: ServerResponse, refusal: Refusal): void {
  sendJsonRpcError(res, refusal.status, JSON_RPC.INVALID_REQUEST, refusal.message);
}
