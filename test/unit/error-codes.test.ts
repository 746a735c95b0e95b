/**
 * The README's "Error codes" section is what clients program against: these tests fail when its
 * tables and the codes in src/core/errors.ts differ, in either direction.
 */
import assert from "node:assert/strict";
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { describe, test } from "node:test";
import { ProtocolErrorCode } from "@modelcontextprotocol/server";
import {
  GATEWAY_ERROR_CODES,
  GatewayError,
  JSON_RPC,
  jsonRpcCode,
  jsonRpcCodeOutsideCalls,
} from "../../src/core/errors.ts";

const README = readFileSync(join(import.meta.dirname, "../../README.md"), "utf8");

/** The text of one `## ` section of the README, without its heading. */
function section(title: string): string {
  const start = README.indexOf(`\n## ${title}\n`);
  assert.notEqual(start, -1, `the README has a "## ${title}" section`);
  const body = README.slice(start + title.length + 5);
  const end = body.indexOf("\n## ");
  return end === -1 ? body : body.slice(0, end);
}

interface Table {
  readonly header: readonly string[];
  readonly rows: readonly (readonly string[])[];
}

/** The Markdown tables of `text`, cells trimmed, the separator row dropped. */
function tables(text: string): Table[] {
  const found: { header: string[]; rows: string[][] }[] = [];
  let inTable = false;
  for (const line of text.split("\n")) {
    if (!line.startsWith("|")) {
      inTable = false;
      continue;
    }
    const cells = line
      .trim()
      .replace(/^\||\|$/g, "")
      .split("|")
      .map((cell) => cell.trim());
    if (cells.every((cell) => /^:?-+:?$/.test(cell))) continue;
    if (inTable) found.at(-1)?.rows.push(cells);
    else found.push({ header: cells, rows: [] });
    inTable = true;
  }
  return found;
}

const errorTables = tables(section("Error codes"));

function tableHeaded(first: string): Table {
  const table = errorTables.find((t) => t.header[0] === first);
  assert.ok(table, `the "Error codes" section has a table whose first column is "${first}"`);
  return table;
}

const gatewayTable = tableHeaded("Code");
const jsonRpcTable = tableHeaded("JSON-RPC code");

/** The first cell of each row, which must be written as `code`. */
const gatewayRows = new Map(
  gatewayTable.rows.map((row) => {
    const match = /^`([a-z_]+)`$/.exec(row[0] ?? "");
    assert.ok(match, `a code in backticks in the first column: ${row.join(" | ")}`);
    return [match[1] as string, row] as const;
  }),
);

describe("the README's error codes", () => {
  test("list every GatewayError code once, and no other", () => {
    const listed = gatewayTable.rows.map((row) => (row[0] ?? "").replaceAll("`", ""));
    assert.equal(new Set(listed).size, listed.length, `no code is listed twice: ${listed.join(", ")}`);
    assert.deepEqual([...listed].sort(), [...GATEWAY_ERROR_CODES].sort());
  });

  test("list every JSON-RPC code the gateway answers with once, and no other", () => {
    const listed = jsonRpcTable.rows.map((row) => {
      const cell = row[0] ?? "";
      assert.match(cell, /^-\d+$/, `a JSON-RPC code in the first column: ${row.join(" | ")}`);
      return Number(cell);
    });
    assert.equal(new Set(listed).size, listed.length, `no code is listed twice: ${listed.join(", ")}`);
    assert.deepEqual(
      [...listed].sort((a, b) => a - b),
      Object.values(JSON_RPC).sort((a, b) => a - b),
    );
  });

  test("say when each happens and what the client should do", () => {
    assert.deepEqual(gatewayTable.header, ["Code", "Sent as", "When", "What the client should do"]);
    assert.deepEqual(jsonRpcTable.header, ["JSON-RPC code", "When", "What the client should do"]);
    for (const table of [gatewayTable, jsonRpcTable]) {
      for (const row of table.rows) {
        assert.equal(row.length, table.header.length, `a cell for every column: ${row.join(" | ")}`);
        for (const cell of row) assert.notEqual(cell, "", `no empty cell: ${row.join(" | ")}`);
      }
    }
  });

  test("name the JSON-RPC code a request-level failure maps to, and none for isError results", () => {
    for (const code of GATEWAY_ERROR_CODES) {
      const sentAs = gatewayRows.get(code)?.[1] ?? "";
      const named = [...sentAs.matchAll(/-\d{5}/g)].map((match) => Number(match[0]));
      const mapped = jsonRpcCode(new GatewayError(code, "test"));
      const outside = jsonRpcCodeOutsideCalls(new GatewayError(code, "test"));
      if (mapped === undefined) {
        // An isError result in a tool call; outside one (a resource read, a prompt), a JSON-RPC error.
        assert.ok(
          named.length === 0 || (named.length === 1 && named[0] === outside),
          `${code} is an isError result in a tool call and JSON-RPC ${outside} outside one: ${sentAs}`,
        );
      } else {
        assert.ok(
          named.includes(mapped),
          `${code} maps to ${mapped}, which "Sent as" should name: ${sentAs}`,
        );
      }
    }
  });
});

describe("the JSON-RPC codes", () => {
  test("agree with the MCP SDK's for every code both name", () => {
    const sdk: Record<string, number> = {
      PARSE_ERROR: ProtocolErrorCode.ParseError,
      INVALID_REQUEST: ProtocolErrorCode.InvalidRequest,
      METHOD_NOT_FOUND: ProtocolErrorCode.MethodNotFound,
      INVALID_PARAMS: ProtocolErrorCode.InvalidParams,
      INTERNAL_ERROR: ProtocolErrorCode.InternalError,
      RESOURCE_NOT_FOUND: ProtocolErrorCode.ResourceNotFound,
      MISSING_CLIENT_CAPABILITY: ProtocolErrorCode.MissingRequiredClientCapability,
      UNSUPPORTED_PROTOCOL_VERSION: ProtocolErrorCode.UnsupportedProtocolVersion,
    };
    for (const [name, value] of Object.entries(sdk)) {
      assert.equal(JSON_RPC[name as keyof typeof JSON_RPC], value, `JSON_RPC.${name}`);
    }
  });
});
