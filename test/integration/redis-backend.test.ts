/**
 * The Redis backend against the real Redis from REDIS_URL, through the Backend interface: every read
 * tool (and its limits), writes refused in read-only mode, an allowlisted write in write mode, a
 * write that is not on the allowlist, keyPrefix containment (including a prefix full of glob
 * characters), health, and that a failing connection never shows the password.
 *
 * Every key lives under a prefix of this run's own, deleted at the end.
 */
import assert from "node:assert/strict";
import { randomBytes } from "node:crypto";
import { after, before, test } from "node:test";
import { Ajv2020 } from "ajv/dist/2020.js";
import type { Redis } from "ioredis";
import { createRedisBackend, type RedisBackend } from "../../src/backends/redis/backend.ts";
import { type RedisBackendInput, redisBackendSchema } from "../../src/backends/redis/config.ts";
import { GatewayError } from "../../src/core/errors.ts";
import { silentLogger } from "../../src/observability/logger.ts";
import { context, recorder, textOf } from "../support/backend-harness.ts";
import { eventually } from "../support/gateway-process.ts";
import { deleteByPrefix, rawClient, TcpProxy } from "../support/redis.ts";
import { describeWithService, REDIS, uniqueName } from "../support/services.ts";

const ajv = new Ajv2020({ strict: false });

describeWithService(REDIS, "Redis backend", (url) => {
  const root = `${uniqueName("redis_backend")}:`;
  const prefix = `${root}main:`;
  const open: RedisBackend[] = [];
  let raw: Redis;

  const backend = async (overrides: Partial<Omit<RedisBackendInput, "type" | "url">> = {}) => {
    const config = redisBackendSchema.parse({ type: "redis", url, keyPrefix: prefix, ...overrides });
    const created = createRedisBackend("cache", config, silentLogger());
    open.push(created);
    await created.start(recorder().events);
    assert.equal(created.state, "up", `the backend should be up: ${created.lastError}`);
    return created;
  };

  /** A successful call whose structuredContent matches the tool's outputSchema. */
  const ok = async (b: RedisBackend, tool: string, args: Record<string, unknown>) => {
    const result = await b.callTool({ server: "cache", tool, args }, context());
    assert.notEqual(result.isError, true, `expected success, got: ${textOf(result)}`);
    const schema = b.catalog().tools.find((t) => t.name === tool)?.outputSchema;
    assert.ok(schema, `tool ${tool} declares an outputSchema`);
    const validate = ajv.compile(schema);
    assert.ok(validate(result.structuredContent), `${tool}: ${ajv.errorsText(validate.errors)}`);
    return result.structuredContent as Record<string, unknown>;
  };

  before(async () => {
    raw = await rawClient(url);
    const k = (name: string) => prefix + name;
    await raw
      .multi()
      .set(k("s"), "hello")
      .set(k("big"), "x".repeat(100))
      .hset(k("h"), { a: "1", b: "2" })
      .hset(k("bighash"), Object.fromEntries(Array.from({ length: 10 }, (_, i) => [`f${i}`, String(i)])))
      .rpush(k("l"), "a", "b", "c", "d", "e")
      .sadd(k("st"), "x", "y", "z")
      .sadd(k("bigset"), ...Array.from({ length: 10 }, (_, i) => `m${i}`))
      .zadd(k("z"), 1, "a", 2, "b", 3, "c")
      .set(k("t"), "temp", "EX", 100)
      .exec();
    const many = raw.pipeline();
    for (let i = 0; i < 25; i++) many.set(k(`k:${i}`), String(i));
    await many.exec();
  });

  after(async () => {
    await Promise.all(open.map((b) => b.close()));
    await deleteByPrefix(url, root);
    raw.disconnect();
  });

  test("read tools: get, mget, hgetall, lrange, smembers, zrange, ttl, type", async () => {
    const cache = await backend();
    assert.deepEqual(await ok(cache, "get", { key: "s" }), { key: "s", value: "hello", truncated: false });
    assert.deepEqual(await ok(cache, "get", { key: "missing" }), {
      key: "missing",
      value: null,
      truncated: false,
    });
    assert.deepEqual(await ok(cache, "mget", { keys: ["s", "missing", "h"] }), {
      values: [
        { key: "s", value: "hello" },
        { key: "missing", value: null },
        { key: "h", value: null },
      ],
      truncated: false,
    });
    assert.deepEqual(await ok(cache, "hgetall", { key: "h" }), {
      key: "h",
      size: 2,
      fields: { a: "1", b: "2" },
      truncated: false,
    });
    assert.deepEqual(await ok(cache, "lrange", { key: "l", start: 1, stop: -2 }), {
      key: "l",
      length: 5,
      start: 1,
      items: ["b", "c", "d"],
      truncated: false,
    });
    const set = await ok(cache, "smembers", { key: "st" });
    assert.deepEqual((set.members as string[]).sort(), ["x", "y", "z"]);
    assert.deepEqual(await ok(cache, "zrange", { key: "z", withScores: true }), {
      key: "z",
      size: 3,
      start: 0,
      members: [
        { member: "a", score: 1 },
        { member: "b", score: 2 },
        { member: "c", score: 3 },
      ],
      truncated: false,
    });
    assert.deepEqual((await ok(cache, "zrange", { key: "z", start: 0, stop: 0, rev: true })).members, ["c"]);
    const ttl = await ok(cache, "ttl", { key: "t" });
    assert.equal(ttl.exists, true);
    assert.equal(ttl.expires, true);
    assert.ok((ttl.ttlSeconds as number) > 0 && (ttl.ttlSeconds as number) <= 100);
    assert.deepEqual(await ok(cache, "ttl", { key: "s" }), {
      key: "s",
      exists: true,
      expires: false,
      ttlSeconds: null,
    });
    assert.equal((await ok(cache, "ttl", { key: "missing" })).exists, false);
    assert.equal((await ok(cache, "type", { key: "h" })).type, "hash");
    assert.equal((await ok(cache, "type", { key: "missing" })).type, "none");

    const wrong = await cache.callTool({ server: "cache", tool: "get", args: { key: "h" } }, context());
    assert.equal(wrong.isError, true);
    assert.match(textOf(wrong), /WRONGTYPE.*type tool.*hash: hgetall/s);
  });

  test("read tools stay within maxItems and maxValueBytes, and say so", async () => {
    const cache = await backend({ maxItems: 3, maxValueBytes: 10 });
    const big = await ok(cache, "get", { key: "big" });
    assert.deepEqual(big, { key: "big", value: "x".repeat(10), truncated: true });
    const hash = await ok(cache, "hgetall", { key: "bighash" });
    assert.equal(Object.keys(hash.fields as object).length, 3);
    assert.equal(hash.size, 10);
    assert.equal(hash.truncated, true);
    const list = await ok(cache, "lrange", { key: "l" });
    assert.deepEqual(list.items, ["a", "b", "c"]);
    assert.equal(list.truncated, true);
    const set = await ok(cache, "smembers", { key: "bigset" });
    assert.equal((set.members as string[]).length, 3);
    assert.equal(set.truncated, true);
    const zset = await ok(cache, "zrange", { key: "z", start: -3 });
    assert.equal(zset.truncated, false);
    const result = await cache.callTool({ server: "cache", tool: "lrange", args: { key: "l" } }, context());
    assert.match(textOf(result), /Truncated: .*maxItems/);
    await assert.rejects(
      cache.callTool({ server: "cache", tool: "mget", args: { keys: ["a", "b", "c", "d"] } }, context()),
      { code: "invalid_arguments" },
    );
  });

  test("scan pages through every key, within the prefix", async () => {
    const cache = await backend();
    const seen: string[] = [];
    let cursor = "0";
    let pages = 0;
    do {
      const page = await ok(cache, "scan", { cursor, match: "k:*", count: 10 });
      seen.push(...(page.keys as string[]));
      cursor = page.cursor as string;
      pages++;
      assert.ok(pages < 100, "scan finishes");
    } while (cursor !== "0");
    assert.deepEqual([...new Set(seen)].sort(), Array.from({ length: 25 }, (_, i) => `k:${i}`).sort());
    const hashes = await ok(cache, "scan", { match: "*", type: "hash", count: 1000 });
    assert.deepEqual((hashes.keys as string[]).sort(), ["bighash", "h"]);
  });

  test("read-only mode refuses writes: no write tools, and calling one says why", async () => {
    const cache = await backend();
    const names = cache.catalog().tools.map((t) => t.name);
    assert.deepEqual(names, [
      "get",
      "mget",
      "hgetall",
      "lrange",
      "smembers",
      "zrange",
      "scan",
      "ttl",
      "type",
    ]);
    for (const tool of cache.catalog().tools) assert.equal(tool.annotations?.readOnlyHint, true, tool.name);
    await assert.rejects(
      cache.callTool({ server: "cache", tool: "set", args: { key: "s", value: "changed" } }, context()),
      (error: unknown) => {
        assert.ok(error instanceof GatewayError);
        assert.equal(error.code, "unknown_tool");
        assert.match(error.message, /read-only.*readOnly: false.*allowCommands/);
        return true;
      },
    );
    assert.equal(await raw.get(`${prefix}s`), "hello");
    const config = redisBackendSchema.safeParse({ type: "redis", url, allowCommands: ["set"] });
    assert.equal(config.success, false, "allowCommands without readOnly: false is a config error");
    assert.match(JSON.stringify(config.error?.issues), /readOnly: false/);
  });

  test("write mode: allowlisted commands work, others are refused", async () => {
    const cache = await backend({ readOnly: false, allowCommands: ["set", "del", "sadd"] });
    const tools = new Map(cache.catalog().tools.map((t) => [t.name, t]));
    assert.equal(tools.get("del")?.annotations?.destructiveHint, true);
    assert.equal(tools.get("sadd")?.annotations?.destructiveHint, false);
    assert.equal(tools.get("get")?.annotations?.readOnlyHint, true);
    assert.equal(tools.has("hset"), false);

    assert.deepEqual(await ok(cache, "set", { key: "w", value: "1", ttlSeconds: 60 }), {
      key: "w",
      written: true,
    });
    assert.equal(await raw.get(`${prefix}w`), "1");
    assert.ok((await raw.ttl(`${prefix}w`)) > 0);
    assert.deepEqual(await ok(cache, "set", { key: "w", value: "2", only: "nx" }), {
      key: "w",
      written: false,
    });
    assert.equal(await raw.get(`${prefix}w`), "1");
    assert.deepEqual(await ok(cache, "sadd", { key: "ws", members: ["a", "b", "a"] }), {
      key: "ws",
      added: 2,
    });
    assert.deepEqual(await ok(cache, "del", { keys: ["w", "ws", "nothing"] }), { deleted: 2 });
    assert.equal(await raw.exists(`${prefix}w`), 0);

    await assert.rejects(
      cache.callTool({ server: "cache", tool: "hset", args: { key: "h", fields: { a: "x" } } }, context()),
      (error: unknown) => {
        assert.ok(error instanceof GatewayError);
        assert.equal(error.code, "unknown_tool");
        assert.match(error.message, /not in this backend's allowCommands/);
        return true;
      },
    );
    assert.equal(await raw.hget(`${prefix}h`, "a"), "1");
  });

  test("keyPrefix: the backend sees and touches only keys under its prefix", async () => {
    const inside = `${root}in*side[1]:`;
    const lookalike = `${root}inXside1:`;
    await raw.set(`${inside}mine`, "in");
    await raw.set(`${lookalike}theirs`, "out");
    await raw.set(`${root}outside`, "out");
    const cache = await backend({ keyPrefix: inside, readOnly: false, allowCommands: ["del", "set"] });

    const all = await ok(cache, "scan", { match: "*", count: 1000 });
    assert.deepEqual(all.keys, ["mine"], "a prefix with glob characters is matched literally");
    assert.deepEqual(await ok(cache, "get", { key: "mine" }), { key: "mine", value: "in", truncated: false });
    // Keys are always under the prefix: there is no way to name a key outside it.
    assert.equal((await ok(cache, "get", { key: `${root}outside` })).value, null);
    assert.deepEqual(await ok(cache, "del", { keys: ["outside", "../outside", `${root}outside`] }), {
      deleted: 0,
    });
    await ok(cache, "set", { key: "new", value: "v" });
    assert.equal(await raw.get(`${inside}new`), "v");
    assert.equal(await raw.get(`${root}outside`), "out");
    assert.equal(await raw.get(`${lookalike}theirs`), "out");
  });

  test("an outage takes the tools away, and they come back with Redis", async () => {
    const proxy = await TcpProxy.start(url);
    const config = redisBackendSchema.parse({ type: "redis", url: proxy.urlFor(url), keyPrefix: prefix });
    const cache = createRedisBackend("cache", config, silentLogger(), {
      reconnect: { initialDelayMs: 20, maxDelayMs: 100 },
    });
    const { states, events } = recorder();
    await cache.start(events);
    try {
      assert.equal((await ok(cache, "get", { key: "s" })).value, "hello");
      proxy.cut();
      await eventually(() => cache.state === "down", 5_000, "the backend to go down");
      assert.deepEqual(cache.catalog().tools, []);
      await assert.rejects(cache.callTool({ server: "cache", tool: "get", args: { key: "s" } }, context()), {
        code: "backend_unavailable",
      });
      proxy.restore();
      await eventually(() => cache.state === "up", 5_000, "the backend to come back");
      assert.equal((await ok(cache, "get", { key: "s" })).value, "hello");
      assert.deepEqual(
        states.map(([state]) => state),
        ["starting", "up", "down", "up"],
      );
    } finally {
      await cache.close();
      await proxy.close();
    }
  });

  test("health answers PING; an unreachable Redis is down and never shows the password", async () => {
    const cache = await backend();
    const health = await cache.health(new AbortController().signal);
    assert.equal(health.status, "healthy");
    assert.equal(typeof health.latencyMs, "number");

    const secret = `pw-${randomBytes(8).toString("hex")}`;
    const config = redisBackendSchema.parse({ type: "redis", url: `redis://user:${secret}@127.0.0.1:1/0` });
    const down = createRedisBackend("cache", config, silentLogger(), {
      reconnect: { initialDelayMs: 60_000, maxDelayMs: 60_000 },
    });
    const { states, events } = recorder();
    await down.start(events);
    try {
      assert.equal(down.state, "down");
      assert.deepEqual(down.catalog().tools, []);
      const reason = states.find(([state]) => state === "down")?.[1] ?? "";
      assert.ok(!reason.includes(secret), reason);
      const sick = await down.health(new AbortController().signal);
      assert.equal(sick.status, "unhealthy");
      assert.match(sick.detail ?? "", /Redis at 127\.0\.0\.1:1/);
      assert.ok(!JSON.stringify(sick).includes(secret));
      await assert.rejects(
        down.callTool({ server: "cache", tool: "get", args: { key: "s" } }, context()),
        (error: unknown) => {
          assert.ok(error instanceof GatewayError);
          assert.equal(error.code, "backend_unavailable");
          assert.ok(!error.message.includes(secret), error.message);
          return true;
        },
      );
    } finally {
      await down.close();
    }
    assert.equal(down.state, "stopped");
  });
});
