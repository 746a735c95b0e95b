/**
 * An MCP server's `roots` in the config: what it is told when it asks for roots outside a tool call.
 * Empty by default; each root a `file://` URI with an optional name, as MCP requires.
 */
import assert from "node:assert/strict";
import { test } from "node:test";
import { parseConfig } from "../../src/config/index.ts";
import { GatewayError } from "../../src/core/errors.ts";

const load = (text: string) => parseConfig(text, { source: "test.yaml" });

test("roots: none by default, kept as written for stdio and remote servers", () => {
  const config = load(
    [
      "mcpServers:",
      "  local: { command: node }",
      "  files:",
      "    command: node",
      '    roots: [{ uri: "file:///srv/project", name: project }, { uri: "file:///srv/shared" }]',
      '  remote: { type: http, url: "https://example.com/mcp", roots: [{ uri: "file:///data" }] }',
    ].join("\n"),
  );
  assert.deepEqual(config.mcpServers.local?.roots, []);
  assert.deepEqual(config.mcpServers.files?.roots, [
    { uri: "file:///srv/project", name: "project" },
    { uri: "file:///srv/shared" },
  ]);
  assert.deepEqual(config.mcpServers.remote?.roots, [{ uri: "file:///data" }]);
});

test("a root that is not a file:// URI, or has an unknown key, is refused with its path", () => {
  let error: unknown;
  try {
    load(
      'mcpServers:\n  fs:\n    command: node\n    roots: [{ uri: "/srv/project" }, { uri: "file:///x", label: x }]\n',
    );
  } catch (caught) {
    error = caught;
  }
  assert.ok(error instanceof GatewayError, String(error));
  assert.equal(error.code, "config_invalid");
  assert.deepEqual(error.data.issues, [
    { path: "mcpServers.fs.roots[0].uri", message: 'a root is a file:// URI, e.g. "file:///srv/project"' },
    { path: "mcpServers.fs.roots[1].label", message: 'unknown key "label"' },
  ]);
});
