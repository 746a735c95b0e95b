/**
 * A server's cached results are dropped when its definitions changed, and only then: the hash of
 * what it offers is recorded in the store, so a server (or a replica) that comes up with the same
 * definitions keeps them. Two `ServerDefinitions` over one memory store stand in for two replicas
 * over one Redis.
 */
import assert from "node:assert/strict";
import { describe, test } from "node:test";
import type { BackendCatalog, Store } from "../../../src/core/types.ts";
import {
  definitionsHash,
  definitionsKey,
  ServerDefinitions,
} from "../../../src/gateway/server-definitions.ts";
import { silentLogger } from "../../../src/observability/logger.ts";
import { MemoryStore } from "../../../src/stores/memory.ts";

const tool = (name: string, description = `the ${name} tool`) => ({
  name,
  description,
  inputSchema: { type: "object" as const },
});

const catalog = (tools: ReturnType<typeof tool>[]): BackendCatalog => ({
  tools,
  resources: [{ uri: "file:///a", name: "a" }],
  resourceTemplates: [],
  prompts: [{ name: "p" }],
});

function replica(store: Store) {
  const dropped: string[] = [];
  const definitions = new ServerDefinitions({
    store,
    logger: silentLogger(),
    invalidate: async (server) => {
      dropped.push(server);
    },
  });
  return { definitions, dropped };
}

describe("server definitions", () => {
  test("the first sight records them; the same again drops nothing, on this replica or another", async () => {
    const store = new MemoryStore();
    const one = replica(store);
    assert.equal(await one.definitions.seen("db", catalog([tool("query"), tool("list")])), true);
    assert.deepEqual(one.dropped, ["db"], "nothing was recorded: what is cached cannot be trusted");
    assert.equal(store.get(definitionsKey("db")), definitionsHash(catalog([tool("query"), tool("list")])));

    assert.equal(await one.definitions.seen("db", catalog([tool("query"), tool("list")])), false);
    const two = replica(store);
    assert.equal(
      await two.definitions.seen("db", catalog([tool("list"), tool("query")])),
      false,
      "another replica, the same tools in another order",
    );
    assert.deepEqual(two.dropped, []);
  });

  test("a changed tool list or description drops the server's results once, for every replica", async () => {
    const store = new MemoryStore();
    const [one, two] = [replica(store), replica(store)];
    await one.definitions.seen("db", catalog([tool("query")]));
    assert.equal(await two.definitions.seen("db", catalog([tool("query"), tool("explain")])), true);
    assert.equal(await one.definitions.seen("db", catalog([tool("query"), tool("explain")])), false);
    assert.equal(
      await one.definitions.seen("db", catalog([tool("query", "new words"), tool("explain")])),
      true,
    );
    assert.deepEqual([one.dropped, two.dropped], [["db", "db"], ["db"]]);
    assert.equal(await one.definitions.seen("crm", catalog([tool("query")])), true, "per server");
  });

  test("a store that fails drops the results: results cached under other definitions must not be served", async () => {
    const store = new MemoryStore();
    const { definitions, dropped } = replica(store);
    await definitions.seen("db", catalog([tool("query")]));
    store.get = () => {
      throw new Error("store down");
    };
    assert.equal(await definitions.seen("db", catalog([tool("query")])), true);
    assert.deepEqual(dropped, ["db", "db"]);
  });

  test("comparisons of one server run one at a time", async () => {
    const store = new MemoryStore();
    const { definitions, dropped } = replica(store);
    const results = await Promise.all([
      definitions.seen("db", catalog([tool("a")])),
      definitions.seen("db", catalog([tool("a")])),
      definitions.seen("db", catalog([tool("b")])),
      definitions.seen("db", catalog([tool("b")])),
    ]);
    assert.deepEqual(results, [true, false, true, false]);
    assert.deepEqual(dropped, ["db", "db"]);
  });
});
