/**
 * Each caller's own credential for a remote server (config `auth` of type `passthrough`, `exchange`
 * or `per-principal`), worked out per call from the caller's principal:
 *
 * - `passthrough`: the caller's own JWT, forwarded only when its audience names this server and not
 *   the gateway itself (a token meant for the gateway, replayed upstream, would let that server act as
 *   the caller at the gateway). Anything else is refused: the call never leaves the gateway.
 * - `exchange`: a token for this server, obtained for the caller's JWT by token exchange at the
 *   configured authorization server (exchange.ts), cached per caller until shortly before it expires.
 * - `per-principal`: a credential from the config for the caller's principal id, else for one of its
 *   roles (the first listed in the config that the caller has).
 *
 * A refusal is a `forbidden` GatewayError that says what the caller needs; it names no secret and no
 * token.
 */
import { createHash } from "node:crypto";
import { GatewayError } from "../../core/errors.ts";
import type { Principal } from "../../core/types.ts";
import { audiencesOf, type CallerToken, callerTokenOf } from "./caller-tokens.ts";
import type { PassthroughAuthConfig, PerPrincipalAuthConfig, PerUserAuthConfig } from "./config.ts";
import { TokenExchange } from "./exchange.ts";

export interface UpstreamCredential {
  /** The header it is sent in, and its whole value ("Bearer …"). */
  readonly header: string;
  readonly value: string;
  /** For bearer credentials, the token alone (what the transport puts after "Bearer "). */
  readonly bearer?: string;
  /** Who the call goes upstream as, for the audit record: the token's subject, or the config entry. */
  readonly as: string;
  /** Tells credentials apart without holding them: instances of a server are keyed by it. */
  readonly fingerprint: string;
}

export interface PerUserCredentials {
  readonly type: PerUserAuthConfig["type"];
  /** This caller's credential; a GatewayError (forbidden) when the caller cannot go upstream. */
  forCaller(principal: Principal): Promise<UpstreamCredential>;
  /** The server answered 401 to `credential`: forget it. True when asking again may give a new one. */
  refused(principal: Principal, credential: UpstreamCredential): boolean;
}

export interface PerUserCredentialOptions {
  readonly server: string;
  /** The server's URL: the default audience and resource. */
  readonly url: string;
  /** Audiences that name the gateway itself: a token with one of them is never forwarded. */
  readonly gatewayAudiences: () => readonly string[];
  readonly now?: () => number;
}

export function perUserCredentials(
  auth: PerUserAuthConfig,
  options: PerUserCredentialOptions,
): PerUserCredentials {
  switch (auth.type) {
    case "passthrough":
      return passthrough(auth, options);
    case "exchange": {
      const exchange = new TokenExchange(auth, options);
      return {
        type: "exchange",
        forCaller: async (principal) => {
          const caller = requireToken(principal, options.server, "exchange");
          const got = await exchange.tokenFor(principal.id, caller);
          return bearer(got.token, got.subject ?? principal.id);
        },
        refused: (principal) => exchange.forget(principal.id),
      };
    }
    case "per-principal":
      return perPrincipal(auth, options);
  }
}

function passthrough(auth: PassthroughAuthConfig, options: PerUserCredentialOptions): PerUserCredentials {
  const audience = auth.audience ?? options.url;
  const now = options.now ?? Date.now;
  return {
    type: "passthrough",
    forCaller: async (principal) => {
      const caller = requireToken(principal, options.server, "passthrough");
      const audiences = audiencesOf(caller.claims);
      const own = new Set(options.gatewayAudiences().filter((a) => a !== audience));
      const forGateway = audiences.filter((a) => own.has(a));
      if (forGateway.length > 0) {
        throw forbidden(
          options.server,
          `the caller's token is meant for the gateway itself (audience ${forGateway.map((a) => `"${a}"`).join(", ")}), ` +
            `and a token for the gateway is never forwarded. Present a token whose audience is "${audience}" only`,
        );
      }
      if (!audiences.includes(audience)) {
        throw forbidden(
          options.server,
          `the caller's token is meant for ${audiences.length > 0 ? audiences.map((a) => `"${a}"`).join(", ") : "no audience"}, ` +
            `not for this server ("${audience}"). Present a token whose audience is "${audience}"`,
        );
      }
      const exp = caller.claims.exp;
      if (exp !== undefined && exp * 1000 <= now()) {
        throw forbidden(options.server, "the caller's token has expired; get a new one");
      }
      return bearer(caller.token, typeof caller.claims.sub === "string" ? caller.claims.sub : principal.id);
    },
    // The caller's own token: only the caller can get a new one.
    refused: () => false,
  };
}

function perPrincipal(auth: PerPrincipalAuthConfig, options: PerUserCredentialOptions): PerUserCredentials {
  const prefix = auth.scheme === "" ? "" : `${auth.scheme} `;
  const credential = (value: string, as: string): UpstreamCredential => ({
    header: auth.header,
    value: `${prefix}${value}`,
    ...(auth.header.toLowerCase() === "authorization" && auth.scheme.toLowerCase() === "bearer"
      ? { bearer: value }
      : {}),
    as,
    fingerprint: fingerprintOf(value),
  });
  return {
    type: "per-principal",
    forCaller: async (principal) => {
      const own = auth.principals[principal.id];
      if (own !== undefined) return credential(own, principal.id);
      for (const [role, value] of Object.entries(auth.roles)) {
        if (principal.roles.includes(role)) return credential(value, `role:${role}`);
      }
      throw forbidden(
        options.server,
        `no credential is configured for principal "${principal.id}" or its roles ` +
          `(mcpServers.${options.server}.auth.principals / roles). Ask an administrator to add one`,
      );
    },
    refused: () => false,
  };
}

function bearer(token: string, as: string): UpstreamCredential {
  return {
    header: "Authorization",
    value: `Bearer ${token}`,
    bearer: token,
    as,
    fingerprint: fingerprintOf(token),
  };
}

function requireToken(principal: Principal, server: string, type: string): CallerToken {
  const caller = callerTokenOf(principal);
  if (caller) return caller;
  throw forbidden(
    server,
    `it takes each caller's own token ("${type}"), and principal "${principal.id}" presented none: ` +
      "call it over HTTP with a JWT (an API key, or a local stdio client, has no token to send on)",
  );
}

function forbidden(server: string, why: string): GatewayError {
  return new GatewayError("forbidden", `Server "${server}" cannot be called as this caller: ${why}.`, {
    data: { server },
  });
}

function fingerprintOf(secret: string): string {
  return createHash("sha256").update(secret).digest("base64url").slice(0, 22);
}
