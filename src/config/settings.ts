/**
 * The settings of the gateway itself (name, timing, reloads), of its Streamable HTTP endpoint, and of
 * its logging: the config blocks `gateway`, `server.http` and `logging`.
 */
import { z } from "zod";
import { DEFAULT_LOG_LEVEL } from "./log-levels.ts";
import { durationMs, glob, httpPath, logLevel, nonEmpty, positiveInt, separator } from "./primitives.ts";

/**
 * How an endpoint shows its tools to clients. "full" lists every tool it offers. "search" lists only
 * `switchboard__search_tools` and `switchboard__call_tool` (plus the tools `alwaysOn` names), so that
 * a client's context does not fill up with a big catalog: the model finds tools by searching, and
 * calls them through `switchboard__call_tool` (or directly, by name). Every tool the endpoint offers
 * stays callable either way. A string is short for `{ mode }`.
 */
export const discoverySchema = z
  .union([
    z.enum(["full", "search"]).transform((mode) => ({ mode, alwaysOn: [] as string[] })),
    z.strictObject({
      /** Default "full". */
      mode: z.enum(["full", "search"]).default("full"),
      /**
       * Globs over exposed names of tools listed in search mode too (a short list: the tools every
       * conversation needs). Default [].
       */
      alwaysOn: z.array(glob()).default([]),
    }),
  ])
  .prefault("full");

export type DiscoveryConfig = z.output<typeof discoverySchema>;

export const PIN_MODES = ["off", "warn", "block"] as const;
export type PinMode = (typeof PIN_MODES)[number];

/**
 * Definition pinning: the first time the gateway sees a tool, it pins the tool's definition (name,
 * title, description, input and output schemas, annotations) by its hash; a server that later changes
 * it is caught. "warn" logs the change, counts it (`tool_definition_changes_total`) and marks the tool
 * in `switchboard tools`; "block" also hides the changed tool from every client until someone approves
 * it with `switchboard pins approve <tool>`. A description the config sets (`tools.descriptions`) is
 * pinned as configured. Default { mode: "off" }.
 */
export const pinningSchema = z.strictObject({
  /** For every server without its own mode. Default "off". */
  mode: z.enum(PIN_MODES).default("off"),
  /** Server name (mcpServers or backends) -> its own mode. Default {}. */
  servers: z
    .record(nonEmpty("a server name cannot be empty"), z.strictObject({ mode: z.enum(PIN_MODES) }))
    .default({}),
  /**
   * A JSON file that holds the pins, relative to the config file. Default: in the store when it is
   * shared (Redis: every replica sees the same pins), else "switchboard-pins.json" beside the config.
   */
  file: nonEmpty().optional(),
});

export type PinningConfig = z.output<typeof pinningSchema>;

/** `pinning.servers` names only servers that exist. */
export function checkPinning(
  pinning: PinningConfig,
  servers: ReadonlySet<string>,
  ctx: z.RefinementCtx,
): void {
  for (const server of Object.keys(pinning.servers)) {
    if (servers.has(server)) continue;
    ctx.addIssue({
      code: "custom",
      path: ["pinning", "servers", server],
      message: `"${server}" is not a server under mcpServers or backends; list configured servers only`,
    });
  }
}

/** Paths the HTTP server answers itself (probes, metrics, administration, console); the MCP endpoint cannot shadow them. */
const RESERVED_HTTP_PATHS = ["/healthz", "/livez", "/readyz", "/metrics", "/admin", "/console"];

export const gatewaySchema = z.strictObject({
  /** The server name reported to clients. Default "switchboard". */
  name: nonEmpty().default("switchboard"),
  /** Between a server's prefix and a tool name. Default "__". */
  separator: separator().default("__"),
  /**
   * How long one server's start may take (an MCP server's first connection), and how long the gateway
   * waits for all of them before it logs which are not up, in ms. Clients are served meanwhile (see
   * `startupWaitMs`). Default 30 000.
   */
  startupTimeoutMs: durationMs().default(30_000),
  /**
   * How long a client's first list waits for servers that are still starting, in ms, counted from
   * the process's start. The gateway answers `initialize` at once; servers that come up later are
   * announced with list_changed. Default 750: the first list comes within a second of start-up, with
   * the servers that were quick to come up. (A call to a tool not listed yet waits for the start to
   * end, within `startupTimeoutMs`.)
   */
  startupWaitMs: durationMs().default(750),
  /**
   * Reloading the config while the gateway runs (also on SIGHUP and `switchboard reload`): `watch`
   * the file for changes; `debounceMs` lets an editor's save (several writes, a rename) settle into
   * one reload. Default { watch: true, debounceMs: 300 }.
   */
  reload: z
    .strictObject({
      /** Watch the config file and reload it when its content changes. Default true. */
      watch: z.boolean().default(true),
      /** How long the file must stay unchanged before a reload, in ms. Default 300. */
      debounceMs: durationMs().default(300),
    })
    .prefault({}),
  /** How long SIGTERM waits for calls in flight before closing, in ms. Default 10 000. */
  shutdownTimeoutMs: durationMs().default(10_000),
  /** How the default endpoint shows its tools: "full" or "search" (see discoverySchema). Default "full". */
  discovery: discoverySchema,
  /**
   * Tasks clients start (src/tasks/): their records live in the store (`store`), so any replica
   * answers for them. Default { resultTtlMs: 3 600 000, pollIntervalMs: 1 000 }.
   */
  tasks: z
    .strictObject({
      /** How long a task's record, and its result once done, is kept after its last change, in ms. Default 3 600 000 (1 h). */
      resultTtlMs: durationMs().default(3_600_000),
      /** How often clients are told to poll a task, in ms. Default 1 000. */
      pollIntervalMs: durationMs().default(1_000),
    })
    .prefault({}),
});

export const httpServerSchema = z.strictObject({
  /** Interface to listen on; loopback unless you mean to expose the gateway. Default "127.0.0.1". */
  host: nonEmpty().default("127.0.0.1"),
  /** Port; 0 takes any free port. Default 8931. */
  port: z.number().int().min(0).max(65_535).default(8931),
  /** Path of the MCP endpoint. Default "/mcp". */
  path: httpPath()
    .refine((path) => !RESERVED_HTTP_PATHS.includes(path), {
      error: `cannot be one of the probe and metrics paths (${RESERVED_HTTP_PATHS.join(", ")})`,
    })
    .default("/mcp"),
  /** Largest request body accepted, in bytes. Default 4 194 304 (4 MiB). */
  maxBodyBytes: positiveInt().default(4 * 1024 * 1024),
  /** Host header values accepted besides the localhost forms ("*" for any). Default []. */
  allowedHosts: z.array(nonEmpty()).default([]),
  /** Origin values accepted besides the localhost forms ("*" for any). Default []. */
  allowedOrigins: z.array(nonEmpty()).default([]),
  /** A 2025-era session unused this long is closed, in ms. Default 1 800 000 (30 min). */
  sessionIdleTimeoutMs: durationMs().default(1_800_000),
  /**
   * Who may use the gateway's administration endpoints (`POST /admin/reload`): with `auth`
   * configured, a principal with one of `roles`; and from loopback only unless `allowRemote`.
   * Default { roles: ["admin"], allowRemote: false }.
   */
  admin: z
    .strictObject({
      /** Roles that may administer the gateway. Default ["admin"]. */
      roles: z.array(nonEmpty()).default(["admin"]),
      /** Accept administration from addresses other than loopback (behind auth only). Default false. */
      allowRemote: z.boolean().default(false),
    })
    .prefault({}),
  /**
   * The web console at `/console` on this listener: servers, tools, a tool to try, resilience state,
   * the audit log and the config, live. Who may is as for `admin`: with `auth`, a principal with one of
   * `admin.roles`; and from loopback only unless `admin.allowRemote`. Default { enabled: false }.
   */
  console: z
    .strictObject({
      /** Serve the console. Default false. */
      enabled: z.boolean().default(false),
    })
    .prefault({}),
});

export const loggingSchema = z.strictObject({
  /** Least severe level written (to stderr, always). Default "info". */
  level: logLevel().default(DEFAULT_LOG_LEVEL),
});
