/**
 * The HTTP fast path for `tools/call` on 2025-era sessions: taken when the call needs no stream (a
 * plain JSON answer), left to the SDK when it does (progress, a client that can be asked for sampling
 * or elicitation), and indistinguishable in results, errors and cancellation.
 */
import assert from "node:assert/strict";
import { after, before, describe, test } from "node:test";
import { Client } from "@modelcontextprotocol/sdk/client/index.js";
import { StreamableHTTPClientTransport } from "@modelcontextprotocol/sdk/client/streamableHttp.js";
import {
  eventually,
  fixtureServer,
  type RunningGateway,
  startHttpGateway,
  writeConfig,
} from "../support/gateway-process.ts";

const HEADERS = { "content-type": "application/json", accept: "application/json, text/event-stream" };

let gateway: RunningGateway;

before(async () => {
  gateway = await startHttpGateway(writeConfig({ mcpServers: { fx: fixtureServer() } }));
});

after(async () => {
  assert.equal(await gateway?.stop(), 0);
});

/** A raw 2025-era session: initialize with these client capabilities, then initialized. */
async function openSession(capabilities: Record<string, unknown> = {}): Promise<string> {
  const init = await fetch(gateway.url, {
    method: "POST",
    headers: HEADERS,
    body: JSON.stringify({
      jsonrpc: "2.0",
      id: 0,
      method: "initialize",
      params: { protocolVersion: "2025-06-18", capabilities, clientInfo: { name: "raw", version: "1" } },
    }),
  });
  await init.text();
  const session = init.headers.get("mcp-session-id");
  assert.ok(session, "a session id");
  const done = await fetch(gateway.url, {
    method: "POST",
    headers: { ...HEADERS, "mcp-session-id": session },
    body: JSON.stringify({ jsonrpc: "2.0", method: "notifications/initialized" }),
  });
  await done.text();
  return session;
}

function call(session: string, id: number, name: string, args: unknown, meta?: Record<string, unknown>) {
  return fetch(gateway.url, {
    method: "POST",
    headers: { ...HEADERS, "mcp-session-id": session },
    body: JSON.stringify({
      jsonrpc: "2.0",
      id,
      method: "tools/call",
      params: { name, arguments: args, ...(meta ? { _meta: meta } : {}) },
    }),
  });
}

async function stats(session: string): Promise<{ calls: number; cancelled: number }> {
  const answer = (await (
    await call(session, 9_000 + Math.floor(Math.random() * 1000), "fx__stats", {})
  ).json()) as {
    result: { structuredContent: { calls: number; cancelled: number } };
  };
  return answer.result.structuredContent;
}

describe("the HTTP fast path for tools/call", () => {
  test("a call that needs no stream is answered as plain JSON, as the SDK would answer it", async () => {
    const session = await openSession();
    const answer = await call(session, 1, "fx__echo", { message: "fast" });
    assert.equal(answer.status, 200);
    assert.match(answer.headers.get("content-type") ?? "", /^application\/json/);
    assert.deepEqual(await answer.json(), {
      jsonrpc: "2.0",
      id: 1,
      result: { content: [{ type: "text", text: "fast" }] },
    });
    const failed = (await (await call(session, 2, "fx__fail", { reason: "nope" })).json()) as {
      result: { isError: boolean; content: { text: string }[] };
    };
    assert.equal(failed.result.isError, true);
    assert.equal(failed.result.content[0]?.text, "nope");
    const unknown = (await (await call(session, 3, "fx__missing", {})).json()) as {
      error: { code: number; message: string };
    };
    assert.equal(unknown.error.code, -32602);
    assert.match(unknown.error.message, /Tool "fx__missing" does not exist/);
  });

  test("progress, or a client that can be asked for sampling, takes the SDK's stream", async () => {
    const session = await openSession();
    const withProgress = await call(session, 1, "fx__slow", { ms: 50 }, { progressToken: "p1" });
    assert.match(withProgress.headers.get("content-type") ?? "", /^text\/event-stream/);
    const events = await withProgress.text();
    assert.match(events, /notifications\/progress/);
    assert.match(events, /waited 50 ms/);

    const sampler = await openSession({ sampling: {} });
    const streamed = await call(sampler, 1, "fx__echo", { message: "via the SDK" });
    assert.match(streamed.headers.get("content-type") ?? "", /^text\/event-stream/);
    assert.match(await streamed.text(), /via the SDK/);
  });

  test("notifications/cancelled aborts a fast-path call at the backend", async () => {
    const session = await openSession();
    const before = await stats(session);
    const pending = call(session, 42, "fx__slow", { ms: 20_000 });
    await eventually(
      async () => (await stats(session)).calls > before.calls,
      10_000,
      "the call to reach the backend",
    );
    const cancel = await fetch(gateway.url, {
      method: "POST",
      headers: { ...HEADERS, "mcp-session-id": session },
      body: JSON.stringify({
        jsonrpc: "2.0",
        method: "notifications/cancelled",
        params: { requestId: 42, reason: "changed my mind" },
      }),
    });
    assert.equal(cancel.status, 202);
    const answer = await pending;
    assert.equal(answer.status, 202, "a cancelled request gets no JSON-RPC response");
    await eventually(
      async () => (await stats(session)).cancelled === before.cancelled + 1,
      10_000,
      "the backend to see the cancellation",
    );
  });

  test("SDK clients see no difference", async () => {
    const client = new Client({ name: "sdk", version: "1" });
    await client.connect(new StreamableHTTPClientTransport(new URL(gateway.url)));
    try {
      const results = await Promise.all(
        Array.from({ length: 20 }, (_, i) =>
          client.callTool({ name: "fx__echo", arguments: { message: `m${i}` } }),
        ),
      );
      assert.deepEqual(
        results.map((r) => (r.content as { text: string }[])[0]?.text),
        Array.from({ length: 20 }, (_, i) => `m${i}`),
      );
    } finally {
      await client.close();
    }
  });
});
