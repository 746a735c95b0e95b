import assert from "node:assert/strict";
import { test } from "node:test";
import { ServerTracker } from "../../../src/console/servers.ts";
import type { Backend, BackendState } from "../../../src/core/types.ts";

function backend(name: string, state: BackendState, extra: Record<string, unknown> = {}): Backend {
  return { name, state, ...extra } as unknown as Backend;
}

test("uptime, restarts and the last error come from the state events, and outlive a recovery", () => {
  let now = 1_000;
  const a = backend("a", "up", { protocolVersion: "2026-07-28" });
  let list: Backend[] = [a, backend("b", "starting")];
  const tracker = new ServerTracker({
    backends: () => list,
    kindOf: () => "stdio",
    toolCounts: () => new Map([["a", 3]]),
    now: () => now,
  });
  let [rowA, rowB] = tracker.rows();
  assert.equal(rowA?.upSince, 1_000);
  assert.equal(rowA?.protocolVersion, "2026-07-28");
  assert.equal(rowA?.tools, 3);
  assert.equal(rowB?.upSince, undefined);
  assert.equal(rowB?.tools, 0);

  now = 5_000;
  (a as { state: BackendState }).state = "down";
  tracker.onState({ server: "a", state: "down", reason: "connection closed" });
  [rowA] = tracker.rows();
  assert.equal(rowA?.state, "down");
  assert.equal(rowA?.upSince, undefined);
  assert.equal(rowA?.protocolVersion, undefined);
  assert.deepEqual([rowA?.lastError, rowA?.lastErrorAt], ["connection closed", 5_000]);

  now = 9_000;
  (a as { state: BackendState }).state = "up";
  tracker.onState({ server: "a", state: "starting" });
  tracker.onState({ server: "a", state: "up" });
  [rowA] = tracker.rows();
  assert.equal(rowA?.restarts, 0, "down, starting, up: counted when up follows down directly");
  tracker.onState({ server: "a", state: "down", reason: "crashed" });
  tracker.onState({ server: "a", state: "up" });
  [rowA] = tracker.rows();
  assert.equal(rowA?.restarts, 1);
  assert.equal(rowA?.upSince, 9_000);
  assert.equal(rowA?.lastError, "crashed", "the last error stays after the server recovered");

  // A server a reload removed is forgotten; one added back under its name starts afresh.
  list = [backend("b", "up")];
  assert.deepEqual(
    tracker.rows().map((r) => r.name),
    ["b"],
  );
  list = [a];
  assert.equal(tracker.rows()[0]?.restarts, 0);
});
