/**
 * A restart is not an outage, through the real CLI under load: a stdio server killed with SIGKILL is
 * restarted by the supervisor, and
 *
 * - calls made while it restarts wait for it (bounded by their time limit) and succeed;
 * - the calls its death cut off fail with `backend_unavailable`, but the circuit breaker does not
 *   count them: it never opens, so no call is refused once the server is back;
 * - when the breaker did open (the server failed to start again for a while), the server coming back
 *   lets a trial call through at once instead of after the rest of `openMs`.
 */
import assert from "node:assert/strict";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, describe, test } from "node:test";
import type { Client } from "@modelcontextprotocol/sdk/client/index.js";
import {
  fixtureServer,
  type LogLine,
  type RunningGateway,
  startHttpGateway,
  writeConfigRemovedAfterSuite,
} from "../support/gateway-process.ts";
import { connectHttpClient, type ToolResult, textOf } from "../support/mcp-client.ts";

/** The breaker opens after this many failures in a row, and stays open this long. */
const CONSECUTIVE_FAILURES = 3;
const OPEN_MS = 60_000;
/** Calls kept in flight at once. */
const CONCURRENCY = 4;

const writeConfig = writeConfigRemovedAfterSuite();
const dir = mkdtempSync(join(tmpdir(), "switchboard-restart-"));
after(() => rmSync(dir, { recursive: true, force: true }));

interface Outcome {
  readonly startedAt: number;
  readonly ok: boolean;
  readonly code: string | undefined;
  readonly text: string;
}

async function echo(client: Client, message: string): Promise<Outcome> {
  const startedAt = Date.now();
  try {
    const result = (await client.callTool({ name: "fx__echo", arguments: { message } })) as ToolResult;
    const code = (result._meta?.["switchboard/error"] as { code?: string } | undefined)?.code;
    return { startedAt, ok: !result.isError, code, text: textOf(result) };
  } catch (error) {
    return { startedAt, ok: false, code: "thrown", text: String(error) };
  }
}

/** Calls `fx__echo` from CONCURRENCY loops until `stop` resolves; every outcome is kept. */
async function underLoad(client: Client, stop: Promise<unknown>): Promise<Outcome[]> {
  let stopped = false;
  void stop.then(() => {
    stopped = true;
  });
  const outcomes: Outcome[] = [];
  let n = 0;
  await Promise.all(
    Array.from({ length: CONCURRENCY }, async () => {
      while (!stopped) outcomes.push(await echo(client, `m${++n}`));
    }),
  );
  return outcomes;
}

async function serverPid(client: Client): Promise<number> {
  const result = (await client.callTool({ name: "fx__stats", arguments: {} })) as ToolResult;
  return Number(result.structuredContent?.pid);
}

const logTime = (line: LogLine) => Date.parse(String(line.time));

describe("a restart is not an outage", () => {
  const running: { gateway: RunningGateway; client: Client }[] = [];
  after(async () => {
    for (const { gateway, client } of running) {
      await client.close();
      await gateway.stop();
    }
  });

  /** A gateway of its own for each test, so that one test's circuit cannot be another's. */
  async function start(failStart: string): Promise<{ gateway: RunningGateway; client: Client }> {
    const config = writeConfig({
      mcpServers: {
        fx: {
          ...fixtureServer({}, { FIXTURE_FAIL_START_FILE: failStart }),
          restart: { initialDelayMs: 200, maxDelayMs: 400 },
        },
      },
      policies: { circuitBreaker: { consecutiveFailures: CONSECUTIVE_FAILURES, openMs: OPEN_MS } },
    });
    const gateway = await startHttpGateway(config);
    const client = await connectHttpClient(gateway.url, { name: "restart-e2e" });
    running.push({ gateway, client });
    return { gateway, client };
  }

  test("SIGKILL under load: calls made during the restart wait and succeed; the breaker does not open", async () => {
    const { gateway, client } = await start(join(dir, "never"));
    const pid = await serverPid(client);
    let kill!: () => void;
    const killed = new Promise<void>((resolve) => {
      kill = resolve;
    });
    const wentDown = gateway.logs.waitFor((l) => l.server === "fx" && l.msg === "server went down", 15_000);
    const cameBack = killed.then(() =>
      gateway.logs.waitFor(
        (l) => l.server === "fx" && l.msg === "server up" && logTime(l) > killedAt,
        15_000,
      ),
    );
    let killedAt = 0;
    // Load, a kill once it runs, and load until a while after the server is back.
    const load = underLoad(
      client,
      cameBack.then(() => new Promise((resolve) => setTimeout(resolve, 500))),
    );
    await new Promise((resolve) => setTimeout(resolve, 300));
    killedAt = Date.now();
    process.kill(pid, "SIGKILL");
    kill();
    const down = await wentDown;
    await cameBack;
    const outcomes = await load;

    const refused = outcomes.filter((o) => o.code === "circuit_open");
    assert.deepEqual(refused, [], "no call was refused by an open circuit");
    const afterDown = outcomes.filter((o) => o.startedAt > logTime(down));
    assert.ok(
      afterDown.length >= CONCURRENCY,
      `calls were made during and after the restart (${afterDown.length})`,
    );
    assert.deepEqual(
      afterDown.filter((o) => !o.ok),
      [],
      "every call made once the gateway saw the server die waited for the restart and succeeded",
    );
    for (const failed of outcomes.filter((o) => !o.ok)) {
      assert.equal(failed.code, "backend_unavailable", `a call cut off by the kill: ${failed.text}`);
    }
    assert.notEqual(await serverPid(client), pid, "a new process serves");
  });

  test("a breaker opened while the server could not start lets a trial call through as soon as it is back", async () => {
    const failStart = join(dir, "fail-start");
    const { gateway, client } = await start(failStart);
    const pid = await serverPid(client);
    writeFileSync(failStart, "");
    const opened = gateway.logs.waitFor(
      (l) => l.msg === "server failed to start" && l.server === "fx",
      15_000,
    );
    process.kill(pid, "SIGKILL");
    await opened;
    // While it cannot start, calls fail (they do count) until the circuit opens.
    let last: Outcome | undefined;
    for (let i = 0; i < CONSECUTIVE_FAILURES + 1; i++) last = await echo(client, `down ${i}`);
    assert.equal(last?.code, "circuit_open", `the circuit opened: ${last?.text}`);

    const since = Date.now();
    const back = gateway.logs.waitFor(
      (l) => l.server === "fx" && l.msg === "server up" && logTime(l) >= since,
      15_000,
    );
    rmSync(failStart);
    await back;
    const trial = await echo(client, "back");
    assert.equal(trial.ok, true, `the first call after the server is back goes through: ${trial.text}`);
    assert.equal(trial.text, "back");
  });
});
