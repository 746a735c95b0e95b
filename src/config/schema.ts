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
import { gatewayToolsSchema, observabilitySchema, unknownRequiredServers } from "../observability/config.ts";
import { policySetSchema } from "../policies/config.ts";
import { accessSchema, argumentLimitsSchema, authSchema, signingSchema } from "../security/config.ts";
import { checkUpstreamAuth } from "../security/upstream/checks.ts";
import { tokenVaultSchema } from "../security/upstream/config.ts";
import { storeConfigSchema } from "../stores/config.ts";
import { GLOB_OPTIONS, type LogLevel, nonEmpty } from "./primitives.ts";
import { checkDiscovery, checkProfiles, profilesSchema, searchToolsOn } from "./profiles.ts";
import {
  backendsSchema,
  type builtinBackendSchema,
  type remoteServerSchema,
  type restartSchema,
  serversSchema,
  type stdioServerSchema,
  type toolFilterSchema,
} from "./servers.ts";
import { checkPinning, gatewaySchema, httpServerSchema, loggingSchema, pinningSchema } from "./settings.ts";

export { RESTART_DEFAULTS, restartSchema, toolFilterSchema } from "./servers.ts";
export { gatewaySchema, httpServerSchema, loggingSchema } from "./settings.ts";

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
