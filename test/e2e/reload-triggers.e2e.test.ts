/**
 * The ways a running gateway is told to reload its config, as an operator uses them: SIGHUP, `POST
 * /admin/reload` (loopback only by default; admin roles when auth is on), `switchboard reload --url`,
 * and the watched file, where an editor's save (a partial write then the rest, or a write to a temporary
 * file renamed over the config) is one reload, never a refused half-written file.
 */
import assert from "node:assert/strict";
import { createHash } from "node:crypto";
import { renameSync, writeFileSync } from "node:fs";
import { networkInterfaces } from "node:os";
import { dirname, join } from "node:path";
import { describe, test } from "node:test";
import { assertExitCode, runCli } from "../support/cli.ts";
import {
  fixtureServer,
  type RunningGateway,
  startHttpGateway,
  writeConfig,
} from "../support/gateway-process.ts";

const sha256 = (value: string) => createHash("sha256").update(value).digest("hex");
const ADMIN_KEY = "admin-key-9d2e71";
const USER_KEY = "user-key-0b7c44";

const linesOf = (gateway: RunningGateway, msg: string) => gateway.logs.lines.filter((l) => l.msg === msg);

async function reloadOver(url: string, headers: Record<string, string> = {}) {
  const response = await fetch(new URL("/admin/reload", url), { method: "POST", headers });
  return { status: response.status, body: (await response.json()) as Record<string, unknown> };
}

describe("reload triggers", () => {
  test("SIGHUP reloads (the file is not watched here); a section that needs a restart is named", async () => {
    const doc = { gateway: { reload: { watch: false } }, mcpServers: { a: fixtureServer() } };
    const file = writeConfig(doc);
    const gateway = await startHttpGateway(file);
    try {
      writeFileSync(
        file,
        JSON.stringify({
          ...doc,
          mcpServers: { ...doc.mcpServers, b: fixtureServer() },
          server: { http: { port: 1 } },
        }),
      );
      gateway.child.kill("SIGHUP");
      const reloaded = await gateway.logs.waitFor((l) => l.msg === "config reloaded", 30_000, "the reload");
      assert.deepEqual(reloaded.added, ["b"]);
      assert.deepEqual(reloaded.needRestart, ["server"]);
      const warned = linesOf(
        gateway,
        "the config's server changed; those take effect at the next restart (the rest is applied)",
      );
      assert.equal(warned.length, 1);
    } finally {
      await gateway.stop();
    }
  });

  test("POST /admin/reload without auth: from loopback it applies and answers the report", async () => {
    const doc = { gateway: { reload: { watch: false } }, mcpServers: { a: fixtureServer() } };
    const file = writeConfig(doc);
    const gateway = await startHttpGateway(file);
    try {
      writeFileSync(file, JSON.stringify({ ...doc, mcpServers: {} }));
      const answer = await reloadOver(gateway.url);
      assert.equal(answer.status, 200);
      assert.deepEqual((answer.body.applied as { removed: string[] }).removed, ["a"]);

      // A file that does not validate: 422 with where it is wrong; nothing changes.
      writeFileSync(file, '{ "mcpServers": { "a": { "command": 42 } } }');
      const refused = await reloadOver(gateway.url);
      assert.equal(refused.status, 422);
      assert.equal(refused.body.error, "config_invalid");
      assert.match(String(refused.body.error_description), /mcpServers\.a\.command/);

      // Only POST.
      const get = await fetch(new URL("/admin/reload", gateway.url));
      assert.equal(get.status, 405);
      assert.equal(get.headers.get("allow"), "POST");
    } finally {
      await gateway.stop();
    }
  });

  test("POST /admin/reload from another address is refused unless admin.allowRemote (and then needs auth)", async (t) => {
    const remote = nonLoopbackAddress();
    if (!remote) {
      t.skip("this machine has no non-loopback IPv4 address to call from");
      return;
    }
    const doc = {
      gateway: { reload: { watch: false } },
      server: { http: { allowedHosts: [remote] } },
      mcpServers: { a: fixtureServer() },
    };
    const file = writeConfig(doc);
    const gateway = await startHttpGateway(file, ["--http", `0.0.0.0:0`]);
    try {
      const port = new URL(gateway.url).port;
      const answer = await reloadOver(`http://${remote}:${port}/mcp`);
      assert.equal(answer.status, 403);
      assert.match(
        String(answer.body.error_description),
        /loopback only \(server\.http\.admin\.allowRemote is false\)/,
      );
    } finally {
      await gateway.stop();
    }
  });

  test("with auth: a principal without an admin role gets 403, an admin 200; switchboard reload --url does it", async () => {
    const doc = {
      gateway: { reload: { watch: false } },
      auth: {
        apiKeys: [
          { id: "ops", sha256: sha256(ADMIN_KEY), roles: ["admin"] },
          { id: "dev", sha256: sha256(USER_KEY) },
        ],
      },
      mcpServers: { a: fixtureServer() },
    };
    const file = writeConfig(doc);
    const gateway = await startHttpGateway(file);
    try {
      assert.equal((await reloadOver(gateway.url)).status, 401);
      const user = await reloadOver(gateway.url, { "x-api-key": USER_KEY });
      assert.equal(user.status, 403);
      assert.match(String(user.body.error_description), /admin/);
      assert.equal((await reloadOver(gateway.url, { "x-api-key": ADMIN_KEY })).status, 200);

      writeFileSync(file, JSON.stringify({ ...doc, mcpServers: { ...doc.mcpServers, b: fixtureServer() } }));
      const viaCli = await runCli(["reload", "--url", gateway.url], { SWITCHBOARD_API_KEY: ADMIN_KEY });
      assertExitCode(viaCli, 0);
      assert.deepEqual((JSON.parse(viaCli.stdout) as { applied: { added: string[] } }).applied.added, ["b"]);

      const denied = await runCli(["reload", "--url", gateway.url, "--api-key", USER_KEY]);
      assertExitCode(denied, 1);
      assert.match(denied.stdout, /forbidden/);
    } finally {
      await gateway.stop();
    }
  });

  test("an editor's save is one reload: a partial write then the rest, and a temp file renamed over", async () => {
    const doc = { gateway: { reload: { debounceMs: 200 } }, mcpServers: { a: fixtureServer() } };
    const file = writeConfig(doc);
    const gateway = await startHttpGateway(file);
    try {
      // Truncate-and-write in two steps: the half-written file must never be tried.
      const next = JSON.stringify({ ...doc, mcpServers: { ...doc.mcpServers, b: fixtureServer() } }, null, 2);
      writeFileSync(file, next.slice(0, next.length / 2));
      // An editor's pause between its two writes (shorter than the debounce), not a wait for anything.
      await new Promise((resolve) => setTimeout(resolve, 60));
      writeFileSync(file, next);
      const first = await gateway.logs.waitFor(
        (l) => l.msg === "config reloaded",
        30_000,
        "the first reload",
      );
      assert.deepEqual(first.added, ["b"]);

      // Write-rename, as many editors save.
      const temp = join(dirname(file), ".switchboard.json.swp");
      writeFileSync(temp, JSON.stringify({ ...doc, mcpServers: { b: fixtureServer() } }));
      renameSync(temp, file);
      const second = await gateway.logs.waitFor(
        (l) => l.msg === "config reloaded" && l !== first,
        30_000,
        "the second reload",
      );
      assert.deepEqual(second.removed, ["a"]);
      assert.equal(linesOf(gateway, "config reloaded").length, 2, "one reload per save");
      assert.equal(
        gateway.logs.lines.filter((l) => l.msg?.startsWith("config reload refused")).length,
        0,
        "no half-written file was tried",
      );
    } finally {
      await gateway.stop();
    }
  });
});

function nonLoopbackAddress(): string | undefined {
  for (const addresses of Object.values(networkInterfaces())) {
    for (const a of addresses ?? []) if (a.family === "IPv4" && !a.internal) return a.address;
  }
  return undefined;
}
