/**
 * Inbound authentication for the HTTP transport: API keys (stored only as SHA-256) and bearer JWTs
 * (jose), answering with RFC 6750 / RFC 9728 challenges that let MCP clients discover where to log in.
 *
 * Failures never echo the credential: descriptions name what was wrong with it, not what it was.
 */
import { createHash, createPublicKey, type JsonWebKey, type KeyObject, timingSafeEqual } from "node:crypto";
import type { JWTPayload, JWTVerifyGetKey } from "jose";
import { GatewayError } from "../core/errors.ts";
import { ANONYMOUS, type Principal } from "../core/types.ts";
import type { AuthConfig, JwtConfig } from "./config.ts";
import { rememberCallerToken } from "./upstream/caller-tokens.ts";

type Jose = typeof import("jose");

/**
 * jose is loaded when the first bearer token is verified: a gateway without JWT authentication (most,
 * and every stdio one) does not pay its memory and start-up time.
 */
const loadJose = (): Promise<Jose> => import("jose");

export const REALM = "switchboard";
/** RFC 9728 §3: where protected resource metadata lives, before the resource's own path. */
export const RESOURCE_METADATA_PATH = "/.well-known/oauth-protected-resource";

/** Every JWS algorithm that uses a public key; jose still checks that the token's fits the key. */
const ASYMMETRIC_ALGORITHMS = [
  "RS256",
  "RS384",
  "RS512",
  "PS256",
  "PS384",
  "PS512",
  "ES256",
  "ES384",
  "ES512",
  "EdDSA",
  "Ed25519",
];

/**
 * RFC 6750 `b64token`: what may follow "Bearer ". Anything else is a malformed header rather than a
 * wrong credential, and is answered with 400.
 */
const BEARER = /^Bearer +([A-Za-z0-9\-._~+/]+=*) *$/i;
/** Three base64url segments: worth verifying as a JWT. */
const JWT_SHAPE = /^[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+\.[A-Za-z0-9_-]*$/;

export interface AuthHeaders {
  readonly authorization?: string | undefined;
  readonly "x-api-key"?: string | readonly string[] | undefined;
}

export type AuthError =
  /** No credentials at all: a plain challenge, without an error code (RFC 6750 §3.1). */
  | "missing_token"
  /** Credentials that are malformed or ambiguous (400). */
  | "invalid_request"
  /** Credentials that are well-formed but not accepted (401). */
  | "invalid_token"
  /** The token could not be checked right now (JWKS unreachable), so retrying later may work (503). */
  | "temporarily_unavailable";

export type AuthResult =
  | { readonly ok: true; readonly principal: Principal; readonly method: "api_key" | "jwt" }
  | {
      readonly ok: false;
      readonly status: 400 | 401 | 503;
      readonly error: AuthError;
      readonly description: string;
      /**
       * The `WWW-Authenticate` header to send with the response. It carries `error` and
       * `error_description` only for invalid_token and invalid_request (RFC 6750 §3.1).
       */
      readonly wwwAuthenticate: string;
    };

export interface AuthenticateOptions {
  /** This request's protected resource metadata URL (see `resourceMetadataUrl`), for the challenge. */
  readonly resourceMetadataUrl?: string;
}

export interface Authenticator {
  /** False when the config names neither API keys nor a JWT source; every request then fails. */
  readonly enabled: boolean;
  authenticate(headers: AuthHeaders, options?: AuthenticateOptions): Promise<AuthResult>;
}

export interface AuthenticatorDeps {
  /** Used to fetch the JWKS. Default: global fetch. */
  readonly fetch?: (url: string, init: RequestInit) => Promise<Response>;
  /** The clock for `exp`/`nbf`/`iat` checks, in ms. Default `Date.now`. */
  readonly now?: () => number;
  /** How long one JWKS fetch may take, in ms. Default 5000. */
  readonly jwksTimeoutMs?: number;
}

/** Whether the config enables any HTTP credential at all. */
export function httpAuthEnabled(config: AuthConfig): boolean {
  return config.apiKeys.length > 0 || config.jwt !== undefined;
}

/** The principal of local stdio clients. */
export function stdioPrincipal(config: AuthConfig | undefined): Principal {
  const configured = config?.stdioPrincipal;
  if (!configured) return ANONYMOUS;
  return Object.freeze({ id: configured.id, roles: Object.freeze([...configured.roles]) });
}

/**
 * The RFC 9728 metadata URL for a resource URL: the well-known path goes between the origin and the
 * resource's path, so "https://h/mcp" has its metadata at "https://h/.well-known/oauth-protected-resource/mcp".
 */
export function resourceMetadataUrl(resourceUrl: string): string {
  const url = new URL(resourceUrl);
  const path = url.pathname === "/" ? "" : url.pathname.replace(/\/+$/, "");
  return `${url.origin}${RESOURCE_METADATA_PATH}${path}`;
}

/** RFC 6750 §3 forbids `"` and `\` in error_description and allows printable ASCII only. */
function quotable(text: string): string {
  return text.replace(/["\\]/g, "'").replace(/[^\x20-\x7e]/g, "?");
}

/**
 * A `WWW-Authenticate` challenge (RFC 6750 §3, RFC 9728 §5.1). Without `error` it is the plain
 * challenge for a request that sent no credentials.
 */
export function wwwAuthenticate(
  resourceMetadataUrl?: string,
  error?: string,
  description?: string,
  scope?: string,
): string {
  const params = [`realm="${REALM}"`];
  if (resourceMetadataUrl) params.push(`resource_metadata="${quotable(resourceMetadataUrl)}"`);
  if (scope) params.push(`scope="${quotable(scope)}"`);
  if (error) params.push(`error="${quotable(error)}"`);
  if (error && description) params.push(`error_description="${quotable(description)}"`);
  return `Bearer ${params.join(", ")}`;
}

/** The RFC 9728 protected resource metadata document. */
export function protectedResourceMetadata(config: AuthConfig, resourceUrl: string): Record<string, unknown> {
  const metadata = config.resourceMetadata;
  return {
    resource: metadata?.resource ?? resourceUrl,
    ...(metadata ? { authorization_servers: [...metadata.authorizationServers] } : {}),
    bearer_methods_supported: ["header"],
    ...(metadata?.scopesSupported ? { scopes_supported: [...metadata.scopesSupported] } : {}),
    resource_name: "Switchboard",
  };
}

function sha256(text: string): Buffer {
  return createHash("sha256").update(text, "utf8").digest();
}

interface ApiKeyEntry {
  readonly hash: Buffer;
  readonly principal: Principal;
}

/**
 * Looks a presented key up among the configured hashes. Every entry is compared, whether or not an
 * earlier one matched, so the time taken says nothing about which key (if any) it was; the buffers
 * are all 32 bytes, so timingSafeEqual cannot throw.
 */
function findApiKey(entries: readonly ApiKeyEntry[], key: string): Principal | undefined {
  const presented = sha256(key);
  let found: Principal | undefined;
  for (const entry of entries) {
    if (timingSafeEqual(entry.hash, presented) && found === undefined) found = entry.principal;
  }
  return found;
}

/** A claim by name; a name that is not a claim of its own is read as a dotted path into objects. */
function claim(payload: JWTPayload, name: string): unknown {
  if (Object.hasOwn(payload, name)) return payload[name];
  let value: unknown = payload;
  for (const part of name.split(".")) {
    if (value === null || typeof value !== "object" || !Object.hasOwn(value, part)) return undefined;
    value = (value as Record<string, unknown>)[part];
  }
  return value;
}

function rolesOf(value: unknown): string[] {
  if (typeof value === "string") return value.split(/\s+/).filter((role) => role.length > 0);
  if (Array.isArray(value))
    return value.filter((role): role is string => typeof role === "string" && role !== "");
  return [];
}

function list(value: string | readonly string[]): string {
  return typeof value === "string" ? `"${value}"` : value.map((item) => `"${item}"`).join(" or ");
}

interface JwtVerifier {
  readonly key: KeyObject | Uint8Array | JWTVerifyGetKey;
  readonly algorithms: string[];
  readonly audience: string | string[] | undefined;
  readonly source: string;
}

function keyObject(publicKey: string | Record<string, unknown>): KeyObject {
  try {
    return typeof publicKey === "string"
      ? createPublicKey(publicKey)
      : createPublicKey({ key: publicKey as JsonWebKey, format: "jwk" });
  } catch (error) {
    throw new GatewayError(
      "config_invalid",
      `auth.jwt.publicKey is not a usable public key (${(error as Error).message}). Give a PEM public key ` +
        '("-----BEGIN PUBLIC KEY-----") or certificate, or a public JWK; for a shared secret use auth.jwt.secret.',
      { cause: error },
    );
  }
}

function jwtVerifier(jwt: JwtConfig, config: AuthConfig, deps: AuthenticatorDeps): JwtVerifier {
  const audience = jwt.audience ?? config.resourceMetadata?.resource;
  const audienceList =
    audience === undefined ? undefined : typeof audience === "string" ? audience : [...audience];
  if (jwt.secret !== undefined) {
    return {
      key: new TextEncoder().encode(jwt.secret),
      algorithms: jwt.algorithms ?? ["HS256"],
      audience: audienceList,
      source: "the shared secret",
    };
  }
  if (jwt.publicKey !== undefined) {
    return {
      key: keyObject(jwt.publicKey),
      algorithms: jwt.algorithms ?? ASYMMETRIC_ALGORITHMS,
      audience: audienceList,
      source: "the configured public key",
    };
  }
  const jwksUrl = jwt.jwksUrl as string;
  const fetchImpl = deps.fetch;
  let jwks: ReturnType<Jose["createRemoteJWKSet"]> | undefined;
  const key: JWTVerifyGetKey = async (header, token) => {
    const jose = await loadJose();
    jwks ??= jose.createRemoteJWKSet(new URL(jwksUrl), {
      timeoutDuration: deps.jwksTimeoutMs ?? 5000,
      ...(fetchImpl ? { [jose.customFetch]: (url: string, init: RequestInit) => fetchImpl(url, init) } : {}),
    });
    try {
      return await jwks(header, token);
    } catch (error) {
      throw isFetchFailure(error, jose.errors) ? new KeysUnavailable(error) : error;
    }
  };
  return {
    key,
    algorithms: jwt.algorithms ?? ASYMMETRIC_ALGORITHMS,
    audience: audienceList,
    source: jwksUrl,
  };
}

/** The JWKS could not be had: the token may be fine, so the client should retry rather than re-login. */
class KeysUnavailable extends Error {
  constructor(cause: unknown) {
    super("JWKS unavailable", { cause });
  }
}

/**
 * What jose's remote JWKS throws when fetching fails, as opposed to when the set it has does not
 * match the token: network errors (TypeError from fetch), timeouts, a non-200 answer or a body that
 * is not a key set (plain JOSEError).
 */
function isFetchFailure(error: unknown, errors: Jose["errors"]): boolean {
  return (
    error instanceof TypeError ||
    error instanceof errors.JWKSTimeout ||
    error instanceof errors.JWKSInvalid ||
    (error instanceof errors.JOSEError && error.constructor === errors.JOSEError)
  );
}

function describeCause(cause: unknown): string {
  if (!(cause instanceof Error)) return String(cause);
  const inner = cause.cause instanceof Error ? ` (${cause.cause.message})` : "";
  return `${cause.message}${inner}`;
}

type JwtOutcome =
  | { readonly ok: true; readonly principal: Principal }
  | { readonly ok: false; readonly unavailable: boolean; readonly description: string };

function algorithmOf(token: string, jose: Jose): string {
  try {
    return String(jose.decodeProtectedHeader(token).alg ?? "(none)");
  } catch {
    return "(unreadable)";
  }
}

/** A reason a person can act on, from a jose error; never the token. */
function describeJwtFailure(
  error: unknown,
  token: string,
  jwt: JwtConfig,
  verifier: JwtVerifier,
  jose: Jose,
): JwtOutcome {
  const { errors } = jose;
  const fail = (description: string, unavailable = false): JwtOutcome => ({
    ok: false,
    unavailable,
    description,
  });
  if (error instanceof errors.JWTExpired) {
    const exp = typeof error.payload.exp === "number" ? new Date(error.payload.exp * 1000).toISOString() : "";
    return fail(`token expired${exp ? ` at ${exp}` : ""}; get a new token`);
  }
  if (error instanceof errors.JWTClaimValidationFailed) {
    if (error.reason === "missing") return fail(`token has no "${error.claim}" claim`);
    switch (error.claim) {
      case "aud":
        return fail(`audience mismatch: expected ${list(verifier.audience ?? [])}`);
      case "iss":
        return fail(`issuer mismatch: expected ${list(jwt.issuer ?? [])}`);
      case "nbf":
        return fail("token is not valid yet (nbf is in the future); check the clocks of issuer and gateway");
      case "iat":
        return fail("token was issued in the future (iat); check the clocks of issuer and gateway");
      default:
        return fail(`token claim "${error.claim}" is invalid`);
    }
  }
  if (error instanceof errors.JWSSignatureVerificationFailed) return fail("signature invalid");
  if (error instanceof errors.JOSEAlgNotAllowed) {
    return fail(
      `token algorithm "${algorithmOf(token, jose)}" is not allowed (allowed: ${verifier.algorithms.join(", ")})`,
    );
  }
  if (error instanceof errors.JWKSNoMatchingKey) {
    return fail(`signature invalid: no key at ${verifier.source} matches the token's key id and algorithm`);
  }
  if (error instanceof errors.JWKSMultipleMatchingKeys) {
    return fail(`several keys at ${verifier.source} match the token; the token must name its key ("kid")`);
  }
  if (error instanceof errors.JWSInvalid || error instanceof errors.JWTInvalid) {
    return fail(`malformed token: ${error.message}`);
  }
  if (error instanceof KeysUnavailable) {
    return fail(
      `could not fetch the signing keys from ${verifier.source}: ${describeCause(error.cause)}`,
      true,
    );
  }
  if (error instanceof errors.JOSENotSupported || error instanceof TypeError) {
    // jose reports a token whose algorithm does not fit the key's type this way.
    return fail(
      `signature invalid: the token's algorithm "${algorithmOf(token, jose)}" does not fit ${verifier.source}`,
    );
  }
  return fail("token could not be verified");
}

export function createAuthenticator(config: AuthConfig, deps: AuthenticatorDeps = {}): Authenticator {
  const now = deps.now ?? Date.now;
  const apiKeys: ApiKeyEntry[] = config.apiKeys.map((key) => ({
    hash: Buffer.from(key.sha256, "hex"),
    principal: Object.freeze({ id: key.id, roles: Object.freeze([...key.roles]) }),
  }));
  const jwt = config.jwt;
  const verifier = jwt ? jwtVerifier(jwt, config, deps) : undefined;
  const scope = config.resourceMetadata?.scopesSupported?.join(" ");
  const enabled = httpAuthEnabled(config);

  async function verifyJwt(token: string): Promise<JwtOutcome> {
    if (!jwt || !verifier) return { ok: false, unavailable: false, description: "unknown API key" };
    const jose = await loadJose();
    try {
      const { payload } = await jose.jwtVerify(token, verifier.key, {
        algorithms: verifier.algorithms,
        ...(jwt.issuer !== undefined
          ? { issuer: typeof jwt.issuer === "string" ? jwt.issuer : [...jwt.issuer] }
          : {}),
        ...(verifier.audience !== undefined ? { audience: verifier.audience } : {}),
        clockTolerance: jwt.clockToleranceSec,
        currentDate: new Date(now()),
        requiredClaims: ["exp"],
      });
      const id = claim(payload, jwt.principalClaim);
      if (typeof id !== "string" || id === "") {
        return {
          ok: false,
          unavailable: false,
          description: `token has no "${jwt.principalClaim}" claim naming the caller`,
        };
      }
      const roles = rolesOf(claim(payload, jwt.rolesClaim));
      const principal = Object.freeze({ id: `${jwt.principalPrefix}${id}`, roles: Object.freeze(roles) });
      // For servers that take each caller's own credentials (security/upstream/).
      rememberCallerToken(principal, { token, claims: payload });
      return { ok: true, principal };
    } catch (error) {
      return describeJwtFailure(error, token, jwt, verifier, jose);
    }
  }

  return {
    enabled,
    async authenticate(headers, options = {}) {
      const metadataUrl = options.resourceMetadataUrl;
      const reject = (status: 400 | 401 | 503, error: AuthError, description: string): AuthResult => ({
        ok: false,
        status,
        error,
        description,
        // Only a credential the client should replace gets an error code: without one (no
        // credentials, or keys that could not be fetched) a client keeps its token.
        wwwAuthenticate:
          error === "invalid_token" || error === "invalid_request"
            ? wwwAuthenticate(metadataUrl, error, description, scope)
            : wwwAuthenticate(metadataUrl, undefined, undefined, scope),
      });

      const apiKeyHeader = headers["x-api-key"];
      if (Array.isArray(apiKeyHeader)) {
        return reject(400, "invalid_request", "send one X-API-Key header, not several");
      }
      const apiKey = typeof apiKeyHeader === "string" ? apiKeyHeader.trim() : undefined;
      const authorization = headers.authorization?.trim();
      const bearerish = authorization !== undefined && /^bearer(\s|$)/i.test(authorization);

      if (!enabled) {
        return reject(
          401,
          "invalid_token",
          "this gateway accepts no credentials over HTTP: configure auth.apiKeys or auth.jwt",
        );
      }
      if (apiKey !== undefined && bearerish) {
        return reject(
          400,
          "invalid_request",
          "send credentials in one header (Authorization or X-API-Key), not both",
        );
      }
      if (apiKey !== undefined) {
        if (apiKey === "") return reject(400, "invalid_request", "the X-API-Key header is empty");
        const principal = findApiKey(apiKeys, apiKey);
        return principal
          ? { ok: true, principal, method: "api_key" }
          : reject(401, "invalid_token", "unknown API key");
      }
      if (!bearerish) {
        // Another scheme (e.g. Basic) carries nothing this gateway can use: challenge as for none.
        return reject(401, "missing_token", "authentication required: send Authorization: Bearer <token>");
      }
      const match = BEARER.exec(authorization);
      if (!match?.[1]) {
        return reject(400, "invalid_request", 'malformed Authorization header: expected "Bearer <token>"');
      }
      const token = match[1];
      const principal = apiKeys.length > 0 ? findApiKey(apiKeys, token) : undefined;
      if (principal) return { ok: true, principal, method: "api_key" };
      if (!jwt || !JWT_SHAPE.test(token)) {
        return reject(
          401,
          "invalid_token",
          jwt ? "the token is neither a known API key nor a JWT" : "unknown API key",
        );
      }
      const outcome = await verifyJwt(token);
      if (outcome.ok) return { ok: true, principal: outcome.principal, method: "jwt" };
      return outcome.unavailable
        ? reject(503, "temporarily_unavailable", `${outcome.description}; try again shortly`)
        : reject(401, "invalid_token", outcome.description);
    },
  };
}
