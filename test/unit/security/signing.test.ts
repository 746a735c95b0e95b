import assert from "node:assert/strict";
import { createHash, createHmac } from "node:crypto";
import { describe, test } from "node:test";
import { GatewayError, jsonRpcCode } from "../../../src/core/errors.ts";
import type { CallContext, Principal, Store, Tool } from "../../../src/core/types.ts";
import { type SigningConfigInput, signingSchema } from "../../../src/security/config.ts";
import {
  createSignatureVerifier,
  SIGNATURE_META_KEY,
  SIGNATURE_NOTE,
  SignatureRejected,
  signatureFromHeaders,
  signatureHeaders,
  signaturePolicy,
  signOutbound,
  signToolCall,
  type VerifyResult,
} from "../../../src/security/signing.ts";
import { canonicalJson } from "../../../src/stores/canonical-json.ts";
import { createMemoryStore, createStore } from "../../../src/stores/index.ts";

const NOW = 1_750_000_000_000;
const SECRET = "k1-secret-that-is-at-least-32-characters";
const TOOL = "db__query";
const CALLER = "alice";
const ARGS = { sql: "select 1", options: { limit: 10, explain: false } };

function signingConfig(input: Partial<SigningConfigInput> = {}) {
  return signingSchema.parse({
    keys: [
      { id: "k1", secret: SECRET },
      { id: "k2", secret: "k2-secret-that-is-at-least-32-characters" },
    ],
    ...input,
  });
}

async function verifier(
  options: { now?: () => number; store?: Store; config?: Partial<SigningConfigInput> } = {},
) {
  const store = options.store ?? (await createStore());
  return createSignatureVerifier(signingConfig(options.config), store, options.now ?? (() => NOW));
}

function sign(
  overrides: {
    args?: Record<string, unknown>;
    now?: number;
    nonce?: string;
    keyId?: string;
    secret?: string;
  } = {},
) {
  return signToolCall({
    tool: TOOL,
    arguments: overrides.args ?? ARGS,
    principal: CALLER,
    keyId: overrides.keyId ?? "k1",
    secret: overrides.secret ?? SECRET,
    now: overrides.now ?? NOW,
    ...(overrides.nonce ? { nonce: overrides.nonce } : {}),
  })[SIGNATURE_META_KEY];
}

function rejection(result: VerifyResult) {
  assert.equal(result.ok, false, `expected a rejection, got ${JSON.stringify(result)}`);
  return result as Extract<VerifyResult, { ok: false }>;
}

describe("signing round trip", () => {
  test("a signed call verifies, whatever order the client wrote its argument keys in", async () => {
    const v = await verifier();
    const signature = sign();
    const reordered = { options: { explain: false, limit: 10 }, sql: "select 1" };
    assert.deepEqual(await v.verify(TOOL, reordered, signature, CALLER), { ok: true, keyId: "k1" });
  });

  test("the signature is the documented HMAC over canonical JSON, base64url, timestamp in ms", () => {
    const signature = sign({ nonce: "nonce-0123456789abcdef" });
    const payload = canonicalJson({
      tool: TOOL,
      arguments: ARGS,
      principal: CALLER,
      timestamp: NOW,
      nonce: "nonce-0123456789abcdef",
    });
    assert.equal(signature.signature, createHmac("sha256", SECRET).update(payload).digest("base64url"));
    assert.equal(signature.timestamp, NOW);
    assert.match(sign().nonce, /^[A-Za-z0-9_-]{22}$/);
    assert.notEqual(sign().nonce, sign().nonce);
  });

  test("absent arguments are signed as {}", async () => {
    const v = await verifier();
    const signature = signToolCall({ tool: TOOL, principal: CALLER, keyId: "k1", secret: SECRET, now: NOW })[
      SIGNATURE_META_KEY
    ];
    assert.equal((await v.verify(TOOL, {}, signature, CALLER)).ok, true);
  });

  test("a signature covers its sender: the same signed call sent by another principal is refused", async () => {
    const v = await verifier();
    const signature = sign();
    const stolen = rejection(await v.verify(TOOL, ARGS, signature, "mallory"));
    assert.equal(stolen.reason, "bad_signature");
    assert.match(stolen.message, /caller/);
    // The refusal used no nonce: the genuine sender's call still passes afterwards.
    assert.equal((await v.verify(TOOL, ARGS, signature, CALLER)).ok, true);
  });

  test("the header form carries the same signature", async () => {
    const v = await verifier();
    const headers = signatureHeaders({
      tool: TOOL,
      arguments: ARGS,
      principal: CALLER,
      keyId: "k2",
      secret: "k2-secret-that-is-at-least-32-characters",
      now: NOW,
    });
    assert.deepEqual(Object.keys(headers).sort(), [
      "x-switchboard-key-id",
      "x-switchboard-nonce",
      "x-switchboard-signature",
      "x-switchboard-timestamp",
    ]);
    const fromHeaders = signatureFromHeaders(headers);
    assert.equal(typeof fromHeaders?.timestamp, "number");
    assert.deepEqual(await v.verify(TOOL, ARGS, fromHeaders, CALLER), { ok: true, keyId: "k2" });
    assert.equal(signatureFromHeaders({ "content-type": "application/json" }), undefined);
  });
});

describe("rejections", () => {
  test("tampered arguments, another tool or another secret: bad_signature", async () => {
    const v = await verifier();
    const signature = sign();
    const tampered = rejection(await v.verify(TOOL, { ...ARGS, sql: "drop table users" }, signature, CALLER));
    assert.equal(tampered.reason, "bad_signature");
    assert.match(tampered.message, /^Signature rejected for 'db__query': the signature does not match/);
    assert.equal(rejection(await v.verify("db__execute", ARGS, sign(), CALLER)).reason, "bad_signature");
    assert.equal(
      rejection(await v.verify(TOOL, ARGS, sign({ secret: `${SECRET}x` }), CALLER)).reason,
      "bad_signature",
    );
  });

  test("a timestamp beyond the skew, in the past or the future, is stale; within it, accepted", async () => {
    const v = await verifier();
    const old = rejection(await v.verify(TOOL, ARGS, sign({ now: NOW - 301_000 }), CALLER));
    assert.equal(old.reason, "stale");
    assert.match(old.message, /the timestamp is 301 s old, more than the allowed 300 s/);
    const future = rejection(await v.verify(TOOL, ARGS, sign({ now: NOW + 301_000 }), CALLER));
    assert.equal(future.reason, "stale");
    assert.match(future.message, /301 s in the future/);
    assert.equal((await v.verify(TOOL, ARGS, sign({ now: NOW - 299_000 }), CALLER)).ok, true);
    assert.equal((await v.verify(TOOL, ARGS, sign({ now: NOW + 299_000 }), CALLER)).ok, true);
  });

  test("a replayed nonce is refused, with the message telling the client what to do", async () => {
    const v = await verifier();
    const signature = sign();
    assert.equal((await v.verify(TOOL, ARGS, signature, CALLER)).ok, true);
    const replay = rejection(await v.verify(TOOL, ARGS, signature, CALLER));
    assert.equal(replay.reason, "replayed");
    assert.equal(
      replay.message,
      "Signature rejected for 'db__query': nonce already used (replay). Sign each request with a fresh nonce.",
    );
  });

  test("a nonce is remembered for twice the skew: as long as its timestamp could still pass", async () => {
    let clock = NOW;
    const store = createMemoryStore({ now: () => clock });
    const v = await verifier({ store, now: () => clock });
    const signature = sign({ now: NOW + 300_000 }); // as far in the future as allowed
    assert.equal((await v.verify(TOOL, ARGS, signature, CALLER)).ok, true);
    clock = NOW + 599_000; // still within skew of the timestamp: must still be a replay
    assert.equal(rejection(await v.verify(TOOL, ARGS, signature, CALLER)).reason, "replayed");
    clock = NOW + 601_000; // the nonce may be forgotten now, because the timestamp is stale
    assert.equal(rejection(await v.verify(TOOL, ARGS, signature, CALLER)).reason, "stale");
  });

  test("forged and stale requests do not use up the nonce of a genuine one", async () => {
    const v = await verifier();
    const genuine = sign({ nonce: "shared-nonce-000000000" });
    const forged = {
      ...genuine,
      signature: sign({ nonce: "shared-nonce-000000000", secret: `${SECRET}!` }).signature,
    };
    assert.equal(rejection(await v.verify(TOOL, ARGS, forged, CALLER)).reason, "bad_signature");
    const stale = sign({ nonce: "shared-nonce-000000000", now: NOW - 3_600_000 });
    assert.equal(rejection(await v.verify(TOOL, ARGS, stale, CALLER)).reason, "stale");
    assert.equal((await v.verify(TOOL, ARGS, genuine, CALLER)).ok, true);
  });

  test("nonces are per key: the same nonce under another key is not a replay", async () => {
    const v = await verifier();
    assert.equal((await v.verify(TOOL, ARGS, sign({ nonce: "same-nonce-0000000000" }), CALLER)).ok, true);
    const other = sign({
      nonce: "same-nonce-0000000000",
      keyId: "k2",
      secret: "k2-secret-that-is-at-least-32-characters",
    });
    assert.equal((await v.verify(TOOL, ARGS, other, CALLER)).ok, true);
  });

  test("an unknown key id is refused before any store access", async () => {
    const store = await createStore();
    let locks = 0;
    const counting = Object.assign(Object.create(store), {
      lock: (key: string, ttl: number) => {
        locks++;
        return store.lock(key, ttl);
      },
    }) as Store;
    const v = await verifier({ store: counting });
    const unknown = rejection(await v.verify(TOOL, ARGS, sign({ keyId: "k9" }), CALLER));
    assert.equal(unknown.reason, "unknown_key");
    assert.match(unknown.message, /key id 'k9' is not configured/);
    assert.equal(rejection(await v.verify(TOOL, ARGS, sign({ now: NOW - 900_000 }), CALLER)).reason, "stale");
    assert.equal(locks, 0);
  });

  test("a shared store that is down refuses signed calls unless onStoreError is fail-open", async () => {
    const store = await createStore();
    let healthy = true;
    const shared = Object.assign(Object.create(store), {
      shared: true,
      health: () => (healthy ? { status: "healthy" } : { status: "unhealthy", detail: "Redis is down" }),
      lock: (key: string, ttl: number) => store.lock(key, ttl),
    }) as Store;
    const closed = await verifier({ store: shared });
    assert.equal(
      (await closed.verify(TOOL, ARGS, sign({ nonce: "outage-nonce-00000001" }), CALLER)).ok,
      true,
    );
    healthy = false;
    const refused = rejection(
      await closed.verify(TOOL, ARGS, sign({ nonce: "outage-nonce-00000002" }), CALLER),
    );
    assert.equal(refused.reason, "store_unavailable");
    assert.match(refused.message, /replay could not be ruled out/);
    const open = await verifier({ store: shared, config: { onStoreError: "fail-open" } });
    assert.equal((await open.verify(TOOL, ARGS, sign({ nonce: "outage-nonce-00000003" }), CALLER)).ok, true);
  });

  test("missing and malformed signatures are told apart", async () => {
    const v = await verifier();
    const missing = rejection(await v.verify(TOOL, ARGS, undefined, CALLER));
    assert.equal(missing.reason, "missing");
    assert.match(missing.message, /^Signature required for 'db__query'/);
    const cases: unknown[] = [
      "a string",
      { ...sign(), timestamp: "2025-06-15T00:00:00Z" },
      { ...sign(), timestamp: 1.5 },
      { ...sign(), nonce: "short" },
      { ...sign(), nonce: "has spaces in it and is long" },
      { ...sign(), signature: "not base64url!" },
      { ...sign(), extra: true },
      { keyId: "k1" },
      signatureFromHeaders({ "x-switchboard-key-id": "k1", "x-switchboard-timestamp": "soon" }),
    ];
    for (const raw of cases) {
      const result = rejection(await v.verify(TOOL, ARGS, raw, CALLER));
      assert.equal(result.reason, "malformed", JSON.stringify(raw));
      assert.match(result.message, /^Signature rejected for 'db__query': .+\. Send \{ keyId/);
    }
  });

  test("a signature of the wrong length is a bad signature, not an exception", async () => {
    const v = await verifier();
    for (const signature of ["AA", `${sign().signature}AAAA`, "A".repeat(500)]) {
      const result = rejection(await v.verify(TOOL, ARGS, { ...sign(), signature }, CALLER));
      assert.equal(result.reason, "bad_signature");
    }
  });
});

describe("when a signature is required", () => {
  test("require selects principals (globs or roles) and tools; absent means all", async () => {
    const everyone = await verifier();
    assert.equal(everyone.isRequired({ id: "x", roles: [] }, "any__tool"), true);

    const narrowed = await verifier({
      config: { require: { principals: ["svc-*"], roles: ["automation"], tools: ["db__*"] } },
    });
    const svc: Principal = { id: "svc-etl", roles: [] };
    const robot: Principal = { id: "r2", roles: ["automation"] };
    const human: Principal = { id: "alice", roles: ["analyst"] };
    assert.equal(narrowed.isRequired(svc, "db__query"), true);
    assert.equal(narrowed.isRequired(robot, "db__query"), true);
    assert.equal(narrowed.isRequired(human, "db__query"), false);
    assert.equal(narrowed.isRequired(svc, "search__web"), false);

    const optional = await verifier({ config: { require: { tools: [] } } });
    assert.equal(optional.isRequired(svc, "db__query"), false);
  });

  test("the policy refuses unsigned required calls and bad signatures, and notes the key of good ones", async () => {
    const v = await verifier({ config: { require: { tools: ["db__*"] } } });
    const binding = (exposedName: string) => ({ exposedName, server: "db", tool: { name: "x" } as Tool });
    const ctx = (meta: Record<string, unknown>) =>
      ({ principal: { id: CALLER, roles: [] }, meta, notes: new Map() }) as unknown as CallContext;
    let calls = 0;
    const next = async () => {
      calls++;
      return { content: [] };
    };
    const call = { server: "db", tool: "query", args: ARGS };

    await assert.rejects(signaturePolicy(v, binding(TOOL))(next)(call, ctx({})), (error: unknown) => {
      assert.ok(error instanceof SignatureRejected);
      assert.ok(error instanceof GatewayError);
      assert.equal(error.code, "unauthorized");
      assert.equal(error.reason, "missing");
      assert.equal(jsonRpcCode(error), -32600);
      return true;
    });
    const signed = ctx({ [SIGNATURE_META_KEY]: sign() });
    await signaturePolicy(v, binding(TOOL))(next)(call, signed);
    assert.equal(signed.notes.get(SIGNATURE_NOTE), "k1");
    await assert.rejects(
      signaturePolicy(v, binding(TOOL))(next)(call, signed),
      /nonce already used \(replay\)/,
    );

    // Not required here, so unsigned passes; but a bad signature is still refused.
    await signaturePolicy(v, binding("search__web"))(next)(call, ctx({}));
    await assert.rejects(
      signaturePolicy(v, binding("search__web"))(next)(call, ctx({ [SIGNATURE_META_KEY]: sign() })),
      /does not match/,
    );
    assert.equal(calls, 2);
  });
});

describe("outbound signing", () => {
  test("signs method, url, body hash, timestamp and nonce with the key's secret", () => {
    const body = JSON.stringify({ q: "x" });
    const headers = signOutbound({
      method: "post",
      url: "https://api.example.com/v1/search?q=x",
      body,
      keyId: "k1",
      secret: SECRET,
      now: NOW,
      nonce: "outbound-nonce-000000",
    });
    const payload = canonicalJson({
      method: "POST",
      url: "https://api.example.com/v1/search?q=x",
      bodySha256: createHash("sha256").update(body).digest("hex"),
      timestamp: NOW,
      nonce: "outbound-nonce-000000",
    });
    assert.deepEqual(headers, {
      "x-switchboard-key-id": "k1",
      "x-switchboard-timestamp": String(NOW),
      "x-switchboard-nonce": "outbound-nonce-000000",
      "x-switchboard-signature": createHmac("sha256", SECRET).update(payload).digest("base64url"),
    });
  });
});

describe("config", () => {
  test("secrets of at least 32 characters, unique key ids, skew default 300 s", () => {
    assert.throws(
      () => signingSchema.parse({ keys: [{ id: "a", secret: "short" }] }),
      /at least 32 characters/,
    );
    assert.throws(
      () =>
        signingSchema.parse({
          keys: [
            { id: "a", secret: SECRET },
            { id: "a", secret: SECRET },
          ],
        }),
      /key ids must be unique/,
    );
    const parsed = signingSchema.parse({ keys: [{ id: "a", secret: SECRET }] });
    assert.equal(parsed.maxSkewSec, 300);
    assert.equal(parsed.onStoreError, "fail-closed");
    assert.deepEqual(parsed.require, {});
  });
});
