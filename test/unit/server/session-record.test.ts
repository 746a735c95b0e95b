/**
 * The record of a 2025-era session shared by replicas, and the SSE event ids that name the replica and
 * request of a stream.
 */
import assert from "node:assert/strict";
import { describe, test } from "node:test";
import {
  decodeSessionRecord,
  encodeSessionRecord,
  type SessionRecord,
  SessionRecords,
} from "../../../src/server/http/session-record.ts";
import { eventIdOf, parseEventId } from "../../../src/server/http/stream-ids.ts";
import { createMemoryStore } from "../../../src/stores/memory.ts";

const RECORD: SessionRecord = {
  id: "0b6f1c3e-session",
  principal: "alice",
  profile: null,
  protocolVersion: "2025-11-25",
  capabilities: { elicitation: {}, roots: { listChanged: true } },
  clientInfo: { name: "client", version: "1.2.3", title: "A client" },
  logLevel: "warning",
  subscriptions: ["fixture://doc"],
  owner: "replica-a",
  holders: ["replica-a", "replica-b"],
};

describe("session record codec", () => {
  test("round-trips every field, client info extras included", () => {
    assert.deepEqual(decodeSessionRecord(encodeSessionRecord(RECORD)), RECORD);
    const fresh = { ...RECORD, logLevel: null, subscriptions: [], profile: "dev" };
    assert.deepEqual(decodeSessionRecord(encodeSessionRecord(fresh)), fresh);
  });

  test("what is not a record of this version reads as no session", () => {
    const encoded = JSON.parse(encodeSessionRecord(RECORD)) as Record<string, unknown>;
    for (const text of [
      undefined,
      "",
      "not json",
      "null",
      "[]",
      JSON.stringify({ ...encoded, v: 2 }),
      JSON.stringify({ ...encoded, principal: 7 }),
      JSON.stringify({ ...encoded, logLevel: "loud" }),
      JSON.stringify({ ...encoded, subscriptions: "fixture://doc" }),
      JSON.stringify({ ...encoded, clientInfo: { name: "no version" } }),
      JSON.stringify({ ...encoded, id: "" }),
    ]) {
      assert.equal(decodeSessionRecord(text), undefined, String(text));
    }
  });

  test("records outlive the idle timeout by the renewal interval, then expire; and are deleted", async () => {
    let now = 1_000_000;
    const store = createMemoryStore({ now: () => now });
    const records = new SessionRecords(store, 60_000);
    await records.write(RECORD);
    assert.deepEqual(await records.read(RECORD.id), RECORD);
    now += 74_000;
    assert.deepEqual(await records.read(RECORD.id), RECORD, "renewed at most every 15 s, kept 60 s + 15 s");
    now += 2_000;
    assert.equal(await records.read(RECORD.id), undefined, "expired");
    await records.write(RECORD);
    await records.delete(RECORD.id);
    assert.equal(await records.read(RECORD.id), undefined);
  });
});

describe("stream event ids", () => {
  test("name the replica, and the request of a request's stream", () => {
    assert.deepEqual(parseEventId(eventIdOf("replica-a", 3, undefined)), {
      replica: "replica-a",
      request: undefined,
    });
    assert.deepEqual(parseEventId(eventIdOf("replica-a", 4, 17)), { replica: "replica-a", request: 17 });
    assert.deepEqual(parseEventId(eventIdOf("replica-a", 5, "call.1")), {
      replica: "replica-a",
      request: "call.1",
    });
  });

  test("a single replica's ids, and anything else, name nothing", () => {
    for (const id of [
      "12",
      "",
      "a.b",
      "a.1.!!!",
      "a.1.x.y",
      `a.1.${Buffer.from("{}").toString("base64url")}`,
    ]) {
      assert.equal(parseEventId(id), undefined, id);
    }
  });
});
