/**
 * The config file's shape: the single source of truth for every option and its default.
 *
 * A Claude Desktop or Claude Code `mcpServers` file is a valid config as it is; everything else is a
 * Switchboard extension with a default. Objects are strict so that a misspelt key is an error with
 * its path rather than a setting silently ignored. The loader (load.ts) interpolates `${VAR}` and
 * maps the keys other MCP clients write (client-formats.ts) before this schema runs, so every string
 * here is already final and every server key Switchboard's own.
 */
import picomatch from "picomatch";
import { z } from "zod";
import { auditConfigSchema } from "../audit/config.ts";
import { filesystemBackendSchema } from "../backends/filesystem/config.ts";
import { httpBackendSchema } from "../backends/http/config.ts";
import { postgresBackendSchema } from "../backends/postgres/config.ts";
import { redisBackendSchema } from "../backends/redis/config.ts";
import { gatewayToolsSchema, observabilitySchema, unknownRequiredServers } from "../observability/config.ts";
import { DEFAULT_TIMEOUT_MS, policySetSchema } from "../policies/config.ts";
import { accessSchema, argumentLimitsSchema, authSchema, signingSchema } from "../security/config.ts";
import { checkUpstreamAuth } from "../security/upstream/checks.ts";
import { tokenVaultSchema, upstreamAuthSchema } from "../security/upstream/config.ts";
import { storeConfigSchema } from "../stores/config.ts";
import {
  delayMs,
  durationMs,
  GLOB_OPTIONS,
  glob,
  headerMap,
  httpUrl,
  type LogLevel,
  nonEmpty,
  nonNegativeInt,
  positiveInt,
  serverName,
  text,
  toolPrefix,
} from "./primitives.ts";
import { checkDiscovery, checkProfiles, profilesSchema, searchToolsOn } from "./profiles.ts";
import { checkPinning, gatewaySchema, httpServerSchema, loggingSchema, pinningSchema } from "./settings.ts";

export { gatewaySchema, httpServerSchema, loggingSchema } from "./settings.ts";

export const toolFilterSchema = z.strictObject({
  /**
   * Globs over the server's own tool names; only matching tools are exposed. Default ["*"] (all).
   * An empty list is refused rather than read as "none": to expose nothing, set `enabled: false`.
   */
  include: z
    .array(glob())
    .min(1, { error: 'list at least one glob, or leave include out to expose every tool (default ["*"])' })
    .default(["*"]),
  /** Globs over own names; a tool matching both include and exclude is hidden. Default [] (none). */
  exclude: z.array(glob()).default([]),
  /** Own name -> new name, applied before the prefix; also for prompts. Default {} (no renames). */
  rename: z
    .record(
      nonEmpty("a rename needs the tool's own name as key"),
      nonEmpty("a rename target cannot be empty"),
    )
    .default({}),
  /** Own name -> description that replaces the server's. Default {} (the server's descriptions). */
  descriptions: z.record(nonEmpty("a description needs the tool's own name as key"), z.string()).default({}),
});

/**
 * Backoff between restarts of a stdio server and reconnects of a remote one: the delay starts at
 * `initialDelayMs`, doubles per attempt up to `maxDelayMs`, and resets once the server is up again.
 */
export const restartSchema = z
  .strictObject({
    /** First delay, in ms. Default 500. */
    initialDelayMs: delayMs().default(500),
    /** Longest delay, in ms. Default 30 000. */
    maxDelayMs: delayMs().default(30_000),
    /** Attempts before the server is left down. Default: unlimited (leave it out). */
    maxRestarts: nonNegativeInt().optional(),
  })
  .refine((restart) => restart.initialDelayMs <= restart.maxDelayMs, {
    error: "must be at least initialDelayMs",
    path: ["maxDelayMs"],
  });

/** The backoff of a server whose config leaves `restart` out, for code that makes a backend without one. */
export const RESTART_DEFAULTS = restartSchema.parse({});

/** What every kind of server accepts on top of its transport: Switchboard's extensions. */
const serverExtensions = {
  /** A disabled server is neither started nor listed, and its prefix is free. Default true. */
  enabled: z.boolean().default(true),
  /**
   * Namespace prefix of the server's tools and prompts ("<prefix><separator><tool>"); "" keeps the
   * server's own names. Default: the server's key in mcpServers (filled in after validation).
   */
  prefix: toolPrefix().optional(),
  /** Which tools are exposed and under which names. Default {}: all, under their own names. */
  tools: toolFilterSchema.prefault({}),
  /** Per-call time limit, in ms, unless a `timeout` policy says otherwise. Default 60 000. */
  timeoutMs: durationMs().default(DEFAULT_TIMEOUT_MS),
  /** Restart (stdio) or reconnect (http, sse) backoff. Default { initialDelayMs 500, maxDelayMs 30 000 }. */
  restart: restartSchema.prefault({}),
  /** Policies for every tool of this server, over the global ones. Default {} (inherit). */
  policies: policySetSchema.prefault({}),
};

/**
 * What an MCP server is told when it asks for roots (`roots/list`) outside a tool call (during one,
 * the calling client's own roots are forwarded). Default [] (none): the server is given an empty list.
 */
const rootsSchema = z
  .array(
    z.strictObject({
      /** A `file://` URI, as MCP requires of roots. */
      uri: z.string().startsWith("file://", { error: 'a root is a file:// URI, e.g. "file:///srv/project"' }),
      /** A name for people. Optional. */
      name: nonEmpty().optional(),
    }),
  )
  .default([]);

/**
 * What only MCP servers take: their roots, and whether their clients share one connection to them (the
 * default) or each client session gets its own, for stateful servers (memory, sequential thinking)
 * whose state must not pass from one client to another (see backends/isolated.ts).
 */
const mcpServerExtensions = {
  /**
   * "shared": one process (or remote session) for every client. "session": one per client session,
   * started at its first call and stopped when the session ends or idles. Default "shared".
   */
  isolation: z.enum(["shared", "session"]).default("shared"),
  /**
   * Bounds of isolation "session", and of the users' own sessions of a server with a per-user `auth`.
   * Default { max: 16, idleTimeoutMs: 600 000 }.
   */
  sessionLimits: z
    .strictObject({
      /** Sessions with a process of their own at once; a new session beyond is refused. Default 16. */
      max: positiveInt().default(16),
      /** A session's process unused this long is stopped (its state with it). Default 600 000 (10 min). */
      idleTimeoutMs: durationMs().default(600_000),
    })
    .prefault({}),
  /** Roots the server is given outside a tool call. Default []. */
  roots: rootsSchema,
};

const stdioServerSchema = z.strictObject({
  /** Optional, as in Claude Desktop files. Default "stdio". */
  type: z.literal("stdio").default("stdio"),
  /** The program to spawn. Required. */
  command: nonEmpty(),
  /** Its arguments. Default []. */
  args: z.array(text()).default([]),
  /** Variables set for it, over a minimal inherited environment. Default {}. */
  env: z
    .record(
      z.string().regex(/^[^=\0]+$/, {
        error: (issue) =>
          `environment variable name ${JSON.stringify(issue.input)} cannot be empty or hold "="`,
      }),
      text(),
    )
    .default({}),
  /** Working directory of the process. Default: the gateway's. */
  cwd: nonEmpty().optional(),
  /**
   * Refused: a stdio server is one process, started once with one environment for every caller, so
   * it can neither log in with OAuth nor take each caller's own credentials. Give it its credentials
   * in `env`, or reach the server over HTTP.
   */
  auth: z
    .never({
      error:
        "a stdio server cannot take auth: it is one process, started once with one environment for " +
        "every caller, so it can neither sign in with OAuth nor take each caller's own (per-user) " +
        "credentials. Put its credential in env, or reach the server over http with auth.",
    })
    .optional(),
  ...serverExtensions,
  ...mcpServerExtensions,
});

const remoteServerSchema = z.strictObject({
  /** "http" is Streamable HTTP ("streamable-http" is read as "http"); "sse" is the legacy SSE transport. Required. */
  type: z
    .enum(["http", "streamable-http", "sse"])
    .transform((type): "http" | "sse" => (type === "streamable-http" ? "http" : type)),
  /** The server's MCP endpoint. Required. */
  url: httpUrl("https://example.com/mcp"),
  /**
   * Sent with every request, e.g. Authorization. With a per-user `auth`, only on the gateway's own
   * connection (its tool list, health checks, resource subscriptions), never on a caller's. Default {}.
   */
  headers: headerMap().default({}),
  /**
   * How the gateway authenticates to the server (security/upstream/config.ts): `oauth` (the gateway
   * logs in, once for every caller), or each caller's own credentials: `passthrough`, `exchange`,
   * `per-principal`. Default: none (only `headers`).
   */
  auth: upstreamAuthSchema.optional(),
  ...serverExtensions,
  ...mcpServerExtensions,
});

const serverSchema = z.discriminatedUnion("type", [stdioServerSchema, remoteServerSchema], {
  error: (issue) =>
    issue.code === "invalid_union"
      ? 'type must be "stdio" (the default when type is left out), "http" (or its alias "streamable-http") or "sse"'
      : undefined,
});

/**
 * The built-in backends, under `backends:` (their own options in each backend's config.ts). They
 * take the same extensions as MCP servers (prefix, tool filter, timeout, policies); `restart` is the
 * reconnect backoff of the database ones. `safeExtend` because the built-in schemas carry cross-field
 * refinements, which plain `extend` refuses to carry over.
 */
const builtinBackendSchema = z.discriminatedUnion(
  "type",
  [
    postgresBackendSchema.safeExtend(serverExtensions),
    redisBackendSchema.safeExtend(serverExtensions),
    httpBackendSchema.safeExtend(serverExtensions),
    filesystemBackendSchema.safeExtend(serverExtensions),
  ],
  {
    error: (issue) =>
      issue.code === "invalid_union"
        ? 'type must be "postgres", "redis", "http" or "filesystem" (MCP servers go under mcpServers)'
        : undefined,
  },
);

const backendsSchema = z.record(serverName("backend"), builtinBackendSchema);

const serversSchema = z.record(serverName("server"), serverSchema, {
  error: (issue) =>
    issue.code === "invalid_type" && issue.input === undefined
      ? "required: list the MCP servers under mcpServers (mcpServers: {} for none yet)"
      : undefined,
});

/**
 * Top-level keys Claude Desktop keeps in claude_desktop_config.json next to `mcpServers`: app settings
 * that mean nothing to a gateway. They are accepted with any value and dropped, so the file works
 * unchanged. The list is closed on purpose: any other unknown key is still an error, because a
 * misspelt Switchboard key ("gatway") must not be silently ignored.
 */
export const CLAUDE_DESKTOP_KEYS = ["globalShortcut", "preferences", "isUsingBuiltInNodeForMcp"] as const;

const claudeDesktopKeys = Object.fromEntries(
  CLAUDE_DESKTOP_KEYS.map((key) => [key, z.unknown().optional()]),
) as Record<(typeof CLAUDE_DESKTOP_KEYS)[number], z.ZodOptional<z.ZodUnknown>>;

const configObjectSchema = z.strictObject({
  /** Lets editors find a JSON schema for the file; ignored by the gateway. Default: none. */
  $schema: z.string().optional(),
  /** Claude Desktop's own settings (see CLAUDE_DESKTOP_KEYS): accepted and dropped. */
  ...claudeDesktopKeys,
  /** The MCP servers, keyed by name, as in Claude Desktop / Claude Code. Required; may be {}. */
  mcpServers: serversSchema,
  /**
   * Built-in backends, keyed by name like mcpServers (names are shared: one name, one server):
   * `type` "postgres", "redis", "http" (a REST API, not an MCP server) or "filesystem". Default {}.
   */
  backends: backendsSchema.default({}),
  /** Default {}: every option at its default. */
  gateway: gatewaySchema.prefault({}),
  /** Settings of the Streamable HTTP endpoint. Default {}: every option at its default. */
  server: z.strictObject({ http: httpServerSchema.prefault({}) }).prefault({}),
  /** Default {}: every option at its default. */
  logging: loggingSchema.prefault({}),
  /** Policies for every tool of every server. Default {} (none but the server's timeout). */
  policies: policySetSchema.prefault({}),
  /** Exposed tool name or glob (e.g. "db__query", "github__*") -> policies over the server's. Default {}. */
  toolPolicies: z.record(nonEmpty("a tool name or glob cannot be empty"), policySetSchema).default({}),
  /**
   * Where rate-limit buckets, cached results and shared breaker state live: `{ type: "memory" }` (this
   * process only) or `{ type: "redis", url, keyPrefix, onStoreError, … }`, shared by every replica
   * with the same Redis and prefix (options and their defaults in stores/config.ts). Default
   * { type: "memory" }.
   */
  store: storeConfigSchema,
  /** Metrics on /metrics, OpenTelemetry traces, and the health checker behind the probes. Default {}. */
  observability: observabilitySchema.prefault({}),
  /**
   * Switchboard's own tools, served as server "switchboard" (`switchboard__health`,
   * `switchboard__metrics`) and subject to access rules like any tool. Default: both on.
   */
  gatewayTools: gatewayToolsSchema.prefault({}),
  /**
   * One record per call to a JSONL file and/or a PostgreSQL table (options in audit/config.ts).
   * Default: off; `audit: {}` turns it on with a file sink in `sync` durability.
   */
  audit: auditConfigSchema,
  /**
   * Who may connect over HTTP: API keys (by SHA-256), JWT bearer tokens, RFC 9728 metadata; and the
   * principal of local stdio clients. Default: none (HTTP is open to whoever passes the Host and
   * Origin guards; keep it on loopback).
   */
  auth: authSchema.optional(),
  /** Which principals and roles may see and call which servers and tools. Default: everyone, everything. */
  access: accessSchema.optional(),
  /**
   * Where the tokens of servers with `auth: { type: "oauth" }` are kept, encrypted: a file, or the
   * shared store when there is one (security/upstream/config.ts). Required when a server uses OAuth.
   */
  oauth: tokenVaultSchema.optional(),
  /** HMAC request signing with replay protection, required per principal, role or tool. Default: off. */
  signing: signingSchema.optional(),
  /**
   * Limits on every call's arguments, checked with the tool's own JSON Schema before the call
   * reaches its backend. Default { maxBytes 1 MiB, maxStringLength 256 KiB, maxDepth 64 }.
   */
  argumentLimits: argumentLimitsSchema.prefault({}),
  /**
   * Named endpoints, each a view of the gateway for a team: its servers and tools, and its own auth,
   * access rules and policies where it says so (see config/profiles.ts). Served at
   * `<server.http.path>/<name>`. Default {}.
   */
  profiles: profilesSchema,
  /** Tool definition pinning, against servers that change a tool after it was approved. Default: off. */
  pinning: pinningSchema.prefault({}),
});

/** The server name of the gateway's own tools; reserved while any of them is on. */
export const GATEWAY_TOOLS_SERVER = "switchboard";

type ParsedConfig = Omit<z.output<typeof configObjectSchema>, (typeof CLAUDE_DESKTOP_KEYS)[number]>;
type ParsedServer = ParsedConfig["mcpServers"][string] | ParsedConfig["backends"][string];

/** The config after validation and defaults: `prefix` is always set. */
export const configSchema = configObjectSchema.superRefine(checkConfig).transform(
  (
    config,
  ): Flatten<
    Omit<ParsedConfig, "mcpServers" | "backends"> & {
      mcpServers: Record<string, ServerConfig>;
      backends: Record<string, BuiltinBackendConfig>;
    }
  > => ({
    ...withoutClaudeDesktopKeys(config),
    mcpServers: withPrefixes(config.mcpServers) as Record<string, ServerConfig>,
    backends: withPrefixes(config.backends) as Record<string, BuiltinBackendConfig>,
  }),
);

function withPrefixes(servers: Record<string, ParsedServer>): Record<string, unknown> {
  return Object.fromEntries(
    Object.entries(servers).map(([name, server]) => [
      name,
      { ...server, prefix: effectivePrefix(name, server) },
    ]),
  );
}

/** Distributive, so that a union of server kinds stays a union discriminated on `type`. */
type WithPrefix<T> = T extends unknown ? Flatten<Omit<T, "prefix"> & { prefix: string }> : never;
type Flatten<T> = { [K in keyof T]: T[K] };
type RemoteServer<Type extends "http" | "sse"> = Flatten<
  Omit<WithPrefix<z.output<typeof remoteServerSchema>>, "type"> & { type: Type }
>;

export type StdioServerConfig = WithPrefix<z.output<typeof stdioServerSchema>>;
/**
 * A remote server: `type` "http" (Streamable HTTP; "streamable-http" is normalised to it) or "sse".
 * One member per type, so that `type === "http" || type === "sse"` leaves only stdio in the else branch.
 */
export type HttpServerConfig = RemoteServer<"http"> | RemoteServer<"sse">;
export type ServerConfig = StdioServerConfig | HttpServerConfig;
/** A built-in backend from `backends:`, with its prefix set. */
export type BuiltinBackendConfig = WithPrefix<z.output<typeof builtinBackendSchema>>;
/** Anything the gateway serves tools from: an MCP server or a built-in backend. */
export type AnyServerConfig = ServerConfig | BuiltinBackendConfig;
export type ToolFilterConfig = z.output<typeof toolFilterSchema>;
export type RestartConfig = z.output<typeof restartSchema>;
export type GatewaySettings = z.output<typeof gatewaySchema>;
export type HttpServerSettings = z.output<typeof httpServerSchema>;
export type LoggingSettings = z.output<typeof loggingSchema>;
export type LogLevelSetting = LogLevel;
/** The whole config as the gateway receives it: validated, defaults applied, frozen by the loader. */
export type Config = z.output<typeof configSchema>;
/** The config as written, before defaults (what a program may pass to `validateConfig`). */
export type ConfigInput = z.input<typeof configSchema>;

function withoutClaudeDesktopKeys(config: z.output<typeof configObjectSchema>): ParsedConfig {
  const kept: Record<string, unknown> = { ...config };
  for (const key of CLAUDE_DESKTOP_KEYS) delete kept[key];
  return kept as ParsedConfig;
}

function effectivePrefix(name: string, server: ParsedServer): string {
  return server.prefix ?? name;
}

/** Checks that need more than one field: each issue carries the path of the field to change. */
function checkConfig(config: ParsedConfig, ctx: z.RefinementCtx): void {
  const owners = new Map<string, string>();
  const all: [string, ParsedServer, "mcpServers" | "backends"][] = [
    ...Object.entries(config.mcpServers).map(([n, s]): [string, ParsedServer, "mcpServers"] => [
      n,
      s,
      "mcpServers",
    ]),
    ...Object.entries(config.backends).map(([n, s]): [string, ParsedServer, "backends"] => [
      n,
      s,
      "backends",
    ]),
  ];
  for (const name of Object.keys(config.backends)) {
    if (!Object.hasOwn(config.mcpServers, name)) continue;
    ctx.addIssue({
      code: "custom",
      path: ["backends", name],
      message: `"${name}" is already the name of a server under mcpServers; give the backend another name`,
    });
  }
  const gatewayToolsOn = config.gatewayTools.health || config.gatewayTools.metrics || searchToolsOn(config);
  checkProfiles(config.profiles, new Set([...all.map(([name]) => name), GATEWAY_TOOLS_SERVER]), ctx);
  checkDiscovery(config, ctx);
  checkPinning(config.pinning, new Set([...all.map(([name]) => name), GATEWAY_TOOLS_SERVER]), ctx);
  for (const [name, , section] of all) {
    if (!gatewayToolsOn || name !== GATEWAY_TOOLS_SERVER) continue;
    ctx.addIssue({
      code: "custom",
      path: [section, name],
      message: `"${GATEWAY_TOOLS_SERVER}" is the name of the gateway's own tools; rename this server, or switch them off with gatewayTools: { health: false, metrics: false }`,
    });
  }
  for (const unknown of unknownRequiredServers(config.observability.health, [
    ...all.map(([name]) => name),
    GATEWAY_TOOLS_SERVER,
  ])) {
    ctx.addIssue({
      code: "custom",
      path: ["observability", "health", "required"],
      message: `"${unknown}" is not a server under mcpServers or backends; list only configured servers`,
    });
  }
  const metricsPath = config.observability.metrics.path;
  if (config.observability.metrics.enabled && metricsPath === config.server.http.path) {
    ctx.addIssue({
      code: "custom",
      path: ["observability", "metrics", "path"],
      message: `is the MCP endpoint's path too (server.http.path); pick another path for metrics`,
    });
  }
  checkUpstreamAuth(config, ctx);
  for (const [name, server, section] of all) {
    checkRenames(name, server, section, ctx);
    // A disabled server exposes nothing, so a spare entry (e.g. a local and a remote variant of the
    // same server, one switched off) may share its prefix.
    if (!server.enabled) continue;
    const prefix = effectivePrefix(name, server);
    if (prefix === "") continue;
    const owner = owners.get(prefix);
    if (owner === undefined) {
      owners.set(prefix, name);
      continue;
    }
    ctx.addIssue({
      code: "custom",
      path: server.prefix === undefined ? [section, name] : [section, name, "prefix"],
      message:
        `servers "${owner}" and "${name}" both use the prefix "${prefix}", so their tool names would clash; ` +
        `set a different prefix on one of them`,
    });
  }
}

function checkRenames(
  name: string,
  server: ParsedServer,
  section: "mcpServers" | "backends",
  ctx: z.RefinementCtx,
): void {
  const { include, exclude, rename, descriptions } = server.tools;
  const base = [section, name, "tools", "rename"];
  const renamedAway = new Set(Object.keys(rename).filter((own) => rename[own] !== own));
  const isExcluded = exclude.length > 0 ? picomatch(exclude, GLOB_OPTIONS) : () => false;

  // The gateway cannot see the server's tools yet; the names the config itself mentions are the
  // ones known to exist, and those not renamed away or excluded keep their own names.
  const kept = new Set<string>();
  const mentioned = [
    ...include.filter((pattern) => !picomatch.scan(pattern).isGlob),
    ...Object.keys(descriptions),
    ...Object.keys(rename),
  ];
  for (const own of mentioned) if (!renamedAway.has(own) && !isExcluded(own)) kept.add(own);

  const targets = new Map<string, string>();
  for (const [own, target] of Object.entries(rename)) {
    if (target === own) continue;
    const earlier = targets.get(target);
    if (earlier !== undefined) {
      ctx.addIssue({
        code: "custom",
        path: [...base, own],
        message: `"${earlier}" and "${own}" are both renamed to "${target}"; give them different names`,
      });
      continue;
    }
    targets.set(target, own);
    if (kept.has(target)) {
      ctx.addIssue({
        code: "custom",
        path: [...base, own],
        message:
          `"${own}" is renamed to "${target}", which is also the name of the server's own tool "${target}"; ` +
          `rename or exclude "${target}" too, or pick another name`,
      });
    }
  }
}
