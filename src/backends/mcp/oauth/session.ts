/**
 * A running gateway's OAuth login of one remote server, as the MCP transport asks for it
 * (`AuthProvider`): the access token before every request, and what to do when the server answers 401.
 *
 * - The token is refreshed before it expires (`refreshBeforeExpiryMs`, or at half its lifetime when
 *   it lives shorter), when a request is about to use it.
 * - A 401 triggers one refresh; the transport then retries the request once. A second 401 fails it.
 * - A refresh happens once, however many calls (and replicas) want it: under the vault's lock, after
 *   reading the stored login again, so whoever comes second finds the new token instead of refreshing
 *   again (with rotated refresh tokens a second refresh would fail, and may revoke the grant).
 * - When only a new login would help (none stored, the refresh token refused, the grant revoked),
 *   `onLoginLost` is told, and every request fails with the `switchboard login <server>` hint until
 *   a login is stored again, which the next connection attempt reads.
 *
 * The refresh itself, and client credentials, are the SDK's `auth()` (see provider.ts).
 */
import { type AuthProvider, auth } from "@modelcontextprotocol/client";
import { describeError } from "../../../core/errors.ts";
import type { Logger } from "../../../observability/logger.ts";
import type { OAuthAuthConfig } from "../../../security/upstream/config.ts";
import type { UpstreamAuth } from "../transport.ts";
import { LoginRequired, VaultOAuthProvider } from "./provider.ts";
import type { StoredLogin, TokenVault } from "./token-vault.ts";

export interface OAuthSessionOptions {
  readonly server: string;
  readonly url: string;
  readonly config: OAuthAuthConfig;
  readonly vault: TokenVault;
  readonly clientName: string;
  readonly log: Logger;
  readonly now?: () => number;
}

export class OAuthSession implements AuthProvider, UpstreamAuth {
  readonly #options: OAuthSessionOptions;
  readonly #now: () => number;
  /** The login as last read or refreshed: its token is the one a 401 refused. */
  #login: StoredLogin | undefined;
  /** The renewal in progress in this process, which concurrent requests join. */
  #renewing: Promise<StoredLogin> | undefined;
  /** The connections' (the primary's, a session's): told when the login is gone, so that they end. */
  readonly #onLost = new Set<(reason: string) => void>();
  readonly provider: AuthProvider = this;

  constructor(options: OAuthSessionOptions) {
    this.#options = options;
    this.#now = options.now ?? Date.now;
  }

  /**
   * Read from the vault at every request, so that every replica (and the login command) sees one
   * token set: a token another replica refreshed is used at once, never an older one still valid.
   */
  async token(): Promise<string | undefined> {
    let login = await this.#read();
    if (!login?.tokens || this.#expiring(login)) {
      login = await this.#renew(login?.tokens?.access_token);
    }
    return login.tokens?.access_token;
  }

  watch(onLost: (reason: string) => void): () => void {
    this.#onLost.add(onLost);
    return () => this.#onLost.delete(onLost);
  }

  async onUnauthorized(): Promise<void> {
    const refused = this.#login?.tokens?.access_token;
    this.#options.log.info("the server refused the access token (401); refreshing it once");
    await this.#renew(refused, true);
  }

  /** Whether the access token is within its refresh window. */
  #expiring(login: StoredLogin): boolean {
    const lifetimeSec = login.tokens?.expires_in;
    if (lifetimeSec === undefined || login.obtainedAt === undefined) return false;
    const lifetime = lifetimeSec * 1000;
    const margin = Math.min(this.#options.config.refreshBeforeExpiryMs, lifetime / 2);
    return this.#now() >= login.obtainedAt + lifetime - margin;
  }

  async #read(): Promise<StoredLogin | undefined> {
    const login = await this.#options.vault.read(this.#options.server);
    if (login !== undefined && login.url !== this.#options.url) {
      this.#lost(`its login was made for ${login.url}, and the server's url is now ${this.#options.url}`);
    }
    this.#login = login;
    return login;
  }

  /**
   * A usable token, refreshed (or, for client credentials, fetched) unless someone else did it since
   * `stale` was read. `refused`: the server turned `stale` down, so it is renewed even if it looks fresh.
   */
  #renew(stale: string | undefined, refused = false): Promise<StoredLogin> {
    this.#renewing ??= this.#options.vault
      .withLock(this.#options.server, async () => {
        const login = await this.#read();
        const current = login?.tokens?.access_token;
        const renewedElsewhere = current !== undefined && current !== stale;
        if (login?.tokens && renewedElsewhere && !this.#expiring(login)) return login;
        if (login?.tokens && !refused && !this.#expiring(login)) return login;
        return this.#refresh(login);
      })
      .finally(() => {
        this.#renewing = undefined;
      });
    return this.#renewing;
  }

  async #refresh(login: StoredLogin | undefined): Promise<StoredLogin> {
    const { server, config } = this.#options;
    const credentials = config.grant === "client_credentials";
    if (!credentials && !login?.tokens) this.#lost("no login is stored for it");
    if (!credentials && !login?.tokens?.refresh_token) {
      this.#lost("its access token expired and the authorization server gave no refresh token");
    }
    const provider = new VaultOAuthProvider(
      {
        server,
        url: this.#options.url,
        config,
        vault: this.#options.vault,
        clientName: this.#options.clientName,
        now: this.#now,
      },
      { kind: "gateway" },
      login,
    );
    try {
      await auth(provider, { serverUrl: this.#options.url });
    } catch (error) {
      if (error instanceof LoginRequired) {
        this.#login = provider.login;
        this.#tellLost(error.message);
        throw error;
      }
      this.#options.log.warn({ err: describeError(error) }, "could not refresh the OAuth access token");
      throw error;
    }
    this.#login = provider.login;
    this.#options.log.info(
      { grant: credentials ? "client_credentials" : "refresh_token" },
      credentials ? "obtained a new access token" : "refreshed the access token",
    );
    return provider.login;
  }

  #lost(why: string): never {
    const error = new LoginRequired(this.#options.server, why);
    this.#tellLost(error.message);
    throw error;
  }

  #tellLost(reason: string): void {
    for (const onLost of [...this.#onLost]) onLost(reason);
  }
}
