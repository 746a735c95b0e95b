/**
 * A plan is what a config means for a running gateway, worked out by a pure function; two plans diff
 * into what applying the second takes. What keeps a server's running backend, and what restarts it.
 */
import assert from "node:assert/strict";
import { describe, test } from "node:test";
import { validateConfig } from "../../../src/config/validate.ts";
import { buildPlan, diffPlans } from "../../../src/gateway/plan.ts";

const plan = (document: unknown) => buildPlan(validateConfig(document, { env: {} }));

const base = {
  mcpServers: {
    a: { command: "node", args: ["a.js"], env: { TOKEN: "x" } },
    b: { type: "http", url: "https://b.example.com/mcp" },
    off: { command: "node", args: ["off.js"], enabled: false },
  },
  backends: { docs: { type: "filesystem", root: "." } },
};

describe("buildPlan", () => {
  test("enabled servers in config order, each with its source, and the gateway's own tools last", () => {
    const servers = plan(base).servers;
    assert.deepEqual(
      servers.map((s) => [s.name, s.source.kind]),
      [
        ["a", "mcp"],
        ["b", "mcp"],
        ["docs", "builtin"],
        ["switchboard", "gateway-tools"],
      ],
    );
  });

  test("is pure: the same config gives the same plan", () => {
    assert.deepEqual(
      plan(base).servers.map((s) => s.launchKey),
      plan(structuredClone(base)).servers.map((s) => s.launchKey),
    );
  });
});

describe("diffPlans", () => {
  test("naming and policies keep a server's backend; launch settings restart it", () => {
    const next = structuredClone(base) as typeof base & { toolPolicies?: unknown };
    (next.mcpServers.a as Record<string, unknown>).prefix = "alpha";
    (next.mcpServers.a as Record<string, unknown>).policies = { timeout: 5000 };
    (next.mcpServers.b as Record<string, unknown>).url = "https://b2.example.com/mcp";
    const diff = diffPlans(plan(base), plan(next));
    assert.deepEqual(
      diff.kept.map((s) => s.name),
      ["a", "docs", "switchboard"],
    );
    assert.deepEqual(
      diff.restarted.map((s) => s.name),
      ["b"],
    );
    assert.equal(diff.chainsChanged, true, "a server's policies changed");
  });

  test("added, removed and enabled or disabled servers", () => {
    const next = structuredClone(base) as Record<string, Record<string, Record<string, unknown>>>;
    delete next.mcpServers?.b;
    (next.mcpServers as Record<string, Record<string, unknown>>).c = { command: "node", args: ["c.js"] };
    (next.mcpServers?.off as Record<string, unknown>).enabled = true;
    const diff = diffPlans(plan(base), plan(next));
    assert.deepEqual(diff.added.map((s) => s.name).sort(), ["c", "off"]);
    assert.deepEqual(
      diff.removed.map((s) => s.name),
      ["b"],
    );
    assert.equal(diff.chainsChanged, true);
  });

  test("an unchanged config changes nothing", () => {
    const diff = diffPlans(plan(base), plan(structuredClone(base)));
    assert.deepEqual([diff.added, diff.removed, diff.restarted], [[], [], []]);
    assert.equal(diff.chainsChanged, false);
  });

  test("access, signing and limits are part of the chains", () => {
    const next = { ...structuredClone(base), access: { rules: [{ allow: ["*"] }] } };
    assert.equal(diffPlans(plan(base), plan(next)).chainsChanged, true);
  });
});
