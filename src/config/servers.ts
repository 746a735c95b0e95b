import { z } from "zod";
import { filesystemBackendSchema } from "../backends/filesystem/config.ts";
import { httpBackendSchema } from "../backends/http/config.ts";
import { postgresBackendSchema } from "../backends/postgres/config.ts";
import { redisBackendSchema } from "../backends/redis/config.ts";
import { DEFAULT_TIMEOUT_MS, policySetSchema } from "../policies/config.ts";
import { upstreamAuthSchema } from "../security/upstream/config.ts";
import {
  delayMs,
  durationMs,
  glob,
  headerMap,
  httpUrl,
  nonEmpty,
  nonNegativeInt,
  positiveInt,
  serverName,
  text,
  toolPrefix,
} from "./primitives.ts";

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

export const stdioServerSchema = z.strictObject({
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

export const remoteServerSchema = z.strictObject({
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
export const builtinBackendSchema = z.discriminatedUnion(
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

export const backendsSchema = z.record(serverName("backend"), builtinBackendSchema);

export const serversSchema = z.record(serverName("server"), serverSchema, {
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
