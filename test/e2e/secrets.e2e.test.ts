// biome-ignore-all lint/suspicious/noTemplateCurlyInString: configs here hold ${secret:…} references.
/**
 * Secrets as a user runs them: `${secret:env:…}`, `${secret:file:…}` and `${secret:exec:…}` in a
 * config, served by a real gateway process. Each value must reach the backend that needs it, and then
 * nowhere else: not the gateway's logs (even at debug level, even when a backend that has the secret in
 * its argv fails and prints it), not the audit file, not what `check`, `health` or an error prints.
 *
 * Every secret is random per run, so finding one in an output can only be a leak.
 */
import assert from "node:assert/strict";
import { randomBytes } from "node:crypto";
import { readFileSync, rmSync, writeFileSync } from "node:fs";
import { dirname, join } from "node:path";
import { after, before, describe, test } from "node:test";
import type { Client } from "@modelcontextprotocol/sdk/client/index.js";
import { assertExitCode, runCli } from "../support/cli.ts";
import {
  fixtureServer,
  type RunningGateway,
  startHttpGateway,
  writeConfig,
  writeConfigRemovedAfterSuite,
} from "../support/gateway-process.ts";
import { connectHttpClient, type ToolResult, textOf } from "../support/mcp-client.ts";

const REDACTED = "[redacted]";

const random = (label: string) => `${label}-${randomBytes(8).toString("hex")}`;

/**
 * Asserts that no secret appears in `text`, neither as written nor as JSON escapes it (a log line or
 * a JSON document holds `a\"b` for the secret `a"b`: that is the secret all the same).
 */
function assertNoSecrets(text: string, secrets: Readonly<Record<string, string>>, where: string): void {
  for (const [name, value] of Object.entries(secrets)) {
    const escaped = JSON.stringify(value).slice(1, -1);
    for (const form of new Set([value, escaped])) {
      const at = text.indexOf(form);
      assert.equal(
        at,
        -1,
        `${where} leaks the ${name} secret: …${text.slice(Math.max(0, at - 200), at + form.length + 80)}…`,
      );
    }
  }
}

/** A backend that never starts: it prints its arguments (the secrets) to stderr and exits. */
function failingBackend(args: string[]) {
  return {
    command: process.execPath,
    args: ["-e", "console.error('boom: ' + process.argv.slice(1).join(' ')); process.exit(3)", ...args],
    restart: { maxRestarts: 0 },
  };
}

describe("secrets from env, file and exec reach the backend and nothing else", () => {
  const ENV_VAR = `SB_E2E_SECRET_${randomBytes(4).toString("hex").toUpperCase()}`;
  const secrets = {
    env: random("envsecret"),
    file: random("filesecret"),
    exec: random("execsecret"),
  };
  let configPath: string;
  let dir: string;
  let auditPath: string;
  let gateway: RunningGateway;
  let stderr = "";
  let client: Client;
  const gatewayEnv = () => ({ [ENV_VAR]: secrets.env });
  const call = async (name: string, args: Record<string, unknown> = {}) =>
    (await client.callTool({ name, arguments: args }, undefined, { timeout: 20_000 })) as ToolResult;

  before(async () => {
    configPath = writeConfig({
      mcpServers: {
        fx: fixtureServer(
          {},
          {
            S1: `\${secret:env:${ENV_VAR}}`,
            // Relative paths start at the config file's folder, not at the gateway's cwd (ROOT).
            S2: "${secret:file:secret.txt}",
            S3: "${secret:exec:cat exec-source.txt}",
          },
        ),
        bad: failingBackend([
          `\${secret:env:${ENV_VAR}}`,
          "${secret:file:secret.txt}",
          "${secret:exec:cat exec-source.txt}",
        ]),
      },
      toolPolicies: {
        // Retries log the tool's error text at debug level: the secret the tool put in it must not show.
        fx__fail: {
          retry: { maxAttempts: 2, baseDelayMs: 0, retryOn: ["isError"], safe: true, budget: false },
        },
      },
      audit: { sinks: [{ type: "file", path: "audit.jsonl" }] },
    });
    dir = dirname(configPath);
    auditPath = join(dir, "audit.jsonl");
    // A mounted secret file ends with a newline that is not part of the secret.
    writeFileSync(join(dir, "secret.txt"), `${secrets.file}\n`);
    writeFileSync(join(dir, "exec-source.txt"), `  ${secrets.exec}\n`);
    gateway = await startHttpGateway(configPath, ["--log-level", "debug"], gatewayEnv());
    gateway.child.stderr?.setEncoding("utf8").on("data", (chunk: string) => {
      stderr += chunk;
    });
    client = await connectHttpClient(gateway.url, { name: "secrets-e2e" });
  });

  after(async () => {
    await client?.close();
    await gateway?.stop();
    if (dir) rmSync(dir, { recursive: true, force: true });
  });

  /** Everything the gateway wrote to stderr so far, from the first line (LogWatcher keeps them all). */
  const gatewayLog = () => `${gateway.logs.lines.map((l) => JSON.stringify(l)).join("\n")}\n${stderr}`;

  test("each provider's value reaches the backend's environment", async () => {
    assert.equal(textOf(await call("fx__env", { name: "S1" })), secrets.env, "env");
    assert.equal(textOf(await call("fx__env", { name: "S2" })), secrets.file, "file, without its newline");
    assert.equal(textOf(await call("fx__env", { name: "S3" })), secrets.exec, "exec, trimmed");
  });

  test("`switchboard call` resolves them the same way, and its own logs stay clean", async () => {
    const result = await runCli(
      ["call", "fx__env", '{"name":"S3"}', "--config", configPath, "--log-level", "debug"],
      gatewayEnv(),
    );
    assertExitCode(result, 0);
    assert.equal(textOf(JSON.parse(result.stdout) as ToolResult), secrets.exec);
    // The failing backend started here too, and its failure was logged, redacted.
    assert.match(result.stderr, /server failed to start/);
    assert.ok(result.stderr.includes(REDACTED), result.stderr);
    assertNoSecrets(result.stderr, secrets, "`switchboard call` stderr");
  });

  test("a backend that fails with the secrets in its argv is logged, with the secrets redacted", async () => {
    const failed = await gateway.logs.waitFor(
      (l) => l.server === "bad" && l.msg === "server failed to start",
      20_000,
      "the failing backend's start failure",
    );
    const err = String(failed.err);
    assert.match(err, /boom/, "the log says what the backend printed");
    assert.equal(err.split(REDACTED).length - 1, 3, `each of the three secrets is replaced: ${err}`);
    const stderrLine = await gateway.logs.waitFor((l) => l.server === "bad" && l.msg === "server stderr");
    assert.equal(stderrLine.stderr, `boom: ${REDACTED} ${REDACTED} ${REDACTED}`);
  });

  test("debug logs (a retried tool error that holds a secret) are redacted", async () => {
    const failed = await call("fx__fail", { reason: `cannot log in with ${secrets.file}` });
    assert.equal(failed.isError, true);
    const retry = await gateway.logs.waitFor(
      (l) => l.level === "debug" && l.msg === "retrying tool call" && l.tool === "fx__fail",
      10_000,
      "the debug log of the retry",
    );
    assert.equal(retry.reason, `isError: cannot log in with ${REDACTED}`);
  });

  test("audit records show [redacted] for secrets in arguments and in errors", async () => {
    const marker = random("marker");
    const message = `leak ${secrets.env} ${secrets.file} ${secrets.exec} ${marker}`;
    const echoed = await call("fx__echo", { message });
    assert.equal(textOf(echoed), message, "the caller gets its own message back");
    await call("fx__fail", { reason: `bad token ${secrets.exec} ${marker}` });

    // Sync durability: the records are in the file before the answers arrived.
    const records = readFileSync(auditPath, "utf8")
      .trim()
      .split("\n")
      .map((line) => JSON.parse(line) as Record<string, unknown>);
    const echo = records.find((r) => r.tool === "fx__echo" && JSON.stringify(r).includes(marker));
    assert.ok(echo, "the echo call is audited");
    assert.deepEqual(echo.arguments, {
      message: `leak ${REDACTED} ${REDACTED} ${REDACTED} ${marker}`,
    });
    const fail = records.find((r) => r.tool === "fx__fail" && JSON.stringify(r).includes(marker));
    assert.ok(fail, "the failing call is audited");
    assert.equal(fail.outcome, "tool_error");
    assert.deepEqual(fail.arguments, { reason: `bad token ${REDACTED} ${marker}` });
    assert.equal(fail.error, `bad token ${REDACTED} ${marker}`);
    assertNoSecrets(readFileSync(auditPath, "utf8"), secrets, "the audit file");
  });

  test("`switchboard check` (table and JSON) shows [redacted] where the argv held the secrets", async () => {
    const [table, json] = await Promise.all([
      runCli(["check", "--config", configPath], gatewayEnv()),
      runCli(["check", "--json", "--config", configPath], gatewayEnv()),
    ]);
    assertExitCode(table, 0);
    assertExitCode(json, 0);
    assert.match(table.stdout, /valid/);
    assert.match(table.stdout, /bad/);
    assert.ok(table.stdout.includes(REDACTED), table.stdout);
    const summary = JSON.parse(json.stdout) as { servers: { name: string; args?: string[] }[] };
    const bad = summary.servers.find((s) => s.name === "bad");
    assert.deepEqual(bad?.args?.slice(-3), [REDACTED, REDACTED, REDACTED]);
    for (const [what, run] of [
      ["check", table],
      ["check --json", json],
    ] as const) {
      assertNoSecrets(run.stdout, secrets, `\`switchboard ${what}\` stdout`);
      assertNoSecrets(run.stderr, secrets, `\`switchboard ${what}\` stderr`);
    }
  });

  test("the health report (GET /healthz and `switchboard health --url`) does not show them", async () => {
    const [body, cli] = await Promise.all([
      fetch(new URL("/healthz", gateway.url)).then((response) => response.text()),
      runCli(["health", "--json", "--url", gateway.url]),
    ]);
    assert.match(body, /"bad"/, "the failing backend is in the report");
    assert.match(cli.stdout, /"bad"/, "and in what the CLI prints");
    assertNoSecrets(
      `GET /healthz:\n${body}\n\n\`switchboard health --url\`:\n${cli.stdout}\n${cli.stderr}`,
      secrets,
      "the health report",
    );
  });

  test("nothing the gateway logged at debug level holds a secret; [redacted] is there instead", async () => {
    await gateway.logs.waitFor((l) => l.level === "debug", 5_000, "a debug line (the level is on)");
    const log = gatewayLog();
    assert.ok(log.includes(REDACTED), "redacted values were logged");
    assertNoSecrets(log, secrets, "the gateway's stderr");
    assertNoSecrets(readFileSync(auditPath, "utf8"), secrets, "the audit file");
  });
});

describe("secret failures and edge cases", () => {
  const config = writeConfigRemovedAfterSuite();

  test("a missing env secret stops start-up with exit code 2, naming the reference and where it is used", async () => {
    const name = `SB_E2E_MISSING_${randomBytes(4).toString("hex").toUpperCase()}`;
    const path = config({ mcpServers: { fx: fixtureServer({}, { TOKEN: `\${secret:env:${name}}` }) } });
    const result = await runCli(["serve", "--config", path, "--http", "127.0.0.1:0"], { [name]: undefined });
    assertExitCode(result, 2);
    assert.ok(result.stderr.includes(`\${secret:env:${name}}`), result.stderr);
    assert.ok(result.stderr.includes("mcpServers.fx.env.TOKEN"), result.stderr);
    assert.doesNotMatch(result.stderr, /"msg":"listening"/, "it never served");
    assert.doesNotMatch(result.stderr, /^\s+at .+:\d+:\d+\)?$/m, "one message, no stack");
  });

  test("a config error about a field that holds a secret does not print the secret", async () => {
    const name = `SB_E2E_MISPLACED_${randomBytes(4).toString("hex").toUpperCase()}`;
    const secret = random("misplaced");
    // A secret put in a number field by mistake: the error must say where, not what.
    const path = config({ mcpServers: {}, gateway: { shutdownTimeoutMs: `\${secret:env:${name}}` } });
    const result = await runCli(["check", "--config", path], { [name]: secret });
    assertExitCode(result, 2);
    assert.match(result.stderr, /gateway\.shutdownTimeoutMs/);
    assertNoSecrets(`${result.stdout}\n${result.stderr}`, { misplaced: secret }, "the config error");
  });

  test('a secret with characters JSON escapes (" and \\) is redacted from JSON logs and JSON output', async () => {
    const name = `SB_E2E_QUOTED_${randomBytes(4).toString("hex").toUpperCase()}`;
    const secret = `pa"ss\\word-${randomBytes(6).toString("hex")}`;
    const path = config({
      mcpServers: { fx: fixtureServer(), bad: failingBackend([`\${secret:env:${name}}`]) },
      audit: { sinks: [{ type: "file", path: "audit.jsonl" }] },
    });
    const [called, checked] = await Promise.all([
      runCli(["call", "fx__echo", JSON.stringify({ message: `say ${secret}` }), "--config", path], {
        [name]: secret,
      }),
      runCli(["check", "--json", "--config", path], { [name]: secret }),
    ]);
    assertExitCode(called, 0);
    assertExitCode(checked, 0);
    assert.match(called.stderr, /server failed to start/);
    const audit = readFileSync(join(dirname(path), "audit.jsonl"), "utf8");
    assert.ok(audit.includes(`say ${REDACTED}`), `the audit record is redacted: ${audit}`);
    assertNoSecrets(
      [
        `\`switchboard call\` stderr:\n${called.stderr}`,
        `\`switchboard check --json\` stdout:\n${checked.stdout}`,
        `the audit file:\n${audit}`,
      ].join("\n\n"),
      { quoted: secret },
      "the output",
    );
  });
});
