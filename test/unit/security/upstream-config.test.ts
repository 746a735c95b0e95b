/**
 * The config of a remote server's `auth` and what it needs from the rest of the config: each mistake
 * is refused when the config loads, at the path of the field to change, with what to do.
 */
import assert from "node:assert/strict";
import { describe, test } from "node:test";
import { validateConfig } from "../../../src/config/index.ts";
import { GatewayError } from "../../../src/core/errors.ts";

const KEY = "k".repeat(40);
const remote = (auth: unknown, extra: Record<string, unknown> = {}) => ({
  type: "http",
  url: "https://docs.example.com/mcp",
  auth,
  ...extra,
});
const jwt = {
  jwt: {
    secret: "s".repeat(32),
    audience: ["https://gateway.example.com/mcp", "https://docs.example.com/mcp"],
  },
};

function issues(document: unknown): { path: string; message: string }[] {
  try {
    validateConfig(document);
  } catch (error) {
    assert.ok(error instanceof GatewayError, String(error));
    return error.data.issues as { path: string; message: string }[];
  }
  assert.fail("expected the config to be refused");
}

const issueAt = (document: unknown, path: string) => {
  const found = issues(document).find((issue) => issue.path === path);
  assert.ok(found, `no issue at ${path}: ${JSON.stringify(issues(document))}`);
  return found.message;
};

describe("auth of remote servers", () => {
  test("oauth, passthrough, exchange and per-principal are accepted with what they need", () => {
    const config = validateConfig({
      mcpServers: {
        a: remote({ type: "oauth" }),
        b: remote({ type: "oauth", grant: "client_credentials", clientId: "c", clientSecret: "x" }),
        c: remote({ type: "passthrough" }),
        d: remote({ type: "exchange", authorizationServer: "https://idp.example.com", clientId: "gw" }),
        e: remote({ type: "per-principal", roles: { ops: "t" } }),
      },
      oauth: { encryptionKey: KEY },
      auth: jwt,
    });
    const a = config.mcpServers.a;
    assert.ok(a && a.type === "http" && a.auth?.type === "oauth");
    assert.equal(a.auth.grant, "authorization_code");
    assert.equal(a.auth.refreshBeforeExpiryMs, 60_000);
    assert.equal(config.oauth?.tokenFile, "./switchboard-oauth-tokens.json");
  });

  test("a stdio server cannot take auth, and the error says why", () => {
    const message = issueAt(
      { mcpServers: { local: { command: "node", auth: { type: "passthrough" } } } },
      "mcpServers.local.auth",
    );
    assert.match(message, /stdio server cannot take auth.*one process.*per-user/);
  });

  test("OAuth needs the oauth block with the encryption key", () => {
    assert.match(issueAt({ mcpServers: { a: remote({ type: "oauth" }) } }, "oauth"), /encryptionKey/);
    assert.match(
      issueAt(
        { mcpServers: { a: remote({ type: "oauth" }) }, oauth: { encryptionKey: "short" } },
        "oauth.encryptionKey",
      ),
      /at least 32 characters/,
    );
  });

  test("client credentials need the client; a configured client for a browser login needs its port", () => {
    assert.match(
      issueAt(
        {
          mcpServers: { a: remote({ type: "oauth", grant: "client_credentials" }) },
          oauth: { encryptionKey: KEY },
        },
        "mcpServers.a.auth.grant",
      ),
      /clientId and clientSecret/,
    );
    assert.match(
      issueAt(
        { mcpServers: { a: remote({ type: "oauth", clientId: "c" }) }, oauth: { encryptionKey: KEY } },
        "mcpServers.a.auth.redirectPort",
      ),
      /redirect URI/,
    );
  });

  test("passthrough and exchange need callers authenticated by JWT", () => {
    assert.match(
      issueAt({ mcpServers: { c: remote({ type: "passthrough" }) } }, "mcpServers.c.auth.type"),
      /auth\.jwt/,
    );
  });

  test("a passthrough audience must be accepted by the gateway, and not be the gateway's own", () => {
    assert.match(
      issueAt(
        {
          mcpServers: { c: remote({ type: "passthrough" }) },
          auth: { jwt: { secret: "s".repeat(32), audience: "https://gateway.example.com/mcp" } },
        },
        "mcpServers.c.auth.audience",
      ),
      /add "https:\/\/docs\.example\.com\/mcp" to auth\.jwt\.audience/,
    );
    assert.match(
      issueAt(
        {
          mcpServers: { c: remote({ type: "passthrough", audience: "https://gateway.example.com/mcp" }) },
          auth: {
            ...jwt,
            resourceMetadata: {
              resource: "https://gateway.example.com/mcp",
              authorizationServers: ["https://idp.example.com"],
            },
          },
        },
        "mcpServers.c.auth.audience",
      ),
      /gateway's own resource/,
    );
  });

  test("no cache shared between callers may reach a per-user server", () => {
    const base = { mcpServers: { c: remote({ type: "per-principal", principals: { a: "t" } }) } };
    const shared = { cache: { shared: true } };
    assert.match(
      issueAt(
        {
          mcpServers: { c: remote({ type: "per-principal", principals: { a: "t" } }, { policies: shared }) },
        },
        "mcpServers.c.policies.cache.shared",
      ),
      /one user's answer to another/,
    );
    issueAt({ ...base, policies: shared }, "policies.cache.shared");
    issueAt({ ...base, toolPolicies: { "c__*": shared } }, 'toolPolicies["c__*"].cache.shared');
    issueAt({ ...base, toolPolicies: { "*__get": shared } }, 'toolPolicies["*__get"].cache.shared');
    issueAt({ ...base, profiles: { team: { policies: shared } } }, "profiles.team.policies.cache.shared");
    // A rule that cannot reach the server's tools may share.
    validateConfig({
      mcpServers: { ...base.mcpServers, other: { command: "node" } },
      toolPolicies: { "other__*": shared },
    });
  });

  test("Cursor's own auth (no type) is still a client key, warned about and ignored", () => {
    const warnings: string[] = [];
    validateConfig(
      { mcpServers: { sso: { url: "https://a.example/mcp", auth: { CLIENT_ID: "c" } } } },
      { onWarning: (warning) => warnings.push(warning.key) },
    );
    assert.deepEqual(warnings, ["auth"]);
  });
});
