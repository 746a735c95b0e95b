/**
 * One MCP endpoint of the HTTP server: the default one at `server.http.path`, and one per profile at
 * `<path>/<profile>` (config `profiles`). Each has its own SDK server factory (which knows the
 * profile), its own 2025-era sessions and its own 2026-07-28 handler, and authenticates with its own
 * auth config (a profile's `auth`, else the top-level one); every endpoint shares the one gateway and
 * its backends.
 */
import type { IncomingMessage } from "node:http";
import { toNodeHandler } from "@modelcontextprotocol/node";
import { createMcpHandler } from "@modelcontextprotocol/server";
import { describeError } from "../../core/errors.ts";
import type { Gateway } from "../../gateway/gateway.ts";
import type { Logger } from "../../observability/logger.ts";
import { LiveServers } from "../../protocol/connection.ts";
import {
  type BackgroundLog,
  backgroundLogsTo,
  forwardNotifications,
  resourceUpdatesTo,
} from "../../protocol/notifications.ts";
import { createServerFactory } from "../../protocol/sdk-server.ts";
import { type Authenticator, createAuthenticator, httpAuthEnabled } from "../../security/auth.ts";
import type { AuthConfig } from "../../security/config.ts";
import { factsOf, principalOfContext } from "./facts.ts";
import type { Replicas } from "./replicas.ts";
import { Sessions } from "./sessions.ts";
import { SharedSessions } from "./shared-sessions.ts";

export interface EndpointOptions {
  readonly maxBodyBytes: number;
  readonly sessionIdleTimeoutMs: number;
  /** What the replicas of a shared store share (replicas.ts); absent on a store that is not shared. */
  readonly replicas?: Replicas | undefined;
}

export class McpEndpoint {
  /** The profile it serves; undefined for the default endpoint. */
  readonly profile: string | undefined;
  /** Its URL path, e.g. /mcp or /mcp/dev. */
  readonly path: string;
  readonly sessions: Sessions;
  /** Serves 2026-07-28 requests (and 2025-era ones without a session), one SDK instance each. */
  readonly serveModern: ReturnType<typeof toNodeHandler>;
  /** Delivers a resource update another replica's backend reported to this endpoint's subscribers. */
  readonly resourceUpdated: (uri: string) => void;
  /** Delivers a log message another replica's server sent outside any call to this endpoint's sessions. */
  readonly backgroundLog: (message: BackgroundLog) => void;
  readonly #gateway: Gateway;
  readonly #mcpHandler: ReturnType<typeof createMcpHandler>;
  readonly #stopForwarding: () => void;
  // The auth of the config running now: a reload swaps it for the next request (the JWKS cache of an
  // authenticator lives as long as its config does).
  #auth: { config: AuthConfig | undefined; authenticator: Authenticator | undefined } | undefined;

  constructor(
    gateway: Gateway,
    profile: string | undefined,
    path: string,
    options: EndpointOptions,
    log: Logger,
  ) {
    this.#gateway = gateway;
    this.profile = profile;
    this.path = path;
    const factory = createServerFactory(gateway, {
      principalOf: principalOfContext,
      metaOf: (ctx) => factsOf(ctx)?.metaFromHeaders,
      transport: "http",
      profile,
      requestStates: options.replicas?.tokens,
    });
    const live = new LiveServers();
    const replicas = options.replicas;
    const shared = replicas
      ? new SharedSessions({
          gateway,
          bus: replicas.bus,
          records: replicas.records,
          relay: replicas.relay,
          path,
          profile,
          idleTimeoutMs: options.sessionIdleTimeoutMs,
          logger: log,
        })
      : undefined;
    this.sessions = new Sessions(factory, live, log, options.sessionIdleTimeoutMs, shared);
    this.#mcpHandler = createMcpHandler(factory, {
      legacy: "stateless",
      maxRequestBodySize: options.maxBodyBytes,
      onerror: (error) => log.debug({ err: describeError(error) }, "MCP request rejected"),
    });
    this.serveModern = toNodeHandler(this.#mcpHandler, {
      maxRequestBodySize: options.maxBodyBytes,
      onerror: (error) => log.error({ err: error }, "the MCP handler could not serve a request"),
    });
    this.#stopForwarding = forwardNotifications(gateway, live, [this.#mcpHandler.notify]);
    this.resourceUpdated = resourceUpdatesTo(live, [this.#mcpHandler.notify]);
    this.backgroundLog = backgroundLogsTo(gateway, live);
  }

  /** The auth config that applies here now: the profile's own, else the top-level one. */
  get authConfig(): AuthConfig | undefined {
    const config = this.#gateway.config;
    const own = this.profile === undefined ? undefined : config.profiles[this.profile]?.auth;
    return own ?? config.auth;
  }

  /** The authenticator of `authConfig`; undefined when this endpoint takes anonymous requests. */
  get authenticator(): Authenticator | undefined {
    const config = this.authConfig;
    let auth = this.#auth;
    if (!auth || auth.config !== config) {
      auth = {
        config,
        authenticator: config && httpAuthEnabled(config) ? createAuthenticator(config) : undefined,
      };
      this.#auth = auth;
    }
    return auth.authenticator;
  }

  /** This endpoint as clients reach it: the configured resource, else from the request's Host. */
  resourceUrl(req: IncomingMessage): string {
    return (
      this.authConfig?.resourceMetadata?.resource ?? `http://${req.headers.host ?? "localhost"}${this.path}`
    );
  }

  async close(): Promise<void> {
    this.#stopForwarding();
    await this.sessions.close();
    await this.#mcpHandler.close();
  }
}

/**
 * The endpoints of one HTTP server, made when first asked for: the default one always exists; a
 * profile's exists while the running config has that profile (a reload may add or remove it).
 */
export class McpEndpoints {
  readonly #gateway: Gateway;
  readonly #basePath: string;
  readonly #options: EndpointOptions;
  readonly #log: Logger;
  readonly #endpoints = new Map<string, McpEndpoint>();
  #stopSharing: (() => void) | undefined;

  constructor(gateway: Gateway, basePath: string, options: EndpointOptions, log: Logger) {
    this.#gateway = gateway;
    this.#basePath = basePath;
    this.#options = options;
    this.#log = log;
    this.#endpoints.set(basePath, new McpEndpoint(gateway, undefined, basePath, options, log));
    if (options.replicas) this.#stopSharing = this.#shareWithReplicas(options.replicas);
  }

  /**
   * A resource update, or a log message a server sends outside any call, is heard by the replica whose
   * connection to the server got it, while the client's stream may be on any replica: every replica
   * hears of it and delivers it to the streams it holds (the 2026-07-28 listen streams' log messages:
   * see the HTTP handler).
   */
  #shareWithReplicas({ bus }: Replicas): () => void {
    const announceUpdate = (uri: string) => void bus.broadcast("resource-updated", undefined, { uri });
    const announceLog = (message: BackgroundLog) => void bus.broadcast("backend-log", undefined, message);
    this.#gateway.on("resourceUpdated", announceUpdate);
    this.#gateway.on("log", announceLog);
    const stops = [
      bus.on("resource-updated", ({ payload }) => {
        const uri = (payload as { uri?: unknown }).uri;
        if (typeof uri !== "string") return;
        for (const endpoint of this.#endpoints.values()) endpoint.resourceUpdated(uri);
      }),
      bus.on("backend-log", ({ payload }) => {
        for (const endpoint of this.#endpoints.values()) endpoint.backgroundLog(payload as BackgroundLog);
      }),
    ];
    return () => {
      this.#gateway.off("resourceUpdated", announceUpdate);
      this.#gateway.off("log", announceLog);
      for (const stop of stops) stop();
    };
  }

  /** The endpoint at `path`, or undefined when no endpoint is there (or its profile was removed). */
  at(path: string): McpEndpoint | undefined {
    const existing = this.#endpoints.get(path);
    if (path === this.#basePath) return existing;
    const prefix = `${this.#basePath}/`;
    if (!path.startsWith(prefix)) return undefined;
    const profile = path.slice(prefix.length);
    if (!Object.hasOwn(this.#gateway.config.profiles, profile)) {
      if (existing) {
        // Removed by a reload: its sessions end; their clients get 404 and may open one elsewhere.
        this.#endpoints.delete(path);
        void existing.close().catch(() => undefined);
      }
      return undefined;
    }
    if (existing) return existing;
    const endpoint = new McpEndpoint(
      this.#gateway,
      profile,
      path,
      this.#options,
      this.#log.child({ profile }),
    );
    this.#endpoints.set(path, endpoint);
    return endpoint;
  }

  /** Where the protected resource metadata of an endpoint is served: RFC 9728 appends its path. */
  forMetadataSuffix(suffix: string): McpEndpoint | undefined {
    return suffix === "" ? this.at(this.#basePath) : this.at(suffix);
  }

  async close(): Promise<void> {
    this.#stopSharing?.();
    await Promise.allSettled([...this.#endpoints.values()].map((e) => e.close()));
    this.#endpoints.clear();
  }
}
