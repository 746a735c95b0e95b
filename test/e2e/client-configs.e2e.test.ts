// biome-ignore-all lint/suspicious/noTemplateCurlyInString: configs here hold ${VAR} references.
/**
 * The config files MCP clients write, given to the real CLI as they are (test/fixtures/client-configs,
 * one real-shaped file per client): `switchboard check` shows what each key was mapped to and warns
 * about the keys only the client reads, and `switchboard tools` starts the servers they describe.
 */
import assert from "node:assert/strict";
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, before, describe, test } from "node:test";
import { assertExitCode, type CliRun, runCli } from "../support/cli.ts";
import { FIXTURE, type HttpFixture, ROOT, startHttpFixture } from "../support/gateway-process.ts";

const FILES = join(ROOT, "test/fixtures/client-configs");
const file = (path: string) => join(FILES, path);

/** The variables the fixtures use to find the test servers, plus a token and a VS Code input. */
function fixtureEnv(url: string): Record<string, string> {
  return {
    SB_FIXTURE_NODE: process.execPath,
    SB_FIXTURE_SERVER: FIXTURE,
    SB_FIXTURE_URL: url,
    API_TOKEN: "api-token-5d1c7e",
    SWITCHBOARD_INPUT_NOTES_KEY: "notes-key-8a2f6b",
  };
}

interface ServerSummary {
  readonly name: string;
  readonly type: string;
  readonly enabled: boolean;
  readonly timeoutMs: number;
  readonly url?: string;
  readonly envKeys?: readonly string[];
  readonly headerNames?: readonly string[];
  readonly tools: { readonly exclude: readonly string[] };
}

interface Checked {
  readonly servers: ServerSummary[];
  readonly warnings: string[];
}

async function check(path: string, env: Record<string, string>): Promise<Checked> {
  const result = await runCli(["check", "--json", "--config", path], env);
  assertExitCode(result, 0);
  return JSON.parse(result.stdout) as Checked;
}

/** name -> [type, enabled, timeoutMs], for one assertion per file. */
function shape(checked: Checked): Record<string, [string, boolean, number]> {
  return Object.fromEntries(checked.servers.map((s) => [s.name, [s.type, s.enabled, s.timeoutMs]]));
}

function summaryOf(checked: Checked, name: string): ServerSummary {
  const found = checked.servers.find((s) => s.name === name);
  assert.ok(found, `server ${name} missing from ${JSON.stringify(checked.servers)}`);
  return found;
}

/** The tool names `switchboard tools` printed (first column, after the header). */
function toolNames(result: CliRun): string[] {
  return result.stdout
    .trimEnd()
    .split("\n")
    .slice(2)
    .map((line) => line.split(/\s+/)[0] ?? "");
}

/** The JSON log lines at warn that name a config key. */
function keyWarnings(result: CliRun): { key: string; msg: string }[] {
  return result.stderr
    .split("\n")
    .filter((line) => line.startsWith("{"))
    .map((line) => JSON.parse(line) as { level?: string; key?: string; msg?: string })
    .filter((line) => line.level === "warn" && typeof line.key === "string")
    .map((line) => ({ key: line.key ?? "", msg: line.msg ?? "" }));
}

async function tools(path: string, env: Record<string, string>): Promise<CliRun> {
  const result = await runCli(["tools", "--config", path], env);
  assertExitCode(result, 0);
  return result;
}

let http: HttpFixture | undefined;
let env: Record<string, string> = fixtureEnv("http://127.0.0.1:9");
before(async () => {
  http = await startHttpFixture();
  env = fixtureEnv(http.url);
});
after(() => http?.stop());

describe("Claude Desktop: claude_desktop_config.json", () => {
  const path = file("claude-desktop/claude_desktop_config.json");

  test("check: its app settings are dropped without a warning", async () => {
    const checked = await check(path, env);
    assert.deepEqual(shape(checked), { notes: ["stdio", true, 60_000] });
    assert.deepEqual(checked.warnings, []);
  });

  test("tools: its server starts", async () => {
    assert.ok(toolNames(await tools(path, env)).includes("notes__echo"));
  });
});

describe("Claude Code: .mcp.json", () => {
  const path = file("claude-code/.mcp.json");

  test("check: timeout in milliseconds, and a warning each for headersHelper and oauth", async () => {
    const checked = await check(path, env);
    assert.deepEqual(shape(checked), {
      notes: ["stdio", true, 120_000],
      api: ["http", true, 30_000],
      legacy: ["sse", true, 60_000],
    });
    assert.equal(checked.warnings.length, 2);
    assert.match(
      checked.warnings[0] ?? "",
      /^headersHelper \(at mcpServers\.api\.headersHelper\) is Claude Code's/,
    );
    assert.match(checked.warnings[1] ?? "", /^oauth \(at mcpServers\.legacy\.oauth\) is Claude Code's/);
  });

  test("tools: stdio, Streamable HTTP and SSE servers start, and the warnings are logged at warn", async () => {
    const result = await tools(path, env);
    const names = toolNames(result);
    for (const name of ["notes__echo", "api__echo", "legacy__echo"]) assert.ok(names.includes(name), name);
    assert.deepEqual(
      keyWarnings(result).map((w) => w.key),
      ["headersHelper", "oauth"],
    );
  });
});

describe("Cursor: .cursor/mcp.json", () => {
  const path = file("cursor/.cursor/mcp.json");

  test("check: a url without type is http, envFile joins env, ${env:…} and ${workspaceFolder} resolve", async () => {
    const checked = await check(path, env);
    assert.deepEqual(shape(checked), {
      notes: ["stdio", true, 60_000],
      api: ["http", true, 60_000],
      sso: ["http", true, 60_000],
    });
    assert.deepEqual(summaryOf(checked, "notes").envKeys, ["FIXTURE_NAME", "NOTES_DIR"]);
    assert.deepEqual(summaryOf(checked, "api").headerNames, ["Authorization"]);
    assert.equal(checked.warnings.length, 1);
    // Its values are never read: SSO_CLIENT_ID and SSO_CLIENT_SECRET are not set.
    assert.match(checked.warnings[0] ?? "", /^auth \(at mcpServers\.sso\.auth\) is Cursor's OAuth client/);
  });

  test("tools: its servers start", async () => {
    const names = toolNames(await tools(path, env));
    for (const name of ["notes__echo", "api__echo", "sso__echo"]) assert.ok(names.includes(name), name);
  });
});

describe("Cline: cline_mcp_settings.json", () => {
  const path = file("cline/cline_mcp_settings.json");

  test("check: disabled, timeout in seconds, streamableHttp and transportType; autoApprove warned once", async () => {
    const checked = await check(path, env);
    assert.deepEqual(shape(checked), {
      notes: ["stdio", true, 120_000],
      api: ["http", true, 30_000],
      legacy: ["sse", true, 60_000],
      github: ["stdio", false, 60_000],
    });
    assert.equal(checked.warnings.length, 1);
    assert.match(
      checked.warnings[0] ?? "",
      /^autoApprove \(at mcpServers\.notes\.autoApprove, mcpServers\.api\.autoApprove, mcpServers\.legacy\.autoApprove, mcpServers\.github\.autoApprove\) is Cline's list of tools it calls without asking, which Switchboard ignores: .*access rules\.$/,
    );
  });

  test("check without --json: the warning is a warning: line after the table", async () => {
    const result = await runCli(["check", "--config", path], env);
    assertExitCode(result, 0);
    assert.match(result.stdout, /\n\nwarning: autoApprove \(at mcpServers\.notes\.autoApprove, .*\.\n$/);
  });

  test("tools: the disabled server is not started, the others are; one warn line for autoApprove", async () => {
    const result = await tools(path, env);
    const names = toolNames(result);
    for (const name of ["notes__echo", "api__echo", "legacy__echo"]) assert.ok(names.includes(name), name);
    assert.ok(!names.some((name) => name.startsWith("github__")), names.join(", "));
    assert.deepEqual(
      keyWarnings(result).map((w) => w.key),
      ["autoApprove"],
    );
  });
});

describe("Roo Code: .roo/mcp.json", () => {
  const path = file("roo/.roo/mcp.json");

  test("check: timeout in seconds, disabledTools excluded, alwaysAllow and watchPaths warned", async () => {
    const checked = await check(path, env);
    assert.deepEqual(shape(checked), {
      notes: ["stdio", true, 90_000],
      api: ["http", true, 15_000],
      puppeteer: ["stdio", false, 60_000],
    });
    assert.deepEqual(summaryOf(checked, "notes").tools.exclude, ["crash", "leak"]);
    assert.deepEqual(
      checked.warnings.map((w) => w.split(" ")[0]),
      ["alwaysAllow", "watchPaths"],
    );
  });

  test("tools: the disabled tools are not offered", async () => {
    const names = toolNames(await tools(path, env));
    assert.ok(names.includes("notes__echo") && names.includes("api__echo"), names.join(", "));
    assert.ok(!names.includes("notes__crash") && !names.includes("notes__leak"), names.join(", "));
  });
});

describe("VS Code: .vscode/mcp.json", () => {
  const path = file("vscode/.vscode/mcp.json");

  test("check: servers, inputs from SWITCHBOARD_INPUT_<ID>, envFile; dev warned", async () => {
    const checked = await check(path, env);
    assert.deepEqual(shape(checked), { notes: ["stdio", true, 60_000], api: ["http", true, 60_000] });
    assert.deepEqual(summaryOf(checked, "notes").envKeys, ["FIXTURE_NAME", "NOTES_DIR", "NOTES_API_KEY"]);
    assert.equal(checked.warnings.length, 1);
    assert.match(checked.warnings[0] ?? "", /^dev \(at servers\.notes\.dev\) is VS Code's development mode/);
  });

  test("tools: its servers start", async () => {
    const names = toolNames(await tools(path, env));
    assert.ok(names.includes("notes__echo") && names.includes("api__echo"), names.join(", "));
  });

  test("an input without a value: exit 2, naming the input, where it is used and what to set", async () => {
    const result = await runCli(["check", "--config", path], {
      ...env,
      SWITCHBOARD_INPUT_NOTES_KEY: undefined,
    });
    assertExitCode(result, 2);
    assert.match(
      result.stderr,
      /VS Code input "notes-key" \("Notes API key"\) has no value \(used at servers\.notes\.env\.NOTES_API_KEY, servers\.api\.headers\.Authorization\): set the environment variable SWITCHBOARD_INPUT_NOTES_KEY/,
    );
    assert.equal(result.stdout, "");
  });

  test("an input's value is a secret: check prints [redacted] in its place", async () => {
    const dir = mkdtempSync(join(tmpdir(), "switchboard-vscode-"));
    try {
      mkdirSync(join(dir, ".vscode"));
      const config = join(dir, ".vscode", "mcp.json");
      writeFileSync(
        config,
        JSON.stringify({
          inputs: [{ type: "promptString", id: "token", description: "Token", password: true }],
          servers: { cli: { type: "stdio", command: "tool", args: ["login", "${input:token}"] } },
        }),
      );
      const result = await runCli(["check", "--config", config], {
        SWITCHBOARD_INPUT_TOKEN: "input-secret-2c9e",
      });
      assertExitCode(result, 0);
      assert.ok(!result.stdout.includes("input-secret-2c9e"), result.stdout);
      assert.match(result.stdout, /tool login \[redacted\]/);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});

describe("Windsurf: mcp_config.json", () => {
  const path = file("windsurf/mcp_config.json");

  test("check: serverUrl is url (sse for an /sse path), disabled is enabled: false", async () => {
    const checked = await check(path, env);
    assert.deepEqual(shape(checked), {
      notes: ["stdio", true, 60_000],
      api: ["http", true, 60_000],
      legacy: ["sse", true, 60_000],
      figma: ["stdio", false, 60_000],
    });
    assert.equal(summaryOf(checked, "api").url, `${env.SB_FIXTURE_URL}/mcp`);
    assert.deepEqual(checked.warnings, []);
  });

  test("tools: its servers start, the disabled one does not", async () => {
    const names = toolNames(await tools(path, env));
    for (const name of ["notes__echo", "api__echo", "legacy__echo"]) assert.ok(names.includes(name), name);
    assert.ok(!names.some((name) => name.startsWith("figma__")), names.join(", "));
  });
});

describe("keys that are neither Switchboard's nor a client's", () => {
  test("are still an error with their path, exit 2", async () => {
    const dir = mkdtempSync(join(tmpdir(), "switchboard-cline-"));
    try {
      const config = join(dir, "cline_mcp_settings.json");
      writeFileSync(config, JSON.stringify({ mcpServers: { a: { command: "x", autoAprove: [] } } }));
      const result = await runCli(["check", "--config", config]);
      assertExitCode(result, 2);
      assert.match(result.stderr, /mcpServers\.a\.autoAprove: unknown key "autoAprove"/);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});
