/**
 * Rate limits in "wait" mode wait in line on a shared Redis too: two replicas (each its own Redis
 * store and policy runtime, on one key prefix) queue their callers in one line, first come, first
 * served, on Redis' clock; a call whose turn is too far off is refused at once, and a cancelled
 * waiter gives its place back. Timings are real: the asserts are lower bounds on waits, with upper
 * bounds generous enough for a loaded machine.
 */
import assert from "node:assert/strict";
import { after, describe, test } from "node:test";
import { compose } from "../../src/core/compose.ts";
import { type GatewayError, RateLimited } from "../../src/core/errors.ts";
import { ANONYMOUS, type CallContext } from "../../src/core/types.ts";
import { silentLogger } from "../../src/observability/logger.ts";
import { policySetSchema } from "../../src/policies/config.ts";
import { type LimitEvent, PolicyRuntime, type ToolBinding } from "../../src/policies/runtime.ts";
import { RedisStore } from "../../src/stores/index.ts";
import { deleteByPrefix, describeWithRedis, uniquePrefix } from "../support/redis.ts";

const TOOL: ToolBinding = {
  exposedName: "mail__send_email",
  server: "mail",
  tool: { name: "send_email", inputSchema: { type: "object" } },
};

describeWithRedis("rate limits waiting in line on Redis", (url) => {
  const prefix = uniquePrefix("rate-limit-queue");
  const cleanup: { close(): unknown }[] = [];

  const store = async () => {
    const redis = new RedisStore({ url, keyPrefix: prefix, connectTimeoutMs: 2_000 });
    cleanup.push(redis);
    await redis.ready();
    return redis;
  };

  after(async () => {
    await Promise.all(cleanup.map((c) => c.close()));
    await deleteByPrefix(url, prefix);
  });

  describe("the store: reservations in Lua, on Redis' clock", () => {
    test("reservations from two replicas queue in one line; a turn too far off is refused at once", async () => {
      const [a, b] = [await store(), await store()];
      const bucket = { capacity: 1, refillPerSec: 10 }; // one token every 100 ms
      assert.equal((await a.takeTokens("line", bucket)).ok, true);
      const first = await b.takeTokens("line", bucket, 1, { maxWaitMs: 1_000 });
      const second = await a.takeTokens("line", bucket, 1, { maxWaitMs: 1_000 });
      assert.equal(first.ok && second.ok, true, "both reserved");
      assert.ok(first.retryAfterMs > 0 && first.retryAfterMs <= 100, `first turn ${first.retryAfterMs}`);
      assert.ok(
        second.retryAfterMs > 100 && second.retryAfterMs <= 200,
        `the second waits behind the first (${second.retryAfterMs} ms)`,
      );
      const third = await b.takeTokens("line", bucket, 1, { maxWaitMs: second.retryAfterMs });
      assert.equal(third.ok, false, "its turn comes after the second's: past its maxWaitMs");
      assert.ok(third.retryAfterMs > second.retryAfterMs - 20 && third.retryAfterMs <= 300);
      const rejectMode = await a.takeTokens("line", bucket);
      assert.equal(rejectMode.ok, false, "a take that does not wait does not jump the line");
    });

    test("a reservation given back before its turn lets the next caller have it", async () => {
      const [a, b] = [await store(), await store()];
      const bucket = { capacity: 1, refillPerSec: 1 }; // one token a second
      await a.takeTokens("back", bucket);
      const reserved = await a.takeTokens("back", bucket, 1, { maxWaitMs: 5_000 });
      assert.equal(reserved.ok, true);
      await a.returnTokens("back", bucket, 1, reserved.retryAfterMs);
      const next = await b.takeTokens("back", bucket, 1, { maxWaitMs: 5_000 });
      assert.ok(
        next.retryAfterMs <= reserved.retryAfterMs,
        `the next caller's turn is the same (${next.retryAfterMs} ms)`,
      );
    });
  });

  describe("the policy over two replicas", () => {
    /** One replica: a runtime over its own Redis store, and a handler that notes when calls went on. */
    const replica = async (rateLimit: Record<string, unknown>, wentOn: string[]) => {
      const runtime = new PolicyRuntime(
        { policies: policySetSchema.parse({ rateLimit }), servers: {}, toolPolicies: {} },
        { store: await store(), logger: silentLogger(), callTool: async () => ({ content: [] }) },
      );
      cleanup.push(runtime);
      const handler = compose(runtime.chainFor(TOOL), async (call) => {
        wentOn.push(String(call.args.label));
        return { content: [{ type: "text", text: "sent" }] };
      });
      type Outcome = { label: string; ms: number; error?: GatewayError };
      const call = (label: string, signal = new AbortController().signal): Promise<Outcome> => {
        const ctx: CallContext = {
          requestId: label,
          signal,
          principal: ANONYMOUS,
          meta: {},
          notes: new Map(),
        };
        const started = Date.now();
        return handler({ server: "mail", tool: "send_email", args: { label } }, ctx).then(
          () => ({ label, ms: Date.now() - started }),
          (error: unknown) => ({ label, ms: Date.now() - started, error: error as GatewayError }),
        );
      };
      /** Resolves when this replica's next call has its place in line (its limit event). */
      const placed = () => new Promise<LimitEvent>((resolve) => runtime.once("limit", resolve));
      return { call, placed };
    };

    test("callers of both replicas go first come, first served; one whose turn is too far off is refused at once", async () => {
      // One token every 200 ms; a caller may wait half a second.
      const limit = { capacity: 1, refillPerSecond: 5, mode: "wait", maxWaitMs: 500, scope: "global" };
      const wentOn: string[] = [];
      const [a, b] = [await replica(limit, wentOn), await replica(limit, wentOn)];
      const first = await a.call("first");
      assert.equal(first.error, undefined);
      const secondPlaced = b.placed();
      const second = b.call("second");
      assert.equal((await secondPlaced).outcome, "waited");
      const thirdPlaced = a.placed();
      const third = a.call("third");
      assert.equal((await thirdPlaced).outcome, "waited");
      const fourth = await b.call("fourth");
      assert.ok(fourth.error instanceof RateLimited, "refused");
      assert.ok(fourth.ms < 150, `at once, not after a wait (${fourth.ms} ms)`);
      assert.ok(fourth.error.retryAfterMs > 400 && fourth.error.retryAfterMs <= 600);
      assert.match(fourth.error.message, /maxWaitMs \(500 ms\) in mode "wait"/);
      assert.deepEqual(wentOn, ["first"], "the refusal came before any waiter's turn");
      const [two, three] = await Promise.all([second, third]);
      assert.deepEqual(wentOn, ["first", "second", "third"]);
      assert.ok(two.ms >= 150 && two.ms < 1_500, `second waited its turn (${two.ms} ms)`);
      assert.ok(three.ms >= 350 && three.ms < 2_000, `third waited behind it (${three.ms} ms)`);
    });

    test("a waiter cancelled on one replica gives its place to a caller of the other", async () => {
      // One token every 400 ms; a caller may wait 600 ms: the place behind a waiter is too far off.
      const limit = { capacity: 1, refillPerSecond: 2.5, mode: "wait", maxWaitMs: 600, scope: "global" };
      const wentOn: string[] = [];
      const [a, b] = [await replica(limit, wentOn), await replica(limit, wentOn)];
      await a.call("first");
      const controller = new AbortController();
      const placed = a.placed();
      const cancelled = a.call("cancelled", controller.signal);
      await placed;
      controller.abort();
      assert.equal((await cancelled).error?.code, "cancelled");
      const next = await b.call("next");
      assert.equal(
        next.error,
        undefined,
        `had the cancelled call kept its place, this would be refused: ${next.error?.message}`,
      );
      assert.deepEqual(wentOn, ["first", "next"]);
    });
  });
});
