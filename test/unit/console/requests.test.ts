import assert from "node:assert/strict";
import { test } from "node:test";
import { parseAuditQuery } from "../../../src/console/audit.ts";
import { parseTryRequest, tryTool } from "../../../src/console/try-call.ts";
import { GatewayError } from "../../../src/core/errors.ts";

test("the audit search's query becomes the reader's filter; a bad value is named", () => {
  const parsed = parseAuditQuery(
    new URLSearchParams({
      tool: "db__*",
      principal: "ops",
      outcome: "denied",
      since: "2026-01-02T03:04:05.000Z",
      until: "",
      limit: "20",
    }),
  );
  assert.deepEqual(parsed, {
    ok: true,
    filter: {
      tool: "db__*",
      principal: "ops",
      outcome: "denied",
      since: new Date("2026-01-02T03:04:05.000Z"),
      limit: 20,
    },
  });
  assert.deepEqual(parseAuditQuery(new URLSearchParams({ outcome: "fine" })), {
    ok: false,
    error: 'outcome "fine" is not one of ok, tool_error, error, denied, rate_limited, invalid',
  });
  assert.equal(parseAuditQuery(new URLSearchParams({ since: "yesterday" })).ok, false);
  assert.equal(parseAuditQuery(new URLSearchParams({ limit: "0" })).ok, false);
});

test("a call's body is a tool name and an object of arguments", () => {
  assert.deepEqual(parseTryRequest({ tool: "a__b" }), { tool: "a__b", arguments: {} });
  assert.match(String(parseTryRequest([])), /must be a JSON object/);
  assert.match(String(parseTryRequest({ tool: "" })), /"tool" must be/);
  assert.match(String(parseTryRequest({ tool: "a", arguments: [1] })), /"arguments" must be a JSON object/);
});

test("who answered: the backend, the cache or a fallback by _meta, the gateway for its own errors", async () => {
  const principal = { id: "ops", roles: ["admin"] };
  const answer = (meta?: Record<string, unknown>, isError?: boolean) =>
    tryTool(
      async () => ({ content: [], ...(meta ? { _meta: meta } : {}), ...(isError ? { isError } : {}) }),
      principal,
      {
        tool: "t",
        arguments: {},
      },
    );
  const sources = await Promise.all([
    answer(),
    answer({ "switchboard/source": "cache" }),
    answer({ "switchboard/source": "fallback:1:cache:stale" }),
    answer({ "switchboard/error": { code: "rate_limited" } }, true),
    answer(undefined, true),
  ]);
  assert.deepEqual(
    sources.map((s) => (s.ok ? s.source : "")),
    ["backend", "cache", "fallback:1:cache:stale", "gateway", "backend"],
  );
  const seen: unknown[] = [];
  const refused = await tryTool(
    async (name, args, options) => {
      seen.push(name, args, options.principal, options.transport);
      throw new GatewayError("unknown_tool", 'Tool "t" does not exist.');
    },
    principal,
    { tool: "t", arguments: { x: 1 } },
  );
  assert.deepEqual(seen, ["t", { x: 1 }, principal, "http"]);
  assert.equal(refused.ok, false);
  assert.equal(refused.ok ? "" : refused.code, "unknown_tool");
});
