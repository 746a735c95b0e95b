import assert from "node:assert/strict";
import { describe, test } from "node:test";
import { pino } from "pino";
import { CommitQueue, type CommitQueueOptions } from "../../../src/audit/record.ts";
import { eventually } from "../../support/gateway-process.ts";

function capturingLogger() {
  const lines: Record<string, unknown>[] = [];
  const logger = pino(
    { level: "trace" },
    { write: (line: string) => void lines.push(JSON.parse(line) as Record<string, unknown>) },
  );
  return { logger, lines };
}

interface Deferred {
  readonly promise: Promise<void>;
  resolve(): void;
  reject(error: Error): void;
}

function deferred(): Deferred {
  let resolve!: () => void;
  let reject!: (error: Error) => void;
  const promise = new Promise<void>((res, rej) => {
    resolve = res;
    reject = rej;
  });
  return { promise, resolve, reject };
}

/** A commit function whose every call the test settles by hand. */
function manualCommit() {
  const calls: { items: readonly string[]; done: Deferred }[] = [];
  const commit = (items: readonly string[]) => {
    const done = deferred();
    calls.push({ items: [...items], done });
    return done.promise;
  };
  return { calls, commit };
}

function queue(overrides: Partial<CommitQueueOptions<string>> & Pick<CommitQueueOptions<string>, "commit">) {
  return new CommitQueue<string>({
    name: "test",
    durability: "sync",
    flushIntervalMs: 60_000,
    maxBatch: 100,
    maxPending: 1_000,
    logger: pino({ level: "silent" }),
    retryMinMs: 10,
    retryMaxMs: 20,
    ...overrides,
  });
}

/** Whether a promise has settled, without waiting for it. */
async function settled(promise: Promise<unknown>): Promise<boolean> {
  const marker = Symbol("pending");
  const result = await Promise.race([
    promise.then(
      () => "done",
      () => "done",
    ),
    Promise.resolve(marker),
  ]);
  return result !== marker;
}

describe("CommitQueue, sync mode (group commit)", () => {
  test("writes that arrive during a commit share the next one, and each resolves with its own", async () => {
    const { calls, commit } = manualCommit();
    const q = queue({ commit });
    const first = q.add("a");
    assert.deepEqual(
      calls.map((c) => c.items),
      [["a"]],
    );
    const rest = ["b", "c", "d"].map((item) => q.add(item));
    // Still one commit in flight: b, c and d wait for it to end.
    assert.equal(calls.length, 1);
    assert.equal(await settled(first), false);

    calls[0]?.done.resolve();
    await first;
    await eventually(() => calls.length === 2, 2_000, "the second round");
    assert.deepEqual(calls[1]?.items, ["b", "c", "d"]);
    for (const promise of rest) assert.equal(await settled(promise), false);
    calls[1]?.done.resolve();
    await Promise.all(rest);
    assert.equal(q.health().committed, 4);
    await q.close();
  });

  test("a failed commit rejects its writers and keeps the records for the next round, in order", async () => {
    const { calls, commit } = manualCommit();
    const { logger, lines } = capturingLogger();
    // A long backoff, so that only the next writer starts the next round.
    const q = queue({ commit, logger, retryMinMs: 60_000, retryMaxMs: 60_000 });
    const first = q.add("a");
    const failed = assert.rejects(first, /audit sink test could not commit the record: disk full/);
    calls[0]?.done.reject(new Error("disk full"));
    await failed;
    assert.equal(q.health().consecutiveFailures, 1);
    assert.equal(q.health().pending, 1);
    assert.ok(lines.some((line) => line.msg === "audit sink commit failed; records are kept and retried"));

    // The next writer's round carries the kept record first.
    const second = q.add("b");
    await eventually(() => calls.length >= 2, 2_000, "a retry");
    assert.deepEqual(calls[1]?.items, ["a", "b"]);
    calls[1]?.done.resolve();
    await second;
    assert.equal(q.health().pending, 0);
    assert.equal(q.health().consecutiveFailures, 0);
    await q.close();
  });

  test("an outage under sync load is logged once, not once per call", async () => {
    const { logger, lines } = capturingLogger();
    const commit = async () => {
      throw new Error("connection refused");
    };
    const q = queue({ commit, logger, retryMinMs: 60_000, retryMaxMs: 60_000 });
    for (let i = 0; i < 50; i++) await assert.rejects(q.add(`r${i}`), /connection refused/);
    assert.equal(q.health().consecutiveFailures, 50);
    const reports = lines.filter(
      (line) => line.msg === "audit sink commit failed; records are kept and retried",
    );
    assert.equal(reports.length, 1);
    assert.equal(reports[0]?.level, 50);
    assert.equal(reports[0]?.failures, 1);
    await q.close();
  });

  test("beyond maxPending the oldest records are dropped, rejected and reported loudly", async () => {
    const { calls, commit } = manualCommit();
    const { logger, lines } = capturingLogger();
    const q = queue({ commit, logger, maxPending: 2 });
    const inFlight = q.add("a");
    const b = q.add("b");
    const c = q.add("c");
    const d = q.add("d");
    await assert.rejects(b, /dropped the record: more than 2 are waiting/);
    const report = lines.find((line) => String(line.msg).startsWith("AUDIT RECORDS DROPPED"));
    assert.ok(report);
    assert.equal(report.level, 50);
    assert.equal(q.health().dropped, 1);
    calls[0]?.done.resolve();
    await inFlight;
    await eventually(() => calls.length === 2, 2_000, "the second round");
    assert.deepEqual(calls[1]?.items, ["c", "d"]);
    calls[1]?.done.resolve();
    await Promise.all([c, d]);
    await q.close();
  });

  test("after close, writes reject and pending records are reported lost", async () => {
    const { logger, lines } = capturingLogger();
    const q = queue({ commit: () => Promise.reject(new Error("unreachable")), logger });
    await assert.rejects(q.add("a"), /unreachable/);
    await q.close();
    assert.ok(
      lines.some((line) => line.msg === "audit records lost at shutdown: the sink could not be reached"),
    );
    await assert.rejects(q.add("b"), /is closed/);
  });
});

describe("CommitQueue, batched mode", () => {
  test("writes resolve at once; records are committed on the interval", async () => {
    const committed: string[][] = [];
    const q = queue({
      durability: "batched",
      flushIntervalMs: 20,
      commit: async (items) => void committed.push([...items]),
    });
    await q.add("a");
    await q.add("b");
    assert.deepEqual(committed, []);
    await eventually(() => committed.length > 0, 5_000, "the interval flush");
    assert.deepEqual(committed.flat(), ["a", "b"]);
    await q.close();
  });

  test("a full batch is committed without waiting for the interval", async () => {
    const committed: string[][] = [];
    const q = queue({
      durability: "batched",
      maxBatch: 3,
      commit: async (items) => void committed.push([...items]),
    });
    for (const item of ["a", "b", "c", "d"]) await q.add(item);
    await eventually(() => committed.length === 1, 2_000, "the early flush");
    assert.deepEqual(committed[0], ["a", "b", "c"]);
    await q.close();
    assert.deepEqual(committed.flat(), ["a", "b", "c", "d"]);
  });

  test("failures are retried with backoff until the sink recovers", async () => {
    let failuresLeft = 2;
    const committed: string[] = [];
    const q = queue({
      durability: "batched",
      flushIntervalMs: 10,
      commit: async (items) => {
        if (failuresLeft-- > 0) throw new Error("connection refused");
        committed.push(...items);
      },
    });
    await q.add("a");
    await eventually(() => committed.length === 1, 5_000, "the retried commit");
    assert.deepEqual(committed, ["a"]);
    assert.equal(q.health().consecutiveFailures, 0);
    await q.close();
  });
});
