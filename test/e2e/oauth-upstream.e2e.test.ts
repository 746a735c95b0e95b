// biome-ignore-all lint/suspicious/noTemplateCurlyInString: configs here hold ${secret:…} references.
/**
 * The gateway as an OAuth client of remote MCP servers, end to end: a real authorization server on
 * loopback (oidc-provider), Streamable HTTP MCP servers that require its tokens (checked by
 * introspection), the built CLI as the gateway and as `switchboard login`, and the test as the
 * person at the browser.
 *
 * - Before any login, the server is down with a reason that says to run `switchboard login`, and its
 *   tools are hidden; a server with client credentials is up at once.
 * - `switchboard login` runs the authorization code flow with PKCE (S256), `state` and the
 *   `resource` indicator, and refuses a redirect without its state; the tokens land in the token
 *   file, encrypted (no token in clear, none in the log), and the running gateway picks them up
 *   without a restart.
 * - A 401 from the server triggers exactly one refresh and one retry; a second 401 fails the call.
 * - Tokens are refreshed before they expire, without a 401.
 * - A revoked grant turns the server down with the login hint, and a new login brings it back.
 * - A change of where tokens are kept waits for a restart; a reload says so.
 */
import assert from "node:assert/strict";
import { readFileSync, statSync, writeFileSync } from "node:fs";
import { dirname, join } from "node:path";
import { after, before, describe, test } from "node:test";
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

const INTROSPECTION = { clientId: "resource-server", clientSecret: "introspection-secret-0123456789abcdef" };
const M2M = { clientId: "m2m-gateway", clientSecret: "m2m-secret-0123456789abcdef-0123456789" };
const ENV = {
  OAUTH_TEST_TOKEN_KEY: "token-vault-key-0123456789abcdef-0123456789",
  OAUTH_TEST_M2M_SECRET: M2M.clientSecret,
};

describe("remote servers behind OAuth", () => {
  const writeConfig = writeConfigRemovedAfterSuite();
  let as: AuthorizationServer;
  let docs: ProtectedServer;
  let machine: ProtectedServer;
  let gateway: RunningGateway;
  let client: Client;
  let configPath: string;

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
        {
          client_id: M2M.clientId,
          client_secret: M2M.clientSecret,
          grant_types: ["client_credentials"],
          response_types: [],
          redirect_uris: [],
        },
      ],
    });
    docs = await startProtectedServer({ issuer: as.issuer, introspection: INTROSPECTION });
    machine = await startProtectedServer({ issuer: as.issuer, introspection: INTROSPECTION });
    configPath = writeConfig({
      mcpServers: {
        docs: {
          type: "http",
          url: docs.url,
          auth: { type: "oauth" },
          restart: { initialDelayMs: 50, maxDelayMs: 200 },
        },
        machine: {
          type: "http",
          url: machine.url,
          auth: {
            type: "oauth",
            grant: "client_credentials",
            clientId: M2M.clientId,
            clientSecret: "${secret:env:OAUTH_TEST_M2M_SECRET}",
          },
        },
      },
      oauth: { encryptionKey: "${secret:env:OAUTH_TEST_TOKEN_KEY}", tokenFile: "./tokens/oauth.json" },
      gateway: { startupTimeoutMs: 10_000 },
    });
    gateway = await startHttpGateway(configPath, ["--log-level", "debug"], ENV);
    client = await connectHttpClient(gateway.url, { name: "oauth-e2e" });
  });

  after(async () => {
    await client?.close();
    await gateway?.stop();
    await docs?.stop();
    await machine?.stop();
    await as?.stop();
  });

  const tokenFile = () => join(dirname(configPath), "tokens/oauth.json");
  const tools = async () => (await client.listTools()).tools.map((t) => t.name);
  const whoami = async (name: string) =>
    (await client.callTool({ name, arguments: {} })) as unknown as ToolResult;
  const healthDetail = async (server: string) => {
    const report = (await (await fetch(new URL("/healthz", gateway.url))).json()) as {
      checks: Record<string, { detail?: string }>;
    };
    return report.checks[server]?.detail ?? "";
  };

  test("before any login the server is down with the login hint, and its tools are hidden", async () => {
    assert.ok(!(await tools()).includes("docs__whoami"));
    await eventually(
      async () => /switchboard login docs/.test(await healthDetail("docs")),
      15_000,
      "the health of docs to say to run switchboard login",
    );
  });

  test("client credentials: the second server is up at once, as the gateway's own client", async () => {
    await eventually(async () => (await tools()).includes("machine__whoami"), 15_000, "machine's tools");
    const result = await whoami("machine__whoami");
    assert.equal(result.isError, undefined, textOf(result));
    assert.deepEqual(JSON.parse(textOf(result)), {
      sub: M2M.clientId,
      via: "introspection",
      client_id: M2M.clientId,
    });
    assert.ok(as.count("client_credentials") >= 1);
  });

  test("switchboard login: authorization code with PKCE; the tokens are stored encrypted", async () => {
    // A redirect that does not bring back the login's own state is refused, and the login goes on.
    const run = await loginAs(configPath, "docs", "alice", ENV, async (authorizationUrl) => {
      const callback = new URL(authorizationUrl.searchParams.get("redirect_uri") ?? "");
      callback.search = new URLSearchParams({ code: "forged", state: "not-the-login-state" }).toString();
      assert.equal((await fetch(callback)).status, 400);
    });
    assert.equal(run.code, 0, run.stderr);
    const asked = run.authorizationUrl.searchParams;
    assert.equal(run.authorizationUrl.origin, as.issuer);
    assert.equal(asked.get("code_challenge_method"), "S256");
    assert.ok((asked.get("code_challenge") ?? "").length >= 43);
    assert.ok((asked.get("state") ?? "").length >= 16);
    assert.equal(asked.get("resource"), docs.url);
    assert.match(run.stderr, /Logged in to server "docs"/);

    // The running gateway picks the login up on its next attempt: no restart.
    await eventually(async () => (await tools()).includes("docs__whoami"), 15_000, "docs' tools after login");
    const result = await whoami("docs__whoami");
    assert.equal(result.isError, undefined, textOf(result));
    assert.equal((JSON.parse(textOf(result)) as { sub: string }).sub, "alice");

    const stored = readFileSync(tokenFile(), "utf8");
    assert.equal(statSync(tokenFile()).mode & 0o777, 0o600);
    const logins = (JSON.parse(stored) as { logins: Record<string, string> }).logins;
    assert.deepEqual(Object.keys(logins).sort(), ["docs", "machine"]);
    for (const sealed of Object.values(logins)) assert.equal(sealed.split(".").length, 5, "a compact JWE");
    assert.ok(docs.tokens.size > 0 && machine.tokens.size > 0);
    for (const token of [...docs.tokens, ...machine.tokens]) {
      assert.ok(!stored.includes(token), "an access token is in the token file in clear");
    }
    assert.doesNotMatch(stored, /access_token|refresh_token|client_secret/);
    const logged = JSON.stringify(gateway.logs.lines);
    for (const token of docs.tokens) assert.ok(!logged.includes(token), "an access token is in the log");
  });

  test("a 401 from the server triggers one refresh and one retry", async () => {
    const refreshes = as.count("refresh_token");
    const refused = docs.unauthorized;
    docs.rejectNext(1);
    const retried = await whoami("docs__whoami");
    assert.equal(retried.isError, undefined, textOf(retried));
    assert.equal(docs.unauthorized, refused + 1);
    assert.equal(as.count("refresh_token"), refreshes + 1);

    // Refused again after the refresh: no second refresh, no third attempt.
    docs.rejectNext(2);
    const failed = await whoami("docs__whoami");
    assert.equal(failed.isError, true);
    assert.equal(docs.unauthorized, refused + 3);
    assert.equal(as.count("refresh_token"), refreshes + 2);
  });

  test("tokens are refreshed before they expire, without a 401", async () => {
    // Tokens issued from now on live 4 s: the gateway refreshes them after 2 s (half their lifetime).
    as.setAccessTokenTtl(4);
    docs.rejectNext(1);
    assert.equal((await whoami("docs__whoami")).isError, undefined);
    const refreshes = as.count("refresh_token");
    const refused = docs.unauthorized;
    await eventually(
      async () => {
        const result = await whoami("docs__whoami");
        assert.equal(result.isError, undefined, textOf(result));
        return as.count("refresh_token") > refreshes;
      },
      20_000,
      "a refresh before expiry",
    );
    assert.equal(docs.unauthorized, refused, "the token was refreshed before the server refused it");
    as.setAccessTokenTtl(3600);
  });

  test("a revoked grant turns the server down with the login hint; a new login brings it back", async () => {
    await as.revoke("alice");
    const refused = await whoami("docs__whoami");
    assert.equal(refused.isError, true);
    assert.match(textOf(refused), /switchboard login docs/);
    await eventually(async () => !(await tools()).includes("docs__whoami"), 15_000, "docs' tools to go");
    assert.match(await healthDetail("docs"), /needs a login.*switchboard login docs/);
    // The client credentials server is not affected.
    assert.equal((await whoami("machine__whoami")).isError, undefined);

    const again = await loginAs(configPath, "docs", "bob", ENV);
    assert.equal(again.code, 0, again.stderr);
    await eventually(async () => (await tools()).includes("docs__whoami"), 15_000, "docs' tools after login");
    assert.equal((JSON.parse(textOf(await whoami("docs__whoami"))) as { sub: string }).sub, "bob");
  });

  test("where tokens are kept changes at the next restart: a reload says so", async () => {
    const document = JSON.parse(readFileSync(configPath, "utf8")) as { oauth: Record<string, unknown> };
    writeFileSync(
      configPath,
      JSON.stringify({ ...document, oauth: { ...document.oauth, tokenFile: "./moved.json" } }),
    );
    gateway.child.kill("SIGHUP");
    const reloaded = await gateway.logs.waitFor((l) => l.msg === "config reloaded", 30_000, "the reload");
    assert.deepEqual(reloaded.needRestart, ["oauth"]);
    assert.equal((await whoami("docs__whoami")).isError, undefined, "the running login is kept");
  });
});
