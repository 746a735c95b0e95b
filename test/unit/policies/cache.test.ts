import assert from "node:assert/strict";
import { afterEach, beforeEach, describe, mock, test } from "node:test";
import type { CallToolResult } from "../../../src/core/types.ts";
import {
  binding,
  callOf,
  deferred,
  errorText,
  fakeNext,
  flush,
  makeCtx,
  makeRuntime,
  principal,
  READ_ONLY,
  text,
  tick,
  useFakeTimers,
} from "./_helpers.ts";

const cached = { policies: { cache: { ttlMs: 10_000 } } };

describe("result cache", () => {
  beforeEach(useFakeTimers);
  afterEach(() => mock.timers.reset());

  test("a second identical call is served from the cache, marked as such", async () => {
    const { handlerFor } = makeRuntime(cached);
    const b = binding("weather__forecast", READ_ONLY);
    const next = fakeNext(() => text("sunny"));
    const first = makeCtx();
    assert.deepEqual(
      await handlerFor(b, next.handler)(callOf(b, { city: "Oslo", days: 3 }), first),
      text("sunny"),
    );
    assert.equal(first.notes.get("cache"), "miss");
    assert.equal(first.notes.get("source"), "backend");

    const second = makeCtx();
    // Same arguments, other key order: same canonical JSON, same entry.
    const result = await handlerFor(b, next.handler)(callOf(b, { days: 3, city: "Oslo" }), second);
    assert.equal(next.calls.length, 1);
    assert.deepEqual(result, { ...text("sunny"), _meta: { "switchboard/source": "cache" } });
    assert.equal(second.notes.get("cache"), "hit");
    assert.equal(second.notes.get("source"), "cache");

    await handlerFor(b, next.handler)(callOf(b, { city: "Bergen", days: 3 }), makeCtx());
    assert.equal(next.calls.length, 2, "other arguments, other entry");
  });

  test("entries expire after ttlMs", async () => {
    const { handlerFor } = makeRuntime(cached);
    const b = binding("weather__forecast", READ_ONLY);
    const next = fakeNext(() => text("sunny"));
    const handler = handlerFor(b, next.handler);
    await handler(callOf(b), makeCtx());
    await tick(10_000);
    await handler(callOf(b), makeCtx());
    assert.equal(next.calls.length, 1);
    await tick(1);
    await handler(callOf(b), makeCtx());
    assert.equal(next.calls.length, 2);
  });

  test("concurrent identical misses reach next once", async () => {
    const { handlerFor, events } = makeRuntime(cached);
    const b = binding("weather__forecast", READ_ONLY);
    const answer = deferred<CallToolResult>();
    const next = fakeNext(() => answer.promise);
    const handler = handlerFor(b, next.handler);
    const ctxs = [makeCtx(), makeCtx(), makeCtx(), makeCtx()];
    const calls = ctxs.map((ctx) => handler(callOf(b, { city: "Oslo" }), ctx));
    await flush();
    assert.equal(next.calls.length, 1);
    answer.resolve(text("sunny"));
    const results = await Promise.all(calls);
    for (const result of results) assert.deepEqual(result, text("sunny"));
    assert.notEqual(results[0], results[1], "each caller gets its own copy");
    assert.equal(next.calls.length, 1);
    assert.equal(events.cache.filter((e) => e.outcome === "coalesced").length, 3);
    assert.equal(ctxs[3]?.notes.get("coalesced"), true);
  });

  test("a coalesced call whose leader was cancelled makes its own call", async () => {
    const { handlerFor } = makeRuntime(cached);
    const b = binding("weather__forecast", READ_ONLY);
    const next = fakeNext((_call, ctx, n) =>
      n === 1
        ? new Promise<CallToolResult>((_resolve, reject) => {
            ctx.signal.addEventListener("abort", () => reject(new Error("aborted")));
          })
        : text("sunny"),
    );
    const handler = handlerFor(b, next.handler);
    const leader = new AbortController();
    const first = handler(callOf(b), makeCtx({ signal: leader.signal })).catch((e: unknown) => e);
    const second = handler(callOf(b), makeCtx());
    await flush();
    leader.abort();
    await first;
    assert.deepEqual(await second, text("sunny"));
    assert.equal(next.calls.length, 2);
  });

  test("results are partitioned by principal unless the tool is shared", async () => {
    const b = binding("crm__get_user", READ_ONLY);
    const per = makeRuntime(cached);
    const next = fakeNext((_call, ctx) => text(`for ${ctx.principal.id}`));
    const alice = await per.handlerFor(b, next.handler)(
      callOf(b),
      makeCtx({ principal: principal("alice") }),
    );
    const bob = await per.handlerFor(b, next.handler)(callOf(b), makeCtx({ principal: principal("bob") }));
    assert.deepEqual([alice, bob], [text("for alice"), text("for bob")]);
    assert.equal(next.calls.length, 2);

    const shared = makeRuntime({ policies: { cache: { shared: true } } });
    const sharedNext = fakeNext((_call, ctx) => text(`for ${ctx.principal.id}`));
    await shared.handlerFor(b, sharedNext.handler)(callOf(b), makeCtx({ principal: principal("alice") }));
    const seen = await shared.handlerFor(b, sharedNext.handler)(
      callOf(b),
      makeCtx({ principal: principal("bob") }),
    );
    assert.equal(sharedNext.calls.length, 1);
    assert.equal(seen.content?.[0]?.type === "text" && seen.content[0].text, "for alice");
  });

  test("isError results are never cached", async () => {
    const { handlerFor, events } = makeRuntime(cached);
    const b = binding("weather__forecast", READ_ONLY);
    const next = fakeNext(() => errorText("upstream said no"));
    await handlerFor(b, next.handler)(callOf(b), makeCtx());
    await handlerFor(b, next.handler)(callOf(b), makeCtx());
    assert.equal(next.calls.length, 2);
    assert.ok(events.cache.some((e) => e.outcome === "skipped" && e.reason === "isError result"));
  });

  test("a task the server started is never cached: each call starts its own", async () => {
    const { handlerFor, events } = makeRuntime(cached);
    const b = binding("jobs__build", READ_ONLY);
    const marker = { "io.switchboard/backend-task": { taskId: "t-1", status: "working" } };
    const next = fakeNext(() => ({ content: [], _meta: marker }));
    await handlerFor(b, next.handler)(callOf(b), makeCtx());
    await handlerFor(b, next.handler)(callOf(b), makeCtx());
    assert.equal(next.calls.length, 2);
    assert.ok(events.cache.some((e) => e.outcome === "skipped" && e.reason === "a task the server runs"));
  });

  test("only read-only tools are cached, unless the config says cacheable", async () => {
    const plain = binding("api__search");
    const { runtime, handlerFor } = makeRuntime({
      ...cached,
      toolPolicies: {
        "*__lookup": { cache: { cacheable: true } },
        "*__forecast": { cache: { cacheable: false } },
      },
    });
    assert.deepEqual(
      runtime.entriesFor(plain).map((e) => e.name),
      ["timeout"],
    );
    const lookup = binding("api__lookup");
    const next = fakeNext(() => text("found"));
    await handlerFor(lookup, next.handler)(callOf(lookup), makeCtx());
    await handlerFor(lookup, next.handler)(callOf(lookup), makeCtx());
    assert.equal(next.calls.length, 1);
    assert.deepEqual(
      runtime.entriesFor(binding("w__forecast", READ_ONLY)).map((e) => e.name),
      ["timeout"],
      "cacheable: false beats readOnlyHint",
    );
  });

  test("results over maxEntryBytes are not cached", async () => {
    const { handlerFor, events } = makeRuntime({ policies: { cache: { maxEntryBytes: 100 } } });
    const b = binding("fs__read", READ_ONLY);
    const next = fakeNext(() => text("x".repeat(200)));
    await handlerFor(b, next.handler)(callOf(b), makeCtx());
    await handlerFor(b, next.handler)(callOf(b), makeCtx());
    assert.equal(next.calls.length, 2);
    assert.match(events.cache.find((e) => e.outcome === "skipped")?.reason ?? "", /over maxEntryBytes 100/);
  });

  test("a write invalidates the read cache (invalidates on the writing tool, names and globs)", async () => {
    const { handlerFor, events } = makeRuntime({
      ...cached,
      toolPolicies: { crm__update_user: { invalidates: ["crm__get_user", "crm__list_*"] } },
    });
    const getUser = binding("crm__get_user", READ_ONLY);
    const listUsers = binding("crm__list_users", READ_ONLY);
    const other = binding("crm__get_deal", READ_ONLY);
    const update = binding("crm__update_user");
    let version = 1;
    const reads = fakeNext(() => text(`v${version}`));
    const writes = fakeNext(() => {
      version++;
      return text("updated");
    });
    const read = (b: typeof getUser) => handlerFor(b, reads.handler)(callOf(b, { id: 7 }), makeCtx());
    for (const b of [getUser, listUsers, other]) await read(b);
    assert.equal(reads.calls.length, 3);
    for (const b of [getUser, listUsers, other]) await read(b);
    assert.equal(reads.calls.length, 3, "all three cached");

    await handlerFor(update, writes.handler)(callOf(update, { id: 7 }), makeCtx());
    assert.deepEqual(await read(getUser), text("v2"));
    assert.deepEqual(await read(listUsers), text("v2"));
    assert.equal(reads.calls.length, 5);
    assert.deepEqual(
      (await read(other)).content,
      text("v1").content,
      "crm__get_deal was not named, so it stays cached",
    );
    const invalidated = events.cache.filter((e) => e.outcome === "invalidated");
    assert.deepEqual(invalidated.map((e) => [e.tool, e.count]).sort(), [
      ["crm__get_user", 1],
      ["crm__list_users", 1],
    ]);
  });

  test("a write that answers isError invalidates nothing", async () => {
    const { handlerFor } = makeRuntime({
      ...cached,
      toolPolicies: { crm__update_user: { invalidates: ["crm__get_user"] } },
    });
    const getUser = binding("crm__get_user", READ_ONLY);
    const update = binding("crm__update_user");
    const reads = fakeNext(() => text("v1"));
    await handlerFor(getUser, reads.handler)(callOf(getUser), makeCtx());
    await handlerFor(update, fakeNext(() => errorText("denied")).handler)(callOf(update), makeCtx());
    await handlerFor(getUser, reads.handler)(callOf(getUser), makeCtx());
    assert.equal(reads.calls.length, 1);
  });

  test("a read in flight while a write invalidates is not stored", async () => {
    const { handlerFor } = makeRuntime({
      ...cached,
      toolPolicies: { crm__update_user: { invalidates: ["crm__get_user"] } },
    });
    const getUser = binding("crm__get_user", READ_ONLY);
    const update = binding("crm__update_user");
    const slowRead = deferred<CallToolResult>();
    const reads = fakeNext((_c, _x, n) => (n === 1 ? slowRead.promise : text("v2")));
    // Seen once so that the invalidation knows the tool.
    const inFlight = handlerFor(getUser, reads.handler)(callOf(getUser), makeCtx());
    await flush();
    await handlerFor(update, fakeNext(() => text("updated")).handler)(callOf(update), makeCtx());
    slowRead.resolve(text("v1 (read before the write)"));
    await inFlight;
    assert.deepEqual(await handlerFor(getUser, reads.handler)(callOf(getUser), makeCtx()), text("v2"));
  });

  test("invalidateServer drops every entry of that server only", async () => {
    const { runtime, handlerFor } = makeRuntime(cached);
    const a = binding("crm__get_user", READ_ONLY);
    const b = binding("db__query", READ_ONLY);
    const next = fakeNext(() => text("x"));
    await handlerFor(a, next.handler)(callOf(a), makeCtx());
    await handlerFor(b, next.handler)(callOf(b), makeCtx());
    await runtime.invalidateServer("crm");
    await handlerFor(a, next.handler)(callOf(a), makeCtx());
    await handlerFor(b, next.handler)(callOf(b), makeCtx());
    assert.equal(next.calls.length, 3);
  });

  test("arguments without a canonical JSON form skip the cache instead of failing", async () => {
    const { handlerFor, events } = makeRuntime(cached);
    const b = binding("weather__forecast", READ_ONLY);
    const next = fakeNext(() => text("ok"));
    await handlerFor(b, next.handler)(callOf(b, { n: Number.NaN }), makeCtx());
    await handlerFor(b, next.handler)(callOf(b, { n: Number.NaN }), makeCtx());
    assert.equal(next.calls.length, 2);
    assert.ok(events.cache.some((e) => e.outcome === "skipped" && /not a JSON number/.test(e.reason ?? "")));
  });
});
