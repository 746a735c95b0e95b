/**
 * Property tests of the real policy code on fake clocks: the token bucket (the memory store's
 * `takeTokens`, and the rate-limit policy as the runtime assembles it), the circuit breaker's
 * half-open probe limit, and the result cache's TTL, partition and invalidation guarantees.
 *
 * Every property runs with a fixed seed (override with FUZZ_SEED=<n>; FUZZ_SCALE=<n> for n times the
 * runs); fast-check prints the seed of a failure, and FUZZ_SEED=<that seed> replays it. Each property
 * also runs against a deliberately broken variant (an over-granting bucket, a breaker that leaks
 * probe slots, a cache shared across principals, a store that ignores TTLs), to show that its checker
 * can fail.
 */
import assert from "node:assert/strict";
import { describe, test } from "node:test";
import fc from "fast-check";
import { compose } from "../../src/core/compose.ts";
import { GatewayError } from "../../src/core/errors.ts";
import type { CallContext, CallHandler, CallToolResult, Policy, ToolCall } from "../../src/core/types.ts";
import { silentLogger } from "../../src/observability/logger.ts";
import { CircuitBreaker } from "../../src/policies/circuit-breaker.ts";
import { circuitBreakerSchema, policySetSchema } from "../../src/policies/config.ts";
import { type BreakerEvent, PolicyRuntime, type ToolBinding } from "../../src/policies/runtime.ts";
import { timeoutPolicy } from "../../src/policies/timeout.ts";
import type { PolicyEnv } from "../../src/policies/types.ts";
import type { BucketSpec, TakeResult } from "../../src/stores/contract.ts";
import { MemoryStore } from "../../src/stores/memory.ts";
import { params, SEED } from "../support/fuzz.ts";

const RUNS = { bucket: 1_000, policy: 300, breaker: 500, cache: 500, negative: 300 };
/** Float slack for sums of fractional refills (the store itself forgives 1e-9 per take). */
const TOLERANCE = 1e-6;

/** Lets promise callbacks run (setImmediate is real here; only the policies' clock is fake). */
async function flush(rounds = 4): Promise<void> {
  for (let i = 0; i < rounds; i++) await new Promise((resolve) => setImmediate(resolve));
}

function binding(exposedName: string, annotations: Record<string, boolean> = {}): ToolBinding {
  const [server = "srv", name = exposedName] = exposedName.split("__");
  return { exposedName, server, tool: { name, inputSchema: { type: "object" }, annotations } };
}

function ctxOf(requestId: string, principalId: string, signal = new AbortController().signal): CallContext {
  return {
    requestId,
    signal,
    principal: { id: principalId, roles: [] },
    meta: {},
    notes: new Map(),
  };
}

const callOf = (b: ToolBinding, args: Record<string, unknown> = {}): ToolCall => ({
  server: b.server,
  tool: b.tool.name,
  args,
});

function runtime(policies: unknown, store: MemoryStore, now: () => number): PolicyRuntime {
  return new PolicyRuntime(
    { policies: policySetSchema.parse(policies), servers: {}, toolPolicies: {} },
    {
      store,
      logger: silentLogger(),
      callTool: async () => {
        throw new Error("no fallbacks in these properties");
      },
      now,
      random: () => 0.5,
    },
  );
}

function deferred<T>() {
  let resolve!: (value: T) => void;
  let reject!: (error: unknown) => void;
  const promise = new Promise<T>((res, rej) => {
    resolve = res;
    reject = rej;
  });
  return { promise, resolve, reject };
}

const text = (value: string, isError = false): CallToolResult => ({
  content: [{ type: "text", text: value }],
  ...(isError ? { isError: true } : {}),
});

function firstText(result: CallToolResult): string {
  const item = result.content[0];
  return item?.type === "text" ? item.text : "";
}

// ---------------------------------------------------------------------------------------------------
// Token bucket
// ---------------------------------------------------------------------------------------------------

interface Grant {
  readonly at: number;
  readonly n: number;
}

/**
 * The worst window of a series of grants (times non-decreasing): the most tokens granted in any
 * [t, t + w] minus what the bucket may give in it, capacity + refillPerSec × w. The maximum over all
 * windows is reached by one that starts and ends at grants, so only those are checked. Positive
 * means over-granting.
 */
function worstWindow(grants: readonly Grant[], bucket: BucketSpec) {
  let worst = { excess: Number.NEGATIVE_INFINITY, from: 0, to: 0, granted: 0 };
  for (let i = 0; i < grants.length; i++) {
    const start = grants[i] as Grant;
    let sum = 0;
    for (let j = i; j < grants.length; j++) {
      const end = grants[j] as Grant;
      sum += end.n;
      const allowed = bucket.capacity + (bucket.refillPerSec * (end.at - start.at)) / 1000;
      if (sum - allowed > worst.excess)
        worst = { excess: sum - allowed, from: start.at, to: end.at, granted: sum };
    }
  }
  return worst;
}

function assertWithinBucket(grants: readonly Grant[], bucket: BucketSpec, what: string): void {
  const worst = worstWindow(grants, bucket);
  assert.ok(
    worst.excess <= TOLERANCE,
    `${what}: ${worst.granted} tokens granted in [${worst.from}, ${worst.to}] ms, more than capacity ` +
      `${bucket.capacity} + ${bucket.refillPerSec}/s × ${(worst.to - worst.from) / 1000} s`,
  );
}

type BucketOp =
  | { readonly kind: "take"; readonly key: string; readonly dt: number; readonly n: number }
  /** Waits exactly the retryAfterMs of the last refused take of `key`, then takes the same n again. */
  | { readonly kind: "retry"; readonly key: string };

const bucketSpecArb = fc.record({
  capacity: fc.integer({ min: 1, max: 20 }), // the schema's domain: a whole number of tokens
  // 0, or at least a token per 1 000 s: slower rates overflow the ms arithmetic (see the test of tiny
  // refill rates below).
  refillPerSec: fc.oneof(
    fc.constant(0),
    fc.integer({ min: 1, max: 50 }),
    fc.double({ min: 0.001, max: 50, noNaN: true }),
  ),
});

const bucketOpsArb = fc.array(
  fc.oneof(
    {
      weight: 5,
      arbitrary: fc.record({
        kind: fc.constant("take" as const),
        key: fc.constantFrom("a", "b", "c"),
        dt: fc.oneof(
          fc.constant(0),
          fc.integer({ min: 0, max: 3_000 }),
          fc.double({ min: 0, max: 3_000, noNaN: true }),
        ),
        n: fc.oneof(
          fc.constant(1),
          fc.integer({ min: 0, max: 25 }),
          fc.double({ min: 0, max: 5, noNaN: true }),
        ),
      }),
    },
    {
      weight: 1,
      arbitrary: fc.record({ kind: fc.constant("retry" as const), key: fc.constantFrom("a", "b", "c") }),
    },
  ),
  { minLength: 1, maxLength: 100, size: "max" },
);

interface TakingStore {
  takeTokens(key: string, bucket: BucketSpec, n?: number): TakeResult;
}

/**
 * Runs the ops against a store on a fake clock and checks, per key: the window bound; that a
 * refusal's retryAfterMs is Infinity exactly when waiting cannot help, and is otherwise enough (the
 * "retry" op waits exactly that long and must then be granted); that `remaining` stays in [0, capacity].
 */
function checkBucketOps(
  makeStore: (now: () => number) => TakingStore,
  bucket: BucketSpec,
  ops: readonly BucketOp[],
) {
  let now = 1_000;
  const store = makeStore(() => now);
  const grants = new Map<string, Grant[]>();
  const refused = new Map<string, { n: number; retryAfterMs: number }>();
  const take = (key: string, n: number) => {
    const result = store.takeTokens(key, bucket, n);
    assert.ok(
      result.remaining >= 0 && result.remaining <= bucket.capacity,
      `remaining ${result.remaining} is outside [0, ${bucket.capacity}]`,
    );
    if (result.ok) {
      assert.equal(result.retryAfterMs, 0, "a granted take has retryAfterMs 0");
      const list = grants.get(key) ?? [];
      list.push({ at: now, n });
      grants.set(key, list);
      refused.delete(key);
    } else {
      const hopeless = n > bucket.capacity || bucket.refillPerSec === 0;
      assert.equal(
        result.retryAfterMs === Number.POSITIVE_INFINITY,
        hopeless,
        `take(${n}) of a bucket ${JSON.stringify(bucket)} refused with retryAfterMs ${result.retryAfterMs}`,
      );
      refused.set(key, { n, retryAfterMs: result.retryAfterMs });
    }
    return result;
  };
  for (const op of ops) {
    if (op.kind === "take") {
      now += op.dt;
      take(op.key, op.n);
      continue;
    }
    const last = refused.get(op.key);
    if (!last || !Number.isFinite(last.retryAfterMs)) continue;
    now += last.retryAfterMs;
    const again = take(op.key, last.n);
    assert.ok(again.ok, `take(${last.n}) still refused after waiting its retryAfterMs ${last.retryAfterMs}`);
  }
  for (const [key, list] of grants) assertWithinBucket(list, bucket, `bucket "${key}"`);
}

/** A store whose buckets hold one token more than asked: the kind of bug the checker must catch. */
class OverGrantingStore extends MemoryStore {
  override takeTokens(key: string, bucket: BucketSpec, n = 1): TakeResult {
    const result = super.takeTokens(key, { ...bucket, capacity: bucket.capacity + 1 }, n);
    // Hides the extra token from `remaining`, so that only the window bound can give it away.
    return { ...result, remaining: Math.min(result.remaining, Math.floor(bucket.capacity)) };
  }
}

interface LimitSpec {
  readonly scope: "tool" | "server" | "global" | "principal";
  readonly perPrincipal: boolean;
  readonly capacity: number;
  readonly refill: { readonly perSecond: number } | { readonly perMinute: number };
}

const limitArb: fc.Arbitrary<LimitSpec> = fc.record({
  scope: fc.constantFrom("tool", "server", "global", "principal"),
  perPrincipal: fc.boolean(),
  capacity: fc.integer({ min: 1, max: 8 }),
  refill: fc.oneof(
    fc.record({ perSecond: fc.oneof(fc.constant(0), fc.double({ min: 0.001, max: 20, noNaN: true })) }),
    fc.record({ perMinute: fc.integer({ min: 0, max: 600 }) }),
  ),
});

/** What a limit's bucket is per, as the README describes `scope` and `perPrincipal`. */
const partitionOfLimit = (limit: LimitSpec) =>
  `${limit.scope}${limit.scope !== "principal" && limit.perPrincipal ? "+principal" : ""}`;

/** Limits for one rule whose buckets are of different kinds (no two can share a bucket). */
const distinctLimitsArb = fc.uniqueArray(limitArb, {
  minLength: 1,
  maxLength: 3,
  selector: partitionOfLimit,
});

const perSecond = (limit: LimitSpec) =>
  "perSecond" in limit.refill ? limit.refill.perSecond : limit.refill.perMinute / 60;

const toolsForLimits = [binding("s1__a"), binding("s1__b"), binding("s2__c")];
const principalsForLimits = ["alice", "bob", "carol"];

/**
 * Where limits are configured: one rule for every tool (`policies.rateLimit`), or a rule per tool
 * (`toolPolicies`, one list each).
 */
type LimitRules =
  | { readonly kind: "default"; readonly limits: readonly LimitSpec[] }
  | { readonly kind: "perTool"; readonly limits: readonly (readonly LimitSpec[])[] };

const anyRulesArb: fc.Arbitrary<LimitRules> = fc.oneof(
  fc.record({
    kind: fc.constant("default" as const),
    limits: fc.array(limitArb, { minLength: 1, maxLength: 3 }),
  }),
  fc.record({
    kind: fc.constant("perTool" as const),
    limits: fc.tuple(
      ...toolsForLimits.map(() => fc.array(limitArb, { minLength: 1, maxLength: 2 })),
    ) as fc.Arbitrary<LimitSpec[][]>,
  }),
);

const limitedCallsArb = fc.array(
  fc.record({
    dt: fc.oneof(fc.constant(0), fc.integer({ min: 0, max: 2_000 })),
    tool: fc.nat({ max: toolsForLimits.length - 1 }),
    who: fc.nat({ max: principalsForLimits.length - 1 }),
  }),
  { minLength: 1, maxLength: 80, size: "max" },
);

function limitConfig(limit: LimitSpec) {
  return {
    scope: limit.scope,
    perPrincipal: limit.perPrincipal,
    capacity: limit.capacity,
    ...("perSecond" in limit.refill
      ? { refillPerSecond: limit.refill.perSecond }
      : { refillPerMinute: limit.refill.perMinute }),
  };
}

/** The calls under one limit of one rule that must share its bucket: the README's meaning of scope. */
function groupOf(limit: LimitSpec, b: ToolBinding, principalId: string): string {
  const who = limit.scope === "principal" || limit.perPrincipal ? `|${principalId}` : "";
  switch (limit.scope) {
    case "global":
      return `everything under the rule${who}`;
    case "server":
      return `server ${b.server}${who}`;
    case "tool":
      return `tool ${b.exposedName}${who}`;
    case "principal":
      return `caller${who}`;
  }
}

/**
 * Calls through the runtime's rate-limit chains and checks that every limit of every rule holds for
 * the calls it governs: per rule and limit, and per bucket as its scope says, the calls that reached
 * the backend fit capacity + refill × window. (Whether two rules' buckets are one bucket does not
 * matter here: a subset of a bucket's calls fits it too.)
 */
async function checkLimitedCalls(
  rules: LimitRules,
  calls: readonly { dt: number; tool: number; who: number }[],
  makeStore: (now: () => number) => MemoryStore = (now) => new MemoryStore({ now }),
) {
  let now = 1_700_000_000_000;
  const clock = () => now;
  const store = makeStore(clock);
  const ruleOf = (tool: number) => (rules.kind === "default" ? 0 : tool);
  const limitsOf = (rule: number): readonly LimitSpec[] =>
    rules.kind === "default" ? rules.limits : (rules.limits[rule] ?? []);
  const rt =
    rules.kind === "default"
      ? runtime({ rateLimit: rules.limits.map(limitConfig) }, store, clock)
      : new PolicyRuntime(
          {
            policies: policySetSchema.parse({}),
            servers: {},
            toolPolicies: Object.fromEntries(
              toolsForLimits.map((b, i) => [
                b.exposedName,
                policySetSchema.parse({ rateLimit: limitsOf(i).map(limitConfig) }),
              ]),
            ),
          },
          {
            store,
            logger: silentLogger(),
            callTool: async () => text("unused"),
            now: clock,
            random: () => 0.5,
          },
        );
  const passed: { at: number; tool: number; who: string }[] = [];
  try {
    const handlers = toolsForLimits.map((b, tool) =>
      compose(rt.chainFor(b), async (_call, ctx) => {
        passed.push({ at: now, tool, who: ctx.principal.id });
        return text("ok");
      }),
    );
    for (const [i, step] of calls.entries()) {
      now += step.dt;
      const b = toolsForLimits[step.tool] as ToolBinding;
      const who = principalsForLimits[step.who] as string;
      await (handlers[step.tool] as CallHandler)(callOf(b), ctxOf(`c${i}`, who)).catch((error: unknown) => {
        assert.ok(error instanceof GatewayError && error.code === "rate_limited", `unexpected ${error}`);
      });
    }
  } finally {
    await rt.close();
    store.close();
  }
  const ruleCount = rules.kind === "default" ? 1 : toolsForLimits.length;
  for (let rule = 0; rule < ruleCount; rule++) {
    for (const [index, limit] of limitsOf(rule).entries()) {
      const groups = new Map<string, Grant[]>();
      for (const p of passed) {
        if (ruleOf(p.tool) !== rule) continue;
        const key = groupOf(limit, toolsForLimits[p.tool] as ToolBinding, p.who);
        const list = groups.get(key) ?? [];
        list.push({ at: p.at, n: 1 });
        groups.set(key, list);
      }
      const bucket = { capacity: limit.capacity, refillPerSec: perSecond(limit) };
      const where =
        rules.kind === "default"
          ? "policies.rateLimit"
          : `toolPolicies.${toolsForLimits[rule]?.exposedName}.rateLimit`;
      for (const [key, list] of groups) {
        assertWithinBucket(list, bucket, `${where}[${index}] ${JSON.stringify(limitConfig(limit))}, ${key}`);
      }
    }
  }
}

describe(`token bucket properties (FUZZ_SEED=${SEED})`, () => {
  test("memory store takeTokens: any window [t, t+w] grants at most capacity + refill × w; retryAfterMs is enough", () => {
    fc.assert(
      fc.property(bucketSpecArb, bucketOpsArb, (bucket, ops) => {
        checkBucketOps((now) => new MemoryStore({ now, maxBuckets: 10 }), bucket, ops);
      }),
      params(RUNS.bucket),
    );
  });

  test("the window checker flags a bucket that over-grants by one token", () => {
    const result = fc.check(
      fc.property(bucketSpecArb, bucketOpsArb, (bucket, ops) => {
        checkBucketOps((now) => new OverGrantingStore({ now, maxBuckets: 10 }), bucket, ops);
      }),
      params(RUNS.negative),
    );
    assert.ok(result.failed, "the over-granting bucket went unnoticed");
    assert.match(String(result.errorInstance), /more than capacity|refused with retryAfterMs/);
  });

  test("rate-limit policy (runtime chain, 1–3 limits of different kinds): calls that reach the backend fit every bucket", async () => {
    await fc.assert(
      fc.asyncProperty(distinctLimitsArb, limitedCallsArb, (limits, calls) =>
        checkLimitedCalls({ kind: "default", limits }, calls),
      ),
      params(RUNS.policy),
    );
  });

  test("the policy checker flags the policy over an over-granting store", async () => {
    const result = await fc.check(
      fc.asyncProperty(distinctLimitsArb, limitedCallsArb, (limits, calls) =>
        checkLimitedCalls({ kind: "default", limits }, calls, (now) => new OverGrantingStore({ now })),
      ),
      params(RUNS.negative),
    );
    assert.ok(result.failed, "the over-granting store went unnoticed");
    assert.match(String(result.errorInstance), /more than capacity/);
  });

  test("rate-limit policy, any rules and lists (same scope twice, rules per tool): every limit holds for the calls it governs", async () => {
    await fc.assert(
      fc.asyncProperty(anyRulesArb, limitedCallsArb, (rules, calls) => checkLimitedCalls(rules, calls)),
      params(RUNS.policy),
    );
  });

  test("two limits of the same scope in one list (a burst and a sustained rate) are both enforced", async () => {
    // 5 at once and 5 a second, but no more than 20 at once and 1 a minute after that. Both limits
    // draw on one bucket ("rl:tool:s1__a"), each refilling it at its own rate: the fast one refills
    // what the slow one then takes, so the 1-a-minute limit lets 2.5 a second through.
    const limits: LimitSpec[] = [
      { scope: "tool", perPrincipal: false, capacity: 5, refill: { perSecond: 5 } },
      { scope: "tool", perPrincipal: false, capacity: 20, refill: { perMinute: 1 } },
    ];
    const calls = Array.from({ length: 60 }, () => ({ dt: 400, tool: 0, who: 0 }));
    await checkLimitedCalls({ kind: "default", limits }, calls);
  });

  test("two rules' global limits are separate buckets (README: one bucket for everything under the rule)", async () => {
    // The README's own pair: db__report's global limit, burst 5 and 30/min, and crm__*'s global limit,
    // burst 100 and 10/s. Both are "rl:global": crm's calls refill db__report's bucket at 10/s.
    const limits: LimitSpec[][] = [
      [{ scope: "global", perPrincipal: false, capacity: 5, refill: { perMinute: 30 } }],
      [{ scope: "global", perPrincipal: false, capacity: 100, refill: { perSecond: 10 } }],
      [{ scope: "tool", perPrincipal: false, capacity: 1, refill: { perSecond: 1 } }],
    ];
    // Every 500 ms a crm call, then a db__report call.
    const calls = Array.from({ length: 60 }, (_, i) => ({
      dt: i % 2 === 0 ? 500 : 0,
      tool: i % 2 === 0 ? 1 : 0,
      who: 0,
    }));
    await checkLimitedCalls({ kind: "perTool", limits }, calls);
  });

  test("a limit with a tiny (schema-valid) refill rate refuses with rate_limited, not an internal RangeError", async () => {
    // Found by the window property above when its rates went down to 5e-306/s: a finite retryAfterMs
    // past what a Date can hold (about 8.6e15 ms) makes the rejection's message throw. Rates from
    // 1e-300/s to 1e-13/s, or refillPerMinute 6e-12, are enough.
    await fc.assert(
      fc.asyncProperty(
        fc.oneof(
          fc.record({ refillPerSecond: fc.double({ min: 1e-300, max: 1e-13, noNaN: true }) }),
          fc.record({ refillPerMinute: fc.double({ min: 1e-300, max: 6e-12, noNaN: true }) }),
        ),
        async (refill) => {
          let now = 1_700_000_000_000;
          const store = new MemoryStore({ now: () => now });
          const rt = runtime({ rateLimit: { capacity: 1, ...refill } }, store, () => now);
          const b = binding("s1__a");
          const handler = compose(rt.chainFor(b), async () => text("ok"));
          try {
            await handler(callOf(b), ctxOf("c1", "alice"));
            now += 1;
            const error = await handler(callOf(b), ctxOf("c2", "alice")).then(
              () => undefined,
              (e: unknown) => e,
            );
            assert.ok(
              error instanceof GatewayError && error.code === "rate_limited",
              `refill ${JSON.stringify(refill)}: the second call failed with ${String(error)}`,
            );
          } finally {
            await rt.close();
            store.close();
          }
        },
      ),
      params(50),
    );
  });
});

// ---------------------------------------------------------------------------------------------------
// Circuit breaker
// ---------------------------------------------------------------------------------------------------

type BreakerOp =
  | { readonly kind: "start" }
  | {
      readonly kind: "end";
      readonly pick: number;
      readonly how: "ok" | "isError" | "fail" | "timeout" | "reject" | "cancel";
    }
  | { readonly kind: "advance"; readonly dt: number };

const breakerOptionsArb = fc.record({
  consecutiveFailures: fc.integer({ min: 1, max: 3 }),
  openMs: fc.integer({ min: 1, max: 1_000 }),
  halfOpenMaxCalls: fc.integer({ min: 1, max: 4 }),
  countIsError: fc.boolean(),
});

const breakerOpsArb = fc.array(
  fc.oneof(
    { weight: 4, arbitrary: fc.constant<BreakerOp>({ kind: "start" }) },
    {
      weight: 4,
      arbitrary: fc.record({
        kind: fc.constant("end" as const),
        pick: fc.nat(),
        how: fc.constantFrom("ok", "isError", "fail", "fail", "timeout", "reject", "cancel"),
      }),
    },
    {
      weight: 2,
      arbitrary: fc.record({ kind: fc.constant("advance" as const), dt: fc.integer({ min: 0, max: 1_500 }) }),
    },
  ),
  { minLength: 1, maxLength: 80, size: "max" },
);

interface BreakerHarness {
  readonly handler: CallHandler;
  state(): "closed" | "open" | "half-open";
  close(): Promise<void>;
}

type BreakerOptions = ReturnType<typeof circuitBreakerSchema.parse>;

/** The breaker as the runtime wires it: runtime chain (circuit breaker ▸ timeout) over `next`. */
function realBreaker(
  options: BreakerOptions,
  now: () => number,
  onEvent: (e: BreakerEvent) => void,
  next: CallHandler,
): BreakerHarness {
  const store = new MemoryStore({ now });
  const rt = runtime({ circuitBreaker: options }, store, now);
  rt.on("breaker", onEvent);
  const b = binding("db__query");
  const handler = compose(rt.chainFor(b), next);
  return {
    handler,
    state: () => rt.breakerStates()[0]?.state ?? "closed",
    close: async () => {
      await rt.close();
      store.close();
    },
  };
}

/** A breaker policy with a slot leak: it hands each probe's slot back as soon as it is admitted. */
function leakyBreaker(
  options: BreakerOptions,
  now: () => number,
  onEvent: (e: BreakerEvent) => void,
  next: CallHandler,
): BreakerHarness {
  const b = binding("db__query");
  const emit = ((event: string, payload: unknown) => {
    if (event === "breaker") onEvent(payload as BreakerEvent);
  }) as PolicyEnv["emit"];
  const breaker = new CircuitBreaker("db", options, now, emit);
  const env: PolicyEnv = {
    binding: b,
    store: new MemoryStore({ now }),
    logger: silentLogger(),
    now,
    random: () => 0.5,
    emit,
  };
  const leaky: Policy = (inner) => async (call, ctx) => {
    const ticket = breaker.enter(b);
    breaker.ignore(ticket); // the bug: the slot is freed while the probe is still running
    try {
      const result = await inner(call, ctx);
      breaker.success(ticket);
      return result;
    } catch (error) {
      breaker.failure(ticket, String(error));
      throw error;
    }
  };
  return {
    handler: compose([leaky, timeoutPolicy(60_000, env)], next),
    state: () => breaker.state,
    close: async () => undefined,
  };
}

type MakeBreaker = typeof realBreaker;

/**
 * Runs the ops and checks, at every admission: a call is never admitted while open; in half-open, the
 * probes of the current half-open period that have not finished never exceed halfOpenMaxCalls; and
 * while fewer are running, a call is admitted (a probe slot never leaks away for good). "Finished" is
 * as the breaker sees it: a cancelled probe is finished when its caller gives up, whatever its
 * backend call still does. Calls admitted before the circuit last opened (closed-state calls, or the
 * probes of an earlier half-open period) are not probes of this period and are not counted: the
 * breaker deliberately ignores their outcomes (epochs).
 */
async function checkBreakerOps(make: MakeBreaker, rawOptions: unknown, ops: readonly BreakerOp[]) {
  const options = circuitBreakerSchema.parse(rawOptions);
  let now = 1_700_000_000_000;
  let period = 0;
  interface Running {
    readonly id: number;
    readonly controller: AbortController;
    readonly backend: ReturnType<typeof deferred<CallToolResult>>;
    readonly probeOf: number | undefined;
    done: boolean;
  }
  const started = new Map<string, ReturnType<typeof deferred<CallToolResult>>>();
  const next: CallHandler = (_call, ctx) => {
    const backend = deferred<CallToolResult>();
    started.set(ctx.requestId, backend);
    return backend.promise;
  };
  const harness = make(
    options,
    () => now,
    (event) => {
      if (event.to === "half-open") period++;
    },
    next,
  );
  const running: Running[] = [];
  const inFlightProbes = () => running.filter((r) => !r.done && r.probeOf === period).length;
  let ids = 0;
  try {
    for (const op of ops) {
      if (op.kind === "advance") {
        now += op.dt;
      } else if (op.kind === "start") {
        const id = ids++;
        const controller = new AbortController();
        const before = harness.state(); // moves open → half-open when due, as enter() would
        const probesBefore = inFlightProbes();
        const promise = harness.handler(
          { server: "db", tool: "query", args: {} },
          ctxOf(`c${id}`, "p", controller.signal),
        );
        const backend = started.get(`c${id}`);
        const admitted = backend !== undefined;
        promise.catch(() => undefined);
        assert.ok(!(before === "open" && admitted), "a call was admitted while the circuit was open");
        if (before === "half-open") {
          if (probesBefore < options.halfOpenMaxCalls) {
            assert.ok(
              admitted,
              `a call was refused in half-open with ${probesBefore} of ${options.halfOpenMaxCalls} probes running`,
            );
          }
        }
        if (admitted) {
          const entry: Running = {
            id,
            controller,
            backend,
            probeOf: before === "half-open" ? period : undefined,
            done: false,
          };
          running.push(entry);
          void promise.then(
            () => {
              entry.done = true;
            },
            () => {
              entry.done = true;
            },
          );
          assert.ok(
            inFlightProbes() <= options.halfOpenMaxCalls,
            `${inFlightProbes()} probes running at once in half-open; halfOpenMaxCalls is ${options.halfOpenMaxCalls}`,
          );
        }
      } else {
        const open = running.filter((r) => !r.done);
        const target = open[op.pick % Math.max(1, open.length)];
        if (!target) continue;
        switch (op.how) {
          case "ok":
            target.backend.resolve(text("ok"));
            break;
          case "isError":
            target.backend.resolve(text("tool said no", true));
            break;
          case "fail":
            target.backend.reject(new GatewayError("backend_unavailable", "connection refused"));
            break;
          case "timeout":
            target.backend.reject(new GatewayError("timeout", "timed out"));
            break;
          case "reject":
            target.backend.reject(new GatewayError("invalid_arguments", "bad arguments"));
            break;
          case "cancel":
            target.controller.abort();
            break;
        }
      }
      await flush();
    }
  } finally {
    for (const r of running) r.backend.resolve(text("late"));
    await flush();
    await harness.close();
  }
}

describe(`circuit breaker properties (FUZZ_SEED=${SEED})`, () => {
  test("half-open never lets more than halfOpenMaxCalls probes run at once, whatever the interleaving", async () => {
    await fc.assert(
      fc.asyncProperty(breakerOptionsArb, breakerOpsArb, (options, ops) =>
        checkBreakerOps(realBreaker, options, ops),
      ),
      params(RUNS.breaker),
    );
  });

  test("the checker flags a breaker that leaks probe slots", async () => {
    const result = await fc.check(
      fc.asyncProperty(breakerOptionsArb, breakerOpsArb, (options, ops) =>
        checkBreakerOps(leakyBreaker, options, ops),
      ),
      params(RUNS.negative),
    );
    assert.ok(result.failed, "the leaking breaker went unnoticed");
    assert.match(String(result.errorInstance), /probes running at once/);
  });
});

// ---------------------------------------------------------------------------------------------------
// Result cache
// ---------------------------------------------------------------------------------------------------

/** Principal ids chosen to collide under careless key building. */
const PRINCIPALS = ["alice", "bob", "", "alice ", "__proto__", 'a"b', "anonymous", "a:b"];
/** Arguments; the 4th and 5th differ only in key order, so they are the same call. */
const ARGS: readonly Record<string, unknown>[] = [
  {},
  { q: "a" },
  { q: "b" },
  { q: "a", n: 1 },
  { n: 1, q: "a" },
  { q: ["a"] },
  { q: {} },
  { q: "a", n: 1.5 },
];

function canonical(value: unknown): string {
  if (Array.isArray(value)) return `[${value.map(canonical).join(",")}]`;
  if (value !== null && typeof value === "object") {
    const entries = Object.entries(value as Record<string, unknown>).sort(([a], [b]) =>
      a < b ? -1 : a > b ? 1 : 0,
    );
    return `{${entries.map(([k, v]) => `${JSON.stringify(k)}:${canonical(v)}`).join(",")}}`;
  }
  return JSON.stringify(value);
}

type CacheOp =
  /** `now`: the backend answers at once (successfully) instead of when an "answer" op says so. */
  | { readonly kind: "call"; readonly who: number; readonly args: number; readonly now: boolean }
  | { readonly kind: "answer"; readonly pick: number; readonly isError: boolean }
  | { readonly kind: "advance"; readonly dt: number }
  | { readonly kind: "invalidate" };

const cacheOpsArb = fc.array(
  fc.oneof(
    {
      weight: 8,
      arbitrary: fc.record({
        kind: fc.constant("call" as const),
        // Mostly two principals and three argument sets, so that calls repeat and hit.
        who: fc.oneof({ weight: 4, arbitrary: fc.nat({ max: 1 }) }, fc.nat({ max: PRINCIPALS.length - 1 })),
        args: fc.oneof({ weight: 4, arbitrary: fc.nat({ max: 2 }) }, fc.nat({ max: ARGS.length - 1 })),
        now: fc.boolean(),
      }),
    },
    {
      weight: 5,
      arbitrary: fc.record({
        kind: fc.constant("answer" as const),
        pick: fc.nat(),
        isError: fc.boolean(),
      }),
    },
    {
      weight: 3,
      arbitrary: fc.record({ kind: fc.constant("advance" as const), dt: fc.integer({ min: 0, max: 3_000 }) }),
    },
    { weight: 1, arbitrary: fc.constant<CacheOp>({ kind: "invalidate" }) },
  ),
  { minLength: 1, maxLength: 80, size: "max" },
);

/** A store that keeps entries forever, whatever TTL it is given. */
class TtlIgnoringStore extends MemoryStore {
  override set(key: string, value: string, opts: { ttlMs?: number; tags?: readonly string[] } = {}): void {
    super.set(key, value, opts.tags ? { tags: opts.tags } : {});
  }
}

interface CacheSetup {
  readonly ttlMs: number;
  readonly shared?: boolean;
  readonly makeStore?: (now: () => number) => MemoryStore;
}

/**
 * Calls a read-only tool through the runtime's cache chain; the backend answers when an op says so,
 * with a value naming the backend call that produced it. Checks every answer a caller gets: produced
 * for the same principal (the partition) and the same arguments, at most ttlMs ago, and by a backend
 * call that started after the last invalidation before the caller's call started. And that the cache
 * works: a call whose answer is stored and fresh, or is being fetched by an identical call, does not
 * reach the backend.
 */
async function checkCacheOps(setup: CacheSetup, ops: readonly CacheOp[]) {
  let now = 1_700_000_000_000;
  const clock = () => now;
  const store = setup.makeStore?.(clock) ?? new MemoryStore({ now: clock });
  const rt = runtime({ cache: { ttlMs: setup.ttlMs, shared: setup.shared ?? false } }, store, clock);
  const b = binding("kv__get", { readOnlyHint: true });

  interface Produced {
    readonly who: string;
    readonly key: string;
    readonly startSeq: number;
    readonly epochAtStart: number;
    producedAt?: number;
    isError?: boolean;
  }
  const produced: Produced[] = [];
  const waiting: { readonly index: number; readonly backend: ReturnType<typeof deferred<CallToolResult>> }[] =
    [];
  const backendCallsOf = new Map<string, number>();
  let seq = 0;
  let epoch = 0;
  let lastInvalidationSeq = -1;

  const handler = compose(rt.chainFor(b), (call, ctx) => {
    const index = produced.length;
    produced.push({
      who: ctx.principal.id,
      key: canonical(call.args),
      startSeq: seq,
      epochAtStart: epoch,
    });
    backendCallsOf.set(ctx.requestId, (backendCallsOf.get(ctx.requestId) ?? 0) + 1);
    const backend = deferred<CallToolResult>();
    if (answerAtOnce) answer({ index, backend }, false);
    else waiting.push({ index, backend });
    return backend.promise;
  });
  let answerAtOnce = false;

  /** What the model knows is stored per (principal, args): when, and whether a drop came after. */
  const stored = new Map<string, { at: number; epoch: number }>();
  const partitionOf = (who: string) => (setup.shared ? "" : who);

  interface Outcome {
    readonly who: string;
    readonly key: string;
    readonly startSeq: number;
    readonly invalidationSeq: number;
    readonly requestId: string;
    readonly mustNotCallBackend: boolean;
    result?: CallToolResult;
    receivedAt?: number;
    error?: unknown;
  }
  const outcomes: Outcome[] = [];
  const problems: string[] = [];

  const answer = (
    slot: { index: number; backend: ReturnType<typeof deferred<CallToolResult>> },
    isError: boolean,
  ) => {
    const record = produced[slot.index] as Produced;
    record.producedAt = now;
    record.isError = isError;
    if (!isError && record.epochAtStart === epoch) {
      stored.set(`${partitionOf(record.who)}\u0000${record.key}`, { at: now, epoch });
    }
    slot.backend.resolve(text(JSON.stringify({ v: slot.index }), isError));
  };

  try {
    for (const op of ops) {
      seq++;
      if (op.kind === "advance") {
        now += op.dt;
      } else if (op.kind === "invalidate") {
        epoch++;
        lastInvalidationSeq = seq;
        await rt.invalidateTools(["kv__get"]);
      } else if (op.kind === "answer") {
        const slot = waiting.splice(op.pick % Math.max(1, waiting.length), 1)[0];
        if (slot) answer(slot, op.isError);
      } else {
        const who = PRINCIPALS[op.who] as string;
        const args = structuredClone(ARGS[op.args] as Record<string, unknown>);
        const key = canonical(args);
        const entry = stored.get(`${partitionOf(who)}\u0000${key}`);
        const fresh = entry !== undefined && entry.epoch === epoch && now - entry.at <= setup.ttlMs;
        const leading = produced.some(
          (p) =>
            p.producedAt === undefined &&
            p.epochAtStart === epoch &&
            p.key === key &&
            partitionOf(p.who) === partitionOf(who),
        );
        const outcome: Outcome = {
          who,
          key,
          startSeq: seq,
          invalidationSeq: lastInvalidationSeq,
          requestId: `c${seq}`,
          mustNotCallBackend: fresh || leading,
        };
        outcomes.push(outcome);
        answerAtOnce = op.now;
        handler(callOf(b, args), ctxOf(outcome.requestId, who)).then(
          (result) => {
            outcome.result = result as CallToolResult;
            outcome.receivedAt = now;
          },
          (error: unknown) => {
            outcome.error = error;
          },
        );
      }
      await flush();
    }
    while (waiting.length > 0) answer(waiting.shift() as (typeof waiting)[number], false);
    await flush();
  } finally {
    await rt.close();
    store.close();
  }

  for (const o of outcomes) {
    const label = `call ${o.requestId} by ${JSON.stringify(o.who)} with ${o.key}`;
    if (o.error !== undefined) {
      problems.push(`${label} failed: ${String(o.error)}`);
      continue;
    }
    if (!o.result || o.receivedAt === undefined) {
      problems.push(`${label} never finished`);
      continue;
    }
    const v = (JSON.parse(firstText(o.result)) as { v: number }).v;
    const source = produced[v] as Produced;
    if (source.who !== o.who) {
      problems.push(`${label} got the answer produced for principal ${JSON.stringify(source.who)}`);
    }
    if (source.key !== o.key) problems.push(`${label} got the answer produced for arguments ${source.key}`);
    const age = o.receivedAt - (source.producedAt as number);
    if (age > setup.ttlMs) problems.push(`${label} got an answer ${age} ms old; ttlMs is ${setup.ttlMs}`);
    if (source.startSeq <= o.invalidationSeq) {
      problems.push(`${label} got an answer from before the invalidation at step ${o.invalidationSeq}`);
    }
    if (o.mustNotCallBackend && (backendCallsOf.get(o.requestId) ?? 0) > 0) {
      problems.push(`${label} reached the backend although its answer was cached or being fetched`);
    }
  }
  assert.deepEqual(problems, [], problems.join("\n"));
}

const ttlArb = fc.integer({ min: 1, max: 5_000 });

describe(`result cache properties (FUZZ_SEED=${SEED})`, () => {
  test("never served after its TTL, across principals, across arguments or across an invalidation; hits do happen", async () => {
    await fc.assert(
      fc.asyncProperty(ttlArb, cacheOpsArb, (ttlMs, ops) => checkCacheOps({ ttlMs }, ops)),
      params(RUNS.cache),
    );
  });

  test("the checker flags a cache shared across principals (cache.shared: true)", async () => {
    const result = await fc.check(
      fc.asyncProperty(ttlArb, cacheOpsArb, (ttlMs, ops) => checkCacheOps({ ttlMs, shared: true }, ops)),
      params(RUNS.negative),
    );
    assert.ok(result.failed, "a cache shared across principals went unnoticed");
    assert.match(String(result.errorInstance), /produced for principal/);
  });

  test("the checker flags a store that ignores TTLs", async () => {
    const result = await fc.check(
      fc.asyncProperty(ttlArb, cacheOpsArb, (ttlMs, ops) =>
        checkCacheOps({ ttlMs, makeStore: (now) => new TtlIgnoringStore({ now }) }, ops),
      ),
      params(RUNS.negative),
    );
    assert.ok(result.failed, "a store that ignores TTLs went unnoticed");
    assert.match(String(result.errorInstance), /ms old; ttlMs is/);
  });
});
