/**
 * The two built-in backends that reach past the gateway, at their boundaries, as users run them: a
 * real gateway process, an MCP client, a real audit file.
 *
 * - http: answers never map the network behind the gateway. A name is made to resolve to loopback
 *   or private space by a resolver preloaded into the gateway (test/fixtures/fake-dns.mjs), the only
 *   stand-in here; refusals and failures must name no resolved address, port or redirect target,
 *   while the gateway's log and the call's audit record keep the detail.
 * - filesystem: one containment rule. Every read-only tool refuses a path through a link that
 *   leads out of the root, at its last name or on the way, with one and the same error.
 */
import assert from "node:assert/strict";
import { mkdirSync, mkdtempSync, readFileSync, rmSync, symlinkSync, writeFileSync } from "node:fs";
import { createServer, type Server } from "node:http";
import type { AddressInfo } from "node:net";
import { tmpdir } from "node:os";
import { dirname, join } from "node:path";
import { after, before, describe, test } from "node:test";
import { pathToFileURL } from "node:url";
import type { Client } from "@modelcontextprotocol/sdk/client/index.js";
import { ROOT, type RunningGateway, startHttpGateway, writeConfig } from "../support/gateway-process.ts";
import { connectHttpClient, type ToolResult, textOf } from "../support/mcp-client.ts";

const FAKE_DNS = pathToFileURL(join(ROOT, "test/fixtures/fake-dns.mjs")).href;

/** Addresses the names below resolve to inside the gateway; none may reach the client. */
const DNS = {
  "rebind.test": ["127.0.0.1"],
  "mixed.test": ["93.184.215.14", "10.0.0.5"],
  "ula.test": ["fd12:3456:789a::7"],
  "internal.test": ["127.0.0.1"],
};
const INTERNAL = ["127.0.0.1", "10.0.0.5", "fd12:3456:789a::7", "93.184.215.14", "10.9.8.7"];

/** An upstream on loopback whose redirects point into the network behind the gateway. */
function upstream(rebindPort: () => number): Server {
  return createServer((req, res) => {
    const targets: Record<string, string> = {
      "/to-private": "http://10.9.8.7:8080/admin",
      "/to-rebind": `http://rebind.test:${rebindPort()}/x`,
      "/to-unknown": "http://db-7.nowhere.test/",
    };
    const location = targets[req.url ?? ""];
    if (location) {
      res.writeHead(302, { location });
      res.end();
      return;
    }
    res.writeHead(200, { "content-type": "text/plain" });
    res.end("ok");
  });
}

async function listen(server: Server): Promise<number> {
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  return (server.address() as AddressInfo).port;
}

/** A port nothing listens on: taken, then given back. */
async function closedPort(): Promise<number> {
  const server = createServer();
  const port = await listen(server);
  await new Promise((resolve) => server.close(resolve));
  return port;
}

interface AuditLine {
  readonly requestId: string;
  readonly tool: string;
  readonly outcome: string;
  readonly error?: string;
  readonly arguments?: Record<string, unknown>;
}

describe("built-in backends at their boundaries", () => {
  let gateway: RunningGateway;
  let client: Client;
  let api: Server;
  let apiPort: number;
  let deadPort: number;
  let auditFile: string;
  let root: string;
  let outside: string;

  const call = async (name: string, args: Record<string, unknown>): Promise<ToolResult> =>
    (await client.callTool({ name, arguments: args }, undefined, { timeout: 30_000 })) as ToolResult;

  before(async () => {
    api = upstream(() => apiPort);
    apiPort = await listen(api);
    deadPort = await closedPort();
    root = mkdtempSync(join(tmpdir(), "sb-boundary-root-"));
    outside = mkdtempSync(join(tmpdir(), "sb-boundary-outside-"));
    mkdirSync(join(outside, "folder"));
    writeFileSync(join(outside, "secret.txt"), "the secret outside");
    writeFileSync(join(outside, "folder", "inner.txt"), "the secret outside");
    mkdirSync(join(root, "docs"));
    writeFileSync(join(root, "docs", "guide.md"), "# Guide\n");
    symlinkSync(join(outside, "secret.txt"), join(root, "file-out"));
    symlinkSync(join(outside, "folder"), join(root, "dir-out"));
    symlinkSync(join(outside, "nothing-here"), join(root, "nowhere-out"));
    symlinkSync("dir-out", join(root, "docs-out"));
    symlinkSync(join("docs", "guide.md"), join(root, "guide-link"));
    const config = writeConfig({
      mcpServers: {},
      audit: { sinks: [{ type: "file", path: "audit.jsonl", durability: "sync" }] },
      backends: {
        api: {
          type: "http",
          baseUrl: `http://127.0.0.1:${apiPort}/`,
          allowHttp: true,
          allowHosts: ["*"],
          allowPrivateHosts: ["127.0.0.1", "internal.test"],
          circuitBreaker: false,
          timeoutMs: 5_000,
        },
        files: { type: "filesystem", root },
      },
    });
    auditFile = join(dirname(config), "audit.jsonl");
    gateway = await startHttpGateway(config, [], {
      NODE_OPTIONS: `${process.env.NODE_OPTIONS ?? ""} --import=${FAKE_DNS}`.trim(),
      SWITCHBOARD_TEST_DNS: JSON.stringify(DNS),
    });
    client = await connectHttpClient(gateway.url, { name: "boundaries-e2e" });
  });

  after(async () => {
    await client?.close();
    await gateway?.stop();
    await new Promise((resolve) => api?.close(resolve));
    rmSync(dirname(auditFile), { recursive: true, force: true });
    rmSync(root, { recursive: true, force: true });
    rmSync(outside, { recursive: true, force: true });
  });

  /** Everything the client got, text and `_meta`, with the caller's own URL taken out. */
  function shown(result: ToolResult, ownUrl: string): string {
    return `${textOf(result)}\n${JSON.stringify(result._meta ?? {})}`.replaceAll(ownUrl, "(own URL)");
  }

  function assertNamesNoInternalAddress(result: ToolResult, ownUrl: string): void {
    const text = shown(result, ownUrl);
    for (const address of INTERNAL)
      assert.ok(!text.includes(address), `the answer names ${address}: ${text}`);
    for (const label of ["loopback", "unique-local", "private (", ":8080", "/admin"]) {
      assert.ok(!text.includes(label), `the answer names ${label}: ${text}`);
    }
  }

  test("http: SSRF refusals of names say the class of the reason, never the address", async () => {
    for (const name of ["rebind.test", "mixed.test", "ula.test"]) {
      const url = `http://${name}:${apiPort}/x`;
      const result = await call("api__fetch", { url });
      assert.equal(result.isError, true, textOf(result));
      assert.match(
        textOf(result),
        new RegExp(
          `^Refused to connect to "${name.replace(".", "\\.")}": it resolves to a private or special-purpose address, .*allowPrivateHosts`,
        ),
      );
      assertNamesNoInternalAddress(result, url);
    }
  });

  test("http: redirects into the network are refused without naming their target", async () => {
    for (const path of ["/to-private", "/to-rebind"]) {
      const url = `http://127.0.0.1:${apiPort}${path}`;
      const result = await call("api__fetch", { path });
      assert.equal(result.isError, true, textOf(result));
      assert.match(
        textOf(result),
        /^Refused to follow the redirect from http:\/\/127\.0\.0\.1:\d+\/to-\w+: it leads to a private or special-purpose address/,
      );
      assertNamesNoInternalAddress(result, url);
      assert.ok(!shown(result, url).includes("rebind.test"), "the redirect's host is not named");
    }
    const unknown = await call("api__fetch", { path: "/to-unknown" });
    assert.equal(unknown.isError, true);
    assert.match(
      textOf(unknown),
      /Could not resolve the host of the redirect from .*: the name does not exist/,
    );
    assert.ok(!textOf(unknown).includes("db-7"), textOf(unknown));
  });

  test("http: a refused connection says so by class, without the address and port undici names", async () => {
    const url = `http://internal.test:${deadPort}/health`;
    const result = await call("api__fetch", { url });
    assert.equal(result.isError, true, textOf(result));
    assert.match(textOf(result), /failed before an answer: the connection was refused \(ECONNREFUSED\)\./);
    assertNamesNoInternalAddress(result, url);
  });

  test("http: the gateway's log and the call's audit record keep the detail the client was not told", async () => {
    const url = `http://rebind.test:${apiPort}/audited`;
    const result = await call("api__fetch", { url });
    assert.equal(result.isError, true);
    assertNamesNoInternalAddress(result, url);
    const logged = await gateway.logs.waitFor(
      (l) => String(l.detail ?? "").includes('"rebind.test": resolves to 127.0.0.1'),
      10_000,
      "the refusal's detail in the log",
    );
    assert.equal(logged.level, "warn");
    // The sink is sync: the record was on disk before the answer was sent.
    const records = readFileSync(auditFile, "utf8")
      .split("\n")
      .filter((line) => line.trim() !== "")
      .map((line) => JSON.parse(line) as AuditLine);
    const record = records.find((r) => r.tool === "api__fetch" && r.arguments?.url === url);
    assert.ok(record, `a record for the call among ${records.length}`);
    assert.equal(record.outcome, "denied");
    assert.ok(record.error?.startsWith(textOf(result)), "the record starts with what the client saw");
    assert.match(
      String(record.error),
      /\nDetail \(not sent to the client\): "rebind\.test": resolves to 127\.0\.0\.1, a loopback \(127\.0\.0\.0\/8\) address/,
    );
  });

  test("filesystem: stat, list, read and search refuse a path through a link out, all with the same error", async () => {
    const tools: [string, (path: string) => Record<string, unknown>][] = [
      ["files__stat", (path) => ({ path })],
      ["files__list", (path) => ({ path })],
      ["files__read", (path) => ({ path })],
      ["files__search", (path) => ({ path, contains: "secret" })],
    ];
    const refusal = (path: string) =>
      `Path ${JSON.stringify(path)} is outside the root of backend "files": it leads outside the root through ` +
      'a symbolic link. Use a path relative to the root (like "notes/todo.md") that stays inside it.';
    for (const path of [
      "file-out",
      "dir-out",
      "dir-out/inner.txt",
      "nowhere-out",
      "docs-out",
      "docs-out/inner.txt",
    ]) {
      for (const [tool, args] of tools) {
        const result = await call(tool, args(path));
        assert.equal(result.isError, true, `${tool} ${path}: ${textOf(result)}`);
        assert.equal(textOf(result), refusal(path), `${tool} ${path}`);
      }
    }
    // A link that stays inside works; a listing names links out without describing them.
    assert.equal(textOf(await call("files__read", { path: "guide-link" })), "# Guide\n");
    const listing = await call("files__list", { path: "." });
    const entries = (listing.structuredContent?.entries ?? []) as Record<string, unknown>[];
    assert.deepEqual(
      entries.find((e) => e.name === "file-out"),
      { name: "file-out", kind: "link", outside: true },
    );
    assert.ok(!textOf(listing).includes(outside), "no target is shown");
    const found = await call("files__search", { contains: "secret" });
    assert.match(textOf(found), /^No matches\./);
  });
});
