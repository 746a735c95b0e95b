import assert from "node:assert/strict";
import { describe, test } from "node:test";
import fc from "fast-check";
import { canonicalJson, hashJson } from "../../../src/stores/canonical-json.ts";

describe("canonicalJson", () => {
  test("sorts keys recursively, keeps array order, no whitespace", () => {
    assert.equal(
      canonicalJson({ b: 1, a: { d: [3, 1, { z: true, y: null }], c: "x" } }),
      '{"a":{"c":"x","d":[3,1,{"y":null,"z":true}]},"b":1}',
    );
  });

  test("numbers as ECMAScript prints them; -0 is 0", () => {
    assert.equal(canonicalJson([1.5, 1e21, 1e-7, -0, 100]), "[1.5,1e+21,1e-7,0,100]");
  });

  test("keys are ordered by UTF-16 code units (RFC 8785)", () => {
    assert.equal(canonicalJson({ "\u00e9": 1, z: 2, A: 3, "\ud83d\ude00": 4 }), '{"A":3,"z":2,"é":1,"😀":4}');
  });

  test("undefined is dropped from objects and null in arrays, as in JSON", () => {
    assert.equal(canonicalJson({ a: undefined, b: [undefined, 1] }), '{"b":[null,1]}');
  });

  test("rejects what JSON would silently lose, naming where", () => {
    assert.throws(() => canonicalJson({ n: Number.NaN }), /\$\.n is NaN/);
    assert.throws(() => canonicalJson([Number.POSITIVE_INFINITY]), /\$\[0\] is Infinity/);
    assert.throws(() => canonicalJson({ big: 1n }), /bigint/);
    assert.throws(() => canonicalJson({ m: new Map() }), /\$\.m is a Map/);
    assert.throws(() => canonicalJson(undefined), TypeError);
    const cyclic: Record<string, unknown> = {};
    cyclic.self = cyclic;
    assert.throws(() => canonicalJson(cyclic), /circular/);
  });

  test("the same object twice (not a cycle) is fine; toJSON is honoured", () => {
    const shared = { x: 1 };
    assert.equal(canonicalJson([shared, shared]), '[{"x":1},{"x":1}]');
    assert.equal(canonicalJson({ at: new Date(0) }), '{"at":"1970-01-01T00:00:00.000Z"}');
  });

  test("property: key order never changes the result, and it parses back to an equal value", () => {
    const shuffle = (value: unknown): unknown => {
      if (Array.isArray(value)) return value.map(shuffle);
      if (value !== null && typeof value === "object") {
        const entries = Object.entries(value).reverse();
        return Object.fromEntries(entries.map(([k, v]) => [k, shuffle(v)]));
      }
      return value;
    };
    fc.assert(
      fc.property(fc.jsonValue(), (value) => {
        const canonical = canonicalJson(value);
        assert.equal(canonicalJson(shuffle(value)), canonical);
        assert.equal(canonicalJson(JSON.parse(canonical)), canonical);
        assert.deepEqual(JSON.parse(canonical), JSON.parse(JSON.stringify(value)));
      }),
      { numRuns: 300 },
    );
  });

  test("hashJson: sha256 hex of the canonical form", () => {
    assert.equal(hashJson({ b: 1, a: 2 }), hashJson({ a: 2, b: 1 }));
    assert.match(hashJson({}), /^[0-9a-f]{64}$/);
    assert.equal(hashJson({}), "44136fa355b3678a1146ad16f7e8649e94fb4fc21fe77e8310c060f61caaff8a");
  });
});
