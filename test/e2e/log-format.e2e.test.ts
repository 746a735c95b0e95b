/**
 * What the log looks like, as the README says: readable lines (time, level, server, message) when
 * stderr is a terminal, JSON lines when it is not or with `--log-format json`, and `--log-format
 * pretty` to ask for the readable form anywhere. The terminal is a real pseudo-terminal (`script`).
 */
import assert from "node:assert/strict";
import { execFile, spawn } from "node:child_process";
import { describe, test } from "node:test";
import { promisify } from "node:util";
import { runCli } from "../support/cli.ts";
import {
  CLI_ARGS,
  LogWatcher,
  ROOT,
  startHttpGateway,
  writeConfigRemovedAfterSuite,
} from "../support/gateway-process.ts";

const run = promisify(execFile);
/** A server that cannot start, so that every command logs a warning that names it. */
const BROKEN = {
  mcpServers: { broken: { command: "/nonexistent/switchboard-test-cmd", restart: { maxRestarts: 0 } } },
};
const PRETTY_LINE =
  /^\[\d\d:\d\d:\d\d\.\d{3}\] (\S+)?WARN(\S+)?: (\S+)?\[broken\] server "broken" is not up/m;

describe("log format", { concurrency: true }, () => {
  const writeConfig = writeConfigRemovedAfterSuite();

  test("on a terminal: readable lines with time, level, server and message", async () => {
    const config = writeConfig(BROKEN);
    const command = [process.execPath, ...CLI_ARGS, "tools", "--config", config]
      .map((a) => `'${a}'`)
      .join(" ");
    // `script` runs the command on a pseudo-terminal, as a person's shell would.
    const { stdout } = await run("script", ["-qec", command, "/dev/null"], { timeout: 60_000 }).catch(
      (error: { stdout?: string }) => ({ stdout: error.stdout ?? "" }),
    );
    assert.match(stdout, PRETTY_LINE, stdout);
    assert.doesNotMatch(stdout, /"level":/, "no JSON lines");
  });

  test("not on a terminal: JSON lines", async () => {
    const result = await runCli(["tools", "--config", writeConfig(BROKEN)]);
    const lines = result.stderr.split("\n").filter((l) => l.startsWith("{"));
    assert.ok(lines.length > 0, result.stderr);
    const warning = lines
      .map((l) => JSON.parse(l) as Record<string, unknown>)
      .find((l) => l.server === "broken");
    assert.equal(warning?.level, "warn");
  });

  test("serve --log-format pretty asks for readable lines anywhere, --log-format json for JSON", async () => {
    const config = writeConfig({ mcpServers: {} });
    const child = spawn(
      process.execPath,
      [...CLI_ARGS, "serve", "--config", config, "--http", "127.0.0.1:0", "--log-format", "pretty"],
      { cwd: ROOT, stdio: ["ignore", "ignore", "pipe"] },
    );
    const exited = new Promise<number | null>((resolve) => child.once("exit", resolve));
    const logs = new LogWatcher(child.stderr);
    try {
      await logs.waitFor(
        (l) =>
          l.raw === true && /^\[\d\d:\d\d:\d\d\.\d{3}\] INFO: listening \{"url":"http/.test(String(l.msg)),
        30_000,
        "a readable listening line",
      );
    } finally {
      child.kill("SIGTERM");
    }
    assert.equal(await exited, 0);
    const json = await startHttpGateway(config, ["--log-format", "json"]);
    assert.equal(await json.stop(), 0);
  });
});
