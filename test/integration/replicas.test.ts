/**
 * Gateways as replicas, in process: each a real Gateway with its own store (as the config makes it)
 * and a fake backend, the replicas sharing a Redis (REDIS_URL) under a prefix of their own. What the
 * gateway wires between them: list_changed, shared circuits, store health in the probes and the
 * store's lifecycle. The replicas as real processes are in test/e2e/replicas.e2e.test.ts.
 */
import assert from "node:assert/strict";
import { after, describe, test } from "node:test";
import { validateConfig } from "../../src/config/validate.ts";
import { GatewayError } from "../../src/core/errors.ts";
import {
  type Backend,
  type BackendCatalog,
  type BackendEvents,
  type BackendState,
  type CallToolResult,
  EMPTY_CATALOG,
  type ListChanged,
  type Tool,
} from "../../src/core/types.ts";
import { Gateway } from "../../src/gateway/gateway.ts";
import { silentLogger } from "../../src/observability/logger.ts";
import { unreadiness } from "../../src/server/http/probes.ts";
import { ResilientStore } from "../../src/stores/index.ts";
import { eventually } from "../support/gateway-process.ts";
import { deleteByPrefix, describeWithRedis, uniquePrefix } from "../support/redis.ts";

const tool = (name: string): Tool => ({ name, inputSchema: { type: "object" } });

const errorCode = (result: CallToolResult) =>
  (result._meta?.["switchboard/error"] as { code?: string } | undefined)?.code;

/** A backend whose tools and failures the test sets. */
class FakeBackend implements Backend {
  readonly name = "svc";
  state: BackendState = "starting";
  tools: Tool[] = [tool("get")];
  failing = false;
  calls = 0;
  refreshed: ListChanged[] = [];
  #events: BackendEvents | undefined;

  constructor(readonly canRefresh = false) {
    if (!canRefresh) this.refreshLists = undefined;
  }

  async start(events: BackendEvents): Promise<void> {
    this.#events = events;
    this.state = "up";
    events.state("up");
  }

  catalog(): BackendCatalog {
    return { ...EMPTY_CATALOG, tools: this.tools };
  }

  async callTool(): Promise<CallToolResult> {
    this.calls++;
    if (this.failing) throw new GatewayError("backend_unavailable", "svc is down");
    return { content: [{ type: "text", text: "ok" }] };
  }

  /** The server says its tools changed (as its own list_changed would). */
  changeTools(tools: Tool[]): void {
    this.tools = tools;
    this.#events?.listChanged({ tools: true });
  }

  refreshLists?: (changed: ListChanged) => Promise<void> = async (changed) => {
    this.refreshed.push(changed);
  };

  async readResource(): Promise<never> {
    throw new Error("no resources");
  }

  async getPrompt(): Promise<never> {
    throw new Error("no prompts");
  }

  async health() {
    return { status: "healthy" as const };
  }

  async close(): Promise<void> {
    this.state = "stopped";
  }
}

function gatewayConfig(store: unknown, policies: unknown = {}) {
  return validateConfig(
    {
      mcpServers: { svc: { command: "unused" } },
      store,
      toolPolicies: { svc__get: policies },
    },
    { source: "replicas integration test" },
  );
}

describeWithRedis("gateways sharing a Redis", (url) => {
  const prefix = uniquePrefix("replicas");
  const store = { type: "redis", url, keyPrefix: prefix, reconnect: { initialDelayMs: 10, maxDelayMs: 100 } };
  const gateways: Gateway[] = [];

  const replica = async (backend: FakeBackend, policies: unknown = {}) => {
    const gateway = new Gateway(gatewayConfig(store, policies), silentLogger(), [backend]);
    gateways.push(gateway);
    await gateway.start();
    return gateway;
  };

  after(async () => {
    await Promise.all(gateways.map((g) => g.close()));
    await deleteByPrefix(url, prefix);
  });

  test("a list change on one replica reaches the others' clients, or their backends when they can re-read", async () => {
    const [a, b, c] = [new FakeBackend(), new FakeBackend(), new FakeBackend(true)];
    const [onA, onB, onC] = [await replica(a), await replica(b), await replica(c)];
    const heard = new Map<Gateway, ListChanged[]>([
      [onA, []],
      [onB, []],
      [onC, []],
    ]);
    for (const [gateway, list] of heard) gateway.on("listChanged", (changed) => list.push(changed));
    a.changeTools([tool("get"), tool("put")]);
    assert.deepEqual(heard.get(onA), [{ tools: true, resources: false, prompts: false }]);
    await eventually(() => (heard.get(onB)?.length ?? 0) > 0, 5_000, "replica B to hear the change");
    assert.deepEqual(heard.get(onB), [{ tools: true }]);
    await eventually(() => c.refreshed.length > 0, 5_000, "replica C's backend to re-read its lists");
    assert.deepEqual(c.refreshed, [{ tools: true }]);
    assert.deepEqual(heard.get(onC), [], "C's backend reports a change itself, if there is one");
  });

  test("a shared circuit that opens on one replica refuses calls on another", async () => {
    const policies = { circuitBreaker: { consecutiveFailures: 2, openMs: 60_000, shared: true } };
    const [a, b] = [new FakeBackend(), new FakeBackend()];
    const [onA, onB] = [await replica(a, policies), await replica(b, policies)];
    // B makes its breaker (its chain) before A's circuit opens, so it learns of it by message.
    await onB.callTool("svc__get", {});
    a.failing = true;
    for (let i = 0; i < 2; i++) assert.equal((await onA.callTool("svc__get", {})).isError, true);
    await eventually(() => onB.policies.breakerStates()[0]?.state === "open", 5_000, "B's circuit to open");
    const refused = await onB.callTool("svc__get", {});
    assert.equal(refused.isError, true);
    assert.equal(errorCode(refused), "circuit_open");
    assert.equal(b.calls, 1, "B's backend was not called while the circuit was open");
  });

  test("health reports the store; close closes it", async () => {
    const gateway = await replica(new FakeBackend());
    const report = await gateway.observability.health.report();
    assert.equal(report.status, "healthy");
    assert.equal(report.checks.store?.status, "healthy");
    assert.equal(report.checks.store?.data?.keyPrefix, prefix);
    await gateway.close();
    assert.equal(gateway.store.health().status, "unhealthy");
  });
});

describe("probes with a shared store that cannot be reached", () => {
  const unreachable = { type: "redis", url: "redis://127.0.0.1:1", connectTimeoutMs: 300 };

  test("fail-open: degraded in /healthz, still ready", async (t) => {
    const gateway = new Gateway(gatewayConfig(unreachable), silentLogger(), [new FakeBackend()]);
    t.after(() => gateway.close());
    await gateway.start();
    assert.ok(gateway.store instanceof ResilientStore);
    const report = await gateway.observability.health.report();
    assert.equal(report.status, "degraded");
    assert.match(report.checks.store?.detail ?? "", /unavailable.*Meanwhile .*fail-open/);
    assert.equal(unreadiness(gateway), undefined);
    assert.equal((await gateway.callTool("svc__get", {})).isError, undefined, "calls are served");
  });

  test("fail-closed: not ready, with the reason; rate-limited calls fail with store_unavailable", async (t) => {
    const gateway = new Gateway(
      gatewayConfig(
        { ...unreachable, onStoreError: { rateLimits: "fail-closed" } },
        { rateLimit: { capacity: 10, refillPerSecond: 1 } },
      ),
      silentLogger(),
      [new FakeBackend()],
    );
    t.after(() => gateway.close());
    await gateway.start();
    assert.match(
      unreadiness(gateway) ?? "",
      /^the shared store is unavailable and store\.onStoreError is "fail-closed" for rateLimits: Redis at redis:\/\/127\.0\.0\.1:1 is unavailable/,
    );
    const refused = await gateway.callTool("svc__get", {});
    assert.equal(refused.isError, true);
    assert.equal(errorCode(refused), "store_unavailable");
    const text = refused.content[0]?.type === "text" ? refused.content[0].text : "";
    assert.match(
      text,
      /^"svc__get" was not called: its per-tool limit: burst 10, 1\/s could not be checked\./,
    );
    assert.match(text, /set store\.onStoreError\.rateLimits to "fail-open"/);
  });
});
