/**
 * Tasks that outlive the replica a client started them on: three Switchboard replicas (the built CLI)
 * share one Redis under a prefix of this run's own, with two principals (API keys). Behind them: a
 * server with tasks (the conformance fixture, 2026-07-28 tasks extension) over stdio, where each
 * replica spawns its own; the same server on a 2025-era connection; the same server over HTTP, which
 * every replica reaches; a 2025-11-25 server with that era's tasks; and a server without tasks (the
 * flaky server, 2025-era).
 *
 * Clients of both eras: SDK v2 clients speaking 2026-07-28 (stateless: any replica serves any request)
 * and SDK v1 clients speaking 2025-11-25 tasks, one connected to each replica with the same key (a
 * 2025-era session lives on the replica that opened it; the task is the principal's, not the
 * session's).
 */
import assert from "node:assert/strict";
import type { ChildProcess } from "node:child_process";
import { createHash } from "node:crypto";
import { after, before, describe, test } from "node:test";
import { Client as ClientV2, StreamableHTTPClientTransport as HttpV2 } from "@modelcontextprotocol/client";
import { Client as ClientV1 } from "@modelcontextprotocol/sdk/client/index.js";
import { StdioClientTransport as StdioV1 } from "@modelcontextprotocol/sdk/client/stdio.js";
import { StreamableHTTPClientTransport as HttpV1 } from "@modelcontextprotocol/sdk/client/streamableHttp.js";
import {
  CallToolResultSchema,
  CancelTaskResultSchema,
  CreateTaskResultSchema,
  GetTaskResultSchema,
  ListTasksResultSchema,
} from "@modelcontextprotocol/sdk/types.js";
import { z } from "zod";
import { startFixture, stopChild } from "../../scripts/conformance-common.ts";
import {
  eventually,
  ROOT,
  type RunningGateway,
  startHttpGateway,
  stdioGatewayCommand,
  writeConfig,
} from "../support/gateway-process.ts";
import { deleteByPrefix, describeWithRedis, uniquePrefix } from "../support/redis.ts";
import { flakyServer } from "../support/replicas.ts";
import { startRoundRobinProxy } from "../support/round-robin-proxy.ts";

const TASKS = "io.modelcontextprotocol/tasks";
const ALICE = "alice-key-0123456789";
const BOB = "bob-key-0123456789";
const sha256 = (text: string) => createHash("sha256").update(text).digest("hex");
const bearer = (token: string) => ({ authorization: `Bearer ${token}` });
const TIMEOUT = { timeout: 20_000 };

type Json = Record<string, unknown>;
const Loose = z.looseObject({});

/**
 * An SDK v2 client that takes tasks. The SDK has no client runtime for the extension: it refuses a
 * `resultType: "task"` answer, so this one hands such an answer over as it came, under `task`.
 */
class TaskClientV2 extends ClientV2 {
  /** The last result as it came over the wire (the SDK drops fields it has no schema for). */
  lastRaw: Json = {};

  protected override _onresponse(response: Parameters<ClientV2["_onresponse"]>[0]): void {
    const result = "result" in response ? (response.result as Json) : undefined;
    if (result) this.lastRaw = result;
    if (result?.resultType === "task") {
      const wrapped = { resultType: "complete", content: [], structuredContent: { task: result } };
      super._onresponse({ ...response, result: wrapped } as never);
      return;
    }
    super._onresponse(response);
  }
}

async function connectV2(url: string, token: string): Promise<TaskClientV2> {
  const client = new TaskClientV2({ name: "tasks-e2e-v2", version: "1" }, {
    versionNegotiation: { mode: { pin: "2026-07-28" } },
    capabilities: { extensions: { [TASKS]: {} } },
  } as never);
  await client.connect(new HttpV2(new URL(url), { requestInit: { headers: bearer(token) } }));
  return client;
}

async function connectV1(url: string, token: string): Promise<ClientV1> {
  const client = new ClientV1({ name: "tasks-e2e-v1", version: "1" });
  await client.connect(new HttpV1(new URL(url), { requestInit: { headers: bearer(token) } }));
  return client;
}

/** Starts a call as a task through a v2 client; the gateway's CreateTaskResult. */
async function startV2(client: TaskClientV2, name: string, args: Json): Promise<Json> {
  const answer = (await client.callTool({ name, arguments: args }, TIMEOUT as never)) as Json;
  const task = (answer.structuredContent as Json | undefined)?.task as Json | undefined;
  assert.ok(task, `${name} was answered as a task: ${JSON.stringify(answer)}`);
  return task;
}

/** Sends a task request; its result as it came over the wire. */
async function sendV2(client: TaskClientV2, method: string, params: Json): Promise<Json> {
  await client.request({ method, params } as never, Loose as never, TIMEOUT);
  return client.lastRaw;
}
const getV2 = (client: TaskClientV2, taskId: string) => sendV2(client, "tasks/get", { taskId });
const cancelV2 = (client: TaskClientV2, taskId: string) => sendV2(client, "tasks/cancel", { taskId });

/** Polls until the task has finished; its last state. */
async function untilDone(get: () => Promise<Json>, what: string): Promise<Json> {
  let last: Json = {};
  await eventually(
    async () => {
      last = await get();
      return ["completed", "failed", "cancelled"].includes(String(last.status));
    },
    30_000,
    what,
  );
  return last;
}

const startV1 = (client: ClientV1, name: string, args: Json) =>
  client.request(
    { method: "tools/call", params: { name, arguments: args, task: { ttl: 600_000 } } },
    CreateTaskResultSchema,
    TIMEOUT,
  );
const getV1 = (client: ClientV1, taskId: string) =>
  client.request({ method: "tasks/get", params: { taskId } }, GetTaskResultSchema, TIMEOUT) as Promise<Json>;

const textOf = (result: unknown) =>
  ((result as { content?: { text?: string }[] }).content ?? []).map((c) => c.text ?? "").join(" ");

describeWithRedis("tasks on replicas sharing one Redis", (url) => {
  const prefix = uniquePrefix("tasks-e2e");
  const fixture = (...extra: string[]) => ({
    command: process.execPath,
    args: ["--import", "tsx", "test/fixtures/conformance-server.ts", ...extra],
    cwd: ROOT,
  });
  /** Replicas A and B stay up; C is killed in the last test. */
  let replicas: RunningGateway[] = [];
  let doomed: RunningGateway | undefined;
  let httpFixture: { child: ChildProcess; url: string } | undefined;
  const closers: { close(): Promise<void> }[] = [];
  const urlOf = (i: number) => (i === 2 ? (doomed as RunningGateway) : (replicas[i] as RunningGateway)).url;
  const v2 = async (i: number, token = ALICE) => {
    const client = await connectV2(urlOf(i), token);
    closers.push(client);
    return client;
  };
  const v1 = async (i: number, token = ALICE) => {
    const client = await connectV1(urlOf(i), token);
    closers.push(client);
    return client;
  };

  before(async () => {
    // One HTTP server that every replica reaches: any of them may ask it about a task.
    httpFixture = await startFixture(AbortSignal.timeout(60_000));
    const configPath = writeConfig({
      mcpServers: {
        fx: flakyServer(),
        // Over stdio each replica spawns its own: only the starting replica's process knows a task.
        tk: fixture(),
        // The same server speaking only the 2025 protocol: the gateway's connection to it is 2025-era.
        tl: fixture("--legacy"),
        th: { url: httpFixture.url },
        // A 2025-11-25 server with tasks of that era (`task` param, tasks/get, tasks/result).
        t5: {
          command: process.execPath,
          args: ["--import", "tsx", "test/fixtures/tasks-2025-server.ts"],
          cwd: ROOT,
        },
      },
      store: { type: "redis", url, keyPrefix: prefix, commandTimeoutMs: 10_000 },
      auth: {
        apiKeys: [
          { id: "alice", sha256: sha256(ALICE), roles: ["user"] },
          { id: "bob", sha256: sha256(BOB), roles: ["user"] },
        ],
      },
      // Twelve server processes start at once on a loaded machine: calls wait for them to be up.
      gateway: { startupTimeoutMs: 55_000, startupWaitMs: 55_000, tasks: { pollIntervalMs: 100 } },
    });
    [replicas, doomed] = await Promise.all([
      Promise.all([0, 1].map(() => startHttpGateway(configPath))),
      startHttpGateway(configPath),
    ]);
  });

  after(async () => {
    await Promise.allSettled(closers.map((c) => c.close()));
    const codes = await Promise.all(replicas.map((r) => r.stop()));
    await doomed?.stop("SIGKILL");
    if (httpFixture) await stopChild(httpFixture.child);
    await deleteByPrefix(url, prefix);
    assert.deepEqual(codes, [0, 0], "every replica exits 0 on SIGTERM");
  });

  test("v2 (2026-07-28): a server's task started on replica A is polled to its result on replica B", async () => {
    const [onA, onB] = [await v2(0), await v2(1)];
    const created = await startV2(onA, "tk__slow_compute", { seconds: 1, label: "cross" });
    assert.equal(created.resultType, "task");
    assert.equal(created.status, "working");
    assert.match(String(created.taskId), /^[A-Za-z0-9_-]{32}$/, "a 192-bit random id");
    const done = await untilDone(() => getV2(onB, String(created.taskId)), "the task to finish, seen from B");
    assert.equal(done.status, "completed");
    assert.equal(textOf(done.result), "slow_compute (cross) worked for 1 s");
    // A tool that is not a task answers directly, for a client that takes tasks too: the server decides.
    const greeting = (await onB.callTool({ name: "tk__greet", arguments: { name: "B" } })) as Json;
    assert.equal(textOf(greeting), "Hello, B!");
    // So does a server without tasks.
    const slept = (await onB.callTool({ name: "fx__sleep", arguments: { ms: 10 } })) as Json;
    assert.equal(textOf(slept), "slept 10 ms");
  });

  test("v2: a task's questions are answered with tasks/update on the other replica", async () => {
    const [onA, onB] = [await v2(0), await v2(1)];
    const created = await startV2(onA, "tk__confirm_delete", { filename: "notes.txt" });
    const taskId = String(created.taskId);
    let asked: Json = {};
    await eventually(
      async () => {
        asked = await getV2(onB, taskId);
        return asked.status === "input_required" && asked.inputRequests !== undefined;
      },
      15_000,
      "the task to ask its question",
    );
    const keys = Object.keys((asked.inputRequests as Json | undefined) ?? {});
    assert.equal(keys.length, 1, JSON.stringify(asked));
    const answers = Object.fromEntries(
      keys.map((k) => [k, { action: "accept", content: { confirm: true } }]),
    );
    const ack = await sendV2(onB, "tasks/update", { taskId, inputResponses: answers });
    assert.equal(ack.resultType, "complete");
    assert.ok(!("status" in ack), "an empty ack");
    const done = await untilDone(() => getV2(onA, taskId), "the answered task to finish");
    assert.equal(textOf(done.result), "Deleted notes.txt");
  });

  test("v2: a cancel that lands on the other replica cancels the task", async () => {
    const [onA, onB] = [await v2(0), await v2(1)];
    const created = await startV2(onA, "tk__slow_compute", { seconds: 60 });
    const ack = await cancelV2(onB, String(created.taskId));
    assert.equal(ack.resultType, "complete");
    assert.equal((await getV2(onA, String(created.taskId))).status, "cancelled");
  });

  test("another principal cannot see, poll or cancel the task: it is unknown to them", async () => {
    const alice = await v2(0);
    const created = await startV2(alice, "tk__slow_compute", { seconds: 2 });
    const taskId = String(created.taskId);
    const bob = await v2(1, BOB);
    await assert.rejects(getV2(bob, taskId), (e: { code?: number }) => e.code === -32602);
    await assert.rejects(cancelV2(bob, taskId), (e: { code?: number }) => e.code === -32602);
    await assert.rejects(getV2(bob, "no-such-task"), (e: { code?: number }) => e.code === -32602);
    const bobV1 = await v1(0, BOB);
    await assert.rejects(getV1(bobV1, taskId), (e: { code?: number }) => e.code === -32602);
    const listed = await bobV1.request({ method: "tasks/list", params: {} }, ListTasksResultSchema, TIMEOUT);
    assert.ok(!listed.tasks.some((t) => t.taskId === taskId), "bob's list does not hold alice's task");
    assert.equal((await untilDone(() => getV2(alice, taskId), "alice's task")).status, "completed");
  });

  test("v1 (2025-11-25): a call to a server without tasks runs as the gateway's task, read on replica B", async () => {
    const [onA, onB] = [await v1(0), await v1(1)];
    const { task } = await startV1(onA, "fx__sleep", { ms: 300 });
    assert.equal(task.status, "working");
    const done = await untilDone(() => getV1(onB, task.taskId), "the gateway-run task, seen from B");
    assert.equal(done.status, "completed");
    const result = await onB.request(
      { method: "tasks/result", params: { taskId: task.taskId } },
      CallToolResultSchema,
      TIMEOUT,
    );
    assert.equal(textOf(result), "slept 300 ms");
    const listed = await onB.request({ method: "tasks/list", params: {} }, ListTasksResultSchema, TIMEOUT);
    assert.ok(
      listed.tasks.some((t) => t.taskId === task.taskId),
      "alice's list on B holds it",
    );
  });

  test("v1: one 2025-era session behind a round-robin balancer starts, polls and reads a task on both replicas", async () => {
    const proxy = await startRoundRobinProxy(replicas.map((r) => new URL(r.url).origin));
    closers.push(proxy);
    const client = await connectV1(`${proxy.url}${new URL(urlOf(0)).pathname}`, ALICE);
    closers.push(client);
    const { task } = await startV1(client, "fx__sleep", { ms: 300 });
    const done = await untilDone(() => getV1(client, task.taskId), "the task, through the balancer");
    assert.equal(done.status, "completed");
    const result = await client.request(
      { method: "tasks/result", params: { taskId: task.taskId } },
      CallToolResultSchema,
      TIMEOUT,
    );
    assert.equal(textOf(result), "slept 300 ms");
    // The session's requests (initialize, the call, the polls, the result) went to both replicas.
    const used = new Set(proxy.served.filter((s) => s.method === "POST").map((s) => s.upstream));
    assert.deepEqual([...used].sort(), [0, 1], JSON.stringify(proxy.served));
  });

  test("v1: a cancel on replica B aborts the call replica A runs", async () => {
    const [onA, onB] = [await v1(0), await v1(1)];
    const cancelledBefore = await sleepCancellations(onA);
    const { task } = await startV1(onA, "fx__sleep", { ms: 60_000 });
    const cancelled = await onB.request(
      { method: "tasks/cancel", params: { taskId: task.taskId } },
      CancelTaskResultSchema,
      TIMEOUT,
    );
    assert.equal(cancelled.status, "cancelled");
    await eventually(
      async () => (await sleepCancellations(onA)) > cancelledBefore,
      15_000,
      "A's server to see the cancel",
    );
    assert.equal((await getV1(onA, task.taskId)).status, "cancelled");
  });

  test("v1: a call to a server with tasks (2026-07-28 extension) runs as the server's task, across eras", async () => {
    const [onA, onB] = [await v1(0), await v1(1)];
    const { task } = await startV1(onA, "tk__slow_compute", { seconds: 1, label: "v1" });
    const done = await untilDone(
      () => getV1(onB, task.taskId),
      "the server's task, seen from B through 2025 methods",
    );
    assert.equal(done.status, "completed");
    assert.equal(done.ttl, 3_600_000, "2025 field names: ttl");
    const result = await onB.request(
      { method: "tasks/result", params: { taskId: task.taskId } },
      CallToolResultSchema,
      TIMEOUT,
    );
    assert.equal(textOf(result), "slow_compute (v1) worked for 1 s");
  });
  test("v2: a server on a 2025-era connection that offers the extension runs the call as its task", async () => {
    const [onA, onB] = [await v2(0), await v2(1)];
    const created = await startV2(onA, "tl__slow_compute", { seconds: 1, label: "legacy" });
    const done = await untilDone(() => getV2(onB, String(created.taskId)), "the 2025-era server's task");
    assert.equal(textOf(done.result), "slow_compute (legacy) worked for 1 s");
  });

  test("a 2025-11-25 server's tasks, for clients of both eras", async () => {
    const [v2OnA, v2OnB] = [await v2(0), await v2(1)];
    const created = await startV2(v2OnA, "t5__countdown", { seconds: 1 });
    const done = await untilDone(() => getV2(v2OnB, String(created.taskId)), "the 2025 server's task (v2)");
    assert.equal(done.status, "completed");
    assert.equal(textOf(done.result), "counted down 1 s");
    const [v1OnA, v1OnB] = [await v1(0), await v1(1)];
    const { task } = await startV1(v1OnA, "t5__countdown", { seconds: 1 });
    await untilDone(() => getV1(v1OnB, task.taskId), "the 2025 server's task (v1)");
    const result = await v1OnB.request(
      { method: "tasks/result", params: { taskId: task.taskId } },
      CallToolResultSchema,
      TIMEOUT,
    );
    assert.equal(textOf(result), "counted down 1 s");
    const long = await startV2(v2OnA, "t5__countdown", { seconds: 60 });
    await cancelV2(v2OnB, String(long.taskId));
    assert.equal((await getV2(v2OnA, String(long.taskId))).status, "cancelled");
  });

  test("a task on a server every replica reaches over HTTP outlives the replica that started it", async () => {
    const onC = await v2(2);
    const created = await startV2(onC, "th__slow_compute", { seconds: 2, label: "outlived" });
    await (doomed as RunningGateway).stop("SIGKILL");
    const onB = await v2(1);
    const done = await untilDone(
      () => getV2(onB, String(created.taskId)),
      "the task, after its replica died",
    );
    assert.equal(done.status, "completed");
    assert.equal(textOf(done.result), "slow_compute (outlived) worked for 2 s");
  });
});

/** How many `sleep` calls the replica's own flaky server saw cancelled. */
async function sleepCancellations(client: ClientV1): Promise<number> {
  const stats = await client.callTool({ name: "fx__stats", arguments: {} });
  return (stats.structuredContent as { cancelled?: Record<string, number> }).cancelled?.sleep ?? 0;
}

describe("tasks over stdio, with the memory store", () => {
  test("a 2025-11-25 client's task call is answered with a task and read back", async () => {
    const configPath = writeConfig({
      mcpServers: { fx: flakyServer() },
      gateway: { tasks: { pollIntervalMs: 50 } },
    });
    const client = new ClientV1({ name: "tasks-e2e-stdio", version: "1" });
    await client.connect(new StdioV1({ ...stdioGatewayCommand(configPath), stderr: "ignore" }));
    try {
      const { task } = await startV1(client, "fx__sleep", { ms: 100 });
      assert.equal(task.status, "working");
      const result = await client.request(
        { method: "tasks/result", params: { taskId: task.taskId } },
        CallToolResultSchema,
        TIMEOUT,
      );
      assert.equal(textOf(result), "slept 100 ms");
      assert.equal((await getV1(client, task.taskId)).status, "completed");
    } finally {
      await client.close();
    }
  });
});
