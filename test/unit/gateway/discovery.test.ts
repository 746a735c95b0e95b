/**
 * Discovery modes: what the config accepts (`gateway.discovery`, `profiles.<name>.discovery`,
 * `gatewayTools.search`), and what an endpoint offers and lists in each mode.
 */
import assert from "node:assert/strict";
import { describe, test } from "node:test";
import { validateConfig } from "../../../src/config/validate.ts";
import { discoveryView } from "../../../src/gateway/discovery.ts";
import { buildPlan } from "../../../src/gateway/plan.ts";

const servers = { mcpServers: { fx: { command: "node" } } };
const SEARCH = "switchboard__search_tools";
const CALL = "switchboard__call_tool";

describe("config", () => {
  test('"search" is short for { mode: "search" }; the default is full', () => {
    const config = validateConfig({ ...servers, gateway: { discovery: "search" } });
    assert.deepEqual(config.gateway.discovery, { mode: "search", alwaysOn: [] });
    assert.deepEqual(validateConfig(servers).gateway.discovery, { mode: "full", alwaysOn: [] });
    const profile = validateConfig({
      ...servers,
      profiles: { agents: { discovery: { mode: "search", alwaysOn: ["fx__echo"] } } },
    }).profiles.agents;
    assert.deepEqual(profile?.discovery, { mode: "search", alwaysOn: ["fx__echo"] });
  });

  test("refuses an unknown mode and gatewayTools.search: false with a search endpoint", () => {
    assert.throws(() => validateConfig({ ...servers, gateway: { discovery: "lazy" } }), /gateway\.discovery/);
    assert.throws(
      () => validateConfig({ ...servers, gateway: { discovery: "search" }, gatewayTools: { search: false } }),
      /gatewayTools\.search.*discovery "search"/s,
    );
  });

  test("the search tools exist only when some endpoint searches, or gatewayTools.search says so", () => {
    const own = (input: object) =>
      buildPlan(validateConfig({ ...servers, ...input })).servers.find((s) => s.name === "switchboard")
        ?.source;
    assert.deepEqual(own({}), { kind: "gateway-tools", health: true, metrics: true, search: false });
    assert.equal((own({ profiles: { a: { discovery: "search" } } }) as { search: boolean }).search, true);
    assert.equal((own({ gatewayTools: { search: true } }) as { search: boolean }).search, true);
    assert.equal(
      own({ gateway: { discovery: "search" }, gatewayTools: { health: false, metrics: false } })?.kind,
      "gateway-tools",
      "the server of the gateway's tools runs for the search tools alone",
    );
  });
});

describe("discoveryView", () => {
  const settings = (input: object) => validateConfig({ ...servers, ...input });

  test("search mode lists the search tools and the always-on globs, and offers everything", () => {
    const config = settings({ gateway: { discovery: { mode: "search", alwaysOn: ["fx__e*"] } } });
    const view = discoveryView(config.gateway.discovery, config);
    assert.equal(view.everything, false);
    assert.ok(view.lists?.("switchboard", SEARCH) && view.lists("switchboard", CALL));
    assert.ok(view.lists?.("fx", "fx__echo"));
    assert.equal(view.lists?.("fx", "fx__stats"), false);
    assert.equal(view.lists?.("fx", SEARCH), false, "only the gateway's own search tool is one");
    assert.ok(view.offers("fx", "fx__stats"));
  });

  test("a full-mode endpoint does not offer search tools that are on only for another endpoint", () => {
    const config = settings({ profiles: { agents: { discovery: "search" } } });
    const view = discoveryView(config.gateway.discovery, config);
    assert.equal(view.lists, undefined);
    assert.equal(view.everything, false);
    assert.equal(view.offers("switchboard", SEARCH), false);
    assert.ok(view.offers("switchboard", "switchboard__health"));
  });

  test("with gatewayTools.search: true every endpoint offers and lists them", () => {
    const config = settings({ gatewayTools: { search: true } });
    const view = discoveryView(config.gateway.discovery, config);
    assert.equal(view.everything, true);
    assert.ok(view.offers("switchboard", SEARCH));
  });
});
