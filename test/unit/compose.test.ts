/** Pins the one ordering rule of policies: first listed = outermost, as the README's chain order says. */
import assert from "node:assert/strict";
import { test } from "node:test";
import { compose } from "../../src/core/compose.ts";
import type { CallHandler, CallToolResult, Policy } from "../../src/core/types.ts";
import { ANONYMOUS } from "../../src/core/types.ts";

const ctx = {
  requestId: "r",
  signal: new AbortController().signal,
  principal: ANONYMOUS,
  meta: {},
  notes: new Map<string, unknown>(),
};
const call = { server: "s", tool: "t", args: {} };
const ok: CallToolResult = { content: [] };

function recording(name: string, log: string[]): Policy {
  return (next) => async (c, x) => {
    log.push(`${name}:in`);
    const result = await next(c, x);
    log.push(`${name}:out`);
    return result;
  };
}

test("compose: the first policy is outermost, the terminal runs last, unwinding in reverse", async () => {
  const log: string[] = [];
  const terminal: CallHandler = async () => {
    log.push("terminal");
    return ok;
  };
  await compose([recording("a", log), recording("b", log), recording("c", log)], terminal)(call, ctx);
  assert.deepEqual(log, ["a:in", "b:in", "c:in", "terminal", "c:out", "b:out", "a:out"]);
});

test("compose: no policies is the terminal itself", () => {
  const terminal: CallHandler = async () => ok;
  assert.equal(compose([], terminal), terminal);
});

test("compose: a policy that short-circuits keeps inner policies and the terminal from running", async () => {
  const log: string[] = [];
  const shortCircuit: Policy = () => async () => {
    log.push("short");
    return { content: [{ type: "text", text: "cached" }] };
  };
  const terminal: CallHandler = async () => {
    log.push("terminal");
    return ok;
  };
  const result = await compose([recording("a", log), shortCircuit, recording("c", log)], terminal)(call, ctx);
  assert.deepEqual(log, ["a:in", "short", "a:out"]);
  assert.deepEqual(result.content, [{ type: "text", text: "cached" }]);
});

test("compose: each policy sees what the one outside it passed on", async () => {
  const seen: unknown[] = [];
  const addArg =
    (key: string): Policy =>
    (next) =>
    (c, x) =>
      next({ ...c, args: { ...c.args, [key]: true } }, x);
  const terminal: CallHandler = async (c) => {
    seen.push(Object.keys(c.args));
    return ok;
  };
  await compose([addArg("outer"), addArg("inner")], terminal)(call, ctx);
  assert.deepEqual(seen, [["outer", "inner"]]);
});
