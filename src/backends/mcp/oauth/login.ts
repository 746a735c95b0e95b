/**
 * One login of the gateway at a remote MCP server (`switchboard login <server>`), done by the MCP
 * SDK's `auth()` with the vault-backed provider (provider.ts):
 *
 * 1. the server is asked without a token, and its 401 (`WWW-Authenticate`) says where its protected
 *    resource metadata is; the SDK discovers the authorization server from there, registers the
 *    gateway (client ID metadata document, or dynamic registration) unless a client is configured,
 *    and builds the authorization URL with PKCE, `state` and the `resource` indicator;
 * 2. a person opens that URL; the authorization server redirects their browser to a loopback port,
 *    where the code is received once, its `state` checked (constant time) and its `iss` passed on
 *    (the SDK checks it: RFC 9207);
 * 3. the SDK redeems the code, and the tokens are stored, encrypted, where the gateway reads them.
 *
 * With the client credentials grant there is no browser: the token is fetched at once.
 */
import { createServer, type Server } from "node:http";
import type { AddressInfo } from "node:net";
import { auth, extractWWWAuthenticateParams } from "@modelcontextprotocol/client";
import { describeError, GatewayError } from "../../../core/errors.ts";
import { sameText } from "../../../core/same-text.ts";
import type { OAuthAuthConfig } from "../../../security/upstream/config.ts";
import { VaultOAuthProvider } from "./provider.ts";
import type { StoredLogin, TokenVault } from "./token-vault.ts";

export interface LoginOptions {
  readonly server: string;
  readonly url: string;
  /** Headers the server is sent (config `headers`), for the first, unauthenticated request. */
  readonly headers: Readonly<Record<string, string>>;
  readonly config: OAuthAuthConfig;
  readonly vault: TokenVault;
  readonly clientName: string;
  /** Shows the person the URL to open. */
  readonly onAuthorizationUrl: (url: URL, redirectUri: string) => void;
  /** How long to wait for the browser's redirect. */
  readonly timeoutMs: number;
}

export interface LoginOutcome {
  readonly grant: "authorization_code" | "client_credentials";
  readonly scope: string | undefined;
  readonly expiresInSec: number | undefined;
  readonly refreshable: boolean;
}

/** Logs the gateway in to one server and stores the tokens. Rejects with what went wrong. */
export async function login(options: LoginOptions): Promise<LoginOutcome> {
  const { server, url, config } = options;
  const previous = await options.vault.read(server).catch(() => undefined);
  if (config.grant === "client_credentials") {
    const provider = new VaultOAuthProvider(options, { kind: "gateway" }, { url });
    await authorize(
      () => auth(provider, { serverUrl: url, ...(config.scope ? { scope: config.scope } : {}) }),
      server,
    );
    return outcome("client_credentials", provider.login);
  }

  const callback = await listenForRedirect(config.redirectPort ?? 0);
  try {
    const redirectUri = callback.redirectUri;
    // A client the gateway registered itself is kept only if it was registered with this redirect URI.
    const keepClient =
      config.clientId === undefined &&
      previous?.url === url &&
      previous.client !== undefined &&
      (previous.client as { redirect_uris?: string[] }).redirect_uris?.includes(redirectUri) === true;
    // The tokens stored now stay until new ones replace them: a login that fails leaves the last one.
    const kept = previous?.url === url ? previous : undefined;
    const start: StoredLogin = {
      url,
      ...(kept?.tokens ? { tokens: kept.tokens, obtainedAt: kept.obtainedAt } : {}),
      ...(kept?.redirectUri ? { redirectUri: kept.redirectUri } : {}),
      ...(keepClient && kept?.client ? { client: kept.client } : {}),
    } as StoredLogin;
    let authorizationUrl: URL | undefined;
    const provider = new VaultOAuthProvider(
      options,
      {
        kind: "login",
        redirectUri,
        onAuthorizationUrl: (at) => {
          authorizationUrl = at;
        },
      },
      start,
    );
    const challenge = await challengeOf(url, options.headers);
    const scope = config.scope ?? challenge.scope;
    const first = await authorize(
      () =>
        auth(provider, {
          serverUrl: url,
          // A login asks the person again, even when a refresh token is stored.
          forceReauthorization: true,
          ...(challenge.resourceMetadataUrl ? { resourceMetadataUrl: challenge.resourceMetadataUrl } : {}),
          ...(scope ? { scope } : {}),
        }),
      server,
    );
    if (first === "AUTHORIZED") return outcome("authorization_code", provider.login);
    if (!authorizationUrl) {
      throw new GatewayError(
        "backend_error",
        `The login to server "${server}" produced no authorization URL.`,
      );
    }
    options.onAuthorizationUrl(authorizationUrl, redirectUri);
    const redirect = await callback.next(options.timeoutMs, provider.expectedState, server);
    await authorize(
      () =>
        auth(provider, {
          serverUrl: url,
          authorizationCode: redirect.code,
          ...(redirect.iss !== undefined ? { iss: redirect.iss } : {}),
        }),
      server,
    );
    return outcome("authorization_code", provider.login);
  } finally {
    await callback.close();
  }
}

function outcome(grant: LoginOutcome["grant"], login: StoredLogin): LoginOutcome {
  return {
    grant,
    scope: login.tokens?.scope,
    expiresInSec: login.tokens?.expires_in,
    refreshable: login.tokens?.refresh_token !== undefined,
  };
}

async function authorize<T>(run: () => Promise<T>, server: string): Promise<T> {
  try {
    return await run();
  } catch (error) {
    if (error instanceof GatewayError) throw error;
    throw new GatewayError(
      "backend_error",
      `The login to server "${server}" failed: ${describeError(error)}`,
      {
        cause: error,
        data: { server },
      },
    );
  }
}

/**
 * What the server's 401 says about where to log in. A server that answers without one still gets a
 * login: the SDK then looks for its metadata at the well-known paths.
 */
async function challengeOf(
  url: string,
  headers: Readonly<Record<string, string>>,
): Promise<{ resourceMetadataUrl?: URL; scope?: string }> {
  const response = await fetch(url, {
    method: "POST",
    headers: {
      ...withoutAuthorization(headers),
      "content-type": "application/json",
      accept: "application/json, text/event-stream",
    },
    body: JSON.stringify({ jsonrpc: "2.0", id: 0, method: "ping" }),
    signal: AbortSignal.timeout(10_000),
  }).catch((error: unknown) => {
    throw new GatewayError("backend_unavailable", `Cannot reach ${url}: ${describeError(error)}`, {
      cause: error,
    });
  });
  await response.body?.cancel().catch(() => undefined);
  if (response.status !== 401) return {};
  const { resourceMetadataUrl, scope } = extractWWWAuthenticateParams(response);
  return { ...(resourceMetadataUrl ? { resourceMetadataUrl } : {}), ...(scope ? { scope } : {}) };
}

function withoutAuthorization(headers: Readonly<Record<string, string>>): Record<string, string> {
  return Object.fromEntries(
    Object.entries(headers).filter(([name]) => name.toLowerCase() !== "authorization"),
  );
}

interface Redirect {
  readonly code: string;
  readonly iss: string | undefined;
}

interface RedirectListener {
  readonly redirectUri: string;
  /** The next redirect whose `state` matches; rejects on an error redirect or after `timeoutMs`. */
  next(timeoutMs: number, state: string, server: string): Promise<Redirect>;
  close(): Promise<void>;
}

/** A loopback HTTP listener for the authorization server's redirect (`/callback`). */
async function listenForRedirect(port: number): Promise<RedirectListener> {
  const http: Server = createServer();
  await new Promise<void>((resolve, reject) => {
    http.once("error", (error) =>
      reject(
        new GatewayError(
          "backend_unavailable",
          `Cannot receive the login redirect on 127.0.0.1:${port} (${describeError(error)}): free the port, ` +
            "or set auth.redirectPort to another one registered with the authorization server.",
          { cause: error },
        ),
      ),
    );
    http.listen(port, "127.0.0.1", () => resolve());
  });
  const redirectUri = `http://127.0.0.1:${(http.address() as AddressInfo).port}/callback`;
  return {
    redirectUri,
    next: (timeoutMs, state, server) =>
      new Promise<Redirect>((resolve, reject) => {
        const timer = setTimeout(() => {
          reject(
            new GatewayError(
              "timeout",
              `No login redirect for server "${server}" arrived within ${Math.round(timeoutMs / 1000)} s. ` +
                "Run switchboard login again, and open the URL it prints.",
            ),
          );
        }, timeoutMs);
        http.on("request", (req, res) => {
          const at = new URL(req.url ?? "/", redirectUri);
          if (at.pathname !== "/callback") {
            res.writeHead(404).end();
            return;
          }
          const page = (status: number, text: string) =>
            res
              .writeHead(status, { "content-type": "text/plain; charset=utf-8", "cache-control": "no-store" })
              .end(`${text}\n`);
          // A redirect whose state is not ours (a stale tab, or someone else's page) is not a login.
          if (!sameText(at.searchParams.get("state"), state)) {
            page(400, "This redirect does not belong to the login in progress. Start the login again.");
            return;
          }
          clearTimeout(timer);
          const error = at.searchParams.get("error");
          const code = at.searchParams.get("code");
          if (error !== null || code === null) {
            const why = error ?? "no code";
            const description = at.searchParams.get("error_description");
            page(400, `The login to ${server} failed: ${why}${description ? ` (${description})` : ""}.`);
            reject(
              new GatewayError(
                "backend_error",
                `The authorization server refused the login to server "${server}": ${why}` +
                  `${description ? ` (${description})` : ""}.`,
              ),
            );
            return;
          }
          page(200, `Switchboard is logged in to ${server}. You can close this page.`);
          resolve({ code, iss: at.searchParams.get("iss") ?? undefined });
        });
      }),
    close: () =>
      new Promise<void>((resolve) => {
        http.closeAllConnections();
        http.close(() => resolve());
      }),
  };
}
