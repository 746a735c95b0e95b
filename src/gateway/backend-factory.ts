/**
 * Makes the backend a planned server runs on: an MCP client (stdio, Streamable HTTP or SSE,
 * supervised), a built-in (loaded with its driver only when it starts), or the gateway's own tools.
 */
import { GatewayToolsBackend, type GatewayToolsSources } from "../backends/gateway-tools.ts";
import { IsolatedBackend, sessionPartitioning } from "../backends/isolated.ts";
import { LazyBackend } from "../backends/lazy.ts";
import { McpBackend, type McpTransportConfig } from "../backends/mcp/backend.ts";
import { remoteServerBackend, type UpstreamDeps } from "../backends/mcp/upstream.ts";
import type { BuiltinBackendConfig } from "../config/schema.ts";
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
  /** For remote servers with `auth`: where logins are kept, and the gateway's own audiences. */
  readonly upstream: Omit<UpstreamDeps, "logger" | "clientName">;
}

export function createBackend(server: PlannedServer, deps: BackendFactoryDeps): Backend {
  const source = server.source;
  switch (source.kind) {
    case "mcp": {
      const config = source.config;
      const make = (transport: McpTransportConfig) =>
        new McpBackend({
          name: server.name,
          transport,
          timeoutMs: config.timeoutMs,
          restart: config.restart,
          connectTimeoutMs: deps.connectTimeoutMs,
          logger: deps.logger,
          clientInfo: deps.clientInfo,
          roots: config.roots,
          redact: deps.redact,
        });
      if (config.type === "http" || config.type === "sse") {
        return remoteServerBackend(server.name, config, make, {
          ...deps.upstream,
          logger: deps.logger,
          clientName: deps.clientInfo.name,
        });
      }
      const stdio: McpTransportConfig = {
        type: "stdio",
        command: config.command,
        args: config.args,
        env: config.env,
        cwd: config.cwd,
      };
      return config.isolation === "session"
        ? new IsolatedBackend(
            server.name,
            sessionPartitioning(() => make(stdio)),
            config.sessionLimits,
            deps.logger,
          )
        : make(stdio);
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
