/**
 * Where `switchboard serve` listens when `--http` or `--probe-port` gives a port alone: on loopback
 * (the default of `server.http.host`), as the README's CLI section says, so that a port given in
 * a hurry never exposes the gateway to the network.
 */
import assert from "node:assert/strict";
import { spawn } from "node:child_process";
import { describe, test } from "node:test";
import { CLI_ARGS, fixtureServer, LogWatcher, ROOT, writeConfig } from "../support/gateway-process.ts";

const config = writeConfig({ mcpServers: { fx: fixtureServer() } });

/** Starts `serve` with `args`, waits for the log line `msg`, returns its `url` and stops the gateway. */
async function urlLogged(args: string[], msg: string): Promise<string> {
  const child = spawn(process.execPath, [...CLI_ARGS, "serve", "--config", config, ...args], {
    cwd: ROOT,
    stdio: ["pipe", "pipe", "pipe"],
  });
  const logs = new LogWatcher(child.stderr);
  const exited = new Promise<number | null>((resolve) => child.once("exit", resolve));
  try {
    const line = await Promise.race([
      logs.waitFor((l) => l.msg === msg, 30_000, `"${msg}"`),
      exited.then((code) => {
        throw new Error(`serve exited with ${code} before "${msg}":\n${logs.tail()}`);
      }),
    ]);
    return String(line.url);
  } finally {
    child.kill("SIGTERM");
    assert.equal(await exited, 0, `serve exits 0 on SIGTERM:\n${logs.tail()}`);
  }
}

describe("serve with a port and no host", { concurrency: true }, () => {
  test("--http PORT listens on 127.0.0.1", async () => {
    assert.match(await urlLogged(["--http", "0"], "listening"), /^http:\/\/127\.0\.0\.1:\d+\/mcp$/);
  });

  test("--probe-port PORT serves the probes on 127.0.0.1", async () => {
    assert.match(
      await urlLogged(["--stdio", "--probe-port", "0"], "serving probes and metrics"),
      /^http:\/\/127\.0\.0\.1:\d+$/,
    );
  });
});
