/**
 * The config blocks of the security modules: `auth` (who is calling), `access` (what they may call),
 * `signing` (HMAC-signed calls) and `argumentLimits` (input guards). Like the rest of the config,
 * objects are strict and every option's default is stated here, where it is defined.
 *
 * Globs here are matched like every glob over names (GLOB_OPTIONS in config/primitives.ts): `*` also
 * matches `/`, so a principal glob such as `https://issuer/*` or `auth0|*` works. A leading `!`
 * (negation) is refused: say what to take away with `deny` instead, which is easier to read.
 */
import { z } from "zod";
import { hmacSecret, nonEmpty, plainGlob, secureUrl } from "../config/primitives.ts";

/** A non-empty glob of an access rule, not a negation. */
const glob = () => plainGlob("list the names in `deny` instead");

/** A non-empty glob of `signing.require`, not a negation. */
const signedGlob = () => plainGlob("list only what must be signed");

const name = () => nonEmpty();

const oneOrMany = () => z.union([name(), z.array(name()).min(1)]);

export const apiKeySchema = z.strictObject({
  /** The principal id the key authenticates as, matched by `access.rules[].principals`. */
  id: name(),
  /**
   * SHA-256 of the key, as 64 hex digits (case does not matter), e.g. the output of
   * `printf %s "$KEY" | sha256sum`. The key itself never appears in the config, so a leaked config
   * file does not leak working credentials.
   */
  sha256: z
    .string()
    .regex(/^[0-9a-fA-F]{64}$/, { error: "must be the SHA-256 of the key: 64 hex digits" })
    .transform((hex) => hex.toLowerCase()),
  /** Roles of this principal, matched by `access.rules[].roles` and `signing.require.roles`. Default []. */
  roles: z.array(name()).default([]),
});

export const jwtSchema = z
  .strictObject({
    /**
     * Where the issuer publishes its signing keys (JWKS). Fetched on first use and cached (10 min,
     * refetched sooner when a token names a key id not in the cache, at most every 30 s). One of
     * `jwksUrl`, `publicKey`, `secret` is required.
     */
    jwksUrl: secureUrl("https://idp.example.com/jwks").optional(),
    /**
     * One public key: a PEM string (SPKI "PUBLIC KEY" or an X.509 certificate) or a public JWK object.
     * One of `jwksUrl`, `publicKey`, `secret` is required.
     */
    publicKey: z.union([nonEmpty(), z.looseObject({ kty: z.string() })]).optional(),
    /**
     * A shared secret for HMAC-signed tokens (HS256 unless `algorithms` says otherwise), at least 32
     * characters, used as its UTF-8 bytes. One of `jwksUrl`, `publicKey`, `secret` is required.
     */
    secret: hmacSecret().optional(),
    /** Accepted `iss` value(s). Default: any issuer (the key alone decides who may mint tokens). */
    issuer: oneOrMany().optional(),
    /**
     * Accepted `aud` value(s). Default: `resourceMetadata.resource` when that is set, otherwise any
     * audience. Set one of them: MCP requires a server to accept only tokens minted for it, so that a
     * token a client got for another service cannot be replayed here.
     */
    audience: oneOrMany().optional(),
    /** Leeway for `exp`, `nbf` and `iat` against clock drift between issuer and gateway, in s. Default 30. */
    clockToleranceSec: z.number().int().min(0).max(600).default(30),
    /**
     * Accepted `alg` values. Default: ["HS256"] with `secret`; with `publicKey` or `jwksUrl` the
     * asymmetric JWS algorithms (RS*, PS*, ES*, EdDSA/Ed25519). `none` is never accepted.
     */
    algorithms: z
      .array(
        name().refine((alg) => alg.toLowerCase() !== "none", {
          error: '"none" would accept unsigned tokens',
        }),
      )
      .min(1)
      .optional(),
    /**
     * The claim that names the principal. A dotted path ("act.sub") reaches into objects; a claim whose
     * own name contains dots (e.g. "https://example.com/id") is tried whole first. Default "sub".
     */
    principalClaim: name().default("sub"),
    /**
     * Put before the claim's value to make the principal id ("jwt:alice" for `sub: "alice"`), so that
     * a token's subject can never pass for an API key's `id` (and get the rules, limits, cache entries
     * and sessions written for that key). Access rules name token holders with it: `principals:
     * ["jwt:alice"]`. `""` maps subjects onto API key ids on purpose (an issuer whose subjects are the
     * same people as the keys); API key ids that start with a non-empty prefix are refused. Default "jwt:".
     */
    principalPrefix: z.string().default("jwt:"),
    /**
     * The claim holding the principal's roles: an array of strings, or one space-separated string as
     * in OAuth's `scope` (so "scope" works here). Dotted paths as for `principalClaim`, e.g.
     * "realm_access.roles" for Keycloak. A token without it has no roles. Default "roles".
     */
    rolesClaim: name().default("roles"),
  })
  .refine(
    (jwt) => [jwt.jwksUrl, jwt.publicKey, jwt.secret].filter((source) => source !== undefined).length === 1,
    {
      error: "set exactly one of `jwksUrl`, `publicKey` or `secret`: where the token signing key comes from",
    },
  );

export const resourceMetadataSchema = z.strictObject({
  /**
   * This gateway's resource identifier (RFC 9728 `resource`), e.g. "https://mcp.example.com/mcp".
   * Default: the URL the request came in on, which behind a proxy may not be the public one.
   */
  resource: secureUrl("https://mcp.example.com/mcp").optional(),
  /** The OAuth authorization servers clients should get tokens from (RFC 9728 `authorization_servers`). */
  authorizationServers: z.array(secureUrl("https://idp.example.com/")).min(1),
  /** Scopes clients may request (RFC 9728 `scopes_supported`). Default: not advertised. */
  scopesSupported: z.array(name()).min(1).optional(),
});

export const authSchema = z
  .strictObject({
    /**
     * API keys, accepted as `Authorization: Bearer <key>` or `X-API-Key: <key>`. Default: none. Keys
     * sent as Bearer must use the RFC 6750 token alphabet (letters, digits, `-._~+/`, trailing `=`),
     * which random base64url keys do.
     */
    apiKeys: z
      .array(apiKeySchema)
      .default([])
      .refine((keys) => new Set(keys.map((key) => key.sha256)).size === keys.length, {
        error: "two API keys have the same sha256: each key must be distinct",
      }),
    /** Bearer JWTs (OAuth access tokens). Default: not accepted. */
    jwt: jwtSchema.optional(),
    /**
     * The OAuth protected resource metadata (RFC 9728) served at
     * `/.well-known/oauth-protected-resource`, which MCP clients read to find where to log in.
     * Default: served with no authorization servers (API keys only).
     */
    resourceMetadata: resourceMetadataSchema.optional(),
    /**
     * The principal of local stdio clients, which present no credentials (whoever can start the process
     * is trusted). Default: "anonymous" with no roles.
     */
    stdioPrincipal: z
      .strictObject({
        /** The principal id. */
        id: name(),
        /** Its roles. Default []. */
        roles: z.array(name()).default([]),
      })
      .optional(),
  })
  .superRefine((auth, ctx) => {
    const prefix = auth.jwt?.principalPrefix;
    if (!prefix) return;
    for (const [index, key] of auth.apiKeys.entries()) {
      if (key.id.startsWith(prefix)) {
        ctx.addIssue({
          code: "custom",
          path: ["apiKeys", index, "id"],
          message:
            `"${key.id}" starts with "${prefix}", the prefix of principals authenticated by JWT ` +
            "(auth.jwt.principalPrefix): a token could pass for this key. Rename the key's id.",
        });
      }
    }
  });

export const accessRuleSchema = z
  .strictObject({
    /** Globs over principal ids. The rule applies to a principal whose id matches one of them… */
    principals: z.array(glob()).optional(),
    /**
     * …or who has one of these roles (exact names). A rule with neither `principals` nor `roles`
     * applies to everyone; an empty list matches no one.
     */
    roles: z.array(name()).optional(),
    /**
     * What the rule grants: globs over exposed names ("db__*", "search__web"), or "server:<glob>" for
     * everything of a server ("server:db"). Tools and prompts are judged by their exposed name and
     * server; resources, which have no exposed name, by `server:` entries only. Default [].
     */
    allow: z.array(glob()).default([]),
    /** What the rule takes away, same forms as `allow`. A matching deny beats every allow. Default []. */
    deny: z.array(glob()).default([]),
  })
  .refine((rule) => rule.allow.length > 0 || rule.deny.length > 0, {
    error: "the rule neither allows nor denies anything: add `allow` or `deny`",
  });

/**
 * Which principals may use which tools, prompts and resources. Among the rules that apply to a
 * principal, a deny that matches wins; otherwise an allow that matches grants; otherwise `default`.
 */
export const accessSchema = z.strictObject({
  /**
   * The decision when no applicable rule matches. Default: "allow" when `rules` is empty (access
   * control off), "deny" as soon as there are rules, so that listing what is allowed is enough.
   */
  default: z.enum(["allow", "deny"]).optional(),
  /** The rules, in any order (order only decides which rule an explanation names). Default []. */
  rules: z.array(accessRuleSchema).default([]),
});

export const signingKeySchema = z.strictObject({
  /** The key id clients put in `keyId`; changing keys means adding the new one, then removing the old. */
  id: name(),
  /** The HMAC-SHA256 secret, used as its UTF-8 bytes. At least 32 characters. */
  secret: hmacSecret(),
});

export const signingSchema = z.strictObject({
  /** The keys signatures may use. At least one. */
  keys: z
    .array(signingKeySchema)
    .min(1)
    .refine((keys) => new Set(keys.map((key) => key.id)).size === keys.length, {
      error: "two signing keys have the same id: key ids must be unique",
    }),
  /**
   * How far a signature's timestamp may be from the gateway's clock, either way, in s. Nonces are
   * remembered for twice this long, which is exactly as long as a replay could still pass the
   * timestamp check. Default 300.
   */
  maxSkewSec: z.number().int().min(1).max(3600).default(300),
  /**
   * When the shared store (Redis) that remembers nonces is down: "fail-closed" refuses signed calls,
   * "fail-open" checks replays per replica meanwhile (a replay to another replica would pass).
   * Default "fail-closed".
   */
  onStoreError: z.enum(["fail-closed", "fail-open"]).default("fail-closed"),
  /**
   * Which calls must be signed: those by a principal matching `principals` (globs over ids) or having
   * one of `roles` (any principal when both are absent), to a tool matching `tools` (globs over exposed
   * names; every tool when absent). An empty list matches nothing, so `tools: []` makes signatures
   * optional everywhere. A signature that is present is always verified, required or not.
   * Default {}: every call must be signed.
   */
  require: z
    .strictObject({
      principals: z.array(signedGlob()).optional(),
      roles: z.array(name()).optional(),
      tools: z.array(signedGlob()).optional(),
    })
    .default({}),
});

export const argumentLimitsSchema = z.strictObject({
  /** Most bytes of a call's arguments, as UTF-8 JSON. Default 1 048 576 (1 MiB). */
  maxBytes: z.number().int().positive().default(1_048_576),
  /** Longest string anywhere in the arguments (values and keys), in UTF-16 code units. Default 262 144 (256 KiB). */
  maxStringLength: z.number().int().positive().default(262_144),
  /**
   * Deepest nesting of objects and arrays (the arguments object itself is level 1). At most 1000,
   * so that whatever serialises or validates the arguments afterwards, recursively, stays far from
   * the stack limit. Default 64.
   */
  maxDepth: z.number().int().min(1).max(1000).default(64),
});

export type ApiKeyConfig = z.output<typeof apiKeySchema>;
export type JwtConfig = z.output<typeof jwtSchema>;
export type JwtConfigInput = z.input<typeof jwtSchema>;
export type ResourceMetadataConfig = z.output<typeof resourceMetadataSchema>;
export type AuthConfig = z.output<typeof authSchema>;
export type AuthConfigInput = z.input<typeof authSchema>;
export type AccessRule = z.output<typeof accessRuleSchema>;
export type AccessConfig = z.output<typeof accessSchema>;
export type AccessConfigInput = z.input<typeof accessSchema>;
export type SigningKey = z.output<typeof signingKeySchema>;
export type SigningConfig = z.output<typeof signingSchema>;
export type SigningConfigInput = z.input<typeof signingSchema>;
export type ArgumentLimits = z.output<typeof argumentLimitsSchema>;
export type ArgumentLimitsInput = z.input<typeof argumentLimitsSchema>;
