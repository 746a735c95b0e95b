/**
 * Every request kind passes through a chain, not only tool calls: `resources/read`, `prompts/get` and
 * `completion/complete` are measured in /metrics, recorded in the audit log, rate-limited and checked
 * against the access rules like tool calls, and a cached `resources/read` is answered from the cache.
 */
import assert from "node:assert/strict";
import { createHash, randomBytes } from "node:crypto";
import { readFileSync } from "node:fs";
import { dirname, join } from "node:path";
import { after, before, describe, test } from "node:test";
import {
  fixtureServer,
  type RunningGateway,
  startHttpGateway,
  writeConfig,
} from "../support/gateway-process.ts";
import { httpPaths, type PathSession } from "../support/request-paths.ts";

const KEYS = {
  alice: `sk_alice_${randomBytes(12).toString("hex")}`,
  bob: `sk_bob_${randomBytes(12).toString("hex")}`,
};
const sha256 = (text: string) => createHash("sha256").update(text, "utf8").digest("hex");
const READS = 4;

const configPath = writeConfig({
  mcpServers: {
    fx: fixtureServer({
      policies: {
        // Per route: the resource reads of fx share one bucket, the prompt has its own.
        rateLimit: { capacity: READS, refillPerMinute: 1 },
        cache: { ttlMs: 60_000 },
      },
    }),
  },
  auth: { apiKeys: Object.entries(KEYS).map(([id, key]) => ({ id, sha256: sha256(key) })) },
  access: { rules: [{ principals: ["alice"], allow: ["server:fx"] }] },
  audit: { sinks: [{ type: "file", path: "audit.jsonl" }] },
});
const auditPath = join(dirname(configPath), "audit.jsonl");

let gateway: RunningGateway;

before(async () => {
  gateway = await startHttpGateway(configPath);
});

after(async () => {
  await gateway?.stop();
});

const as = (who: keyof typeof KEYS) =>
  httpPaths(() => gateway.url, { authorization: `Bearer ${KEYS[who]}` }).filter((p) => p.era === "2025")[1];

describe("resources/read, prompts/get and completion/complete pass through a chain", () => {
  let alice: PathSession;
  let bob: PathSession;

  before(async () => {
    alice = await (as("alice") as NonNullable<ReturnType<typeof as>>).open();
    bob = await (as("bob") as NonNullable<ReturnType<typeof as>>).open();
  });

  after(async () => {
    await alice?.close();
    await bob?.close();
  });

  test("a repeated resources/read is answered from the cache", async () => {
    const first = await alice.request("resources/read", { uri: "fixture://doc" });
    const second = await alice.request("resources/read", { uri: "fixture://doc" });
    const contents = (r: typeof first) => (r.response.result as { contents: unknown[] }).contents;
    assert.deepEqual(contents(second), contents(first));
    assert.equal(
      (first.response.result?._meta as Record<string, unknown> | undefined)?.["switchboard/source"],
      undefined,
    );
    const meta = (second.response.result?._meta ?? {}) as Record<string, unknown>;
    assert.equal(meta["switchboard/source"], "cache");
  });

  test("prompts/get and completion/complete answer through their chains", async () => {
    const prompt = await alice.request("prompts/get", { name: "fx__greet", arguments: { who: "ada" } });
    assert.match(JSON.stringify(prompt.response.result), /Say hello to ada/);
    const completion = await alice.request("completion/complete", {
      ref: { type: "ref/prompt", name: "fx__greet" },
      argument: { name: "who", value: "b" },
    });
    assert.deepEqual((completion.response.result as { completion: { values: string[] } }).completion.values, [
      "bob",
    ]);
  });

  test("access rules apply: a principal without access is refused, and nothing reaches the backend", async () => {
    for (const [method, params] of [
      ["resources/read", { uri: "fixture://doc" }],
      ["prompts/get", { name: "fx__greet", arguments: { who: "x" } }],
      [
        "completion/complete",
        { ref: { type: "ref/prompt", name: "fx__greet" }, argument: { name: "who", value: "a" } },
      ],
    ] as const) {
      const refused = await bob.request(method, params);
      assert.equal(refused.response.error?.code, -32600, `${method}: ${JSON.stringify(refused.response)}`);
      assert.match(refused.response.error?.message ?? "", /Access denied: principal 'bob'/);
    }
  });

  test("rate limits apply: past the bucket, a read is refused with rate_limited and when to retry", async () => {
    // Two reads above; the bucket holds READS.
    for (let i = 2; i < READS; i++) {
      const ok = await alice.request("resources/read", { uri: "fixture://doc" });
      assert.ok(ok.response.result, JSON.stringify(ok.response));
    }
    const limited = await alice.request("resources/read", { uri: "fixture://doc" });
    assert.equal(limited.response.error?.code, -32000, JSON.stringify(limited.response));
    const data = limited.response.error?.data as { code: string; retryAfterMs: number };
    assert.equal(data.code, "rate_limited");
    assert.ok(data.retryAfterMs > 0);
  });

  test("/metrics counts each kind, the audit log records each kind", async () => {
    const metrics = await (await fetch(new URL("/metrics", gateway.url))).text();
    for (const line of [
      /switchboard_calls_total\{[^}]*tool="resources\/read@fx"[^}]*outcome="ok"[^}]*kind="resources\/read"\} [1-9]/,
      /switchboard_calls_total\{[^}]*tool="resources\/read@fx"[^}]*outcome="rate_limited"[^}]*kind="resources\/read"\} 1/,
      /switchboard_calls_total\{[^}]*tool="fx__greet"[^}]*outcome="ok"[^}]*kind="prompts\/get"\} 1/,
      /switchboard_calls_total\{[^}]*tool="fx__greet"[^}]*outcome="ok"[^}]*kind="completion\/complete"\} 1/,
      /switchboard_calls_total\{[^}]*tool="resources\/read@fx"[^}]*outcome="denied"[^}]*kind="resources\/read"\} 1/,
      /switchboard_cache_events_total\{[^}]*tool="resources\/read@fx"[^}]*outcome="hit"\} [1-9]/,
    ]) {
      assert.match(metrics, line);
    }
    const records = readFileSync(auditPath, "utf8")
      .trim()
      .split("\n")
      .map((l) => JSON.parse(l) as Record<string, unknown>);
    const of = (kind: string) => records.filter((r) => r.kind === kind);
    assert.ok(of("resources/read").some((r) => r.tool === "fixture://doc" && r.source === "cache"));
    assert.ok(of("resources/read").some((r) => r.outcome === "rate_limited"));
    assert.ok(of("resources/read").some((r) => r.principal === "bob" && r.outcome === "denied"));
    assert.ok(of("prompts/get").some((r) => r.tool === "fx__greet" && r.outcome === "ok"));
    assert.ok(of("completion/complete").some((r) => r.tool === "fx__greet" && r.outcome === "ok"));
    assert.ok(
      records.every((r) => r.kind !== "tools/call"),
      "a tool call's record has no kind",
    );
  });
});
