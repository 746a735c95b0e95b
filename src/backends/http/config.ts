/**
 * The HTTP backend's config block (`type: "http"` under `backends:`, next to `mcpServers`, so that
 * `type: "http"` there keeps meaning a remote MCP server). The extensions every server shares are
 * merged in by config/schema.ts.
 */
import { Ajv } from "ajv";
import { z } from "zod";
import { circuitBreakerSchema } from "../../policies/config.ts";
import {
  durationMs,
  headerMap,
  hmacSecret,
  httpUrl,
  nonEmpty,
  nonNegativeInt,
  positiveInt,
  toolName,
} from "../config.ts";
import { parseHostPattern } from "./ssrf.ts";

export const HTTP_METHODS = ["GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"] as const;
export type HttpMethod = (typeof HTTP_METHODS)[number];
const httpMethodSchema = z.enum(HTTP_METHODS);

const hostPatternSchema = z.string().refine((value) => parseHostPattern(value) !== undefined, {
  error:
    'must be a host name, "*.domain", an IP literal or "*", with an optional ":port" (no scheme, no path), ' +
    'e.g. "api.example.com", "*.example.com:8443" or "[2001:db8::1]"',
});

/** `{param}` in endpoint templates; `{$args}` (in a body) stands for all arguments. */
export const TEMPLATE_PLACEHOLDER = /\{(\$args|[A-Za-z_][A-Za-z0-9_]*)\}/g;

export const httpEndpointSchema = z.strictObject({
  /** The tool's name on this backend (the server prefix is added as for any tool). Required. */
  name: toolName(),
  /** Shown to the model. Default: the method and path. */
  description: z.string().optional(),
  /** JSON Schema of the tool's arguments. Default: an object with no properties. */
  inputSchema: z.record(z.string(), z.unknown()).default({ type: "object", properties: {} }),
  /** Default "GET". */
  method: httpMethodSchema.default("GET"),
  /** Under `baseUrl`, e.g. "/users/{id}"; each `{param}` is filled from the arguments, URL-encoded. Required. */
  path: nonEmpty(),
  /** Query parameters; values may be or contain `{param}` (a missing optional argument drops the key). Default {}. */
  query: z.record(z.string(), z.string()).default({}),
  /** Extra request headers; values may contain `{param}`. Default {}. */
  headers: headerMap().default({}),
  /**
   * JSON body template: a string that is exactly `{param}` becomes that argument's value (any JSON
   * type), `{$args}` all the arguments; placeholders inside longer strings are interpolated.
   * Default: no body.
   */
  body: z.unknown().optional(),
  /** Overrides the backend's `errorOnStatus` for this tool. Default: the backend's. */
  errorOnStatus: z.boolean().optional(),
});

/** The per-origin breaker takes the pipeline breaker's options, minus `countIsError` (the status decides). */
const originBreakerSchema = circuitBreakerSchema.omit({ countIsError: true });

export const httpBackendSchema = z
  .strictObject({
    type: z.literal("http"),
    /**
     * Requests given a `path` go under this URL, and absolute URLs under it are allowed, e.g.
     * "https://api.example.com/v1/". Default: none (then only hosts in `allowHosts`).
     */
    baseUrl: httpUrl("https://api.example.com/v1/").optional(),
    /**
     * More hosts absolute URLs may reach: "api.example.com", "*.example.com" (subdomains only), IP
     * literals, or "*" (any public host), each with an optional ":port" (without one, any port).
     * Default [].
     */
    allowHosts: z.array(hostPatternSchema).default([]),
    /** Allow plain http:// (https only otherwise). Default false. */
    allowHttp: z.boolean().default(false),
    /**
     * Hosts (same patterns) that may resolve to private, loopback, link-local, unique-local or CGNAT
     * addresses; they must be reachable through baseUrl or allowHosts too. Metadata, unspecified,
     * multicast and broadcast addresses stay refused even here. Default [].
     */
    allowPrivateHosts: z.array(hostPatternSchema).default([]),
    /** Sent with every request, over the caller's; dropped when a redirect leaves the origin. Default {}. */
    headers: headerMap().default({}),
    /** Methods the `fetch` tool may use. Default: all of GET HEAD POST PUT PATCH DELETE OPTIONS. */
    methods: z
      .array(httpMethodSchema)
      .min(1)
      .default([...HTTP_METHODS]),
    /** Keep-alive connections per origin (one undici Pool per origin). Default 10. */
    connections: positiveInt().max(1_024).default(10),
    /** Time to establish a connection (TCP and TLS), in ms. Default 10 000. */
    connectTimeoutMs: durationMs().default(10_000),
    /** Largest response body read, in bytes; the read is aborted past it. Default 1 048 576 (1 MiB). */
    maxResponseBytes: positiveInt().default(1_048_576),
    /** Redirects followed, each checked like the first request; 0 returns a 3xx as it is. Default 5. */
    maxRedirects: nonNegativeInt().max(20).default(5),
    /** A status outside 2xx makes the result isError. Default true. */
    errorOnStatus: z.boolean().default(true),
    /** Offer the generic `fetch` tool. Default true. */
    fetchTool: z.boolean().default(true),
    /** Named tools mapped to fixed requests under `baseUrl`. Default []. */
    endpoints: z.array(httpEndpointSchema).default([]),
    /**
     * A circuit breaker per origin: connection failures, timeouts and 5xx answers count as failures;
     * `false` turns it off. Default: the pipeline breaker's defaults (5 failures in a row, open 30 s).
     */
    circuitBreaker: z.union([z.literal(false), originBreakerSchema]).prefault({}),
    /** When set, health checks GET this path under `baseUrl` and expect a 2xx. Default: none (no request). */
    healthPath: z.string().optional(),
    /**
     * Signs every request to the first origin with HMAC-SHA256 (`X-Switchboard-*` headers over the
     * method, URL, body hash, timestamp and nonce), so the API can tell requests came from this
     * gateway. Never sent to another origin a redirect leads to. Default: none.
     */
    signRequests: z
      .strictObject({
        keyId: nonEmpty(),
        secret: hmacSecret(),
      })
      .optional(),
  })
  .superRefine((config, ctx) => {
    const issue = (path: (string | number)[], message: string) =>
      ctx.addIssue({ code: "custom", path, message });
    if (!config.baseUrl && config.allowHosts.length === 0) {
      issue(["baseUrl"], "an http backend needs a baseUrl, or at least one entry in allowHosts");
    }
    if (config.baseUrl && URL.canParse(config.baseUrl)) {
      const base = new URL(config.baseUrl);
      if (base.protocol === "http:" && !config.allowHttp) {
        issue(
          ["baseUrl"],
          "is plain http://; use https://, or set allowHttp: true to allow unencrypted requests",
        );
      }
      if (base.username || base.password || base.search || base.hash) {
        issue(["baseUrl"], "may not hold credentials, a query or a fragment; send credentials in headers");
      }
    }
    if (config.healthPath !== undefined && !config.baseUrl)
      issue(["healthPath"], "needs a baseUrl to resolve against");
    const names = new Set<string>(config.fetchTool ? ["fetch"] : []);
    config.endpoints.forEach((endpoint, i) => {
      if (names.has(endpoint.name)) {
        issue(
          ["endpoints", i, "name"],
          `"${endpoint.name}" is already a tool of this backend${endpoint.name === "fetch" ? " (set fetchTool: false to reuse the name)" : ""}`,
        );
      }
      names.add(endpoint.name);
      if (!config.baseUrl)
        issue(["endpoints", i, "path"], "endpoints need a baseUrl to resolve their paths against");
      const properties = endpoint.inputSchema.properties;
      const declared = properties !== null && typeof properties === "object" ? Object.keys(properties) : [];
      for (const match of endpoint.path.matchAll(TEMPLATE_PLACEHOLDER)) {
        const param = match[1] as string;
        if (param === "$args" || !declared.includes(param)) {
          issue(
            ["endpoints", i, "path"],
            `uses {${param}}, which is not a property of inputSchema; declare it there (paths take single values)`,
          );
        }
      }
      try {
        new Ajv({ strict: false }).compile(endpoint.inputSchema);
      } catch (error) {
        issue(["endpoints", i, "inputSchema"], `is not a valid JSON Schema: ${(error as Error).message}`);
      }
    });
  });

export type HttpBackendConfig = z.output<typeof httpBackendSchema>;
export type HttpBackendInput = z.input<typeof httpBackendSchema>;
export type HttpEndpointConfig = z.output<typeof httpEndpointSchema>;
