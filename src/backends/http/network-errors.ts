/**
 * What a backend that makes requests for a model may say about a network failure, and what it keeps
 * for the operator.
 *
 * A model that can choose URLs can use every answer as a probe: "connect ECONNREFUSED 10.0.0.5:8080",
 * "it resolves to 127.0.0.1", a resolver's error text or a certificate's names all map the network
 * behind the gateway. So the caller is told the class of the failure and what to do; the full detail
 * (addresses, ports, redirect targets, the underlying error messages) goes to the gateway's log and
 * audit record only.
 */
import { GatewayError, type GatewayErrorCode } from "../../core/errors.ts";

/**
 * A GatewayError whose message is safe to send to the caller, with a `detail` for the gateway's log
 * and audit record that must never be sent.
 */
export class DetailedError extends GatewayError {
  /** Addresses, ports, redirect targets and underlying errors: for the log and the audit record only. */
  readonly detail: string;

  constructor(
    code: GatewayErrorCode,
    message: string,
    detail: string,
    options: { readonly data?: Record<string, unknown>; readonly cause?: unknown } = {},
  ) {
    super(code, message, options);
    this.name = "DetailedError";
    this.detail = detail;
  }
}

/** The detail an error carries for the operator, if it is a DetailedError. */
export function detailOf(error: unknown): string | undefined {
  return error instanceof DetailedError ? error.detail : undefined;
}

/** Every message in an error's cause chain (and in an AggregateError's errors), for the detail. */
export function fullMessage(error: unknown): string {
  const parts: string[] = [];
  const seen = new Set<unknown>();
  const visit = (value: unknown): void => {
    if (value === undefined || value === null || seen.has(value) || parts.length > 8) return;
    seen.add(value);
    if (!(value instanceof Error)) {
      parts.push(String(value));
      return;
    }
    const code = (value as NodeJS.ErrnoException).code;
    parts.push(code && !value.message.includes(code) ? `${value.message} [${code}]` : value.message);
    if (value instanceof AggregateError) for (const inner of value.errors) visit(inner);
    visit(value.cause);
  };
  visit(error);
  return parts.filter((p) => p !== "").join("; caused by: ");
}

/** The first error code found on an error, its causes or an AggregateError's errors. */
function codeOf(error: unknown, depth = 0): string | undefined {
  if (!(error instanceof Error) || depth > 4) return undefined;
  const code = (error as NodeJS.ErrnoException).code;
  if (typeof code === "string" && code !== "") return code;
  if (error instanceof AggregateError) {
    for (const inner of error.errors) {
      const found = codeOf(inner, depth + 1);
      if (found) return found;
    }
  }
  return codeOf(error.cause, depth + 1);
}

/** Error codes are fixed identifiers (ECONNREFUSED, UND_ERR_SOCKET…), safe to show; anything else is not. */
const SAFE_CODE = /^[A-Z][A-Z0-9_]{1,40}$/;

const CONNECTION_CLASSES: readonly [test: (code: string) => boolean, reason: string][] = [
  [(c) => c === "ECONNREFUSED", "the connection was refused"],
  [
    (c) => ["ECONNRESET", "EPIPE", "UND_ERR_SOCKET", "ECONNABORTED"].includes(c),
    "the connection was closed by the other side",
  ],
  [(c) => ["ETIMEDOUT", "UND_ERR_CONNECT_TIMEOUT"].includes(c), "the connection timed out"],
  [
    (c) => ["EHOSTUNREACH", "ENETUNREACH", "EHOSTDOWN", "ENETDOWN", "EADDRNOTAVAIL"].includes(c),
    "the host is unreachable from the gateway",
  ],
  [(c) => ["UND_ERR_HEADERS_TIMEOUT", "UND_ERR_BODY_TIMEOUT"].includes(c), "the server stopped answering"],
  [(c) => c === "ERR_TLS_CERT_ALTNAME_INVALID", "the server's TLS certificate is not valid for this host"],
  [
    (c) =>
      c.startsWith("CERT_") ||
      c.includes("CERT") ||
      c.includes("SELF_SIGNED") ||
      c.startsWith("UNABLE_TO_") ||
      c === "HOSTNAME_MISMATCH",
    "the server's TLS certificate is not trusted",
  ],
  [(c) => c.startsWith("ERR_SSL_") || c.startsWith("ERR_TLS_") || c === "EPROTO", "the TLS handshake failed"],
  [(c) => ["ENOTFOUND", "EAI_AGAIN", "EAI_FAIL", "EAI_NONAME"].includes(c), "no checked address to use"],
];

/**
 * A failure to connect, or a connection that broke, as its class ("the connection was refused
 * (ECONNREFUSED)"): never the addresses, ports, host names or certificate names in its message.
 */
export function connectionFailure(error: unknown): string {
  const code = codeOf(error);
  if (code === undefined) return "a network error";
  const reason = CONNECTION_CLASSES.find(([test]) => test(code))?.[1] ?? "a network error";
  return SAFE_CODE.test(code) ? `${reason} (${code})` : reason;
}

/** A failed DNS lookup as its class: never the resolver's own text, which can name internal servers. */
export function resolutionFailure(error: unknown): string {
  const code = codeOf(error);
  switch (code) {
    case "ENOTFOUND":
    case "ENODATA":
    case "EAI_NONAME":
    case "NXDOMAIN":
      return "the name does not exist";
    case "EAI_AGAIN":
    case "ETIMEOUT":
    case "ESERVFAIL":
    case "ECONNREFUSED":
      return "DNS did not answer; try again later";
    default:
      return code !== undefined && SAFE_CODE.test(code) ? `the lookup failed (${code})` : "the lookup failed";
  }
}
