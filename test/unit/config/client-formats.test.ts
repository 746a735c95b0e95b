// biome-ignore-all lint/suspicious/noTemplateCurlyInString: these tests are about ${VAR} references in plain strings.
/**
 * The config files of MCP clients, read as Switchboard configs: what each key is mapped to, the
 * warnings about keys only a client reads, and the errors that say what to do (README, "Config files
 * from MCP clients").
 */
import assert from "node:assert/strict";
import { mkdir, mkdtemp, rm, writeFile } from "node:fs/promises";
import { homedir, tmpdir } from "node:os";
import { dirname, join } from "node:path";
import { after, describe, test } from "node:test";
import {
  type Config,
  type ConfigWarning,
  inputVariable,
  loadConfigFile,
  parseConfig,
  type ServerConfig,
  validateConfig,
} from "../../../src/config/index.ts";
import { createSecretResolver } from "../../../src/config/secrets/resolver.ts";
import { GatewayError } from "../../../src/core/errors.ts";

let tempDir: string | undefined;
after(async () => {
  if (tempDir) await rm(tempDir, { recursive: true, force: true });
});

/** Writes `files` (relative path -> content) under a fresh folder and returns that folder. */
async function folderWith(files: Record<string, string | object>): Promise<string> {
  tempDir ??= await mkdtemp(join(tmpdir(), "switchboard-clients-"));
  const root = await mkdtemp(join(tempDir, "case-"));
  for (const [path, content] of Object.entries(files)) {
    await mkdir(dirname(join(root, path)), { recursive: true });
    await writeFile(
      join(root, path),
      typeof content === "string" ? content : JSON.stringify(content, null, 2),
    );
  }
  return root;
}

interface Parsed {
  readonly config: Config;
  readonly warnings: ConfigWarning[];
}

/** Parses `document` as the file `source` (whose name tells which client wrote it). */
function parseAs(source: string, document: object, env: Record<string, string> = {}): Parsed {
  const warnings: ConfigWarning[] = [];
  const config = parseConfig(JSON.stringify(document), {
    source,
    env,
    onWarning: (warning) => warnings.push(warning),
  });
  return { config, warnings };
}

function server(config: Config, name: string): ServerConfig {
  const found = config.mcpServers[name];
  assert.ok(found, `server ${name} missing`);
  return found;
}

function expectError(fn: () => unknown, code: string): GatewayError {
  try {
    fn();
  } catch (error) {
    assert.ok(error instanceof GatewayError, `expected a GatewayError, got ${String(error)}`);
    assert.equal(error.code, code, error.message);
    return error;
  }
  assert.fail(`expected a ${code} error`);
}

async function expectRejection(promise: Promise<unknown>, code: string): Promise<GatewayError> {
  try {
    await promise;
  } catch (error) {
    assert.ok(error instanceof GatewayError, `expected a GatewayError, got ${String(error)}`);
    assert.equal(error.code, code, error.message);
    return error;
  }
  assert.fail(`expected a ${code} error`);
}

function issuesOf(error: GatewayError): { path: string; message: string }[] {
  return error.data.issues as { path: string; message: string }[];
}

describe("disabled, timeout and type", () => {
  test("disabled: true is enabled: false, and disabled: false is enabled: true", () => {
    const { config } = parseAs("/p/mcp_config.json", {
      mcpServers: { off: { command: "x", disabled: true }, on: { command: "y", disabled: "false" } },
    });
    assert.equal(server(config, "off").enabled, false);
    assert.equal(server(config, "on").enabled, true);
    assert.ok(!Object.hasOwn(server(config, "off"), "disabled"));
  });

  test("disabled and enabled that contradict each other are an error at disabled", () => {
    const error = expectError(
      () =>
        parseAs("/p/mcp_config.json", { mcpServers: { a: { command: "x", disabled: true, enabled: true } } }),
      "config_invalid",
    );
    assert.equal(issuesOf(error)[0]?.path, "mcpServers.a.disabled");
    assert.match(issuesOf(error)[0]?.message ?? "", /keep one/);
  });

  test("timeout is seconds in Cline and Roo Code files, milliseconds in Claude Code's", () => {
    const servers = { mcpServers: { a: { command: "x", timeout: 90 } } };
    for (const file of ["/p/cline_mcp_settings.json", "/p/mcp_settings.json", "/p/.roo/mcp.json"])
      assert.equal(server(parseAs(file, servers).config, "a").timeoutMs, 90_000, file);
    const claudeCode = { mcpServers: { a: { command: "x", timeout: 120_000 } } };
    assert.equal(server(parseAs("/p/.mcp.json", claudeCode).config, "a").timeoutMs, 120_000);
  });

  test("a key only Cline or Roo Code writes says seconds, whatever the file's name", () => {
    const { config } = parseAs("/p/switchboard.json", {
      mcpServers: {
        cline: { command: "x", timeout: 30, autoApprove: [] },
        roo: { command: "y", timeout: "45", alwaysAllow: [] },
      },
    });
    assert.equal(server(config, "cline").timeoutMs, 30_000);
    assert.equal(server(config, "roo").timeoutMs, 45_000);
  });

  test("a timeout whose unit nothing tells is an error that asks for timeoutMs", () => {
    for (const file of ["/p/switchboard.json", "/p/.cursor/mcp.json", "/p/mcp_config.json"]) {
      const error = expectError(
        () => parseAs(file, { mcpServers: { a: { command: "x", timeout: 60 } } }),
        "config_invalid",
      );
      assert.equal(issuesOf(error)[0]?.path, "mcpServers.a.timeout");
      assert.match(issuesOf(error)[0]?.message ?? "", /seconds in Cline and Roo Code.*write timeoutMs/);
    }
  });

  test("an out-of-range timeout is reported at timeout, in the file's terms", () => {
    const error = expectError(
      () => parseAs("/p/cline_mcp_settings.json", { mcpServers: { a: { command: "x", timeout: 0 } } }),
      "config_invalid",
    );
    assert.equal(issuesOf(error)[0]?.path, "mcpServers.a.timeout");
  });

  test('Cline\'s type "streamableHttp" and legacy transportType become a type', () => {
    const { config } = parseAs("/p/cline_mcp_settings.json", {
      mcpServers: {
        a: { type: "streamableHttp", url: "https://a.example/mcp" },
        b: { transportType: "sse", url: "https://b.example/events" },
        c: { transportType: "http", url: "https://c.example/mcp" },
        d: { transportType: "stdio", command: "x" },
        e: { type: "sse", transportType: "http", url: "https://e.example/mcp" },
      },
    });
    assert.deepEqual(
      ["a", "b", "c", "d", "e"].map((name) => server(config, name).type),
      ["http", "sse", "http", "stdio", "sse"],
    );
  });

  test("a server with a url and neither command nor type: sse for /sse paths and Cline files, else http", () => {
    const servers = {
      mcpServers: {
        plain: { url: "https://a.example/mcp" },
        events: { url: "https://b.example/sse" },
        slash: { url: "https://c.example/v1/sse/" },
      },
    };
    const cursor = parseAs("/p/.cursor/mcp.json", servers).config;
    assert.deepEqual(
      ["plain", "events", "slash"].map((name) => server(cursor, name).type),
      ["http", "sse", "sse"],
    );
    const cline = parseAs("/p/cline_mcp_settings.json", servers).config;
    assert.equal(server(cline, "plain").type, "sse");
  });

  test("Windsurf's serverUrl is url, and an invalid one is reported at serverUrl", () => {
    const { config } = parseAs("/p/mcp_config.json", {
      mcpServers: { api: { serverUrl: "https://api.example/mcp", headers: { "X-Key": "k" } } },
    });
    const api = server(config, "api");
    assert.ok(api.type === "http");
    assert.equal(api.url, "https://api.example/mcp");
    const error = expectError(
      () => parseAs("/p/mcp_config.json", { mcpServers: { api: { serverUrl: "ftp://api.example" } } }),
      "config_invalid",
    );
    assert.equal(issuesOf(error)[0]?.path, "mcpServers.api.serverUrl");
    assert.match(issuesOf(error)[0]?.message ?? "", /http:\/\/ or https:\/\//);
  });

  test("Roo Code's disabledTools join tools.exclude", () => {
    const { config } = parseAs("/p/.roo/mcp.json", {
      mcpServers: {
        a: { command: "x", disabledTools: ["crash", "leak"] },
        b: { command: "y", disabledTools: ["drop"], tools: { exclude: ["admin_*"] } },
      },
    });
    assert.deepEqual(server(config, "a").tools.exclude, ["crash", "leak"]);
    assert.deepEqual(server(config, "b").tools.exclude, ["admin_*", "drop"]);
  });
});

describe("keys only a client reads", () => {
  test("are dropped with one warning per key, naming every place and what to use instead", () => {
    const { config, warnings } = parseAs("/p/cline_mcp_settings.json", {
      mcpServers: {
        a: { command: "x", autoApprove: ["echo"] },
        b: { command: "y", autoApprove: [] },
      },
    });
    assert.ok(!Object.hasOwn(server(config, "a"), "autoApprove"));
    assert.equal(warnings.length, 1);
    assert.deepEqual(warnings[0]?.paths, ["mcpServers.a.autoApprove", "mcpServers.b.autoApprove"]);
    assert.match(warnings[0]?.message ?? "", /^autoApprove \(at mcpServers\.a\.autoApprove, mcpServers\.b/);
    assert.match(warnings[0]?.message ?? "", /Cline's .*access rules/);
  });

  test("every client's own keys are warned about", () => {
    const { warnings } = parseAs("/p/switchboard.json", {
      mcpServers: {
        roo: { command: "x", alwaysAllow: [], watchPaths: ["src"] },
        code: { type: "http", url: "https://a.example/mcp", headersHelper: "h.sh", oauth: { clientId: "c" } },
        cursor: { url: "https://b.example/mcp", auth: { CLIENT_ID: "c" } },
        vscode: { command: "y", dev: { watch: "src/**" }, sandboxEnabled: false, sandbox: {} },
      },
    });
    assert.deepEqual(warnings.map((w) => w.key).sort(), [
      "alwaysAllow",
      "auth",
      "dev",
      "headersHelper",
      "oauth",
      "sandbox",
      "sandboxEnabled",
      "watchPaths",
    ]);
  });

  test("their values are never read: a variable used only there need not be set", () => {
    const { config } = parseAs("/p/.cursor/mcp.json", {
      mcpServers: {
        sso: { url: "https://a.example/mcp", auth: { CLIENT_SECRET: "${env:NOT_SET_ANYWHERE}" } },
      },
    });
    assert.equal(server(config, "sso").type, "http");
  });

  test("warnings are only given for a config that validates", () => {
    const warnings: ConfigWarning[] = [];
    assert.throws(() =>
      validateConfig(
        { mcpServers: { a: { command: "x", autoApprove: [], bogus: 1 } } },
        { onWarning: (w) => warnings.push(w) },
      ),
    );
    assert.deepEqual(warnings, []);
  });

  test("a key that is neither Switchboard's nor a known client's is still an error", () => {
    const error = expectError(
      () => parseAs("/p/cline_mcp_settings.json", { mcpServers: { a: { command: "x", autoAprove: [] } } }),
      "config_invalid",
    );
    assert.deepEqual(issuesOf(error), [
      { path: "mcpServers.a.autoAprove", message: 'unknown key "autoAprove"' },
    ]);
  });

  test("sandboxEnabled: true is an error: Switchboard cannot sandbox a server", () => {
    const error = expectError(
      () =>
        parseAs("/p/.vscode/mcp.json", {
          servers: { a: { type: "stdio", command: "x", sandboxEnabled: true, sandbox: {} } },
        }),
      "config_invalid",
    );
    assert.equal(issuesOf(error)[0]?.path, "servers.a.sandboxEnabled");
    assert.match(issuesOf(error)[0]?.message ?? "", /cannot.*remove sandboxEnabled/);
  });
});

describe("VS Code's mcp.json", () => {
  test("servers is mcpServers, and errors name servers.<name>", () => {
    const { config } = parseAs("/p/.vscode/mcp.json", {
      servers: { fs: { type: "stdio", command: "npx", args: ["-y", "fs"] } },
    });
    assert.equal(server(config, "fs").type, "stdio");
    const error = expectError(
      () => parseAs("/p/.vscode/mcp.json", { servers: { fs: { type: "stdio", comand: "npx" } } }),
      "config_invalid",
    );
    assert.deepEqual(
      issuesOf(error).map((issue) => issue.path),
      ["servers.fs.command", "servers.fs.comand"],
    );
  });

  test("servers and mcpServers in one file is an error", () => {
    const error = expectError(() => parseAs("/p/x.json", { servers: {}, mcpServers: {} }), "config_invalid");
    assert.equal(issuesOf(error)[0]?.path, "servers");
  });

  test("${input:id} is read from SWITCHBOARD_INPUT_<ID>, and inputs is dropped", async () => {
    const root = await folderWith({
      ".vscode/mcp.json": {
        inputs: [{ type: "promptString", id: "api-key", description: "API key", password: true }],
        servers: {
          a: { type: "stdio", command: "x", env: { KEY: "${input:api-key}", LITERAL: "$${input:api-key}" } },
        },
      },
    });
    const config = await loadConfigFile(join(root, ".vscode/mcp.json"), {
      env: { SWITCHBOARD_INPUT_API_KEY: "k-123" },
    });
    const a = server(config, "a");
    assert.ok(a.type === "stdio");
    assert.deepEqual(a.env, { KEY: "k-123", LITERAL: "${input:api-key}" });
    assert.ok(!Object.hasOwn(config, "inputs"));
  });

  test("the variable is the id in upper case, other characters as _", () => {
    assert.equal(inputVariable("notes-key"), "SWITCHBOARD_INPUT_NOTES_KEY");
    assert.equal(inputVariable("db.password v2"), "SWITCHBOARD_INPUT_DB_PASSWORD_V2");
  });

  test("an input without a value names the input, its description, where it is used and what to set", () => {
    const error = expectError(
      () =>
        parseAs("/p/.vscode/mcp.json", {
          inputs: [{ type: "promptString", id: "api-key", description: "Notes API key", password: true }],
          servers: {
            a: {
              type: "http",
              url: "https://a.example/mcp",
              headers: { Authorization: "Bearer ${input:api-key}" },
            },
          },
        }),
      "config_variable_missing",
    );
    assert.equal(
      error.message,
      'Config error: VS Code input "api-key" ("Notes API key") has no value (used at ' +
        "servers.a.headers.Authorization): set the environment variable SWITCHBOARD_INPUT_API_KEY. " +
        "Switchboard cannot prompt for an input as VS Code does. Or write ${secret:env:NAME} or " +
        "${secret:file:PATH} in place of ${input:…}.",
    );
  });

  test("an input's value is a secret: the loader lists it for redaction", async () => {
    const root = await folderWith({
      ".vscode/mcp.json": {
        servers: { a: { type: "stdio", command: "x", args: ["--token", "${input:token}"] } },
      },
    });
    const env = { SWITCHBOARD_INPUT_TOKEN: "tok-secret-value" };
    const secrets = createSecretResolver({ ttlMs: 0, env });
    try {
      const config = await loadConfigFile(join(root, ".vscode/mcp.json"), { env, secrets });
      const a = server(config, "a");
      assert.ok(a.type === "stdio");
      assert.deepEqual(a.args, ["--token", "tok-secret-value"]);
      assert.deepEqual(secrets.values(), ["tok-secret-value"]);
    } finally {
      secrets.close();
    }
  });

  test("envFile is read into env relative to the file's folder, and env wins", async () => {
    const root = await folderWith({
      ".vscode/mcp.json": {
        servers: {
          a: { type: "stdio", command: "x", env: { B: "from env" }, envFile: "${workspaceFolder}/.env" },
          b: { type: "stdio", command: "y", envFile: "local.env" },
        },
      },
      ".env": '# comment\nA=from file\nB=from file\nQUOTED="two words"\n',
      ".vscode/local.env": "C=3\n",
    });
    const config = await loadConfigFile(join(root, ".vscode/mcp.json"), { env: {} });
    const a = server(config, "a");
    assert.ok(a.type === "stdio");
    assert.deepEqual(a.env, { A: "from file", B: "from env", QUOTED: "two words" });
    const b = server(config, "b");
    assert.ok(b.type === "stdio");
    assert.deepEqual(b.env, { C: "3" });
  });

  test("an envFile that cannot be read is an error naming the file and what to do", async () => {
    const root = await folderWith({
      ".cursor/mcp.json": { mcpServers: { a: { command: "x", envFile: "missing.env" } } },
    });
    const error = await expectRejection(
      loadConfigFile(join(root, ".cursor/mcp.json"), { env: {} }),
      "config_invalid",
    );
    assert.equal(issuesOf(error)[0]?.path, "mcpServers.a.envFile");
    assert.equal(
      issuesOf(error)[0]?.message,
      `cannot read ${join(root, ".cursor/missing.env")}: it does not exist. Create it, or remove envFile`,
    );
  });
});

describe("variables as editors write them", () => {
  test("${env:NAME} is ${NAME}, with a default too, and a missing one is named", () => {
    const { config } = parseAs(
      "/p/.cursor/mcp.json",
      { mcpServers: { a: { command: "x", env: { A: "${env:SET}", B: "${env:UNSET:-fallback}" } } } },
      { SET: "one" },
    );
    const a = server(config, "a");
    assert.ok(a.type === "stdio");
    assert.deepEqual(a.env, { A: "one", B: "fallback" });
    const error = expectError(
      () => parseAs("/p/.cursor/mcp.json", { mcpServers: { a: { command: "${env:NOPE}" } } }),
      "config_variable_missing",
    );
    assert.match(error.message, /environment variable NOPE is not set \(used at mcpServers\.a\.command\)/);
  });

  test("${workspaceFolder} is the folder above .vscode, .cursor and .roo, else the file's; ${userHome} the home", async () => {
    const entry = { command: "x", args: ["${workspaceFolder}", "${userHome}"] };
    const root = await folderWith({
      ".vscode/mcp.json": { servers: { a: { type: "stdio", ...entry } } },
      ".cursor/mcp.json": { mcpServers: { a: entry } },
      ".roo/mcp.json": { mcpServers: { a: entry } },
      ".mcp.json": { mcpServers: { a: entry } },
    });
    for (const file of [".vscode/mcp.json", ".cursor/mcp.json", ".roo/mcp.json", ".mcp.json"]) {
      const a = server(await loadConfigFile(join(root, file), { env: {} }), "a");
      assert.ok(a.type === "stdio");
      assert.deepEqual(a.args, [root, homedir()], file);
    }
  });

  test("a variable of that name in the environment wins", () => {
    const { config } = parseAs(
      "/p/.vscode/mcp.json",
      { servers: { a: { type: "stdio", command: "x", cwd: "${workspaceFolder}" } } },
      { workspaceFolder: "/srv/project" },
    );
    const a = server(config, "a");
    assert.ok(a.type === "stdio");
    assert.equal(a.cwd, "/srv/project");
  });
});
