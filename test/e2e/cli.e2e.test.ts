// biome-ignore-all lint/suspicious/noTemplateCurlyInString: configs here hold ${VAR} references.
/**
 * The `switchboard` command as a user meets it: the real CLI in a child process, its stdout, stderr
 * and exit code. Failures must be one clear line (plus one line per config problem) and never a stack.
 */
import assert from "node:assert/strict";
import { readFileSync } from "node:fs";
import { createServer } from "node:net";
import { join } from "node:path";
import { describe, test } from "node:test";
import { Client } from "@modelcontextprotocol/sdk/client/index.js";
import { StdioClientTransport } from "@modelcontextprotocol/sdk/client/stdio.js";
import { assertExitCode, type CliRun, runCli } from "../support/cli.ts";
import { CLI_ARGS, fixtureServer, ROOT, writeConfig } from "../support/gateway-process.ts";

const VERSION = (JSON.parse(readFileSync(join(ROOT, "package.json"), "utf8")) as { version: string }).version;

/** No stack frame ("    at fn (file:line)") anywhere in the output. */
function noStack(result: CliRun): void {
  assert.doesNotMatch(`${result.stdout}\n${result.stderr}`, /^\s+at .+:\d+:\d+\)?$/m);
}

const lines = (text: string) => text.trimEnd().split("\n");

// Recognisable secrets: none may appear in anything `check` prints.
const HEADER_SECRET = "hdr-secret-7f3a9c";
const ENV_SECRET = "env-secret-41b2d8";
const INTERPOLATED_SECRET = "tok-secret-93e1aa";

const validConfig = writeConfig({
  mcpServers: {
    fx: fixtureServer({}, { FX_TOKEN: ENV_SECRET }),
    remote: {
      type: "http",
      url: "https://mcp.example.com/mcp",
      headers: { "X-Api-Key": HEADER_SECRET, Authorization: "Bearer ${SB_TEST_TOKEN}" },
      // Never contacted: `tools` and `call` below only need fx.
      enabled: false,
    },
  },
});
const secretEnv = { SB_TEST_TOKEN: INTERPOLATED_SECRET };

describe("switchboard check", { concurrency: true }, () => {
  test("a valid config: the summary, exit 0", async () => {
    const result = await runCli(["check", "--config", validConfig], secretEnv);
    assertExitCode(result, 0);
    const out = lines(result.stdout);
    assert.equal(out[0], `${validConfig}: valid`);
    assert.match(out[2] ?? "", /^server\s+type\s+enabled\s+prefix\s+target\s+timeoutMs$/);
    assert.match(out[4] ?? "", /^fx\s+stdio\s+true\s+fx\s+.*fixture-server\.ts\s+60000$/);
    assert.match(out[5] ?? "", /^remote\s+http\s+false\s+remote\s+https:\/\/mcp\.example\.com\/mcp\s+60000$/);
    assert.equal(result.stderr, "");
    for (const secret of [HEADER_SECRET, ENV_SECRET, INTERPOLATED_SECRET]) {
      assert.ok(!result.stdout.includes(secret), `check leaks ${secret}`);
    }
  });

  test("--json: the summary as JSON, with header and env names but never their values", async () => {
    const result = await runCli(["check", "--json", "--config", validConfig], secretEnv);
    assertExitCode(result, 0);
    const summary = JSON.parse(result.stdout) as {
      servers: { name: string; envKeys?: string[]; headerNames?: string[] }[];
      server: { http: { port: number } };
    };
    assert.deepEqual(
      summary.servers.map((s) => s.name),
      ["fx", "remote"],
    );
    assert.deepEqual(summary.servers[0]?.envKeys, ["FX_TOKEN"]);
    assert.deepEqual(summary.servers[1]?.headerNames, ["X-Api-Key", "Authorization"]);
    for (const secret of [HEADER_SECRET, ENV_SECRET, INTERPOLATED_SECRET]) {
      assert.ok(!`${result.stdout}${result.stderr}`.includes(secret), `check --json leaks ${secret}`);
    }
  });

  test("an invalid config: exit 2, one line naming the file, then one line per problem with its path", async () => {
    const file = writeConfig({
      mcpServers: { fx: { command: "node", comand: "node" } },
      gateway: { startupTimeoutMs: true },
      server: { http: { port: "${SB_TEST_PORT}" } },
    });
    const result = await runCli(["check", "--config", file], { SB_TEST_PORT: "80a" });
    assertExitCode(result, 2);
    assert.equal(result.stdout, "");
    assert.deepEqual(lines(result.stderr), [
      `switchboard: Invalid config in ${file}:`,
      '  - mcpServers.fx.comand: unknown key "comand" (did you mean "command"?)',
      "  - gateway.startupTimeoutMs: expected a number, got true",
      '  - server.http.port: expected a number, got the string "80a"',
    ]);
  });

  test("a missing ${VAR}: exit 2, naming the variable and where it is used", async () => {
    const file = writeConfig({
      mcpServers: {
        remote: {
          type: "http",
          url: "https://x.example/mcp",
          headers: { Authorization: "Bearer ${SB_TEST_UNSET}" },
        },
      },
    });
    const result = await runCli(["check", "--config", file]);
    assertExitCode(result, 2);
    assert.deepEqual(lines(result.stderr), [
      "switchboard: Config error: environment variable SB_TEST_UNSET is not set " +
        "(used at mcpServers.remote.headers.Authorization). Set it, or give a default with ${SB_TEST_UNSET:-value}.",
    ]);
  });

  test("a missing file: exit 2, one line", async () => {
    const missing = join(ROOT, "does-not-exist.yaml");
    const result = await runCli(["check", "--config", missing]);
    assertExitCode(result, 2);
    assert.deepEqual(lines(result.stderr), [
      `switchboard: Cannot read config file ${missing}: it does not exist. Check the path given to --config, ` +
        "or create it (a Claude Desktop or Claude Code mcpServers JSON file works as it is).",
    ]);
  });

  test("a YAML syntax error: exit 2, the file, line and column, the line itself and what to do", async () => {
    const file = writeConfig("mcpServers:\n  fx:\n    command: node\n    args: [a, b\n", "broken.yaml");
    const result = await runCli(["check", "--config", file]);
    assertExitCode(result, 2);
    const err = lines(result.stderr);
    assert.match(
      err[0] ?? "",
      /^switchboard: Cannot parse config file .*broken\.yaml as YAML, line \d+, column \d+: .+\.$/,
    );
    assert.ok(
      err.some((line) => /^\s+4 \| {5}args: \[a, b$/.test(line)),
      `the offending line is shown:\n${result.stderr}`,
    );
    assert.match(err.at(-1) ?? "", /^Fix the syntax there/);
    assert.ok(err.length <= 8, `short: ${result.stderr}`);
    noStack(result);
  });

  test("numbers from ${VAR} are read as numbers", async () => {
    const file = writeConfig({
      mcpServers: {},
      server: { http: { port: "${SB_TEST_PORT:-8931}", maxBodyBytes: "${SB_TEST_MAX_BODY}" } },
    });
    const result = await runCli(["check", "--json", "--config", file], { SB_TEST_MAX_BODY: "65536" });
    assertExitCode(result, 0);
    const summary = JSON.parse(result.stdout) as { server: { http: { port: number; maxBodyBytes: number } } };
    assert.equal(summary.server.http.port, 8931);
    assert.equal(summary.server.http.maxBodyBytes, 65_536);
  });

  test("a Claude Desktop config with its app settings works unchanged", async () => {
    const file = writeConfig(
      {
        globalShortcut: "Ctrl+Space",
        preferences: { menuBarEnabled: false },
        isUsingBuiltInNodeForMcp: true,
        mcpServers: {
          fs: { command: "npx", args: ["-y", "@modelcontextprotocol/server-filesystem", "/tmp"] },
        },
      },
      "claude_desktop_config.json",
    );
    const result = await runCli(["check", "--config", file]);
    assertExitCode(result, 0);
    assert.match(
      result.stdout,
      /^fs\s+stdio\s+true\s+fs\s+npx -y @modelcontextprotocol\/server-filesystem \/tmp/m,
    );
  });
});

describe("switchboard tools and call", { concurrency: true }, () => {
  test("tools: a table of the prefixed tools", async () => {
    const result = await runCli(["tools", "--config", validConfig], secretEnv);
    assertExitCode(result, 0);
    const out = lines(result.stdout);
    assert.match(out[0] ?? "", /^tool\s+server\s+description$/);
    assert.match(out[1] ?? "", /^-+\s+-+\s+-+$/);
    assert.ok(
      out.some((line) => /^fx__echo\s+fx\s+Returns its message$/.test(line)),
      result.stdout,
    );
    // Besides the server's tools, only the gateway's own.
    assert.ok(out.slice(2).every((line) => line.startsWith("fx__") || line.startsWith("switchboard__")));
  });

  test("tools --json: tools, resources, templates and prompts, tools under the prefix", async () => {
    const result = await runCli(["tools", "--json", "--config", validConfig], secretEnv);
    assertExitCode(result, 0);
    const catalog = JSON.parse(result.stdout) as Record<string, { name?: string; uri?: string }[]>;
    assert.deepEqual(Object.keys(catalog), ["tools", "resources", "resourceTemplates", "prompts"]);
    const names = (catalog.tools ?? []).map((tool) => tool.name);
    assert.ok(names.includes("fx__echo") && names.includes("fx__stats"), names.join(", "));
    assert.ok(names.every((name) => name?.startsWith("fx__") || name?.startsWith("switchboard__")));
  });

  test("tools: a server that does not come up is named, exit 1", async () => {
    const file = writeConfig({
      mcpServers: {
        fx: fixtureServer(),
        broken: fixtureServer({ restart: { maxRestarts: 0 } }, { FIXTURE_FAIL_START: "1" }),
      },
    });
    const result = await runCli(["tools", "--config", file, "--log-level", "silent"]);
    assertExitCode(result, 1);
    assert.match(result.stdout, /^fx__echo\s/m, "the tools of the servers that are up are still listed");
    assert.match(result.stderr, /^switchboard: not up, so their tools are missing: broken \(down\)$/m);
  });

  test("call: the result as JSON, exit 0", async () => {
    const result = await runCli(["call", "fx__echo", '{"message":"hi"}', "--config", validConfig], secretEnv);
    assertExitCode(result, 0);
    assert.deepEqual(JSON.parse(result.stdout), { content: [{ type: "text", text: "hi" }] });
  });

  test("call: runs as the principal of local clients (auth.stdioPrincipal), under its access rules", async () => {
    const file = writeConfig({
      mcpServers: { fx: fixtureServer() },
      auth: { stdioPrincipal: { id: "ops", roles: ["operator"] } },
      access: { rules: [{ roles: ["operator"], allow: ["fx__echo"] }] },
    });
    const allowed = await runCli(["call", "fx__echo", '{"message":"as ops"}', "--config", file]);
    assertExitCode(allowed, 0);
    assert.deepEqual(JSON.parse(allowed.stdout), { content: [{ type: "text", text: "as ops" }] });
    const denied = await runCli(["call", "fx__fail", "{}", "--config", file]);
    assertExitCode(denied, 1);
    assert.match(denied.stdout, /Access denied: principal 'ops' may not call tool 'fx__fail'/);
  });

  test("call: an isError result is printed, exit 1", async () => {
    const result = await runCli(
      ["call", "fx__fail", '{"reason":"nope"}', "--config", validConfig],
      secretEnv,
    );
    assertExitCode(result, 1);
    assert.deepEqual(JSON.parse(result.stdout), { content: [{ type: "text", text: "nope" }], isError: true });
  });

  test("call: arguments that are not a JSON object, exit 2 before any server starts", async () => {
    const notJson = await runCli(["call", "fx__echo", '{"message":', "--config", validConfig], secretEnv);
    assertExitCode(notJson, 2);
    assert.deepEqual(lines(notJson.stderr), [
      "switchboard: the arguments for fx__echo are not valid JSON (Unexpected end of JSON input); " +
        `e.g. switchboard call fx__echo '{"message":"hi"}'.`,
    ]);
    const array = await runCli(["call", "fx__echo", "[1]", "--config", validConfig], secretEnv);
    assertExitCode(array, 2);
    assert.match(
      array.stderr,
      /^switchboard: the arguments for fx__echo must be a JSON object, got an array;/,
    );
    assert.equal(notJson.stdout + array.stdout, "");
  });

  test("call: an unknown tool, exit 1 with one line", async () => {
    const result = await runCli(["call", "fx__nope", "{}", "--config", validConfig], secretEnv);
    assertExitCode(result, 1);
    assert.equal(result.stdout, "");
    assert.deepEqual(lines(result.stderr), [
      'switchboard: Tool "fx__nope" does not exist. List tools to see what is available.',
    ]);
  });
});

describe("switchboard usage", { concurrency: true }, () => {
  test("--version prints the package version", async () => {
    for (const flag of ["--version", "-v"]) {
      const result = await runCli([flag]);
      assertExitCode(result, 0);
      assert.equal(result.stdout, `${VERSION}\n`);
    }
  });

  test("--help lists the commands and the exit codes", async () => {
    const result = await runCli(["--help"]);
    assertExitCode(result, 0);
    for (const command of ["serve", "check", "tools", "call"]) {
      assert.match(result.stdout, new RegExp(`^  ${command} `, "m"), `${command} is listed`);
    }
    assert.match(result.stdout, /Exit codes: 0 success, 1 failure .*, 2 bad usage or config\./);
  });

  test("serve --help says stdio is the default", async () => {
    const result = await runCli(["serve", "--help"]);
    assertExitCode(result, 0);
    assert.match(result.stdout, /serves stdio when neither --stdio nor --http is given/);
    assert.match(result.stdout, /--stdio\s+serve MCP on stdin\/stdout \(the default without\s+--http/);
  });

  test("serve with a bad --http value: exit 2, one line and a pointer to --help", async () => {
    for (const value of ["abc", "70000", "http://127.0.0.1:8931"]) {
      const result = await runCli(["serve", "--config", validConfig, "--http", value], secretEnv);
      assertExitCode(result, 2);
      assert.deepEqual(lines(result.stderr), [
        `switchboard: option '--http <[host:]port>' argument '${value}' is invalid. ` +
          "Expected [host:]port with a port from 0 to 65535, e.g. 8931, 127.0.0.1:8931 or [::1]:8931.",
        "(add --help for usage)",
      ]);
    }
  });

  test("an unknown command or option: exit 2, one line and a pointer to --help", async () => {
    const command = await runCli(["serv"]);
    assertExitCode(command, 2);
    assert.deepEqual(lines(command.stderr), [
      "switchboard: unknown command 'serv' (did you mean serve?)",
      "(add --help for usage)",
    ]);
    const option = await runCli(["check", "--jsn"]);
    assertExitCode(option, 2);
    assert.deepEqual(lines(option.stderr), [
      "switchboard: unknown option '--jsn' (did you mean --json?)",
      "(add --help for usage)",
    ]);
  });

  test("serve on a port in use: exit 1, naming the address and what to do", async () => {
    const blocker = createServer();
    await new Promise<void>((resolve) => blocker.listen(0, "127.0.0.1", resolve));
    const { port } = blocker.address() as { port: number };
    try {
      const result = await runCli(
        ["serve", "--config", validConfig, "--http", `127.0.0.1:${port}`],
        secretEnv,
      );
      assertExitCode(result, 1);
      assert.match(
        result.stderr,
        new RegExp(
          `^switchboard: cannot listen on 127\\.0\\.0\\.1:${port}: the port is in use\\. ` +
            "Stop what holds it, or pick another port with --http\\.$",
          "m",
        ),
      );
      noStack(result);
    } finally {
      blocker.close();
    }
  });

  test("serve without --stdio or --http serves MCP on stdio", async () => {
    const client = new Client({ name: "cli-e2e", version: "1" });
    await client.connect(
      new StdioClientTransport({
        command: process.execPath,
        args: [...CLI_ARGS, "serve", "--config", validConfig],
        cwd: ROOT,
        env: { ...(process.env as Record<string, string>), ...secretEnv },
        stderr: "ignore",
      }),
    );
    try {
      const result = await client.callTool({ name: "fx__echo", arguments: { message: "over stdio" } });
      assert.deepEqual(result.content, [{ type: "text", text: "over stdio" }]);
    } finally {
      await client.close();
    }
  });
});
