/**
 * Each caller's own credentials upstream, end to end: two users with their own JWTs call, through the
 * built gateway, remote MCP servers that answer with who they saw.
 *
 * - `passthrough`: the user's token reaches the server as it is, when its audience is that server; a
 *   token meant for the gateway itself is refused and never leaves the gateway.
 * - `exchange`: the gateway exchanges the user's token (RFC 8693) at the authorization server for one
 *   meant for the server, once per user while it lasts.
 * - `per-principal`: the credential the config gives the user, else one of their roles; a user with
 *   neither is refused.
 * - Cached results never cross users, and the audit record names the user each call went upstream as.
 * - The gateway's own session (its tool list) uses the server's `headers`, never a user's token, and
 *   no user's call goes upstream with the gateway's credential.
 */
import assert from "node:assert/strict";
import { readFileSync } from "node:fs";
import { dirname, join } from "node:path";
import { after, before, describe, test } from "node:test";
import type { Client } from "@modelcontextprotocol/sdk/client/index.js";
import { type CryptoKey, exportJWK, generateKeyPair, SignJWT } from "jose";
import {
  type AuthorizationServer,
  startAuthorizationServer,
  TOKEN_EXCHANGE,
} from "../fixtures/oauth/authorization-server.ts";
import { type ProtectedServer, startProtectedServer } from "../fixtures/oauth/protected-mcp-server.ts";
import {
  eventually,
  type RunningGateway,
  startHttpGateway,
  writeConfigRemovedAfterSuite,
} from "../support/gateway-process.ts";
import { connectHttpClient, type ToolResult, textOf } from "../support/mcp-client.ts";

const ISSUER = "https://idp.test.example";
const GATEWAY_AUDIENCE = "https://gateway.test.example/mcp";
const INTROSPECTION = { clientId: "resource-server", clientSecret: "introspection-secret-0123456789abcdef" };
const EXCHANGER = { clientId: "gateway-exchanger", clientSecret: "exchange-secret-0123456789abcdef-012345" };

interface Seen {
  readonly sub: string;
  readonly via: string;
  readonly act?: { sub: string };
}

describe("per-user credentials upstream", () => {
  const writeConfig = writeConfigRemovedAfterSuite();
  let key: { privateKey: CryptoKey; publicKey: CryptoKey };
  let as: AuthorizationServer;
  let direct: ProtectedServer;
  let exchanged: ProtectedServer;
  let keyed: ProtectedServer;
  let gateway: RunningGateway;
  let configPath: string;
  const clients: Client[] = [];

  const tokenFor = (sub: string, audience: string, roles?: string[]) =>
    new SignJWT(roles ? { roles } : {})
      .setProtectedHeader({ alg: "ES256" })
      .setIssuer(ISSUER)
      .setSubject(sub)
      .setAudience(audience)
      .setIssuedAt()
      .setExpirationTime("1h")
      .sign(key.privateKey);

  const connectAs = async (sub: string, audience: string, roles?: string[]) => {
    const client = await connectHttpClient(gateway.url, {
      name: `per-user-${sub}`,
      headers: { authorization: `Bearer ${await tokenFor(sub, audience, roles)}` },
    });
    clients.push(client);
    return client;
  };

  const call = async (client: Client, name: string) =>
    (await client.callTool({ name, arguments: {} })) as unknown as ToolResult;
  const seen = (result: ToolResult) => {
    assert.equal(result.isError, undefined, textOf(result));
    return JSON.parse(textOf(result)) as Seen;
  };

  before(async () => {
    key = await generateKeyPair("ES256");
    as = await startAuthorizationServer({
      accessTokenTtlSec: 3600,
      userKey: key,
      gatewayAudience: GATEWAY_AUDIENCE,
      clients: [
        {
          client_id: INTROSPECTION.clientId,
          client_secret: INTROSPECTION.clientSecret,
          grant_types: [],
          response_types: [],
          redirect_uris: [],
        },
        {
          client_id: EXCHANGER.clientId,
          client_secret: EXCHANGER.clientSecret,
          grant_types: [TOKEN_EXCHANGE],
          response_types: [],
          redirect_uris: [],
        },
      ],
    });
    const protectedServer = (serviceToken: string) =>
      startProtectedServer({
        issuer: as.issuer,
        introspection: INTROSPECTION,
        userPublicKey: key.publicKey,
        serviceToken,
      });
    direct = await protectedServer("service-token-direct");
    exchanged = await protectedServer("service-token-exchanged");
    keyed = await startProtectedServer({
      issuer: as.issuer,
      introspection: INTROSPECTION,
      serviceToken: "service-token-keyed",
      staticTokens: { "alice-key-0123456789": "alice@keyed", "ops-key-0123456789": "ops@keyed" },
    });
    configPath = writeConfig({
      mcpServers: {
        direct: {
          type: "http",
          url: direct.url,
          headers: { Authorization: "Bearer service-token-direct" },
          auth: { type: "passthrough" },
          policies: { cache: { ttlMs: 60_000 } },
        },
        exchanged: {
          type: "http",
          url: exchanged.url,
          headers: { Authorization: "Bearer service-token-exchanged" },
          auth: {
            type: "exchange",
            authorizationServer: as.issuer,
            clientId: EXCHANGER.clientId,
            clientSecret: EXCHANGER.clientSecret,
          },
        },
        keyed: {
          type: "http",
          url: keyed.url,
          headers: { Authorization: "Bearer service-token-keyed" },
          auth: {
            type: "per-principal",
            principals: { "jwt:alice": "alice-key-0123456789" },
            roles: { ops: "ops-key-0123456789" },
          },
        },
      },
      auth: {
        jwt: {
          publicKey: await exportJWK(key.publicKey),
          issuer: ISSUER,
          audience: [GATEWAY_AUDIENCE, direct.url],
        },
      },
      audit: { sinks: [{ type: "file", path: "audit.jsonl", durability: "sync" }] },
    });
    gateway = await startHttpGateway(configPath);
  });

  after(async () => {
    for (const client of clients) await client.close();
    await gateway?.stop();
    await direct?.stop();
    await exchanged?.stop();
    await keyed?.stop();
    await as?.stop();
  });

  test("the gateway's own session lists the tools with the server's headers", async () => {
    const alice = await connectAs("alice", GATEWAY_AUDIENCE);
    const names = (await alice.listTools()).tools.map((t) => t.name);
    assert.ok(names.includes("direct__whoami") && names.includes("exchanged__whoami"), names.join(", "));
    assert.ok(direct.seen.some((s) => s.via === "service"));
  });

  test("passthrough: each user reaches the server as themself, with their own token", async () => {
    const alice = await connectAs("alice", direct.url);
    const bob = await connectAs("bob", direct.url);
    assert.deepEqual(seen(await call(alice, "direct__whoami")), { sub: "alice", via: "jwt" });
    assert.deepEqual(seen(await call(bob, "direct__whoami")), { sub: "bob", via: "jwt" });
  });

  test("passthrough: a token for the gateway itself is refused, and never leaves the gateway", async () => {
    const token = await tokenFor("carol", GATEWAY_AUDIENCE);
    const carol = await connectHttpClient(gateway.url, {
      name: "per-user-carol",
      headers: { authorization: `Bearer ${token}` },
    });
    clients.push(carol);
    const refused = await call(carol, "direct__whoami");
    assert.equal(refused.isError, true);
    assert.match(textOf(refused), /meant for the gateway itself.*never forwarded/);
    assert.ok(!direct.tokens.has(token), "the gateway's token reached the server");
  });

  test("cached results never cross users", async () => {
    const dave = await connectAs("dave", direct.url);
    const erin = await connectAs("erin", direct.url);
    assert.equal(seen(await call(dave, "direct__whoami")).sub, "dave");
    const before = direct.calls.length;
    // Dave's second call is served from the cache; Erin's first is not Dave's answer.
    assert.equal(seen(await call(dave, "direct__whoami")).sub, "dave");
    assert.equal(direct.calls.length, before, "dave's second call was a cache hit");
    assert.equal(seen(await call(erin, "direct__whoami")).sub, "erin");
    assert.equal(seen(await call(erin, "direct__whoami")).sub, "erin");
    assert.equal(seen(await call(dave, "direct__whoami")).sub, "dave");
    assert.equal(
      direct.calls.length,
      before + 1,
      "one upstream call for erin, the rest from each one's cache",
    );
  });

  test("exchange: each user reaches the server as themself, one exchange per user", async () => {
    const alice = await connectAs("alice", GATEWAY_AUDIENCE);
    const bob = await connectAs("bob", GATEWAY_AUDIENCE);
    const exchanges = as.count(TOKEN_EXCHANGE);
    for (let round = 0; round < 2; round++) {
      assert.deepEqual(seen(await call(alice, "exchanged__whoami")), {
        sub: "alice",
        via: "jwt",
        act: { sub: EXCHANGER.clientId },
      });
      assert.deepEqual(seen(await call(bob, "exchanged__whoami")), {
        sub: "bob",
        via: "jwt",
        act: { sub: EXCHANGER.clientId },
      });
    }
    assert.equal(as.count(TOKEN_EXCHANGE), exchanges + 2, "one exchange per user, then cached");
    // Every user call reached the server with an exchanged token, none with the gateway's own.
    assert.ok(exchanged.calls.length >= 4);
    assert.ok(exchanged.calls.every((s) => s.act !== undefined));
  });

  test("per-principal: the user's own credential, else their role's; neither is refused", async () => {
    const alice = await connectAs("alice", GATEWAY_AUDIENCE);
    const frank = await connectAs("frank", GATEWAY_AUDIENCE, ["ops"]);
    const grace = await connectAs("grace", GATEWAY_AUDIENCE);
    assert.deepEqual(seen(await call(alice, "keyed__whoami")), { sub: "alice@keyed", via: "static" });
    assert.deepEqual(seen(await call(frank, "keyed__whoami")), { sub: "ops@keyed", via: "static" });
    const refused = await call(grace, "keyed__whoami");
    assert.equal(refused.isError, true);
    assert.match(textOf(refused), /no credential is configured for principal "jwt:grace"/);
    assert.doesNotMatch(textOf(refused), /key-0123456789/);
  });

  test("the audit record names the user each call went upstream as", async () => {
    const file = join(dirname(configPath), "audit.jsonl");
    type Record = { principal: string; tool: string; outcome: string; upstreamAs?: string; source: string };
    let records: Record[] = [];
    await eventually(
      () => {
        records = readFileSync(file, "utf8")
          .trim()
          .split("\n")
          .map((line) => JSON.parse(line) as Record);
        return records.some((r) => r.tool === "exchanged__whoami");
      },
      10_000,
      "the audit records",
    );
    const upstream = (principal: string, tool: string) =>
      records.find((r) => r.principal === principal && r.tool === tool && r.source === "backend")?.upstreamAs;
    assert.equal(upstream("jwt:alice", "direct__whoami"), "alice");
    assert.equal(upstream("jwt:bob", "direct__whoami"), "bob");
    assert.equal(upstream("jwt:alice", "exchanged__whoami"), "alice");
    assert.equal(upstream("jwt:bob", "exchanged__whoami"), "bob");
    assert.equal(upstream("jwt:alice", "keyed__whoami"), "jwt:alice");
    assert.equal(upstream("jwt:frank", "keyed__whoami"), "role:ops");
    const refused = records.find((r) => r.principal === "jwt:carol");
    assert.equal(refused?.outcome, "denied");
  });
});
