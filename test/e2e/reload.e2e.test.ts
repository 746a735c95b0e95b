/**
 * Changing the config while the gateway runs, as a team does: servers added, removed and changed and
 * policies tightened, while clients stay connected over Streamable HTTP and stdio and a load of calls
 * runs. Two gateway processes (one served over HTTP, one launched by a stdio client) watch the same
 * file, as replicas sharing a config map would.
 */
import assert from "node:assert/strict";
import { writeFileSync } from "node:fs";
import { after, before, describe, test } from "node:test";
import { Client } from "@modelcontextprotocol/sdk/client/index.js";
import { StdioClientTransport } from "@modelcontextprotocol/sdk/client/stdio.js";
import { ToolListChangedNotificationSchema } from "@modelcontextprotocol/sdk/types.js";
import {
  eventually,
  fixtureServer,
  LogWatcher,
  type RunningGateway,
  startHttpGateway,
  stdioGatewayCommand,
  writeConfig,
} from "../support/gateway-process.ts";
import { connectHttpClient, type ToolResult, textOf } from "../support/mcp-client.ts";

type Doc = Record<string, unknown> & { mcpServers: Record<string, unknown> };

const base: Doc = {
  gateway: { reload: { debounceMs: 100 } },
  mcpServers: {
    a: fixtureServer({}, { FIXTURE_NAME: "a" }),
    b: fixtureServer({}, { FIXTURE_NAME: "b" }),
    c: fixtureServer({}, { FIXTURE_NAME: "c" }),
  },
  toolPolicies: {
    // The rule under test for "a limit whose rule did not change keeps its buckets".
    a__env: { rateLimit: { capacity: 5, refillPerMinute: 0.001 } },
    // And "a cache whose rule did not change keeps its entries".
    a__echo: { cache: { ttlMs: 600_000, cacheable: true } },
  },
};
const configPath = writeConfig(base);
const write = (doc: unknown) =>
  writeFileSync(configPath, typeof doc === "string" ? doc : JSON.stringify(doc, null, 2));

interface Side {
  readonly name: string;
  readonly client: Client;
  readonly logs: LogWatcher;
  /** tools/list_changed notifications received so far. */
  listChanges: number;
}

let http: RunningGateway;
const sides: Side[] = [];

const call = async (side: Side, name: string, args: Record<string, unknown> = {}) =>
  (await side.client.callTool({ name, arguments: args }, undefined, { timeout: 20_000 })) as ToolResult;
const pidOf = async (side: Side, server: string) =>
  ((await call(side, `${server}__stats`)).structuredContent as { pid: number }).pid;

/** Waits until both gateways logged a reload after `since` lines. */
async function reloaded(since: number[], what: string): Promise<Record<string, unknown>[]> {
  return Promise.all(
    sides.map((side, i) =>
      side.logs.waitFor(
        (l) => l.msg === "config reloaded" && side.logs.lines.indexOf(l) >= (since[i] ?? 0),
        30_000,
        `${side.name}: ${what}`,
      ),
    ),
  );
}
const mark = () => sides.map((side) => side.logs.lines.length);

before(async () => {
  http = await startHttpGateway(configPath);
  const httpClient = await connectHttpClient(http.url, { name: "reload-http" });
  const transport = new StdioClientTransport({ ...stdioGatewayCommand(configPath), stderr: "pipe" });
  const stdioClient = new Client({ name: "reload-stdio", version: "1" });
  const stdioLogs = new LogWatcher(transport.stderr as unknown as NodeJS.ReadableStream);
  await stdioClient.connect(transport);
  for (const [name, client, logs] of [
    ["http", httpClient, http.logs],
    ["stdio", stdioClient, stdioLogs],
  ] as const) {
    const side: Side = { name, client, logs, listChanges: 0 };
    client.setNotificationHandler(ToolListChangedNotificationSchema, () => {
      side.listChanges++;
    });
    sides.push(side);
  }
  await stdioLogs.waitFor((l) => l.msg === "gateway ready", 60_000, "the stdio gateway to be ready");
});

after(async () => {
  for (const side of sides) await side.client.close().catch(() => undefined);
  await http?.stop();
});

describe("reloading the config under load", () => {
  test("add, change and remove servers and policies; no call fails; unchanged servers keep their process", async () => {
    const pidsBefore = await Promise.all(sides.map((side) => pidOf(side, "a")));
    const cBefore = await Promise.all(sides.map((side) => pidOf(side, "c")));

    // Load on both sides: the kept server and the one that will be restarted.
    let running = true;
    const failures: string[] = [];
    let calls = 0;
    const load = sides.flatMap((side) =>
      ["a", "c"].map(async (server) => {
        while (running) {
          const message = `${side.name}-${server}-${calls++}`;
          try {
            const result = await call(side, `${server}__echo`, { message });
            if (result.isError || textOf(result) !== message) failures.push(`${message}: ${textOf(result)}`);
          } catch (error) {
            failures.push(`${message}: ${String(error)}`);
          }
        }
      }),
    );

    // 1. Add a server.
    let since = mark();
    write({ ...base, mcpServers: { ...base.mcpServers, d: fixtureServer({}, { FIXTURE_NAME: "d" }) } });
    const added = await reloaded(since, "server d added");
    assert.ok(
      added.every((r) => (r.added as string[]).includes("d")),
      JSON.stringify(added),
    );
    for (const side of sides) {
      await eventually(
        async () =>
          textOf(await call(side, "d__echo", { message: "new" }).catch(() => ({ content: [] }))) === "new",
        20_000,
        `${side.name}: server d to answer`,
      );
    }

    // 2. Change server c's launch settings (its environment) and tighten a policy of b.
    since = mark();
    const changed: Doc = {
      ...base,
      mcpServers: {
        ...base.mcpServers,
        c: fixtureServer({}, { FIXTURE_NAME: "c", EXTRA: "changed" }),
        d: fixtureServer({}, { FIXTURE_NAME: "d" }),
      },
      toolPolicies: { ...(base.toolPolicies as object), b__fail: { timeout: 2_000 } },
    };
    write(changed);
    const restarted = await reloaded(since, "server c restarted, a policy changed");
    assert.ok(restarted.every((r) => (r.restarted as string[]).includes("c") && r.chainsChanged === true));

    // 3. Remove server b.
    since = mark();
    const { b: _removed, ...withoutB } = changed.mcpServers;
    write({ ...changed, mcpServers: withoutB });
    const removed = await reloaded(since, "server b removed");
    assert.ok(removed.every((r) => (r.removed as string[]).includes("b")));

    running = false;
    await Promise.all(load);
    assert.deepEqual(failures, [], `no call failed because of the reloads (${calls} calls made)`);
    assert.ok(calls > 20, `the load ran throughout: ${calls} calls`);

    for (const [i, side] of sides.entries()) {
      assert.equal(await pidOf(side, "a"), pidsBefore[i], `${side.name}: server a kept its process`);
      assert.notEqual(await pidOf(side, "c"), cBefore[i], `${side.name}: server c was restarted`);
      const gone = await call(side, "b__echo", { message: "x" }).catch((error: Error) => error);
      assert.match(String(gone instanceof Error ? gone.message : textOf(gone)), /server "b" was removed/);
      // Two of the three reloads changed the tool list (d added, b removed); c's restart did not.
      assert.ok(side.listChanges >= 2, `${side.name}: told of each change of the list (${side.listChanges})`);
    }
  });

  test("an invalid file changes nothing and is reported; the next good one applies", async () => {
    const since = mark();
    const pids = await Promise.all(sides.map((side) => pidOf(side, "a")));
    write('{ "mcpServers": { "a": { "command": 42 } } }');
    for (const [i, side] of sides.entries()) {
      const refused = await side.logs.waitFor(
        (l) =>
          l.msg?.startsWith("config reload refused") === true &&
          side.logs.lines.indexOf(l) >= (since[i] ?? 0),
        30_000,
        `${side.name}: the refusal`,
      );
      assert.match(String(refused.msg), /mcpServers\.a\.command/, "it names where the file is wrong");
      assert.equal(await pidOf(side, "a"), pids[i], "nothing changed");
      assert.equal(textOf(await call(side, "d__echo", { message: "still" })), "still");
    }
    const health = (await (await fetch(new URL("/healthz", http.url))).json()) as {
      checks: { config: { status: string; detail: string } };
    };
    assert.equal(health.checks.config.status, "degraded");
    assert.match(health.checks.config.detail, /config stale/);
    const ready = await fetch(new URL("/readyz", http.url));
    assert.equal(ready.status, 200, "a replica with a refused file stays ready: it serves the config it had");
    const readiness = (await ready.json()) as { config?: { stale: boolean; reason: string } };
    assert.equal(readiness.config?.stale, true);
    assert.match(String(readiness.config?.reason), /mcpServers\.a\.command/);
    const metrics = await (await fetch(new URL("/metrics", http.url))).text();
    assert.match(metrics, /switchboard_config_reloads_total\{outcome="invalid"\} 1/);
  });

  test("a rate limit and a cache whose rules did not change keep their state across a reload", async () => {
    const side = sides[0] as Side;
    const allowed = async (n: number) => {
      let ok = 0;
      for (let i = 0; i < n; i++) if (!(await call(side, "a__env", { name: "PATH" })).isError) ok++;
      return ok;
    };
    const first = await allowed(3);
    const probe = { message: `cached-${Date.now()}` };
    assert.equal(
      (await call(side, "a__echo", probe))._meta?.["switchboard/source"],
      undefined,
      "a miss first",
    );
    const since = mark();
    // Any change will do; the limit's rule stays as it is.
    write({ ...base, mcpServers: { ...base.mcpServers }, policies: { timeout: 30_000 } });
    await reloaded(since, "a policy elsewhere changed");
    const second = await allowed(5);
    assert.equal((await call(side, "a__echo", probe))._meta?.["switchboard/source"], "cache", "still cached");
    assert.equal(
      first + second,
      5,
      `the bucket of capacity 5 was not refilled by the reload (${first} + ${second})`,
    );
  });
});
