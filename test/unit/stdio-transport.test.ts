import assert from "node:assert/strict";
import { PassThrough } from "node:stream";
import { test } from "node:test";
import { backoffDelay } from "../../src/backends/reconnect.ts";
import { GatewayStdioTransport } from "../../src/server/stdio/transport.ts";

function pipes() {
  const stdin = new PassThrough();
  const stdout = new PassThrough();
  const lines: unknown[] = [];
  let pending = "";
  stdout.on("data", (chunk: Buffer) => {
    pending += chunk.toString("utf8");
    let newline = pending.indexOf("\n");
    while (newline !== -1) {
      lines.push(JSON.parse(pending.slice(0, newline)));
      pending = pending.slice(newline + 1);
      newline = pending.indexOf("\n");
    }
  });
  return { stdin, stdout, lines };
}

const tick = () => new Promise((resolve) => setImmediate(resolve));

test("malformed JSON gets a parse error and the transport keeps reading", async () => {
  const { stdin, stdout, lines } = pipes();
  const transport = new GatewayStdioTransport(stdin, stdout);
  const received: unknown[] = [];
  transport.onmessage = (m) => received.push(m);
  await transport.start();
  stdin.write('{"jsonrpc":"2.0","id":1,\n');
  stdin.write('{"jsonrpc":"1.0","id":7,"method":"ping"}\n');
  stdin.write('{"jsonrpc":"2.0","id":2,"method":"ping"}\n');
  await tick();
  await tick();
  assert.equal(received.length, 1, "only the valid message reaches the protocol layer");
  assert.deepEqual((lines[0] as { error: { code: number } }).error.code, -32700);
  assert.deepEqual(lines[1], {
    jsonrpc: "2.0",
    id: 7,
    error: { code: -32600, message: 'Invalid request: "jsonrpc" must be "2.0".' },
  });
  await transport.close();
});

test("a message split across chunks is reassembled; CRLF is accepted", async () => {
  const { stdin, stdout } = pipes();
  const transport = new GatewayStdioTransport(stdin, stdout);
  const received: unknown[] = [];
  transport.onmessage = (m) => received.push(m);
  await transport.start();
  stdin.write('{"jsonrpc":"2.0",');
  stdin.write('"method":"notifications/initialized"}\r\n');
  await tick();
  assert.deepEqual(received, [{ jsonrpc: "2.0", method: "notifications/initialized" }]);
  await transport.close();
});

test("the fast path sees messages first and can claim them", async () => {
  const { stdin, stdout } = pipes();
  const transport = new GatewayStdioTransport(stdin, stdout);
  const sdk: unknown[] = [];
  transport.onmessage = (m) => sdk.push(m);
  transport.fastPath = (m) => m.method === "tools/call";
  await transport.start();
  stdin.write('{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"x"}}\n');
  stdin.write('{"jsonrpc":"2.0","id":2,"method":"tools/list"}\n');
  await tick();
  assert.deepEqual(sdk, [{ jsonrpc: "2.0", id: 2, method: "tools/list" }]);
  await transport.close();
});

test("writes in one tick leave together, in order", async () => {
  const { stdin, stdout, lines } = pipes();
  const transport = new GatewayStdioTransport(stdin, stdout);
  await transport.start();
  for (let i = 0; i < 5; i++) transport.write({ jsonrpc: "2.0", method: "n", params: { i } });
  await tick();
  assert.deepEqual(
    lines.map((l) => (l as { params: { i: number } }).params.i),
    [0, 1, 2, 3, 4],
  );
  await transport.close();
});

test("closing on end of input tells the owner", async () => {
  const { stdin, stdout } = pipes();
  const transport = new GatewayStdioTransport(stdin, stdout);
  let closed = 0;
  transport.onclose = () => closed++;
  await transport.start();
  stdin.end();
  await tick();
  assert.equal(closed, 1);
});

test("restart backoff grows exponentially, is capped, and is jittered within [step/2, step]", () => {
  const low = () => 0;
  const high = () => 0.999_999;
  assert.equal(backoffDelay(0, 500, 30_000, low), 250);
  assert.ok(backoffDelay(0, 500, 30_000, high) < 500);
  assert.equal(backoffDelay(3, 500, 30_000, low), 2_000);
  assert.equal(backoffDelay(20, 500, 30_000, low), 15_000, "capped at maxDelay");
  assert.ok(backoffDelay(20, 500, 30_000, high) <= 30_000);
});
