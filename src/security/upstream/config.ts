/**
 * How the gateway authenticates to a remote MCP server (a server's `auth` key), and where the tokens
 * it gets for itself are kept (the top-level `oauth` key).
 *
 * A remote server takes one of:
 *
 * - `oauth`: the gateway is an OAuth client of the server, with one login for every caller (a person
 *   logs in once with `switchboard login <server>`, or the gateway's own client credentials);
 * - `passthrough`, `exchange`, `per-principal`: each caller's own credentials (per-user), so the
 *   server sees who is calling and applies its own permissions.
 *
 * A stdio server cannot take any of them: its process is started once, with one environment, for
 * every caller (schema.ts says so when one is configured).
 */
import { z } from "zod";
import {
  durationMs,
  headerName,
  headerValue,
  hmacSecret,
  nonEmpty,
  port,
  secureUrl,
} from "../../config/primitives.ts";
import type { AuthConfig } from "../config.ts";

/** The types of `auth` that send each caller's own credentials. */
export const PER_USER_AUTH_TYPES = ["passthrough", "exchange", "per-principal"] as const;
export type PerUserAuthType = (typeof PER_USER_AUTH_TYPES)[number];

const scope = () => nonEmpty("a scope cannot be empty: leave scope out to ask for the server's own");

export const oauthAuthSchema = z
  .strictObject({
    type: z.literal("oauth"),
    /**
     * "authorization_code": a person logs in once with `switchboard login <server>` (PKCE, in a
     * browser), and the gateway refreshes the tokens from then on. "client_credentials": the gateway
     * logs in as itself with `clientId` and `clientSecret`, machine to machine. Default
     * "authorization_code".
     */
    grant: z.enum(["authorization_code", "client_credentials"]).default("authorization_code"),
    /**
     * A client registered at the authorization server beforehand. Default: none, and the gateway
     * identifies itself by `clientMetadataUrl` where the server supports that, else registers itself
     * (dynamic client registration) at each login.
     */
    clientId: nonEmpty().optional(),
    /** The secret of `clientId`, from `${secret:…}`. Default: none (a public client). */
    clientSecret: nonEmpty().optional(),
    /**
     * An https URL where the gateway's client metadata document is published, used as its client id
     * by authorization servers that support client ID metadata documents. Default: none.
     */
    clientMetadataUrl: secureUrl("https://gateway.example.com/oauth/client.json")
      .refine((url) => url.startsWith("https://") && new URL(url).pathname !== "/", {
        error: "must be an https:// URL with a path, e.g. https://gateway.example.com/oauth/client.json",
      })
      .optional(),
    /** The scopes to ask for, space-separated. Default: those the server's metadata lists. */
    scope: scope().optional(),
    /**
     * The loopback port `switchboard login` receives the authorization server's redirect on
     * (`http://127.0.0.1:<port>/callback`). Default 0: any free port, which suits a client the gateway
     * registers itself; a client registered beforehand (`clientId`) needs the port of its redirect URI.
     */
    redirectPort: port().optional(),
    /**
     * How long before its expiry an access token is refreshed, in ms; a token that lives shorter is
     * refreshed at half its lifetime. Default 60 000.
     */
    refreshBeforeExpiryMs: durationMs().default(60_000),
  })
  .superRefine((auth, ctx) => {
    if (auth.clientSecret !== undefined && auth.clientId === undefined) {
      ctx.addIssue({
        code: "custom",
        path: ["clientId"],
        message: "clientSecret needs the clientId it belongs to",
      });
    }
    if (
      auth.grant === "client_credentials" &&
      (auth.clientId === undefined || auth.clientSecret === undefined)
    ) {
      ctx.addIssue({
        code: "custom",
        path: ["grant"],
        message:
          'grant "client_credentials" logs in as the gateway\'s own client: set clientId and clientSecret ' +
          `(from \${secret:…})`,
      });
    }
    if (
      auth.grant === "authorization_code" &&
      auth.clientId !== undefined &&
      auth.redirectPort === undefined
    ) {
      ctx.addIssue({
        code: "custom",
        path: ["redirectPort"],
        message:
          "a client registered beforehand (clientId) has a fixed redirect URI: set redirectPort to its port " +
          "(the redirect URI is http://127.0.0.1:<redirectPort>/callback)",
      });
    }
  });

export const passthroughAuthSchema = z.strictObject({
  type: z.literal("passthrough"),
  /**
   * The audience (`aud`) a caller's token must have to be forwarded to this server: a token meant
   * for another service, or for the gateway itself, is refused. Default: the server's `url`.
   */
  audience: nonEmpty().optional(),
});

export const exchangeAuthSchema = z.strictObject({
  type: z.literal("exchange"),
  /**
   * The authorization server (its issuer URL) whose token endpoint exchanges a caller's token for one
   * meant for this server (token exchange); its metadata is read at start.
   */
  authorizationServer: secureUrl("https://idp.example.com/"),
  /** The gateway's client at that authorization server. */
  clientId: nonEmpty(),
  /** Its secret, from `${secret:…}`. Default: none (a public client). */
  clientSecret: nonEmpty().optional(),
  /** The `resource` asked for. Default: the server's `url`. */
  resource: nonEmpty().optional(),
  /** The `audience` asked for, when the authorization server names its services so. Default: none. */
  audience: nonEmpty().optional(),
  /** The scopes asked for, space-separated. Default: none (the authorization server decides). */
  scope: scope().optional(),
});

const credentialMap = () => z.record(nonEmpty(), headerValue()).default({});

export const perPrincipalAuthSchema = z
  .strictObject({
    type: z.literal("per-principal"),
    /** Principal id -> its credential, from `${secret:…}`. Default {}. */
    principals: credentialMap(),
    /** Role -> the credential of callers with that role (a principal's own entry wins). Default {}. */
    roles: credentialMap(),
    /** The header the credential goes in. Default "Authorization". */
    header: headerName().default("Authorization"),
    /** Put before the credential in the header, followed by a space; "" for none. Default "Bearer". */
    scheme: z.string().default("Bearer"),
  })
  .refine((auth) => Object.keys(auth.principals).length + Object.keys(auth.roles).length > 0, {
    error: "list at least one credential under principals or roles",
  });

/** A remote server's `auth`. */
export const upstreamAuthSchema = z.discriminatedUnion(
  "type",
  [oauthAuthSchema, passthroughAuthSchema, exchangeAuthSchema, perPrincipalAuthSchema],
  {
    error: (issue) =>
      issue.code === "invalid_union"
        ? 'auth.type must be "oauth", "passthrough", "exchange" or "per-principal"'
        : undefined,
  },
);

/** Where the tokens the gateway gets for itself (`auth: { type: "oauth" }`) are kept. */
export const tokenVaultSchema = z.strictObject({
  /**
   * The key tokens are encrypted with (AES-256-GCM, under a key derived from it), at least 32
   * characters, from `${secret:…}`. Required. Changing it makes every stored login unreadable: log in
   * again.
   */
  encryptionKey: hmacSecret(),
  /**
   * The file tokens are kept in when the store is not shared (created with mode 0600; relative paths
   * start at the config file's folder). With a shared store (`store.type: redis`) they are kept there
   * instead, for every replica. Default "./switchboard-oauth-tokens.json".
   */
  tokenFile: nonEmpty().default("./switchboard-oauth-tokens.json"),
});

export type UpstreamAuthConfig = z.output<typeof upstreamAuthSchema>;
export type OAuthAuthConfig = z.output<typeof oauthAuthSchema>;
export type PassthroughAuthConfig = z.output<typeof passthroughAuthSchema>;
export type ExchangeAuthConfig = z.output<typeof exchangeAuthSchema>;
export type PerPrincipalAuthConfig = z.output<typeof perPrincipalAuthSchema>;
export type PerUserAuthConfig = PassthroughAuthConfig | ExchangeAuthConfig | PerPrincipalAuthConfig;
export type TokenVaultConfig = z.output<typeof tokenVaultSchema>;

export function isPerUser(auth: UpstreamAuthConfig | undefined): auth is PerUserAuthConfig {
  return auth !== undefined && auth.type !== "oauth";
}

/**
 * The audiences that name the gateway itself, which a caller's token is never forwarded with: those
 * its inbound JWTs are checked against (`auth.jwt.audience`, `auth.resourceMetadata.resource`), less
 * the audiences of the servers tokens are passed through to.
 */
export function gatewayAudiences(
  auth: AuthConfig | undefined,
  servers: Readonly<
    Record<string, { readonly url?: string; readonly auth?: UpstreamAuthConfig | undefined }>
  >,
): string[] {
  const accepted = auth?.jwt?.audience;
  const own = new Set([
    ...(accepted === undefined ? [] : typeof accepted === "string" ? [accepted] : accepted),
    ...(auth?.resourceMetadata?.resource !== undefined ? [auth.resourceMetadata.resource] : []),
  ]);
  for (const server of Object.values(servers)) {
    if (server.auth?.type !== "passthrough") continue;
    const audience = server.auth.audience ?? server.url;
    if (audience !== undefined && audience !== auth?.resourceMetadata?.resource) own.delete(audience);
  }
  return [...own];
}
