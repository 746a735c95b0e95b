import assert from "node:assert/strict";
import { describe, test } from "node:test";
import { InvalidArguments, jsonRpcCode } from "../../../src/core/errors.ts";
import type { CallContext, Tool } from "../../../src/core/types.ts";
import {
  argumentsPolicy,
  checkArgumentLimits,
  createArgumentValidator,
  findLimitProblems,
} from "../../../src/security/arguments.ts";
import { argumentLimitsSchema } from "../../../src/security/config.ts";

const limits = argumentLimitsSchema.parse({});

/** `{ a: { a: … } }` nested `levels` deep, built without recursion. */
function deepObject(levels: number): Record<string, unknown> {
  const root: Record<string, unknown> = {};
  let at = root;
  for (let i = 1; i < levels; i++) {
    const child: Record<string, unknown> = {};
    at.a = child;
    at = child;
  }
  return root;
}

function deepArray(levels: number): unknown[] {
  const root: unknown[] = [];
  let at = root;
  for (let i = 1; i < levels; i++) {
    const child: unknown[] = [];
    at.push(child);
    at = child;
  }
  return root;
}

describe("argument limits", () => {
  test("defaults: 1 MiB, 256 KiB strings, depth 64", () => {
    assert.deepEqual(limits, { maxBytes: 1_048_576, maxStringLength: 262_144, maxDepth: 64 });
    assert.throws(() => argumentLimitsSchema.parse({ maxDepth: 100_000 }));
  });

  test("ordinary arguments pass", () => {
    assert.doesNotThrow(() =>
      checkArgumentLimits({ sql: "select 1", rows: [{ id: 1 }], flags: null }, limits),
    );
    assert.deepEqual(findLimitProblems(deepObject(64), limits), []);
  });

  test("too many bytes (counted as UTF-8) is refused, naming the size and the limit", () => {
    const small = { ...limits, maxBytes: 100 };
    // 40 three-byte characters: 40 UTF-16 units but 120 bytes of UTF-8.
    const problems = findLimitProblems({ text: "€".repeat(40) }, small);
    assert.deepEqual(problems, [{ path: "", message: "the arguments are 131 bytes as JSON (max 100)" }]);
  });

  test("an over-long string value or property name is refused with its path", () => {
    const tight = { ...limits, maxStringLength: 10 };
    assert.deepEqual(findLimitProblems({ rows: [{ ok: "short" }, { note: "x".repeat(11) }] }, tight), [
      { path: "/rows/1/note", message: "/rows/1/note is 11 characters long (max 10)" },
    ]);
    assert.deepEqual(findLimitProblems({ nested: { ["k".repeat(11)]: 1 } }, tight), [
      { path: "/nested", message: "a property name in /nested is 11 characters long (max 10)" },
    ]);
    assert.equal(
      findLimitProblems("y".repeat(11), tight)[0]?.message,
      "the arguments is 11 characters long (max 10)",
    );
  });

  test("nesting beyond maxDepth is refused; objects and arrays both count", () => {
    assert.deepEqual(findLimitProblems(deepObject(65), limits), [
      { path: "/a/a/a/a/a/a/a/a/…", message: "/a/a/a/a/a/a/a/a/… nests deeper than 64 levels" },
    ]);
    assert.equal(findLimitProblems({ list: deepArray(64) }, limits).length, 1);
    assert.equal(findLimitProblems({ list: deepArray(63) }, limits).length, 0);
  });

  test("100 000 levels of nesting are refused without exhausting the stack", () => {
    for (const value of [deepObject(100_000), { list: deepArray(100_000) }]) {
      assert.throws(
        () => checkArgumentLimits(value, limits, "db__query"),
        (error: unknown) => {
          assert.ok(error instanceof InvalidArguments);
          assert.match(
            error.message,
            /^Arguments for 'db__query' exceed the gateway's limits: .* nests deeper than 64 levels\. Send smaller or flatter arguments\.$/,
          );
          return true;
        },
      );
    }
  });

  test("a cycle (from an in-process caller) ends as too deep rather than looping", () => {
    const cyclic: Record<string, unknown> = {};
    cyclic.self = cyclic;
    assert.match(findLimitProblems(cyclic, limits)[0]?.message ?? "", /nests deeper than 64 levels/);
  });

  test("every broken limit is listed at once, as an invalid_arguments error", () => {
    const tight = { maxBytes: 50, maxStringLength: 20, maxDepth: 64 };
    assert.throws(
      () => checkArgumentLimits({ a: "z".repeat(30), b: "z".repeat(30) }, tight, "fs__write"),
      (error: unknown) => {
        assert.ok(error instanceof InvalidArguments);
        assert.equal(error.code, "invalid_arguments");
        // A tool error (isError), not a JSON-RPC error: the model reads it and sends smaller arguments.
        assert.equal(jsonRpcCode(error), undefined);
        assert.equal(
          error.message,
          "Arguments for 'fs__write' exceed the gateway's limits: the arguments are 75 bytes as JSON (max 50); " +
            "/a is 30 characters long (max 20). Send smaller or flatter arguments.",
        );
        assert.equal(error.data.tool, "fs__write");
        return true;
      },
    );
  });
});

describe("schema validation", () => {
  const querySchema = {
    type: "object",
    properties: {
      sql: { type: "string" },
      limit: { type: "integer", maximum: 1000 },
      email: { type: "string", format: "email" },
      mode: { enum: ["fast", "exact"] },
      rows: { type: "array", items: { type: "object", properties: { id: { type: "integer" } } } },
    },
    required: ["sql"],
    additionalProperties: false,
  };

  test("valid arguments pass; invalid ones come back as JSON-pointer paths with messages", () => {
    const validator = createArgumentValidator();
    assert.deepEqual(validator.validate(querySchema, { sql: "select 1", limit: 10, email: "a@b.co" }), {
      ok: true,
    });
    const result = validator.validate(querySchema, {
      limit: 5000,
      email: "nope",
      mode: "slow",
      rows: [{ id: 1.5 }],
      extra: true,
    });
    assert.equal(result.ok, false);
    assert.deepEqual(
      new Set(result.ok ? [] : result.errors),
      new Set([
        { path: "/sql", message: "is required" },
        { path: "/extra", message: "is not allowed (unknown property)" },
        { path: "/limit", message: "must be <= 1000" },
        { path: "/email", message: 'must match format "email"' },
        { path: "/mode", message: 'must be one of "fast", "exact"' },
        { path: "/rows/0/id", message: "must be integer" },
      ]),
    );
  });

  test("assertValid throws InvalidArguments that names the tool, each problem and what to do", () => {
    const validator = createArgumentValidator();
    assert.throws(
      () => validator.assertValid("db__query", querySchema, { limit: 5000 }),
      (error: unknown) => {
        assert.ok(error instanceof InvalidArguments);
        assert.equal(
          error.message,
          "Invalid arguments for 'db__query': /sql is required; /limit must be <= 1000. Fix the arguments and call again.",
        );
        assert.deepEqual(error.data.tool, "db__query");
        return true;
      },
    );
    assert.throws(
      () => validator.assertValid("t", { type: "object" }, []),
      /Invalid arguments for 't': the arguments must be object\. Fix/,
    );
  });

  test("draft-07 schemas are read as draft-07 (tuple items, additionalItems)", () => {
    const validator = createArgumentValidator();
    const schema = {
      $schema: "http://json-schema.org/draft-07/schema#",
      type: "object",
      properties: {
        pair: { type: "array", items: [{ type: "string" }, { type: "number" }], additionalItems: false },
      },
      definitions: { unused: { type: "string" } },
    };
    assert.deepEqual(validator.validate(schema, { pair: ["a", 1] }), { ok: true });
    assert.deepEqual(validator.validate(schema, { pair: ["a", "b"] }), {
      ok: false,
      errors: [{ path: "/pair/1", message: "must be number" }],
    });
    assert.equal(validator.validate(schema, { pair: ["a", 1, 2] }).ok, false);
    assert.equal(validator.compileError(schema), undefined);
  });

  test("a schema without $schema is read as 2020-12 (prefixItems, unevaluatedProperties, $defs)", () => {
    const validator = createArgumentValidator();
    const schema = {
      type: "object",
      properties: {
        pair: { type: "array", prefixItems: [{ type: "string" }, { type: "number" }], items: false },
      },
      allOf: [{ properties: { name: { $ref: "#/$defs/name" } } }],
      unevaluatedProperties: false,
      $defs: { name: { type: "string", minLength: 1 } },
    };
    assert.deepEqual(validator.validate(schema, { pair: ["a", 1], name: "x" }), { ok: true });
    assert.deepEqual(validator.validate(schema, { pair: ["a", "b"] }), {
      ok: false,
      errors: [{ path: "/pair/1", message: "must be number" }],
    });
    assert.equal(validator.validate(schema, { pair: ["a", 1, 2] }).ok, false);
    assert.deepEqual(validator.validate(schema, { other: 1 }), {
      ok: false,
      errors: [{ path: "/other", message: "is not allowed (unknown property)" }],
    });
  });

  test("a draft-04 schema is checked as well as the drafts Ajv knows allow", () => {
    const validator = createArgumentValidator();
    const schema = {
      $schema: "http://json-schema.org/draft-04/schema#",
      type: "object",
      properties: { n: { type: "integer" } },
    };
    assert.equal(validator.validate(schema, { n: "1" }).ok, false);
    assert.equal(validator.compileError(schema), undefined);
  });

  test("schemas sharing an $id (as tools of one server often do) each compile and keep their own rules", () => {
    const validator = createArgumentValidator();
    const a = { $id: "https://example.com/input", type: "object", required: ["a"] };
    const b = { $id: "https://example.com/input", type: "object", required: ["b"] };
    assert.equal(validator.validate(a, { a: 1 }).ok, true);
    assert.equal(validator.validate(b, { a: 1 }).ok, false);
    assert.equal(validator.validate(b, { b: 1 }).ok, true);
  });

  test("a schema that cannot compile accepts every call and reports its error once", () => {
    const reported: string[] = [];
    const validator = createArgumentValidator({
      onCompileError: (_schema, message) => reported.push(message),
    });
    const broken = { type: "object", properties: { x: { $ref: "https://elsewhere.example/defs.json" } } };
    assert.deepEqual(validator.validate(broken, { x: 1 }), { ok: true });
    assert.deepEqual(validator.validate(broken, { anything: true }), { ok: true });
    assert.doesNotThrow(() => validator.assertValid("t", broken, 42));
    assert.equal(reported.length, 1);
    assert.match(reported[0] ?? "", /can't resolve reference/);
    assert.equal(validator.compileError(broken), reported[0]);
  });

  test("a recursive schema is enforced at depth, and 100 000 levels are refused, not a crash", () => {
    const validator = createArgumentValidator();
    const tree = { type: "object", properties: { a: { $ref: "#" } } };
    const leaf = (levels: number) => {
      const root = deepObject(levels);
      let at = root;
      while (at.a) at = at.a as Record<string, unknown>;
      at.a = 5;
      return root;
    };
    assert.deepEqual(validator.validate(tree, leaf(3)), {
      ok: false,
      errors: [{ path: "/a/a/a", message: "must be object" }],
    });
    assert.deepEqual(validator.validate(tree, leaf(50)), {
      ok: false,
      errors: [{ path: "/a/a/a/a/a/a/a/a/…", message: "must be object" }],
    });
    const result = validator.validate(tree, deepObject(100_000));
    assert.equal(result.ok, false);
    assert.match(result.ok ? "" : (result.errors[0]?.message ?? ""), /nest too deeply/);
  });
});

describe("argumentsPolicy", () => {
  const binding = {
    exposedName: "db__query",
    server: "db",
    tool: {
      name: "query",
      inputSchema: { type: "object", properties: { sql: { type: "string" } }, required: ["sql"] },
    } as Tool,
  };
  const ctx = {} as CallContext;

  test("checks limits, then the tool's schema, and calls next only when both pass", async () => {
    let calls = 0;
    const next = async () => {
      calls++;
      return { content: [] };
    };
    const handler = argumentsPolicy({ limits, validator: createArgumentValidator() }, binding)(next);
    await handler({ server: "db", tool: "query", args: { sql: "select 1" } }, ctx);
    await assert.rejects(handler({ server: "db", tool: "query", args: {} }, ctx), /\/sql is required/);
    await assert.rejects(
      handler({ server: "db", tool: "query", args: deepObject(1000) }, ctx),
      /nests deeper/,
    );
    assert.equal(calls, 1);
  });
});
