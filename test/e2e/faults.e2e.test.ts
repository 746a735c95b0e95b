/**
 * Fault injection end to end: one real gateway process (Streamable HTTP, SDK v1 clients) in front of
 * a stdio server that misbehaves on demand (test/fixtures/faulty-server.ts) and a healthy one (the
 * fixture server). For each fault — a crash in the middle of a call, a call that hangs, a slow call,
 * garbage on stdout, a notification flood, a huge result — the caller gets a clear error within the
 * configured bound (or the right answer), the healthy server keeps answering during and after the
 * fault, the faulty server answers again without anyone's help, and at the end nothing has leaked:
 * the gateway's children are exactly its two servers (no zombies, no orphans from restarts), its
 * file descriptors return to the baseline once the clients are gone, and SIGTERM exits 0 promptly.
 *
 * The tests share one gateway on purpose and run in order: each leaves the faulty server answering
 * again, and the leak checks at the end see what all the faults together left behind.
 */
import assert from "node:assert/strict";
import { spawn } from "node:child_process";
import { existsSync, readdirSync, readFileSync } from "node:fs";
import { join } from "node:path";
import { createInterface } from "node:readline";
import { after, before, describe, test } from "node:test";
import { Client } from "@modelcontextprotocol/sdk/client/index.js";
import { StreamableHTTPClientTransport } from "@modelcontextprotocol/sdk/client/streamableHttp.js";
import { McpError } from "@modelcontextprotocol/sdk/types.js";
import {
  eventually,
  fixtureServer,
  type LogLine,
  type LogWatcher,
  ROOT,
  type RunningGateway,
  startHttpGateway,
  writeConfig,
} from "../support/gateway-process.ts";

const FAULTY = join(ROOT, "test/fixtures/faulty-server.ts");

/** The faulty server's `timeoutMs`: what a hung call may take. */
const TIMEOUT_MS = 500;
/** Scheduling slack on top of a bound (a loaded CI machine, tsx, two processes in between). */
const SLACK_MS = 1_000;
/** How long the healthy server may take to answer one call while the other one misbehaves. */
const HEALTHY_BOUND_MS = 3_000;
/**
 * During a flood one healthy call may be slow on a loaded machine (the whole suite runs two files at
 * once on two cores); the median bound is what catches a gateway that stalls.
 */
const FLOOD_CALL_BOUND_MS = 8_000;
/** The slow tool's delay: under the timeout. */
const SLOW_MS = 300;
/** Notifications in one burst: the gateway reads, parses and routes each one. */
const FLOOD_COUNT = 50_000;
/** Rounds of garbage (some 20 lines each) a garbage call writes before it answers. */
const GARBAGE_ROUNDS = 50;
/**
 * Notifications in a burst the gateway also forwards to the caller: each then costs the gateway and
 * the caller's SDK a good deal more (a 50 000 burst takes 3–20 s on a loaded 2-CPU machine).
 */
const FORWARDED_COUNT = 20_000;
/** The median latency of the healthy server's calls during a flood: the gateway's loop keeps turning. */
const FLOOD_MEDIAN_BOUND_MS = 250;
const MB = 1024 * 1024;
/** A result under the stdio transport's 64 MiB line limit, and one over it. */
const HUGE_BYTES = 30 * MB;
const OVERSIZED_BYTES = 70 * MB;
/** Time limits (toolPolicies) of the huge tools: moving tens of MB must not be cut by the 500 ms. */
const HUGE_TIMEOUT_MS = 8_000;
const OVERSIZED_TIMEOUT_MS = 4_000;
/** File descriptors the gateway may hold above its baseline once every client is gone (three restarts happen). */
const FD_SLACK = 1;
/** How soon SIGTERM must end an idle gateway (its shutdownTimeoutMs, what a stuck call would cost, is 10 s). */
const EXIT_BOUND_MS = 5_000;

// ---------------------------------------------------------------------------------------------------
// Helpers
// ---------------------------------------------------------------------------------------------------

type Result = {
  content: { type: string; text?: string }[];
  structuredContent?: Record<string, unknown>;
  isError?: boolean;
  _meta?: Record<string, unknown>;
};

const textOf = (result: Result) => String(result.content[0]?.text);
const errorCode = (result: Result) =>
  (result._meta?.["switchboard/error"] as { code?: string } | undefined)?.code;

async function connect(url: string): Promise<Client> {
  const client = new Client({ name: "faults-e2e", version: "1" });
  await client.connect(new StreamableHTTPClientTransport(new URL(url)));
  return client;
}

/** Ends the client's session on the gateway (DELETE), then closes it. */
async function disconnect(client: Client | undefined): Promise<void> {
  if (!client) return;
  const transport = client.transport as StreamableHTTPClientTransport | undefined;
  await transport?.terminateSession().catch(() => undefined);
  await client.close().catch(() => undefined);
}

/** One tools/call and how long it took. */
async function timed(
  client: Client,
  name: string,
  args: Record<string, unknown> = {},
  options: Parameters<Client["callTool"]>[2] = {},
): Promise<{ result: Result; ms: number }> {
  const started = performance.now();
  const result = (await client.callTool({ name, arguments: args }, undefined, options)) as Result;
  return { result, ms: performance.now() - started };
}

/** A matcher for log lines written after this moment (LogWatcher.waitFor also sees older lines). */
function fromNow(logs: LogWatcher, match: (l: LogLine) => boolean): (l: LogLine) => boolean {
  const start = logs.lines.length;
  return (l) => logs.lines.indexOf(l) >= start && match(l);
}

interface Proc {
  readonly pid: number;
  readonly state: string;
  readonly cmdline: string;
}

/**
 * Every process whose parent is `pid` (zombies included), from /proc/<n>/stat, except tsx's esbuild
 * service: tsx starts one in a process that compiles a source file missing from its cache, so it is
 * part of running from source, not of the gateway.
 */
function childrenOf(pid: number): Proc[] {
  const children: Proc[] = [];
  for (const entry of readdirSync("/proc")) {
    if (!/^\d+$/.test(entry)) continue;
    try {
      const stat = readFileSync(`/proc/${entry}/stat`, "utf8");
      // The command name is in parentheses and may hold anything: state and ppid follow the last ")".
      const [state, ppid] = stat.slice(stat.lastIndexOf(")") + 2).split(" ");
      if (Number(ppid) !== pid) continue;
      const cmdline = readFileSync(`/proc/${entry}/cmdline`, "utf8").replaceAll("\0", " ").trim();
      if (/\/esbuild --service=/.test(cmdline)) continue;
      children.push({ pid: Number(entry), state: state ?? "?", cmdline });
    } catch {
      // the process ended while we looked
    }
  }
  return children;
}

/** Whether a process exists and is not a zombie. */
function alive(pid: number): boolean {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, "utf8");
    return stat.slice(stat.lastIndexOf(")") + 2)[0] !== "Z";
  } catch {
    return false;
  }
}

const fdCount = (pid: number) => readdirSync(`/proc/${pid}/fd`).length;

function rssBytes(pid: number): number {
  const match = /VmRSS:\s+(\d+) kB/.exec(readFileSync(`/proc/${pid}/status`, "utf8"));
  assert.ok(match, "VmRSS readable");
  return Number(match[1]) * 1024;
}

/** Samples a process's RSS until stopped; resolves with the peak. */
function rssPeak(pid: number): { stop: () => Promise<number> } {
  let running = true;
  let peak = rssBytes(pid);
  const loop = (async () => {
    while (running) {
      peak = Math.max(peak, rssBytes(pid));
      await new Promise((r) => setTimeout(r, 20));
    }
  })();
  return {
    stop: async () => {
      running = false;
      await loop;
      return peak;
    },
  };
}

const round = (n: number) => Math.round(n);

function median(values: readonly number[]): number {
  const sorted = [...values].sort((a, b) => a - b);
  return sorted[Math.floor(sorted.length / 2)] ?? Number.NaN;
}

/**
 * A flood's caller, as its own process: an SDK v1 client that calls faulty__flood, counts the log
 * messages or progress notifications the call brings, and prints what it saw as one JSON line.
 */
const FLOOD_CONSUMER = `
import { Client } from "@modelcontextprotocol/sdk/client/index.js";
import { StreamableHTTPClientTransport } from "@modelcontextprotocol/sdk/client/streamableHttp.js";
import { LoggingMessageNotificationSchema } from "@modelcontextprotocol/sdk/types.js";
const { url, args, level } = JSON.parse(process.argv[1]);
const client = new Client({ name: "flood-consumer", version: "1" });
const transport = new StreamableHTTPClientTransport(new URL(url));
await client.connect(transport);
if (level) await client.setLoggingLevel(level);
const seen = [];
client.setNotificationHandler(LoggingMessageNotificationSchema, (n) => {
  if (n.params.logger === "faulty/flood") seen.push(Number(/flood message (\\d+) of/.exec(n.params.data)?.[1]));
});
const options = { timeout: 120000, ...(args.kind === "progress" ? { onprogress: (p) => seen.push(p.progress) } : {}) };
const started = performance.now();
const result = await client.callTool({ name: "faulty__flood", arguments: args }, undefined, options);
const ms = performance.now() - started;
const inOrder = seen.every((n, i) => n === i + 1);
await transport.terminateSession().catch(() => undefined);
await client.close();
process.stdout.write(JSON.stringify({ text: result.content[0]?.text, isError: result.isError === true, received: seen.length, inOrder, ms }) + "\\n");
`;

interface FloodOutcome {
  readonly text: string;
  readonly isError: boolean;
  readonly received: number;
  readonly inOrder: boolean;
  readonly ms: number;
}

function runFloodConsumer(
  url: string,
  args: { count: number; kind: string },
  level: string | undefined,
): { outcome: Promise<FloodOutcome>; kill: () => void } {
  const child = spawn(
    process.execPath,
    ["--input-type=module", "-e", FLOOD_CONSUMER, JSON.stringify({ url, args, level })],
    { cwd: ROOT, stdio: ["ignore", "pipe", "pipe"] },
  );
  let stderr = "";
  child.stderr.on("data", (chunk: Buffer) => {
    stderr += chunk.toString("utf8");
  });
  const outcome = new Promise<FloodOutcome>((resolve, reject) => {
    let line: string | undefined;
    createInterface({ input: child.stdout }).once("line", (text) => {
      line = text;
    });
    child.once("close", (code) => {
      if (code === 0 && line !== undefined) resolve(JSON.parse(line) as FloodOutcome);
      else reject(new Error(`the flood consumer exited with ${code}:\n${stderr}`));
    });
  });
  return { outcome, kill: () => child.exitCode === null && child.signalCode === null && child.kill() };
}

// ---------------------------------------------------------------------------------------------------
// The gateway under test
// ---------------------------------------------------------------------------------------------------

describe("faults of a stdio server behind the gateway", { timeout: 120_000 }, () => {
  let gateway: RunningGateway;
  let gatewayPid: number;
  let client: Client;
  const faultyPids = new Set<number>();
  let baselineFds = 0;
  let baselineRss = 0;

  const healthz = async () =>
    (await (await fetch(gateway.url.replace(/\/mcp$/, "/healthz"))).json()) as {
      status: string;
      inFlight: number;
      checks: Record<string, { status: string; detail?: string }>;
    };

  /** The faulty server's process id and counters, as it reports them. */
  const faultyStats = async () => {
    const { result } = await timed(client, "faulty__stats");
    assert.ok(!result.isError, textOf(result));
    const stats = result.structuredContent as {
      pid: number;
      cancelled: number;
      hung: number;
      calls: number;
      garbageLines: number;
    };
    faultyPids.add(stats.pid);
    return stats;
  };

  /** A healthy call must answer correctly and within `boundMs`. */
  const healthyEcho = async (c: Client, message: string, boundMs = HEALTHY_BOUND_MS) => {
    const { result, ms } = await timed(c, "healthy__echo", { message });
    assert.ok(!result.isError, `healthy__echo failed: ${textOf(result)}`);
    assert.equal(textOf(result), message);
    assert.ok(ms < boundMs, `healthy__echo took ${round(ms)} ms (bound ${boundMs} ms)`);
    return ms;
  };

  /** The client that calls the healthy server during faults, and how many calls it made. */
  let bystander: Client;
  let bystanderCalls = 0;

  /**
   * Calls the healthy server, one call after another, until `until` settles (the first call leaves
   * at once, while the fault is under way); resolves with each call's latency. Proves the healthy
   * server keeps answering *during* a fault. The SDK v1 client's fetches each leave an abort listener
   * on one shared signal until the client closes, so the bystander is replaced now and then.
   */
  const keepCallingHealthy = async (until: Promise<unknown>, boundMs = HEALTHY_BOUND_MS) => {
    let done = false;
    const settled = until.then(
      () => {
        done = true;
      },
      () => {
        done = true;
      },
    );
    const latencies: number[] = [];
    while (!done) {
      latencies.push(await healthyEcho(bystander, `during ${latencies.length}`, boundMs));
      if (++bystanderCalls >= 500) {
        await disconnect(bystander);
        bystander = await connect(gateway.url);
        bystanderCalls = 0;
      }
    }
    await settled;
    return latencies;
  };

  /** The faulty server answers (again). */
  const faultyAnswers = async (message: string) => {
    const { result } = await timed(client, "faulty__echo", { message });
    assert.ok(!result.isError, `faulty__echo failed: ${textOf(result)}`);
    assert.equal(textOf(result), message);
  };

  before(async () => {
    const config = writeConfig({
      mcpServers: {
        faulty: {
          command: process.execPath,
          args: ["--import", "tsx", FAULTY],
          cwd: ROOT,
          timeoutMs: TIMEOUT_MS,
          restart: { initialDelayMs: 50, maxDelayMs: 200 },
        },
        healthy: fixtureServer(),
      },
      toolPolicies: {
        faulty__huge: { timeout: HUGE_TIMEOUT_MS },
        faulty__oversized: { timeout: OVERSIZED_TIMEOUT_MS },
        faulty__flood: { timeout: 60_000 },
        faulty__garbage: { timeout: 5_000 },
      },
    });
    // Debug: the transport errors that garbage causes are logged at that level.
    gateway = await startHttpGateway(config, ["--log-level", "debug"]);
    gatewayPid = gateway.child.pid as number;
    await gateway.logs.waitFor((l) => l.server === "faulty" && l.msg === "server up");
    await gateway.logs.waitFor((l) => l.server === "healthy" && l.msg === "server up");
    // Both servers are up: their processes are the gateway's only children.
    await eventually(
      () => childrenOf(gatewayPid).length === 2,
      15_000,
      "the gateway to have 2 children",
    ).catch((error: Error) => {
      throw new Error(`${error.message}: ${JSON.stringify(childrenOf(gatewayPid))}`);
    });
    baselineFds = fdCount(gatewayPid);
    baselineRss = rssBytes(gatewayPid);
    client = await connect(gateway.url);
    bystander = await connect(gateway.url);
    await faultyStats();
  });

  after(async () => {
    await disconnect(bystander);
    await disconnect(client);
    await gateway?.stop();
  });

  test("a crash in the middle of a call fails it, and the calls in flight with it, at once and clearly; the server is restarted", async () => {
    const before = await faultyStats();
    const serverUp = fromNow(gateway.logs, (l) => l.server === "faulty" && l.msg === "server up");
    const wentDown = fromNow(gateway.logs, (l) => l.server === "faulty" && l.msg === "server went down");

    // Two calls already in flight when the process dies, and the one that kills it.
    const inFlight = [timed(client, "faulty__slow", { ms: 400 }), timed(client, "faulty__slow", { ms: 400 })];
    const crash = timed(client, "faulty__crash");
    const during = keepCallingHealthy(Promise.all([crash, ...inFlight]));

    const { result, ms } = await crash;
    assert.equal(result.isError, true);
    assert.equal(errorCode(result), "backend_unavailable");
    const message = textOf(result);
    assert.match(message, /Server "faulty" went away during tool "crash"/);
    assert.match(message, /crashing on purpose/, "the server's last stderr line says why");
    assert.match(message, /restarted/);
    assert.doesNotMatch(message, /timed out/);
    assert.ok(ms < TIMEOUT_MS, `the crash is noticed, not waited out (${round(ms)} ms)`);
    for (const call of inFlight) {
      const other = await call;
      assert.equal(other.result.isError, true, "a call in flight on the crashed server fails");
      assert.equal(errorCode(other.result), "backend_unavailable");
      assert.match(textOf(other.result), /Server "faulty" went away during tool "slow"/);
      assert.ok(other.ms < TIMEOUT_MS, `at once (${round(other.ms)} ms)`);
    }
    assert.ok((await during).length >= 1, "the healthy server answered while the other crashed");
    await gateway.logs.waitFor(wentDown, 5_000, "the gateway to see the server go down");

    // Recovery on its own: a new process, its tools back, its calls answered.
    await gateway.logs.waitFor(serverUp, 10_000, "the faulty server to be restarted");
    await faultyAnswers("back after the crash");
    const after = await faultyStats();
    assert.notEqual(after.pid, before.pid, "a new process");
    assert.equal(alive(before.pid), false, "the crashed process is gone (reaped, not a zombie)");
    await healthyEcho(client, "after the crash");
    await eventually(() => childrenOf(gatewayPid).length === 2, 5_000, "2 children after the restart");

    // Crashing again, right after each restart: every time a clear error, and a fresh process.
    for (let i = 0; i < 2; i++) {
      const previous = await faultyStats();
      const up = fromNow(gateway.logs, (l) => l.server === "faulty" && l.msg === "server up");
      const again = await timed(client, "faulty__crash");
      assert.equal(errorCode(again.result), "backend_unavailable", textOf(again.result));
      await gateway.logs.waitFor(up, 10_000, `the faulty server to be restarted (crash ${i + 2})`);
      await faultyAnswers(`back after crash ${i + 2}`);
      assert.notEqual((await faultyStats()).pid, previous.pid);
      assert.equal(alive(previous.pid), false, "the crashed process is gone");
    }
    await eventually(() => childrenOf(gatewayPid).length === 2, 5_000, "2 children after the restarts");
  });

  test("a call that hangs ends with a timeout error within the timeout, is cancelled at the server, and blocks nothing", async () => {
    const before = await faultyStats();
    const hangs = [1, 2, 3].map(() => timed(client, "faulty__hang"));
    let hangsSettled = false;
    void Promise.all(hangs).then(() => {
      hangsSettled = true;
    });
    // While three calls hang, the same server and the healthy one still answer.
    await faultyAnswers("not blocked by the hung calls");
    await healthyEcho(client, "not blocked either");
    assert.equal(hangsSettled, false, "the other calls were answered while the hung ones still waited");
    const during = keepCallingHealthy(Promise.all(hangs));

    for (const call of hangs) {
      const { result, ms } = await call;
      assert.equal(result.isError, true);
      assert.equal(errorCode(result), "timeout");
      assert.match(
        textOf(result),
        new RegExp(`Tool "faulty__hang" \\(server "faulty", tool "hang"\\) timed out after ${TIMEOUT_MS} ms`),
      );
      assert.match(textOf(result), /the backend call was cancelled/);
      assert.ok(ms >= TIMEOUT_MS - 50, `not before the timeout (${round(ms)} ms)`);
      assert.ok(ms < TIMEOUT_MS + SLACK_MS, `within the timeout and some slack (${round(ms)} ms)`);
    }
    assert.ok((await during).length >= 1);
    // "The backend call was cancelled": the server received a cancellation for each hung call.
    await eventually(
      async () => (await faultyStats()).cancelled - before.cancelled === 3,
      5_000,
      "the server to see 3 cancellations",
    );
    const after = await faultyStats();
    assert.equal(after.pid, before.pid, "a hang is not a crash: the server was not restarted");
    assert.equal((await healthz()).inFlight, 0, "no call is left counted in flight");
    await faultyAnswers("after the hang");
  });

  test("slow calls under the timeout answer correctly and concurrently, not one after another", async () => {
    const n = 8;
    const started = performance.now();
    const slow = Array.from({ length: n }, () => timed(client, "faulty__slow", { ms: SLOW_MS }));
    let slowSettled = 0;
    for (const call of slow) void call.then(() => slowSettled++);
    // Nothing queues behind the slow calls: a quick call to the same server answers before them.
    await faultyAnswers("ahead of the slow calls");
    assert.equal(slowSettled, 0, "the quick call was answered while the slow ones were running");
    assert.ok((await keepCallingHealthy(Promise.all(slow))).length >= 1);
    for (const call of slow) {
      const { result, ms } = await call;
      assert.ok(!result.isError, textOf(result));
      assert.equal(textOf(result), `slow answered after ${SLOW_MS} ms`);
      assert.ok(ms >= SLOW_MS - 5, `${round(ms)} ms`);
    }
    const wall = performance.now() - started;
    // One after another they would take n × SLOW_MS (and most would hit the timeout).
    assert.ok(wall < (n * SLOW_MS) / 2, `${n} slow calls took ${round(wall)} ms in all`);
  });

  test("garbage on stdout is dropped and logged; the valid answers still arrive and nothing restarts", async () => {
    const before = await faultyStats();
    const logsFrom = gateway.logs.lines.length;
    // Garbage before each answer, and (after: true) more garbage after it, between messages.
    const calls = Array.from({ length: 5 }, (_, i) =>
      timed(client, "faulty__garbage", { message: `g${i}`, rounds: GARBAGE_ROUNDS, after: true }),
    );
    const during = keepCallingHealthy(Promise.all(calls));
    for (const [i, call] of calls.entries()) {
      const { result } = await call;
      assert.ok(!result.isError, textOf(result));
      assert.equal(textOf(result), `valid answer: g${i}`);
    }
    assert.ok((await during).length >= 1);
    await faultyAnswers("after the garbage");
    const after = await faultyStats();
    assert.equal(after.pid, before.pid, "garbage is no reason to restart the server");
    assert.ok(
      after.garbageLines >= before.garbageLines + 5 * (GARBAGE_ROUNDS + 1) * 20,
      "the garbage was written",
    );

    // Each kind of garbage is reported at debug level, under the server's name.
    const transportErrors = () =>
      gateway.logs.lines
        .slice(logsFrom)
        .filter((l) => l.server === "faulty" && l.msg === "transport error")
        .map((l) => String(l.err));
    const expected = [
      /not JSON-RPC \(dropped\): faulty: this is a plain log line on stdout/,
      /not JSON-RPC \(dropped\): Error: something broke/,
      /not JSON-RPC \(dropped\): \{"jsonrpc":"2\.0","id":$/,
      /not JSON-RPC \(dropped\): \{"unterminated"/,
      /not JSON-RPC 2\.0 \(dropped\): 42$/,
      /not JSON-RPC 2\.0 \(dropped\): null$/,
      /not JSON-RPC 2\.0 \(dropped\): \[\]$/,
      /not JSON-RPC 2\.0 \(dropped\): \{"hello":"world"\}/,
      /not JSON-RPC 2\.0 \(dropped\): \{"jsonrpc":"1\.0"/,
      // JSON-RPC 2.0 in form, but nothing the gateway can use: the SDK reports them (in its own words).
      /\{"jsonrpc":"2\.0","id":987654,"result"/,
      /\{"jsonrpc":"2\.0","id":"sb:999999","result"/,
      /\{"jsonrpc":"2\.0","id":null,"error"/,
      /\{"jsonrpc":"2\.0"\}$/,
    ];
    await eventually(
      () => {
        const errors = transportErrors();
        return expected.every((e) => errors.some((line) => e.test(line)));
      },
      5_000,
      "every kind of garbage to be logged",
    ).catch((error: Error) => {
      throw new Error(`${error.message}; logged:\n${transportErrors().join("\n")}`);
    });
    assert.equal(gateway.child.exitCode, null, "the gateway is still running");
    assert.equal((await healthz()).checks.faulty?.status, "healthy");
    await healthyEcho(client, "after the garbage");
  });

  test("a flood of notifications leaves the gateway responsive and its memory bounded, and ends", async () => {
    const before = await faultyStats();

    /**
     * One flood call, made by a client in a process of its own (so that parsing the flood does not
     * slow down this process, which measures the gateway), with the healthy server called throughout
     * and the gateway's RSS sampled.
     */
    const flood = async (args: { count: number; kind: string }, level?: string) => {
      const sampler = rssPeak(gatewayPid);
      const consumer = runFloodConsumer(gateway.url, args, level);
      let latencies: number[];
      let peak: number;
      try {
        latencies = await keepCallingHealthy(consumer.outcome, FLOOD_CALL_BOUND_MS);
      } finally {
        peak = await sampler.stop();
        consumer.kill();
      }
      const outcome = await consumer.outcome;
      const report =
        `${args.count} ${args.kind}${level ? ` (caller's level: ${level})` : ""}: ${round(outcome.ms)} ms, ` +
        `${outcome.received} received, ${latencies.length} healthy calls during it ` +
        `(median ${round(median(latencies))} ms, slowest ${round(Math.max(...latencies))} ms), gateway rss peak ${round(peak / MB)} MB ` +
        `(baseline ${round(baselineRss / MB)} MB)`;
      console.log(`flood ${report}`);
      assert.equal(outcome.isError, false, outcome.text);
      assert.equal(outcome.text, `flooded ${args.count} ${args.kind} notifications`);
      assert.ok(latencies.length >= 3, `the healthy server kept answering during the flood: ${report}`);
      assert.ok(median(latencies) < FLOOD_MEDIAN_BOUND_MS, `and promptly: ${report}`);
      assert.ok(peak - baselineRss < 320 * MB, `memory stays bounded: ${report}`);
      return { ...outcome, peak };
    };

    // 1. Log messages the caller did not ask for (its level is "error"): the gateway reads, parses,
    //    routes and drops every one. Three rounds: memory must not grow from one round to the next.
    const peaks: number[] = [];
    for (let i = 0; i < 3; i++) {
      const quiet = await flood({ count: FLOOD_COUNT, kind: "message" }, "error");
      assert.equal(quiet.received, 0, "the caller's level is respected");
      peaks.push(quiet.peak);
    }
    assert.ok(
      (peaks[2] as number) - (peaks[0] as number) < 64 * MB,
      `memory does not accumulate across floods: peaks ${peaks.map((p) => round(p / MB)).join(", ")} MB`,
    );
    // 2. Progress for a token nobody holds: dropped as it arrives.
    await flood({ count: FLOOD_COUNT, kind: "stray-progress" });
    // 3. Log messages the caller does want (it asked for them with logging/setLevel): every one
    //    forwarded on its call's stream, in order.
    const messages = await flood({ count: FORWARDED_COUNT, kind: "message" }, "debug");
    assert.equal(messages.received, FORWARDED_COUNT, "every log message arrived");
    assert.equal(messages.inOrder, true, "once each, in order");
    // 4. Progress of the caller's own call: every one forwarded, in order.
    const progress = await flood({ count: FORWARDED_COUNT, kind: "progress" });
    assert.equal(progress.received, FORWARDED_COUNT, "every progress notification arrived");
    assert.equal(progress.inOrder, true, "once each, in order");

    // The flood is over: both servers answer as before, without a restart.
    await faultyAnswers("after the flood");
    assert.equal((await faultyStats()).pid, before.pid);
    await healthyEcho(client, "after the flood");
  });

  test("a huge result (30 MB) reaches the client whole; the gateway survives and other calls continue", async () => {
    const before = await faultyStats();
    const sampler = rssPeak(gatewayPid);
    const huge = timed(client, "faulty__huge", { bytes: HUGE_BYTES });
    const during = keepCallingHealthy(huge);
    const { result, ms } = await huge;
    const peak = await sampler.stop();
    const latencies = await during;
    console.log(
      `huge: ${round(ms)} ms, ${latencies.length} healthy calls during it (slowest ` +
        `${round(Math.max(...latencies))} ms), gateway rss peak ${round(peak / MB)} MB`,
    );
    assert.ok(!result.isError, textOf(result).slice(0, 300));
    assert.equal(textOf(result).length, HUGE_BYTES);
    assert.ok(/^x+$/.test(textOf(result)), "the text arrived intact");
    assert.ok(ms < HUGE_TIMEOUT_MS, `${round(ms)} ms`);
    assert.ok(latencies.length >= 1, "the healthy server answered while the huge result was moving");
    await faultyAnswers("after the huge result");
    assert.equal((await faultyStats()).pid, before.pid);
    assert.equal(gateway.child.exitCode, null, "the gateway is still running");
  });

  test("a result over the 64 MiB line limit fails at once with an error that says so, not a timeout", async () => {
    const oversized = timed(client, "faulty__oversized", { bytes: OVERSIZED_BYTES }).then(
      ({ result, ms }) => ({ text: textOf(result), isError: result.isError === true, ms }),
      // The fix may answer with a JSON-RPC error instead of an isError result: either is clear.
      (error: unknown) => ({
        text: error instanceof McpError ? error.message : String(error),
        isError: true,
        ms: Number.NaN,
      }),
    );
    const started = performance.now();
    const during = keepCallingHealthy(oversized);
    const outcome = await oversized;
    const ms = Number.isNaN(outcome.ms) ? performance.now() - started : outcome.ms;
    console.log(`oversized: ${round(ms)} ms: ${outcome.text}`);
    assert.ok((await during).length >= 1, "the healthy server answered meanwhile");
    // Whatever happens to the answer, the gateway and both servers carry on.
    assert.equal(gateway.child.exitCode, null, "the gateway is still running");
    await eventually(
      async () => {
        const { result } = await timed(client, "faulty__echo", { message: "after the oversized result" });
        return !result.isError;
      },
      10_000,
      "the faulty server to answer again",
    );
    await healthyEcho(client, "after the oversized result");

    assert.equal(outcome.isError, true);
    assert.doesNotMatch(
      outcome.text,
      /timed out/,
      `the caller waited the whole timeout (${round(ms)} ms) for an answer the gateway had already dropped`,
    );
    assert.match(outcome.text, /64 MiB|too large|larger than|over the .*limit/i, outcome.text);
    assert.ok(ms < OVERSIZED_TIMEOUT_MS, `${round(ms)} ms`);
  });

  test("nothing leaks: the children are the two servers, fds return to the baseline, SIGTERM exits 0", async () => {
    await disconnect(bystander);
    await disconnect(client);
    const children = childrenOf(gatewayPid);
    assert.equal(children.length, 2, `the two servers and nothing else: ${JSON.stringify(children)}`);
    assert.ok(
      children.every((c) => c.state !== "Z"),
      `no zombies: ${JSON.stringify(children)}`,
    );
    const current = new Set(children.map((c) => c.pid));
    for (const pid of faultyPids) {
      if (!current.has(pid)) assert.equal(alive(pid), false, `old faulty process ${pid} is gone (no orphan)`);
    }
    assert.equal((await healthz()).inFlight, 0, "no call is left counted in flight");
    let fds = 0;
    await eventually(
      () => {
        fds = fdCount(gatewayPid);
        return fds <= baselineFds + FD_SLACK;
      },
      15_000,
      `fds back near the baseline of ${baselineFds}`,
    ).catch((error: Error) => {
      throw new Error(`${error.message} (now ${fds})`);
    });
    console.log(`leaks: gateway fds ${fds} (baseline ${baselineFds}), children ${JSON.stringify(children)}`);

    // SIGTERM: a clean exit, soon (nothing in flight to wait for, no handle keeping the process up).
    const started = performance.now();
    const exited = gateway.stop("SIGTERM");
    let deadline: NodeJS.Timeout | undefined;
    const code = await Promise.race([
      exited,
      new Promise<"still running">((resolve) => {
        deadline = setTimeout(() => resolve("still running"), EXIT_BOUND_MS);
      }),
    ]);
    clearTimeout(deadline);
    const ms = performance.now() - started;
    if (code === "still running") gateway.child.kill("SIGKILL");
    assert.equal(code, 0, `exit code after SIGTERM (${round(ms)} ms)`);
    console.log(`leaks: exited 0 ${round(ms)} ms after SIGTERM`);
    assert.ok(gateway.logs.lines.some((l) => l.msg === "stopped"));
    assert.ok(
      !gateway.logs.lines.some((l) => l.msg === "shutdown deadline passed with calls still running; closing"),
      "no call was left running at shutdown",
    );
    assert.equal(existsSync(`/proc/${gatewayPid}`), false);
    for (const child of children)
      assert.equal(alive(child.pid), false, `server ${child.pid} stopped with it`);
  });
});
