/**
 * The tool search index: identifiers split into words, stop words dropped, words stemmed; names weigh
 * more than descriptions; parameters are searched too; the caller's filter applies before the limit;
 * one index per catalog snapshot, built when first searched.
 */
import assert from "node:assert/strict";
import { describe, test } from "node:test";
import type { Tool } from "../../../src/core/types.ts";
import { Catalog, type ServerNaming } from "../../../src/gateway/catalog.ts";
import { processTerm, ToolIndex, tokenize, toolIndexOf } from "../../../src/gateway/tool-search.ts";

function naming(server: string): ServerNaming {
  return { server, prefix: server, include: [], exclude: [], rename: {}, descriptions: {} };
}

function tool(name: string, description: string, properties: Record<string, unknown> = {}): Tool {
  return { name, description, inputSchema: { type: "object", properties } as Tool["inputSchema"] };
}

const catalog = Catalog.build("__", [
  {
    naming: naming("fs"),
    catalog: {
      tools: [
        tool("read_text_file", "Read the complete contents of a file as text.", {
          path: { type: "string", description: "Where the file is" },
        }),
        tool("list_directory", "List the entries of a directory."),
        tool("move_file", "Move or rename a file or a directory."),
      ],
      resources: [],
      resourceTemplates: [],
      prompts: [],
    },
  },
  {
    naming: naming("gh"),
    catalog: {
      tools: [
        tool("create_issue", "Open a new issue in a repository.", {
          labels: { type: "array", description: "Labels such as bug or enhancement" },
        }),
        tool("list_issues", "List the issues of a repository."),
      ],
      resources: [],
      resourceTemplates: [],
      prompts: [],
    },
  },
]);

const everything = () => true;
const names = (query: string, filter: (name: string) => boolean = everything, limit = 5) =>
  toolIndexOf(catalog)
    .search(query, { limit, filter: (route) => filter(route.exposedName) })
    .map((hit) => hit.route.exposedName);

describe("tokenize and processTerm", () => {
  test("split snake_case, camelCase, kebab-case and acronyms into words", () => {
    assert.deepEqual(tokenize("fs__read_text_file"), ["fs", "read", "text", "file"]);
    assert.deepEqual(tokenize("readTextFile"), ["read", "Text", "File"]);
    assert.deepEqual(tokenize("get-HTTPResponse v2"), ["get", "HTTP", "Response", "v2"]);
  });

  test("lower-case and stem words, and drop stop words", () => {
    assert.equal(processTerm("Reading"), "read");
    assert.equal(processTerm("files"), "file");
    assert.equal(processTerm("the"), null);
  });
});

describe("ToolIndex", () => {
  test("finds a tool by the words of its name, in other forms", () => {
    assert.equal(names("reading text files")[0], "fs__read_text_file");
    assert.equal(names("open an issue")[0], "gh__create_issue");
  });

  test("searches parameter names and descriptions", () => {
    assert.equal(names("labels bug enhancement")[0], "gh__create_issue");
  });

  test("ranks a match in the name above a match in a description only", () => {
    assert.deepEqual(names("directory"), ["fs__list_directory", "fs__move_file"]);
  });

  test("applies the caller's filter before the limit", () => {
    const onlyGithub = names("list", (name) => name.startsWith("gh__"), 1);
    assert.deepEqual(onlyGithub, ["gh__list_issues"]);
    assert.deepEqual(
      names("file", () => false),
      [],
    );
  });

  test("returns at most `limit` hits, best first", () => {
    const hits = toolIndexOf(catalog).search("file", { limit: 2, filter: everything });
    assert.equal(hits.length, 2);
    assert.ok((hits[0]?.score ?? 0) >= (hits[1]?.score ?? 0));
  });

  test("is built once per catalog snapshot", () => {
    assert.equal(toolIndexOf(catalog), toolIndexOf(catalog));
    const other = Catalog.build("__", []);
    assert.notEqual(toolIndexOf(other), toolIndexOf(catalog));
    assert.equal(new ToolIndex(catalog.toolRoutes()).size, 5);
  });

  test("finds nothing for words no tool has", () => {
    assert.deepEqual(names("zebra quantum"), []);
  });
});
