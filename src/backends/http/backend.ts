/**
 * A built-in backend that turns HTTP APIs into MCP tools: a generic `fetch` tool scoped to a base
 * URL and an allowlist of hosts, and optional `endpoints` declared in config that map named tools to
 * fixed request templates.
 *
 * The model chooses the URL, so every request is treated as a possible SSRF attempt: the scheme and
 * host must be allowed by config, every address the host resolves to must be public (see ssrf.ts),
 * the connection is pinned to the addresses that were checked, and redirects are followed here, one
 * hop at a time, each hop checked again before anything is sent.
 *
 * Each origin gets one keep-alive undici Pool (bounded by `connections`) and its own circuit breaker,
 * so one failing host does not stop calls to the others.
 */
import { STATUS_CODES } from "node:http";
import type { Readable } from "node:stream";
import { Ajv, type ValidateFunction } from "ajv";
import { Pool } from "undici";
import { z } from "zod";
import {
  CircuitOpen,
  describeError,
  errorResult,
  GatewayError,
  InvalidArguments,
} from "../../core/errors.ts";
import {
  type Backend,
  type BackendCatalog,
  type BackendEvents,
  type BackendState,
  type CallContext,
  type CallToolResult,
  type GetPromptResult,
  type HealthResult,
  NOTE_ERROR_DETAIL,
  type ReadResourceResult,
  type Tool,
  type ToolCall,
} from "../../core/types.ts";
import type { Logger } from "../../observability/logger.ts";
import { CircuitBreaker } from "../../policies/circuit-breaker.ts";
import type { Emit, ToolBinding } from "../../policies/types.ts";
import { signOutbound } from "../../security/signing.ts";
import { VERSION } from "../../version.ts";
import {
  type HttpBackendConfig,
  type HttpEndpointConfig,
  type HttpMethod as Method,
  TEMPLATE_PLACEHOLDER,
} from "../builtin-config.ts";
import { noPrompt, noResource } from "../tools-only.ts";
import { connectionFailure, DetailedError, detailOf, fullMessage } from "./network-errors.ts";
import {
  checkHost,
  type HostPattern,
  matchesHostPattern,
  parseHostPattern,
  pinnedLookup,
  type ResolvedAddress,
  type Resolver,
  systemResolver,
} from "./ssrf.ts";

export type { HttpBackendConfig, HttpEndpointConfig } from "../builtin-config.ts";

export interface HttpBackendOptions {
  /** How host names become addresses. Default: the system resolver. Tests inject their own. */
  readonly resolve?: Resolver;
  /** Receives the per-origin breakers' events (DESIGN rule 5); they are logged either way. */
  readonly emit?: Emit;
  /** The clock for the breakers, in ms. Default `Date.now`. */
  readonly now?: () => number;
}

// ---------------------------------------------------------------------------------------------------
// Templates

const PLACEHOLDER = TEMPLATE_PLACEHOLDER;

type Args = Readonly<Record<string, unknown>>;

function scalarText(value: unknown, where: string): string {
  if (typeof value === "string") return value;
  if (typeof value === "number" || typeof value === "boolean") return String(value);
  throw new InvalidArguments(`${where} needs a string, number or boolean, but got ${JSON.stringify(value)}.`);
}

/** Interpolates placeholders; undefined when a placeholder names an argument that was not given. */
function interpolate(
  template: string,
  args: Args,
  encode: (text: string) => string,
  where: string,
): string | undefined {
  let missing = false;
  const text = template.replace(PLACEHOLDER, (_, name: string) => {
    const value = args[name];
    if (value === undefined) {
      missing = true;
      return "";
    }
    return encode(scalarText(value, `${where} ({${name}})`));
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

let sharedAjv: Ajv | undefined;
/** One validator instance for every endpoint: compiling is costly, validating is not. */
function ajv(): Ajv {
  sharedAjv ??= new Ajv({ allErrors: true, strict: false });
  return sharedAjv;
}

// ---------------------------------------------------------------------------------------------------
// Requests and responses

interface OutgoingRequest {
  readonly method: Method;
  readonly url: URL;
  readonly headers: Record<string, string>;
  readonly body: string | undefined;
  /** For isError on non-2xx. */
  readonly errorOnStatus: boolean;
}

interface Answer {
  readonly status: number;
  readonly url: URL;
  readonly method: Method;
  readonly headers: Record<string, string | string[] | undefined>;
  readonly body: Buffer;
  readonly redirects: number;
}

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

/** Headers that carry credentials for one origin; dropped when a redirect leaves it. */
const CREDENTIAL_HEADERS = new Set(["authorization", "cookie", "proxy-authorization"]);

/** Response headers worth showing a model; others (set-cookie…) stay out of results. */
const SHOWN_HEADERS = ["content-type", "location", "retry-after", "etag", "last-modified", "link"];

const REDIRECTS = new Set([301, 302, 303, 307, 308]);

/** More origins than this and the least recently used pool is closed (allowHosts may be wildcards). */
const MAX_ORIGINS = 64;

const TEXT_TYPES =
  /^(text\/|application\/(json|xml|javascript|ecmascript|x-www-form-urlencoded|graphql|yaml|x-yaml|x-ndjson|problem\+json|problem\+xml)\b)|[+](json|xml)\b/i;
const JSON_TYPES = /^application\/(json|problem\+json)\b|[+]json\b/i;

function headerValue(value: string | string[] | undefined): string | undefined {
  return Array.isArray(value) ? value.join(", ") : value;
}

function decodeText(body: Buffer, contentType: string | undefined): string {
  const charset = /charset=["']?([^;"'\s]+)/i.exec(contentType ?? "")?.[1] ?? "utf-8";
  try {
    return new TextDecoder(charset).decode(body);
  } catch {
    return new TextDecoder("utf-8").decode(body);
  }
}

function looksLikeText(body: Buffer): boolean {
  if (body.includes(0)) return false;
  try {
    new TextDecoder("utf-8", { fatal: true }).decode(body);
    return true;
  } catch {
    return false;
  }
}

interface OriginState {
  readonly origin: string;
  readonly pool: Pool;
  readonly breaker: CircuitBreaker | undefined;
  /** The addresses the last check passed; the pool's connections may only use these. */
  pinned: readonly ResolvedAddress[];
  pinnedAt: number;
}

interface Signals {
  readonly caller: AbortSignal;
  readonly timeout: AbortSignal;
  /** Either of the two: what the request itself listens to. */
  readonly any: AbortSignal;
}

/** How long checked addresses are reused before the host is resolved and checked again. */
const PIN_TTL_MS = 30_000;

type Body = AsyncIterable<Buffer> & Pick<Readable, "destroy" | "on">;

/** Stops reading a body and closes its connection; undici reports that as an abort nobody needs to hear. */
function discard(body: Body): void {
  body.on("error", () => undefined);
  body.destroy();
}

/** Reads a body up to `limit` bytes; past it the read is aborted and undefined returned. */
async function readLimited(body: Body, limit: number): Promise<Buffer | undefined> {
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

// ---------------------------------------------------------------------------------------------------
// The backend

export class HttpBackend implements Backend {
  readonly name: string;
  #state: BackendState = "stopped";
  readonly #config: HttpBackendConfig;
  readonly #timeoutMs: number;
  readonly #log: Logger;
  readonly #resolve: Resolver;
  readonly #emit: Emit;
  readonly #now: () => number;
  readonly #base: URL | undefined;
  readonly #allowHosts: readonly HostPattern[];
  readonly #allowPrivate: readonly HostPattern[];
  readonly #configHeaderNames: ReadonlySet<string>;
  readonly #origins = new Map<string, OriginState>();
  readonly #catalog: BackendCatalog;
  readonly #endpoints = new Map<string, { config: HttpEndpointConfig; validate: ValidateFunction }>();
  readonly #fetchArgs: z.ZodType<FetchArgs>;
  #events: BackendEvents | undefined;

  constructor(
    name: string,
    config: HttpBackendConfig & { readonly timeoutMs?: number },
    logger: Logger,
    options: HttpBackendOptions = {},
  ) {
    this.name = name;
    this.#config = config;
    this.#timeoutMs = config.timeoutMs ?? 60_000;
    this.#log = logger.child({ server: name, backend: "http" });
    this.#resolve = options.resolve ?? systemResolver;
    this.#now = options.now ?? Date.now;
    const forward = options.emit;
    this.#emit = (event, payload) => {
      this.#log.info({ event, detail: payload as unknown }, "origin circuit breaker changed state");
      forward?.(event, payload);
    };
    if (config.baseUrl) {
      const base = new URL(config.baseUrl);
      // Paths resolve under the base's last segment as a folder: "/v1" and "/v1/" mean the same.
      if (!base.pathname.endsWith("/")) base.pathname = `${base.pathname}/`;
      this.#base = base;
    }
    this.#allowHosts = config.allowHosts.map((p) => parseHostPattern(p) as HostPattern);
    this.#allowPrivate = config.allowPrivateHosts.map((p) => parseHostPattern(p) as HostPattern);
    this.#configHeaderNames = new Set(Object.keys(config.headers).map((h) => h.toLowerCase()));
    this.#fetchArgs = fetchArgsSchema(config.methods);
    const tools: Tool[] = [];
    if (config.fetchTool) tools.push(this.#fetchTool());
    for (const endpoint of config.endpoints) {
      this.#endpoints.set(endpoint.name, { config: endpoint, validate: ajv().compile(endpoint.inputSchema) });
      tools.push(endpointTool(endpoint));
    }
    this.#catalog = { tools, resources: [], resourceTemplates: [], prompts: [] };
  }

  get state(): BackendState {
    return this.#state;
  }

  async start(events: BackendEvents): Promise<void> {
    this.#events = events;
    // Nothing to connect yet: pools open on first use, per origin.
    this.#setState("up");
  }

  catalog(): BackendCatalog {
    return this.#catalog;
  }

  async callTool(call: ToolCall, ctx: CallContext): Promise<CallToolResult> {
    // A retry's note must not describe an earlier attempt.
    ctx.notes.delete(NOTE_ERROR_DETAIL);
    try {
      const request =
        call.tool === "fetch" && this.#config.fetchTool
          ? this.#fetchRequest(call.args)
          : this.#endpointRequest(call);
      const answer = await this.#exchange(withTraceContext(request, ctx.meta), call.tool, ctx.signal);
      return this.#result(answer, request.errorOnStatus);
    } catch (error) {
      const detail = detailOf(error);
      // The caller gets the class of the failure; what it hides goes to the audit record.
      if (detail !== undefined) ctx.notes.set(NOTE_ERROR_DETAIL, detail);
      return asResult(call.tool, error);
    }
  }

  async readResource(uri: string): Promise<ReadResourceResult> {
    throw noResource(this.name, "http", uri);
  }

  async getPrompt(name: string): Promise<GetPromptResult> {
    throw noPrompt(this.name, "http", name);
  }

  async health(signal: AbortSignal): Promise<HealthResult> {
    const open = [...this.#origins.values()]
      .filter((o) => o.breaker && o.breaker.state !== "closed")
      .map((o) => ({ origin: o.origin, state: o.breaker?.state }));
    if (this.#config.healthPath !== undefined && this.#base) {
      const started = performance.now();
      try {
        const url = this.#underBase(this.#config.healthPath);
        const answer = await this.#exchange(
          { method: "GET", url, headers: {}, body: undefined, errorOnStatus: true },
          "health",
          signal,
        );
        const latencyMs = performance.now() - started;
        if (answer.status >= 200 && answer.status < 300) {
          return { status: open.length > 0 ? "degraded" : "healthy", latencyMs, data: { origins: open } };
        }
        return { status: "unhealthy", latencyMs, detail: `GET ${url.href} answered HTTP ${answer.status}` };
      } catch (error) {
        return { status: "unhealthy", detail: `health check failed: ${describeError(error)}` };
      }
    }
    if (open.length > 0) {
      return {
        status: "degraded",
        detail: `circuit not closed for ${open.map((o) => `${o.origin} (${o.state})`).join(", ")}`,
        data: { origins: open },
      };
    }
    return { status: "healthy", data: { origins: this.#origins.size } };
  }

  async close(): Promise<void> {
    const pools = [...this.#origins.values()].map((o) => o.pool);
    this.#origins.clear();
    await Promise.all(pools.map((pool) => pool.close().catch(() => undefined)));
    this.#setState("stopped");
  }

  /** Open pools by origin, for tests and diagnostics. */
  origins(): readonly string[] {
    return [...this.#origins.keys()];
  }

  // --- building requests ---------------------------------------------------------------------------

  #fetchTool(): Tool {
    const c = this.#config;
    const scope = [
      this.#base ? `paths under ${this.#base.href} (argument "path")` : undefined,
      c.allowHosts.length === 0
        ? undefined
        : `absolute URLs on ${c.allowHosts.includes("*") ? "any public host" : c.allowHosts.join(", ")} (argument "url")`,
    ]
      .filter(Boolean)
      .join("; and ");
    const writes = c.methods.some((m) => !["GET", "HEAD", "OPTIONS"].includes(m));
    return {
      name: "fetch",
      description:
        `Sends an HTTP request and returns the status and body (JSON bodies also as structured content). ` +
        `Reaches ${scope}${c.allowHttp ? "" : "; https only"}. Bodies over ${c.maxResponseBytes} bytes are refused.`,
      inputSchema: toInputSchema(this.#fetchArgs),
      annotations: {
        title: `HTTP request (${this.name})`,
        readOnlyHint: !writes,
        destructiveHint: writes,
        idempotentHint: !writes,
        openWorldHint: true,
      },
    };
  }

  #fetchRequest(raw: Args): OutgoingRequest {
    const parsed = this.#fetchArgs.safeParse(raw);
    if (!parsed.success) {
      throw new InvalidArguments(
        `Invalid arguments for "fetch" on backend "${this.name}": ${z.prettifyError(parsed.error)}`,
      );
    }
    const args = parsed.data;
    let url: URL;
    if (args.path !== undefined) {
      if (!this.#base) {
        throw new InvalidArguments(
          `Backend "${this.name}" has no baseUrl, so "path" cannot be used; pass an absolute "url" on an allowed host.`,
        );
      }
      url = this.#underBase(args.path);
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

  #endpointRequest(call: ToolCall): OutgoingRequest {
    const entry = this.#endpoints.get(call.tool);
    if (!entry) {
      throw new GatewayError("unknown_tool", `Backend "${this.name}" has no tool "${call.tool}".`, {
        data: { server: this.name, tool: call.tool },
      });
    }
    const { config: endpoint, validate } = entry;
    if (!validate(call.args)) {
      const problems = (validate.errors ?? [])
        .map((e) => `${e.instancePath || "arguments"} ${e.message ?? "is invalid"}`)
        .join("; ");
      throw new InvalidArguments(
        `Invalid arguments for "${call.tool}" on backend "${this.name}": ${problems}.`,
      );
    }
    const args = call.args;
    const path = endpoint.path.replace(PLACEHOLDER, (_, name: string) => {
      const value = args[name];
      if (value === undefined) {
        throw new InvalidArguments(
          `Tool "${call.tool}" needs argument "${name}" (it is part of the URL path).`,
        );
      }
      return encodePathParam(name)(scalarText(value, `Argument "${name}"`));
    });
    const url = this.#underBase(path);
    for (const [key, template] of Object.entries(endpoint.query)) {
      const whole = /^\{([A-Za-z_][A-Za-z0-9_]*)\}$/.exec(template);
      const value = whole ? args[whole[1] as string] : undefined;
      if (whole && Array.isArray(value)) {
        for (const item of value) url.searchParams.append(key, scalarText(item, `Query "${key}"`));
        continue;
      }
      const text = interpolate(template, args, (t) => t, `Query "${key}"`);
      if (text !== undefined) url.searchParams.append(key, text);
    }
    const headers: Record<string, string> = {};
    for (const [name, template] of Object.entries(endpoint.headers)) {
      const text = interpolate(template, args, (t) => t, `Header "${name}"`);
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
    method: Method,
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

  /** `path` under the base URL; a path that climbs out of it is refused when the scope is checked. */
  #underBase(path: string): URL {
    const base = this.#base as URL;
    // Leading slashes would make "//evil.example" a different host; paths are always relative here.
    const relative = path.replace(/^[/\\]+/, "");
    try {
      return new URL(relative, base);
    } catch {
      throw new InvalidArguments(`"${path}" is not a valid path under ${base.href}.`);
    }
  }

  /**
   * Throws `forbidden` unless config allows `url`'s scheme and host. Makes no network call. For a
   * redirect hop (`redirect` names it) the message never shows the target, which the server chose.
   */
  #checkScope(url: URL, redirect?: string): void {
    const refuse = (why: string, what: string): never => {
      if (redirect) {
        throw new DetailedError(
          "forbidden",
          `Refused to follow ${redirect} on backend "${this.name}": its target is out of scope (${why}). ` +
            "Request a URL in scope directly.",
          `${redirect} to ${url.href}: ${why}`,
          { data: { server: this.name, reason: "out_of_scope" } },
        );
      }
      throw new GatewayError("forbidden", `Refused ${url.href} on backend "${this.name}": ${why}. ${what}`, {
        data: { server: this.name, url: url.href },
      });
    };
    if (url.protocol !== "https:" && url.protocol !== "http:") {
      refuse(`the scheme ${url.protocol} is not HTTP`, "Use an https:// URL.");
    }
    if (url.protocol === "http:" && !this.#config.allowHttp) {
      refuse("plain http:// is not allowed", "Use https://, or set allowHttp: true in the backend config.");
    }
    if (url.username || url.password) {
      refuse(
        "URLs may not carry credentials",
        "Remove the user:password@ part; credentials go in config headers.",
      );
    }
    const base = this.#base;
    if (base && url.origin === base.origin && `${url.pathname}/`.startsWith(base.pathname)) return;
    if (matchesHostPattern(url, this.#allowHosts)) return;
    refuse(
      base
        ? `it is outside the base URL ${base.href} and its host is not in allowHosts`
        : "its host is not in allowHosts",
      base ? "Use a path under the base URL, or add the host to allowHosts." : "Add the host to allowHosts.",
    );
  }

  // --- sending ---------------------------------------------------------------------------------------

  /**
   * Sends `request`, following redirects one checked hop at a time. Errors name the caller's request
   * and how far its redirects went, never a hop's own URL: a redirect target is the server's choice
   * and may point inside the network. The hop goes to the error's detail.
   */
  async #exchange(request: OutgoingRequest, tool: string, callerSignal: AbortSignal): Promise<Answer> {
    const timeout = AbortSignal.timeout(this.#timeoutMs);
    const signals: Signals = { caller: callerSignal, timeout, any: AbortSignal.any([callerSignal, timeout]) };
    let { method, url, headers, body } = request;
    let redirects = 0;
    const asked = `${request.method} ${request.url.href}`;
    const subject = () => (redirects === 0 ? asked : `${asked} (after ${redirects} redirect(s))`);
    try {
      for (; ; redirects++) {
        const hop = redirects === 0 ? undefined : redirectName(request, redirects);
        this.#checkScope(url, hop);
        const sign = this.#config.signRequests;
        const sent =
          sign && url.origin === request.url.origin
            ? {
                ...headers,
                ...signOutbound({ method, url: url.href, body, keyId: sign.keyId, secret: sign.secret }),
              }
            : headers;
        const answer = await this.#send(
          { method, url, headers: sent, body, redirect: hop, subject: subject() },
          tool,
          signals,
        );
        const location = headerValue(answer.headers.location);
        if (!REDIRECTS.has(answer.status) || this.#config.maxRedirects === 0 || location === undefined) {
          return { ...answer, method, url, redirects };
        }
        if (redirects >= this.#config.maxRedirects) {
          throw new DetailedError(
            "backend_error",
            `${asked} on backend "${this.name}" redirected more than maxRedirects ` +
              `(${this.#config.maxRedirects}) times; request the final URL directly or raise maxRedirects.`,
            `${method} ${url.href} redirected again, to ${location}`,
            { data: { server: this.name, url: request.url.href } },
          );
        }
        let next: URL;
        try {
          next = new URL(location, url);
        } catch {
          throw new DetailedError(
            "backend_error",
            `${subject()} on backend "${this.name}" redirected to something that is not a valid URL; ` +
              "request another URL.",
            `${method} ${url.href} redirected to "${location}"`,
            { data: { server: this.name, url: request.url.href } },
          );
        }
        next.hash = "";
        if (next.origin !== url.origin) {
          // Credentials were meant for the origin that was asked, not for wherever it points to.
          headers = Object.fromEntries(
            Object.entries(headers).filter(
              ([name]) => !CREDENTIAL_HEADERS.has(name) && !this.#configHeaderNames.has(name),
            ),
          );
        }
        // As browsers do: 303 always, and 301/302 after POST, continue as a GET without body.
        if (
          answer.status === 303 ||
          ((answer.status === 301 || answer.status === 302) && method === "POST")
        ) {
          if (method !== "HEAD") method = "GET";
          body = undefined;
          const { "content-type": _type, ...rest } = headers;
          headers = rest;
        }
        url = next;
      }
    } catch (error) {
      const failure = this.#stopped(error, callerSignal, timeout, subject(), `${method} ${url.href}`);
      const detail = detailOf(failure);
      if (detail !== undefined) {
        const level = failure instanceof GatewayError && failure.code === "cancelled" ? "debug" : "warn";
        this.#log[level]({ tool, code: (failure as GatewayError).code, detail }, describeError(failure));
      }
      throw failure;
    }
  }

  /** A cancel or a timeout as the caller's error; any other failure as it is. */
  #stopped(error: unknown, caller: AbortSignal, timeout: AbortSignal, subject: string, hop: string): unknown {
    if (caller.aborted) {
      return new DetailedError(
        "cancelled",
        `The request ${subject} on backend "${this.name}" was cancelled by the client.`,
        `cancelled during ${hop}`,
        { data: { server: this.name }, cause: error },
      );
    }
    if (timeout.aborted) {
      return new DetailedError(
        "timeout",
        `${subject} on backend "${this.name}" got no complete answer within ${this.#timeoutMs} ms; ` +
          "try again later, ask for less data, or raise timeoutMs.",
        `timed out during ${hop}`,
        { data: { server: this.name, timeoutMs: this.#timeoutMs }, cause: error },
      );
    }
    return error;
  }

  /**
   * One request to one origin (scope already checked): addresses are checked and pinned first.
   * `subject` is how errors name the request to the caller; the hop's URL goes to their detail only.
   */
  async #send(
    hop: {
      method: Method;
      url: URL;
      headers: Record<string, string>;
      body: string | undefined;
      /** Set for a redirect hop: how messages name it. */
      redirect: string | undefined;
      subject: string;
    },
    tool: string,
    signals: Signals,
  ): Promise<{ status: number; headers: Answer["headers"]; body: Buffer }> {
    const { method, url, headers, body, subject } = hop;
    const origin = this.#origin(url);
    const ticket = this.#enter(origin, tool, hop.redirect);
    // "ignore" until the origin has said something: refusals and cancels tell nothing about its health.
    let outcome = "ignore";
    try {
      await this.#pin(origin, url, hop.redirect, signals.any);
      let response: Awaited<ReturnType<Pool["request"]>>;
      try {
        response = await origin.pool.request({
          path: `${url.pathname}${url.search}`,
          method,
          headers,
          body: body ?? null,
          signal: signals.any,
        });
      } catch (error) {
        if (signals.any.aborted) throw error;
        // The class only: undici's message names the address and port it tried.
        outcome = connectionFailure(error);
        throw new DetailedError(
          "backend_unavailable",
          `${subject} on backend "${this.name}" failed before an answer: ${outcome}. ` +
            "Check that the host is up and reachable, then try again.",
          `${method} ${url.href}: ${fullMessage(error)}`,
          { data: { server: this.name, reason: "connection" }, cause: error },
        );
      }
      const status = response.statusCode;
      outcome = status >= 500 ? `HTTP ${status} ${STATUS_CODES[status] ?? ""}`.trimEnd() : "success";
      if (REDIRECTS.has(status) && response.headers.location !== undefined) {
        await response.body.dump({ limit: 64 * 1024 }).catch(() => undefined);
        return { status, headers: response.headers, body: Buffer.alloc(0) };
      }
      const limit = this.#config.maxResponseBytes;
      const declared = method === "HEAD" ? 0 : Number(headerValue(response.headers["content-length"]) ?? 0);
      let data: Buffer | undefined;
      if (declared > limit) {
        discard(response.body);
      } else {
        try {
          data = await readLimited(response.body, limit);
        } catch (error) {
          if (signals.any.aborted) throw error;
          outcome = connectionFailure(error);
          throw new DetailedError(
            "backend_unavailable",
            `The answer to ${subject} on backend "${this.name}" broke off: ${outcome}. Try again.`,
            `${method} ${url.href}: ${fullMessage(error)}`,
            { data: { server: this.name, reason: "connection" }, cause: error },
          );
        }
      }
      if (data === undefined) {
        throw new GatewayError(
          "backend_error",
          `The answer to ${subject} (HTTP ${status}) on backend "${this.name}" is larger than ` +
            `maxResponseBytes (${limit} bytes), so it was not read to the end; ask for less (a filter, a page, ` +
            "a range) or raise maxResponseBytes.",
          { data: { server: this.name, maxResponseBytes: limit } },
        );
      }
      return { status, headers: response.headers, body: data };
    } catch (error) {
      if (signals.timeout.aborted && !signals.caller.aborted) outcome = "timeout";
      throw error;
    } finally {
      if (ticket && origin.breaker) {
        if (outcome === "success") origin.breaker.success(ticket);
        else if (outcome === "ignore") origin.breaker.ignore(ticket);
        else origin.breaker.failure(ticket, outcome);
      }
    }
  }

  /** Passes the origin's breaker; an open one at a redirect's target is not named to the caller. */
  #enter(origin: OriginState, tool: string, redirect: string | undefined) {
    try {
      return origin.breaker?.enter(this.#binding(tool));
    } catch (error) {
      if (!redirect || !(error instanceof CircuitOpen)) throw error;
      this.#log.debug({ tool, origin: origin.origin }, "a redirect led to an origin whose circuit is open");
      throw new CircuitOpen(
        `${redirect} on backend "${this.name}" leads to a server that is failing, so it was not followed: ` +
          `its circuit breaker is open until ${new Date(error.retryAt).toISOString()}; try again then.`,
        error.retryAt,
        { server: this.name },
      );
    }
  }

  /**
   * Resolves and checks the origin's host, unless it was checked within PIN_TTL_MS. Only checked
   * addresses are ever pinned, so reusing them cannot reach anything the check would refuse now.
   */
  async #pin(
    origin: OriginState,
    url: URL,
    redirect: string | undefined,
    signal: AbortSignal,
  ): Promise<void> {
    if (origin.pinned.length > 0 && performance.now() - origin.pinnedAt < PIN_TTL_MS) return;
    origin.pinned = await checkHost(url.hostname, {
      resolve: this.#resolve,
      allowPrivate: matchesHostPattern(url, this.#allowPrivate),
      signal,
      owner: `backend "${this.name}"`,
      redirect,
    });
    origin.pinnedAt = performance.now();
  }

  #origin(url: URL): OriginState {
    const key = url.origin;
    const existing = this.#origins.get(key);
    if (existing) {
      // Most recently used last, so eviction takes the idlest.
      this.#origins.delete(key);
      this.#origins.set(key, existing);
      return existing;
    }
    const config = this.#config;
    const state: OriginState = {
      origin: key,
      pinned: [],
      pinnedAt: 0,
      breaker: config.circuitBreaker
        ? new CircuitBreaker(
            `${this.name} (${key})`,
            { ...config.circuitBreaker, countIsError: false },
            this.#now,
            this.#emit,
          )
        : undefined,
      pool: new Pool(key, {
        connections: config.connections,
        connect: {
          timeout: config.connectTimeoutMs,
          lookup: pinnedLookup(() => state.pinned),
        },
      }),
    };
    this.#origins.set(key, state);
    if (this.#origins.size > MAX_ORIGINS) {
      const [oldest] = this.#origins.values();
      if (oldest) {
        this.#origins.delete(oldest.origin);
        void oldest.pool.close().catch(() => undefined);
      }
    }
    return state;
  }

  #binding(tool: string): ToolBinding {
    const definition = this.#catalog.tools.find((t) => t.name === tool) ?? {
      name: tool,
      inputSchema: { type: "object" },
    };
    return { exposedName: tool, server: this.name, tool: definition };
  }

  // --- results ---------------------------------------------------------------------------------------

  #result(answer: Answer, errorOnStatus: boolean): CallToolResult {
    const { status, url, method, headers, body } = answer;
    const contentType = headerValue(headers["content-type"]);
    const lines = [
      `HTTP ${status} ${STATUS_CODES[status] ?? ""}`.trimEnd() +
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
    const textual = contentType ? TEXT_TYPES.test(contentType) : looksLikeText(body);
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
    const data = body.toString("base64");
    const head = {
      type: "text" as const,
      text: `${lines.join("\n")}\n\n(binary body, ${body.length} bytes)`,
    };
    const media = mimeType.startsWith("image/")
      ? { type: "image" as const, data, mimeType }
      : mimeType.startsWith("audio/")
        ? { type: "audio" as const, data, mimeType }
        : { type: "resource" as const, resource: { uri: url.href, mimeType, blob: data } };
    return { content: [head, media], ...(isError ? { isError } : {}) };
  }

  #setState(state: BackendState, reason?: string): void {
    if (this.#state === state) return;
    this.#state = state;
    this.#events?.state(state, reason);
  }
}

/**
 * Refusals the model can act on (a URL out of scope, an internal address, a body too large) become
 * isError results. Everything the pipeline must see is thrown on: bad arguments become JSON-RPC
 * errors, and outages, timeouts, open circuits and cancels reach its retry, breaker and fallback.
 */
const THROWN: ReadonlySet<string> = new Set([
  "invalid_arguments",
  "unknown_tool",
  "backend_unavailable",
  "timeout",
  "cancelled",
  "circuit_open",
]);

/**
 * How messages name a redirect hop: by the caller's request, which the caller knows, never by the
 * target, which the server chose.
 */
function redirectName(request: OutgoingRequest, hop: number): string {
  return hop === 1
    ? `the redirect from ${request.url.href}`
    : `redirect ${hop} of the chain from ${request.url.href}`;
}

function asResult(tool: string, error: unknown): CallToolResult {
  if (error instanceof GatewayError && !THROWN.has(error.code)) return errorResult(tool, error);
  throw error;
}

// ---------------------------------------------------------------------------------------------------
// Tool definitions

const queryValue = z.union([z.string(), z.number(), z.boolean()]);

interface FetchArgs {
  method: Method;
  url?: string | undefined;
  path?: string | undefined;
  headers?: Record<string, string> | undefined;
  query?: Record<string, string | number | boolean | (string | number | boolean)[]> | undefined;
  body?: unknown;
}

function fetchArgsSchema(methods: readonly Method[]): z.ZodType<FetchArgs> {
  return z
    .strictObject({
      method: z
        .enum(methods as [Method, ...Method[]])
        .default(methods.includes("GET") ? "GET" : (methods[0] as Method))
        .describe("The HTTP method."),
      url: z
        .string()
        .optional()
        .describe("An absolute URL on an allowed host, e.g. https://api.example.com/items."),
      path: z.string().optional().describe("A path under the base URL, e.g. /items/42 (instead of url)."),
      headers: z.record(z.string(), z.string()).optional().describe("Request headers."),
      query: z
        .record(z.string(), z.union([queryValue, z.array(queryValue)]))
        .optional()
        .describe("Query parameters, added to those in the URL; arrays repeat the key."),
      body: z
        .unknown()
        .optional()
        .describe("The request body: a string is sent as is, any other JSON value as application/json."),
    })
    .refine((a) => (a.url === undefined) !== (a.path === undefined), {
      error: 'pass exactly one of "url" and "path"',
    });
}

function toInputSchema(schema: z.ZodType): Tool["inputSchema"] {
  const { $schema: _dialect, ...json } = z.toJSONSchema(schema, { io: "input", unrepresentable: "any" });
  return json as Tool["inputSchema"];
}

function endpointTool(endpoint: HttpEndpointConfig): Tool {
  const writes = !["GET", "HEAD", "OPTIONS"].includes(endpoint.method);
  return {
    name: endpoint.name,
    description: endpoint.description ?? `${endpoint.method} ${endpoint.path}`,
    inputSchema: { type: "object", ...endpoint.inputSchema } as Tool["inputSchema"],
    annotations: {
      readOnlyHint: !writes,
      destructiveHint: writes,
      idempotentHint: !writes || endpoint.method === "PUT" || endpoint.method === "DELETE",
      openWorldHint: true,
    },
  };
}

/** The call's W3C trace context as headers, so the API's own traces join the gateway's. */
function withTraceContext(
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

export function createHttpBackend(
  name: string,
  config: HttpBackendConfig & { readonly timeoutMs?: number },
  logger: Logger,
  options: HttpBackendOptions = {},
): HttpBackend {
  return new HttpBackend(name, config, logger, options);
}
