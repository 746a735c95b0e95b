/**
 * examples/policies.yaml is documentation people copy, so it is tested like code: it validates, each
 * rule means what its comment says, every rule aimed at the example's own servers matches a real tool,
 * and it runs against the reference servers it names.
 */
import assert from "node:assert/strict";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, before, describe, test } from "node:test";
import picomatch from "picomatch";
import { loadConfigFile } from "../../src/config/load.ts";
import type { Config } from "../../src/config/schema.ts";
import { Gateway } from "../../src/gateway/gateway.ts";
import { silentLogger } from "../../src/observability/logger.ts";
import { compileToolRules, type PolicyConfig, resolvePolicies } from "../../src/policies/config.ts";
import { ROOT } from "../support/gateway-process.ts";

const EXAMPLE = join(ROOT, "examples/policies.yaml");
const tmp = mkdtempSync(join(tmpdir(), "switchboard-example-"));
const env = { ...process.env, SWITCHBOARD_MEMORY_FILE: join(tmp, "memory.jsonl") };

// Rules for tools the example's servers do not have: they document the rate-limit table for servers
// a user adds.
const FOR_OTHER_SERVERS = new Set(["*__query_database", "*__send_email", "*__fetch_url"]);

let config: Config;

before(async () => {
  config = await loadConfigFile(EXAMPLE, { env });
});

after(() => {
  rmSync(tmp, { recursive: true, force: true });
});

function effective(exposedName: string) {
  const policyConfig: PolicyConfig = {
    policies: config.policies,
    servers: Object.fromEntries(
      Object.entries(config.mcpServers).map(([name, s]) => [
        name,
        { policies: s.policies, timeoutMs: s.timeoutMs },
      ]),
    ),
    toolPolicies: config.toolPolicies,
  };
  const server = exposedName.split("__")[0] ?? "";
  return resolvePolicies(policyConfig, compileToolRules(config.toolPolicies), exposedName, server);
}

describe("examples/policies.yaml", () => {
  test("validates with loadConfigFile, and the rate-limit table means what it says", () => {
    const limit = (tool: string) =>
      effective(tool).rateLimit?.map((l) => [l.capacity, l.refillPerMinute, l.mode, l.scope]);
    assert.deepEqual(limit("db__query_database"), [[10, 60, "reject", "tool"]]);
    assert.deepEqual(limit("mail__send_email"), [[2, 10, "wait", "tool"]]);
    assert.deepEqual(limit("web__fetch_url"), [[5, 30, "reject", "tool"]]);
    assert.deepEqual(limit("everything__echo"), [[20, 100, "reject", "tool"]], "the default");
    assert.deepEqual(limit("memory__read_graph"), [
      [10, 60, "reject", "global"],
      [3, 20, "reject", "tool"],
    ]);
  });

  test("shows every policy", () => {
    const echo = effective("everything__echo");
    assert.equal(echo.timeoutMs, 30_000);
    assert.equal(echo.cache?.ttlMs, 5000);
    assert.equal(echo.retry?.maxAttempts, 3);
    assert.equal(echo.circuitBreaker?.consecutiveFailures, 5);
    assert.equal(effective("memory__search_nodes").bulkhead?.maxConcurrent, 4);
    assert.equal(effective("files__list_directory").cache?.shared, true);

    const read = effective("files__read_text_file");
    assert.equal(read.timeoutMs, 5000);
    assert.deepEqual(
      read.fallback?.chain.map((step) => Object.keys(step)[0]),
      ["tool", "cache", "static"],
    );

    for (const write of ["memory__create_entities", "memory__add_observations", "memory__delete_relations"]) {
      assert.deepEqual(effective(write).invalidates, [
        "memory__read_graph",
        "memory__search_nodes",
        "memory__open_nodes",
      ]);
    }
    assert.equal(effective("memory__read_graph").invalidates, undefined);

    const long = effective("everything__trigger-long-running-operation");
    assert.equal(long.timeoutMs, 120_000);
    assert.equal(long.retry, undefined);
    assert.equal(long.circuitBreaker, undefined);
    assert.equal(effective("everything__toggle-simulated-logging").retry?.safe, true);
  });

  describe("served", () => {
    let gateway: Gateway;

    before(async () => {
      gateway = new Gateway(config, silentLogger());
      await gateway.start();
    });
    after(async () => {
      await gateway?.close();
    });

    test("starts every server it names", () => {
      assert.deepEqual(
        gateway.backends().map((b) => [b.name, b.state]),
        [
          ["everything", "up"],
          ["memory", "up"],
          ["files", "up"],
          ["switchboard", "up"],
        ],
      );
    });

    test("every rule aimed at its own servers matches a real tool", () => {
      const names = gateway.catalog.tools().map((t) => t.name);
      for (const pattern of Object.keys(config.toolPolicies)) {
        if (FOR_OTHER_SERVERS.has(pattern)) continue;
        const matches = picomatch(pattern, { dot: true });
        assert.ok(
          names.some((name) => matches(name)),
          `"${pattern}" matches no tool`,
        );
      }
    });

    test("caches reads and drops them on a write", async () => {
      const entity = { name: `e-${process.pid}`, entityType: "test", observations: ["first"] };
      await gateway.callTool("memory__create_entities", { entities: [entity] });
      const first = await gateway.callTool("memory__read_graph", {});
      const second = await gateway.callTool("memory__read_graph", {});
      assert.equal(second._meta?.["switchboard/source"], "cache");
      assert.deepEqual(second.content, first.content);

      await gateway.callTool("memory__add_observations", {
        observations: [{ entityName: entity.name, contents: ["second"] }],
      });
      const third = await gateway.callTool("memory__read_graph", {});
      assert.notEqual(third._meta?.["switchboard/source"], "cache");
      assert.match(JSON.stringify(third.content), /second/);
    });
  });
});
