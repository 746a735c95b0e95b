/**
 * The backend of a remote MCP server, as its `auth` says it authenticates:
 *
 * - none: the configured `headers` on one MCP session (or one per client session);
 * - `oauth`: the gateway's own login (oauth/session.ts), on every session of the server;
 * - a per-user type: one MCP session per user, each with that user's credential (per-user.ts).
 *
 * `isolation: "session"` still gives each client session its own instance in every case.
 */
import type { Config, HttpServerConfig } from "../../config/schema.ts";
import { GatewayError } from "../../core/errors.ts";
import type { Backend, Store } from "../../core/types.ts";
import type { Logger } from "../../observability/logger.ts";
import { gatewayAudiences, isPerUser } from "../../security/upstream/config.ts";
import { perUserCredentials } from "../../security/upstream/credentials.ts";
import { IsolatedBackend, sessionPartitioning } from "../isolated.ts";
import { OAuthSession } from "./oauth/session.ts";
import { lazyVault, openTokenVault, type TokenVault } from "./oauth/token-vault.ts";
import { perUserPartitioning, type UserAccess } from "./per-user.ts";
import type { McpTransportConfig } from "./transport.ts";

export interface UpstreamDeps {
  /** Where OAuth logins are kept; asked at first use (the gateway's store opens after its backends). */
  readonly tokenVault: () => TokenVault;
  /** The audiences that name the gateway itself: a token with one of them is never forwarded. */
  readonly gatewayAudiences: () => readonly string[];
  /** How the gateway names itself to authorization servers it registers with. */
  readonly clientName: string;
  readonly logger: Logger;
}

export function remoteServerBackend(
  name: string,
  server: HttpServerConfig,
  make: (transport: McpTransportConfig) => Backend,
  deps: UpstreamDeps,
): Backend {
  const own: McpTransportConfig = { type: server.type, url: server.url, headers: server.headers };
  const auth = server.auth;
  const isolated = server.isolation === "session";
  if (isPerUser(auth)) {
    const credentials = perUserCredentials(auth, {
      server: name,
      url: server.url,
      gatewayAudiences: deps.gatewayAudiences,
    });
    const partitioning = perUserPartitioning({
      server: name,
      credentials,
      perSession: isolated,
      make: (access: UserAccess | undefined) =>
        make(
          access === undefined
            ? own
            : { ...own, headers: access.headers ?? {}, ...(access.auth ? { auth: access.auth } : {}) },
        ),
    });
    return new IsolatedBackend(name, partitioning, server.sessionLimits, deps.logger);
  }
  let transport = own;
  if (auth?.type === "oauth") {
    const session = new OAuthSession({
      server: name,
      url: server.url,
      config: auth,
      vault: lazyVault(deps.tokenVault),
      clientName: deps.clientName,
      log: deps.logger.child({ server: name, component: "oauth" }),
    });
    transport = { ...own, auth: session };
  }
  return isolated
    ? new IsolatedBackend(
        name,
        sessionPartitioning(() => make(transport)),
        server.sessionLimits,
        deps.logger,
      )
    : make(transport);
}

/** What a gateway gives its remote servers' `auth`, from its running config and its store. */
export function gatewayUpstreamDeps(
  config: () => Pick<Config, "oauth" | "auth" | "mcpServers">,
  store: () => Store,
  baseDir: string,
): Omit<UpstreamDeps, "logger" | "clientName"> {
  let vault: TokenVault | undefined;
  return {
    tokenVault: () => {
      const settings = config().oauth;
      if (!settings) {
        throw new GatewayError(
          "config_invalid",
          "A server logs in with OAuth, and the config has no oauth block: set oauth.encryptionKey.",
        );
      }
      vault ??= openTokenVault(settings, store(), baseDir);
      return vault;
    },
    gatewayAudiences: () => {
      const { auth, mcpServers } = config();
      return gatewayAudiences(auth, mcpServers);
    },
  };
}
