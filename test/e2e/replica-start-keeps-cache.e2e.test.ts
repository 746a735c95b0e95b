/**
 * A replica that starts does not empty the cache the replicas share: its servers come up with the
 * definitions the others already recorded in Redis, so nothing is dropped. A replica whose server
 * comes up with other definitions (a new version with another tool list) drops that server's cached
 * results for every replica. The real CLI, one Redis under a prefix of this run's own; what reached
 * a backend is counted by the backend process itself.
 */
import assert from "node:assert/strict";
import { after, test } from "node:test";
import {
  fixtureServer,
  type RunningGateway,
  startHttpGateway,
  writeConfigRemovedAfterSuite,
} from "../support/gateway-process.ts";
import { deleteByPrefix, describeWithRedis, uniquePrefix } from "../support/redis.ts";
import { flakyServer, type Replica, sourceOf, startReplica, textOf } from "../support/replicas.ts";

describeWithRedis("a replica starting keeps the shared cache", (url) => {
  const prefix = uniquePrefix("replica-start-cache");
  const writeConfig = writeConfigRemovedAfterSuite();
  const shared = {
    store: { type: "redis", url, keyPrefix: prefix },
    toolPolicies: { fx__lookup: { cache: { ttlMs: 600_000 } } },
  };
  const sameDefinitions = writeConfig({ mcpServers: { fx: flakyServer() }, ...shared });
  // The same server name, another server behind it: another tool list.
  const otherDefinitions = writeConfig({ mcpServers: { fx: fixtureServer() }, ...shared });
  const replicas: Replica[] = [];
  const gateways: RunningGateway[] = [];

  after(async () => {
    await Promise.allSettled(replicas.map((r) => r.client.close()));
    const codes = await Promise.all([...replicas.map((r) => r.gateway), ...gateways].map((g) => g.stop()));
    await deleteByPrefix(url, prefix);
    assert.ok(
      codes.every((code) => code === 0),
      `every replica exits 0 on SIGTERM: ${codes}`,
    );
  });

  /** Resolves once the gateway has compared fx's definitions with the recorded ones. */
  const compared = (gateway: RunningGateway, outcome: "unchanged" | "changed") =>
    gateway.logs.waitFor(
      (l) => l.server === "fx" && l.msg === `server definitions ${outcome}`,
      30_000,
      `fx's definitions to be found ${outcome}`,
    );

  test("a second replica with the same definitions keeps what the first cached; other definitions drop it", async () => {
    const first = await startReplica(sameDefinitions);
    replicas.push(first);
    const warmed = await first.call("fx__lookup", { key: "warm" });
    assert.equal(warmed.isError, undefined, textOf(warmed));
    assert.notEqual(sourceOf(warmed), "cache");
    assert.equal((await first.backendCalls()).lookup, 1);

    const second = await startReplica(sameDefinitions);
    replicas.push(second);
    await compared(second.gateway, "unchanged");
    const onFirst = await first.call("fx__lookup", { key: "warm" });
    assert.equal(sourceOf(onFirst), "cache", "still cached after the second replica started");
    assert.equal(textOf(onFirst), textOf(warmed));
    const onSecond = await second.call("fx__lookup", { key: "warm" });
    assert.equal(sourceOf(onSecond), "cache", "and a hit on the new replica");
    assert.equal((await first.backendCalls()).lookup, 1, "no backend saw the call again");
    assert.equal((await second.backendCalls()).lookup ?? 0, 0);

    const changed = await startHttpGateway(otherDefinitions);
    gateways.push(changed);
    await compared(changed, "changed");
    const afterChange = await first.call("fx__lookup", { key: "warm" });
    assert.notEqual(sourceOf(afterChange), "cache", "the definitions changed: the cached result went");
    assert.equal((await first.backendCalls()).lookup, 2, "the first replica asked its backend again");
  });
});
