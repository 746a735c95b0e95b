/**
 * The request a tool call becomes: from the `fetch` tool's arguments, or from an endpoint's template
 * filled with the call's arguments. Headers that belong to the connection are the gateway's, config
 * headers go over the caller's, and no value may hold a line break (a header, or a request, of its own).
 */
import { InvalidArguments } from "../../core/errors.ts";
import { VERSION } from "../../version.ts";
import type { HttpBackendConfig, HttpEndpointConfig, HttpMethod } from "./config.ts";
import { TEMPLATE_PLACEHOLDER as PLACEHOLDER } from "./config.ts";
import type { Scope } from "./scope.ts";
import type { FetchArgs } from "./tools.ts";

export interface OutgoingRequest {
  readonly method: HttpMethod;
  readonly url: URL;
  readonly headers: Record<string, string>;
  readonly body: string | undefined;
  /** For isError on non-2xx. */
  readonly errorOnStatus: boolean;
}

type Args = Readonly<Record<string, unknown>>;

/** Headers a caller may not set: they belong to the connection or would smuggle a different request. */
const RESERVED_HEADERS = new Set([
  "host",
  "connection",
  "content-length",
  "transfer-encoding",
  "keep-alive",
  "upgrade",
  "te",
  "trailer",
  "expect",
  "proxy-authorization",
  "proxy-connection",
  "http2-settings",
]);

const HEADER_NAME = /^[!#$%&'*+.^_`|~0-9A-Za-z-]+$/;

export class RequestBuilder {
  readonly #name: string;
  readonly #config: HttpBackendConfig;
  readonly #scope: Scope;

  constructor(name: string, config: HttpBackendConfig, scope: Scope) {
    this.#name = name;
    this.#config = config;
    this.#scope = scope;
  }

  /** The `fetch` tool's request, its arguments already checked against its schema. */
  fetch(args: FetchArgs): OutgoingRequest {
    let url: URL;
    if (args.path !== undefined) {
      if (!this.#scope.base) {
        throw new InvalidArguments(
          `Backend "${this.#name}" has no baseUrl, so "path" cannot be used; pass an absolute "url" on an allowed host.`,
        );
      }
      url = this.#scope.underBase(args.path);
    } else {
      try {
        url = new URL(args.url as string);
      } catch {
        throw new InvalidArguments(
          `"${args.url}" is not an absolute URL; pass e.g. "https://host/path", or use "path".`,
        );
      }
    }
    for (const [key, value] of Object.entries(args.query ?? {})) {
      for (const item of Array.isArray(value) ? value : [value]) url.searchParams.append(key, String(item));
    }
    if (args.body !== undefined && (args.method === "GET" || args.method === "HEAD")) {
      throw new InvalidArguments(
        `A ${args.method} request carries no body; send the data in "query" instead.`,
      );
    }
    const headers: Record<string, string> = {};
    for (const [name, value] of Object.entries(args.headers ?? {})) {
      const lower = name.toLowerCase();
      if (RESERVED_HEADERS.has(lower)) {
        throw new InvalidArguments(
          `Header "${name}" is set by the gateway and may not be sent by the caller; remove it.`,
        );
      }
      headers[lower] = value;
    }
    return this.#withBody(args.method, url, headers, args.body, this.#config.errorOnStatus);
  }

  /** An endpoint's request, its template filled with arguments already checked against its schema. */
  endpoint(endpoint: HttpEndpointConfig, args: Args): OutgoingRequest {
    const path = endpoint.path.replace(PLACEHOLDER, (_, name: string) => {
      const value = args[name];
      if (value === undefined) {
        throw new InvalidArguments(
          `Tool "${endpoint.name}" needs argument "${name}" (it is part of the URL path).`,
        );
      }
      return encodePathParam(name)(scalarText(value, `Argument "${name}"`));
    });
    const url = this.#scope.underBase(path);
    for (const [key, template] of Object.entries(endpoint.query)) {
      const whole = /^\{([A-Za-z_][A-Za-z0-9_]*)\}$/.exec(template);
      const value = whole ? args[whole[1] as string] : undefined;
      if (whole && Array.isArray(value)) {
        for (const item of value) url.searchParams.append(key, scalarText(item, `Query "${key}"`));
        continue;
      }
      const text = interpolate(template, args, `Query "${key}"`);
      if (text !== undefined) url.searchParams.append(key, text);
    }
    const headers: Record<string, string> = {};
    for (const [name, template] of Object.entries(endpoint.headers)) {
      const text = interpolate(template, args, `Header "${name}"`);
      if (text !== undefined) headers[name.toLowerCase()] = text;
    }
    const body = endpoint.body === undefined ? undefined : renderBody(endpoint.body, args);
    return this.#withBody(
      endpoint.method,
      url,
      headers,
      body,
      endpoint.errorOnStatus ?? this.#config.errorOnStatus,
    );
  }

  #withBody(
    method: HttpMethod,
    url: URL,
    headers: Record<string, string>,
    body: unknown,
    errorOnStatus: boolean,
  ): OutgoingRequest {
    let text: string | undefined;
    if (typeof body === "string") {
      text = body;
      headers["content-type"] ??= "text/plain; charset=utf-8";
    } else if (body !== undefined) {
      text = JSON.stringify(body);
      headers["content-type"] ??= "application/json";
    }
    for (const [name, value] of Object.entries(this.#config.headers)) headers[name.toLowerCase()] = value;
    headers["user-agent"] ??= `switchboard/${VERSION}`;
    for (const [name, value] of Object.entries(headers)) {
      // A line break in a value would start a header (or a request) of its own.
      if (!HEADER_NAME.test(name) || /[\r\n\0]/.test(value)) {
        throw new InvalidArguments(
          `Header "${name}" has an invalid name or a line break or NUL in its value; send a single-line value.`,
        );
      }
    }
    url.hash = "";
    return { method, url, headers, body: text, errorOnStatus };
  }
}

/** The call's W3C trace context as headers, so the API's own traces join the gateway's. */
export function withTraceContext(
  request: OutgoingRequest,
  meta: Readonly<Record<string, unknown>>,
): OutgoingRequest {
  const { traceparent, tracestate } = meta;
  if (typeof traceparent !== "string") return request;
  return {
    ...request,
    headers: {
      ...request.headers,
      traceparent,
      ...(typeof tracestate === "string" ? { tracestate } : {}),
    },
  };
}

// ─── templates ──────────────────────────────────────────────────────────────────────────────────

function scalarText(value: unknown, where: string): string {
  if (typeof value === "string") return value;
  if (typeof value === "number" || typeof value === "boolean") return String(value);
  throw new InvalidArguments(`${where} needs a string, number or boolean, but got ${JSON.stringify(value)}.`);
}

/** Interpolates placeholders; undefined when a placeholder names an argument that was not given. */
function interpolate(template: string, args: Args, where: string): string | undefined {
  let missing = false;
  const text = template.replace(PLACEHOLDER, (_, name: string) => {
    const value = args[name];
    if (value === undefined) {
      missing = true;
      return "";
    }
    return scalarText(value, `${where} ({${name}})`);
  });
  return missing ? undefined : text;
}

function encodePathParam(name: string) {
  return (text: string) => {
    // "%2e%2e" is a dot segment to the URL parser too, so dot segments are refused, not encoded.
    if (text === "." || text === "..") {
      throw new InvalidArguments(`Argument "${name}" may not be "." or ".." (it is used in the URL path).`);
    }
    return encodeURIComponent(text);
  };
}

function renderBody(template: unknown, args: Args): unknown {
  if (typeof template === "string") {
    const whole = /^\{(\$args|[A-Za-z_][A-Za-z0-9_]*)\}$/.exec(template);
    if (whole) return whole[1] === "$args" ? { ...args } : args[whole[1] as string];
    return template.replace(PLACEHOLDER, (match, name: string) => {
      const value = args[name];
      return value === undefined ? match : scalarText(value, `the body ({${name}})`);
    });
  }
  if (Array.isArray(template)) {
    return template.map((item) => renderBody(item, args)).filter((item) => item !== undefined);
  }
  if (template !== null && typeof template === "object") {
    const out: Record<string, unknown> = {};
    for (const [key, value] of Object.entries(template)) {
      const rendered = renderBody(value, args);
      if (rendered !== undefined) out[key] = rendered;
    }
    return out;
  }
  return template;
}
