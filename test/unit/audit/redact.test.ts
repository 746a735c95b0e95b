import assert from "node:assert/strict";
import { describe, test } from "node:test";
import type { AuditRecord } from "../../../src/audit/record.ts";
import { createRedactor, REDACTED } from "../../../src/audit/redact.ts";

const rules = [
  { tools: ["db__*"], arguments: ["password", "auth.token", "headers.*"] },
  { tools: ["api__call"], arguments: ["items.*.secret", "list.1"] },
];

describe("audit redaction", () => {
  test("redacts by path for matching tools only, and returns a new object", () => {
    const redactor = createRedactor({ rules });
    const args = {
      password: "pw",
      user: "bob",
      auth: { token: "t", scheme: "bearer" },
      headers: { Authorization: "x", Cookie: "y" },
    };
    const out = redactor.arguments("db__query", args);
    assert.deepEqual(out, {
      password: REDACTED,
      user: "bob",
      auth: { token: REDACTED, scheme: "bearer" },
      headers: { Authorization: REDACTED, Cookie: REDACTED },
    });
    // The caller's object is untouched.
    assert.equal(args.password, "pw");
    assert.equal(args.headers.Cookie, "y");
    assert.deepEqual(redactor.arguments("files__read", args), args);
  });

  test("paths reach into arrays with * and indexes, and never add keys", () => {
    const redactor = createRedactor({ rules });
    const out = redactor.arguments("api__call", {
      items: [{ secret: "a", keep: 1 }, { keep: 2 }, "not an object"],
      list: ["zero", "one", "two"],
    });
    assert.deepEqual(out, {
      items: [{ secret: REDACTED, keep: 1 }, { keep: 2 }, "not an object"],
      list: ["zero", REDACTED, "two"],
    });
    assert.deepEqual(redactor.arguments("db__query", { user: "bob" }), { user: "bob" });
  });

  test("redacts every known secret value wherever it appears, read afresh for each record", () => {
    let secrets = ["hunter2-secret"];
    const redactor = createRedactor({ secretValues: () => secrets });
    assert.deepEqual(
      redactor.arguments("any__tool", {
        note: "the password is hunter2-secret, ok",
        nested: [{ deep: "hunter2-secret" }],
      }),
      { note: `the password is ${REDACTED}, ok`, nested: [{ deep: REDACTED }] },
    );
    secrets = ["rotated-value"];
    assert.deepEqual(redactor.arguments("any__tool", { a: "rotated-value" }), { a: REDACTED });
  });

  test("a whole record: arguments by rule and value, the error text by value", () => {
    const redactor = createRedactor({ rules, secretValues: () => ["s3cr3t-value"] });
    const record: AuditRecord = {
      time: "2026-01-01T00:00:00.000Z",
      requestId: "r1",
      principal: "alice",
      server: "db",
      tool: "db__query",
      arguments: { password: "pw", sql: "select 's3cr3t-value'" },
      outcome: "error",
      error: "connection to postgres://u:s3cr3t-value@h failed",
      durationMs: 3,
      source: "backend",
    };
    assert.deepEqual(redactor.record(record), {
      ...record,
      arguments: { password: REDACTED, sql: `select '${REDACTED}'` },
      error: `connection to postgres://u:${REDACTED}@h failed`,
    });
  });

  test("omitArguments leaves arguments out", () => {
    const redactor = createRedactor({ omitArguments: true });
    assert.equal(redactor.arguments("db__query", { a: 1 }), undefined);
    const out = redactor.record({
      time: "2026-01-01T00:00:00.000Z",
      requestId: "r1",
      principal: "alice",
      server: "db",
      tool: "db__query",
      arguments: { a: 1 },
      outcome: "ok",
      durationMs: 1,
      source: "cache",
    });
    assert.equal("arguments" in out, false);
  });

  test("a __proto__ key stays data, and very deep values are cut", () => {
    const redactor = createRedactor({ rules: [{ tools: ["*"], arguments: ["*"] }] });
    const args = JSON.parse('{"__proto__": {"polluted": true}}') as Record<string, unknown>;
    const out = redactor.arguments("x", args);
    assert.equal(Object.getPrototypeOf(out), Object.prototype);
    assert.deepEqual(Object.keys(out ?? {}), ["__proto__"]);
    assert.equal(({} as Record<string, unknown>).polluted, undefined);

    let deep: unknown = "bottom";
    for (let i = 0; i < 100; i++) deep = { d: deep };
    const cut = createRedactor().arguments("x", { deep }) as Record<string, unknown>;
    assert.match(JSON.stringify(cut), /nested too deep/);
  });
});
