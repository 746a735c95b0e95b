/**
 * The http backend through the Backend interface, against node:http servers on 127.0.0.1 (port 0).
 *
 * No traffic leaves loopback: every host name goes through the test's own resolver, the system
 * resolver is replaced by a trap for the whole file (and must never fire), and refusals are proven
 * to happen before any connection by watching undici's `beforeConnect` and Node's `net.client.socket`
 * diagnostics channels: a refused call must publish neither.
 */
import assert from "node:assert/strict";
import diagnostics from "node:diagnostics_channel";
import dns from "node:dns";
import { createServer, type IncomingMessage, type Server, type ServerResponse } from "node:http";
import { type AddressInfo, isIP } from "node:net";
import { Writable } from "node:stream";
import { after, before, describe, test } from "node:test";
import { pino } from "pino";
import { createHttpBackend, type HttpBackend } from "../../src/backends/http/backend.ts";
import { type HttpBackendInput, httpBackendSchema } from "../../src/backends/http/config.ts";
import type { Resolver } from "../../src/backends/http/ssrf.ts";
import { GatewayError } from "../../src/core/errors.ts";
import { type CallToolResult, NOTE_ERROR_DETAIL } from "../../src/core/types.ts";
import { silentLogger } from "../../src/observability/logger.ts";
import { signOutbound } from "../../src/security/signing.ts";
import { context, errorCode, NO_EVENTS, textOrTypeOf } from "../support/backend-harness.ts";
import { eventually } from "../support/gateway-process.ts";

// ─── loopback test servers ──────────────────────────────────────────────────────────────────────

interface TestServer {
  readonly server: Server;
  readonly port: number;
  readonly url: string;
  /** TCP connections accepted so far. */
  connections: number;
  /** Requests seen, by path. */
  readonly hits: Map<string, number>;
  /** Requests held by /gate until `openGate`. */
  readonly gated: ServerResponse[];
  gateOpen: boolean;
  lastHeaders: IncomingMessage["headers"];
}

async function startServer(): Promise<TestServer> {
  const state = {
    connections: 0,
    hits: new Map<string, number>(),
    gated: [] as ServerResponse[],
    gateOpen: false,
    lastHeaders: {} as IncomingMessage["headers"],
  };
  const server = createServer((req, res) => {
    const url = new URL(req.url ?? "/", "http://placeholder");
    state.hits.set(url.pathname, (state.hits.get(url.pathname) ?? 0) + 1);
    state.lastHeaders = req.headers;
    const chunks: Buffer[] = [];
    req.on("data", (c: Buffer) => chunks.push(c));
    req.on("end", () => route(url, req, res, Buffer.concat(chunks).toString("utf8"), state));
  });
  server.on("connection", () => {
    state.connections++;
  });
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  const { port } = server.address() as AddressInfo;
  return Object.assign(state, { server, port, url: `http://localhost:${port}` });
}

function route(
  url: URL,
  req: IncomingMessage,
  res: ServerResponse,
  body: string,
  state: { gated: ServerResponse[]; gateOpen: boolean },
): void {
  const json = (status: number, value: unknown, headers: Record<string, string> = {}) => {
    res.writeHead(status, { "content-type": "application/json", ...headers });
    res.end(JSON.stringify(value));
  };
  const path = url.pathname;
  if (path === "/json" || path.startsWith("/api/") || path === "/items" || path.startsWith("/items/")) {
    json(200, {
      method: req.method,
      path: req.url,
      query: Object.fromEntries(url.searchParams),
      body,
      host: req.headers.host,
      authorization: req.headers.authorization ?? null,
      contentType: req.headers["content-type"] ?? null,
    });
  } else if (path === "/text") {
    res.writeHead(200, { "content-type": "text/plain; charset=utf-8" });
    res.end("plain text ✓");
  } else if (path === "/png") {
    res.writeHead(200, { "content-type": "image/png" });
    res.end(Buffer.from([0x89, 0x50, 0x4e, 0x47, 0, 1, 2, 3]));
  } else if (path.startsWith("/status/")) {
    json(Number(path.slice("/status/".length)), { error: "as requested" });
  } else if (path === "/redirect") {
    res.writeHead(Number(url.searchParams.get("status") ?? 302), {
      location: url.searchParams.get("to") ?? "/",
    });
    res.end();
  } else if (path === "/loop") {
    res.writeHead(302, { location: "/loop" });
    res.end();
  } else if (path === "/big") {
    // Chunked, no content-length: the limit has to cut the read itself.
    res.writeHead(200, { "content-type": "text/plain" });
    const total = Number(url.searchParams.get("bytes"));
    const chunk = Buffer.alloc(16 * 1024, "x");
    let sent = 0;
    const pump = () => {
      while (sent < total) {
        sent += chunk.length;
        if (!res.write(chunk)) return void res.once("drain", pump);
      }
      res.end();
    };
    res.on("error", () => undefined);
    pump();
  } else if (path === "/big-declared") {
    const size = Number(url.searchParams.get("bytes"));
    res.writeHead(200, { "content-type": "text/plain", "content-length": String(size) });
    res.end(Buffer.alloc(size, "y"));
  } else if (path === "/hang") {
    // Never answers; the socket closes when the client gives up.
  } else if (path === "/gate") {
    if (state.gateOpen) json(200, { gated: false });
    else state.gated.push(res);
  } else {
    json(404, { error: "no such path" });
  }
}

function openGate(server: TestServer): void {
  server.gateOpen = true;
  for (const res of server.gated.splice(0)) {
    res.writeHead(200, { "content-type": "application/json" });
    res.end('{"gated":true}');
  }
}

// ─── no traffic off loopback, no real DNS ───────────────────────────────────────────────────────

const realLookup = dns.lookup;
const realPromisesLookup = dns.promises.lookup;
const systemLookups: string[] = [];
const connects: { hostname: string; port: string | number }[] = [];
let sockets = 0;

const onBeforeConnect = (message: unknown) => {
  const params = (message as { connectParams: { hostname: string; port: string | number } }).connectParams;
  connects.push({ hostname: params.hostname, port: params.port });
};
const onSocket = () => {
  sockets++;
};

const ANSWERS: Record<string, string[]> = {
  localhost: ["127.0.0.1"],
  "pinned.example": ["127.0.0.1"],
  "evil.example": ["127.0.0.1"],
  "mapped.example": ["::ffff:127.0.0.1"],
  "metadata.example": ["169.254.169.254"],
  "mixed.example": ["93.184.215.14", "10.0.0.1"],
  "ula.example": ["fd12:3456::1"],
};
const resolved: string[] = [];
const resolve: Resolver = async (hostname) => {
  resolved.push(hostname);
  const answers = ANSWERS[hostname];
  if (!answers) throw Object.assign(new Error(`getaddrinfo ENOTFOUND ${hostname}`), { code: "ENOTFOUND" });
  return answers.map((address) => ({ address, family: address.includes(":") ? (6 as const) : (4 as const) }));
};

/** Runs `fn` and asserts it neither opened a socket nor asked undici to connect. */
async function withoutConnecting<T>(fn: () => Promise<T>): Promise<T> {
  const before = { connects: connects.length, sockets };
  const value = await fn();
  assert.deepEqual(connects.slice(before.connects), [], "no connection may be attempted");
  assert.equal(sockets, before.sockets, "no socket may be opened");
  return value;
}

// ─── helpers ────────────────────────────────────────────────────────────────────────────────────

const backends: HttpBackend[] = [];

async function backend(config: Omit<HttpBackendInput, "type">, timeoutMs = 5_000): Promise<HttpBackend> {
  const parsed = httpBackendSchema.parse({ type: "http", allowHttp: true, ...config });
  const b = createHttpBackend("api", { ...parsed, timeoutMs }, silentLogger(), { resolve });
  backends.push(b);
  await b.start(NO_EVENTS);
  return b;
}

function call(b: HttpBackend, args: Record<string, unknown>, tool = "fetch", signal?: AbortSignal) {
  return b.callTool({ server: "api", tool, args }, context(signal));
}

/** The refusal for a name, which never says what the name resolves to. */
const NAME_REFUSED = (name: string) =>
  new RegExp(
    `^Refused to connect to "${name.replaceAll(".", "\\.")}": it resolves to a private or special-purpose address, `,
  );

/**
 * No address the test resolver gives out, and no range label, appears in a refusal of a name (the
 * name itself aside: the caller wrote it). A localhost name is refused for what the name says.
 */
function assertNoResolvedAddress(result: CallToolResult): void {
  const text = textOrTypeOf(result);
  const name = /^Refused to connect to "([a-z.]+)":/.exec(text)?.[1];
  if (name === undefined) return;
  const shown = `${text}\n${JSON.stringify(result._meta)}`.replaceAll(name, "(the name)");
  for (const address of Object.values(ANSWERS).flat()) {
    assert.ok(!shown.includes(address), `the answer names ${address}: ${shown}`);
  }
  if (/always means this machine/.test(text)) return;
  for (const label of ["loopback", "metadata", "unique-local", "IPv4-mapped", "private ("]) {
    assert.ok(!shown.includes(label), `the answer names the range ${label}: ${shown}`);
  }
}

function assertRefused(result: CallToolResult, pattern: RegExp): void {
  assert.equal(result.isError, true, `expected a refusal, got: ${textOrTypeOf(result)}`);
  assert.match(textOrTypeOf(result), pattern);
  assert.equal(errorCode(result), "forbidden");
}

let main: TestServer;
let other: TestServer;

before(async () => {
  // IP literals are answered without a query (server.listen looks up "127.0.0.1"); names are trapped.
  (dns as { lookup: unknown }).lookup = (hostname: string, ...rest: unknown[]) => {
    if (isIP(hostname)) return (realLookup as (...args: unknown[]) => void)(hostname, ...rest);
    systemLookups.push(hostname);
    throw new Error(`test trap: the system resolver was asked for "${hostname}"`);
  };
  (dns.promises as { lookup: unknown }).lookup = async (hostname: string) => {
    systemLookups.push(hostname);
    throw new Error(`test trap: the system resolver was asked for "${hostname}"`);
  };
  diagnostics.subscribe("undici:client:beforeConnect", onBeforeConnect);
  diagnostics.subscribe("net.client.socket", onSocket);
  main = await startServer();
  other = await startServer();
});

after(async () => {
  await Promise.all(backends.map((b) => b.close()));
  for (const s of [main, other]) {
    openGate(s);
    s.server.closeAllConnections();
    await new Promise((r) => s.server.close(r));
  }
  diagnostics.unsubscribe("undici:client:beforeConnect", onBeforeConnect);
  diagnostics.unsubscribe("net.client.socket", onSocket);
  (dns as { lookup: unknown }).lookup = realLookup;
  (dns.promises as { lookup: unknown }).lookup = realPromisesLookup;
  assert.deepEqual(systemLookups, [], "the system resolver must never be used");
  // Every connection any test made went to the loopback servers.
  for (const c of connects) assert.ok(["localhost", "pinned.example"].includes(c.hostname), c.hostname);
});

// ─── tests ──────────────────────────────────────────────────────────────────────────────────────

describe("http backend: requests and results", () => {
  test("offers a fetch tool whose schema and annotations match the config", async () => {
    const b = await backend({
      baseUrl: `${main.url}/api/`,
      allowPrivateHosts: ["localhost"],
      methods: ["GET"],
    });
    const [fetchTool] = b.catalog().tools;
    assert.equal(fetchTool?.name, "fetch");
    assert.equal(fetchTool?.annotations?.readOnlyHint, true);
    const properties = fetchTool?.inputSchema.properties as Record<string, { enum?: string[] }> | undefined;
    const method = properties?.method;
    assert.deepEqual(method?.enum, ["GET"]);
    assert.equal((await b.health(new AbortController().signal)).status, "healthy");
  });

  test("a path under the base URL: JSON body as text and structuredContent, query and headers sent", async () => {
    const b = await backend({
      baseUrl: `${main.url}/api/`,
      allowPrivateHosts: ["localhost"],
      headers: { Authorization: "Bearer config-secret" },
    });
    const result = await call(b, {
      method: "POST",
      path: "/items?x=1",
      query: { tag: ["a", "b"], n: 2 },
      body: { name: "widget" },
    });
    assert.equal(result.isError, undefined);
    assert.match(
      textOrTypeOf(result),
      /^HTTP 200 OK \(POST http:\/\/localhost:\d+\/api\/items\?x=1&tag=a&tag=b&n=2\)/,
    );
    const body = (result.structuredContent as { body: Record<string, unknown> }).body;
    assert.equal(body.method, "POST");
    assert.equal(body.path, "/api/items?x=1&tag=a&tag=b&n=2");
    assert.equal(body.body, '{"name":"widget"}');
    assert.equal(body.contentType, "application/json");
    assert.equal(body.authorization, "Bearer config-secret");
  });

  test("trace context and outbound signatures reach the API; the signature verifies", async () => {
    const secret = "s".repeat(40);
    const b = await backend({
      baseUrl: `${main.url}/api/`,
      allowPrivateHosts: ["localhost"],
      signRequests: { keyId: "gw", secret },
    });
    const traceparent = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01";
    const result = await b.callTool(
      { server: "api", tool: "fetch", args: { method: "POST", path: "/items", body: { n: 1 } } },
      { ...context(), meta: { traceparent } },
    );
    assert.equal(result.isError, undefined, textOrTypeOf(result));
    const seen = main.lastHeaders;
    assert.equal(seen.traceparent, traceparent);
    const timestamp = Number(seen["x-switchboard-timestamp"]);
    const nonce = String(seen["x-switchboard-nonce"]);
    assert.equal(seen["x-switchboard-key-id"], "gw");
    const expected = signOutbound({
      method: "POST",
      url: `${main.url}/api/items`,
      body: '{"n":1}',
      keyId: "gw",
      secret,
      now: timestamp,
      nonce,
    });
    assert.equal(seen["x-switchboard-signature"], expected["x-switchboard-signature"]);
    const wrongKey = signOutbound({
      method: "POST",
      url: `${main.url}/api/items`,
      body: '{"n":1}',
      keyId: "gw",
      secret: "t".repeat(40),
      now: timestamp,
      nonce,
    });
    assert.notEqual(seen["x-switchboard-signature"], wrongKey["x-switchboard-signature"]);
  });

  test("text, binary and non-2xx answers", async () => {
    const b = await backend({ baseUrl: `${main.url}/`, allowPrivateHosts: ["localhost"] });
    const text = await call(b, { path: "/text" });
    assert.match(textOrTypeOf(text), /plain text ✓/);
    assert.equal(text.structuredContent, undefined);

    const png = await call(b, { path: "/png" });
    assert.equal(png.content[1]?.type, "image");
    assert.equal(
      (png.content[1] as { data: string }).data,
      Buffer.from([0x89, 0x50, 0x4e, 0x47, 0, 1, 2, 3]).toString("base64"),
    );

    const missing = await call(b, { path: "/status/404" });
    assert.equal(missing.isError, true);
    assert.match(textOrTypeOf(missing), /^HTTP 404 Not Found/);

    const lenient = await backend({
      baseUrl: `${main.url}/`,
      allowPrivateHosts: ["localhost"],
      errorOnStatus: false,
    });
    assert.equal((await call(lenient, { path: "/status/404" })).isError, undefined);
  });

  test("bad arguments are InvalidArguments, thrown for the pipeline to answer as JSON-RPC errors", async () => {
    const b = await backend({
      baseUrl: `${main.url}/`,
      allowPrivateHosts: ["localhost"],
      methods: ["GET", "POST"],
    });
    const invalid = (error: unknown) => error instanceof GatewayError && error.code === "invalid_arguments";
    await assert.rejects(call(b, {}), invalid);
    await assert.rejects(call(b, { path: "/json", url: `${main.url}/json` }), invalid);
    await assert.rejects(call(b, { path: "/json", method: "DELETE" }), invalid);
    await assert.rejects(call(b, { path: "/json", body: "x" }), /GET request carries no body/);
    await assert.rejects(call(b, { path: "/json", headers: { Host: "evil.example" } }), /Header "Host"/);
    await assert.rejects(call(b, { path: "/json", headers: { "x-a": "1\r\nx-injected: 1" } }), /line break/);
    await assert.rejects(call(b, { path: "/json", headers: { "bad name": "1" } }), /invalid name/);
  });

  test("declared endpoints fill {param} placeholders, URL-encoded, and validate arguments", async () => {
    const b = await backend({
      baseUrl: `${main.url}/`,
      allowPrivateHosts: ["localhost"],
      fetchTool: false,
      endpoints: [
        {
          name: "get_item",
          description: "One item",
          inputSchema: {
            type: "object",
            properties: { id: { type: "string" }, verbose: { type: "boolean" } },
            required: ["id"],
          },
          path: "/items/{id}",
          query: { verbose: "{verbose}", fixed: "yes" },
        },
        {
          name: "create_item",
          method: "POST",
          inputSchema: { type: "object", properties: { name: { type: "string" }, qty: { type: "integer" } } },
          path: "/items",
          body: { item: { name: "{name}", qty: "{qty}" }, all: "{$args}", label: "item {name}" },
        },
      ],
    });
    assert.deepEqual(
      b.catalog().tools.map((t) => [t.name, t.annotations?.readOnlyHint]),
      [
        ["get_item", true],
        ["create_item", false],
      ],
    );
    const got = await call(b, { id: "a/b c" }, "get_item");
    const body = (got.structuredContent as { body: { path: string } }).body;
    assert.equal(body.path, "/items/a%2Fb%20c?fixed=yes");

    const created = await call(b, { name: "w", qty: 3 }, "create_item");
    const sent = JSON.parse((created.structuredContent as { body: { body: string } }).body.body);
    assert.deepEqual(sent, { item: { name: "w", qty: 3 }, all: { name: "w", qty: 3 }, label: "item w" });

    await assert.rejects(call(b, {}, "get_item"), /must have required property 'id'/);
    await assert.rejects(call(b, { id: ".." }, "get_item"), /may not be "\." or "\.\."/);
    await assert.rejects(
      call(b, {}, "fetch"),
      (e: unknown) => e instanceof GatewayError && e.code === "unknown_tool",
    );
  });

  test("config errors name the field and what to do", () => {
    const issues = (input: Record<string, unknown>) => {
      const parsed = httpBackendSchema.safeParse({ type: "http", ...input });
      assert.equal(parsed.success, false);
      return parsed.error?.issues.map((i) => `${i.path.join(".")}: ${i.message}`).join("\n") ?? "";
    };
    assert.match(issues({}), /baseUrl: an http backend needs a baseUrl/);
    assert.match(
      issues({ baseUrl: "http://api.example.com/" }),
      /baseUrl: is plain http:\/\/; use https:\/\/, or set allowHttp/,
    );
    assert.match(issues({ allowHosts: ["https://api.example.com/x"] }), /allowHosts.0: must be a host name/);
    assert.match(
      issues({ baseUrl: "https://api.example.com/", endpoints: [{ name: "x", path: "/a/{id}" }] }),
      /endpoints.0.path: uses \{id\}, which is not a property of inputSchema/,
    );
    assert.match(
      issues({ baseUrl: "https://api.example.com/", endpoints: [{ name: "fetch", path: "/a" }] }),
      /"fetch" is already a tool/,
    );
  });
});

describe("http backend: SSRF", () => {
  test("scope: paths cannot climb out of the base URL or switch hosts; other hosts need allowHosts", async () => {
    const b = await backend({ baseUrl: `${main.url}/api/`, allowPrivateHosts: ["localhost"] });
    await withoutConnecting(async () => {
      assertRefused(await call(b, { path: "../json" }), /outside the base URL/);
      assertRefused(await call(b, { path: "%2e%2e/json" }), /outside the base URL/);
      assertRefused(await call(b, { path: "x/%2E%2e/.%2e/json" }), /outside the base URL/);
      assertRefused(await call(b, { url: `${main.url}/json` }), /outside the base URL/);
      assertRefused(await call(b, { url: "https://other.example/x" }), /not in allowHosts/);
      assertRefused(await call(b, { url: `file:///etc/passwd` }), /scheme file: is not HTTP/);
      assertRefused(await call(b, { url: `http://user:pw@localhost:${main.port}/api/x` }), /credentials/);
    });
    // A leading "//" stays a path under the base, never a host.
    const result = await call(b, { path: "//evil.example/x" });
    assert.match(textOrTypeOf(result), /localhost:\d+\/api\/evil\.example\/x/);
  });

  test("https only unless allowHttp", async () => {
    const b = await backend({ allowHosts: ["*"], allowHttp: false });
    await withoutConnecting(async () => {
      assertRefused(
        await call(b, { url: `http://localhost:${main.port}/json` }),
        /plain http:\/\/ is not allowed/,
      );
    });
  });

  const port = () => main.port;
  const attempts: [what: string, url: () => string, pattern: RegExp][] = [
    [
      "loopback by literal (only the name localhost is allowed)",
      () => `http://127.0.0.1:${port()}/json`,
      /loopback/,
    ],
    ["loopback in decimal", () => `http://2130706433:${port()}/json`, /127\.0\.0\.1 is a loopback/],
    ["loopback in octal", () => `http://0177.0.0.1:${port()}/json`, /127\.0\.0\.1 is a loopback/],
    ["loopback in hex, short", () => `http://0x7f.1:${port()}/json`, /127\.0\.0\.1 is a loopback/],
    ["loopback, short form", () => `http://127.1:${port()}/json`, /127\.0\.0\.1 is a loopback/],
    ["IPv6 loopback", () => `http://[::1]:${port()}/json`, /::1 is a loopback/],
    ["IPv6 loopback, long form", () => `http://[0:0:0:0:0:0:0:1]:${port()}/json`, /loopback/],
    ["IPv4-mapped loopback", () => `http://[::ffff:127.0.0.1]:${port()}/json`, /IPv4-mapped.*loopback/],
    ["IPv4-compatible loopback", () => `http://[::127.0.0.1]:${port()}/json`, /IPv4-compatible/],
    ["cloud metadata", () => "http://169.254.169.254/latest/meta-data/", /metadata/],
    ["cloud metadata in decimal", () => "http://2852039166/latest/meta-data/", /metadata/],
    ["cloud metadata over IPv6", () => "http://[fd00:ec2::254]/latest/meta-data/", /metadata/],
    ["metadata through NAT64", () => "http://[64:ff9b::a9fe:a9fe]/", /NAT64.*metadata/],
    ["loopback through 6to4", () => "http://[2002:7f00:1::1]/", /6to4.*loopback/],
    ["private 10/8", () => "http://10.0.0.1/", /private/],
    ["private 192.168/16", () => "http://192.168.0.1/", /private/],
    ["CGNAT", () => "http://100.64.0.1/", /carrier-grade NAT/],
    ["this network", () => `http://0.0.0.0:${port()}/json`, /this network/],
    ["unique-local IPv6", () => "http://[fc00::1]/", /unique-local/],
    ["link-local IPv6", () => "http://[fe80::1]/", /link-local/],
    ["multicast", () => "http://224.0.0.1/", /multicast/],
    // A name's addresses are never named: the caller learns the class of the reason only.
    [
      "a name resolving to loopback",
      () => `http://evil.example:${port()}/json`,
      NAME_REFUSED("evil.example"),
    ],
    [
      "a name resolving to mapped loopback",
      () => `http://mapped.example:${port()}/json`,
      NAME_REFUSED("mapped.example"),
    ],
    ["a name resolving to metadata", () => "http://metadata.example/", NAME_REFUSED("metadata.example")],
    [
      "a name with one private address among public ones",
      () => "http://mixed.example/",
      NAME_REFUSED("mixed.example"),
    ],
    ["a name resolving to unique-local IPv6", () => "http://ula.example/", NAME_REFUSED("ula.example")],
    ["localhost by another name", () => `http://api.localhost:${port()}/json`, /always means this machine/],
  ];

  for (const [what, url, pattern] of attempts) {
    test(`refused before connecting: ${what}`, async () => {
      const b = await backend({ allowHosts: ["*"], allowPrivateHosts: ["localhost"] });
      const result = await withoutConnecting(() => call(b, { url: url() }));
      assertRefused(result, pattern);
      assertNoResolvedAddress(result);
    });
  }

  test("allowPrivateHosts never opens metadata addresses", async () => {
    const b = await backend({
      allowHosts: ["*"],
      allowPrivateHosts: ["metadata.example", "169.254.169.254"],
    });
    await withoutConnecting(async () => {
      assertRefused(await call(b, { url: "http://metadata.example/" }), /metadata/);
      assertRefused(await call(b, { url: "http://169.254.169.254/" }), /metadata/);
    });
  });

  test("the connection goes to the checked address, with the name as Host (pinned, no second lookup)", async () => {
    const b = await backend({ allowHosts: ["pinned.example"], allowPrivateHosts: ["pinned.example"] });
    resolved.length = 0;
    const result = await call(b, { url: `http://pinned.example:${main.port}/json` });
    assert.equal(result.isError, undefined, textOrTypeOf(result));
    assert.equal(
      (result.structuredContent as { body: { host: string } }).body.host,
      `pinned.example:${main.port}`,
    );
    assert.deepEqual(resolved, ["pinned.example"]);
  });

  test("redirects: followed when allowed, checked again at every hop, refused before connecting when not", async () => {
    const b = await backend({ baseUrl: `${main.url}/`, allowHosts: ["*"], allowPrivateHosts: ["localhost"] });
    const followed = await call(b, { path: `/redirect?to=${encodeURIComponent("/json")}` });
    assert.match(
      textOrTypeOf(followed),
      /HTTP 200 OK \(GET http:\/\/localhost:\d+\/json, after 1 redirect\(s\)\)/,
    );

    // Warm the pool so that the refused hop below has no reason to connect anywhere.
    // The target of a refused redirect is the server's choice: neither it nor what it resolves to is named.
    const targets = [
      ["http://169.254.169.254/latest/meta-data/iam/", ["169.254", "metadata"]],
      [`http://127.0.0.1:${main.port}/json`, ["127.0.0.1", "loopback"]],
      [`http://[::ffff:7f00:1]:${main.port}/json`, ["7f00", "IPv4-mapped", "loopback"]],
      [`http://evil.example:${main.port}/json`, ["evil.example", "127.0.0.1"]],
      ["http://10.1.2.3:8080/admin", ["10.1.2.3", "8080", "/admin"]],
    ] as const;
    for (const [target, hidden] of targets) {
      const before = connects.length;
      const ctx = context();
      const result = await b.callTool(
        { server: "api", tool: "fetch", args: { path: `/redirect?to=${encodeURIComponent(target)}` } },
        ctx,
      );
      assertRefused(
        result,
        /^Refused to follow the redirect from http:\/\/localhost:\d+\/redirect\?to=\S+: it leads to a private or special-purpose address/,
      );
      const shown = textOrTypeOf(result).replace(/redirect\?to=\S+:/, "redirect?to=(the caller's own URL):");
      for (const text of hidden) {
        assert.ok(!shown.includes(text), `${target}: the answer names ${text}: ${shown}`);
        assert.ok(!JSON.stringify(result._meta).includes(text), `${target}: _meta names ${text}`);
      }
      // What the caller was not told is kept for the audit record.
      assert.match(String(ctx.notes.get(NOTE_ERROR_DETAIL)), /redirect from .* to "/);
      for (const c of connects.slice(before))
        assert.equal(c.hostname, "localhost", "only the loopback test server");
    }

    const looping = await call(b, { path: "/loop" });
    assert.equal(looping.isError, true);
    assert.match(textOrTypeOf(looping), /redirected more than maxRedirects \(5\) times/);

    // Out-of-scope targets and unresolvable ones are not named either.
    const scoped = await backend({ baseUrl: `${main.url}/`, allowPrivateHosts: ["localhost"] });
    const outOfScope = await call(scoped, {
      path: `/redirect?to=${encodeURIComponent("https://intranet.corp:8443/wiki")}`,
    });
    assertRefused(outOfScope, /^Refused to follow the redirect from .*: its target is out of scope/);
    assert.ok(
      !textOrTypeOf(outOfScope)
        .replace(/to=\S+/, "")
        .includes("intranet"),
      textOrTypeOf(outOfScope),
    );
    await assert.rejects(
      call(b, { path: `/redirect?to=${encodeURIComponent("http://db-7.unknown.example/")}` }),
      (error: unknown) => {
        assert.ok(error instanceof GatewayError && error.code === "backend_unavailable");
        assert.match(
          error.message,
          /^Could not resolve the host of the redirect from .*: the name does not exist/,
        );
        assert.ok(!error.message.replace(/to=\S+/, "").includes("db-7"), error.message);
        return true;
      },
    );

    const noFollow = await backend({
      baseUrl: `${main.url}/`,
      allowPrivateHosts: ["localhost"],
      maxRedirects: 0,
    });
    assert.match(textOrTypeOf(await call(noFollow, { path: "/loop" })), /^HTTP 302 Found/);
  });

  test("a redirect that leaves the origin drops credentials; 303 after POST continues as GET", async () => {
    const b = await backend({
      baseUrl: `${main.url}/`,
      allowHosts: [`localhost:${other.port}`],
      allowPrivateHosts: ["localhost"],
      headers: { authorization: "Bearer for-main-only" },
    });
    const crossed = await call(b, {
      method: "POST",
      path: `/redirect?status=303&to=${encodeURIComponent(`${other.url}/json`)}`,
      body: "payload",
      headers: { Cookie: "session=1" },
    });
    const body = (crossed.structuredContent as { body: Record<string, unknown> }).body;
    assert.equal(body.method, "GET");
    assert.equal(body.body, "");
    assert.equal(body.authorization, null);
    assert.equal(other.lastHeaders.cookie, undefined);

    const kept = await call(b, {
      method: "POST",
      path: `/redirect?status=307&to=${encodeURIComponent("/json")}`,
      body: "payload",
    });
    const keptBody = (kept.structuredContent as { body: Record<string, unknown> }).body;
    assert.equal(keptBody.method, "POST");
    assert.equal(keptBody.body, "payload");
    assert.equal(keptBody.authorization, "Bearer for-main-only");
  });
});

describe("http backend: limits", () => {
  test("one keep-alive pool per origin: concurrent calls never open more than `connections`", async () => {
    const server = await startServer();
    try {
      const b = await backend({
        baseUrl: `${server.url}/`,
        allowPrivateHosts: ["localhost"],
        connections: 2,
      });
      const calls = Array.from({ length: 10 }, () => call(b, { path: "/gate" }));
      // Two requests are held by the server, one per connection; the other eight wait in the pool.
      await eventually(() => server.gated.length === 2, 5_000, "two requests held by the server");
      assert.equal(server.connections, 2);
      openGate(server);
      const results = await Promise.all(calls);
      assert.ok(results.every((r) => r.isError === undefined));
      assert.equal(server.hits.get("/gate"), 10);
      assert.equal(server.connections, 2, "the pool reused its two connections");
      await Promise.all(Array.from({ length: 6 }, () => call(b, { path: "/json" })));
      assert.equal(server.connections, 2, "kept alive across batches");
      assert.deepEqual(b.origins(), [`http://localhost:${server.port}`]);
    } finally {
      openGate(server);
      server.server.closeAllConnections();
      await new Promise((r) => server.server.close(r));
    }
  });

  test("a body past maxResponseBytes is cut off with a clear error, declared or streamed", async () => {
    const b = await backend({
      baseUrl: `${main.url}/`,
      allowPrivateHosts: ["localhost"],
      maxResponseBytes: 1000,
    });
    for (const path of ["/big?bytes=1000000", "/big-declared?bytes=5000"]) {
      const result = await call(b, { path });
      assert.equal(result.isError, true);
      assert.match(
        textOrTypeOf(result),
        /larger than maxResponseBytes \(1000 bytes\).*raise maxResponseBytes/,
      );
    }
    // The pool is still usable after an aborted read.
    assert.equal((await call(b, { path: "/json" })).isError, undefined);
    assert.equal((await call(b, { path: "/big-declared?bytes=1000" })).isError, undefined);
  });

  test("timeoutMs bounds the call; the caller's signal cancels it", async () => {
    const b = await backend({ baseUrl: `${main.url}/`, allowPrivateHosts: ["localhost"] }, 150);
    const started = Date.now();
    await assert.rejects(call(b, { path: "/hang" }), (error: unknown) => {
      assert.ok(error instanceof GatewayError);
      assert.equal(error.code, "timeout");
      assert.match(error.message, /no complete answer within 150 ms/);
      return true;
    });
    assert.ok(Date.now() - started < 5_000);

    const slow = await backend({ baseUrl: `${main.url}/`, allowPrivateHosts: ["localhost"] }, 60_000);
    const controller = new AbortController();
    const hung = main.hits.get("/hang") ?? 0;
    const pending = call(slow, { path: "/hang" }, "fetch", controller.signal);
    await eventually(() => (main.hits.get("/hang") ?? 0) > hung, 5_000, "the hanging request to arrive");
    controller.abort();
    await assert.rejects(
      pending,
      (error: unknown) => error instanceof GatewayError && error.code === "cancelled",
    );
  });

  test("the breaker opens per origin after consecutive failures and stops calls to it", async () => {
    const b = await backend({
      baseUrl: `${main.url}/`,
      allowHosts: [`localhost:${other.port}`],
      allowPrivateHosts: ["localhost"],
      circuitBreaker: { consecutiveFailures: 3, openMs: 60_000 },
    });
    const before = main.hits.get("/status/503") ?? 0;
    for (let i = 0; i < 3; i++) {
      const result = await call(b, { path: "/status/503" });
      assert.equal(result.isError, true);
    }
    assert.equal(main.hits.get("/status/503"), before + 3);
    await assert.rejects(call(b, { path: "/status/503" }), (error: unknown) => {
      assert.ok(error instanceof GatewayError);
      assert.equal(error.code, "circuit_open");
      assert.match(error.message, /api \(http:\/\/localhost:\d+\)" is failing/);
      return true;
    });
    assert.equal(main.hits.get("/status/503"), before + 3, "the open circuit did not call the origin");
    const health = await b.health(new AbortController().signal);
    assert.equal(health.status, "degraded");
    // Another origin has its own breaker.
    assert.equal((await call(b, { url: `${other.url}/json` })).isError, undefined);
  });

  test("4xx answers and refusals never count against the breaker", async () => {
    const b = await backend({
      baseUrl: `${main.url}/`,
      allowHosts: ["*"],
      allowPrivateHosts: ["localhost"],
      circuitBreaker: { consecutiveFailures: 2, openMs: 60_000 },
    });
    for (let i = 0; i < 3; i++) {
      assert.equal((await call(b, { path: "/status/404" })).isError, true);
      assertRefused(await call(b, { url: `http://127.0.0.1:${main.port}/json` }), /loopback/);
    }
    assert.equal((await call(b, { path: "/json" })).isError, undefined);
  });

  test("connection failures count, and are thrown for the pipeline's retry and breaker", async () => {
    const closed = await startServer();
    const port = closed.port;
    await new Promise((r) => closed.server.close(r));
    const b = await backend({
      baseUrl: `http://localhost:${port}/`,
      allowPrivateHosts: ["localhost"],
      circuitBreaker: { consecutiveFailures: 2, openMs: 60_000 },
    });
    for (let i = 0; i < 2; i++) {
      await assert.rejects(
        call(b, { path: "/json" }),
        (e: unknown) => e instanceof GatewayError && e.code === "backend_unavailable",
      );
    }
    await assert.rejects(call(b, { path: "/json" }), (e: unknown) => {
      assert.ok(e instanceof GatewayError && e.code === "circuit_open");
      // The breaker says why it opened by class, never with the address that refused.
      assert.match(e.message, /the connection was refused \(ECONNREFUSED\)/);
      assert.ok(!e.message.includes("127.0.0.1"), e.message);
      return true;
    });
  });
});

describe("http backend: failures name no internal address", () => {
  /** A backend whose log lines are kept, to prove the detail kept from the caller reaches the log. */
  async function logged(config: Omit<HttpBackendInput, "type">, timeoutMs = 5_000) {
    const lines: Record<string, unknown>[] = [];
    const sink = new Writable({
      write(chunk: Buffer, _encoding, done) {
        for (const line of chunk.toString("utf8").split("\n").filter(Boolean)) lines.push(JSON.parse(line));
        done();
      },
    });
    const parsed = httpBackendSchema.parse({ type: "http", allowHttp: true, ...config });
    const b = createHttpBackend("api", { ...parsed, timeoutMs }, pino({ level: "debug" }, sink), { resolve });
    backends.push(b);
    await b.start(NO_EVENTS);
    return { b, lines };
  }

  /** Calls, expecting a thrown GatewayError; returns it with the detail noted for the audit record. */
  async function failure(b: HttpBackend, args: Record<string, unknown>) {
    const ctx = context();
    const error = await b.callTool({ server: "api", tool: "fetch", args }, ctx).then(
      (result) => assert.fail(`expected a failure, got: ${textOrTypeOf(result)}`),
      (e: unknown) => e,
    );
    assert.ok(error instanceof GatewayError, String(error));
    return { error, detail: String(ctx.notes.get(NOTE_ERROR_DETAIL)) };
  }

  test("a refused connection says so by class; the address and port go to the log and the audit note", async () => {
    const closed = await startServer();
    const port = closed.port;
    await new Promise((r) => closed.server.close(r));
    const { b, lines } = await logged({
      allowHosts: ["pinned.example"],
      allowPrivateHosts: ["pinned.example"],
      circuitBreaker: false,
    });
    const { error, detail } = await failure(b, { url: `http://pinned.example:${port}/json` });
    assert.equal(error.code, "backend_unavailable");
    assert.match(
      error.message,
      /^GET http:\/\/pinned\.example:\d+\/json on backend "api" failed before an answer: the connection was refused \(ECONNREFUSED\)\. /,
    );
    assert.ok(!`${error.message}${JSON.stringify(error.data)}`.includes("127.0.0.1"), error.message);
    assert.match(detail, new RegExp(`ECONNREFUSED 127\\.0\\.0\\.1:${port}`));
    assert.ok(
      lines.some((l) => l.level === 40 && String(l.detail).includes(`127.0.0.1:${port}`)),
      "the log has the detail",
    );
  });

  test("a failed TLS handshake says so by class, without the TLS library's own words", async () => {
    const { b } = await logged({ allowHosts: ["pinned.example"], allowPrivateHosts: ["pinned.example"] });
    // The server speaks plain HTTP, so the handshake fails.
    const { error, detail } = await failure(b, { url: `https://pinned.example:${main.port}/json` });
    assert.equal(error.code, "backend_unavailable");
    assert.match(error.message, /failed before an answer: the TLS handshake failed \(ERR_SSL_[A-Z_]+\)\./);
    assert.ok(!/ssl3|openssl|127\.0\.0\.1/i.test(error.message), error.message);
    assert.match(detail, /ssl|SSL/);
  });

  test("a timeout after a redirect names the caller's request, not the hop it timed out on", async () => {
    const { b } = await logged(
      {
        baseUrl: `${main.url}/`,
        allowHosts: ["pinned.example"],
        allowPrivateHosts: ["localhost", "pinned.example"],
      },
      300,
    );
    const hop = `http://pinned.example:${main.port}/hang`;
    const { error, detail } = await failure(b, { path: `/redirect?to=${encodeURIComponent(hop)}` });
    assert.equal(error.code, "timeout");
    assert.match(
      error.message,
      /^GET http:\/\/localhost:\d+\/redirect\?to=\S+ \(after 1 redirect\(s\)\) on backend "api" got no complete answer within 300 ms/,
    );
    // The caller's own URL carries the target (encoded), so look at the rest of the message.
    assert.ok(!error.message.replace(/to=\S+/, "").includes("pinned.example"), error.message);
    assert.ok(!JSON.stringify(error.data).includes("pinned.example"), JSON.stringify(error.data));
    assert.match(detail, /pinned\.example:\d+\/hang/);
  });
});
