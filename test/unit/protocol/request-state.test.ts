/**
 * The requestState token of 2026-07-28 input rounds: genuine tokens name their owner replica and key;
 * a token altered in any way, issued to another principal or for another method, signed with another
 * key, or expired, reads as nothing at all (the caller answers every such case with one message).
 */
import assert from "node:assert/strict";
import { randomBytes } from "node:crypto";
import { describe, test } from "node:test";
import {
  RequestStateTokens,
  requestStateOf,
  sharedRequestStateKey,
} from "../../../src/protocol/request-state.ts";
import { createMemoryStore } from "../../../src/stores/memory.ts";

const BASE64URL = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";

const KEY = randomBytes(32);
const HOUR = 3_600_000;

describe("RequestStateTokens", () => {
  test("a genuine token names its owner and the owner's key for the call", async () => {
    const tokens = new RequestStateTokens("replica-a", KEY);
    const { token, nonce } = await tokens.issue("alice", "tools/call", Date.now() + HOUR);
    const claims = await tokens.read(token, "alice", "tools/call");
    assert.equal(claims?.owner, "replica-a");
    assert.equal(claims?.nonce, nonce);
  });

  test("another replica sharing the key reads it and sees a foreign owner", async () => {
    const a = new RequestStateTokens("replica-a", KEY);
    const b = new RequestStateTokens("replica-b", Promise.resolve(KEY));
    const { token } = await a.issue("alice", "tools/call", Date.now() + HOUR);
    const claims = await b.read(token, "alice", "tools/call");
    assert.equal(claims?.owner, "replica-a");
    assert.notEqual(claims?.owner, b.owner);
  });

  test("a tampered token is refused: owner rewritten, signature altered, truncated, or not a string", async () => {
    const tokens = new RequestStateTokens("replica-a", KEY);
    const { token } = await tokens.issue("alice", "tools/call", Date.now() + HOUR);
    const [body, mac] = token.split(".") as [string, string];
    const claims = JSON.parse(Buffer.from(body, "base64url").toString("utf8")) as Record<string, unknown>;
    const rewritten = Buffer.from(JSON.stringify({ ...claims, o: "replica-evil" })).toString("base64url");
    // A character in the middle: the last one carries unused bits, covered below.
    const flipped = `${mac.slice(0, 10)}${mac[10] === "A" ? "B" : "A"}${mac.slice(11)}`;
    // The same MAC bytes spelled otherwise: the last character's unused low bits set, and a character
    // outside the alphabet, which decoding would skip.
    const lastBitsSet = `${mac.slice(0, -1)}${BASE64URL[BASE64URL.indexOf(mac.at(-1) as string) | 3]}`;
    for (const forged of [
      `${rewritten}.${mac}`,
      `${body}.${flipped}`,
      `${body}.${lastBitsSet}`,
      `${body}.${mac.slice(0, 5)}!${mac.slice(5)}`,
      `${body}.`,
      body,
      `${body}.${mac}x`,
      "",
      42,
      undefined,
    ]) {
      assert.equal(await tokens.read(forged, "alice", "tools/call"), undefined, String(forged));
    }
  });

  test("a token is bound to its principal, its method and its key", async () => {
    const tokens = new RequestStateTokens("replica-a", KEY);
    const { token } = await tokens.issue("alice", "tools/call", Date.now() + HOUR);
    assert.equal(await tokens.read(token, "mallory", "tools/call"), undefined);
    assert.equal(await tokens.read(token, "alice", "prompts/get"), undefined);
    const otherKey = new RequestStateTokens("replica-a", randomBytes(32));
    assert.equal(await otherKey.read(token, "alice", "tools/call"), undefined);
  });

  test("an expired token is refused", async () => {
    const tokens = new RequestStateTokens("replica-a", KEY);
    const now = Date.now();
    const { token } = await tokens.issue("alice", "tools/call", now + 1_000);
    assert.ok(await tokens.read(token, "alice", "tools/call", now + 999));
    assert.equal(await tokens.read(token, "alice", "tools/call", now + 1_001), undefined);
  });

  test("requestStateOf reads params.requestState and nothing else", () => {
    assert.equal(requestStateOf({ method: "tools/call", params: { requestState: "s" } }), "s");
    assert.equal(requestStateOf({ method: "tools/call", params: {} }), undefined);
    assert.equal(requestStateOf([{ params: { requestState: "s" } }]), undefined);
    assert.equal(requestStateOf(null), undefined);
  });
});

describe("sharedRequestStateKey", () => {
  test("a store that is not shared gets a key of its own each time", async () => {
    const store = createMemoryStore();
    const [a, b] = await Promise.all([sharedRequestStateKey(store), sharedRequestStateKey(store)]);
    assert.equal(a.length, 32);
    assert.notDeepEqual(a, b);
  });

  test("replicas of a shared store starting together agree on one key", async () => {
    const memory = createMemoryStore();
    // The memory store's coordination (locks, waits) stands in for Redis'.
    const shared = new Proxy(memory, {
      get: (target, prop) => {
        if (prop === "shared") return true;
        const value = Reflect.get(target, prop, target) as unknown;
        return typeof value === "function" ? value.bind(target) : value;
      },
    });
    const keys = await Promise.all([1, 2, 3].map(() => sharedRequestStateKey(shared)));
    assert.deepEqual(keys[1], keys[0]);
    assert.deepEqual(keys[2], keys[0]);
    assert.deepEqual(await sharedRequestStateKey(shared), keys[0]);
  });
});
