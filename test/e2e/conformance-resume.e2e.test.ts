/**
 * Resumable SSE streams on the gateway's HTTP endpoint (2025-era sessions): a stream opens with a
 * priming event (an id, the `retry` interval, empty data), and a client whose stream dropped mid-call
 * reconnects with Last-Event-ID and gets what it missed, the call's result included.
 */
import assert from "node:assert/strict";
import { join } from "node:path";
import { after, before, describe, test } from "node:test";
import { eventually, ROOT, type RunningGateway, startHttpGateway } from "../support/gateway-process.ts";

interface SseEvent {
  id?: string;
  retry?: number;
  data: string;
}

/** Reads SSE events off a response body, one at a time; fails when none comes within `ms`. */
function sseReader(body: ReadableStream<Uint8Array>) {
  const reader = body.getReader();
  const decoder = new TextDecoder();
  let buffer = "";
  const parse = (block: string): SseEvent => {
    const event: SseEvent = { data: "" };
    const data: string[] = [];
    for (const line of block.split("\n")) {
      const colon = line.indexOf(":");
      if (colon === 0) continue; // a comment (keep-alive)
      const field = colon < 0 ? line : line.slice(0, colon);
      const value = colon < 0 ? "" : line.slice(colon + 1).replace(/^ /, "");
      if (field === "id") event.id = value;
      else if (field === "retry") event.retry = Number(value);
      else if (field === "data") data.push(value);
    }
    event.data = data.join("\n");
    return event;
  };
  return {
    async next(ms = 10_000): Promise<SseEvent> {
      const deadline = Date.now() + ms;
      for (;;) {
        const end = buffer.indexOf("\n\n");
        if (end >= 0) {
          const block = buffer.slice(0, end);
          buffer = buffer.slice(end + 2);
          if (block.split("\n").every((line) => line.startsWith(":"))) continue;
          return parse(block);
        }
        const left = deadline - Date.now();
        if (left <= 0) throw new Error(`no SSE event within ${ms} ms`);
        const chunk = await Promise.race([
          reader.read(),
          new Promise<never>((_, reject) =>
            setTimeout(() => reject(new Error(`no SSE event within ${ms} ms`)), left).unref(),
          ),
        ]);
        if (chunk.done) throw new Error("the SSE stream ended");
        buffer += decoder.decode(chunk.value, { stream: true }).replaceAll("\r\n", "\n");
      }
    },
    cancel: () => reader.cancel().catch(() => undefined),
  };
}

let gateway: RunningGateway;
before(async () => {
  gateway = await startHttpGateway(join(ROOT, "test/fixtures/conformance.yaml"));
});
after(async () => {
  await gateway.stop();
});

const JSON_AND_SSE = { "content-type": "application/json", accept: "application/json, text/event-stream" };

/** Opens a 2025-era session at `version` and returns the headers its requests carry. */
async function openSession(version: string): Promise<Record<string, string>> {
  const response = await fetch(gateway.url, {
    method: "POST",
    headers: JSON_AND_SSE,
    body: JSON.stringify({
      jsonrpc: "2.0",
      id: 1,
      method: "initialize",
      params: {
        protocolVersion: version,
        capabilities: {},
        clientInfo: { name: "resume-e2e", version: "1" },
      },
    }),
  });
  assert.equal(response.status, 200);
  await response.text();
  const session = response.headers.get("mcp-session-id");
  assert.ok(session, "the gateway opened no session");
  const headers = { ...JSON_AND_SSE, "mcp-session-id": session, "mcp-protocol-version": version };
  const initialized = await fetch(gateway.url, {
    method: "POST",
    headers,
    body: JSON.stringify({ jsonrpc: "2.0", method: "notifications/initialized" }),
  });
  assert.equal(initialized.status, 202);
  return headers;
}

/**
 * Calls a tool that takes a moment, on an SSE stream. The progress token keeps the call off the plain
 * JSON path, which the gateway takes when nothing but the result would go on the stream.
 */
function slowCall(headers: Record<string, string>, signal?: AbortSignal): Promise<Response> {
  return fetch(gateway.url, {
    method: "POST",
    headers,
    ...(signal ? { signal } : {}),
    body: JSON.stringify({
      jsonrpc: "2.0",
      id: 2,
      method: "tools/call",
      params: { name: "slow_compute", arguments: { seconds: 0.3 }, _meta: { progressToken: "resume" } },
    }),
  });
}

describe("resumable SSE streams (2025-era sessions)", () => {
  test("a stream opens with a priming event; after a drop, Last-Event-ID brings back the result", async () => {
    const headers = await openSession("2025-11-25");
    const dropped = new AbortController();
    const response = await slowCall(headers, dropped.signal);
    assert.equal(response.headers.get("content-type"), "text/event-stream");
    const stream = sseReader(response.body as ReadableStream<Uint8Array>);
    const priming = await stream.next();
    assert.ok(priming.id, "the priming event has an id");
    assert.equal(priming.data, "");
    assert.equal(priming.retry, 1_000);
    // The client loses the stream before the result is written.
    dropped.abort();
    await stream.cancel();

    const { accept: _, "content-type": __, ...session } = headers;
    // The gateway notices the dropped connection a moment later; until then the stream is still open on
    // its side and a reconnection is refused with 409, as a client that retries after `retry` ms finds.
    let resumed: Response | undefined;
    await eventually(
      async () => {
        resumed = await fetch(gateway.url, {
          headers: { ...session, accept: "text/event-stream", "last-event-id": priming.id as string },
        });
        if (resumed.status !== 409) return true;
        await resumed.text();
        return false;
      },
      10_000,
      "the gateway to let the dropped stream be resumed",
    );
    assert.equal(resumed?.status, 200);
    const replay = sseReader(resumed?.body as ReadableStream<Uint8Array>);
    for (;;) {
      const event = await replay.next();
      const message = JSON.parse(event.data) as { id?: number; result?: { content: { text: string }[] } };
      if (message.id !== 2) continue;
      assert.equal(message.result?.content[0]?.text, "slow_compute worked for 0.3 s");
      break;
    }
    await replay.cancel();

    // An id the session never issued (or no longer keeps) is refused, not answered with a partial stream.
    const unknown = await fetch(gateway.url, {
      headers: { ...session, accept: "text/event-stream", "last-event-id": "999999" },
    });
    assert.equal(unknown.status, 400);
    await unknown.text();
  });

  test("a session older than 2025-11-25 gets no priming event (its clients cannot parse empty data)", async () => {
    const headers = await openSession("2025-06-18");
    const response = await slowCall(headers);
    const stream = sseReader(response.body as ReadableStream<Uint8Array>);
    const first = await stream.next();
    assert.notEqual(first.data, "", "the first event carries a message");
    await stream.cancel();
  });
});
