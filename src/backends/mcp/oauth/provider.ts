/**
 * The gateway as the MCP SDK's OAuth client (`OAuthClientProvider`): the SDK's `auth()` does the
 * protocol (discovery from the server's 401 and its RFC 9728 metadata, RFC 8414 / OpenID metadata,
 * client ID metadata documents, dynamic registration, PKCE, `resource` indicators, the `iss` check of
 * RFC 9207, refresh and client credentials); this class only answers its questions from the token
 * vault and the server's config, and writes back what it is given.
 *
 * Two modes: `login` (the `switchboard login` command, which sends a person to the authorization URL
 * and receives the redirect on a loopback port) and `gateway` (a running gateway, which never sends
 * anyone anywhere: when only a new login would do, it says to run `switchboard login <server>`).
 */
import { randomBytes } from "node:crypto";
import type {
  OAuthClientInformationMixed,
  OAuthClientMetadata,
  OAuthClientProvider,
  OAuthDiscoveryState,
  OAuthTokens,
  StoredOAuthClientInformation,
} from "@modelcontextprotocol/client";
import { GatewayError } from "../../../core/errors.ts";
import type { OAuthAuthConfig } from "../../../security/upstream/config.ts";
import type { StoredLogin, TokenVault } from "./token-vault.ts";

/** The error of a server whose login is missing, expired or revoked. */
export class LoginRequired extends GatewayError {
  constructor(server: string, why: string) {
    super(
      "backend_unavailable",
      `Server "${server}" needs a login: ${why}. Run \`switchboard login ${server}\` ` +
        "(with the gateway's config), then it comes up by itself.",
      { data: { server, login: true } },
    );
    this.name = "LoginRequired";
  }
}

export type ProviderMode =
  | { readonly kind: "gateway" }
  | {
      readonly kind: "login";
      readonly redirectUri: string;
      /** Where the person is sent: the authorization URL. */
      readonly onAuthorizationUrl: (url: URL) => void;
    };

export interface ProviderOptions {
  readonly server: string;
  readonly url: string;
  readonly config: OAuthAuthConfig;
  readonly vault: TokenVault;
  readonly clientName: string;
  readonly now?: () => number;
}

export class VaultOAuthProvider implements OAuthClientProvider {
  readonly #options: ProviderOptions;
  readonly #mode: ProviderMode;
  #login: StoredLogin;
  #codeVerifier: string | undefined;
  /** The `state` sent with the authorization request, which the redirect must bring back. */
  readonly expectedState = randomBytes(24).toString("base64url");

  constructor(options: ProviderOptions, mode: ProviderMode, login: StoredLogin | undefined) {
    this.#options = options;
    this.#mode = mode;
    this.#login = login ?? { url: options.url };
  }

  /** What the vault holds for this server, as this provider last saw or saved it. */
  get login(): StoredLogin {
    return this.#login;
  }

  get clientMetadataUrl(): string | undefined {
    return this.#options.config.clientMetadataUrl;
  }

  /**
   * Interactive for the authorization code grant: at login the loopback redirect; in a running
   * gateway the redirect URI that login used, so that the SDK refreshes as the same client.
   */
  get redirectUrl(): string | undefined {
    if (this.#options.config.grant === "client_credentials") return undefined;
    if (this.#mode.kind === "login") return this.#mode.redirectUri;
    return this.#login.redirectUri ?? "http://127.0.0.1/callback";
  }

  get clientMetadata(): OAuthClientMetadata {
    const { config } = this.#options;
    const redirect = this.redirectUrl;
    return {
      client_name: this.#options.clientName,
      redirect_uris: redirect === undefined ? [] : [redirect],
      grant_types:
        config.grant === "client_credentials"
          ? ["client_credentials"]
          : ["authorization_code", "refresh_token"],
      response_types: config.grant === "client_credentials" ? [] : ["code"],
      token_endpoint_auth_method: config.clientSecret !== undefined ? "client_secret_basic" : "none",
      ...(config.scope !== undefined ? { scope: config.scope } : {}),
    };
  }

  state(): string {
    return this.expectedState;
  }

  /** The client credentials grant's request; undefined leaves the authorization code grant to the SDK. */
  prepareTokenRequest(scope?: string): URLSearchParams | undefined {
    if (this.#options.config.grant !== "client_credentials") return undefined;
    const params = new URLSearchParams({ grant_type: "client_credentials" });
    if (scope) params.set("scope", scope);
    return params;
  }

  clientInformation(): StoredOAuthClientInformation | undefined {
    const { clientId, clientSecret } = this.#options.config;
    if (clientId !== undefined) {
      const configured: OAuthClientInformationMixed = {
        client_id: clientId,
        ...(clientSecret !== undefined ? { client_secret: clientSecret } : {}),
      };
      // The issuer the stored login was made with binds the configured client to it, as the SDK asks.
      const issuer = this.#login.client?.issuer;
      return issuer === undefined ? configured : { ...configured, issuer };
    }
    return this.#login.client;
  }

  async saveClientInformation(client: StoredOAuthClientInformation): Promise<void> {
    await this.#save({ ...this.#login, client });
  }

  tokens(): (OAuthTokens & { issuer?: string }) | undefined {
    return this.#login.tokens;
  }

  async saveTokens(tokens: OAuthTokens & { issuer?: string }): Promise<void> {
    const now = (this.#options.now ?? Date.now)();
    await this.#save({
      ...this.#login,
      tokens,
      obtainedAt: now,
      ...(this.#mode.kind === "login" ? { redirectUri: this.#mode.redirectUri } : {}),
    });
  }

  redirectToAuthorization(authorizationUrl: URL): void {
    if (this.#mode.kind === "login") {
      this.#mode.onAuthorizationUrl(authorizationUrl);
      return;
    }
    throw new LoginRequired(
      this.#options.server,
      this.#login.tokens === undefined
        ? "its login is missing, expired or was revoked"
        : "its tokens are no longer accepted",
    );
  }

  saveCodeVerifier(codeVerifier: string): void {
    this.#codeVerifier = codeVerifier;
  }

  codeVerifier(): string {
    if (this.#codeVerifier === undefined) {
      throw new GatewayError("internal", "No PKCE code verifier: the login did not start here.");
    }
    return this.#codeVerifier;
  }

  async saveDiscoveryState(discovery: OAuthDiscoveryState): Promise<void> {
    await this.#save({ ...this.#login, discovery });
  }

  discoveryState(): OAuthDiscoveryState | undefined {
    return this.#login.discovery;
  }

  async invalidateCredentials(scope: "all" | "client" | "tokens" | "verifier" | "discovery"): Promise<void> {
    const { tokens: _tokens, obtainedAt: _obtainedAt, client, discovery, ...rest } = this.#login;
    switch (scope) {
      case "verifier":
        this.#codeVerifier = undefined;
        return;
      case "tokens":
        await this.#save({ ...rest, ...(client ? { client } : {}), ...(discovery ? { discovery } : {}) });
        return;
      case "client":
        await this.#save({
          ...this.#login,
          client: undefined,
        } as StoredLogin);
        return;
      case "discovery":
        await this.#save({ ...this.#login, discovery: undefined } as StoredLogin);
        return;
      case "all":
        this.#codeVerifier = undefined;
        await this.#save({ url: this.#options.url });
        return;
    }
  }

  async #save(login: StoredLogin): Promise<void> {
    this.#login = JSON.parse(JSON.stringify(login)) as StoredLogin;
    await this.#options.vault.write(this.#options.server, this.#login);
  }
}
