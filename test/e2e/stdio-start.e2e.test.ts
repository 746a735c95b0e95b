/**
 * How a stdio server is started, through the real CLI: one process per server (the era is negotiated
 * on the process that then serves, never on a probe sibling), one start bounded by
 * `gateway.startupTimeoutMs`, its stderr logged from the first line, and nothing left running on any
 * way out: a start that times out, SIGTERM during start-up, the gateway's stdin closing.
 *
 * The fixtures append their pid to a file when they start, so that every process ever spawned is
 * counted and checked. `test/fixtures/silent-server.ts` never answers, ignores the end of its stdin
 * and ignores SIGTERM: only the gateway's own bound and SIGKILL end it.
 */
import assert from "node:assert/strict";
import { type ChildProcess, spawn } from "node:child_process";
import { existsSync, mkdtempSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, describe, test } from "node:test";
import { assertExitCode, runCli } from "../support/cli.ts";
import {
  eventually,
  fixtureServer,
  LogWatcher,
  ROOT,
  startHttpGateway,
  stdioGatewayCommand,
  writeConfigRemovedAfterSuite,
} from "../support/gateway-process.ts";
import { connectHttpClient } from "../support/mcp-client.ts";

const SILENT = join(ROOT, "test/fixtures/silent-server.ts");
/** What the CLI itself takes to start and stop (tsx, loading modules) on a loaded two-core machine. */
const CLI_OVERHEAD_MS = 6_000;

const writeConfig = writeConfigRemovedAfterSuite();
const dir = mkdtempSync(join(tmpdir(), "switchboard-stdio-start-"));
const spawned: number[] = [];

after(() => {
  // Whatever a failing test left behind, including processes of a test that failed before it read them.
  for (let i = 1; i <= files; i++) pidsIn(join(dir, `pids-${i}`));
  for (const pid of spawned) {
    try {
      process.kill(pid, "SIGKILL");
    } catch {
      // gone, as it should be
    }
  }
  rmSync(dir, { recursive: true, force: true });
});

let files = 0;
function pidFile(): string {
  return join(dir, `pids-${++files}`);
}

/** The pids a fixture wrote to `file`, remembered for the cleanup. */
function pidsIn(file: string): number[] {
  if (!existsSync(file)) return [];
  const pids = readFileSync(file, "utf8").split("\n").filter(Boolean).map(Number);
  for (const pid of pids) if (!spawned.includes(pid)) spawned.push(pid);
  return pids;
}

function alive(pid: number): boolean {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, "utf8");
    return stat.slice(stat.lastIndexOf(")") + 2)[0] !== "Z";
  } catch {
    return false;
  }
}

function silentServer(file: string) {
  return {
    command: process.execPath,
    args: ["--import", "tsx", SILENT],
    cwd: ROOT,
    env: { SILENT_PID_FILE: file },
  };
}

/** `switchboard serve --stdio` as a client launches it, its stdin a pipe the test holds. */
function serveStdio(config: string): {
  child: ChildProcess;
  logs: LogWatcher;
  exited: Promise<number | null>;
} {
  const { command, args, cwd } = stdioGatewayCommand(config);
  const child = spawn(command, args, { cwd, stdio: ["pipe", "pipe", "pipe"] });
  const logs = new LogWatcher(child.stderr as NodeJS.ReadableStream);
  const exited = new Promise<number | null>((resolve) => child.once("exit", (code) => resolve(code)));
  return { child, logs, exited };
}

describe("stdio servers: one process, one bounded start, nothing left behind", () => {
  test("a slow server is spawned once and comes up within the start window", async () => {
    const file = pidFile();
    // The window holds one slow start, not two.
    const config = writeConfig({
      gateway: { startupTimeoutMs: 9_000 },
      mcpServers: { fx: fixtureServer({}, { FIXTURE_PID_FILE: file, FIXTURE_START_DELAY_MS: "4000" }) },
    });
    const run = await runCli(["tools", "--config", config]);
    assertExitCode(run, 0);
    assert.match(run.stdout, /fx__echo/);
    assert.equal(pidsIn(file).length, 1, `one process for one server: ${readFileSync(file, "utf8")}`);
  });

  test("a server that exits on server/discover is started again at once with initialize only, and from then on", async () => {
    const file = pidFile();
    const config = writeConfig({
      mcpServers: {
        fx: {
          ...fixtureServer({}, { FIXTURE_PID_FILE: file, FIXTURE_EXIT_ON_UNKNOWN: "1" }),
          restart: { initialDelayMs: 50, maxDelayMs: 100 },
        },
      },
    });
    const gateway = await startHttpGateway(config);
    try {
      const retried = await gateway.logs.waitFor(
        (l) => l.server === "fx" && typeof l.msg === "string" && l.msg.includes("starting it again"),
      );
      assert.match(
        String(retried.reason),
        /^the process exited \(exit code 4\) before it finished its handshake; its stderr ended with: fixture: exiting on an unknown request \(server\/discover\)/,
      );
      const up = await gateway.logs.waitFor((l) => l.server === "fx" && l.msg === "server up");
      assert.equal(up.protocol, "2025-11-25");
      assert.equal(pidsIn(file).length, 2, "the process that exited, and the one that serves");

      // A restart goes straight to initialize: one more process, not two.
      const client = await connectHttpClient(gateway.url, { name: "stdio-start" });
      try {
        await client.callTool({ name: "fx__crash", arguments: {} });
      } finally {
        await client.close();
      }
      await gateway.logs.waitFor((l) => l.server === "fx" && l.msg === "server up" && l !== up);
      assert.equal(pidsIn(file).length, 3, "one process for the restart");
      assert.equal(gateway.logs.lines.filter((l) => l === retried || l.msg === retried.msg).length, 1);
    } finally {
      await gateway.stop();
    }
  });

  test("a server that never answers: the start ends at startupTimeoutMs, its stderr is logged, its process is gone", async () => {
    const file = pidFile();
    const startupTimeoutMs = 2_000;
    const config = writeConfig({
      gateway: { startupTimeoutMs },
      mcpServers: { silent: silentServer(file) },
    });
    const started = performance.now();
    const run = await runCli(["tools", "--config", config, "--log-level", "info"]);
    const ms = performance.now() - started;
    assertExitCode(run, 1);
    assert.match(run.stderr, /not up, so their tools are missing: silent/);
    assert.ok(
      ms < startupTimeoutMs + CLI_OVERHEAD_MS,
      `switchboard tools returned after ${Math.round(ms)} ms, not within startupTimeoutMs (${startupTimeoutMs}) and its overhead`,
    );
    assert.match(run.stderr, /"server":"silent".*"stderr":"silent: started as \d+, will never answer"/);
    const pids = pidsIn(file);
    assert.equal(pids.length, 1, "one process");
    assert.deepEqual(
      pids.filter(alive),
      [],
      "the process is gone when the command returns (SIGKILL after an ignored SIGTERM)",
    );
  });

  test("SIGTERM while a server is starting: the gateway exits 0 and leaves no process behind", async () => {
    const file = pidFile();
    const config = writeConfig({
      gateway: { startupTimeoutMs: 60_000 },
      mcpServers: { silent: silentServer(file) },
    });
    const { child, logs, exited } = serveStdio(config);
    await logs.waitFor((l) => typeof l.stderr === "string" && l.stderr.startsWith("silent: started"), 20_000);
    assert.equal(pidsIn(file).length, 1);
    child.kill("SIGTERM");
    assert.equal(await exited, 0, logs.tail());
    await eventually(() => pidsIn(file).filter(alive).length === 0, 3_000, "no server process left");
  });

  test("stdin closing while a server is starting: the gateway exits and leaves no process behind", async () => {
    const file = pidFile();
    const config = writeConfig({
      gateway: { startupTimeoutMs: 2_000 },
      mcpServers: { silent: silentServer(file) },
    });
    const { child, logs, exited } = serveStdio(config);
    await logs.waitFor((l) => typeof l.stderr === "string" && l.stderr.startsWith("silent: started"), 20_000);
    child.stdin?.end();
    assert.equal(await exited, 0, logs.tail());
    assert.ok(
      logs.lines.some((l) => l.msg === "shutting down" && l.reason === "stdin closed"),
      logs.tail(),
    );
    await eventually(() => pidsIn(file).filter(alive).length === 0, 3_000, "no server process left").catch(
      (error: Error) => {
        throw new Error(`${error.message}: ${JSON.stringify(pidsIn(file).filter(alive))}\n${logs.tail(40)}`);
      },
    );
  });
});
