/**
 * HMAC-signed tool calls through a real gateway process on Streamable HTTP: signatures in `_meta`
 * (SDK v1 client) and in X-Switchboard-* headers (raw JSON-RPC POST), and each way a signature is
 * refused: replayed, stale, tampered, unsigned. Then replay protection across two replicas that share
 * one Redis: a nonce spent on replica A is refused on replica B.
 *
 * Clients sign with the exported helpers of src/security/signing.ts, as a real client would.
 */
import assert from "node:assert/strict";
import { after, before, describe, test } from "node:test";
import type { Client } from "@modelcontextprotocol/sdk/client/index.js";
import {
  SIGNATURE_META_KEY,
  type SignInput,
  signatureHeaders,
  signToolCall,
} from "../../src/security/signing.ts";
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
  type ToolResult,
  textOf,
} from "../support/mcp-client.ts";
import { deleteByPrefix, rawClient, uniquePrefix } from "../support/redis.ts";
import { describeWithService, REDIS } from "../support/services.ts";

/** No inbound auth here: every call comes from the anonymous principal, and is signed as from it. */
const CALLER = "anonymous";
const KEY_ID = "client-2025";
const SECRET = "s3cret-for-e2e-tests-0123456789abcdef";
const NEXT_KEY_ID = "client-2026";
const NEXT_SECRET = "another-secret-for-key-rotation-0123456789";
const MAX_SKEW_SEC = 30;
const REQUEST_TIMEOUT_MS = 10_000;

const SIGNING = {
  keys: [
    { id: KEY_ID, secret: SECRET },
    { id: NEXT_KEY_ID, secret: NEXT_SECRET },
  ],
  maxSkewSec: MAX_SKEW_SEC,
  require: { tools: ["fx__*"] },
};

const refusalOf = (result: ToolResult) =>
  result._meta?.["switchboard/error"] as { code?: string; reason?: string; tool?: string } | undefined;

type Signed = ReturnType<typeof signToolCall>;

function sign(tool: string, args: Record<string, unknown>, extra: Partial<SignInput> = {}): Signed {
  return signToolCall({ tool, arguments: args, principal: CALLER, keyId: KEY_ID, secret: SECRET, ...extra });
}

const connect = (url: string, name = "signing-e2e") => connectHttpClient(url, { name });

async function call(
  client: Client,
  name: string,
  args: Record<string, unknown>,
  meta?: Record<string, unknown>,
): Promise<ToolResult> {
  return (await client.callTool({ name, arguments: args, ...(meta ? { _meta: meta } : {}) }, undefined, {
    timeout: REQUEST_TIMEOUT_MS,
  })) as ToolResult;
}

/** Asserts a call was refused as an isError result, for `reason`, with a message matching `text`. */
function assertRefused(result: ToolResult, reason: string, text: RegExp): void {
  assert.equal(result.isError, true, `expected a refusal, got ${JSON.stringify(result)}`);
  assert.equal(refusalOf(result)?.code, "unauthorized", JSON.stringify(result._meta));
  assert.equal(refusalOf(result)?.reason, reason, textOf(result));
  assert.match(textOf(result), text);
}

/** Calls that reached the fixture backend so far (fx__stats must be signed too). */
async function backendCalls(client: Client): Promise<number> {
  const stats = await call(client, "fx__stats", {}, sign("fx__stats", {}));
  assert.equal(stats.isError, undefined, textOf(stats));
  return stats.structuredContent?.calls as number;
}

describe("signed tool calls on one gateway", () => {
  let gateway: RunningGateway;
  let client: Client;

  before(async () => {
    gateway = await startHttpGateway(writeConfig({ mcpServers: { fx: fixtureServer() }, signing: SIGNING }));
    client = await connect(gateway.url);
  });

  after(async () => {
    await client?.close();
    const code = await gateway?.stop();
    assert.equal(code, 0, `the gateway exits 0 on SIGTERM:\n${gateway?.logs.tail()}`);
  });

  async function post(body: unknown, headers: Record<string, string>) {
    const answer = await postMcp(gateway.url, JSON.stringify(body), headers, REQUEST_TIMEOUT_MS);
    return {
      status: answer.status,
      message: jsonRpcMessage(answer) as { result?: ToolResult; error?: unknown },
    };
  }

  const toolCall = (id: number, name: string, args: Record<string, unknown>) => ({
    jsonrpc: "2.0",
    id,
    method: "tools/call",
    params: { name, arguments: args },
  });

  test("a correctly signed call passes, whatever the key order of its arguments, with either key", async () => {
    const args = { message: "signed", note: { zeta: 1, alpha: [true, null, "x"] } };
    const passed = await call(client, "fx__echo", args, sign("fx__echo", args));
    assert.equal(passed.isError, undefined, textOf(passed));
    assert.equal(textOf(passed), "signed");

    // Canonical JSON: a signature over one key order holds for the same arguments in another.
    const reordered = { note: { alpha: [true, null, "x"], zeta: 1 }, message: "reordered" };
    const signedInOrder = sign("fx__echo", {
      message: "reordered",
      note: { zeta: 1, alpha: [true, null, "x"] },
    });
    assert.equal(textOf(await call(client, "fx__echo", reordered, signedInOrder)), "reordered");

    // Key rotation: the second configured key signs as well.
    const rotated = await call(
      client,
      "fx__echo",
      { message: "new key" },
      signToolCall({
        tool: "fx__echo",
        arguments: { message: "new key" },
        principal: CALLER,
        keyId: NEXT_KEY_ID,
        secret: NEXT_SECRET,
      }),
    );
    assert.equal(textOf(rotated), "new key");
  });

  test("a call signed in X-Switchboard-* headers passes; traceparent reaches the call's _meta, the signature does not", async () => {
    const traceparent = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
    const headers = signatureHeaders({
      tool: "fx__meta",
      arguments: {},
      principal: CALLER,
      keyId: KEY_ID,
      secret: SECRET,
    });
    const answer = await post(toolCall(7, "fx__meta", {}), { ...headers, traceparent });
    assert.equal(answer.status, 200);
    const result = answer.message.result as ToolResult;
    assert.ok(result, JSON.stringify(answer.message));
    assert.equal(result.isError, undefined, textOf(result));
    const meta = (result.structuredContent as { meta: Record<string, unknown> }).meta;
    assert.equal(meta.traceparent, traceparent, "traceparent travels to the backend");
    assert.equal(meta[SIGNATURE_META_KEY], undefined, "the gateway's own signature stays with the gateway");

    // The same headers again are a replay, and a header signature over other arguments is tampered.
    const replay = await post(toolCall(8, "fx__meta", {}), headers);
    assertRefused(replay.message.result as ToolResult, "replayed", /nonce already used \(replay\)/);
    const echoHeaders = signatureHeaders({
      tool: "fx__echo",
      arguments: { message: "signed" },
      principal: CALLER,
      keyId: KEY_ID,
      secret: SECRET,
    });
    const tampered = await post(toolCall(9, "fx__echo", { message: "changed" }), echoHeaders);
    assertRefused(tampered.message.result as ToolResult, "bad_signature", /signature does not match/);
    const good = await post(toolCall(10, "fx__echo", { message: "signed" }), echoHeaders);
    assert.equal(
      textOf(good.message.result as ToolResult),
      "signed",
      "the tampered try did not spend the nonce",
    );
  });

  test("a replayed call (the same signed _meta twice) is refused and never reaches the backend", async () => {
    const args = { message: "once" };
    const signed = sign("fx__echo", args);
    const first = await call(client, "fx__echo", args, signed);
    assert.equal(textOf(first), "once");
    const before = await backendCalls(client);
    const replay = await call(client, "fx__echo", args, signed);
    assertRefused(
      replay,
      "replayed",
      /^Signature rejected for 'fx__echo': nonce already used \(replay\)\. Sign each request with a fresh nonce\.$/,
    );
    assert.equal(await backendCalls(client), before, "the replay did not reach the backend");
  });

  test("a stale signature (older than maxSkewSec) or one from the future is refused, saying by how much", async () => {
    const args = { message: "late" };
    const stale = await call(client, "fx__echo", args, sign("fx__echo", args, { now: Date.now() - 90_000 }));
    assertRefused(
      stale,
      "stale",
      new RegExp(
        `^Signature rejected for 'fx__echo': the timestamp is 9\\d s old, more than the allowed ${MAX_SKEW_SEC} s\\. ` +
          "Sign each request when sending it, and check the client's clock\\.$",
      ),
    );
    const future = await call(
      client,
      "fx__echo",
      args,
      sign("fx__echo", args, { now: Date.now() + 120_000 }),
    );
    assertRefused(future, "stale", new RegExp(`in the future, more than the allowed ${MAX_SKEW_SEC} s`));
    // Within the skew is fine.
    const recent = await call(client, "fx__echo", args, sign("fx__echo", args, { now: Date.now() - 10_000 }));
    assert.equal(textOf(recent), "late");
  });

  test("a tampered call (arguments or tool changed after signing, or a wrong secret) is refused", async () => {
    const signed = sign("fx__echo", { message: "pay 10" });
    const before = await backendCalls(client);
    const changedArgs = await call(client, "fx__echo", { message: "pay 1000" }, signed);
    assertRefused(
      changedArgs,
      "bad_signature",
      /^Signature rejected for 'fx__echo': the signature does not match the tool name, arguments, caller, timestamp and nonce\./,
    );
    const addedArg = await call(client, "fx__echo", { message: "pay 10", to: "mallory" }, signed);
    assertRefused(addedArg, "bad_signature", /signature does not match/);
    const otherTool = await call(
      client,
      "fx__fail",
      { message: "pay 10" },
      sign("fx__echo", { message: "pay 10" }),
    );
    assertRefused(
      otherTool,
      "bad_signature",
      /^Signature rejected for 'fx__fail': the signature does not match/,
    );
    const wrongSecret = await call(
      client,
      "fx__echo",
      { message: "pay 10" },
      sign("fx__echo", { message: "pay 10" }, { secret: "not-the-secret-but-long-enough-0123456789" }),
    );
    assertRefused(wrongSecret, "bad_signature", /signature does not match/);
    const unknownKey = await call(
      client,
      "fx__echo",
      { message: "pay 10" },
      sign("fx__echo", { message: "pay 10" }, { keyId: "retired" }),
    );
    assertRefused(unknownKey, "unknown_key", /key id 'retired' is not configured/);
    assert.equal(await backendCalls(client), before, "no tampered call reached the backend");

    // The forgeries did not spend the genuine call's nonce: it still passes, once.
    assert.equal(textOf(await call(client, "fx__echo", { message: "pay 10" }, signed)), "pay 10");
  });

  test("an unsigned call to a tool that requires a signature is refused; one that does not require it passes", async () => {
    const unsigned = await call(client, "fx__echo", { message: "no signature" });
    assertRefused(
      unsigned,
      "missing",
      /^Signature required for 'fx__echo': the call carries no _meta\["switchboard\/signature"\] \(nor X-Switchboard-\* headers\)\./,
    );
    const malformed = await call(
      client,
      "fx__echo",
      { message: "half" },
      { [SIGNATURE_META_KEY]: { keyId: KEY_ID, nonce: "short" } },
    );
    assertRefused(malformed, "malformed", /timestamp is missing; nonce must be 16 to 128 characters/);

    // switchboard__health is outside require.tools: unsigned is fine…
    const health = await call(client, "switchboard__health", {});
    assert.equal(health.isError, undefined, textOf(health));
    // …but a signature that is present is verified all the same.
    const badlySigned = await call(client, "switchboard__health", {}, sign("fx__echo", {}));
    assertRefused(badlySigned, "bad_signature", /^Signature rejected for 'switchboard__health'/);
  });
});

describeWithService(REDIS, "replay protection across two replicas sharing Redis", (url) => {
  const prefix = uniquePrefix("signing-e2e");
  let replicas: { gateway: RunningGateway; client: Client }[] = [];

  before(async () => {
    const config = writeConfig({
      mcpServers: { fx: fixtureServer() },
      store: { type: "redis", url, keyPrefix: prefix },
      signing: SIGNING,
    });
    replicas = await Promise.all(
      ["a", "b"].map(async (name) => {
        const gateway = await startHttpGateway(config);
        await gateway.logs.waitFor((l) => l.msg === "shared store connected", 10_000, "Redis to connect");
        return { gateway, client: await connect(gateway.url, `replica-${name}`) };
      }),
    );
  });

  after(async () => {
    await Promise.allSettled(replicas.map((r) => r.client.close()));
    const codes = await Promise.all(replicas.map((r) => r.gateway.stop()));
    await deleteByPrefix(url, prefix);
    assert.deepEqual(codes, [0, 0], "both replicas exit 0 on SIGTERM");
  });

  test("a signed call accepted by replica A is refused as a replay on replica B, and the other way round", async () => {
    const [a, b] = replicas as [(typeof replicas)[0], (typeof replicas)[0]];
    assert.notEqual(a.gateway.url, b.gateway.url, "two distinct gateway processes");

    const args = { message: "once across replicas" };
    const signed = sign("fx__echo", args);
    const onA = await call(a.client, "fx__echo", args, signed);
    assert.equal(onA.isError, undefined, textOf(onA));
    assert.equal(textOf(onA), "once across replicas");
    const onB = await call(b.client, "fx__echo", args, signed);
    assertRefused(onB, "replayed", /^Signature rejected for 'fx__echo': nonce already used \(replay\)/);

    const other = sign("fx__echo", { message: "b first" });
    assert.equal(textOf(await call(b.client, "fx__echo", { message: "b first" }, other)), "b first");
    assertRefused(await call(a.client, "fx__echo", { message: "b first" }, other), "replayed", /replay/);

    // The nonce is kept in Redis under this run's prefix, for twice the allowed skew at most.
    const nonce = signed[SIGNATURE_META_KEY].nonce;
    const redis = await rawClient(url);
    try {
      const pattern = `${prefix.replace(/[*?[\]\\]/g, "\\$&")}*${nonce}*`;
      const keys: string[] = [];
      let cursor = "0";
      do {
        const [next, found] = await redis.scan(cursor, "MATCH", pattern, "COUNT", 1000);
        cursor = next;
        keys.push(...found);
      } while (cursor !== "0");
      assert.equal(keys.length, 1, `one key for the nonce under ${prefix}: ${keys.join(", ")}`);
      const ttl = await redis.pttl(keys[0] as string);
      assert.ok(
        ttl > 0 && ttl <= 2 * MAX_SKEW_SEC * 1000,
        `the nonce expires within 2 × maxSkewSec (${ttl} ms)`,
      );
    } finally {
      redis.disconnect();
    }
  });
});
