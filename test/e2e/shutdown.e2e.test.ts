/**
 * Graceful shutdown under load, through the real CLI: `SIGTERM` drains and exits 0, as process
 * managers and Kubernetes expect of a server. What a client and an operator are owed:
 *
 * - every call in flight at SIGTERM completes with its own result, or gets a clear error: none hangs
 *   and none is dropped with a bare connection reset;
 * - a new request after SIGTERM is refused at once with a 503 that says why (a load balancer retries
 *   it elsewhere), on a fresh connection, on a kept-alive one, and on an open 2025-era session;
 * - the exit code is 0;
 * - the sync audit log holds exactly one record per call that ran, and none for refused requests.
 *
 * Calls are raw JSON-RPC POSTs over a keep-alive agent (one socket per call in flight), so that every
 * one of them is accounted for by its id and its unique argument, with no client library retrying or
 * resuming in between. The stdio test speaks newline-delimited JSON-RPC to the child directly.
 */
import assert from "node:assert/strict";
import { type ChildProcess, spawn } from "node:child_process";
import { existsSync, readFileSync, rmSync } from "node:fs";
import http from "node:http";
import { dirname, join } from "node:path";
import { createInterface } from "node:readline";
import { after, describe, test } from "node:test";
import {
  eventually,
  fixtureServer,
  LogWatcher,
  type RunningGateway,
  startHttpGateway,
  stdioGatewayCommand,
  writeConfig,
} from "../support/gateway-process.ts";

/** Calls in flight at SIGTERM. */
const CALLS = 100;
/** A call given up on after this long has hung: every bound below is far shorter. */
const HANG_MS = 20_000;
const SHUTTING_DOWN = /shutting down/i;

interface AuditLine {
  requestId: string;
  tool: string;
  outcome: string;
  transport?: string;
  arguments?: Record<string, unknown>;
  error?: string;
}

type JsonRpcMessage = {
  jsonrpc: "2.0";
  id?: string | number | null;
  result?: { content?: { type: string; text?: string }[]; isError?: boolean };
  error?: { code: number; message: string };
};

/** What became of one HTTP request: an answer (status, JSON-RPC message), or a transport failure. */
type Reply =
  | {
      kind: "answer";
      status: number;
      headers: http.IncomingHttpHeaders;
      message: JsonRpcMessage | undefined;
      body: string;
      ms: number;
    }
  | { kind: "failed"; code: string; error: string; ms: number };

const dirs: string[] = [];
after(() => {
  for (const dir of dirs) rmSync(dir, { recursive: true, force: true });
});

function config(extra: Record<string, unknown> = {}): { path: string; auditFile: string } {
  const path = writeConfig({
    mcpServers: { fx: fixtureServer() },
    audit: { sinks: [{ type: "file", path: "audit.jsonl", durability: "sync" }] },
    ...extra,
  });
  dirs.push(dirname(path));
  return { path, auditFile: join(dirname(path), "audit.jsonl") };
}

function readAudit(file: string): AuditLine[] {
  if (!existsSync(file)) return [];
  return readFileSync(file, "utf8")
    .split("\n")
    .filter((line) => line.trim() !== "")
    .map((line) => JSON.parse(line) as AuditLine);
}

/** A JSON body, or the JSON-RPC response carried by an SSE body. */
function parseMessage(body: string): JsonRpcMessage | undefined {
  const trimmed = body.trimStart();
  try {
    if (trimmed.startsWith("{")) return JSON.parse(trimmed) as JsonRpcMessage;
    for (const line of body.split("\n")) {
      if (!line.startsWith("data:")) continue;
      const message = JSON.parse(line.slice(5).trim()) as JsonRpcMessage;
      if (message.id !== undefined) return message;
    }
  } catch {
    return undefined;
  }
  return undefined;
}

/** POSTs one JSON-RPC message to the MCP endpoint; never rejects. */
function post(
  url: string,
  body: unknown,
  { agent, headers = {} }: { agent: http.Agent | false; headers?: Record<string, string> },
): Promise<Reply> {
  const target = new URL(url);
  const started = performance.now();
  return new Promise((resolve) => {
    const req = http.request(
      {
        host: target.hostname,
        port: target.port,
        path: target.pathname,
        method: "POST",
        agent,
        headers: {
          "content-type": "application/json",
          accept: "application/json, text/event-stream",
          ...headers,
        },
        timeout: HANG_MS,
      },
      (res) => {
        let text = "";
        res.setEncoding("utf8");
        res.on("data", (chunk: string) => {
          text += chunk;
        });
        res.on("end", () =>
          resolve({
            kind: "answer",
            status: res.statusCode ?? 0,
            headers: res.headers,
            message: parseMessage(text),
            body: text,
            ms: performance.now() - started,
          }),
        );
        res.on("error", (error: NodeJS.ErrnoException) =>
          resolve({
            kind: "failed",
            code: error.code ?? "",
            error: error.message,
            ms: performance.now() - started,
          }),
        );
      },
    );
    req.on("timeout", () =>
      req.destroy(Object.assign(new Error("no answer: the call hung"), { code: "HUNG" })),
    );
    req.on("error", (error: NodeJS.ErrnoException) =>
      resolve({
        kind: "failed",
        code: error.code ?? "",
        error: error.message,
        ms: performance.now() - started,
      }),
    );
    req.end(JSON.stringify(body));
  });
}

const slowCall = (id: number, ms: number) => ({
  jsonrpc: "2.0",
  id,
  method: "tools/call",
  params: { name: "fx__slow", arguments: { ms } },
});

/** A 2026-07-28 call from a client that declares nothing: the gateway's plain path answers it. */
const modernSlowCall = (id: number, ms: number) => {
  const call = slowCall(id, ms);
  return {
    ...call,
    params: {
      ...call.params,
      _meta: {
        "io.modelcontextprotocol/protocolVersion": "2026-07-28",
        "io.modelcontextprotocol/clientInfo": { name: "shutdown-test", version: "1" },
        "io.modelcontextprotocol/clientCapabilities": {},
      },
    },
  };
};
const MODERN_HEADERS = {
  "mcp-protocol-version": "2026-07-28",
  "mcp-method": "tools/call",
  "mcp-name": "fx__slow",
};

const textOf = (reply: Reply) =>
  reply.kind === "answer" ? (reply.message?.result?.content?.map((c) => c.text ?? "").join(" ") ?? "") : "";

function describeReply(reply: Reply): string {
  return reply.kind === "answer"
    ? `HTTP ${reply.status} after ${Math.round(reply.ms)} ms: ${reply.body.slice(0, 300)}`
    : `${reply.code} ${reply.error} after ${Math.round(reply.ms)} ms`;
}

async function inFlight(gateway: RunningGateway | string): Promise<number> {
  const base = typeof gateway === "string" ? gateway : gateway.url;
  const response = await fetch(new URL("/healthz", base), { signal: AbortSignal.timeout(5_000) });
  return ((await response.json()) as { inFlight: number }).inFlight;
}

function exitOf(child: ChildProcess): Promise<{ code: number | null; signal: NodeJS.Signals | null }> {
  if (child.exitCode !== null || child.signalCode !== null) {
    return Promise.resolve({ code: child.exitCode, signal: child.signalCode });
  }
  return new Promise((resolve) => child.once("exit", (code, signal) => resolve({ code, signal })));
}

/** Resolves once the agent holds an idle kept-alive socket, which it will reuse for the next request. */
async function idleSocket(agent: http.Agent): Promise<void> {
  await eventually(
    () => Object.values(agent.freeSockets).some((sockets) => (sockets?.length ?? 0) > 0),
    5_000,
    "a kept-alive socket to be free",
  );
}

describe("graceful shutdown of the HTTP gateway under load", () => {
  test("SIGTERM with 100 calls in flight: all complete, new requests get 503, exit 0, one audit record each", async () => {
    const { path, auditFile } = config();
    const gateway = await startHttpGateway(path);
    const agent = new http.Agent({ keepAlive: true, maxSockets: CALLS * 2 });
    try {
      // Unique durations: each call's answer ("waited <ms> ms") and audit record name it.
      const durations = Array.from({ length: CALLS }, (_, i) => 1_000 + i * 5);
      const replies = durations.map((ms, i) => post(gateway.url, slowCall(i + 1, ms), { agent }));
      let seen = 0;
      await eventually(
        async () => {
          seen = Math.max(seen, await inFlight(gateway));
          return seen >= CALLS;
        },
        10_000,
        `${CALLS} calls in flight`,
      ).catch((error: Error) => {
        throw new Error(`${error.message}: at most ${seen} were seen at once`);
      });

      const exited = exitOf(gateway.child);
      const signalledAt = performance.now();
      gateway.child.kill("SIGTERM");
      const stopping = await gateway.logs.waitFor((l) => l.msg === "shutting down", 5_000, "the shutdown");
      assert.equal(stopping.inFlight, CALLS, "the gateway knows what it is draining");

      // A new connection: the listener is closed, so it is refused outright (a connection the kernel
      // had queued before the listener closed is reset instead).
      const fresh = await post(gateway.url, slowCall(1_001, 10), { agent: false });
      const refusedOutright =
        fresh.kind === "failed" && (fresh.code === "ECONNREFUSED" || fresh.code === "ECONNRESET");
      const refused503 = fresh.kind === "answer" && fresh.status === 503;
      assert.ok(refusedOutright || refused503, describeReply(fresh));

      // A kept-alive connection whose call just finished: its next request gets a 503 that says why.
      await Promise.race(replies);
      await idleSocket(agent);
      const late = await post(gateway.url, slowCall(1_002, 10), { agent });
      assert.equal(late.kind, "answer", describeReply(late));
      assert.equal(late.kind === "answer" && late.status, 503, describeReply(late));
      assert.match(late.kind === "answer" ? (late.message?.error?.message ?? "") : "", SHUTTING_DOWN);

      const settled = await Promise.all(replies);
      const { code, signal } = await exited;
      const stoppedAfterMs = performance.now() - signalledAt;

      // Every call accounted for: each answered with its own result.
      const wrong = settled
        .map((reply, i) => ({ reply, expected: `waited ${durations[i]} ms` }))
        .filter(
          ({ reply, expected }) =>
            reply.kind !== "answer" || reply.status !== 200 || textOf(reply) !== expected,
        );
      assert.equal(
        wrong.length,
        0,
        `${wrong.length} of ${CALLS} calls did not complete with their result, e.g.:\n` +
          wrong
            .slice(0, 5)
            .map(({ reply, expected }) => `expected "${expected}", got ${describeReply(reply)}`)
            .join("\n"),
      );
      assert.equal(code, 0, `exit code (signal ${signal}):\n${gateway.logs.tail()}`);
      assert.ok(stoppedAfterMs < 10_000, `stopped ${Math.round(stoppedAfterMs)} ms after SIGTERM`);
      assert.ok(gateway.logs.lines.some((l) => l.msg === "stopped"));

      // One record per call that ran, and nothing for the refused requests.
      const records = readAudit(auditFile).filter((r) => r.tool === "fx__slow");
      const byDuration = new Map<number, AuditLine[]>();
      for (const record of records) {
        const ms = Number(record.arguments?.ms);
        byDuration.set(ms, [...(byDuration.get(ms) ?? []), record]);
      }
      assert.deepEqual(
        [...byDuration.keys()].sort((a, b) => a - b),
        durations,
        "exactly the calls that ran are recorded, and only them",
      );
      const twice = [...byDuration.entries()].filter(([, list]) => list.length !== 1).map(([ms]) => ms);
      assert.deepEqual(twice, [], "no call is recorded twice");
      for (const record of records) {
        assert.equal(record.outcome, "ok");
        assert.equal(record.transport, "http");
      }
      assert.equal(new Set(records.map((r) => r.requestId)).size, CALLS, "distinct request ids");
    } finally {
      agent.destroy();
      await gateway.stop("SIGKILL");
    }
  });

  for (const way of ["sessionless 2025-era requests (the SDK's path)", "plain 2026-07-28 requests"] as const)
    test(`past gateway.shutdownTimeoutMs, calls still running get a clear error, not a dropped connection: ${way}`, async () => {
      const modern = way.startsWith("plain");
      const SHUTDOWN_TIMEOUT_MS = 500;
      const LONG_CALLS = 20;
      const { path, auditFile } = config({ gateway: { shutdownTimeoutMs: SHUTDOWN_TIMEOUT_MS } });
      const gateway = await startHttpGateway(path);
      const agent = new http.Agent({ keepAlive: true, maxSockets: LONG_CALLS * 2 });
      try {
        // Longer than the deadline plus the time shutdown waits for answers being written.
        const durations = Array.from({ length: LONG_CALLS }, (_, i) => 8_000 + i);
        const replies = durations.map((ms, i) =>
          modern
            ? post(gateway.url, modernSlowCall(i + 1, ms), { agent, headers: MODERN_HEADERS })
            : post(gateway.url, slowCall(i + 1, ms), { agent }),
        );
        await eventually(async () => (await inFlight(gateway)) >= LONG_CALLS, 10_000, "the calls in flight");
        const exited = exitOf(gateway.child);
        const signalledAt = performance.now();
        gateway.child.kill("SIGTERM");
        const settled = await Promise.all(replies);
        const { code } = await exited;
        const stoppedAfterMs = performance.now() - signalledAt;

        // The client must learn that the gateway gave up on its call because it is shutting down: a
        // JSON-RPC error or an isError result that says so. A reset connection says nothing.
        const unclear = settled.filter((reply) => {
          if (reply.kind !== "answer" || reply.message === undefined) return true;
          const said = reply.message.error?.message ?? (reply.message.result?.isError ? textOf(reply) : "");
          return !SHUTTING_DOWN.test(said);
        });
        assert.equal(
          unclear.length,
          0,
          `${unclear.length} of ${LONG_CALLS} calls cut at the deadline got no clear error, e.g.:\n` +
            unclear.slice(0, 3).map(describeReply).join("\n"),
        );
        assert.equal(code, 0, gateway.logs.tail());
        assert.ok(
          stoppedAfterMs < 8_000,
          `stopped ${Math.round(stoppedAfterMs)} ms after SIGTERM, before the calls' end`,
        );
        const records = readAudit(auditFile).filter((r) => r.tool === "fx__slow");
        assert.equal(records.length, LONG_CALLS, "each cut call is recorded once");
        for (const record of records) assert.notEqual(record.outcome, "ok");
      } finally {
        agent.destroy();
        await gateway.stop("SIGKILL");
      }
    });

  test("an open 2025-era session: its calls in flight complete, its new call after SIGTERM gets 503", async () => {
    const { path, auditFile } = config();
    const gateway = await startHttpGateway(path);
    const agent = new http.Agent({ keepAlive: true, maxSockets: 50 });
    try {
      const init = await post(
        gateway.url,
        {
          jsonrpc: "2.0",
          id: 0,
          method: "initialize",
          params: {
            protocolVersion: "2025-06-18",
            capabilities: {},
            clientInfo: { name: "shutdown-e2e", version: "1" },
          },
        },
        { agent },
      );
      const session = init.kind === "answer" ? init.headers["mcp-session-id"] : undefined;
      assert.ok(typeof session === "string", `a session was opened: ${describeReply(init)}`);
      const headers = { "mcp-session-id": session, "mcp-protocol-version": "2025-06-18" };
      await post(gateway.url, { jsonrpc: "2.0", method: "notifications/initialized" }, { agent, headers });

      const durations = Array.from({ length: 10 }, (_, i) => 1_000 + i * 20);
      const replies = durations.map((ms, i) => post(gateway.url, slowCall(i + 1, ms), { agent, headers }));
      await eventually(
        async () => (await inFlight(gateway)) >= durations.length,
        10_000,
        "the session's calls",
      );
      const exited = exitOf(gateway.child);
      gateway.child.kill("SIGTERM");
      await gateway.logs.waitFor((l) => l.msg === "shutting down", 5_000, "the shutdown");
      await Promise.race(replies);
      await idleSocket(agent);
      // A new call on the session: running it would hold the shutdown up for as long as it takes.
      const late = await post(gateway.url, slowCall(500, 3_000), { agent, headers });
      const settled = await Promise.all(replies);
      const { code } = await exited;

      const wrong = settled.filter((reply, i) => textOf(reply) !== `waited ${durations[i]} ms`);
      assert.equal(wrong.length, 0, wrong.slice(0, 3).map(describeReply).join("\n"));
      assert.equal(code, 0, gateway.logs.tail());
      assert.equal(late.kind === "answer" && late.status, 503, `the late call: ${describeReply(late)}`);
      assert.match(late.kind === "answer" ? (late.message?.error?.message ?? "") : "", SHUTTING_DOWN);
      const ran = readAudit(auditFile).filter((r) => r.tool === "fx__slow");
      assert.equal(ran.length, durations.length, "the refused call did not run");
    } finally {
      agent.destroy();
      await gateway.stop("SIGKILL");
    }
  });
});

describe("graceful shutdown of the stdio gateway", () => {
  test("SIGTERM with calls in flight on stdio: each completes before exit 0, one audit record each", async () => {
    const STDIO_CALLS = 30;
    const { path, auditFile } = config();
    const command = stdioGatewayCommand(path);
    // --probe-port serves /healthz next to stdio: how the test sees the calls in flight.
    const child = spawn(command.command, [...command.args, "--probe-port", "127.0.0.1:0"], {
      cwd: command.cwd,
      stdio: ["pipe", "pipe", "pipe"],
    });
    const logs = new LogWatcher(child.stderr as NodeJS.ReadableStream);
    const exited = exitOf(child);
    const answers = new Map<number, JsonRpcMessage>();
    const waiting = new Map<number, (message: JsonRpcMessage) => void>();
    const garbage: string[] = [];
    createInterface({ input: child.stdout as NodeJS.ReadableStream }).on("line", (line) => {
      let message: JsonRpcMessage;
      try {
        message = JSON.parse(line) as JsonRpcMessage;
      } catch {
        garbage.push(line);
        return;
      }
      if (typeof message.id !== "number") return;
      answers.set(message.id, message);
      waiting.get(message.id)?.(message);
    });
    const send = (message: unknown) => child.stdin?.write(`${JSON.stringify(message)}\n`);
    /** Resolves with the answer, or undefined if the process exits without one. */
    const request = (id: number, method: string, params: unknown) => {
      const answered = new Promise<JsonRpcMessage>((resolve) => waiting.set(id, resolve));
      send({ jsonrpc: "2.0", id, method, params });
      return Promise.race([answered, exited.then(() => answers.get(id))]);
    };
    try {
      const probes = await logs.waitFor((l) => l.msg === "serving probes and metrics", 30_000, "the probes");
      const init = await request(0, "initialize", {
        protocolVersion: "2025-06-18",
        capabilities: {},
        clientInfo: { name: "shutdown-e2e", version: "1" },
      });
      assert.ok(init?.result, JSON.stringify(init));
      send({ jsonrpc: "2.0", method: "notifications/initialized" });

      const durations = Array.from({ length: STDIO_CALLS }, (_, i) => 800 + i * 20);
      const calls = durations.map((ms, i) =>
        request(i + 1, "tools/call", { name: "fx__slow", arguments: { ms } }),
      );
      await eventually(
        async () => (await inFlight(String(probes.url))) >= STDIO_CALLS,
        10_000,
        "the stdio calls in flight",
      );
      child.kill("SIGTERM");
      await logs.waitFor((l) => l.msg === "shutting down", 5_000, "the shutdown");
      // A request sent while draining is answered too (result or error), not dropped.
      await Promise.race(calls);
      const late = request(1_000, "tools/call", { name: "fx__slow", arguments: { ms: 200 } });

      const settled = await Promise.all(calls);
      const lateAnswer = await late;
      const { code, signal } = await exited;

      const wrong = settled.filter(
        (answer, i) => answer?.result?.content?.[0]?.text !== `waited ${durations[i]} ms`,
      );
      assert.equal(
        wrong.length,
        0,
        `${wrong.length} of ${STDIO_CALLS} calls did not complete with their result: ${JSON.stringify(wrong.slice(0, 3))}`,
      );
      assert.ok(lateAnswer?.result ?? lateAnswer?.error, "the call sent while draining got an answer");
      assert.equal(code, 0, `exit code (signal ${signal}):\n${logs.tail()}`);
      assert.deepEqual(garbage, [], "stdout carries only protocol messages");
      const records = readAudit(auditFile).filter((r) => r.tool === "fx__slow");
      const recorded = records
        .map((r) => Number(r.arguments?.ms))
        .filter((ms) => ms !== 200)
        .sort((a, b) => a - b);
      assert.deepEqual(recorded, durations, "one record per call, each once");
      for (const record of records) assert.equal(record.transport, "stdio");
    } finally {
      if (child.exitCode === null && child.signalCode === null) child.kill("SIGKILL");
      await exited;
    }
  });
});
