/**
 * What the log says about the catalog as a user reads it: a clash of names between servers is said
 * once for each server whose offer is dropped, as a warning, however many times the catalog is rebuilt
 * (each server coming up, and each list change, rebuilds it).
 */
import assert from "node:assert/strict";
import { after, before, describe, test } from "node:test";
import {
  eventually,
  fixtureServer,
  type RunningGateway,
  startHttpGateway,
  writeConfig,
} from "../support/gateway-process.ts";
import { httpPaths, type PathSession } from "../support/request-paths.ts";

describe("name clashes between servers", () => {
  let gateway: RunningGateway;
  let client: PathSession;

  before(async () => {
    // Three servers offer the same resource URI (fixture://doc): two clashes, each said once.
    gateway = await startHttpGateway(
      writeConfig({ mcpServers: { one: fixtureServer(), two: fixtureServer(), three: fixtureServer() } }),
    );
    await gateway.logs.waitFor((l) => l.msg === "gateway ready", 30_000, "the gateway to be ready");
    client = await (
      httpPaths(() => gateway.url).find((p) => p.era === "2026-07-28") as NonNullable<
        ReturnType<typeof httpPaths>[number]
      >
    ).open();
  });

  after(async () => {
    await client?.close();
    await gateway?.stop();
  });

  test("a duplicate resource URI is logged once per clash, at warn, naming both servers", async () => {
    // A list change of one server rebuilds the catalog again: still no new line.
    await client.request("tools/call", { name: "two__add_tool", arguments: { name: "late" } });
    await eventually(
      async () => {
        const listed = await client.request("tools/list", {});
        return JSON.stringify(listed.response.result).includes("two__late");
      },
      10_000,
      "the new tool to be listed",
    );
    const clashes = gateway.logs.lines.filter((l) => String(l.msg).includes("is offered by both"));
    assert.ok(
      clashes.every((l) => l.level === "warn" && l.kind === "resource" && l.name === "fixture://doc"),
    );
    // Which server keeps the URI depends on which came up first; each other server is named once.
    const dropped = clashes.map((l) => (l.dropped as { server: string }).server).sort();
    assert.equal(dropped.length, 2, JSON.stringify(clashes));
    assert.equal(new Set(dropped).size, 2, JSON.stringify(clashes));
  });
});
