/**
 * What `switchboard check` prints about a config: every server and built-in backend, the settings,
 * and the names of the policies. Safe to paste into an issue (see summarizeConfig).
 */
import type { AnyServerConfig, BuiltinBackendConfig, Config, ServerConfig } from "./schema.ts";

interface ServerSummaryBase {
  readonly name: string;
  readonly enabled: boolean;
  readonly prefix: string;
  readonly timeoutMs: number;
  readonly tools: {
    readonly include: readonly string[];
    readonly exclude: readonly string[];
    readonly rename: Readonly<Record<string, string>>;
  };
  /** Names of the policies set on this server. */
  readonly policies: readonly string[];
}

export interface StdioServerSummary extends ServerSummaryBase {
  readonly type: "stdio";
  readonly command: string;
  /** With passwords in URLs and values of secret-looking flags (--token=…) masked. */
  readonly args: readonly string[];
  readonly cwd?: string;
  /** Names only: values may be secrets. */
  readonly envKeys: readonly string[];
}

export interface RemoteServerSummary extends ServerSummaryBase {
  readonly type: "http" | "sse";
  /** With credentials and query values masked. */
  readonly url: string;
  /** Names only: values may be secrets. */
  readonly headerNames: readonly string[];
}

export interface BuiltinBackendSummary extends ServerSummaryBase {
  readonly type: "postgres" | "redis" | "http" | "filesystem";
  /** What it reaches: a URL with its password masked, "embedded (PGlite)", the root folder or the hosts. */
  readonly target: string;
  /** Whether writes are refused (always true for http, which the allowlist bounds instead). */
  readonly readOnly: boolean;
}

export type ServerSummary = StdioServerSummary | RemoteServerSummary | BuiltinBackendSummary;

export interface ConfigSummary {
  readonly servers: readonly ServerSummary[];
  readonly gateway: Config["gateway"];
  readonly server: Config["server"];
  readonly logging: Config["logging"];
  /** Names of the global policies. */
  readonly policies: readonly string[];
  /** Tool names and globs that have their own policies. */
  readonly toolPolicies: readonly string[];
}

/**
 * What `switchboard check` prints. It must be safe to paste into an issue, so header values and
 * environment values never appear (only their names), and secrets inside URLs and arguments are masked.
 */
export function summarizeConfig(config: Config): ConfigSummary {
  return {
    servers: [
      ...Object.entries(config.mcpServers).map(([name, server]) => summarizeServer(name, server)),
      ...Object.entries(config.backends).map(([name, backend]) => summarizeBuiltin(name, backend)),
    ],
    gateway: { ...config.gateway },
    server: { http: { ...config.server.http } },
    logging: { ...config.logging },
    policies: Object.keys(config.policies),
    toolPolicies: Object.keys(config.toolPolicies),
  };
}

function summarizeBuiltin(name: string, backend: BuiltinBackendConfig): BuiltinBackendSummary {
  const base = summaryBase(name, backend);
  switch (backend.type) {
    case "postgres":
      return {
        ...base,
        type: backend.type,
        target: backend.url === undefined ? "embedded (PGlite)" : maskUrl(backend.url),
        readOnly: backend.readOnly,
      };
    case "redis":
      return { ...base, type: backend.type, target: maskUrl(backend.url), readOnly: backend.readOnly };
    case "http":
      return {
        ...base,
        type: backend.type,
        target: [backend.baseUrl, ...backend.allowHosts].filter((t) => t !== undefined).join(" "),
        readOnly: false,
      };
    case "filesystem":
      return { ...base, type: backend.type, target: backend.root, readOnly: backend.readOnly };
  }
}

function summaryBase(name: string, server: AnyServerConfig): ServerSummaryBase {
  return {
    name,
    enabled: server.enabled,
    prefix: server.prefix,
    timeoutMs: server.timeoutMs,
    tools: {
      include: [...server.tools.include],
      exclude: [...server.tools.exclude],
      rename: { ...server.tools.rename },
    },
    policies: Object.keys(server.policies),
  };
}

function summarizeServer(name: string, server: ServerConfig): ServerSummary {
  const base = summaryBase(name, server);
  if (server.type === "stdio") {
    return {
      ...base,
      type: "stdio",
      command: server.command,
      args: maskArgs(server.args),
      ...(server.cwd === undefined ? {} : { cwd: server.cwd }),
      envKeys: Object.keys(server.env),
    };
  }
  return { ...base, type: server.type, url: maskUrl(server.url), headerNames: Object.keys(server.headers) };
}

const MASK = "***";
const SECRET_FLAG = /^--?[\w-]*(token|secret|password|passwd|pwd|api[-_]?key|auth|credential)[\w-]*$/i;

function maskArgs(args: readonly string[]): string[] {
  return args.map((arg, index) => {
    const previous = index > 0 ? args[index - 1] : undefined;
    if (previous !== undefined && SECRET_FLAG.test(previous)) return MASK;
    const equals = arg.indexOf("=");
    if (equals > 0 && SECRET_FLAG.test(arg.slice(0, equals))) return `${arg.slice(0, equals + 1)}${MASK}`;
    // e.g. a PostgreSQL connection string passed to a database server.
    return arg.includes("://") ? maskUrl(arg) : arg;
  });
}

function maskUrl(value: string): string {
  if (!URL.canParse(value)) return value;
  const url = new URL(value);
  if (url.password === "" && url.search === "") return value;
  if (url.password !== "") url.password = MASK;
  for (const key of new Set(url.searchParams.keys())) url.searchParams.set(key, MASK);
  return url.toString();
}
