/**
 * Three Switchboard replicas behind no load balancer at all: the test spreads the calls itself. Each
 * replica is the real CLI, with the same config (one Redis store under a prefix of this run's own)
 * and its own flaky-server backend process, so what one replica's backend saw is counted per process
 * and summed. Clients are 2026-07-28 SDK clients, whose requests any replica can serve.
 */
import assert from "node:assert/strict";
import { after, before, test } from "node:test";
import { writeConfig } from "../support/gateway-process.ts";
import { deleteByPrefix, describeWithRedis, uniquePrefix } from "../support/redis.ts";
import {
  errorCode,
  flakyServer,
  REQUEST_TIMEOUT_MS,
  type Replica,
  sourceOf,
  startReplica,
  textOf,
} from "../support/replicas.ts";

describeWithRedis("three replicas sharing one Redis", (url) => {
  const prefix = uniquePrefix("replicas-e2e");
  const configPath = writeConfig({
    mcpServers: { fx: flakyServer() },
    // Redis stays up here: a command slowed past the 1 s default by a loaded test machine would count
    // as an outage, and fail-open would rightly let each replica use its own buckets meanwhile.
    store: { type: "redis", url, keyPrefix: prefix, commandTimeoutMs: 10_000 },
    toolPolicies: {
      fx__ping: { rateLimit: { scope: "global", capacity: 50, refillPerMinute: 0 } },
      fx__lookup: { cache: { ttlMs: 60_000 } },
      fx__get_user: { cache: { ttlMs: 60_000 } },
      fx__update_user: { invalidates: ["fx__get_user"] },
    },
  });
  let replicas: Replica[] = [];
  const at = (i: number) => () => replicas[i] as Replica;
  const [a, b, c] = [at(0), at(1), at(2)];

  /** Calls of `tool` that reached any replica's backend. */
  const totalBackendCalls = async (tool: string) => {
    const counts = await Promise.all(replicas.map((r) => r.backendCalls()));
    return counts.reduce((sum, calls) => sum + (calls[tool] ?? 0), 0);
  };

  before(async () => {
    replicas = await Promise.all([0, 1, 2].map(() => startReplica(configPath)));
  });

  after(async () => {
    await Promise.allSettled(replicas.map((r) => r.client.close()));
    const codes = await Promise.all(replicas.map((r) => r.gateway.stop()));
    await deleteByPrefix(url, prefix);
    assert.deepEqual(codes, [0, 0, 0], "every replica exits 0 on SIGTERM");
  });

  test("a global limit of 50 with no refill allows exactly 50 of 300 concurrent calls over 3 replicas", async () => {
    const results = await Promise.all(
      Array.from({ length: 300 }, (_, i) => (replicas[i % 3] as Replica).call("fx__ping")),
    );
    const allowed = results.filter((r) => !r.isError);
    assert.equal(allowed.length, 50);
    for (const refused of results.filter((r) => r.isError)) {
      assert.equal(errorCode(refused), "rate_limited", textOf(refused));
    }
    assert.equal(await totalBackendCalls("ping"), 50, "the backends saw exactly the allowed calls");
  });

  test("a result cached through one replica is a hit on another", async () => {
    const first = await a().call("fx__lookup", { key: "cross" });
    assert.equal(first.isError, undefined, textOf(first));
    const onB = await b().call("fx__lookup", { key: "cross" });
    assert.equal(sourceOf(onB), "cache");
    assert.equal(textOf(onB), textOf(first));
    assert.equal((await b().backendCalls()).lookup ?? 0, 0, "B's backend was not called");
    assert.equal(await totalBackendCalls("lookup"), 1);
  });

  test("an invalidating write through one replica is seen by another", async () => {
    await a().call("fx__get_user", { id: "1" });
    assert.equal(sourceOf(await c().call("fx__get_user", { id: "1" })), "cache");
    const callsOnC = (await c().backendCalls()).get_user ?? 0;
    const write = await b().call("fx__update_user", { id: "1", name: "carol" });
    assert.equal(write.isError, undefined, textOf(write));
    const after = await c().call("fx__get_user", { id: "1" });
    assert.notEqual(sourceOf(after), "cache", "the entry B's write invalidated is gone");
    assert.equal((await c().backendCalls()).get_user ?? 0, callsOnC + 1, "C asked its backend again");
  });

  test("a miss made at the same moment on all three replicas reaches a backend once", async () => {
    const before = await totalBackendCalls("lookup");
    const args = { key: "stampede", delayMs: 500 };
    const results = await Promise.all(replicas.map((r) => r.call("fx__lookup", args)));
    assert.equal(await totalBackendCalls("lookup"), before + 1);
    const texts = new Set(results.map(textOf));
    assert.equal(texts.size, 1, `one answer for all: ${[...texts].join(" | ")}`);
    assert.equal(
      results.filter((r) => sourceOf(r) === "cache").length,
      2,
      "two replicas read the third's answer",
    );
  });

  test("a 2025-era session opened on one replica is served by another; an unknown one gets a 404", async () => {
    const headers = { "content-type": "application/json", accept: "application/json, text/event-stream" };
    const opened = await fetch(a().gateway.url, {
      method: "POST",
      headers,
      body: JSON.stringify({
        jsonrpc: "2.0",
        id: 1,
        method: "initialize",
        params: {
          protocolVersion: "2025-06-18",
          capabilities: {},
          clientInfo: { name: "any-replica", version: "1" },
        },
      }),
      signal: AbortSignal.timeout(REQUEST_TIMEOUT_MS),
    });
    await opened.text();
    const session = opened.headers.get("mcp-session-id");
    assert.ok(session, "replica A opened a session");
    const list = (to: Replica, id: string) =>
      fetch(to.gateway.url, {
        method: "POST",
        headers: { ...headers, "mcp-session-id": id, "mcp-protocol-version": "2025-06-18" },
        body: JSON.stringify({ jsonrpc: "2.0", id: 2, method: "tools/list" }),
        signal: AbortSignal.timeout(REQUEST_TIMEOUT_MS),
      });
    const elsewhere = await list(b(), session);
    assert.equal(elsewhere.status, 200, "replica B serves the session replica A opened");
    assert.match(await elsewhere.text(), /fx__ping/);
    const onA = await list(a(), session);
    assert.equal(onA.status, 200, "the replica that opened the session still serves it");
    await onA.text();
    const unknown = await list(c(), "no-such-session");
    assert.equal(unknown.status, 404);
    const body = (await unknown.json()) as { error: { code: number; message: string } };
    assert.equal(body.error.code, -32001);
    assert.match(body.error.message, /not found.*Start a new session with initialize/);
  });
});
