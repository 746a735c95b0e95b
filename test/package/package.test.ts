/**
 * The package as users get it: `npm pack` (a clean build by prepack), then the tarball installed
 * without development dependencies into an empty project, and used there the ways the README says:
 * the `switchboard` command (npx, check, serve over stdio and HTTP), `import … from "mcp-switchboard"`
 * in plain Node, a TypeScript program type-checked under strict and nodenext (the embedding example),
 * and a global install. Its own CI step (`npm run test:package`): it rebuilds dist/ and installs from
 * the registry, so it runs alone.
 */
import assert from "node:assert/strict";
import { execFile, spawn } from "node:child_process";
import { cpSync, existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, before, describe, test } from "node:test";
import { promisify } from "node:util";
import { Client } from "@modelcontextprotocol/sdk/client/index.js";
import { StdioClientTransport } from "@modelcontextprotocol/sdk/client/stdio.js";
import { packProject, ROOT } from "../../scripts/pack.ts";
import { LogWatcher } from "../support/gateway-process.ts";
import { connectHttpClient, firstTextOf } from "../support/mcp-client.ts";

const run = promisify(execFile);
const VERSION = (JSON.parse(readFileSync(join(ROOT, "package.json"), "utf8")) as { version: string }).version;
const NPM_QUIET = { npm_config_loglevel: "error", npm_config_audit: "false", npm_config_fund: "false" };

const work = mkdtempSync(join(tmpdir(), "switchboard-package-"));
const app = join(work, "app");
const config = join(app, "switchboard.yaml");
let tarball = "";
const timings: Record<string, number> = {};

/** Runs a command in the app folder; rejects with its output when it fails. */
async function inApp(command: string, args: readonly string[], env: Record<string, string> = {}) {
  try {
    return await run(command, args, {
      cwd: app,
      env: { ...process.env, ...NPM_QUIET, ...env },
      timeout: 300_000,
      maxBuffer: 16 * 1024 * 1024,
    });
  } catch (error) {
    const e = error as { stdout?: string; stderr?: string; message: string };
    throw new Error(
      `${command} ${args.join(" ")} failed: ${e.message}\n${e.stdout ?? ""}\n${e.stderr ?? ""}`,
    );
  }
}

async function timed<T>(label: string, work: () => Promise<T>): Promise<T> {
  const started = performance.now();
  try {
    return await work();
  } finally {
    timings[label] = Math.round(performance.now() - started);
  }
}

before(async () => {
  tarball = await timed("pack", async () => packProject(work));
  mkdirSync(join(app, "files"), { recursive: true });
  writeFileSync(
    join(app, "package.json"),
    JSON.stringify({ name: "consumer", private: true, type: "module" }),
  );
  writeFileSync(join(app, "files", "hello.txt"), "hello from the installed package\n");
  // A built-in backend, so that serving needs nothing but the package.
  writeFileSync(
    config,
    "mcpServers: {}\nbackends:\n  files: { type: filesystem, root: ./files }\n" +
      "server:\n  http:\n    console: { enabled: true }\n",
  );
  await timed("install", () => inApp("npm", ["install", "--omit=dev", "--no-package-lock", tarball]));
});

after(() => {
  process.stderr.write(`package test timings (ms): ${JSON.stringify(timings)}\n`);
  rmSync(work, { recursive: true, force: true });
});

describe("the packed package, installed without development dependencies", () => {
  test("holds compiled JavaScript and declarations, and no TypeScript sources", async () => {
    const { stdout } = await run("tar", ["tzf", tarball]);
    const files = stdout.split("\n").filter(Boolean);
    assert.ok(files.includes("package/dist/index.js") && files.includes("package/dist/index.d.ts"));
    assert.ok(files.includes("package/dist/cli/main.js"));
    // The console's page, scripts and styles, which the build copies next to the compiled console.
    assert.ok(files.includes("package/dist/console/static/index.html"));
    assert.ok(files.includes("package/dist/console/static/app.js"));
    assert.deepEqual(
      files.filter((f) => f.startsWith("package/src/") || (f.endsWith(".ts") && !f.endsWith(".d.ts"))),
      [],
    );
  });

  test("installs no tsx, esbuild or PGlite (an optional peer)", () => {
    for (const name of ["tsx", "esbuild", "@esbuild", "@electric-sql/pglite", "typescript"]) {
      assert.equal(existsSync(join(app, "node_modules", name)), false, `${name} is installed`);
    }
  });

  test("npx switchboard --version, and npx mcp-switchboard (the package's name)", async () => {
    assert.equal((await inApp("npx", ["switchboard", "--version"])).stdout.trim(), VERSION);
    assert.equal(
      (await inApp("npx", ["--no-install", "mcp-switchboard", "--version"])).stdout.trim(),
      VERSION,
    );
  });

  test("switchboard check validates a config", async () => {
    const { stdout } = await inApp("npx", ["switchboard", "check", "--config", config]);
    assert.match(stdout, /valid/);
    assert.match(stdout, /files\s+filesystem/);
  });

  test("serve answers a tool call over stdio", async () => {
    const client = new Client({ name: "package-test", version: "1" });
    await client.connect(
      new StdioClientTransport({
        command: join(app, "node_modules/.bin/switchboard"),
        args: ["serve", "--config", config, "--stdio"],
        cwd: app,
        stderr: "ignore",
      }),
    );
    try {
      const result = await client.callTool({ name: "files__read", arguments: { path: "hello.txt" } });
      assert.match(firstTextOf(result), /hello from the installed package/);
    } finally {
      await client.close();
    }
  });

  test("serve answers a tool call over HTTP, /livez, and the console's files", async () => {
    const child = spawn(
      join(app, "node_modules/.bin/switchboard"),
      ["serve", "--config", config, "--http", "127.0.0.1:0"],
      { cwd: app, stdio: ["ignore", "ignore", "pipe"] },
    );
    const exited = new Promise<number | null>((resolve) => child.once("exit", resolve));
    const logs = new LogWatcher(child.stderr);
    try {
      const listening = await logs.waitFor((l) => l.msg === "listening", 30_000, "listening");
      const url = String(listening.url);
      assert.match(
        String((listening.connect as Record<string, string>).claudeCodeStdio),
        /^claude mcp add switchboard -- npx -y mcp-switchboard serve --config \S+ --stdio$/,
      );
      const client = await connectHttpClient(url, { name: "package-test" });
      try {
        const result = await client.callTool({ name: "files__read", arguments: { path: "hello.txt" } });
        assert.match(firstTextOf(result), /hello from the installed package/);
      } finally {
        await client.close();
      }
      assert.equal((await fetch(new URL("/livez", url))).status, 200);
      for (const path of ["/console/", "/console/app.js", "/console/console.css"]) {
        assert.equal((await fetch(new URL(path, url))).status, 200, `${path} is served`);
      }
    } finally {
      child.kill("SIGTERM");
    }
    assert.equal(await exited, 0, `SIGTERM exits 0:\n${logs.tail()}`);
  });

  test('import { … } from "mcp-switchboard" works in plain Node ESM', async () => {
    writeFileSync(
      join(app, "use.mjs"),
      `import { createGateway, EMPTY_CATALOG, silentLogger, signToolCall, VERSION } from "mcp-switchboard";
const backend = {
  name: "plain", state: "up",
  async start(events) { events.state("up"); },
  catalog: () => ({ ...EMPTY_CATALOG, tools: [{ name: "hi", inputSchema: { type: "object" } }] }),
  async callTool() { return { content: [{ type: "text", text: "hi from plain JS" }] }; },
  async readResource() { throw new Error("none"); }, async getPrompt() { throw new Error("none"); },
  async health() { return { status: "healthy" }; }, async close() {},
};
const gateway = await createGateway({ config: { mcpServers: {} }, backends: [backend], logger: silentLogger() });
await gateway.start();
const result = await gateway.callTool("plain__hi", {});
await gateway.close();
const signed = signToolCall({ tool: "t", arguments: {}, principal: "p", keyId: "k", secret: "x".repeat(32) });
console.log(JSON.stringify({ version: VERSION, text: result.content[0].text, signed: typeof signed }));
`,
    );
    const { stdout } = await inApp(process.execPath, ["use.mjs"]);
    assert.deepEqual(JSON.parse(stdout), { version: VERSION, text: "hi from plain JS", signed: "object" });
  });

  test("a TypeScript program using the public API type-checks under strict and nodenext, and runs", async () => {
    // The embedding example, as a program of the user's own would use the package.
    cpSync(join(ROOT, "examples/embedding/weather-gateway.ts"), join(app, "weather-gateway.ts"));
    writeFileSync(
      join(app, "tsconfig.json"),
      JSON.stringify({
        compilerOptions: {
          strict: true,
          module: "nodenext",
          moduleResolution: "nodenext",
          target: "es2022",
          outDir: "out",
          types: ["node"],
          // The user's own @types/node: this project's, rather than one more install.
          typeRoots: [join(ROOT, "node_modules/@types")],
          skipLibCheck: false,
        },
        files: ["weather-gateway.ts"],
      }),
    );
    await timed("typecheck", () => inApp(join(ROOT, "node_modules/.bin/tsc"), ["-p", "tsconfig.json"]));
    const child = spawn(process.execPath, ["out/weather-gateway.js"], {
      cwd: app,
      stdio: ["ignore", "pipe", "inherit"],
    });
    const exited = new Promise<number | null>((resolve) => child.once("exit", resolve));
    const lines = new LogWatcher(child.stdout);
    try {
      const { url } = await lines.waitFor((l) => typeof l.url === "string", 30_000, "the example's url");
      const client = await connectHttpClient(String(url), { name: "package-test" });
      try {
        const result = await client.callTool({ name: "weather__forecast", arguments: { city: "Lima" } });
        assert.equal(firstTextOf(result), "Lima: sunny, 16 °C");
      } finally {
        await client.close();
      }
    } finally {
      child.kill("SIGTERM");
    }
    assert.equal(await exited, 0);
  });

  test("npm install -g puts switchboard on the PATH", async () => {
    const prefix = join(work, "global");
    await timed("global install", () =>
      inApp("npm", ["install", "-g", "--prefix", prefix, "--prefer-offline", tarball]),
    );
    const { stdout } = await run(join(prefix, "bin", "switchboard"), ["--version"]);
    assert.equal(stdout.trim(), VERSION);
  });

  test("reports the installed size", async () => {
    const { stdout } = await run("du", ["-sk", join(app, "node_modules")]);
    const mb = Number(stdout.split("\t")[0]) / 1024;
    timings.installedMB = Math.round(mb);
    // The README states the size; a dependency that doubles it should be a decision, not an accident.
    assert.ok(mb < 100, `node_modules of a production install is ${mb.toFixed(0)} MB`);
  });
});
