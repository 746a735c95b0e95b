import assert from "node:assert/strict";
import { describe, test } from "node:test";
import { createMemoryStore } from "../../../src/stores/memory.ts";
import { TaskRecords } from "../../../src/tasks/records.ts";

const ALICE = { id: "alice", roles: [] };
const BOB = { id: "bob", roles: [] };

function records(resultTtlMs = 60_000) {
  let now = 1_000_000;
  const store = createMemoryStore({ now: () => now });
  const tasks = new TaskRecords(
    store,
    () => ({ resultTtlMs, pollIntervalMs: 500 }),
    () => now,
  );
  return { tasks, advance: (ms: number) => (now += ms) };
}

const fields = { server: "jobs", tool: "build", runner: "gateway" as const, replica: "r1" };

describe("task records", () => {
  test("a new record is working, owned by its principal, with an unguessable id", async () => {
    const { tasks } = records();
    const a = await tasks.create(ALICE, fields);
    const b = await tasks.create(ALICE, fields);
    assert.equal(a.status, "working");
    assert.equal(a.owner, "alice");
    assert.equal(a.ttlMs, 60_000);
    assert.equal(a.pollIntervalMs, 500);
    assert.match(a.taskId, /^[A-Za-z0-9_-]{32}$/, "192 random bits, base64url");
    assert.notEqual(a.taskId, b.taskId);
    assert.deepEqual(await tasks.get(a.taskId, ALICE), a);
  });

  test("another principal gets the same answer as for a task that does not exist", async () => {
    const { tasks } = records();
    const record = await tasks.create(ALICE, fields);
    assert.equal(await tasks.get(record.taskId, BOB), undefined);
    assert.equal(await tasks.get("no-such-task", BOB), undefined);
    assert.deepEqual(await tasks.list(BOB), []);
    assert.deepEqual(
      (await tasks.list(ALICE)).map((r) => r.taskId),
      [record.taskId],
    );
  });

  test("a record expires resultTtlMs after its last change", async () => {
    const { tasks, advance } = records(10_000);
    const record = await tasks.create(ALICE, fields);
    advance(9_000);
    await tasks.update(record.taskId, { status: "completed", result: { content: [] } });
    advance(9_000);
    assert.equal((await tasks.get(record.taskId, ALICE))?.status, "completed", "kept: changed 9 s ago");
    advance(1_001);
    assert.equal(await tasks.get(record.taskId, ALICE), undefined, "gone 10 s after its last change");
  });

  test("status transitions: questions come and go; completed, failed and cancelled are final", async () => {
    const { tasks } = records();
    const { taskId } = await tasks.create(ALICE, fields);
    const asking = await tasks.update(taskId, { status: "input_required", inputRequests: { q: {} } });
    assert.deepEqual(asking?.inputRequests, { q: {} });
    const working = await tasks.update(taskId, { status: "working" });
    assert.equal(working?.inputRequests, undefined, "questions go with input_required");
    const cancelled = await tasks.update(taskId, { status: "cancelled" });
    assert.equal(cancelled?.status, "cancelled");
    const late = await tasks.update(taskId, { status: "completed", result: { content: [] } });
    assert.equal(late?.status, "cancelled", "a result after a cancel is dropped");
    assert.equal(late?.result, undefined);
  });

  test("a result only when completed, an error only when failed", async () => {
    const { tasks } = records();
    const one = await tasks.create(ALICE, fields);
    const failed = await tasks.update(one.taskId, {
      status: "failed",
      error: { code: -32603, message: "broke" },
      result: { content: [] },
    });
    assert.deepEqual(failed?.error, { code: -32603, message: "broke" });
    assert.equal(failed?.result, undefined);
    const two = await tasks.create(ALICE, fields);
    const done = await tasks.update(two.taskId, { status: "completed", result: { content: [] } });
    assert.deepEqual(done?.result, { content: [] });
    assert.equal(await tasks.update("no-such-task", { status: "completed" }), undefined);
  });
});
