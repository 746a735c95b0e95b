/**
 * Who may call the gateway over HTTP and what each caller may see and call, through a real gateway
 * process on Streamable HTTP: API keys (stored as SHA-256) and ES256 JWTs verified against a JWKS
 * served on loopback by this test, RFC 6750 / RFC 9728 challenges and metadata, per-principal access
 * rules on tools/list and tools/call (the gateway's own tools included), and the argument guards.
 *
 * Refusals are checked with raw `fetch` (status and headers); what a let-in caller sees is checked
 * with SDK v1 clients that send their credentials in `requestInit.headers`.
 */
import assert from "node:assert/strict";
import { createHash, randomBytes } from "node:crypto";
import { createServer, type Server } from "node:http";
import type { AddressInfo } from "node:net";
import { after, before, describe, test } from "node:test";
import { Client } from "@modelcontextprotocol/sdk/client/index.js";
import { StreamableHTTPClientTransport } from "@modelcontextprotocol/sdk/client/streamableHttp.js";
import { McpError } from "@modelcontextprotocol/sdk/types.js";
import { exportJWK, generateKeyPair, SignJWT } from "jose";
import {
  fixtureServer,
  type RunningGateway,
  startHttpGateway,
  writeConfig,
} from "../support/gateway-process.ts";
import {
  connectHttpClient,
  jsonRpcMessage,
  postMcp,
  type RawAnswer,
  type ToolResult,
  textOf,
} from "../support/mcp-client.ts";

type PrivateKey = Awaited<ReturnType<typeof generateKeyPair>>["privateKey"];

const ISSUER = "https://idp.switchboard.test/";
const AUDIENCE = "https://switchboard.test/mcp";
const KEY_ID = "test-es256";
const READER_KEY = `sk_reader_${randomBytes(18).toString("base64url")}`;
const ADMIN_KEY = `sk_admin_${randomBytes(18).toString("base64url")}`;
const REQUEST_TIMEOUT_MS = 10_000;
const MAX_DEPTH = 64;

const sha256 = (text: string) => createHash("sha256").update(text, "utf8").digest("hex");
const errorCodeOf = (result: ToolResult) =>
  (result._meta?.["switchboard/error"] as { code?: string } | undefined)?.code;
const rpc = (method: string, params?: unknown, id: unknown = 1) =>
  JSON.stringify({ jsonrpc: "2.0", id, method, ...(params === undefined ? {} : { params }) });

/** A JWKS endpoint on loopback, serving the public half of this run's signing key. */
class Jwks {
  readonly server: Server;
  fetches = 0;
  #body = "";

  constructor() {
    this.server = createServer((req, res) => {
      if (req.url !== "/jwks.json") {
        res.writeHead(404).end();
        return;
      }
      this.fetches++;
      res.writeHead(200, { "content-type": "application/json" }).end(this.#body);
    });
  }

  async listen(keys: Record<string, unknown>[]): Promise<string> {
    this.#body = JSON.stringify({ keys });
    await new Promise<void>((resolve) => this.server.listen(0, "127.0.0.1", resolve));
    return `http://127.0.0.1:${(this.server.address() as AddressInfo).port}/jwks.json`;
  }

  close(): Promise<void> {
    this.server.closeAllConnections();
    return new Promise((resolve) => this.server.close(() => resolve()));
  }
}

interface JwtOptions {
  readonly sub?: string;
  readonly roles?: string[];
  readonly audience?: string;
  readonly issuer?: string;
  /** Seconds since the epoch. Default: 5 minutes from now. */
  readonly exp?: number;
  readonly key?: PrivateKey;
}

let signingKey: PrivateKey;
let strangerKey: PrivateKey;

async function mintJwt(options: JwtOptions = {}): Promise<string> {
  const now = Math.floor(Date.now() / 1000);
  const exp = options.exp ?? now + 300;
  return new SignJWT({ ...(options.roles ? { roles: options.roles } : {}) })
    .setProtectedHeader({ alg: "ES256", kid: KEY_ID, typ: "JWT" })
    .setSubject(options.sub ?? "alice")
    .setIssuer(options.issuer ?? ISSUER)
    .setAudience(options.audience ?? AUDIENCE)
    .setIssuedAt(Math.min(now, exp - 60))
    .setExpirationTime(exp)
    .sign(options.key ?? signingKey);
}

let gateway: RunningGateway;
let jwks: Jwks;
let origin: string;
/** Where the challenge must point: RFC 9728's metadata URL for this gateway's /mcp endpoint. */
let metadataUrl: string;
const clients: Client[] = [];

const post = (body: string, headers: Record<string, string> = {}) =>
  postMcp(gateway.url, body, headers, REQUEST_TIMEOUT_MS);

async function connectAs(headers: Record<string, string>, name = "auth-e2e"): Promise<Client> {
  const client = await connectHttpClient(gateway.url, { name, headers });
  clients.push(client);
  return client;
}

const bearer = (token: string) => ({ authorization: `Bearer ${token}` });

async function call(client: Client, name: string, args: Record<string, unknown> = {}): Promise<ToolResult> {
  return (await client.callTool({ name, arguments: args }, undefined, {
    timeout: REQUEST_TIMEOUT_MS,
  })) as ToolResult;
}

async function toolNames(client: Client): Promise<string[]> {
  return (await client.listTools()).tools.map((tool) => tool.name).sort();
}

/** The parameters of a `WWW-Authenticate: Bearer k="v", …` challenge. */
function challenge(answer: RawAnswer): Record<string, string> {
  const value = answer.headers.get("www-authenticate");
  assert.ok(value, `a WWW-Authenticate header (status ${answer.status}, body ${answer.text})`);
  assert.match(value, /^Bearer /, `a Bearer challenge: ${value}`);
  const params: Record<string, string> = {};
  for (const match of value.slice("Bearer ".length).matchAll(/([a-z_]+)="([^"]*)"/g)) {
    params[match[1] as string] = match[2] as string;
  }
  return params;
}

before(async () => {
  const pair = await generateKeyPair("ES256");
  signingKey = pair.privateKey;
  strangerKey = (await generateKeyPair("ES256")).privateKey;
  jwks = new Jwks();
  const jwksUrl = await jwks.listen([
    { ...(await exportJWK(pair.publicKey)), kid: KEY_ID, alg: "ES256", use: "sig" },
  ]);
  const config = writeConfig({
    mcpServers: { fx: fixtureServer() },
    auth: {
      apiKeys: [
        { id: "reader-bot", sha256: sha256(READER_KEY), roles: ["reader"] },
        // Upper-case hex is accepted as well.
        { id: "admin-bot", sha256: sha256(ADMIN_KEY).toUpperCase(), roles: ["admin"] },
      ],
      jwt: { jwksUrl, issuer: ISSUER, audience: AUDIENCE },
      resourceMetadata: { authorizationServers: [ISSUER], scopesSupported: ["mcp:tools"] },
    },
    access: {
      rules: [
        // rule 1: administrators get every tool and prompt, and the resources of every server.
        { roles: ["admin"], allow: ["*", "server:*"] },
        // rule 2: readers get fx__e* (echo and env), minus env: a deny beats an allow.
        { roles: ["reader"], allow: ["fx__e*"], deny: ["fx__env"] },
        // rule 3: operators, by principal id, get the gateway's health tool only. Token holders are
        // named "jwt:<sub>", so no API key id can pass for them.
        { principals: ["jwt:ops-*"], allow: ["switchboard__health"] },
      ],
    },
    argumentLimits: { maxDepth: MAX_DEPTH },
  });
  gateway = await startHttpGateway(config);
  origin = new URL(gateway.url).origin;
  metadataUrl = `${origin}/.well-known/oauth-protected-resource/mcp`;
});

after(async () => {
  await Promise.allSettled(clients.map((client) => client.close()));
  const code = await gateway?.stop();
  await jwks?.close();
  assert.equal(code, 0, `the gateway exits 0 on SIGTERM:\n${gateway?.logs.tail()}`);
});

describe("authentication over Streamable HTTP", () => {
  test("a request without credentials: 401 with a plain Bearer challenge pointing to the metadata", async () => {
    const answer = await post(rpc("tools/list"));
    assert.equal(answer.status, 401, answer.text);
    const params = challenge(answer);
    assert.equal(params.resource_metadata, metadataUrl);
    assert.equal(params.realm, "switchboard");
    assert.equal(params.error, undefined, "no error code when no credentials were sent (RFC 6750 §3.1)");
    assert.equal(answer.headers.get("cache-control"), "no-store");
    assert.equal(JSON.parse(answer.text).error, "missing_token");
    // A GET (the SSE stream) is guarded just the same.
    const get = await fetch(gateway.url, {
      headers: { accept: "text/event-stream" },
      signal: AbortSignal.timeout(REQUEST_TIMEOUT_MS),
    });
    await get.body?.cancel();
    assert.equal(get.status, 401);
    // And an SDK client cannot even initialize.
    const client = new Client({ name: "anonymous", version: "1" });
    await assert.rejects(client.connect(new StreamableHTTPClientTransport(new URL(gateway.url))));
  });

  test("a wrong API key, an expired JWT, a JWT for another audience: 401 invalid_token, each saying why", async () => {
    const cases: { what: string; headers: Record<string, string>; secret: string; reason: RegExp }[] = [];
    const wrongKey = `sk_wrong_${randomBytes(18).toString("base64url")}`;
    cases.push({
      what: "wrong key as Bearer",
      headers: bearer(wrongKey),
      secret: wrongKey,
      reason: /API key/,
    });
    cases.push({
      what: "wrong key as X-API-Key",
      headers: { "x-api-key": wrongKey },
      secret: wrongKey,
      reason: /^unknown API key$/,
    });
    const expired = await mintJwt({ roles: ["admin"], exp: Math.floor(Date.now() / 1000) - 600 });
    cases.push({
      what: "expired JWT",
      headers: bearer(expired),
      secret: expired,
      reason: /token expired at /,
    });
    const otherAudience = await mintJwt({ roles: ["admin"], audience: "https://other.example.com/mcp" });
    cases.push({
      what: "JWT for another audience",
      headers: bearer(otherAudience),
      secret: otherAudience,
      // The header cannot carry `"` (RFC 6750 §3): it quotes with ' where the JSON body keeps ".
      reason: /audience mismatch: expected ["']https:\/\/switchboard\.test\/mcp["']/,
    });
    const otherIssuer = await mintJwt({ roles: ["admin"], issuer: "https://evil.example.com/" });
    cases.push({
      what: "JWT of another issuer",
      headers: bearer(otherIssuer),
      secret: otherIssuer,
      reason: /issuer mismatch/,
    });
    const forged = await mintJwt({ roles: ["admin"], key: strangerKey });
    cases.push({
      what: "JWT signed by another key",
      headers: bearer(forged),
      secret: forged,
      reason: /signature invalid/,
    });

    for (const { what, headers, secret, reason } of cases) {
      const answer = await post(rpc("tools/list"), headers);
      assert.equal(answer.status, 401, `${what}: ${answer.text}`);
      const params = challenge(answer);
      assert.equal(params.resource_metadata, metadataUrl, what);
      assert.equal(params.error, "invalid_token", what);
      assert.match(params.error_description ?? "", reason, what);
      const body = JSON.parse(answer.text) as { error: string; error_description: string };
      assert.equal(body.error, "invalid_token", what);
      assert.match(body.error_description, reason, what);
      assert.ok(
        !answer.text.includes(secret) && !String(answer.headers.get("www-authenticate")).includes(secret),
        `${what}: the credential is never echoed`,
      );
    }
  });

  test("a session id is not a credential: requests in an open session are authenticated each time", async () => {
    const transport = new StreamableHTTPClientTransport(new URL(gateway.url), {
      requestInit: { headers: { "x-api-key": ADMIN_KEY } },
    });
    const client = new Client({ name: "session-owner", version: "1" });
    await client.connect(transport);
    clients.push(client);
    const session = {
      "mcp-session-id": String(transport.sessionId),
      "mcp-protocol-version": String(transport.protocolVersion),
    };
    const stolen = await post(rpc("tools/list", undefined, 5), session);
    assert.equal(stolen.status, 401, stolen.text);
    assert.equal(challenge(stolen).resource_metadata, metadataUrl);
    // The same session with a reader's key is another principal's session: not found, as if it did
    // not exist (test/e2e/principals.e2e.test.ts has the rest of that rule).
    const asReader = await post(rpc("tools/list", undefined, 6), { ...session, ...bearer(READER_KEY) });
    assert.equal(asReader.status, 404, asReader.text);
    assert.match(asReader.text, /not found/);
  });

  test("a right API key (Bearer or X-API-Key) and a valid JWT are let in", async () => {
    const viaBearer = await connectAs(bearer(READER_KEY));
    assert.equal(textOf(await call(viaBearer, "fx__echo", { message: "key as bearer" })), "key as bearer");
    const viaHeader = await connectAs({ "x-api-key": ADMIN_KEY });
    assert.ok((await toolNames(viaHeader)).includes("fx__stats"), "the admin key authenticates as admin");
    const jwt = await mintJwt({ sub: "alice", roles: ["reader"] });
    const viaJwt = await connectAs(bearer(jwt));
    assert.deepEqual(await toolNames(viaJwt), ["fx__echo"], "the JWT's roles claim decides what alice sees");
    assert.equal(textOf(await call(viaJwt, "fx__echo", { message: "jwt" })), "jwt");
    assert.ok(jwks.fetches >= 1, "the keys came from the JWKS endpoint");
    // Raw: the same credentials give 200 and a JSON-RPC result.
    for (const headers of [bearer(READER_KEY), { "x-api-key": READER_KEY }, bearer(jwt)]) {
      const answer = await post(rpc("tools/list"), headers);
      assert.equal(answer.status, 200, answer.text);
      assert.ok(jsonRpcMessage(answer).result, answer.text);
    }
  });

  test("the protected resource metadata (RFC 9728) is served at both well-known paths, without credentials", async () => {
    for (const url of [metadataUrl, `${origin}/.well-known/oauth-protected-resource`]) {
      const response = await fetch(url, { signal: AbortSignal.timeout(REQUEST_TIMEOUT_MS) });
      assert.equal(response.status, 200, url);
      assert.match(response.headers.get("content-type") ?? "", /^application\/json/);
      assert.deepEqual(await response.json(), {
        resource: gateway.url,
        authorization_servers: [ISSUER],
        bearer_methods_supported: ["header"],
        scopes_supported: ["mcp:tools"],
        resource_name: "Switchboard",
      });
    }
    // The challenge advertises the scopes too, and the URL it names is the document above.
    const params = challenge(await post(rpc("tools/list")));
    assert.equal(params.scope, "mcp:tools");
    const followed = await fetch(params.resource_metadata as string, {
      signal: AbortSignal.timeout(REQUEST_TIMEOUT_MS),
    });
    const document = (await followed.json()) as { authorization_servers?: string[] };
    assert.deepEqual(document.authorization_servers, [ISSUER]);
  });
});

describe("access rules per principal", () => {
  let reader: Client;
  let admin: Client;
  let ops: Client;

  before(async () => {
    reader = await connectAs(bearer(READER_KEY), "reader");
    admin = await connectAs(bearer(await mintJwt({ sub: "root", roles: ["admin"] })), "admin");
    ops = await connectAs(bearer(await mintJwt({ sub: "ops-7" })), "ops");
  });

  test("a reader sees only what the rules allow it: tools, prompts and resources are filtered", async () => {
    assert.deepEqual(await toolNames(reader), ["fx__echo"]);
    assert.deepEqual((await reader.listPrompts()).prompts, []);
    assert.deepEqual((await reader.listResources()).resources, []);
  });

  test("an admin sees every tool (the gateway's own included), prompt and resource", async () => {
    const names = await toolNames(admin);
    for (const name of [
      "fx__echo",
      "fx__env",
      "fx__stats",
      "fx__crash",
      "fx__fail",
      "fx__meta",
      "switchboard__health",
      "switchboard__metrics",
    ]) {
      assert.ok(names.includes(name), `${name} is listed for the admin: ${names.join(", ")}`);
    }
    assert.ok(names.length > 10, `the admin sees the whole catalog: ${names.join(", ")}`);
    assert.deepEqual(
      (await admin.listPrompts()).prompts.map((prompt) => prompt.name),
      ["fx__greet"],
    );
    assert.deepEqual(
      (await admin.listResources()).resources.map((resource) => resource.uri),
      ["fixture://doc"],
    );
  });

  test("calling a hidden tool is refused as access denied, naming the rule, and never reaches the backend", async () => {
    const before = (await call(admin, "fx__stats")).structuredContent?.calls;
    assert.equal(typeof before, "number");

    const denied = await call(reader, "fx__env", { name: "HOME" });
    assert.equal(denied.isError, true, textOf(denied));
    assert.equal(errorCodeOf(denied), "forbidden");
    assert.equal(
      textOf(denied),
      "Access denied: principal 'reader-bot' may not call tool 'fx__env' (rule 2 (access.rules[1]) denies " +
        "'fx__env'). Ask an administrator to grant access in the access rules.",
    );
    assert.doesNotMatch(textOf(denied), /does not exist/);

    const byDefault = await call(reader, "fx__fail", { reason: "should not run" });
    assert.equal(byDefault.isError, true, textOf(byDefault));
    assert.equal(errorCodeOf(byDefault), "forbidden");
    assert.match(
      textOf(byDefault),
      /^Access denied: principal 'reader-bot' may not call tool 'fx__fail' \(no rule allows 'fx__fail' for this principal and the default is deny\)/,
    );
    assert.equal(
      (await call(admin, "fx__stats")).structuredContent?.calls,
      before,
      "the denied fx__fail never reached the backend (its call counter did not move)",
    );

    // The admin may call what the reader may not.
    assert.equal((await call(admin, "fx__fail", { reason: "admin may" })).isError, true);
    assert.equal((await call(admin, "fx__stats")).structuredContent?.calls, (before as number) + 1);

    // A tool that does not exist at all is a different answer: an unknown tool, not a denial.
    await assert.rejects(call(reader, "fx__no_such_tool"), (error: Error) => {
      assert.ok(error instanceof McpError);
      assert.match(error.message, /does not exist/);
      return true;
    });
  });

  test("the gateway's own switchboard__health is subject to the rules like any tool", async () => {
    assert.ok(!(await toolNames(reader)).includes("switchboard__health"));
    const denied = await call(reader, "switchboard__health");
    assert.equal(denied.isError, true, textOf(denied));
    assert.match(
      textOf(denied),
      /^Access denied: principal 'reader-bot' may not call tool 'switchboard__health' \(no rule allows/,
    );

    // jwt:ops-* (by principal id, no roles) gets exactly the health tool, and it works.
    assert.deepEqual(await toolNames(ops), ["switchboard__health"]);
    const health = await call(ops, "switchboard__health");
    assert.equal(health.isError, undefined, textOf(health));
    assert.match(textOf(health), /"status"/);
    const notEcho = await call(ops, "fx__echo", { message: "no" });
    assert.equal(notEcho.isError, true);
    assert.match(textOf(notEcho), /^Access denied: principal 'jwt:ops-7' may not call tool 'fx__echo'/);

    const forAdmin = await call(admin, "switchboard__health");
    assert.equal(forAdmin.isError, undefined, textOf(forAdmin));
  });
});

describe("argument guards", () => {
  let admin: Client;

  before(async () => {
    admin = await connectAs({ "x-api-key": ADMIN_KEY }, "arguments");
  });

  test("arguments that do not match the tool's JSON Schema: an isError result listing each problem by path", async () => {
    const wrongType = await call(admin, "fx__echo", { message: 42 });
    assert.equal(wrongType.isError, true);
    assert.match(
      textOf(wrongType),
      /Invalid arguments for 'fx__echo': \/message must be string\. Fix the arguments and call again\./,
    );
    const data = wrongType._meta?.["switchboard/error"] as {
      code: string;
      tool: string;
      errors: { path: string; message: string }[];
    };
    assert.equal(data.code, "invalid_arguments");
    assert.equal(data.tool, "fx__echo");
    assert.deepEqual(data.errors, [{ path: "/message", message: "must be string" }]);

    const missing = await call(admin, "fx__echo", {});
    assert.equal(missing.isError, true);
    assert.match(textOf(missing), /Invalid arguments for 'fx__echo': \/message is required\./);

    const slow = await call(admin, "fx__slow", { ms: "soon" });
    assert.match(textOf(slow), /Invalid arguments for 'fx__slow': \/ms must be number\./);
  });

  const deep = (levels: number) => {
    let value: unknown = "bottom";
    for (let i = 0; i < levels; i++) value = { down: value };
    return value;
  };

  /** A raw tools/call of fx__echo whose arguments nest `levels` deep, built as text (no recursion). */
  const deepCall = (levels: number, id: number) =>
    `{"jsonrpc":"2.0","id":${id},"method":"tools/call","params":{"name":"fx__echo","arguments":` +
    `{"message":"x","nested":${'{"a":'.repeat(levels)}1${"}".repeat(levels)}}}}`;

  async function stillServes(): Promise<void> {
    assert.equal(gateway.child.exitCode, null, "the gateway is still running");
    assert.equal(textOf(await call(admin, "fx__echo", { message: "still here" })), "still here");
    const fresh = await connectAs(bearer(READER_KEY), "after-deep");
    assert.equal(textOf(await call(fresh, "fx__echo", { message: "new client" })), "new client");
  }

  test("an over-deep payload (200 > maxDepth 64) is refused by path, and the gateway keeps serving", async () => {
    const tooDeep = await call(admin, "fx__echo", { message: "deep", nested: deep(200) });
    assert.equal(tooDeep.isError, true);
    assert.match(
      textOf(tooDeep),
      new RegExp(
        `^Arguments for 'fx__echo' exceed the gateway's limits: /nested/down/down/down/down/down/down/down/… nests deeper than ${MAX_DEPTH} levels\\. Send smaller or flatter arguments\\.$`,
      ),
    );
    const data = tooDeep._meta?.["switchboard/error"] as { code: string; errors: { path: string }[] };
    assert.equal(data.code, "invalid_arguments");
    assert.match(data.errors[0]?.path ?? "", /^\/nested\/down\//);

    // At the limit is fine: the arguments object is level 1, so 63 more levels make 64.
    const atLimit = await call(admin, "fx__echo", { message: "just fits", nested: deep(MAX_DEPTH - 1) });
    assert.equal(atLimit.isError, undefined, textOf(atLimit));
    assert.equal(textOf(atLimit), "just fits");
    // One more is too deep.
    const oneMore = await call(admin, "fx__echo", { message: "one more", nested: deep(MAX_DEPTH) });
    assert.match(textOf(oneMore), new RegExp(`nests deeper than ${MAX_DEPTH} levels`));
    await stillServes();
  });

  test("an adversarially deep payload (20 000 levels, ~120 kB) gets the same answer, with or without a session", async () => {
    const levels = 20_000;
    // In a 2025-era session (the SDK client's own transport).
    const transport = new StreamableHTTPClientTransport(new URL(gateway.url), {
      requestInit: { headers: { "x-api-key": ADMIN_KEY } },
    });
    const client = new Client({ name: "deep-session", version: "1" });
    await client.connect(transport);
    clients.push(client);
    const inSession = await post(deepCall(levels, 41), {
      "x-api-key": ADMIN_KEY,
      "mcp-session-id": String(transport.sessionId),
      "mcp-protocol-version": String(transport.protocolVersion),
    });
    // Without a session (served statelessly, as 2026-07-28 clients and plain HTTP callers are).
    const sessionless = await post(deepCall(levels, 42), { "x-api-key": ADMIN_KEY });
    await stillServes();

    for (const [what, answer] of [
      ["in a session", inSession],
      ["without a session", sessionless],
    ] as const) {
      assert.equal(answer.status, 200, `${what}: ${answer.text}`);
      const body = jsonRpcMessage(answer) as {
        result?: { isError?: boolean; content?: { text?: string }[] };
      };
      assert.equal(body.result?.isError, true, `${what}: ${answer.text}`);
      assert.match(
        String(body.result?.content?.[0]?.text),
        new RegExp(
          `^Arguments for 'fx__echo' exceed the gateway's limits: .* nests deeper than ${MAX_DEPTH} levels`,
        ),
        `${what}: ${answer.text}`,
      );
    }
  });
});
