import assert from "node:assert/strict";
import { createHash } from "node:crypto";
import { createServer, type Server } from "node:http";
import type { AddressInfo } from "node:net";
import { after, before, describe, test } from "node:test";
import { exportJWK, exportSPKI, generateKeyPair, type JWTPayload, SignJWT } from "jose";

type PrivateKey = Awaited<ReturnType<typeof generateKeyPair>>["privateKey"];

import {
  type AuthResult,
  createAuthenticator,
  httpAuthEnabled,
  protectedResourceMetadata,
  resourceMetadataUrl,
  stdioPrincipal,
  wwwAuthenticate,
} from "../../../src/security/auth.ts";
import { type AuthConfigInput, authSchema } from "../../../src/security/config.ts";

const NOW = 1_750_000_000_000;
const NOW_SEC = NOW / 1000;
const now = () => NOW;
const METADATA_URL = "https://mcp.example.com/.well-known/oauth-protected-resource/mcp";
const ISSUER = "https://idp.example.com/";
const AUDIENCE = "https://mcp.example.com/mcp";

const API_KEY = "sk_test_4f1c2d9e8b7a6f5e4d3c2b1a0f9e8d7c";
const sha = (text: string) => createHash("sha256").update(text).digest("hex");

function config(input: AuthConfigInput) {
  return authSchema.parse(input);
}

function failure(result: AuthResult) {
  assert.equal(result.ok, false, `expected a failure, got ${JSON.stringify(result)}`);
  return result as Extract<AuthResult, { ok: false }>;
}

function success(result: AuthResult) {
  assert.equal(result.ok, true, `expected success, got ${JSON.stringify(result)}`);
  return result as Extract<AuthResult, { ok: true }>;
}

describe("API keys", () => {
  const auth = createAuthenticator(
    config({
      apiKeys: [
        { id: "ci-bot", sha256: sha(API_KEY).toUpperCase(), roles: ["deployer"] },
        { id: "other", sha256: sha("another-key-0123456789") },
      ],
    }),
    { now },
  );

  test("a known key as Bearer or X-API-Key authenticates its principal with its roles", async () => {
    const viaBearer = success(await auth.authenticate({ authorization: `Bearer ${API_KEY}` }));
    assert.deepEqual(viaBearer.principal, { id: "ci-bot", roles: ["deployer"] });
    assert.equal(viaBearer.method, "api_key");
    const viaHeader = success(await auth.authenticate({ "x-api-key": "another-key-0123456789" }));
    assert.deepEqual(viaHeader.principal, { id: "other", roles: [] });
  });

  test("an unknown key is a 401 invalid_token with a challenge naming the metadata URL", async () => {
    const result = failure(
      await auth.authenticate({ authorization: `Bearer ${API_KEY}x` }, { resourceMetadataUrl: METADATA_URL }),
    );
    assert.equal(result.status, 401);
    assert.equal(result.error, "invalid_token");
    assert.equal(result.description, "unknown API key");
    assert.equal(
      result.wwwAuthenticate,
      `Bearer realm="switchboard", resource_metadata="${METADATA_URL}", error="invalid_token", error_description="unknown API key"`,
    );
  });

  test("keys of any length, even empty-ish or huge, are compared without throwing", async () => {
    for (const key of ["x", "a".repeat(10_000), API_KEY.slice(0, -1)]) {
      const result = failure(await auth.authenticate({ "x-api-key": key }));
      assert.equal(result.status, 401);
    }
  });

  test("no credentials: 401 with a plain challenge, without an error code (RFC 6750 §3.1)", async () => {
    const result = failure(await auth.authenticate({}, { resourceMetadataUrl: METADATA_URL }));
    assert.equal(result.status, 401);
    assert.equal(result.error, "missing_token");
    assert.equal(result.wwwAuthenticate, `Bearer realm="switchboard", resource_metadata="${METADATA_URL}"`);
    const basic = failure(await auth.authenticate({ authorization: "Basic dXNlcjpwYXNz" }));
    assert.equal(basic.status, 401);
    assert.equal(basic.error, "missing_token");
  });

  test("malformed or ambiguous credentials are a 400 invalid_request", async () => {
    const both = failure(
      await auth.authenticate({ authorization: `Bearer ${API_KEY}`, "x-api-key": API_KEY }),
    );
    assert.equal(both.status, 400);
    assert.equal(both.error, "invalid_request");
    const badChars = failure(await auth.authenticate({ authorization: "Bearer has spaces inside" }));
    assert.equal(badChars.status, 400);
    const empty = failure(await auth.authenticate({ authorization: "Bearer " }));
    assert.equal(empty.status, 400);
    const repeated = failure(await auth.authenticate({ "x-api-key": [API_KEY, API_KEY] }));
    assert.equal(repeated.status, 400);
  });

  test("descriptions never contain the presented credential", async () => {
    const secret = "sk_leak_check_5555555555555555";
    for (const headers of [{ authorization: `Bearer ${secret}` }, { "x-api-key": secret }]) {
      const result = failure(await auth.authenticate(headers));
      assert.ok(!result.description.includes(secret));
      assert.ok(!result.wwwAuthenticate.includes(secret));
    }
  });
});

describe("JWT from a JWKS served over HTTP", () => {
  let server: Server;
  let jwksUrl: string;
  let jwksRequests = 0;
  let jwksStatus = 200;
  let signingKey: PrivateKey;
  let impostorKey: PrivateKey;
  const kid = "key-1";

  before(async () => {
    const pair = await generateKeyPair("RS256");
    signingKey = pair.privateKey;
    impostorKey = (await generateKeyPair("RS256")).privateKey;
    const jwk = { ...(await exportJWK(pair.publicKey)), kid, alg: "RS256", use: "sig" };
    server = createServer((_request, response) => {
      jwksRequests++;
      response.writeHead(jwksStatus, { "content-type": "application/json" });
      response.end(JSON.stringify({ keys: [jwk] }));
    });
    await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
    jwksUrl = `http://127.0.0.1:${(server.address() as AddressInfo).port}/jwks`;
  });

  after(async () => {
    await new Promise<void>((resolve) => server.close(() => resolve()));
  });

  function jwtAuth(extra: Partial<AuthConfigInput["jwt"] & object> = {}) {
    return createAuthenticator(
      config({
        jwt: { jwksUrl, issuer: ISSUER, audience: AUDIENCE, rolesClaim: "realm_access.roles", ...extra },
      }),
      { now },
    );
  }

  async function token(
    claims: JWTPayload = {},
    options: { key?: PrivateKey; exp?: number | null; alg?: string } = {},
  ): Promise<string> {
    const payload: JWTPayload = {
      realm_access: { roles: ["analyst", "viewer"] },
      iss: ISSUER,
      aud: AUDIENCE,
      sub: "alice@example.com",
      iat: NOW_SEC - 60,
      exp: options.exp ?? NOW_SEC + 3600,
      ...claims,
    };
    if (options.exp === null) delete payload.exp;
    const jwt = new SignJWT(payload).setProtectedHeader({ alg: options.alg ?? "RS256", kid });
    return jwt.sign(options.key ?? signingKey);
  }

  test("a valid token authenticates its subject with the roles at a dotted claim path", async () => {
    const auth = jwtAuth();
    const before = jwksRequests;
    const first = success(await auth.authenticate({ authorization: `Bearer ${await token()}` }));
    assert.deepEqual(first.principal, { id: "jwt:alice@example.com", roles: ["analyst", "viewer"] });
    assert.equal(first.method, "jwt");
    success(await auth.authenticate({ authorization: `Bearer ${await token()}` }));
    assert.equal(jwksRequests - before, 1, "the key set is fetched once and cached");
  });

  test("roles may be a space-separated scope string", async () => {
    const auth = jwtAuth({ rolesClaim: "scope" });
    const result = success(
      await auth.authenticate({
        authorization: `Bearer ${await token({ scope: "tools:read  tools:write" })}`,
      }),
    );
    assert.deepEqual(result.principal.roles, ["tools:read", "tools:write"]);
  });

  test("an expired token is refused as expired", async () => {
    const result = failure(
      await jwtAuth().authenticate({ authorization: `Bearer ${await token({}, { exp: NOW_SEC - 120 })}` }),
    );
    assert.equal(result.status, 401);
    assert.equal(result.error, "invalid_token");
    assert.match(result.description, /^token expired at 2025-06-15T15:04:40\.000Z; get a new token$/);
    assert.match(result.wwwAuthenticate, /error="invalid_token", error_description="token expired at/);
  });

  test("a token that expired within the clock tolerance is accepted; beyond it, refused", async () => {
    const justExpired = await token({}, { exp: NOW_SEC - 10 });
    success(await jwtAuth().authenticate({ authorization: `Bearer ${justExpired}` }));
    failure(await jwtAuth({ clockToleranceSec: 5 }).authenticate({ authorization: `Bearer ${justExpired}` }));
  });

  test("a token not valid yet (nbf) is refused beyond the tolerance", async () => {
    const early = await token({ nbf: NOW_SEC + 600 });
    const result = failure(await jwtAuth().authenticate({ authorization: `Bearer ${early}` }));
    assert.match(result.description, /not valid yet/);
    success(await jwtAuth().authenticate({ authorization: `Bearer ${await token({ nbf: NOW_SEC + 20 })}` }));
  });

  test("a token for another audience is refused, naming the audience expected", async () => {
    const result = failure(
      await jwtAuth().authenticate({
        authorization: `Bearer ${await token({ aud: "https://other.example.com" })}`,
      }),
    );
    assert.equal(result.description, `audience mismatch: expected "${AUDIENCE}"`);
  });

  test("a token from another issuer is refused", async () => {
    const result = failure(
      await jwtAuth().authenticate({
        authorization: `Bearer ${await token({ iss: "https://evil.example.com/" })}`,
      }),
    );
    assert.equal(result.description, `issuer mismatch: expected "${ISSUER}"`);
  });

  test("a token signed by another key under the same kid, or tampered with, has an invalid signature", async () => {
    const forged = await token({}, { key: impostorKey });
    assert.equal(
      failure(await jwtAuth().authenticate({ authorization: `Bearer ${forged}` })).description,
      "signature invalid",
    );
    const [header, , signature] = (await token()).split(".");
    const payload = Buffer.from(
      JSON.stringify({ sub: "root", iss: ISSUER, aud: AUDIENCE, exp: NOW_SEC + 60 }),
    ).toString("base64url");
    const tampered = failure(
      await jwtAuth().authenticate({ authorization: `Bearer ${header}.${payload}.${signature}` }),
    );
    assert.equal(tampered.description, "signature invalid");
    assert.ok(!tampered.description.includes(payload));
  });

  test("a token without exp, or without the principal claim, is refused", async () => {
    const noExp = failure(
      await jwtAuth().authenticate({ authorization: `Bearer ${await token({}, { exp: null })}` }),
    );
    assert.equal(noExp.description, 'token has no "exp" claim');
    const noSubject = failure(
      await jwtAuth({ principalClaim: "client_id" }).authenticate({
        authorization: `Bearer ${await token()}`,
      }),
    );
    assert.equal(noSubject.description, 'token has no "client_id" claim naming the caller');
  });

  test("an HMAC token is refused by a public-key configuration (no algorithm confusion)", async () => {
    const hs = await new SignJWT({ sub: "mallory" })
      .setProtectedHeader({ alg: "HS256", kid })
      .setIssuer(ISSUER)
      .setAudience(AUDIENCE)
      .setExpirationTime(NOW_SEC + 60)
      .sign(new TextEncoder().encode("x".repeat(32)));
    const result = failure(await jwtAuth().authenticate({ authorization: `Bearer ${hs}` }));
    assert.match(result.description, /token algorithm "HS256" is not allowed/);
  });

  test("when the JWKS cannot be fetched the answer is 503, not invalid_token", async () => {
    jwksStatus = 500;
    try {
      // A fresh authenticator has no cached keys.
      const result = failure(await jwtAuth().authenticate({ authorization: `Bearer ${await token()}` }));
      assert.equal(result.status, 503);
      assert.equal(result.error, "temporarily_unavailable");
      assert.doesNotMatch(result.wwwAuthenticate, /error=/, "the client should keep its token");
      assert.match(result.description, new RegExp(`could not fetch the signing keys from ${jwksUrl}`));
    } finally {
      jwksStatus = 200;
    }
    const unreachable = createAuthenticator(config({ jwt: { jwksUrl: "http://127.0.0.1:1/jwks" } }), {
      now,
      fetch: async () => {
        throw new TypeError("fetch failed");
      },
    });
    const result = failure(await unreachable.authenticate({ authorization: `Bearer ${await token()}` }));
    assert.equal(result.status, 503);
    assert.match(result.description, /fetch failed/);
  });

  test("a token that is neither JWT-shaped nor a known key is refused without verification", async () => {
    const result = failure(await jwtAuth().authenticate({ authorization: "Bearer not-a-jwt-and-not-a-key" }));
    assert.equal(result.description, "the token is neither a known API key nor a JWT");
  });
});

describe("JWT with a static key", () => {
  const secret = "an-hs256-secret-that-is-long-enough-0123";

  test("HS256 secret: a token signed with it passes; with another secret, the signature is invalid", async () => {
    const auth = createAuthenticator(config({ jwt: { secret, audience: "switchboard" } }), { now });
    const sign = (key: string) =>
      new SignJWT({ roles: ["admin"] })
        .setProtectedHeader({ alg: "HS256" })
        .setSubject("svc")
        .setAudience("switchboard")
        .setExpirationTime(NOW_SEC + 60)
        .sign(new TextEncoder().encode(key));
    const ok = success(await auth.authenticate({ authorization: `Bearer ${await sign(secret)}` }));
    assert.deepEqual(ok.principal, { id: "jwt:svc", roles: ["admin"] });
    const bad = failure(await auth.authenticate({ authorization: `Bearer ${await sign(`${secret}!`)}` }));
    assert.equal(bad.description, "signature invalid");
  });

  test("a token's subject never passes for an API key's id, unless the config maps them on purpose", async () => {
    const token = await new SignJWT({})
      .setProtectedHeader({ alg: "HS256" })
      .setSubject("alice")
      .setAudience("switchboard")
      .setExpirationTime(NOW_SEC + 60)
      .sign(new TextEncoder().encode(secret));
    const keys = [{ id: "alice", sha256: sha(API_KEY) }];
    const jwt = { secret, audience: "switchboard" };
    const both = createAuthenticator(config({ apiKeys: keys, jwt }), { now });
    const viaKey = success(await both.authenticate({ "x-api-key": API_KEY }));
    const viaToken = success(await both.authenticate({ authorization: `Bearer ${token}` }));
    assert.equal(viaKey.principal.id, "alice");
    assert.equal(viaToken.principal.id, "jwt:alice");

    const mapped = createAuthenticator(config({ apiKeys: keys, jwt: { ...jwt, principalPrefix: "" } }), {
      now,
    });
    assert.equal(
      success(await mapped.authenticate({ authorization: `Bearer ${token}` })).principal.id,
      "alice",
    );

    const clash = authSchema.safeParse({ apiKeys: [{ id: "jwt:ops", sha256: sha(API_KEY) }], jwt });
    assert.equal(clash.success, false);
    assert.deepEqual(clash.error?.issues[0]?.path, ["apiKeys", 0, "id"]);
    assert.match(String(clash.error?.issues[0]?.message), /auth\.jwt\.principalPrefix/);
  });

  test("PEM public key: the matching algorithm passes; a token of another key type does not fit", async () => {
    const rsa = await generateKeyPair("RS256");
    const auth = createAuthenticator(config({ jwt: { publicKey: await exportSPKI(rsa.publicKey) } }), {
      now,
    });
    const good = await new SignJWT({})
      .setProtectedHeader({ alg: "RS256" })
      .setSubject("bob")
      .setExpirationTime(NOW_SEC + 60)
      .sign(rsa.privateKey);
    assert.equal(
      success(await auth.authenticate({ authorization: `Bearer ${good}` })).principal.id,
      "jwt:bob",
    );
    const ec = await generateKeyPair("ES256");
    const wrongType = await new SignJWT({})
      .setProtectedHeader({ alg: "ES256" })
      .setSubject("bob")
      .setExpirationTime(NOW_SEC + 60)
      .sign(ec.privateKey);
    const result = failure(await auth.authenticate({ authorization: `Bearer ${wrongType}` }));
    assert.match(result.description, /^signature invalid/);
  });

  test("JWK public key works as well, and the audience defaults to resourceMetadata.resource", async () => {
    const ec = await generateKeyPair("ES256");
    const auth = createAuthenticator(
      config({
        jwt: { publicKey: (await exportJWK(ec.publicKey)) as { kty: string } },
        resourceMetadata: { resource: AUDIENCE, authorizationServers: [ISSUER] },
      }),
      { now },
    );
    const sign = (aud: string) =>
      new SignJWT({})
        .setProtectedHeader({ alg: "ES256" })
        .setSubject("carol")
        .setAudience(aud)
        .setExpirationTime(NOW_SEC + 60)
        .sign(ec.privateKey);
    success(await auth.authenticate({ authorization: `Bearer ${await sign(AUDIENCE)}` }));
    const result = failure(
      await auth.authenticate({ authorization: `Bearer ${await sign("https://else")}` }),
    );
    assert.equal(result.description, `audience mismatch: expected "${AUDIENCE}"`);
  });

  test("an unusable public key is a config error at start-up", () => {
    assert.throws(
      () =>
        createAuthenticator(
          config({ jwt: { publicKey: "-----BEGIN PUBLIC KEY-----\nAAAA\n-----END PUBLIC KEY-----" } }),
        ),
      { code: "config_invalid", message: /auth\.jwt\.publicKey is not a usable public key/ },
    );
  });
});

describe("auth config", () => {
  test("jwt needs exactly one key source", () => {
    assert.throws(() => config({ jwt: {} }), /exactly one of `jwksUrl`, `publicKey` or `secret`/);
    assert.throws(
      () => config({ jwt: { secret: "s".repeat(32), jwksUrl: "https://idp.example.com/jwks" } }),
      /exactly one/,
    );
    assert.equal(config({ jwt: { secret: "s".repeat(32) } }).jwt?.clockToleranceSec, 30);
  });

  test("key hashes must be 64 hex digits; a JWKS must be https unless on localhost; unknown keys are refused", () => {
    assert.throws(() => config({ apiKeys: [{ id: "a", sha256: "abc" }] }), /64 hex digits/);
    assert.throws(() => config({ jwt: { jwksUrl: "http://idp.example.com/jwks" } }), /https:\/\//);
    assert.throws(() => config({ apiKey: [] } as unknown as AuthConfigInput), /apiKey/);
    const parsed = config({ jwt: { jwksUrl: "https://idp.example.com/jwks" } });
    assert.equal(parsed.jwt?.principalClaim, "sub");
    assert.equal(parsed.jwt?.rolesClaim, "roles");
  });

  test("with no credential configured, HTTP requests are refused and the stdio principal applies", async () => {
    const parsed = config({ stdioPrincipal: { id: "local-dev", roles: ["admin"] } });
    assert.equal(httpAuthEnabled(parsed), false);
    const auth = createAuthenticator(parsed);
    assert.equal(auth.enabled, false);
    assert.equal(failure(await auth.authenticate({ "x-api-key": "anything" })).status, 401);
    assert.deepEqual(stdioPrincipal(parsed), { id: "local-dev", roles: ["admin"] });
    assert.equal(stdioPrincipal(undefined).id, "anonymous");
  });
});

describe("resource metadata and challenges", () => {
  test("the RFC 9728 document names the resource and its authorization servers", () => {
    const parsed = config({
      resourceMetadata: { authorizationServers: [ISSUER], scopesSupported: ["tools:read"] },
    });
    assert.deepEqual(protectedResourceMetadata(parsed, "https://gw.example.com/mcp"), {
      resource: "https://gw.example.com/mcp",
      authorization_servers: [ISSUER],
      bearer_methods_supported: ["header"],
      scopes_supported: ["tools:read"],
      resource_name: "Switchboard",
    });
    assert.deepEqual(protectedResourceMetadata(config({}), "https://gw.example.com/mcp"), {
      resource: "https://gw.example.com/mcp",
      bearer_methods_supported: ["header"],
      resource_name: "Switchboard",
    });
  });

  test("the metadata URL goes between origin and path (RFC 9728 §3.1)", () => {
    assert.equal(
      resourceMetadataUrl("https://gw.example.com/mcp"),
      METADATA_URL.replace("mcp.example.com", "gw.example.com"),
    );
    assert.equal(
      resourceMetadataUrl("https://gw.example.com/"),
      "https://gw.example.com/.well-known/oauth-protected-resource",
    );
  });

  test("challenge parameters cannot break out of their quotes", () => {
    const header = wwwAuthenticate(
      "https://x/.well-known/oauth-protected-resource",
      "invalid_token",
      'bad "quote" \\ é',
    );
    assert.equal(
      header,
      `Bearer realm="switchboard", resource_metadata="https://x/.well-known/oauth-protected-resource", error="invalid_token", error_description="bad 'quote' ' ?"`,
    );
  });
});
