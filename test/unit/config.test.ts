// biome-ignore-all lint/suspicious/noTemplateCurlyInString: these tests are about ${VAR} references in plain strings.
import assert from "node:assert/strict";
import { mkdtemp, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { dirname, join } from "node:path";
import { after, describe, test } from "node:test";
import { fileURLToPath } from "node:url";
import {
  type Config,
  formatPath,
  interpolate,
  loadConfigFile,
  parseConfig,
  type ServerConfig,
  summarizeConfig,
  validateConfig,
} from "../../src/config/index.ts";
import { GatewayError } from "../../src/core/errors.ts";

const FIXTURES = join(dirname(fileURLToPath(import.meta.url)), "..", "fixtures", "config");
const fixture = (name: string) => join(FIXTURES, name);

/** Runs `fn`, expects a GatewayError with `code`, and returns it for further checks. */
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

// Written at run time: a formatter run over the repository would rewrite them as fixtures (or fail on
// the broken one).
let tempDir: string | undefined;
after(async () => {
  if (tempDir) await rm(tempDir, { recursive: true, force: true });
});

async function tempFile(name: string, content: string): Promise<string> {
  tempDir ??= await mkdtemp(join(tmpdir(), "switchboard-config-"));
  const file = join(tempDir, name);
  await writeFile(file, content);
  return file;
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

const yaml = (text: string, env: Record<string, string> = {}) =>
  parseConfig(text, { format: "yaml", env, source: "test.yaml" });

function server(config: Config, name: string): ServerConfig {
  const found = config.mcpServers[name];
  assert.ok(found, `server ${name} missing`);
  return found;
}

describe("Claude-compatible files", () => {
  test("a Claude Desktop file works unchanged, with every default applied", async () => {
    const config = await loadConfigFile(
      await tempFile(
        "claude_desktop_config.json",
        '{"mcpServers":{"fs":{"command":"npx","args":["-y","@modelcontextprotocol/server-filesystem","/tmp"]}}}',
      ),
      { env: {} },
    );
    assert.deepEqual(server(config, "fs"), {
      type: "stdio",
      command: "npx",
      args: ["-y", "@modelcontextprotocol/server-filesystem", "/tmp"],
      env: {},
      roots: [],
      enabled: true,
      prefix: "fs",
      tools: { include: ["*"], exclude: [], rename: {}, descriptions: {} },
      timeoutMs: 60_000,
      restart: { initialDelayMs: 500, maxDelayMs: 30_000 },
      policies: {},
      isolation: "shared",
      sessionLimits: { max: 16, idleTimeoutMs: 600_000 },
    });
    assert.deepEqual(config.gateway, {
      name: "switchboard",
      separator: "__",
      startupTimeoutMs: 30_000,
      startupWaitMs: 750,
      shutdownTimeoutMs: 10_000,
      reload: { watch: true, debounceMs: 300 },
      discovery: { mode: "full", alwaysOn: [] },
      tasks: { resultTtlMs: 3_600_000, pollIntervalMs: 1_000 },
    });
    assert.deepEqual(config.server.http, {
      host: "127.0.0.1",
      port: 8931,
      path: "/mcp",
      maxBodyBytes: 4 * 1024 * 1024,
      allowedHosts: [],
      allowedOrigins: [],
      sessionIdleTimeoutMs: 1_800_000,
      admin: { roles: ["admin"], allowRemote: false },
      console: { enabled: false },
    });
    assert.deepEqual(config.logging, { level: "info" });
    assert.deepEqual(config.policies, {});
    assert.deepEqual(config.toolPolicies, {});
  });

  test("a Claude Code .mcp.json with http, sse and stdio servers", async () => {
    const config = await loadConfigFile(fixture("claude-code.mcp.json"), {
      env: { GITHUB_TOKEN: "ghp_secret" },
    });
    const github = server(config, "github");
    assert.equal(github.type, "http");
    assert.equal(github.url, "https://api.githubcopilot.com/mcp/");
    assert.deepEqual(github.headers, { Authorization: "Bearer ghp_secret" });

    const legacy = server(config, "legacy");
    assert.equal(legacy.type, "sse");
    assert.equal(legacy.url, "https://legacy.example.com/sse");

    const memory = server(config, "memory");
    assert.equal(memory.type, "stdio");
    assert.deepEqual(memory.env, { MEMORY_FILE_PATH: "/tmp/memory.jsonl" });
  });

  test('"streamable-http" is read as "http"', () => {
    const config = yaml("mcpServers:\n  r: { type: streamable-http, url: https://example.com/mcp }\n");
    assert.equal(server(config, "r").type, "http");
  });

  test("an empty mcpServers is valid", () => {
    assert.deepEqual(parseConfig('{"mcpServers": {}}', { format: "json" }).mcpServers, {});
  });

  test("Claude Desktop's own top-level settings are accepted and dropped", () => {
    const config = parseConfig(
      JSON.stringify({
        globalShortcut: "Ctrl+Space",
        preferences: { menuBarEnabled: false, quickEntryShortcut: "off" },
        isUsingBuiltInNodeForMcp: true,
        mcpServers: { fs: { command: "npx", args: ["-y", "@modelcontextprotocol/server-filesystem"] } },
      }),
      { format: "json", env: {} },
    );
    const fs = server(config, "fs");
    assert.ok(fs.type === "stdio");
    assert.equal(fs.command, "npx");
    for (const key of ["globalShortcut", "preferences", "isUsingBuiltInNodeForMcp"]) {
      assert.ok(!Object.hasOwn(config, key), `${key} should not reach the gateway`);
    }
  });

  test("other unknown top-level keys are still errors, with a suggestion for near misses", () => {
    const error = expectError(
      () => yaml("mcpServers: {}\nglobalShortcat: Ctrl+Space\ntheme: dark\n"),
      "config_invalid",
    );
    assert.deepEqual(issuesOf(error), [
      { path: "globalShortcat", message: 'unknown key "globalShortcat" (did you mean "globalShortcut"?)' },
      { path: "theme", message: 'unknown key "theme"' },
    ]);
  });
});

describe("numbers and booleans from strings", () => {
  test("interpolated numbers are accepted where the schema wants a number", () => {
    const config = yaml(
      "mcpServers:\n  a: { command: x, timeoutMs: '${TIMEOUT:-2500}', restart: { maxRestarts: '${R}' } }\n" +
        "server: { http: { port: '${PORT:-8931}', maxBodyBytes: '1e6' } }\n" +
        "gateway: { startupTimeoutMs: '${STARTUP}' }\n",
      { R: "3", STARTUP: "15000" },
    );
    assert.equal(config.server.http.port, 8931);
    assert.equal(config.server.http.maxBodyBytes, 1_000_000);
    assert.equal(config.gateway.startupTimeoutMs, 15_000);
    assert.equal(server(config, "a").timeoutMs, 2500);
    assert.equal(server(config, "a").restart.maxRestarts, 3);
    assert.equal(
      yaml("mcpServers: {}\nserver: { http: { port: '${PORT}' } }\n", { PORT: "0" }).server.http.port,
      0,
    );
  });

  test("inside policies too, and true/false where the schema wants a boolean", () => {
    const config = yaml(
      "mcpServers:\n  a: { command: x, enabled: '${A_ENABLED:-false}' }\n" +
        "policies:\n  rateLimit: { capacity: '${CAP:-5}', refillPerSecond: '0.5' }\n" +
        "  retry: { safe: 'true', maxAttempts: '2' }\n",
    );
    assert.equal(server(config, "a").enabled, false);
    assert.deepEqual(config.policies.rateLimit, {
      scope: "tool",
      perPrincipal: false,
      capacity: 5,
      refillPerSecond: 0.5,
      mode: "reject",
      maxWaitMs: 30000,
    });
    assert.ok(config.policies.retry);
    assert.equal(config.policies.retry.safe, true);
    assert.equal(config.policies.retry.maxAttempts, 2);
  });

  test("strings that only look numeric are errors that show the value", () => {
    const error = expectError(
      () =>
        yaml(
          "mcpServers:\n  a: { command: x, enabled: 'yes' }\n" +
            "server: { http: { port: '${PORT}', maxBodyBytes: '0x10' } }\n" +
            "gateway: { startupTimeoutMs: '${EMPTY}', shutdownTimeoutMs: ' 5' }\n",
          { PORT: "80a", EMPTY: "" },
        ),
      "config_invalid",
    );
    assert.deepEqual(issuesOf(error), [
      { path: "mcpServers.a.enabled", message: 'expected true or false, got the string "yes"' },
      { path: "gateway.startupTimeoutMs", message: 'expected a number, got the string ""' },
      { path: "gateway.shutdownTimeoutMs", message: 'expected a number, got the string " 5"' },
      { path: "server.http.port", message: 'expected a number, got the string "80a"' },
      { path: "server.http.maxBodyBytes", message: 'expected a number, got the string "0x10"' },
    ]);
  });

  test("a coerced number is still checked against its bounds", () => {
    const error = expectError(
      () => yaml("mcpServers: {}\nserver: { http: { port: '${PORT}' } }\n", { PORT: "70000" }),
      "config_invalid",
    );
    assert.deepEqual(issuesOf(error), [
      { path: "server.http.port", message: "must be at most 65535, got 70000" },
    ]);
    const fraction = expectError(
      () => yaml("mcpServers: {}\nserver: { http: { port: '80.5' } }\n"),
      "config_invalid",
    );
    assert.deepEqual(issuesOf(fraction), [
      { path: "server.http.port", message: "expected a whole number, got 80.5" },
    ]);
  });

  test("a value of the wrong type says what was found, but never shows a misplaced string", () => {
    const error = expectError(
      () =>
        yaml(
          "mcpServers:\n  a: { command: 5, args: one }\n" +
            "  r: { type: http, url: https://x.example/mcp, headers: 'Bearer tok-secret' }\n" +
            "gateway: { startupTimeoutMs: true, name: [a] }\n",
        ),
      "config_invalid",
    );
    assert.deepEqual(issuesOf(error), [
      { path: "mcpServers.a.command", message: "expected a string, got the number 5" },
      { path: "mcpServers.a.args", message: "expected an array, got a string" },
      { path: "mcpServers.r.headers", message: "expected an object, got a string" },
      { path: "gateway.name", message: "expected a string, got an array" },
      { path: "gateway.startupTimeoutMs", message: "expected a number, got true" },
    ]);
    assert.ok(!error.message.includes("tok-secret"));
  });

  test("string fields are never turned into numbers", () => {
    const config = yaml("mcpServers:\n  a: { command: x, args: ['${N}'], env: { PORT: '${N}' } }\n", {
      N: "8080",
    });
    const a = server(config, "a");
    assert.ok(a.type === "stdio");
    assert.deepEqual(a.args, ["8080"]);
    assert.deepEqual(a.env, { PORT: "8080" });
  });

  test("the caller's document is left as it was", () => {
    const document = { mcpServers: {}, server: { http: { port: "8080" } } };
    assert.equal(validateConfig(document, { env: {} }).server.http.port, 8080);
    assert.equal(document.server.http.port, "8080");
  });
});

describe("YAML and defaults", () => {
  test("a YAML file with extensions; unset options take their defaults", async () => {
    const config = await loadConfigFile(fixture("switchboard.yaml"), { env: { API_KEY: "k" } });
    const everything = server(config, "everything");
    assert.equal(everything.prefix, "everything");
    assert.deepEqual(everything.tools, {
      include: ["*"],
      exclude: ["long*"],
      rename: { echo: "say" },
      descriptions: { echo: "Says it back" },
    });
    assert.deepEqual(everything.restart, { initialDelayMs: 500, maxDelayMs: 30_000, maxRestarts: 5 });

    const remote = server(config, "remote");
    assert.equal(remote.type, "http");
    assert.equal(remote.prefix, "");
    assert.equal(remote.timeoutMs, 5000);
    assert.equal(config.gateway.separator, "_");
    assert.equal(config.gateway.name, "switchboard");
    assert.equal(config.server.http.port, 0);
    assert.equal(config.server.http.host, "127.0.0.1");
    assert.equal(config.logging.level, "debug");
  });

  test("the format is picked by extension, and tried as JSON then YAML otherwise", () => {
    const json = parseConfig('{"mcpServers": {"a": {"command": "x"}}}', { source: "config" });
    assert.equal(server(json, "a").type, "stdio");
    const fromYaml = parseConfig("mcpServers:\n  a:\n    command: x\n", { source: "config" });
    assert.equal(server(fromYaml, "a").type, "stdio");
  });

  test("an empty file says what it needs", () => {
    const error = expectError(() => yaml(""), "config_invalid");
    assert.match(error.message, /mcpServers/);
  });
});

describe("validation", () => {
  test("an unknown key is rejected with its path and a suggestion", () => {
    const error = expectError(
      () =>
        yaml("mcpServers:\n  fs:\n    command: npx\n    comand: npx\n    foo: 1\ngateway:\n  seperator: _\n"),
      "config_invalid",
    );
    assert.match(error.message, /^Invalid config in test\.yaml:\n/);
    assert.deepEqual(issuesOf(error), [
      { path: "mcpServers.fs.comand", message: 'unknown key "comand" (did you mean "command"?)' },
      { path: "mcpServers.fs.foo", message: 'unknown key "foo"' },
      { path: "gateway.seperator", message: 'unknown key "seperator" (did you mean "separator"?)' },
    ]);
    assert.ok(error.message.includes('  - mcpServers.fs.foo: unknown key "foo"'));
  });

  test("unknown keys inside policies are found too", () => {
    const error = expectError(
      () => yaml("mcpServers: {}\npolicies:\n  retry: { maxAtempts: 3 }\n  cache: { ttl: 5 }\n"),
      "config_invalid",
    );
    assert.deepEqual(issuesOf(error), [
      {
        path: "policies.retry.maxAtempts",
        message: 'unknown key "maxAtempts" (did you mean "maxAttempts"?)',
      },
      { path: "policies.cache.ttl", message: 'unknown key "ttl" (did you mean "ttlMs"?)' },
    ]);
  });

  test("url on a stdio server, and command on an http server, are errors with their paths", () => {
    const error = expectError(
      () =>
        yaml(
          "mcpServers:\n  a: { command: npx, url: https://x.example/mcp }\n" +
            "  b: { type: http, url: https://x.example/mcp, command: npx }\n",
        ),
      "config_invalid",
    );
    const issues = issuesOf(error);
    assert.deepEqual(
      issues.map((issue) => issue.path),
      ["mcpServers.a.url", "mcpServers.b.command"],
    );
    assert.match(issues[0]?.message ?? "", /stdio server.*type "http"/);
    assert.match(issues[1]?.message ?? "", /remote server/);
  });

  test("every problem is reported, each on its own line", () => {
    const error = expectError(
      () =>
        yaml(
          "mcpServers:\n" +
            "  bad.name: { command: x }\n" +
            "  r: { type: http, url: ftp://example.com }\n" +
            "  s: { type: websocket, url: wss://example.com }\n" +
            "  t: { args: [a] }\n" +
            "  u: { command: x, env: { PORT: 8080 } }\n" +
            "gateway: { separator: '::' }\n" +
            "server: { http: { port: 70000 } }\n" +
            "logging: { level: loud }\n" +
            "policies: { rateLimit: 5 }\n",
        ),
      "config_invalid",
    );
    const paths = issuesOf(error).map((issue) => issue.path);
    assert.deepEqual(paths, [
      'mcpServers["bad.name"]',
      "mcpServers.r.url",
      "mcpServers.s.type",
      "mcpServers.t.command",
      "mcpServers.u.env.PORT",
      "gateway.separator",
      "server.http.port",
      "logging.level",
      "policies.rateLimit",
    ]);
    const byPath = new Map(issuesOf(error).map((issue) => [issue.path, issue.message]));
    assert.match(byPath.get('mcpServers["bad.name"]') ?? "", /letters, digits/);
    assert.match(byPath.get("mcpServers.r.url") ?? "", /http:\/\/ or https:\/\//);
    assert.match(byPath.get("mcpServers.s.type") ?? "", /"stdio".*"http".*"sse"/);
    assert.match(byPath.get("mcpServers.t.command") ?? "", /^required/);
    assert.match(byPath.get("mcpServers.u.env.PORT") ?? "", /quote it/);
    assert.match(byPath.get("policies.rateLimit") ?? "", /false, an object or an array/);
    assert.equal(error.message.split("\n").length, 1 + paths.length);
  });

  test("mcpServers is required", () => {
    const error = expectError(() => yaml("gateway: {}\n"), "config_invalid");
    assert.equal(issuesOf(error)[0]?.path, "mcpServers");
    assert.match(issuesOf(error)[0]?.message ?? "", /^required/);
  });

  test("an empty include list is refused rather than read as all or none", () => {
    const error = expectError(
      () => yaml("mcpServers:\n  a: { command: x, tools: { include: [] } }\n"),
      "config_invalid",
    );
    assert.equal(issuesOf(error)[0]?.path, "mcpServers.a.tools.include");
  });

  test("two servers with the same effective prefix are an error naming both", () => {
    const error = expectError(
      () =>
        yaml(
          "mcpServers:\n  github: { command: x }\n  gh: { command: y, prefix: github }\n" +
            "  a: { command: x, prefix: '' }\n  b: { command: x, prefix: '' }\n",
        ),
      "config_invalid",
    );
    assert.deepEqual(issuesOf(error), [
      {
        path: "mcpServers.gh.prefix",
        message:
          'servers "github" and "gh" both use the prefix "github", so their tool names would clash; ' +
          "set a different prefix on one of them",
      },
    ]);
  });

  test("a disabled server may share a prefix", () => {
    const config = yaml(
      "mcpServers:\n  github: { command: x }\n  gh: { command: y, prefix: github, enabled: false }\n",
    );
    assert.equal(server(config, "gh").prefix, "github");
  });

  test("two renames to one name, or a rename onto a kept tool, are errors naming both", () => {
    const error = expectError(
      () =>
        yaml(
          "mcpServers:\n  a:\n    command: x\n    tools:\n" +
            "      include: [search, fetch, 'list_*']\n" +
            "      rename: { find: lookup, query: lookup, get: fetch, search: search }\n",
        ),
      "config_invalid",
    );
    assert.deepEqual(issuesOf(error), [
      {
        path: "mcpServers.a.tools.rename.query",
        message: '"find" and "query" are both renamed to "lookup"; give them different names',
      },
      {
        path: "mcpServers.a.tools.rename.get",
        message:
          '"get" is renamed to "fetch", which is also the name of the server\'s own tool "fetch"; ' +
          'rename or exclude "fetch" too, or pick another name',
      },
    ]);
  });

  test("swapping two names, or renaming onto an excluded tool, is fine", () => {
    const config = yaml(
      "mcpServers:\n  a:\n    command: x\n    tools:\n      include: [a, b, c]\n      exclude: [c]\n" +
        "      rename: { a: b, b: a, d: c }\n",
    );
    assert.deepEqual(server(config, "a").tools.rename, { a: "b", b: "a", d: "c" });
  });

  test("empty rename keys and targets are refused", () => {
    const error = expectError(
      () => yaml("mcpServers:\n  a:\n    command: x\n    tools: { rename: { '': b, c: '' } }\n"),
      "config_invalid",
    );
    assert.deepEqual(
      issuesOf(error).map((issue) => issue.path),
      ['mcpServers.a.tools.rename[""]', "mcpServers.a.tools.rename.c"],
    );
  });
});

describe("interpolation", () => {
  test("every missing variable is named with every path that uses it", () => {
    const text = JSON.stringify({
      mcpServers: {
        github: {
          type: "http",
          url: "https://x.example/mcp",
          headers: { Authorization: "Bearer ${GITHUB_TOKEN}" },
        },
        db: { command: "db-server", args: ["--url", "${DATABASE_URL}"], env: { TOKEN: "${GITHUB_TOKEN}" } },
      },
    });
    const error = expectError(
      () => parseConfig(text, { format: "json", env: {} }),
      "config_variable_missing",
    );
    assert.equal(
      error.message,
      [
        "Config error: 2 environment variables are not set:",
        "  - GITHUB_TOKEN (used at mcpServers.github.headers.Authorization, mcpServers.db.env.TOKEN)",
        "  - DATABASE_URL (used at mcpServers.db.args[1])",
        "Set them, or give defaults with ${NAME:-value}.",
      ].join("\n"),
    );
    assert.deepEqual(error.data.missing, [
      {
        variable: "GITHUB_TOKEN",
        paths: ["mcpServers.github.headers.Authorization", "mcpServers.db.env.TOKEN"],
      },
      { variable: "DATABASE_URL", paths: ["mcpServers.db.args[1]"] },
    ]);
  });

  test("one missing variable reads as one sentence", () => {
    const error = expectError(
      () =>
        interpolate(
          { mcpServers: { github: { headers: { Authorization: "Bearer ${GITHUB_TOKEN}" } } } },
          { env: {} },
        ),
      "config_variable_missing",
    );
    assert.equal(
      error.message,
      "Config error: environment variable GITHUB_TOKEN is not set (used at mcpServers.github.headers.Authorization). " +
        "Set it, or give a default with ${GITHUB_TOKEN:-value}.",
    );
  });

  test("defaults, empty defaults, nested defaults and set values", () => {
    const env = { SET: "value", EMPTY: "" };
    const result = interpolate(
      {
        a: "${SET:-fallback}",
        b: "${UNSET:-fallback}",
        c: "${UNSET:-}",
        d: "x${EMPTY:-was empty}x",
        e: "${UNSET:-${SET}}/${UNSET:-${OTHER:-deep}}",
        f: "${EMPTY}",
        g: 42,
        h: [true, null, "${SET}"],
      },
      { env },
    );
    assert.deepEqual(result, {
      a: "value",
      b: "fallback",
      c: "",
      d: "xwas emptyx",
      e: "value/deep",
      f: "",
      g: 42,
      h: [true, null, "value"],
    });
  });

  test("$${ is a literal ${, and a lone $ stays", () => {
    const result = interpolate(
      { a: "$${HOME} costs $5 and $${X:-y}", b: "$$" },
      { env: { HOME: "/home/me" } },
    );
    assert.deepEqual(result, { a: "${HOME} costs $5 and ${X:-y}", b: "$$" });
  });

  test("keys are never interpolated", () => {
    assert.deepEqual(interpolate({ "${KEY}": "${V}" }, { env: { KEY: "k", V: "v" } }), { "${KEY}": "v" });
  });

  test("${secret:…} is left for the secrets stage, and a resolver can be plugged in", () => {
    assert.deepEqual(interpolate({ a: "Bearer ${secret:github/token}" }, { env: {} }), {
      a: "Bearer ${secret:github/token}",
    });
    const resolvers = {
      secret: (reference: string) => (reference === "github/token" ? "s3cret" : undefined),
    };
    assert.deepEqual(interpolate({ a: "Bearer ${secret:github/token}" }, { env: {}, resolvers }), {
      a: "Bearer s3cret",
    });
    const error = expectError(
      () => interpolate({ a: "${secret:nope}" }, { env: {}, resolvers }),
      "config_variable_missing",
    );
    assert.match(error.message, /\$\{secret:nope\} is not set \(used at a\)/);
  });

  test("invalid references are errors, not silently kept", () => {
    const error = expectError(
      () => interpolate({ a: "${GITHUB-TOKEN}", b: "${unclosed", c: "${vault:x}" }, { env: {} }),
      "config_invalid",
    );
    assert.deepEqual(
      (error.data.invalid as { path: string }[]).map((problem) => problem.path),
      ["a", "b", "c"],
    );
  });

  test("variables are interpolated before validation, so their values are validated", () => {
    const text = 'mcpServers:\n  r: { type: http, url: "${URL}" }\n';
    const error = expectError(() => yaml(text, { URL: "not a url" }), "config_invalid");
    assert.equal(issuesOf(error)[0]?.path, "mcpServers.r.url");
    assert.equal(server(yaml(text, { URL: "https://ok.example/mcp" }), "r").type, "http");
  });

  test("paths read like JavaScript", () => {
    assert.equal(formatPath([]), "(root)");
    assert.equal(formatPath(["mcpServers", "fs", "args", 1]), "mcpServers.fs.args[1]");
    assert.equal(formatPath(["toolPolicies", "github__*"]), 'toolPolicies["github__*"]');
  });
});

describe("the result", () => {
  test("is deeply frozen", () => {
    const config = yaml("mcpServers:\n  a: { command: x, args: [one] }\n");
    const a = server(config, "a");
    assert.ok(a.type === "stdio");
    assert.throws(() => {
      (config as { logging: unknown }).logging = {};
    }, TypeError);
    assert.throws(() => {
      (a.args as string[]).push("two");
    }, TypeError);
    assert.throws(() => {
      (config.server.http as { port: number }).port = 1;
    }, TypeError);
    assert.throws(() => {
      (a.env as Record<string, string>).X = "y";
    }, TypeError);
  });

  test("validateConfig takes an object in code", () => {
    const config = validateConfig({ mcpServers: { a: { command: "x" } } }, { env: {} });
    assert.equal(server(config, "a").prefix, "a");
  });
});

describe("summarizeConfig", () => {
  test("names headers and env variables but never shows their values", async () => {
    const config = validateConfig(
      {
        mcpServers: {
          api: {
            type: "http",
            url: "https://user:hunter2@api.example.com/mcp?key=querysecret",
            headers: { Authorization: "Bearer ${TOKEN}", "X-Api-Key": "plainsecret" },
          },
          db: {
            command: "db-server",
            args: [
              "postgresql://app:dbsecret@localhost/app",
              "--token",
              "flagsecret",
              "--api-key=eqsecret",
              "-v",
            ],
            env: { DB_PASSWORD: "envsecret" },
            cwd: "/srv",
          },
        },
      },
      { env: { TOKEN: "tokensecret" } },
    );
    const summary = summarizeConfig(config);
    const json = JSON.stringify(summary);
    for (const secret of [
      "tokensecret",
      "plainsecret",
      "hunter2",
      "querysecret",
      "envsecret",
      "dbsecret",
      "flagsecret",
      "eqsecret",
    ]) {
      assert.ok(!json.includes(secret), `summary leaks ${secret}: ${json}`);
    }
    const [api, db] = summary.servers;
    assert.ok(api?.type === "http" && "headerNames" in api);
    assert.deepEqual(api.headerNames, ["Authorization", "X-Api-Key"]);
    assert.equal(api.url, "https://user:***@api.example.com/mcp?key=***");
    assert.ok(db?.type === "stdio");
    assert.deepEqual(db.envKeys, ["DB_PASSWORD"]);
    assert.deepEqual(db.args, [
      "postgresql://app:***@localhost/app",
      "--token",
      "***",
      "--api-key=***",
      "-v",
    ]);
    assert.equal(db.command, "db-server");
    assert.equal(db.cwd, "/srv");
    assert.equal(db.timeoutMs, 60_000);
    assert.equal(summary.gateway.separator, "__");
    assert.equal(summary.server.http.port, 8931);
    assert.equal(summary.logging.level, "info");
  });
});

describe("file errors", () => {
  test("a file that does not exist", async () => {
    const missing = fixture("does-not-exist.yaml");
    const error = await expectRejection(loadConfigFile(missing), "config_file");
    assert.match(error.message, /does-not-exist\.yaml: it does not exist\. Check the path given to --config/);
  });

  test("a YAML syntax error names the file, the line and column, and shows the line", async () => {
    const file = await tempFile(
      "broken.yaml",
      'mcpServers:\n  fs:\n    command: npx\n    args: [-y, "@modelcontextprotocol/server-filesystem"\n    env: {}\n',
    );
    const error = await expectRejection(loadConfigFile(file), "config_file");
    const [first = ""] = error.message.split("\n");
    assert.match(first, /^Cannot parse config file .*broken\.yaml as YAML, line \d+, column \d+: .+\.$/);
    assert.match(error.message, / 4 \| {5}args: \[-y/);
    assert.match(error.message, /Fix the syntax there/);
    assert.equal(typeof error.data.line, "number");
  });

  test("a JSON syntax error names the line and column", async () => {
    const file = await tempFile(
      "broken.json",
      '{\n  "mcpServers": {\n    "fs": { "command": "npx", },\n  }\n}\n',
    );
    const error = await expectRejection(loadConfigFile(file), "config_file");
    assert.match(error.message, /as JSON, line 3, column 31: /);
    assert.match(error.message, /trailing commas/);
  });
});
