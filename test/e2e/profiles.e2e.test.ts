/**
 * Profiles: per-team endpoints of one gateway. Each lists only its own tools, refuses a call outside
 * it exactly as it refuses an unknown tool, on every request path (HTTP both eras, stdio with
 * `--profile`); every profile shares the one backend process of a server; a profile may have its own
 * auth; `switchboard tools --profile` prints a profile's catalog; a reload adds and removes profiles.
 */
import assert from "node:assert/strict";
import { createHash } from "node:crypto";
import { writeFileSync } from "node:fs";
import { after, before, describe, test } from "node:test";
import { assertExitCode, runCli } from "../support/cli.ts";
import {
  eventually,
  fixtureServer,
  type RunningGateway,
  startHttpGateway,
  writeConfig,
} from "../support/gateway-process.ts";
import { connectHttpClient, MCP_HEADERS, type ToolResult } from "../support/mcp-client.ts";
import { type JsonRpcMessage, requestPaths } from "../support/request-paths.ts";

const OPS_KEY = "ops-key-5e1f0c";
const sha256 = (value: string) => createHash("sha256").update(value).digest("hex");

const config = {
  mcpServers: {
    a: fixtureServer({}, { FIXTURE_NAME: "a" }),
    b: fixtureServer({}, { FIXTURE_NAME: "b" }),
  },
  profiles: {
    // A team that has one server.
    dev: { servers: ["a"] },
    // A team that has some tools of both, and its own credentials.
    ops: {
      tools: { include: ["a__echo", "b__*"], exclude: ["b__crash", "b__leak"] },
      auth: { apiKeys: [{ id: "ops", sha256: sha256(OPS_KEY) }] },
    },
  },
};
const configPath = writeConfig(config);

let http: RunningGateway;

before(async () => {
  http = await startHttpGateway(configPath);
});

after(async () => {
  await http?.stop();
});

/** The HTTP status of a 2025-era `initialize` at `url`. */
async function initializeStatus(url: string, headers: Record<string, string> = {}): Promise<number> {
  const response = await fetch(url, {
    method: "POST",
    headers: { ...MCP_HEADERS, ...headers },
    body: JSON.stringify({
      jsonrpc: "2.0",
      id: 1,
      method: "initialize",
      params: { protocolVersion: "2025-11-25", capabilities: {}, clientInfo: { name: "t", version: "1" } },
    }),
  });
  await response.body?.cancel();
  return response.status;
}

/** What profile dev offers: server a's tools, and the gateway's own (at every endpoint). */
const ofDev = (name: string) => name.startsWith("a__") || name.startsWith("switchboard__");

const toolNames = (message: JsonRpcMessage) =>
  ((message.result?.tools ?? []) as { name: string }[]).map((t) => t.name).sort();

describe("profiles: one gateway, an endpoint per team", () => {
  for (const path of requestPaths(configPath, () => `${http.url}/dev`, { stdioArgs: ["--profile", "dev"] })) {
    test(`dev over ${path.name}: lists only its server's tools; a tool outside it is unknown`, async () => {
      const session = await path.open();
      try {
        const listed = toolNames((await session.request("tools/list")).response);
        assert.ok(listed.length > 3, `dev lists a's tools: ${listed.join(", ")}`);
        assert.ok(listed.every(ofDev), `dev lists nothing but a's tools: ${listed.join(", ")}`);
        const echoed = (
          await session.request("tools/call", { name: "a__echo", arguments: { message: "hi" } })
        ).response.result as ToolResult;
        assert.equal(echoed.content[0]?.text, "hi");

        // Outside the profile, a real tool is refused with the very answer a nonexistent tool gets.
        const outside = (
          await session.request("tools/call", { name: "b__echo", arguments: { message: "x" } })
        ).response.error;
        const missing = (
          await session.request("tools/call", { name: "nope__echo", arguments: { message: "x" } })
        ).response.error;
        assert.ok(outside, "a call outside the profile is refused");
        assert.equal(outside.code, missing?.code);
        assert.equal(outside.message.replace("b__echo", "nope__echo"), missing?.message);
      } finally {
        await session.close();
      }
    });
  }

  test("two profiles over HTTP see different tool lists; the default endpoint sees all; one process per server", async () => {
    const whole = await connectHttpClient(http.url, { name: "profiles-default" });
    const dev = await connectHttpClient(`${http.url}/dev`, { name: "profiles-dev" });
    const ops = await connectHttpClient(`${http.url}/ops`, {
      name: "profiles-ops",
      headers: { "x-api-key": OPS_KEY },
    });
    try {
      const names = async (client: typeof dev) => (await client.listTools()).tools.map((t) => t.name).sort();
      const [all, devTools, opsTools] = await Promise.all([names(whole), names(dev), names(ops)]);
      assert.ok(all.some((n) => n.startsWith("a__")) && all.some((n) => n.startsWith("b__")));
      assert.ok(devTools.every(ofDev));
      assert.ok(opsTools.includes("a__echo") && opsTools.includes("b__echo"));
      assert.ok(
        !opsTools.includes("a__stats") && !opsTools.includes("b__crash") && !opsTools.includes("b__leak"),
      );
      assert.notDeepEqual(devTools, opsTools);

      // The same server answers every endpoint: one backend process, not one per profile.
      const pidVia = async (client: typeof dev, tool: string) =>
        ((await client.callTool({ name: tool, arguments: {} })) as ToolResult).structuredContent?.pid;
      const aPid = await pidVia(whole, "a__stats");
      assert.equal(await pidVia(dev, "a__stats"), aPid);
      const bPid = await pidVia(whole, "b__stats");
      assert.equal(await pidVia(ops, "b__stats"), bPid);
      assert.notEqual(aPid, bPid);
    } finally {
      await Promise.all([whole.close(), dev.close(), ops.close()]);
    }
  });

  test("resources follow their servers; prompts are selected like tools; outside reads are unknown", async () => {
    const dev = await connectHttpClient(`${http.url}/dev`, { name: "profiles-dev-resources" });
    const ops = await connectHttpClient(`${http.url}/ops`, {
      name: "profiles-ops-resources",
      headers: { "x-api-key": OPS_KEY },
    });
    try {
      // Both servers offer the same document; the first in the file, a, owns it.
      const [doc] = (await dev.listResources()).resources;
      assert.ok(doc, "dev (server a) lists a's document");
      const [contents] = (await dev.readResource({ uri: doc.uri })).contents;
      assert.equal(contents && "text" in contents ? contents.text : undefined, "the document");
      assert.deepEqual(
        (await dev.listPrompts()).prompts.map((p) => p.name),
        ["a__greet"],
      );
      // ops offers b__* and a__echo: b's prompt, and a's resources (its server a is offered).
      assert.deepEqual(
        (await ops.listPrompts()).prompts.map((p) => p.name),
        ["b__greet"],
      );
      const refused = await dev
        .getPrompt({ name: "b__greet", arguments: { who: "x" } })
        .catch((e: Error) => e);
      const missing = await dev
        .getPrompt({ name: "zz__greet", arguments: { who: "x" } })
        .catch((e: Error) => e);
      assert.ok(refused instanceof Error && missing instanceof Error);
      assert.equal(refused.message.replace("b__greet", "zz__greet"), missing.message);
    } finally {
      await Promise.all([dev.close(), ops.close()]);
    }
    const writers = writeConfig({ ...config, profiles: { b_only: { servers: ["b"] } } });
    const gateway = await startHttpGateway(writers);
    const bOnly = await connectHttpClient(`${gateway.url}/b_only`, { name: "profiles-b-only" });
    try {
      assert.deepEqual((await bOnly.listResources()).resources, [], "a's document is not b's");
      const read = await bOnly.readResource({ uri: "fixture://doc" }).catch((e: Error) => e);
      assert.ok(read instanceof Error);
      assert.match(read.message, /is not offered by any connected server/);
    } finally {
      await bOnly.close();
      await gateway.stop();
    }
  });

  test("the gateway's own tools are never cached: a profile's health shows its own servers", async () => {
    // Every read-only tool cached for everyone: the health tool's answer must still be the profile's.
    const cached = writeConfig({ ...config, policies: { cache: { ttlMs: 60_000, shared: true } } });
    const gateway = await startHttpGateway(cached);
    const dev = await connectHttpClient(`${gateway.url}/dev`, { name: "profiles-health-dev" });
    const whole = await connectHttpClient(gateway.url, { name: "profiles-health-whole" });
    try {
      const serversIn = async (client: typeof dev) => {
        const result = (await client.callTool({ name: "switchboard__health", arguments: {} })) as ToolResult;
        assert.notEqual(result._meta?.["switchboard/source"], "cache");
        return Object.keys((result.structuredContent as { checks: Record<string, unknown> }).checks);
      };
      assert.ok(!(await serversIn(dev)).includes("b"), "dev's health names only its own servers");
      assert.ok((await serversIn(whole)).includes("b"), "the default endpoint's names every server");
      assert.ok(!(await serversIn(dev)).includes("b"));
    } finally {
      await Promise.all([dev.close(), whole.close()]);
      await gateway.stop();
    }
  });

  test("switchboard call --profile calls through the profile", async () => {
    const inside = await runCli([
      "call",
      "a__echo",
      '{"message":"in"}',
      "--config",
      configPath,
      "--profile",
      "dev",
    ]);
    assertExitCode(inside, 0);
    const outside = await runCli([
      "call",
      "b__echo",
      '{"message":"out"}',
      "--config",
      configPath,
      "--profile",
      "dev",
    ]);
    assertExitCode(outside, 1);
    assert.match(outside.stderr, /Tool "b__echo" does not exist/);
  });

  test("a profile's own auth: ops wants its key, the other endpoints do not", async () => {
    assert.equal(await initializeStatus(`${http.url}/ops`), 401);
    assert.equal(await initializeStatus(`${http.url}/ops`, { "x-api-key": "wrong" }), 401);
    assert.equal(await initializeStatus(`${http.url}/ops`, { "x-api-key": OPS_KEY }), 200);
    assert.equal(await initializeStatus(`${http.url}/dev`), 200);
    assert.equal(await initializeStatus(http.url), 200);
    assert.equal(await initializeStatus(`${http.url}/nope`), 404);
  });

  test("switchboard tools --profile prints the profile's catalog; an unknown profile is a usage error", async () => {
    const dev = await runCli(["tools", "--config", configPath, "--profile", "dev", "--json"]);
    assertExitCode(dev, 0);
    const tools = (JSON.parse(dev.stdout) as { tools: { name: string }[] }).tools.map((t) => t.name);
    assert.ok(tools.length > 0 && tools.every(ofDev), tools.join(", "));
    const unknown = await runCli(["tools", "--config", configPath, "--profile", "qa"]);
    assertExitCode(unknown, 2);
    assert.match(unknown.stderr, /profile "qa" is not in the config; its profiles are dev, ops/);
  });

  test("profiles reload like the rest: one added is served, one removed is gone", async () => {
    const reloaded = writeConfig({ ...config, gateway: { reload: { debounceMs: 50 } } });
    const gateway = await startHttpGateway(reloaded);
    try {
      const status = (profile: string) => initializeStatus(`${gateway.url}/${profile}`);
      assert.equal(await status("dev"), 200);
      assert.equal(await status("qa"), 404);
      const { dev: _dev, ...others } = config.profiles;
      writeFileSync(
        reloaded,
        JSON.stringify({
          ...config,
          gateway: { reload: { debounceMs: 50 } },
          profiles: { ...others, qa: { servers: ["b"] } },
        }),
      );
      await eventually(async () => (await status("qa")) === 200, 30_000, "profile qa to be served");
      assert.equal(await status("dev"), 404);
    } finally {
      await gateway.stop();
    }
  });
});
