/**
 * The gateway-held statement limit (StatementGuard) with fake timers: a statement that outlives the
 * limit is cancelled on the server a grace after the limit, and its connection is cut if the cancel
 * does not end it; a call cancelled by its caller is stopped the same way.
 */
import assert from "node:assert/strict";
import { afterEach, beforeEach, describe, mock, test } from "node:test";
import {
  ABANDON_AFTER_MS,
  DEADLINE_GRACE_MS,
  StatementGuard,
  StatementTimedOut,
} from "../../../src/backends/postgres/deadline.ts";

/** Lets promise callbacks run (setImmediate is not faked). */
async function flush(): Promise<void> {
  for (let i = 0; i < 5; i++) await new Promise((resolve) => setImmediate(resolve));
}

/** A connection whose statement ends only when the test says, or when it is cut. */
function connection(options: { cancelWorks: boolean }) {
  let fail!: (error: Error) => void;
  const log: string[] = [];
  const statement = () =>
    new Promise<string>((_, reject) => {
      fail = reject;
    });
  return {
    log,
    statement,
    stoppable: {
      cancel: async () => {
        log.push("cancel");
        if (options.cancelWorks) fail(Object.assign(new Error("canceling statement"), { code: "57014" }));
      },
      abandon: () => {
        log.push("abandon");
        fail(new Error("Connection terminated"));
      },
    },
  };
}

describe("StatementGuard", () => {
  beforeEach(() => mock.timers.enable({ apis: ["setTimeout"] }));
  afterEach(() => mock.timers.reset());

  test("a statement past the limit is cancelled a grace after it, and fails as timed out", async () => {
    const db = connection({ cancelWorks: true });
    const guard = new StatementGuard(db.stoppable, 1_000);
    const running = guard.run(db.statement);
    mock.timers.tick(1_000 + DEADLINE_GRACE_MS - 1);
    await flush();
    assert.deepEqual(db.log, [], "the server's own timeout gets the first chance");
    mock.timers.tick(1);
    await assert.rejects(running, (error: unknown) => {
      assert.ok(error instanceof StatementTimedOut);
      assert.equal(error.limitMs, 1_000);
      return true;
    });
    guard.dispose();
    assert.deepEqual(db.log, ["cancel"]);
    assert.equal(guard.stopped, "deadline");
  });

  test("when the cancel does not end it, the connection is cut", async () => {
    const db = connection({ cancelWorks: false });
    const guard = new StatementGuard(db.stoppable, 1_000);
    const running = guard.run(db.statement);
    mock.timers.tick(1_000 + DEADLINE_GRACE_MS);
    await flush();
    assert.deepEqual(db.log, ["cancel"]);
    mock.timers.tick(ABANDON_AFTER_MS);
    await assert.rejects(running, StatementTimedOut);
    assert.deepEqual(db.log, ["cancel", "abandon"]);
  });

  test("a statement within the limit runs untouched, and the next one gets a limit of its own", async () => {
    const guard = new StatementGuard(
      { cancel: async () => assert.fail("no cancel"), abandon: () => assert.fail() },
      1_000,
    );
    for (let i = 0; i < 3; i++) {
      const running = guard.run(() => new Promise<number>((resolve) => setTimeout(() => resolve(i), 900)));
      mock.timers.tick(900);
      assert.equal(await running, i);
    }
    assert.equal(guard.stopped, undefined);
  });

  test("a call stopped by its caller is cancelled at once, and cut if that does not end it", async () => {
    const db = connection({ cancelWorks: false });
    const guard = new StatementGuard(db.stoppable, undefined);
    const running = guard.run(db.statement);
    guard.stop("aborted");
    guard.stop("aborted");
    await flush();
    assert.deepEqual(db.log, ["cancel"], "one cancel, however often it is asked");
    mock.timers.tick(ABANDON_AFTER_MS);
    await assert.rejects(running, { message: "Connection terminated" });
    assert.equal(guard.stopped, "aborted");
  });

  test("once the statements are over, nothing is cut", async () => {
    const db = connection({ cancelWorks: true });
    const guard = new StatementGuard(db.stoppable, 1_000);
    const running = guard.run(db.statement);
    guard.stop("aborted");
    await assert.rejects(running);
    guard.dispose();
    mock.timers.tick(ABANDON_AFTER_MS);
    assert.deepEqual(db.log, ["cancel"]);
  });
});
