/**
 * Token exchange (RFC 8693) for the `exchange` per-user credential: the caller's JWT goes to the
 * configured authorization server, which answers with a token for the remote server, issued to the
 * same user. The request and its answer are oauth4webapi's (`genericTokenEndpointRequest`), the
 * authorization server's metadata the MCP SDK's discovery (RFC 8414, then OpenID, its issuer checked).
 *
 * Exchanged tokens are cached per caller (principal id) until shortly before they expire, and never
 * past the caller's own token: a user whose token ran out gets nothing more from the cache.
 * Concurrent calls of one caller share one exchange.
 */
import { discoverAuthorizationServerMetadata } from "@modelcontextprotocol/client";
import type * as oauth from "oauth4webapi";
import { describeError, GatewayError } from "../../core/errors.ts";
import type { CallerToken } from "./caller-tokens.ts";
import type { ExchangeAuthConfig } from "./config.ts";

/**
 * oauth4webapi and jose are loaded by the first exchange: a gateway whose servers take no per-user
 * tokens (most) does not pay their memory and start-up time.
 */
const loadLibraries = () => Promise.all([import("oauth4webapi"), import("jose")]);
type OAuthLibrary = typeof import("oauth4webapi");

const GRANT = "urn:ietf:params:oauth:grant-type:token-exchange";
const ACCESS_TOKEN = "urn:ietf:params:oauth:token-type:access_token";
/** An exchanged token is not used in its last minute, or its last half for short-lived ones. */
const RENEW_BEFORE_MS = 60_000;
/** How many callers' tokens are cached at most; the oldest go first beyond. */
const MAX_CACHED = 10_000;

interface Cached {
  readonly token: string;
  readonly subject: string | undefined;
  readonly usableUntil: number;
}

export interface ExchangedToken {
  readonly token: string;
  /** The `sub` of the exchanged token, when it is a JWT. */
  readonly subject: string | undefined;
}

export class TokenExchange {
  readonly #auth: ExchangeAuthConfig;
  readonly #server: string;
  readonly #resource: string;
  readonly #now: () => number;
  readonly #cache = new Map<string, Cached>();
  readonly #pending = new Map<string, Promise<ExchangedToken>>();
  #metadata: Promise<oauth.AuthorizationServer> | undefined;

  constructor(auth: ExchangeAuthConfig, options: { server: string; url: string; now?: () => number }) {
    this.#auth = auth;
    this.#server = options.server;
    this.#resource = auth.resource ?? options.url;
    this.#now = options.now ?? Date.now;
  }

  /** A token for the server, for the caller `key` holding `caller`. */
  tokenFor(key: string, caller: CallerToken): Promise<ExchangedToken> {
    const cached = this.#cache.get(key);
    if (cached && cached.usableUntil > this.#now()) return Promise.resolve(cached);
    let pending = this.#pending.get(key);
    if (!pending) {
      pending = this.#exchange(key, caller).finally(() => this.#pending.delete(key));
      this.#pending.set(key, pending);
    }
    return pending;
  }

  /** Drops the caller's cached token (the server refused it); the next call exchanges again. */
  forget(key: string): boolean {
    this.#cache.delete(key);
    return true;
  }

  async #exchange(key: string, caller: CallerToken): Promise<ExchangedToken> {
    const [[library, jose], as] = await Promise.all([loadLibraries(), this.#authorizationServer()]);
    const client: oauth.Client = { client_id: this.#auth.clientId };
    const clientAuth =
      this.#auth.clientSecret !== undefined
        ? library.ClientSecretBasic(this.#auth.clientSecret)
        : library.None();
    const parameters = new URLSearchParams({
      subject_token: caller.token,
      subject_token_type: ACCESS_TOKEN,
      requested_token_type: ACCESS_TOKEN,
      resource: this.#resource,
    });
    if (this.#auth.audience !== undefined) parameters.set("audience", this.#auth.audience);
    if (this.#auth.scope !== undefined) parameters.set("scope", this.#auth.scope);
    let answer: oauth.TokenEndpointResponse;
    try {
      const response = await library.genericTokenEndpointRequest(as, client, clientAuth, GRANT, parameters, {
        [library.allowInsecureRequests]: isPlainHttp(this.#auth.authorizationServer),
      });
      answer = await library.processGenericTokenEndpointResponse(as, client, response);
    } catch (error) {
      throw this.#failure(error, library);
    }
    const now = this.#now();
    const lifetime = (answer.expires_in ?? 300) * 1000;
    const callerExpiry =
      caller.claims.exp === undefined ? Number.POSITIVE_INFINITY : caller.claims.exp * 1000;
    const usableUntil = Math.min(now + lifetime - Math.min(RENEW_BEFORE_MS, lifetime / 2), callerExpiry);
    const exchanged = { token: answer.access_token, subject: subjectOf(answer.access_token, jose.decodeJwt) };
    if (this.#cache.size >= MAX_CACHED) this.#cache.delete(this.#cache.keys().next().value as string);
    this.#cache.set(key, { ...exchanged, usableUntil });
    return exchanged;
  }

  #authorizationServer(): Promise<oauth.AuthorizationServer> {
    this.#metadata ??= discoverAuthorizationServerMetadata(this.#auth.authorizationServer)
      .then((metadata) => {
        if (!metadata?.token_endpoint) {
          throw new Error("its metadata names no token endpoint");
        }
        return metadata as unknown as oauth.AuthorizationServer;
      })
      .catch((error: unknown) => {
        this.#metadata = undefined;
        throw new GatewayError(
          "backend_unavailable",
          `Server "${this.#server}" exchanges each caller's token at ${this.#auth.authorizationServer}, whose ` +
            `metadata could not be read (${describeError(error)}). Check auth.authorizationServer; retry shortly.`,
          { data: { server: this.#server }, cause: error },
        );
      });
    return this.#metadata;
  }

  #failure(error: unknown, library: OAuthLibrary): GatewayError {
    if (error instanceof library.ResponseBodyError) {
      return new GatewayError(
        "forbidden",
        `Server "${this.#server}" cannot be called as this caller: the authorization server refused to exchange ` +
          `the caller's token (${error.error}${error.error_description ? `: ${error.error_description}` : ""}).`,
        { data: { server: this.#server }, cause: error },
      );
    }
    return new GatewayError(
      "backend_unavailable",
      `Server "${this.#server}" could not get a token for this caller from ${this.#auth.authorizationServer} ` +
        `(${describeError(error)}); retry shortly.`,
      { data: { server: this.#server }, cause: error },
    );
  }
}

function subjectOf(token: string, decodeJwt: typeof import("jose").decodeJwt): string | undefined {
  try {
    const sub = decodeJwt(token).sub;
    return typeof sub === "string" ? sub : undefined;
  } catch {
    // An opaque token: the caller's principal names the user instead.
    return undefined;
  }
}

/** Plain http, which the config (`secureUrl`) accepts on loopback only. */
function isPlainHttp(url: string): boolean {
  return new URL(url).protocol === "http:";
}
