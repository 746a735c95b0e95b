import assert from "node:assert/strict";
import { describe, test } from "node:test";
import { checkParamHeaders, decodeHeaderValue, paramHeaders } from "../../../src/protocol/param-headers.ts";

const SCHEMA = {
  type: "object",
  properties: {
    region: { type: "string", "x-mcp-header": "Region" },
    count: { type: "integer", "x-mcp-header": "Count" },
    nested: { type: "object", properties: { flag: { type: "boolean", "x-mcp-header": "Flag" } } },
    list: { type: "array", items: { type: "string", "x-mcp-header": "Ignored" } },
  },
};

const headersOf =
  (headers: Record<string, string>) =>
  (name: string): string | undefined =>
    headers[name];

describe("Mcp-Param headers", () => {
  test("are declared by x-mcp-header on properties reached through properties alone", () => {
    assert.deepEqual(paramHeaders(SCHEMA), [
      { path: ["region"], name: "Region", type: "string" },
      { path: ["count"], name: "Count", type: "integer" },
      { path: ["nested", "flag"], name: "Flag", type: "boolean" },
    ]);
  });

  test("Base64 values are decoded only inside the sentinel, and only when canonical", () => {
    assert.equal(decodeHeaderValue("=?base64?SGVsbG8=?="), "Hello");
    assert.equal(decodeHeaderValue("=?base64?w6lsw6h2ZQ==?="), "élève");
    assert.equal(decodeHeaderValue("SGVsbG8="), "SGVsbG8=");
    assert.equal(decodeHeaderValue("=?base64?SGVsbG8="), "=?base64?SGVsbG8=");
    assert.equal(decodeHeaderValue("=?base64?SGVsbG8?="), undefined, "missing padding");
    assert.equal(decodeHeaderValue("=?base64?SGVs!!!bG8=?="), undefined, "outside the alphabet");
    assert.equal(decodeHeaderValue("=?base64?/w==?="), undefined, "not UTF-8");
  });

  test("agree with the arguments: present and equal, numbers as numbers; absent arguments need none", () => {
    const declared = paramHeaders(SCHEMA);
    const args = { region: "eu", count: 42, nested: { flag: true } };
    const good = { "mcp-param-region": "eu", "mcp-param-count": "42.0", "mcp-param-flag": "true" };
    assert.equal(checkParamHeaders(declared, args, headersOf(good)), undefined);
    assert.equal(checkParamHeaders(declared, { region: null }, headersOf({})), undefined);
    assert.equal(checkParamHeaders(declared, {}, headersOf({ "mcp-param-region": "anything" })), undefined);

    const missing = checkParamHeaders(declared, args, headersOf({ ...good, "mcp-param-count": "" }));
    assert.equal(missing?.code, -32020);
    assert.equal(missing?.data.mismatch.header, "Mcp-Param-Count");

    const absent = checkParamHeaders(declared, args, headersOf({ "mcp-param-region": "eu" }));
    assert.match(String(absent?.message), /Mcp-Param-Count header is absent/);

    const differs = checkParamHeaders(declared, args, headersOf({ ...good, "mcp-param-flag": "false" }));
    assert.match(String(differs?.message), /decodes to "false" but the body carries nested.flag=true/);
  });
});
