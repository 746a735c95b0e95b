import assert from "node:assert/strict";
import { describe, test } from "node:test";
import {
  compileToolRules,
  DEFAULT_TIMEOUT_MS,
  type PolicyConfig,
  type PolicySet,
  policySetSchema,
  resolvePolicies,
} from "../../../src/policies/config.ts";

const parse = (value: unknown): PolicySet => policySetSchema.parse(value);

function resolve(
  config: { policies?: unknown; servers?: Record<string, unknown>; toolPolicies?: Record<string, unknown> },
  exposedName: string,
  server: string,
) {
  const full: PolicyConfig = {
    policies: parse(config.policies ?? {}),
    servers: Object.fromEntries(
      Object.entries(config.servers ?? {}).map(([name, s]) => {
        const { timeoutMs, ...policies } = s as { timeoutMs?: number };
        return [name, { policies: parse(policies), ...(timeoutMs ? { timeoutMs } : {}) }];
      }),
    ),
    toolPolicies: Object.fromEntries(
      Object.entries(config.toolPolicies ?? {}).map(([k, v]) => [k, parse(v)]),
    ),
  };
  return resolvePolicies(full, compileToolRules(full.toolPolicies), exposedName, server);
}

describe("policy set schema", () => {
  test("fills in documented defaults", () => {
    const set = parse({ retry: {}, cache: {}, circuitBreaker: {}, bulkhead: {} });
    assert.deepEqual(set.retry, {
      maxAttempts: 3,
      baseDelayMs: 100,
      maxDelayMs: 5_000,
      factor: 2,
      jitter: "full",
      safe: false,
      retryOn: ["error", "timeout"],
      budget: { ratio: 0.2, minPerSec: 1, windowMs: 10_000 },
    });
    assert.deepEqual(set.cache, { ttlMs: 60_000, shared: false, maxEntryBytes: 1_048_576 });
    assert.deepEqual(set.circuitBreaker, {
      consecutiveFailures: 5,
      windowMs: 60_000,
      minCalls: 10,
      openMs: 30_000,
      halfOpenMaxCalls: 1,
      countIsError: false,
      shared: false,
    });
    assert.deepEqual(set.bulkhead, { maxConcurrent: 10, maxQueue: 100, maxQueueWaitMs: 30_000 });
  });

  test("rejects unknown keys at every level, with the path", () => {
    const top = policySetSchema.safeParse({ retries: {} });
    assert.equal(top.success, false);
    const nested = policySetSchema.safeParse({ cache: { ttl: 5 } });
    assert.equal(nested.success, false);
    assert.deepEqual(nested.error?.issues[0]?.path, ["cache"]);
    const step = policySetSchema.safeParse({ fallback: { chain: [{ tool: "a__b", argz: {} }] } });
    assert.equal(step.success, false);
  });

  test("a rate limit needs exactly one refill rate", () => {
    assert.equal(policySetSchema.safeParse({ rateLimit: { capacity: 5 } }).success, false);
    assert.equal(
      policySetSchema.safeParse({ rateLimit: { capacity: 5, refillPerSecond: 1, refillPerMinute: 60 } })
        .success,
      false,
    );
    const ok = parse({ rateLimit: { capacity: 10, refillPerMinute: 60 } });
    assert.deepEqual(ok.rateLimit, {
      capacity: 10,
      refillPerMinute: 60,
      scope: "tool",
      perPrincipal: false,
      mode: "reject",
      maxWaitMs: 30_000,
    });
  });

  test("every policy can be switched off with false, except the timeout", () => {
    for (const key of [
      "retry",
      "bulkhead",
      "circuitBreaker",
      "fallback",
      "rateLimit",
      "cache",
      "invalidates",
    ]) {
      assert.equal(policySetSchema.safeParse({ [key]: false }).success, true, key);
    }
    assert.equal(policySetSchema.safeParse({ timeout: false }).success, false);
  });
});

describe("policy resolution: most specific wins, per policy key", () => {
  const config = {
    policies: {
      cache: { ttlMs: 1_000 },
      retry: { maxAttempts: 2 },
      rateLimit: { capacity: 20, refillPerMinute: 100 },
    },
    servers: { crm: { cache: { ttlMs: 2_000 }, timeoutMs: 7_000 } },
    toolPolicies: {
      "crm__*": { cache: { ttlMs: 3_000 } },
      "crm__get_*": { cache: { ttlMs: 4_000, shared: true } },
      crm__get_user: { cache: { ttlMs: 5_000 } },
      "*__send_email": { rateLimit: { capacity: 2, refillPerMinute: 10 }, retry: false },
    },
  };

  test("exact name beats every glob", () => {
    const p = resolve(config, "crm__get_user", "crm");
    // Replaced entirely: `shared` from the glob rule is not inherited, the default comes back.
    assert.deepEqual(p.cache, { ttlMs: 5_000, shared: false, maxEntryBytes: 1_048_576 });
  });

  test("a glob with more literal characters beats one with fewer, whatever the config order", () => {
    assert.equal(resolve(config, "crm__get_account", "crm").cache?.ttlMs, 4_000);
    const reversed = {
      ...config,
      toolPolicies: {
        "crm__get_*": config.toolPolicies["crm__get_*"],
        "crm__*": config.toolPolicies["crm__*"],
      },
    };
    assert.equal(resolve(reversed, "crm__get_account", "crm").cache?.ttlMs, 4_000);
  });

  test("a glob beats the server, the server beats global", () => {
    assert.equal(resolve(config, "crm__update_user", "crm").cache?.ttlMs, 3_000);
    const noRules = { policies: config.policies, servers: config.servers };
    assert.equal(resolve(noRules, "crm__update_user", "crm").cache?.ttlMs, 2_000);
    assert.equal(resolve(noRules, "db__query", "db").cache?.ttlMs, 1_000);
  });

  test("keys a rule does not mention are inherited; false switches one off", () => {
    const email = resolve(config, "mail__send_email", "mail");
    assert.equal(email.retry, undefined);
    assert.deepEqual(
      email.rateLimit?.map((l) => [l.capacity, l.refillPerMinute]),
      [[2, 10]],
    );
    assert.equal(email.cache?.ttlMs, 1_000, "cache inherited from global");
    const other = resolve(config, "db__query", "db");
    assert.equal(other.retry?.maxAttempts, 2);
  });

  test("equally specific globs: the one written later wins", () => {
    const cfg = { toolPolicies: { "a*": { timeout: 1_000 }, "*b": { timeout: 2_000 } } };
    assert.equal(resolve(cfg, "ab", "x").timeoutMs, 2_000);
    const swapped = { toolPolicies: { "*b": { timeout: 2_000 }, "a*": { timeout: 1_000 } } };
    assert.equal(resolve(swapped, "ab", "x").timeoutMs, 1_000);
  });

  test("timeout: tool or policy value, else the server's timeoutMs, else the default", () => {
    assert.equal(resolve(config, "crm__get_user", "crm").timeoutMs, 7_000);
    assert.equal(resolve(config, "db__query", "db").timeoutMs, DEFAULT_TIMEOUT_MS);
    const withTool = { ...config, toolPolicies: { crm__get_user: { timeout: 500 } } };
    assert.equal(resolve(withTool, "crm__get_user", "crm").timeoutMs, 500);
  });

  test("a single rate limit and a list both resolve to a list", () => {
    const p = resolve(
      {
        policies: {
          rateLimit: [
            { scope: "global", capacity: 100, refillPerSecond: 10 },
            { scope: "principal", capacity: 10, refillPerSecond: 1 },
          ],
        },
      },
      "a__b",
      "a",
    );
    assert.deepEqual(
      p.rateLimit?.map((l) => l.scope),
      ["global", "principal"],
    );
  });

  test("nothing configured: only the timeout", () => {
    assert.deepEqual(resolve({}, "a__b", "a"), { timeoutMs: DEFAULT_TIMEOUT_MS });
  });
});
