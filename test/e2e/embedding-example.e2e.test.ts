/**
 * The embedding example (examples/embedding/weather-gateway.ts), run as its README section says: a
 * program that owns its HTTP server, mounts the gateway's handler, adds a backend of its own and an
 * audit sink, and stops cleanly on SIGTERM. It imports "mcp-switchboard", which resolves to the build.
 */
import assert from "node:assert/strict";
import { spawn } from "node:child_process";
import { join } from "node:path";
import { createInterface } from "node:readline";
import { after, before, describe, test } from "node:test";
import type { Client } from "@modelcontextprotocol/sdk/client/index.js";
import { ROOT } from "../support/gateway-process.ts";
import { connectHttpClient, firstTextOf, type ToolResult } from "../support/mcp-client.ts";

const EXAMPLE = join(ROOT, "examples/embedding/weather-gateway.ts");

describe("the embedding example", () => {
  const child = spawn(process.execPath, ["--import", "tsx", EXAMPLE], {
    cwd: ROOT,
    stdio: ["ignore", "pipe", "pipe"],
  });
  let stderr = "";
  child.stderr.setEncoding("utf8").on("data", (chunk: string) => {
    stderr += chunk;
  });
  const exited = new Promise<number | null>((resolve) => child.once("exit", resolve));
  const lines = createInterface({ input: child.stdout })[Symbol.asyncIterator]();
  const nextLine = async (what: string): Promise<Record<string, unknown>> => {
    let timer: NodeJS.Timeout | undefined;
    const timeout = new Promise<never>((_, reject) => {
      timer = setTimeout(() => reject(new Error(`no ${what} line within 30 s; stderr:\n${stderr}`)), 30_000);
    });
    try {
      const line = await Promise.race([lines.next(), timeout]);
      assert.equal(line.done, false, `the example exited before its ${what} line; stderr:\n${stderr}`);
      return JSON.parse(line.value) as Record<string, unknown>;
    } finally {
      clearTimeout(timer);
    }
  };
  let url = "";
  let client: Client;

  before(async () => {
    url = String((await nextLine("listening")).url);
    client = await connectHttpClient(url, { name: "embedding-example-test" });
  });

  after(async () => {
    await client?.close();
    if (child.exitCode === null) child.kill("SIGKILL");
  });

  test("serves the program's backend as <name>__<tool>", async () => {
    const { tools } = await client.listTools();
    const names = tools.map((t) => t.name);
    assert.ok(names.includes("weather__forecast"), `listed: ${names.join(", ")}`);
  });

  test("calls pass through the config's policies: the second identical call is a cache hit", async () => {
    const first = (await client.callTool({
      name: "weather__forecast",
      arguments: { city: "Oslo" },
    })) as ToolResult;
    const second = (await client.callTool({
      name: "weather__forecast",
      arguments: { city: "Oslo" },
    })) as ToolResult;
    assert.equal(firstTextOf(first), "Oslo: sunny, 16 °C");
    assert.deepEqual(second.structuredContent, first.structuredContent, "the cached answer");
    assert.equal(second._meta?.["switchboard/source"], "cache");
  });

  test("arguments are checked against the backend's inputSchema", async () => {
    const result = (await client.callTool({ name: "weather__forecast", arguments: {} })) as ToolResult;
    assert.equal(result.isError, true);
    assert.match(firstTextOf(result), /city/);
  });

  test("the handler answers the probes, and passes the program's own paths on", async () => {
    const origin = new URL(url).origin;
    assert.equal((await fetch(`${origin}/livez`)).status, 200);
    const audited = (await (await fetch(`${origin}/audit`)).json()) as { tool: string; outcome: string }[];
    assert.ok(audited.length >= 3, `the audit sink got every call: ${JSON.stringify(audited)}`);
    assert.ok(audited.every((r) => r.tool === "weather__forecast"));
    assert.equal((await fetch(`${origin}/elsewhere`)).status, 404);
  });

  test("SIGTERM drains, closes and exits 0", async () => {
    await client.close();
    child.kill("SIGTERM");
    const stopped = await nextLine("stopped");
    assert.equal(stopped.stopped, true);
    assert.equal(await exited, 0, `exit code; stderr:\n${stderr}`);
  });
});
