// biome-ignore-all lint/suspicious/noTemplateCurlyInString: configs here hold ${secret:…} references.
/**
 * Three replicas sharing one Redis and one OAuth login of a remote server: the login made with
 * `switchboard login` lands in the shared store (encrypted), every replica uses that one token set,
 * and when it is due for a refresh, the three refresh it once between them (the authorization server
 * counts the refresh requests it receives).
 */
import assert from "node:assert/strict";
import { existsSync } from "node:fs";
import { dirname, join } from "node:path";
import { after, before, test } from "node:test";
import type { Client } from "@modelcontextprotocol/sdk/client/index.js";
import { generateKeyPair } from "jose";
import {
  type AuthorizationServer,
  startAuthorizationServer,
} from "../fixtures/oauth/authorization-server.ts";
import { type ProtectedServer, startProtectedServer } from "../fixtures/oauth/protected-mcp-server.ts";
import {
  eventually,
  type RunningGateway,
  startHttpGateway,
  writeConfigRemovedAfterSuite,
} from "../support/gateway-process.ts";
import { connectHttpClient, type ToolResult, textOf } from "../support/mcp-client.ts";
import { loginAs } from "../support/oauth-login.ts";
import { deleteByPrefix, describeWithRedis, rawClient, uniquePrefix } from "../support/redis.ts";

const INTROSPECTION = { clientId: "resource-server", clientSecret: "introspection-secret-0123456789abcdef" };
const ENV = { OAUTH_TEST_TOKEN_KEY: "token-vault-key-0123456789abcdef-0123456789" };

describeWithRedis("three replicas share one OAuth login through Redis", (redisUrl) => {
  const writeConfig = writeConfigRemovedAfterSuite();
  const prefix = uniquePrefix("oauth-replicas");
  let as: AuthorizationServer;
  let docs: ProtectedServer;
  let configPath: string;
  let replicas: RunningGateway[] = [];
  let clients: Client[] = [];

  before(async () => {
    as = await startAuthorizationServer({
      accessTokenTtlSec: 3600,
      userKey: await generateKeyPair("ES256"),
      clients: [
        {
          client_id: INTROSPECTION.clientId,
          client_secret: INTROSPECTION.clientSecret,
          grant_types: [],
          response_types: [],
          redirect_uris: [],
        },
      ],
    });
    docs = await startProtectedServer({ issuer: as.issuer, introspection: INTROSPECTION });
    configPath = writeConfig({
      mcpServers: { docs: { type: "http", url: docs.url, auth: { type: "oauth" } } },
      store: { type: "redis", url: redisUrl, keyPrefix: prefix },
      oauth: { encryptionKey: "${secret:env:OAUTH_TEST_TOKEN_KEY}" },
    });
    const login = await loginAs(configPath, "docs", "alice", ENV);
    assert.equal(login.code, 0, login.stderr);
    replicas = await Promise.all([0, 1, 2].map(() => startHttpGateway(configPath, [], ENV)));
    clients = await Promise.all(
      replicas.map((replica, i) => connectHttpClient(replica.url, { name: `oauth-replica-${i}` })),
    );
  });

  after(async () => {
    await Promise.allSettled(clients.map((client) => client.close()));
    await Promise.allSettled(replicas.map((replica) => replica.stop()));
    await docs?.stop();
    await as?.stop();
    await deleteByPrefix(redisUrl, prefix);
  });

  const whoami = async (client: Client) => {
    const result = (await client.callTool({ name: "docs__whoami", arguments: {} })) as unknown as ToolResult;
    assert.equal(result.isError, undefined, textOf(result));
    return JSON.parse(textOf(result)) as { sub: string };
  };

  test("the login is kept in the shared store, encrypted, and every replica uses it", async () => {
    for (const client of clients) assert.equal((await whoami(client)).sub, "alice");
    assert.ok(!existsSync(join(dirname(configPath), "switchboard-oauth-tokens.json")), "no token file");
    const redis = await rawClient(redisUrl);
    try {
      const keys: string[] = [];
      let cursor = "0";
      do {
        const [next, found] = await redis.scan(cursor, "MATCH", `${prefix}*oauth:login:docs*`, "COUNT", 1000);
        cursor = next;
        keys.push(...found);
      } while (cursor !== "0");
      assert.equal(keys.length, 1, `one stored login: ${keys.join(", ")}`);
      const stored = (await redis.hget(keys[0] as string, "v")) ?? "";
      assert.equal(stored.split(".").length, 5, "a compact JWE");
      for (const token of docs.tokens) assert.ok(!stored.includes(token), "a token is in Redis in clear");
    } finally {
      redis.disconnect();
    }
  });

  test("a token due for refresh is refreshed once for all three replicas", async () => {
    // From now on tokens live 4 s, so the gateway refreshes them after 2 s; one refresh now (a 401)
    // puts such a token in the store.
    as.setAccessTokenTtl(4);
    docs.rejectNext(1);
    await whoami(clients[0] as Client);
    const refreshes = as.count("refresh_token");
    await eventually(
      async () => {
        await Promise.all(clients.map((client) => whoami(client)));
        return as.count("refresh_token") > refreshes;
      },
      20_000,
      "the refresh of the shared token",
    );
    // The next round finds the refreshed token in the store: every replica sends the one token.
    const before = docs.callTokens.length;
    await Promise.all(clients.map((client) => whoami(client)));
    const round = docs.callTokens.slice(before);
    assert.equal(round.length, 3);
    assert.equal(new Set(round).size, 1, "the three replicas used one token");
    assert.equal(as.count("refresh_token"), refreshes + 1, "three replicas, one refresh");
    as.setAccessTokenTtl(3600);
  });
});
