/**
 * The bearer token each JWT-authenticated caller presented, kept beside the principal it made: the
 * per-user credentials (`passthrough`, `exchange`) need the token itself, and a principal is only an
 * id and roles. The principal object of a request is the key (a weak one: the token goes when the
 * request's principal does), so a token can only ever be found from the request that carried it.
 */
import type { JWTPayload } from "jose";
import type { Principal } from "../../core/types.ts";

export interface CallerToken {
  /** The JWT as the caller sent it. */
  readonly token: string;
  /** Its verified claims. */
  readonly claims: JWTPayload;
}

const tokens = new WeakMap<Principal, CallerToken>();

/** Called by inbound authentication once the token is verified. */
export function rememberCallerToken(principal: Principal, token: CallerToken): void {
  tokens.set(principal, token);
}

/** The verified token `principal` was authenticated with; undefined for API keys and stdio clients. */
export function callerTokenOf(principal: Principal): CallerToken | undefined {
  return tokens.get(principal);
}

/** A token's `aud` as a list (absent: none). */
export function audiencesOf(claims: JWTPayload): readonly string[] {
  const aud = claims.aud;
  if (aud === undefined) return [];
  return typeof aud === "string" ? [aud] : aud;
}
