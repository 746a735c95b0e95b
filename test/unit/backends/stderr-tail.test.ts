/**
 * What a crashed server's stderr contributes to the reason it went down: the line that names the
 * error, not the end of its stack trace; its last lines when none does.
 */
import assert from "node:assert/strict";
import { test } from "node:test";
import { StderrTail } from "../../../src/backends/mcp/transport.ts";

function tailOf(text: string): StderrTail {
  const tail = new StderrTail();
  for (const line of text.split("\n")) if (line.trim()) tail.add(line);
  return tail;
}

test("a Node.js crash: the line that names the error, however long the stack under it", () => {
  const tail = tailOf(`node:internal/modules/cjs/loader:1228
  throw err;
  ^

Error: Cannot find module 'left-pad'
Require stack:
- /srv/server/index.js
${"    at Module._resolveFilename (node:internal/modules/cjs/loader:1225:15)\n".repeat(12)}    at node:internal/main/run_main_module:28:49 {
  code: 'MODULE_NOT_FOUND',
  requireStack: [ '/srv/server/index.js' ]
}

Node.js v20.19.0`);
  assert.equal(
    tail.explain("connection closed"),
    "connection closed; its stderr said: Error: Cannot find module 'left-pad'",
  );
  assert.equal(tail.lines.at(-1), "Node.js v20.19.0", "the whole tail is kept for the log");
});

test("other runtimes' error lines are found too; the last one wins", () => {
  const cases: [string, string][] = [
    [
      "TypeError: Cannot read properties of null (reading 'x')\n    at f (a.js:1:1)",
      "TypeError: Cannot read",
    ],
    ["Error [ERR_MODULE_NOT_FOUND]: Cannot find package 'x'\n    at y", "Error [ERR_MODULE_NOT_FOUND]"],
    [
      "file:///a.mjs:3\nlet x = ;\n        ^\n\nSyntaxError: Unexpected token ';'\n    at z",
      "SyntaxError: Unexpected",
    ],
    [
      "Traceback (most recent call last):\n  File \"s.py\", line 1, in <module>\n    import nope\nModuleNotFoundError: No module named 'nope'",
      "ModuleNotFoundError: No module named",
    ],
    [
      "goroutine 1 [running]:\npanic: runtime error: index out of range\n\tmain.main()",
      "panic: runtime error",
    ],
    ["ValueError: first\nsomething\nKeyError: second\n  later", "KeyError: second"],
  ];
  for (const [stderr, expected] of cases) {
    assert.match(
      tailOf(stderr).explain("x"),
      new RegExp(`^x; its stderr said: ${escapeRegExp(expected)}`),
      stderr,
    );
  }
});

test("without an error line: the last three lines", () => {
  assert.equal(
    tailOf("starting\nloading config\nconfig missing: /etc/x.yaml\nexiting with 3").explain(
      "connection closed",
    ),
    "connection closed; its stderr ended with: loading config | config missing: /etc/x.yaml | exiting with 3",
  );
  assert.equal(new StderrTail().explain("connection closed"), "connection closed");
});

function escapeRegExp(text: string): string {
  return text.replace(/[.*+?^${}()|[\]\\]/g, "\\$&");
}
