import assert from "node:assert/strict";
import { afterEach, beforeEach, describe, mock, test } from "node:test";
import { compose } from "../../../src/core/compose.ts";
import { CircuitOpen, GatewayError } from "../../../src/core/errors.ts";
import type { CallContext, CallHandler, CallToolResult } from "../../../src/core/types.ts";
import { mapArgs } from "../../../src/policies/fallback.ts";
import type { PolicyRuntime } from "../../../src/policies/runtime.ts";
import {
  binding,
  callOf,
  errorText,
  fakeNext,
  makeCtx,
  makeRuntime,
  READ_ONLY,
  text,
  tick,
  useFakeTimers,
} from "./_helpers.ts";

const down = () => new GatewayError("backend_unavailable", "weather API unreachable");

/** A tiny gateway: exposed name → binding and backend, called through the runtime's chains. */
function gatewayOf(
  getRuntime: () => PolicyRuntime,
  tools: Record<string, { b: ReturnType<typeof binding>; next: CallHandler }>,
) {
  return async (name: string, args: Record<string, unknown>, ctx: CallContext): Promise<CallToolResult> => {
    const tool = tools[name];
    if (!tool) return errorText(`unknown tool ${name}`);
    try {
      return (await compose(getRuntime().chainFor(tool.b), tool.next)(
        callOf(tool.b, args),
        ctx,
      )) as CallToolResult;
    } catch (error) {
      return errorText(error instanceof Error ? error.message : String(error));
    }
  };
}

describe("fallback chains", () => {
  beforeEach(useFakeTimers);
  afterEach(() => mock.timers.reset());

  test("the second source answers when the primary and the first fallback fail, and says so", async () => {
    const primary = binding("weather__forecast", READ_ONLY);
    const backup = binding("weather__backup", READ_ONLY);
    const calledWith: Record<string, unknown>[] = [];
    let runtime: PolicyRuntime | undefined;
    const tools = {
      weather__backup: {
        b: backup,
        next: fakeNext((call) => {
          calledWith.push({ ...call.args });
          return text(`backup says sunny in ${call.args.location}`);
        }).handler,
      },
    };
    const setup = makeRuntime({
      toolPolicies: {
        weather__forecast: {
          fallback: {
            chain: [
              { cache: "stale" },
              {
                tool: "weather__backup",
                args: { location: "{{args.city}}", note: "for {{args.city}}, {{args.days}} days" },
              },
              { static: { text: "Weather is unavailable right now." } },
            ],
          },
        },
      },
      callTool: (name, args, ctx) => gatewayOf(() => runtime as PolicyRuntime, tools)(name, args, ctx),
    });
    runtime = setup.runtime;
    const next = fakeNext(() => {
      throw down();
    });
    const ctx = makeCtx();
    const result = await setup.handlerFor(primary, next.handler)(
      callOf(primary, { city: "Oslo", days: 2 }),
      ctx,
    );
    assert.deepEqual(result.content, text("backup says sunny in Oslo").content);
    assert.equal(result._meta?.["switchboard/source"], "fallback:2:tool:weather__backup");
    assert.equal(ctx.notes.get("source"), "fallback:2:tool:weather__backup");
    assert.deepEqual(calledWith, [{ location: "Oslo", note: "for Oslo, 2 days" }]);
    assert.deepEqual(ctx.notes.get("fallbackReasons"), [
      "primary: weather API unreachable",
      "fallback 1 (stale cache): no last good result for these arguments",
    ]);
    assert.deepEqual(setup.events.fallback, [
      {
        server: "weather",
        tool: "weather__forecast",
        outcome: "answered",
        source: "fallback:2:tool:weather__backup",
        reasons: ctx.notes.get("fallbackReasons"),
      },
    ]);
    assert.equal(setup.warnings.length, 1, "the failed fallback was logged with its reason");
  });

  test("stale cache: the last good result answers after the cache TTL, until staleTtlMs", async () => {
    const b = binding("weather__forecast", READ_ONLY);
    const { handlerFor } = makeRuntime({
      policies: {
        cache: { ttlMs: 1_000 },
        fallback: { chain: [{ cache: "stale", staleTtlMs: 60_000 }] },
      },
    });
    let up = true;
    const next = fakeNext(() => {
      if (!up) throw down();
      return text("sunny");
    });
    const handler = handlerFor(b, next.handler);
    await handler(callOf(b, { city: "Oslo" }), makeCtx());
    up = false;
    await tick(5_000); // the fresh entry is gone
    const ctx = makeCtx();
    const stale = await handler(callOf(b, { city: "Oslo" }), ctx);
    assert.deepEqual(stale.content, text("sunny").content);
    assert.equal(stale._meta?.["switchboard/source"], "fallback:1:cache:stale");
    assert.equal(ctx.notes.get("cache"), "stale");
    assert.equal(next.calls.length, 2, "the backend was tried first");

    // A stale answer is not written back as a fresh one.
    await handler(callOf(b, { city: "Oslo" }), makeCtx());
    assert.equal(next.calls.length, 3);

    await tick(60_000);
    await assert.rejects(handler(callOf(b, { city: "Oslo" }), makeCtx()), { code: "backend_unavailable" });
  });

  test("stale results are kept only for cacheable tools", async () => {
    const b = binding("mail__send", {});
    const { handlerFor } = makeRuntime({ policies: { fallback: { chain: [{ cache: "stale" }] } } });
    let up = true;
    const next = fakeNext(() => {
      if (!up) throw down();
      return text("sent");
    });
    await handlerFor(b, next.handler)(callOf(b), makeCtx());
    up = false;
    await assert.rejects(handlerFor(b, next.handler)(callOf(b), makeCtx()), { code: "backend_unavailable" });
  });

  test("an open circuit falls back; isError only with onIsError", async () => {
    const b = binding("weather__forecast", READ_ONLY);
    const { handlerFor } = makeRuntime({
      policies: {
        circuitBreaker: { consecutiveFailures: 1 },
        fallback: { chain: [{ static: { text: "fallback" } }] },
      },
    });
    const failing = fakeNext(() => {
      throw down();
    });
    const handler = handlerFor(b, failing.handler);
    assert.equal((await handler(callOf(b), makeCtx()))._meta?.["switchboard/source"], "fallback:1:static");
    const ctx = makeCtx();
    const whileOpen = await handler(callOf(b), ctx);
    assert.equal(whileOpen._meta?.["switchboard/source"], "fallback:1:static");
    assert.match(String((ctx.notes.get("fallbackReasons") as string[])[0]), /circuit breaker opened/);
    assert.equal(failing.calls.length, 1);

    const isError = fakeNext(() => errorText("tool says no"));
    const off = makeRuntime({ policies: { fallback: { chain: [{ static: { text: "fb" } }] } } });
    assert.equal((await off.handlerFor(b, isError.handler)(callOf(b), makeCtx())).isError, true);
    const on = makeRuntime({
      policies: { fallback: { onIsError: true, chain: [{ static: { text: "fb" } }] } },
    });
    assert.deepEqual(
      (await on.handlerFor(b, isError.handler)(callOf(b), makeCtx())).content,
      text("fb").content,
    );
  });

  test("when every fallback fails, the primary's failure is what the caller gets", async () => {
    const b = binding("weather__forecast", READ_ONLY);
    const { handlerFor, warnings, events } = makeRuntime({
      policies: { fallback: { chain: [{ cache: "stale" }, { tool: "weather__missing" }] } },
    });
    const next = fakeNext(() => {
      throw down();
    });
    await assert.rejects(handlerFor(b, next.handler)(callOf(b), makeCtx()), {
      message: "weather API unreachable",
    });
    assert.equal(events.fallback[0]?.outcome, "exhausted");
    assert.equal(events.fallback[0]?.reasons.length, 3);
    const last = warnings.at(-1) as { reasons: string[] };
    assert.deepEqual(last.reasons, events.fallback[0]?.reasons);
  });

  test("a caller's cancel never falls back", async () => {
    const b = binding("weather__forecast", READ_ONLY);
    const { handlerFor, events } = makeRuntime({
      policies: { fallback: { chain: [{ static: { text: "fb" } }] } },
    });
    const controller = new AbortController();
    const next = fakeNext(() => {
      controller.abort();
      throw new Error("aborted");
    });
    await assert.rejects(handlerFor(b, next.handler)(callOf(b), makeCtx({ signal: controller.signal })));
    assert.equal(events.fallback.length, 0);
  });

  test("fallbacks that would loop are refused", async () => {
    const a = binding("svc__a", READ_ONLY);
    const b = binding("svc__b", READ_ONLY);
    let runtime: PolicyRuntime | undefined;
    const failing = fakeNext(() => {
      throw down();
    }).handler;
    const tools = { svc__a: { b: a, next: failing }, svc__b: { b, next: failing } };
    const setup = makeRuntime({
      toolPolicies: {
        svc__a: { fallback: { chain: [{ tool: "svc__b" }] } },
        svc__b: { fallback: { chain: [{ tool: "svc__a" }] } },
      },
      callTool: (name, args, ctx) => gatewayOf(() => runtime as PolicyRuntime, tools)(name, args, ctx),
    });
    runtime = setup.runtime;
    await assert.rejects(setup.handlerFor(a, failing)(callOf(a), makeCtx()), { code: "backend_unavailable" });
    const reasons = setup.events.fallback.flatMap((e) => e.reasons);
    assert.ok(
      reasons.some((r) => /svc__a → svc__b → svc__a in a loop/.test(r)),
      reasons.join("\n"),
    );
  });

  test("a static CallToolResult is returned as written, plus its source", async () => {
    const b = binding("x__y");
    const { handlerFor } = makeRuntime({
      policies: {
        fallback: {
          chain: [{ static: { content: [{ type: "text", text: "s" }], structuredContent: { ok: false } } }],
        },
      },
    });
    const result = await handlerFor(
      b,
      fakeNext(() => {
        throw new CircuitOpen("open", 0);
      }).handler,
    )(callOf(b), makeCtx());
    assert.deepEqual(result, {
      content: [{ type: "text", text: "s" }],
      structuredContent: { ok: false },
      _meta: { "switchboard/source": "fallback:1:static" },
    });
  });
});

describe("fallback argument templates", () => {
  const args = { city: "Oslo", days: 3, filters: { units: "metric" }, tags: ["a", "b"], empty: null };

  test("a whole-string template keeps the value's type", () => {
    assert.deepEqual(
      mapArgs({ q: "{{args.city}}", n: "{{args.days}}", f: "{{args.filters}}", t: "{{args.tags.1}}" }, args),
      {
        q: "Oslo",
        n: 3,
        f: { units: "metric" },
        t: "b",
      },
    );
  });

  test("templates inside strings interpolate; objects as JSON, missing as empty", () => {
    assert.deepEqual(mapArgs({ s: "{{args.city}}/{{args.days}} {{args.filters}} [{{args.nope}}]" }, args), {
      s: 'Oslo/3 {"units":"metric"} []',
    });
  });

  test("missing values drop their key; {{args}} is everything; nesting works", () => {
    assert.deepEqual(
      mapArgs({ a: "{{args.nope}}", all: "{{args}}", deep: [{ u: "{{args.filters.units}}" }] }, args),
      {
        all: args,
        deep: [{ u: "metric" }],
      },
    );
  });

  test("only own properties are reachable", () => {
    assert.deepEqual(mapArgs({ p: "{{args.__proto__}}", c: "{{args.constructor}}" }, args), {});
  });
});
