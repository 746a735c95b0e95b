/**
 * The SSE event store of 2025-era sessions: what a client that reconnects with Last-Event-ID gets back,
 * and the bounds on what is kept.
 */
import assert from "node:assert/strict";
import { describe, test } from "node:test";
import type { JSONRPCMessage } from "@modelcontextprotocol/server";
import { BoundedEventStore } from "../../../src/server/http/event-store.ts";

const note = (n: number): JSONRPCMessage => ({
  jsonrpc: "2.0",
  method: "notifications/progress",
  params: { progressToken: "t", progress: n },
});

async function replay(store: BoundedEventStore, after: string): Promise<{ stream: string; sent: string[] }> {
  const sent: string[] = [];
  const stream = await store.replayEventsAfter(after, {
    send: async (eventId, message) => {
      sent.push(
        `${eventId}:${JSON.stringify((message as { params?: { progress?: number } }).params?.progress)}`,
      );
    },
  });
  return { stream, sent };
}

describe("BoundedEventStore", () => {
  test("replays what came after the last event id, on that stream only, without the priming event", async () => {
    const store = new BoundedEventStore({ maxEventsPerStream: 10, maxBytes: 10_000 });
    const priming = await store.storeEvent("a", {} as JSONRPCMessage);
    const first = await store.storeEvent("a", note(1));
    await store.storeEvent("b", note(100));
    const second = await store.storeEvent("a", note(2));
    assert.equal(await store.getStreamIdForEventId(priming), "a");
    assert.deepEqual(await replay(store, priming), { stream: "a", sent: [`${first}:1`, `${second}:2`] });
    assert.deepEqual(await replay(store, first), { stream: "a", sent: [`${second}:2`] });
    assert.deepEqual(await replay(store, second), { stream: "a", sent: [] });
  });

  test("keeps at most maxEventsPerStream events of a stream; an id that was dropped is unknown", async () => {
    const store = new BoundedEventStore({ maxEventsPerStream: 3, maxBytes: 10_000 });
    const ids: string[] = [];
    for (let n = 1; n <= 5; n++) ids.push(await store.storeEvent("a", note(n)));
    assert.equal(store.size, 3);
    assert.equal(await store.getStreamIdForEventId(ids[1] as string), undefined);
    assert.deepEqual((await replay(store, ids[2] as string)).sent, [`${ids[3]}:4`, `${ids[4]}:5`]);
  });

  test("keeps at most maxBytes of messages in all, dropping the oldest first across streams", async () => {
    const size = Buffer.byteLength(JSON.stringify(note(1)));
    const store = new BoundedEventStore({ maxEventsPerStream: 100, maxBytes: size * 3 });
    const a1 = await store.storeEvent("a", note(1));
    const b2 = await store.storeEvent("b", note(2));
    await store.storeEvent("a", note(3));
    await store.storeEvent("b", note(4));
    assert.ok(store.bytes <= size * 3, `${store.bytes} bytes kept`);
    assert.equal(await store.getStreamIdForEventId(a1), undefined);
    assert.equal(await store.getStreamIdForEventId(b2), "b");
  });

  test("a message larger than maxBytes is not kept, and nobody resumes across it", async () => {
    const store = new BoundedEventStore({ maxEventsPerStream: 100, maxBytes: 200 });
    const before = await store.storeEvent("a", note(1));
    const big = await store.storeEvent("a", {
      jsonrpc: "2.0",
      id: 1,
      result: { content: [{ type: "text", text: "x".repeat(1_000) }] },
    } as JSONRPCMessage);
    const afterBig = await store.storeEvent("a", note(2));
    assert.ok(store.bytes <= 200);
    // Resuming from before the big message would skip it silently: that id is gone instead.
    assert.equal(await store.getStreamIdForEventId(before), undefined);
    assert.deepEqual((await replay(store, big)).sent, [`${afterBig}:2`]);
  });
});
