import assert from "node:assert/strict";
import { describe, test } from "node:test";
import {
  gatewayToolsSchema,
  isRequiredServer,
  observabilitySchema,
  unknownRequiredServers,
} from "../../../src/observability/config.ts";

function problems(input: unknown): string[] {
  const parsed = observabilitySchema.safeParse(input);
  assert.equal(parsed.success, false, "expected the config to be refused");
  return parsed.error?.issues.map((issue) => `${issue.path.join(".")}: ${issue.message}`) ?? [];
}

describe("observability config", () => {
  test("every option has its default", () => {
    assert.deepEqual(observabilitySchema.parse({}), {
      metrics: { enabled: true, path: "/metrics", defaultMetrics: true, prefix: "switchboard_" },
      tracing: { enabled: false, serviceName: "switchboard", sampleRatio: 1 },
      health: { timeoutMs: 2000, cacheMs: 1000, required: [], eventLoopLagMs: 200, heapUsedRatio: 0.9 },
    });
    assert.deepEqual(gatewayToolsSchema.parse({}), { health: true, metrics: true });
  });

  test("accepts a full config", () => {
    const config = observabilitySchema.parse({
      metrics: { enabled: false, path: "/internal/metrics", defaultMetrics: false, prefix: "" },
      tracing: {
        enabled: true,
        serviceName: "gw",
        otlp: { url: "https://otel.example.com/v1/traces", headers: { Authorization: "Bearer x" } },
        sampleRatio: 0.25,
      },
      health: { timeoutMs: 500, cacheMs: 0, required: ["db"], eventLoopLagMs: 50, heapUsedRatio: 0.8 },
    });
    assert.deepEqual(config.tracing.otlp, {
      url: "https://otel.example.com/v1/traces",
      headers: { Authorization: "Bearer x" },
    });
    assert.deepEqual(
      observabilitySchema.parse({ tracing: { otlp: { url: "http://localhost:4318/v1/traces" } } }).tracing
        .otlp,
      { url: "http://localhost:4318/v1/traces", headers: {} },
    );
  });

  test("refuses unknown keys and bad values, naming where", () => {
    assert.deepEqual(problems({ metric: {} }), [': Unrecognized key: "metric"']);
    assert.match(problems({ metrics: { prefx: "x" } })[0] ?? "", /^metrics: Unrecognized key: "prefx"/);
    assert.match(problems({ metrics: { prefix: "9bad" } })[0] ?? "", /^metrics\.prefix: /);
    assert.match(problems({ metrics: { path: "metrics" } })[0] ?? "", /^metrics\.path: must start with "\/"/);
    assert.match(problems({ tracing: { sampleRatio: 1.5 } })[0] ?? "", /^tracing\.sampleRatio: /);
    assert.match(
      problems({ tracing: { otlp: { url: "ftp://x" } } })[0] ?? "",
      /^tracing\.otlp\.url: must be an http/,
    );
    assert.match(problems({ tracing: { otlp: {} } })[0] ?? "", /^tracing\.otlp\.url: /);
    assert.match(problems({ health: { timeoutMs: 0 } })[0] ?? "", /^health\.timeoutMs: /);
    assert.match(problems({ health: { heapUsedRatio: 0 } })[0] ?? "", /^health\.heapUsedRatio: /);
    assert.match(problems({ health: { required: [""] } })[0] ?? "", /^health\.required\.0: /);
    assert.equal(gatewayToolsSchema.safeParse({ healt: true }).success, false);
  });

  test("required servers", () => {
    const all = observabilitySchema.parse({}).health;
    const some = observabilitySchema.parse({ health: { required: ["db", "ghost"] } }).health;
    assert.equal(isRequiredServer(all, "anything"), false, "none is required by default");
    assert.equal(isRequiredServer(some, "db"), true);
    assert.equal(isRequiredServer(some, "web"), false);
    assert.deepEqual(unknownRequiredServers(some, ["db", "web"]), ["ghost"]);
    assert.deepEqual(unknownRequiredServers(all, ["db"]), []);
  });
});
