/**
 * What the Streamable HTTP endpoint answers to requests it must refuse, and proof that it keeps
 * serving afterwards: one real gateway process, raw requests, and an SDK v1 client as the witness.
 */
import assert from "node:assert/strict";
import { request as httpRequest } from "node:http";
import { after, before, describe, test } from "node:test";
import { Client } from "@modelcontextprotocol/sdk/client/index.js";
import { StreamableHTTPClientTransport } from "@modelcontextprotocol/sdk/client/streamableHttp.js";
import {
  fixtureServer,
  type RunningGateway,
  startHttpGateway,
  writeConfig,
} from "../support/gateway-process.ts";

const MAX_BODY_BYTES = 4096;
const REQUEST_TIMEOUT_MS = 10_000;
/** What a Streamable HTTP client must accept (the SDK refuses requests without both). */
const MCP_HEADERS = { "content-type": "application/json", accept: "application/json, text/event-stream" };

let gateway: RunningGateway;
let base: string;
/** A client that keeps one session open across every refused request. */
let witness: Client;
let witnessTransport: StreamableHTTPClientTransport;

before(async () => {
  const configPath = writeConfig({
    mcpServers: { fx: fixtureServer() },
    server: { http: { maxBodyBytes: MAX_BODY_BYTES } },
  });
  gateway = await startHttpGateway(configPath);
  base = new URL(gateway.url).origin;
  witness = new Client({ name: "witness", version: "1" });
  witnessTransport = new StreamableHTTPClientTransport(new URL(gateway.url));
  await witness.connect(witnessTransport);
});

after(async () => {
  await witness?.close();
  const code = await gateway?.stop();
  assert.equal(code, 0, `the gateway exits 0 on SIGTERM:\n${gateway?.logs.tail()}`);
});

interface Answer {
  readonly status: number;
  readonly headers: Headers;
  readonly text: string;
}

async function post(body: string | ReadableStream<Uint8Array>, headers: Record<string, string> = {}) {
  return send(gateway.url, {
    method: "POST",
    headers: { ...MCP_HEADERS, ...headers },
    body,
    ...(typeof body === "string" ? {} : { duplex: "half" }),
  });
}

async function send(url: string, init: RequestInit = {}): Promise<Answer> {
  const response = await fetch(url, { ...init, signal: AbortSignal.timeout(REQUEST_TIMEOUT_MS) });
  return { status: response.status, headers: response.headers, text: await response.text() };
}

/** The JSON-RPC message in a plain JSON answer or in the first event of an SSE answer. */
function message(answer: Answer): {
  id?: unknown;
  error?: { code: number; message: string; data?: unknown };
} {
  const type = answer.headers.get("content-type") ?? "";
  if (type.startsWith("text/event-stream")) {
    // The first event with data: a resumable stream opens with a priming event whose data is empty.
    const data = answer.text.split("\n").find((line) => line.startsWith("data: ") && line.trim() !== "data:");
    assert.ok(data, `an SSE answer with a data line: ${answer.text}`);
    return JSON.parse(data.slice("data: ".length));
  }
  assert.match(type, /^application\/json/, `a JSON answer: ${answer.text}`);
  return JSON.parse(answer.text);
}

function assertJsonRpcError(answer: Answer, status: number, code: number, text: RegExp | string) {
  const body = message(answer);
  assert.equal(answer.status, status, `HTTP status; body: ${answer.text}`);
  assert.ok(body.error, `a JSON-RPC error: ${answer.text}`);
  assert.equal(body.error.code, code, `JSON-RPC code; body: ${answer.text}`);
  if (typeof text === "string") assert.equal(body.error.message, text);
  else assert.match(body.error.message, text);
  return body;
}

/** The gateway is alive, the witness's session still works, and a new client can connect. */
async function stillServes(): Promise<void> {
  assert.equal(gateway.child.exitCode, null, "the gateway process is still running");
  for (const client of [witness, await freshClient()]) {
    const { tools } = await client.listTools();
    assert.ok(
      tools.some((tool) => tool.name === "fx__echo"),
      "fx__echo is listed",
    );
    const result = await client.callTool({ name: "fx__echo", arguments: { message: "still here" } });
    assert.deepEqual(result.content, [{ type: "text", text: "still here" }]);
    if (client !== witness) await client.close();
  }
}

async function freshClient(): Promise<Client> {
  const client = new Client({ name: "fresh", version: "1" });
  await client.connect(new StreamableHTTPClientTransport(new URL(gateway.url)));
  return client;
}

const rpc = (method: string, params?: unknown, id: unknown = 1) =>
  JSON.stringify({ jsonrpc: "2.0", id, method, ...(params === undefined ? {} : { params }) });

describe("malformed requests get a JSON-RPC error and the gateway keeps serving", () => {
  test("a body that is not JSON: 400, -32700, with the parser's reason", async () => {
    const answer = await post("hello{");
    const body = assertJsonRpcError(
      answer,
      400,
      -32700,
      /^Parse error: the body is not valid JSON \(Unexpected token 'h', "hello\{" is not valid JSON\)\.$/,
    );
    assert.equal(body.id, null);
    assertJsonRpcError(await post(""), 400, -32700, /^Parse error: the body is not valid JSON/);
    await stillServes();
  });

  test("JSON that is not a JSON-RPC message: 400, -32600", async () => {
    const notRpc = /^Invalid request: /;
    assertJsonRpcError(await post("42"), 400, -32600, notRpc);
    assertJsonRpcError(await post('{"hello":"world"}'), 400, -32600, notRpc);
    assertJsonRpcError(await post('{"jsonrpc":"2.0","id":1}'), 400, -32600, notRpc);
    const wrongVersion = assertJsonRpcError(
      await post('{"jsonrpc":"1.0","id":7,"method":"tools/list"}'),
      400,
      -32600,
      notRpc,
    );
    assert.equal(wrongVersion.id, 7, "the id is echoed when it can be read");
    assertJsonRpcError(await post(rpc("ping", undefined, { an: "object" })), 400, -32600, notRpc);
    assertJsonRpcError(
      await post('[1, 2, "x"]'),
      400,
      -32600,
      /^Invalid request: a JSON-RPC message must be an object\. \(batch element 0\)$/,
    );
    assertJsonRpcError(await post("[]"), 400, -32600, "Invalid request: the batch is empty.");
    await stillServes();
  });

  test("inside a session, JSON that is not JSON-RPC is -32600 as well (the spec's Invalid Request)", async () => {
    const session = { "mcp-session-id": String(witnessTransport.sessionId) };
    for (const body of ['{"hello":"world"}', '{"jsonrpc":"1.0","id":1,"method":"ping"}', "[1, 2]"]) {
      assertJsonRpcError(await post(body, session), 400, -32600, /JSON-RPC|Invalid request/);
    }
    await stillServes();
  });

  test("an unknown method: -32601 Method not found, with and without a session", async () => {
    assertJsonRpcError(await post(rpc("foo/bar")), 200, -32601, "Method not found");
    const inSession = await post(rpc("foo/bar", undefined, 9), {
      "mcp-session-id": String(witnessTransport.sessionId),
      "mcp-protocol-version": String(witnessTransport.protocolVersion),
    });
    const body = assertJsonRpcError(inSession, 200, -32601, "Method not found");
    assert.equal(body.id, 9);
    await stillServes();
  });

  test("an unknown tool: -32602 naming the tool, through the SDK client and raw", async () => {
    await assert.rejects(
      witness.callTool({ name: "nope__missing", arguments: {} }),
      (error: Error & { code?: number }) => {
        assert.equal(error.code, -32602);
        assert.match(
          error.message,
          /Tool "nope__missing" does not exist\. List tools to see what is available\./,
        );
        return true;
      },
    );
    const raw = await post(rpc("tools/call", { name: "__proto__", arguments: {} }));
    const body = assertJsonRpcError(
      raw,
      200,
      -32602,
      'Tool "__proto__" does not exist. List tools to see what is available.',
    );
    assert.deepEqual(body.error?.data, { code: "unknown_tool", tool: "__proto__" });
    await stillServes();
  });

  test("tools/call without a tool name: -32602", async () => {
    assertJsonRpcError(await post(rpc("tools/call", { arguments: {} })), 200, -32602, /tools\/call/);
    await stillServes();
  });

  test("tools/call without a tool name says so in one line", async () => {
    const body = message(await post(rpc("tools/call", { arguments: {} })));
    assert.ok(!body.error?.message.includes("\n"), body.error?.message);
    assert.match(String(body.error?.message), /name/);
  });
});

describe("guards refuse before parsing, and the gateway keeps serving", () => {
  const tooBig = rpc("tools/call", { name: "fx__echo", arguments: { message: "x".repeat(10_000) } });
  const limitMessage = `Request body is larger than the limit of ${MAX_BODY_BYTES} bytes (server.http.maxBodyBytes).`;

  test("a body over server.http.maxBodyBytes: 413 naming the limit and the setting", async () => {
    const answer = await post(tooBig);
    assertJsonRpcError(answer, 413, -32600, limitMessage);
    // The upload was read to its end and thrown away, so the connection can stay open.
    assert.notEqual(answer.status, 500);

    const justUnder = rpc("tools/call", { name: "fx__echo", arguments: { message: "y".repeat(3_900) } });
    assert.ok(Buffer.byteLength(justUnder) <= MAX_BODY_BYTES);
    assert.equal((await post(justUnder)).status, 200, "a body under the limit is served");
    await stillServes();
  });

  test("a body over the limit that is still being sent gets the 413, not a broken connection", async () => {
    const bytes = new TextEncoder().encode(tooBig);
    const chunked = () =>
      new ReadableStream<Uint8Array>({
        start(controller) {
          for (let offset = 0; offset < bytes.length; offset += 1024) {
            controller.enqueue(bytes.subarray(offset, offset + 1024));
          }
          controller.close();
        },
      });
    for (let attempt = 0; attempt < 3; attempt++) {
      assertJsonRpcError(await post(chunked()), 413, -32600, limitMessage);
    }
    const large = rpc("tools/call", { name: "fx__echo", arguments: { message: "z".repeat(5_000_000) } });
    assertJsonRpcError(await post(large), 413, -32600, limitMessage);
    await stillServes();
  });

  test("a foreign Host header: 403 naming the host and the setting", async () => {
    const url = new URL(gateway.url);
    // fetch always sends the URL's own Host, so this one request goes through node:http.
    const answer = await new Promise<Answer>((resolve, reject) => {
      const req = httpRequest(
        {
          host: url.hostname,
          port: url.port,
          path: url.pathname,
          method: "POST",
          headers: { ...MCP_HEADERS, host: "evil.example.com" },
          timeout: REQUEST_TIMEOUT_MS,
        },
        (res) => {
          let text = "";
          res.setEncoding("utf8");
          res.on("data", (chunk: string) => {
            text += chunk;
          });
          res.on("end", () => {
            const headers = new Headers();
            for (const [name, value] of Object.entries(res.headers)) {
              if (typeof value === "string") headers.set(name, value);
            }
            resolve({ status: res.statusCode ?? 0, headers, text });
          });
        },
      );
      req.on("timeout", () => req.destroy(new Error("timed out")));
      req.on("error", reject);
      req.end(rpc("tools/list"));
    });
    assertJsonRpcError(
      answer,
      403,
      -32600,
      /^Host "evil\.example\.com(:\d+)?" is not allowed \(a guard against DNS rebinding\)\. Add it to server\.http\.allowedHosts to accept it\.$/,
    );
    await stillServes();
  });

  test("a foreign Origin: 403 naming the origin and the setting; a localhost origin is fine", async () => {
    const answer = await post(rpc("tools/list"), { origin: "https://evil.example.com" });
    assertJsonRpcError(
      answer,
      403,
      -32600,
      /^Origin "https?:\/\/evil\.example\.com(:\d+)?" is not allowed \(a guard against DNS rebinding\)\. Add it to server\.http\.allowedOrigins to accept it\.$/,
    );
    const local = await post(rpc("ping"), { origin: "http://localhost:5173" });
    assert.equal(local.status, 200);
    assert.deepEqual(message(local), { jsonrpc: "2.0", id: 1, result: {} });
    await stillServes();
  });

  test("an unknown session id: 404 with -32001 for POST, GET and DELETE", async () => {
    const unknown = "00000000-0000-4000-8000-000000000000";
    const expected = `Session "${unknown}" not found: it expired or the gateway restarted. Start a new session with initialize.`;
    assertJsonRpcError(await post(rpc("tools/list"), { "mcp-session-id": unknown }), 404, -32001, expected);
    for (const method of ["GET", "DELETE"]) {
      const answer = await send(gateway.url, {
        method,
        headers: { accept: "text/event-stream", "mcp-session-id": unknown },
      });
      assertJsonRpcError(answer, 404, -32001, expected);
    }
    await stillServes();
  });

  test("a tools/call sent as text/plain gets 415 on every path: without a session and in one", async () => {
    const call = rpc("tools/call", { name: "fx__echo", arguments: { message: "x" } });
    const session = String((witness.transport as StreamableHTTPClientTransport).sessionId);
    const plain = { "content-type": "text/plain" };
    for (const [what, headers] of [
      ["without a session", plain],
      [
        "in a 2025-era session",
        { ...plain, "mcp-session-id": session, "mcp-protocol-version": "2025-11-25" },
      ],
      [
        "2026-07-28",
        {
          ...plain,
          "mcp-protocol-version": "2026-07-28",
          "mcp-method": "tools/call",
          "mcp-name": "fx__echo",
        },
      ],
    ] as const) {
      const answer = await post(call, headers);
      assert.equal(answer.status, 415, `${what}: ${answer.text}`);
      assertJsonRpcError(
        answer,
        415,
        -32000,
        "Unsupported Media Type: Content-Type must be application/json",
      );
    }
    await stillServes();
  });

  test("the wrong Content-Type or Accept: 415 and 406", async () => {
    assertJsonRpcError(
      await post(rpc("ping"), { "content-type": "text/plain" }),
      415,
      -32000,
      "Unsupported Media Type: Content-Type must be application/json",
    );
    assertJsonRpcError(
      await post(rpc("ping"), { accept: "application/json" }),
      406,
      -32000,
      "Not Acceptable: Client must accept both application/json and text/event-stream",
    );
    await stillServes();
  });

  test("an unknown path: 404 JSON that names the MCP endpoint", async () => {
    for (const method of ["GET", "POST"]) {
      const answer = await send(`${base}/nope?x=1`, { method, ...(method === "POST" ? { body: "{}" } : {}) });
      assert.equal(answer.status, 404);
      assert.match(answer.headers.get("content-type") ?? "", /^application\/json/);
      assert.deepEqual(JSON.parse(answer.text), { error: "Not found: /nope. The MCP endpoint is /mcp." });
    }
    await stillServes();
  });

  test("a probe path with the wrong method: 405 with Allow, not 404", async () => {
    const answer = await send(`${base}/livez`, { method: "POST" });
    assert.equal(answer.status, 405);
    assert.equal(answer.headers.get("allow"), "GET, HEAD");
  });
});

describe("probes answer JSON", () => {
  const probe = async (path: string) => {
    const answer = await send(`${base}${path}`);
    assert.match(answer.headers.get("content-type") ?? "", /^application\/json/);
    assert.equal(answer.headers.get("cache-control"), "no-store");
    return { status: answer.status, body: JSON.parse(answer.text) as Record<string, unknown> };
  };

  test("/livez, /readyz and /healthz", async () => {
    assert.deepEqual(await probe("/livez"), { status: 200, body: { status: "ok" } });
    assert.deepEqual(await probe("/readyz"), { status: 200, body: { status: "ready" } });
    const health = await probe("/healthz");
    assert.equal(health.status, 200);
    assert.equal(health.body.status, "healthy");
    assert.equal(typeof health.body.inFlight, "number");
    const checks = health.body.checks as Record<string, { kind: string; required: boolean; status: string }>;
    assert.deepEqual(Object.keys(checks).sort(), ["config", "eventLoop", "fx", "heap", "store"]);
    assert.equal(checks.fx?.kind, "backend");
    assert.equal(checks.fx?.status, "healthy");
    const head = await send(`${base}/healthz`, { method: "HEAD" });
    assert.equal(head.status, 200);
  });

  test("a query string does not change the answer", async () => {
    assert.deepEqual(await probe("/livez?verbose=1"), { status: 200, body: { status: "ok" } });
  });
});

describe("after all of it", () => {
  test("the gateway logged no unexpected error", () => {
    const unexpected = gateway.logs.lines.filter(
      (line) => line.level === "error" || line.level === "fatal" || line.raw === true,
    );
    assert.deepEqual(unexpected, []);
  });
});
