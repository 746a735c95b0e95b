/**
 * Redis goes away under load, and comes back. The machine's Redis is shared with other tests, so it
 * is never stopped: the replicas reach it through a TCP proxy on loopback, which the test cuts
 * (every connection dropped, new ones refused) and restores.
 *
 * Two replicas, the real CLI, the same policies: A fails closed (store.onStoreError "fail-closed"),
 * B fails open (the default). While Redis is away A refuses rate-limited calls with a clear
 * store_unavailable error and reports not ready; B serves everything from its own memory and stays
 * ready. Cached tools keep answering on both. Once Redis is back, limits and cache are shared again.
 */
import assert from "node:assert/strict";
import { after, before, test } from "node:test";
import { eventually, writeConfig } from "../support/gateway-process.ts";
import { deleteByPrefix, describeWithRedis, TcpProxy, uniquePrefix } from "../support/redis.ts";
import {
  errorCode,
  flakyServer,
  REQUEST_TIMEOUT_MS,
  type Replica,
  type Result,
  sourceOf,
  startReplica,
  textOf,
} from "../support/replicas.ts";

interface Probe {
  readonly status: number;
  readonly body: {
    status: string;
    reason?: string;
    checks?: { store?: { status: string; detail?: string } };
  };
}

async function probe(replica: Replica, path: "/healthz" | "/readyz"): Promise<Probe> {
  const response = await fetch(new URL(path, replica.gateway.url), {
    signal: AbortSignal.timeout(REQUEST_TIMEOUT_MS),
  });
  return { status: response.status, body: (await response.json()) as Probe["body"] };
}

const storeStatus = async (replica: Replica) => (await probe(replica, "/healthz")).body.checks?.store?.status;

describeWithRedis("Redis unavailable under load", (url) => {
  const prefix = uniquePrefix("redis-outage-e2e");
  let proxy: TcpProxy;
  let failClosed: Replica;
  let failOpen: Replica;

  before(async () => {
    proxy = await TcpProxy.start(url);
    const config = (onStoreError: string) =>
      writeConfig({
        mcpServers: { fx: flakyServer() },
        store: {
          type: "redis",
          url: proxy.urlFor(url),
          keyPrefix: prefix,
          onStoreError,
          commandTimeoutMs: 500,
          // Quick reconnects keep the test short; production defaults are 50 ms doubling to 2 s.
          reconnect: { initialDelayMs: 20, maxDelayMs: 200 },
        },
        toolPolicies: {
          fx__ping: { rateLimit: { scope: "global", capacity: 20, refillPerMinute: 0 } },
          fx__lookup: { cache: { ttlMs: 60_000 } },
        },
      });
    [failClosed, failOpen] = await Promise.all([
      startReplica(config("fail-closed")),
      startReplica(config("fail-open")),
    ]);
  });

  after(async () => {
    const replicas = [failClosed, failOpen].filter(Boolean);
    await Promise.allSettled(replicas.map((r) => r.client.close()));
    const codes = await Promise.all(replicas.map((r) => r.gateway.stop()));
    await proxy?.close();
    await deleteByPrefix(url, prefix);
    assert.deepEqual(codes, [0, 0], "both replicas exit 0 on SIGTERM, after the outage");
  });

  test("calls follow each replica's mode during the outage; sharing resumes after it", async () => {
    for (const replica of [failClosed, failOpen]) {
      assert.equal(await storeStatus(replica), "healthy");
      assert.equal((await probe(replica, "/readyz")).status, 200);
    }

    // Load on both replicas: cached reads, each a miss (a lock, a read and a write in Redis), so
    // that the cut lands on commands in flight.
    let loading = true;
    const outcomes: (Result | Error)[] = [];
    const worker = async (replica: Replica, id: number) => {
      for (let i = 0; loading; i++) {
        outcomes.push(await replica.call("fx__lookup", { key: `load-${id}-${i}` }).catch((e: Error) => e));
      }
    };
    const load = [failClosed, failOpen].flatMap((replica, r) =>
      [0, 1, 2, 3].map((w) => worker(replica, r * 10 + w)),
    );
    await eventually(() => outcomes.length >= 40, 10_000, "load to get going");

    // Store transitions logged from here on belong to this outage (a command slowed by a loaded
    // machine before it may have made a blip of its own, which says nothing about recovery).
    const linesBeforeCut = [failClosed, failOpen].map((replica) => replica.gateway.logs.lines.length);
    proxy.cut();
    await eventually(
      async () =>
        (await storeStatus(failClosed)) === "degraded" && (await storeStatus(failOpen)) === "degraded",
      5_000,
      "both replicas to see Redis gone",
    );
    const atCut = outcomes.length;
    await eventually(() => outcomes.length >= atCut + 40, 10_000, "load to go on during the outage");

    // Fail-closed: a limit that cannot be checked refuses the call, and says why and what to do.
    const refused = await failClosed.call("fx__ping");
    assert.equal(refused.isError, true);
    assert.equal(errorCode(refused), "store_unavailable");
    assert.match(
      textOf(refused),
      /^"fx__ping" was not called: its per-global limit: burst 20, 0\/min could not be checked\./,
    );
    assert.match(textOf(refused), /"fail-closed" for rateLimits/);
    const notReady = await probe(failClosed, "/readyz");
    assert.equal(notReady.status, 503);
    assert.match(
      notReady.body.reason ?? "",
      /shared store is unavailable and store\.onStoreError is "fail-closed" for entries, rateLimits, locks, pubsub: Redis at .* is unavailable/,
    );

    // Fail-open: served from the replica's own memory, limit and cache included; still ready.
    const allowed = await failOpen.call("fx__ping");
    assert.equal(allowed.isError, undefined, textOf(allowed));
    assert.equal((await probe(failOpen, "/readyz")).status, 200);
    const degraded = await probe(failOpen, "/healthz");
    assert.equal(degraded.body.status, "degraded");
    assert.match(
      degraded.body.checks?.store?.detail ?? "",
      /Meanwhile .* use this replica's own memory \(fail-open\)/,
    );
    await failOpen.call("fx__lookup", { key: "local" });
    assert.equal(sourceOf(await failOpen.call("fx__lookup", { key: "local" })), "cache", "a local cache hit");

    loading = false;
    await Promise.all(load);
    const broken = outcomes.filter((o) => o instanceof Error || o.isError);
    assert.deepEqual(
      broken.map((o) => (o instanceof Error ? o.message : textOf(o))),
      [],
      "cached reads never fail for want of Redis, in either mode",
    );
    assert.equal(failClosed.gateway.child.exitCode, null, "A is still running");
    assert.equal(failOpen.gateway.child.exitCode, null, "B is still running");

    proxy.restore();
    await eventually(
      async () =>
        (await storeStatus(failClosed)) === "healthy" && (await storeStatus(failOpen)) === "healthy",
      5_000,
      "both replicas to reconnect",
    );
    assert.equal((await probe(failClosed, "/readyz")).status, 200);

    // Shared again: a result cached through one replica is a hit on the other…
    const first = await failClosed.call("fx__lookup", { key: "after" });
    const lookupsOnB = (await failOpen.backendCalls()).lookup ?? 0;
    const onB = await failOpen.call("fx__lookup", { key: "after" });
    assert.equal(sourceOf(onB), "cache");
    assert.equal(textOf(onB), textOf(first));
    assert.equal((await failOpen.backendCalls()).lookup ?? 0, lookupsOnB);
    // …and the limit is one bucket again: B's local tokens were dropped, A never took any.
    const pings = await Promise.all(
      Array.from({ length: 30 }, (_, i) => (i % 2 ? failOpen : failClosed).call("fx__ping")),
    );
    assert.equal(pings.filter((p) => !p.isError).length, 20);
    for (const p of pings.filter((r) => r.isError)) assert.equal(errorCode(p), "rate_limited", textOf(p));

    // One outage, one recovery: a connection attempt that died during the outage must not take the
    // recovered connection down with it.
    for (const [i, replica] of [failClosed, failOpen].entries()) {
      const transitions = replica.gateway.logs.lines
        .slice(linesBeforeCut[i])
        .map((line) => line.msg ?? "")
        .filter((msg) => /^shared store (unavailable|available again)/.test(msg));
      assert.deepEqual(
        transitions.map((msg) => msg.split(":")[0]),
        ["shared store unavailable", "shared store available again; state is shared again"],
        replica.gateway.logs.tail(),
      );
    }
  });
});
