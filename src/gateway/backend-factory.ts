/**
 * Makes the backend a planned server runs on: an MCP client (stdio, Streamable HTTP or SSE,
 * supervised), a built-in (loaded with its driver only when it starts), or the gateway's own tools.
 */
import { GatewayToolsBackend, type GatewayToolsSources } from "../backends/gateway-tools.ts";
import { IsolatedBackend } from "../backends/isolated.ts";
import { LazyBackend } from "../backends/lazy.ts";
import { McpBackend, type McpTransportConfig } from "../backends/mcp/backend.ts";
import type { BuiltinBackendConfig, ServerConfig } from "../config/schema.ts";
import type { Backend } from "../core/types.ts";
import type { Logger } from "../observability/logger.ts";
import type { Metrics } from "../observability/metrics.ts";
import type { PlannedServer } from "./plan.ts";

export interface BackendFactoryDeps {
  readonly logger: Logger;
  /** The gateway's name and version, as it introduces itself to MCP servers. */
  readonly clientInfo: { readonly name: string; readonly version: string };
  /** How long an MCP server's first connection may take. */
  readonly connectTimeoutMs: number;
  /** Redacts every known secret value from a failure reason (stderr tails, connection errors). */
  readonly redact: (text: string) => string;
  readonly metrics: () => Metrics | undefined;
  /** What the gateway's own tools report, read at each call. */
  readonly gatewayTools: Omit<GatewayToolsSources, "health" | "metrics" | "search">;
}

export function createBackend(server: PlannedServer, deps: BackendFactoryDeps): Backend {
  const source = server.source;
  switch (source.kind) {
    case "mcp": {
      const make = () =>
        new McpBackend({
          name: server.name,
          transport: transportOf(source.config),
          timeoutMs: source.config.timeoutMs,
          restart: source.config.restart,
          connectTimeoutMs: deps.connectTimeoutMs,
          logger: deps.logger,
          clientInfo: deps.clientInfo,
          roots: source.config.roots,
          redact: deps.redact,
        });
      return source.config.isolation === "session"
        ? new IsolatedBackend(server.name, make, source.config.sessionLimits, deps.logger)
        : make();
    }
    case "builtin":
      return builtin(server.name, source.config, deps);
    case "gateway-tools":
      return new GatewayToolsBackend(
        server.name,
        { health: source.health, metrics: source.metrics, search: source.search, ...deps.gatewayTools },
        deps.logger,
      );
  }
}

/** Built-ins load their module (and driver) when they start: see backends/lazy.ts. */
function builtin(name: string, backend: BuiltinBackendConfig, deps: BackendFactoryDeps): Backend {
  const reconnect = backend.restart;
  const logger = deps.logger;
  switch (backend.type) {
    case "postgres":
      return new LazyBackend(
        name,
        async () =>
          (await import("../backends/postgres/backend.ts")).createPostgresBackend(name, backend, logger, {
            reconnect,
          }),
        (loaded) => deps.metrics()?.registerPoolStats(name, () => loaded.stats()),
      );
    case "redis":
      return new LazyBackend(name, async () =>
        (await import("../backends/redis/backend.ts")).createRedisBackend(name, backend, logger, {
          reconnect,
        }),
      );
    case "http":
      return new LazyBackend(name, async () =>
        (await import("../backends/http/backend.ts")).createHttpBackend(name, backend, logger),
      );
    case "filesystem":
      return new LazyBackend(name, async () =>
        (await import("../backends/filesystem/backend.ts")).createFilesystemBackend(name, backend, logger),
      );
  }
}

function transportOf(server: ServerConfig): McpTransportConfig {
  if (server.type === "http" || server.type === "sse") {
    return { type: server.type, url: server.url, headers: server.headers };
  }
  return { type: "stdio", command: server.command, args: server.args, env: server.env, cwd: server.cwd };
}
