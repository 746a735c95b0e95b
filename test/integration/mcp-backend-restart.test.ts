/**
 * The MCP client backend while its stdio server is being restarted, driven through the Backend
 * interface with the real fixture server: a call in flight when the process dies fails at once with
 * `backend_unavailable` marked `restarting` (what the circuit breaker leaves out); a call made while
 * the restart is under way waits for it and is answered by the new process, unless its own time limit
 * passes first, which ends it with that limit's error.
 */
import assert from "node:assert/strict";
import { after, before, test } from "node:test";
import { McpBackend } from "../../src/backends/mcp/backend.ts";
import { GatewayError } from "../../src/core/errors.ts";
import { createLogger } from "../../src/observability/logger.ts";
import { context, recorder, textOf } from "../support/backend-harness.ts";
import { FIXTURE, ROOT } from "../support/gateway-process.ts";

/** The restart comes 1.5 to 3 s after the crash (backoff with jitter): long enough to call meanwhile. */
const RESTART_DELAY_MS = 3_000;

const { states, events } = recorder();
const backend = new McpBackend({
  name: "fx",
  transport: {
    type: "stdio",
    command: process.execPath,
    args: ["--import", "tsx", FIXTURE],
    env: {},
    cwd: ROOT,
  },
  timeoutMs: 30_000,
  restart: { initialDelayMs: RESTART_DELAY_MS, maxDelayMs: RESTART_DELAY_MS },
  connectTimeoutMs: 30_000,
  logger: createLogger({ level: "silent" }),
  clientInfo: { name: "test", version: "1" },
});

before(async () => {
  await backend.start(events);
  assert.equal(backend.state, "up", JSON.stringify(states));
});
after(() => backend.close());

async function pid(): Promise<number> {
  const result = await backend.callTool({ server: "fx", tool: "stats", args: {} }, context());
  return Number((result.structuredContent as { pid: number }).pid);
}

test("in flight at the crash: backend_unavailable, marked restarting; made during the restart: answered after it", async () => {
  const before = await pid();
  const inFlight = backend
    .callTool({ server: "fx", tool: "slow", args: { ms: 20_000 } }, context())
    .catch((error: unknown) => error);
  process.kill(before, "SIGKILL");
  const cut = await inFlight;
  assert.ok(cut instanceof GatewayError, String(cut));
  assert.equal(cut.code, "backend_unavailable");
  assert.equal(cut.data.restarting, true, "the breaker does not count it");
  assert.equal(backend.state, "down");

  // A call whose limit passes while it waits ends with the limit's own error.
  const limit = new AbortController();
  const limited = backend.callTool(
    { server: "fx", tool: "echo", args: { message: "late" } },
    context(limit.signal),
  );
  const timeout = new GatewayError("timeout", "fx__echo did not answer within 200 ms");
  setTimeout(() => limit.abort(timeout), 200);
  await assert.rejects(limited, (error) => error === timeout);

  const waited = await backend.callTool(
    { server: "fx", tool: "echo", args: { message: "waited" } },
    context(),
  );
  assert.equal(textOf(waited), "waited");
  assert.equal(backend.state, "up");
  assert.notEqual(await pid(), before, "answered by the new process");
  assert.deepEqual(
    states.slice(-3).map(([state]) => state),
    ["down", "starting", "up"],
  );
});
