/**
 * Config blocks of the built-in backends, one schema per `type`, for the top-level `backends:` map
 * (next to `mcpServers`, so that `type: "http"` there keeps meaning a remote MCP server).
 *
 * Each schema holds only what its backend needs. The extensions every server shares (enabled,
 * prefix, tools, timeoutMs, policies) are merged in by config/schema.ts, so they are not repeated
 * here. Objects are strict, like the rest of the config: a misspelt key is an error with its path.
 * Cross-field checks are refinements on the object itself (not transforms), so each schema can still
 * be extended and used as a member of a discriminated union on `type`.
 *
 * Secrets: URLs may hold passwords, so no message here ever repeats a URL.
 */
import { Ajv } from "ajv";
import { z } from "zod";
import { circuitBreakerSchema } from "../policies/config.ts";
import { parseHostPattern } from "./ssrf.ts";

const positiveInt = () => z.number().int().positive();

/** A URL with one of `protocols`; the message names the protocols, never the value (it may hold a password). */
function urlWith(protocols: readonly string[], example: string) {
  const allowed = (value: string) => URL.canParse(value) && protocols.includes(new URL(value).protocol);
  const error = `must be a ${protocols.map((p) => `${p}//`).join(" or ")} URL, e.g. ${example}`;
  return z.string().refine(allowed, { error });
}

// ─── postgres ─────────────────────────────────────────────────────────────────────────────────

export const postgresPoolSchema = z.strictObject({
  /** Most connections open at once (pg `max`). Calls beyond it wait for a free one. Default 10. */
  max: positiveInt().max(1_000).default(10),
  /** An idle connection is closed after this long, in ms (pg `idleTimeoutMillis`). Default 10 000. */
  idleTimeoutMs: positiveInt().default(10_000),
  /**
   * How long opening a connection, or waiting for a free one when all `max` are busy, may take, in ms
   * (pg `connectionTimeoutMillis`). Default 5 000.
   */
  connectTimeoutMs: positiveInt().default(5_000),
});

export const postgresBackendSchema = z
  .strictObject({
    type: z.literal("postgres"),
    /**
     * postgres://user:password@host:port/database (postgresql:// too; `?sslmode=` as libpq reads it).
     * Default: none, and the backend runs an embedded PostgreSQL (PGlite) in the gateway's process,
     * with sample data, so a quick start needs no database server.
     */
    url: urlWith(["postgres:", "postgresql:"], "postgres://app@127.0.0.1:5432/app").optional(),
    /**
     * Embedded database only: the directory PGlite keeps its files in, created when missing. A
     * read-only backend loads it at start and serves a copy in memory, so that no SQL can write to
     * the folder. Default: none, in memory (lost when the gateway stops).
     */
    dataDir: z.string().min(1).optional(),
    /**
     * Embedded database only: load the sample schema (customers, products, orders) when the database
     * has no tables of its own yet. Default true.
     */
    sampleData: z.boolean().default(true),
    /**
     * Every statement runs in a transaction PostgreSQL itself holds read-only (`BEGIN READ ONLY`), so
     * no write of any shape gets through. Set false to allow writes. Default true.
     */
    readOnly: z.boolean().default(true),
    /**
     * Server databases only. UNSAFE. A read-only transaction keeps the data unchanged, not the server:
     * a role that is a superuser, a member of pg_execute_server_program, pg_read_server_files,
     * pg_write_server_files or pg_signal_backend, or that may execute functions such as pg_read_file
     * or pg_reload_conf, lets SQL sent to the query tool run programs and read files on the database
     * host, reload its configuration or end other sessions. A read-only backend connected as such a
     * role refuses to serve, and says how to create a role that can only read; `true` serves anyway
     * (with a warning at every start). The embedded database has no host to reach and is not checked.
     * Default false.
     */
    allowPrivilegedRole: z.boolean().default(false),
    /** The connection pool (server databases; the embedded one has a single connection). Default {}. */
    pool: postgresPoolSchema.prefault({}),
    /**
     * A statement that runs longer than this, in ms, is cancelled on the server: PostgreSQL's own
     * `statement_timeout` is set in every transaction, and the gateway cancels the statement itself
     * (and closes its connection) if SQL lifted that setting. The embedded database cannot enforce
     * it. Default 30 000.
     */
    statementTimeoutMs: positiveInt().default(30_000),
    /** Rows returned per statement; more are cut off and the result says `truncated: true`. Default 1 000. */
    maxRows: positiveInt().max(1_000_000).default(1_000),
    /**
     * Size of the rows returned by one call, in bytes of JSON; rows past it are cut off and the result
     * says `truncated: true`. Default 262 144 (256 KiB).
     */
    maxResultBytes: positiveInt().default(262_144),
    /** Statements one `transaction` call may hold. Default 100. */
    maxStatements: positiveInt().max(10_000).default(100),
  })
  .superRefine((config, ctx) => {
    if (config.url === undefined || config.dataDir === undefined) return;
    ctx.addIssue({
      code: "custom",
      path: ["dataDir"],
      message: "dataDir is for the embedded database only; remove it, or remove url to use the embedded one",
    });
  });

export type PostgresBackendConfig = z.output<typeof postgresBackendSchema>;
export type PostgresBackendInput = z.input<typeof postgresBackendSchema>;

// ─── redis ────────────────────────────────────────────────────────────────────────────────────

/**
 * Write commands a Redis backend can be allowed, each exposed as a tool of the same name when listed
 * in `allowCommands` and `readOnly` is false. A closed list: each has its own tool schema, and the
 * backend knows which of its arguments are keys, which keyPrefix containment depends on.
 */
export const REDIS_WRITE_COMMANDS = [
  "set",
  "del",
  "expire",
  "persist",
  "incr",
  "hset",
  "hdel",
  "lpush",
  "rpush",
  "sadd",
  "srem",
  "zadd",
  "zrem",
] as const;

export type RedisWriteCommand = (typeof REDIS_WRITE_COMMANDS)[number];

export const redisBackendSchema = z
  .strictObject({
    type: z.literal("redis"),
    /** redis://[user:password@]host[:port][/db], or rediss:// for TLS. Required. */
    url: urlWith(["redis:", "rediss:"], "redis://127.0.0.1:6379"),
    /**
     * The backend sees only keys under this prefix: tools take and return keys without it, and SCAN
     * patterns match after it. Default "" (every key of the database).
     */
    keyPrefix: z.string().default(""),
    /** Only the read tools are offered. Set false, and list commands in allowCommands, for writes. Default true. */
    readOnly: z.boolean().default(true),
    /**
     * Write commands offered as tools when readOnly is false, e.g. ["set", "del", "expire"].
     * Default [] (none).
     */
    allowCommands: z
      .array(
        z.enum(REDIS_WRITE_COMMANDS, {
          error: (issue) =>
            `${JSON.stringify(issue.input)} is not a write command Switchboard offers; pick from ${REDIS_WRITE_COMMANDS.join(", ")}`,
        }),
      )
      .default([]),
    /**
     * Elements one call returns at most: members of a set, fields of a hash, list and sorted-set
     * ranges, keys of mget and scan. More are cut off and the result says `truncated: true`.
     * Default 1 000.
     */
    maxItems: positiveInt().max(100_000).default(1_000),
    /** Bytes of one string value returned; longer values are cut and marked truncated. Default 65 536. */
    maxValueBytes: positiveInt().default(65_536),
    /** How long connecting may take, in ms. Default 5 000. */
    connectTimeoutMs: positiveInt().default(5_000),
    /** A command unanswered this long fails and the connection is replaced, in ms. Default 5 000. */
    commandTimeoutMs: positiveInt().default(5_000),
  })
  .superRefine((config, ctx) => {
    if (!config.readOnly || config.allowCommands.length === 0) return;
    ctx.addIssue({
      code: "custom",
      path: ["allowCommands"],
      message: "write commands need readOnly: false; set it, or remove allowCommands",
    });
  });

export type RedisBackendConfig = z.output<typeof redisBackendSchema>;
export type RedisBackendInput = z.input<typeof redisBackendSchema>;

// ─── http and filesystem (maintained with src/backends/http.ts and src/backends/filesystem.ts) ───
// Their schemas go here: `httpBackendSchema` (type: "http") and `filesystemBackendSchema`
// (type: "filesystem"), in the same style. Keep this section last; the postgres and redis sections
// above belong to postgres.ts and redis.ts.

export const HTTP_METHODS = ["GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"] as const;
export type HttpMethod = (typeof HTTP_METHODS)[number];
const httpMethodSchema = z.enum(HTTP_METHODS);

const headerMapSchema = z.record(
  z.string().regex(/^[!#$%&'*+.^_`|~0-9A-Za-z-]+$/, { error: "is not a valid HTTP header name" }),
  z.string(),
);

const hostPatternSchema = z.string().refine((value) => parseHostPattern(value) !== undefined, {
  error:
    'must be a host name, "*.domain", an IP literal or "*", with an optional ":port" (no scheme, no path), ' +
    'e.g. "api.example.com", "*.example.com:8443" or "[2001:db8::1]"',
});

/** `{param}` in endpoint templates; `{$args}` (in a body) stands for all arguments. */
export const TEMPLATE_PLACEHOLDER = /\{(\$args|[A-Za-z_][A-Za-z0-9_]*)\}/g;

export const httpEndpointSchema = z.strictObject({
  /** The tool's name on this backend (the server prefix is added as for any tool). Required. */
  name: z
    .string()
    .regex(/^[a-zA-Z0-9_-]{1,64}$/, { error: 'may only contain letters, digits, "_" and "-" (1-64)' }),
  /** Shown to the model. Default: the method and path. */
  description: z.string().optional(),
  /** JSON Schema of the tool's arguments. Default: an object with no properties. */
  inputSchema: z.record(z.string(), z.unknown()).default({ type: "object", properties: {} }),
  /** Default "GET". */
  method: httpMethodSchema.default("GET"),
  /** Under `baseUrl`, e.g. "/users/{id}"; each `{param}` is filled from the arguments, URL-encoded. Required. */
  path: z.string().min(1),
  /** Query parameters; values may be or contain `{param}` (a missing optional argument drops the key). Default {}. */
  query: z.record(z.string(), z.string()).default({}),
  /** Extra request headers; values may contain `{param}`. Default {}. */
  headers: headerMapSchema.default({}),
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
    baseUrl: urlWith(["https:", "http:"], "https://api.example.com/v1/").optional(),
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
    headers: headerMapSchema.default({}),
    /** Methods the `fetch` tool may use. Default: all of GET HEAD POST PUT PATCH DELETE OPTIONS. */
    methods: z
      .array(httpMethodSchema)
      .min(1)
      .default([...HTTP_METHODS]),
    /** Keep-alive connections per origin (one undici Pool per origin). Default 10. */
    connections: positiveInt().max(1_024).default(10),
    /** Time to establish a connection (TCP and TLS), in ms. Default 10 000. */
    connectTimeoutMs: positiveInt().default(10_000),
    /** Largest response body read, in bytes; the read is aborted past it. Default 1 048 576 (1 MiB). */
    maxResponseBytes: positiveInt().default(1_048_576),
    /** Redirects followed, each checked like the first request; 0 returns a 3xx as it is. Default 5. */
    maxRedirects: z.number().int().min(0).max(20).default(5),
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
        keyId: z.string().min(1),
        secret: z.string().min(32, { error: "must be at least 32 characters" }),
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

export const filesystemBackendSchema = z.strictObject({
  type: z.literal("filesystem"),
  /** The folder exposed; a relative path resolves against the working directory. Must exist. Required. */
  root: z.string().min(1),
  /** Only list, read, stat and search; false adds write, move and delete. Default true. */
  readOnly: z.boolean().default(true),
  /** Most bytes one read returns (larger files are read in ranges); also the largest file searched by content. Default 1 048 576 (1 MiB). */
  maxReadBytes: positiveInt().default(1_048_576),
  /** Most bytes one write takes. Default 10 485 760 (10 MiB). */
  maxWriteBytes: positiveInt().default(10_485_760),
  /** Entries one listing returns. Default 1 000. */
  maxListEntries: positiveInt().default(1_000),
  search: z
    .strictObject({
      /** Matches one search returns at most (a caller may ask for fewer). Default 100. */
      maxResults: positiveInt().default(100),
      /** Files one search looks at before it stops and says so. Default 10 000. */
      maxFiles: positiveInt().default(10_000),
      /** Folder names a search never descends into. Default [".git", "node_modules"]. */
      skipDirs: z.array(z.string().min(1)).default([".git", "node_modules"]),
    })
    .prefault({}),
});

export type FilesystemBackendConfig = z.output<typeof filesystemBackendSchema>;
export type FilesystemBackendInput = z.input<typeof filesystemBackendSchema>;

// ─── end of http and filesystem ───
