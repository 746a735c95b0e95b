/**
 * The gateway's transport to stdio servers: whole messages out of any chunking, garbage on stdout
 * reported and skipped (the next message still arrives), writes of one tick in one batch, and none
 * of what the SDK's version negotiation reads to spawn a probe sibling (one process per connection).
 */
import assert from "node:assert/strict";
import { test } from "node:test";
import type { JSONRPCMessage } from "@modelcontextprotocol/client";
import { BackendStdioTransport } from "../../../src/backends/mcp/stdio-client-transport.ts";

/** A child that prints a fixed byte sequence in pieces, then echoes each stdin line back. */
const SCRIPT = `
const pieces = JSON.parse(process.argv[1]);
let i = 0;
const next = () => { if (i < pieces.length) { process.stdout.write(pieces[i++]); setTimeout(next, 5); } };
next();
let reads = 0;
process.stdin.on("data", (d) => { reads++; process.stdout.write(d); process.stderr.write("reads=" + reads + "\\n"); });
`;

function transportFor(pieces: string[]) {
  return new BackendStdioTransport({
    command: process.execPath,
    args: ["-e", SCRIPT, JSON.stringify(pieces)],
  });
}

test("messages split across chunks arrive whole; garbage lines are reported and skipped", async () => {
  const transport = transportFor([
    '{"jsonrpc":"2.0","method":"a"',
    ',"params":{"x":1}}\nnot json at all\n{"jsonrpc":"2.0","method":"b"}\n',
    '[1,2]\n{"jsonrpc":"2.0","method":"ü"}\n',
  ]);
  const messages: JSONRPCMessage[] = [];
  const errors: string[] = [];
  const all = new Promise<void>((resolve) => {
    transport.onmessage = (m) => {
      messages.push(m);
      if (messages.length === 3) resolve();
    };
  });
  transport.onerror = (e) => errors.push(e.message);
  await transport.start();
  try {
    await all;
  } finally {
    await transport.close();
  }
  assert.deepEqual(
    messages.map((m) => (m as { method: string }).method),
    ["a", "b", "ü"],
  );
  assert.equal(errors.length, 2);
  assert.match(errors[0] ?? "", /not JSON-RPC \(dropped\): not json at all/);
  assert.match(errors[1] ?? "", /not JSON-RPC 2\.0/);
});

test("messages sent in one tick leave in one write; stderr is readable from construction", async () => {
  const transport = transportFor([]);
  const stderr: string[] = [];
  const firstRead = new Promise<void>((resolve) =>
    transport.stderr?.on("data", (d: Buffer) => {
      stderr.push(d.toString());
      resolve();
    }),
  );
  const echoed: JSONRPCMessage[] = [];
  const back = new Promise<void>((resolve) => {
    transport.onmessage = (m) => {
      echoed.push(m);
      if (echoed.length === 5) resolve();
    };
  });
  await transport.start();
  for (let id = 1; id <= 5; id++) void transport.send({ jsonrpc: "2.0", id, method: "ping" });
  await back;
  await firstRead;
  assert.deepEqual(
    echoed.map((m) => (m as { id: number }).id),
    [1, 2, 3, 4, 5],
  );
  assert.match(stderr.join(""), /^reads=1\n/, "the child read the five messages in one chunk");
  assert.equal(transport.received, 5);
  // What the SDK reads to probe on a disposable sibling process instead of this one.
  assert.equal("_serverParams" in transport, false);
  assert.equal(Object.hasOwn(BackendStdioTransport.prototype, "_dispose"), false);
  await transport.close();
  assert.equal(transport.exited, true, "close resolves once the process has exited");
  await assert.rejects(transport.send({ jsonrpc: "2.0", id: 9, method: "ping" }), /Not connected/);
});

test("close stops a process that ignores the end of its stdin and SIGTERM, and resolves once it exited", async () => {
  const transport = new BackendStdioTransport({
    command: process.execPath,
    args: [
      "-e",
      'process.on("SIGTERM", () => {}); process.stdin.resume(); setInterval(() => {}, 1000); console.error("up")',
    ],
  });
  const up = new Promise<void>((resolve) => transport.stderr?.once("data", () => resolve()));
  await transport.start();
  await up;
  const pid = transport.pid as number;
  const started = performance.now();
  await transport.close({ graceful: false });
  const ms = performance.now() - started;
  assert.equal(transport.exited, true);
  assert.throws(() => process.kill(pid, 0), /ESRCH/, "the process is gone");
  assert.ok(ms < 5_000, `SIGKILL follows SIGTERM within its grace (${Math.round(ms)} ms)`);
});
