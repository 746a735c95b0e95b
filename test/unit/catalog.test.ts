import assert from "node:assert/strict";
import { describe, test } from "node:test";
import type { BackendCatalog, Prompt, Resource, ResourceTemplate, Tool } from "../../src/core/types.ts";
import { Catalog, type CatalogEntry, compileUriTemplate, exposedName } from "../../src/gateway/catalog.ts";
import { clientSafeName, type ServerNaming, VALID_NAME } from "../../src/gateway/naming.ts";

const SEP = "__";

function naming(server: string, overrides: Partial<ServerNaming> = {}): ServerNaming {
  return { server, prefix: server, include: [], exclude: [], rename: {}, descriptions: {}, ...overrides };
}

function tool(name: string, extra: Partial<Tool> = {}): Tool {
  return { name, description: `does ${name}`, inputSchema: { type: "object" }, ...extra };
}

function backend(parts: Partial<BackendCatalog>): BackendCatalog {
  return { tools: [], resources: [], resourceTemplates: [], prompts: [], ...parts };
}

function entry(n: ServerNaming, parts: Partial<BackendCatalog>): CatalogEntry {
  return { naming: n, catalog: backend(parts) };
}

function names(catalog: Catalog): string[] {
  return catalog.tools().map((t) => t.name);
}

describe("tool naming", () => {
  test("prefixes with the separator and routes back by map lookup", () => {
    const catalog = Catalog.build(SEP, [
      entry(naming("db"), { tools: [tool("query"), tool("list_tables")] }),
    ]);
    assert.deepEqual(names(catalog), ["db__query", "db__list_tables"]);
    const route = catalog.tool("db__query");
    assert.equal(route?.server, "db");
    assert.equal(route?.tool, "query");
    assert.equal(catalog.tool("query"), undefined);
  });

  test("uses the configured separator", () => {
    const catalog = Catalog.build("-", [entry(naming("db"), { tools: [tool("query")] })]);
    assert.deepEqual(names(catalog), ["db-query"]);
    assert.equal(catalog.tool("db-query")?.tool, "query");
  });

  test("an empty prefix keeps the server's own names", () => {
    const catalog = Catalog.build(SEP, [entry(naming("db", { prefix: "" }), { tools: [tool("query")] })]);
    assert.deepEqual(names(catalog), ["query"]);
    assert.equal(catalog.tool("query")?.server, "db");
  });

  test("include and exclude globs filter own names, and exclude wins", () => {
    const n = naming("gh", { include: ["issue_*", "get_*"], exclude: ["*_delete", "get_secret"] });
    const tools = ["issue_create", "issue_delete", "get_repo", "get_secret", "push"].map((t) => tool(t));
    const catalog = Catalog.build(SEP, [entry(n, { tools })]);
    assert.deepEqual(names(catalog), ["gh__issue_create", "gh__get_repo"]);
  });

  test("globs match across slashes and leading dots in names", () => {
    const n = naming("x", { include: ["a*"], exclude: [".hidden*"] });
    const catalog = Catalog.build(SEP, [entry(n, { tools: [tool("a/b"), tool(".hidden_a"), tool("b")] })]);
    assert.deepEqual(names(catalog), ["x__a_b"]);
  });

  test("renames before prefixing, and filters still see the own name", () => {
    const n = naming("gh", { rename: { search_code: "find" }, include: ["search_*"] });
    const catalog = Catalog.build(SEP, [entry(n, { tools: [tool("search_code"), tool("find")] })]);
    assert.deepEqual(names(catalog), ["gh__find"]);
    assert.equal(catalog.tool("gh__find")?.tool, "search_code");
  });

  test("rename and description lookups ignore Object.prototype", () => {
    const catalog = Catalog.build(SEP, [
      entry(naming("s"), { tools: [tool("constructor"), tool("toString")] }),
    ]);
    assert.deepEqual(names(catalog), ["s__constructor", "s__toString"]);
    assert.equal(catalog.tool("s__constructor")?.definition.description, "does constructor");
  });

  test("a description override replaces the description; everything else passes through", () => {
    const original = tool("query", {
      title: "Query",
      inputSchema: { type: "object", properties: { sql: { type: "string" } }, required: ["sql"] },
      outputSchema: { type: "object", properties: { rows: { type: "array" } } },
      annotations: { readOnlyHint: true },
      _meta: { "vendor/x": 1 },
    });
    const n = naming("db", { descriptions: { query: "Run read-only SQL." } });
    const route = Catalog.build(SEP, [entry(n, { tools: [original] })]).tool("db__query");
    assert.ok(route);
    assert.equal(route.definition.description, "Run read-only SQL.");
    assert.equal(route.definition.title, "Query");
    assert.deepEqual(route.definition.inputSchema, original.inputSchema);
    assert.deepEqual(route.definition.outputSchema, original.outputSchema);
    assert.deepEqual(route.definition.annotations, { readOnlyHint: true });
    assert.deepEqual(route.definition._meta, {
      "vendor/x": 1,
      "switchboard/server": "db",
      "switchboard/tool": "query",
    });
    assert.equal(route.original, original);
  });

  test("characters outside [a-zA-Z0-9_-] become _ and the original name is kept in _meta", () => {
    const catalog = Catalog.build(SEP, [
      entry(naming("fs.local"), { tools: [tool("read.file"), tool("dir/list"), tool("ok-name")] }),
    ]);
    assert.deepEqual(names(catalog), ["fs_local__read_file", "fs_local__dir_list", "fs_local__ok-name"]);
    const route = catalog.tool("fs_local__read_file");
    assert.equal(route?.tool, "read.file");
    assert.equal(route?.definition._meta?.["switchboard/originalName"], "fs.local__read.file");
    assert.equal(
      catalog.tool("fs_local__ok-name")?.definition._meta?.["switchboard/originalName"],
      "fs.local__ok-name",
    );
  });

  test("a name that needs no change has no originalName", () => {
    const route = Catalog.build(SEP, [entry(naming("db"), { tools: [tool("query")] })]).tool("db__query");
    assert.equal(route?.definition._meta?.["switchboard/originalName"], undefined);
  });

  test("a 100-character name is shortened deterministically to at most 64 and stays routable", () => {
    const long = `t${"x".repeat(99)}`;
    const build = () => Catalog.build(SEP, [entry(naming("srv"), { tools: [tool(long)] })]);
    const [first] = names(build());
    assert.ok(first);
    assert.ok(first.length <= 64, `${first.length} > 64`);
    assert.match(first, VALID_NAME);
    assert.match(first, /^srv__tx+_[0-9a-f]{8}$/);
    assert.equal(names(build())[0], first);
    assert.equal(exposedName(naming("srv"), long, SEP), first);
    const route = build().tool(first);
    assert.equal(route?.tool, long);
    assert.equal(route?.definition._meta?.["switchboard/originalName"], `srv__${long}`);
  });

  test("two long names that differ only at the end get different short names", () => {
    const a = `${"a".repeat(90)}_one`;
    const b = `${"a".repeat(90)}_two`;
    const catalog = Catalog.build(SEP, [entry(naming("srv"), { tools: [tool(a), tool(b)] })]);
    const [na, nb] = names(catalog);
    assert.ok(na && nb);
    assert.notEqual(na, nb);
    assert.equal(catalog.tool(na)?.tool, a);
    assert.equal(catalog.tool(nb)?.tool, b);
    assert.deepEqual(catalog.collisions, []);
  });

  test("clientSafeName always yields a valid name", () => {
    for (const raw of ["", "é", "a b", "x".repeat(64), "x".repeat(65), "ü".repeat(200), "a.b/c:d"]) {
      const name = clientSafeName(raw);
      assert.match(name, VALID_NAME, JSON.stringify(raw));
      assert.ok(name.length <= 64);
    }
    assert.equal(clientSafeName("x".repeat(64)), "x".repeat(64));
    assert.equal(clientSafeName("x".repeat(65)).length, 64);
  });
});

describe("collisions", () => {
  test("the first server keeps a clashing tool name and the clash names both", () => {
    const catalog = Catalog.build(SEP, [
      entry(naming("a", { prefix: "" }), { tools: [tool("search"), tool("only_a")] }),
      entry(naming("b", { prefix: "" }), { tools: [tool("search"), tool("only_b")] }),
    ]);
    assert.deepEqual(names(catalog), ["search", "only_a", "only_b"]);
    assert.equal(catalog.tool("search")?.server, "a");
    assert.deepEqual(catalog.collisions, [
      {
        kind: "tool",
        name: "search",
        kept: { server: "a", name: "search" },
        dropped: { server: "b", name: "search" },
      },
    ]);
  });

  test("a rename onto an existing name within one server is a collision too", () => {
    const catalog = Catalog.build(SEP, [
      entry(naming("a", { rename: { old: "new" } }), { tools: [tool("new"), tool("old")] }),
    ]);
    assert.deepEqual(names(catalog), ["a__new"]);
    assert.deepEqual(catalog.collisions[0]?.dropped, { server: "a", name: "old" });
  });

  test("names that sanitise to the same result collide, first wins", () => {
    const catalog = Catalog.build(SEP, [entry(naming("a"), { tools: [tool("x.y"), tool("x/y")] })]);
    assert.equal(catalog.tool("a__x_y")?.tool, "x.y");
    assert.equal(catalog.collisions.length, 1);
    assert.equal(catalog.collisions[0]?.name, "a__x_y");
  });

  test("prompts and resource URIs collide the same way", () => {
    const catalog = Catalog.build(SEP, [
      entry(naming("a", { prefix: "" }), {
        prompts: [{ name: "greet" }],
        resources: [{ uri: "mem://x", name: "x from a" }],
        resourceTemplates: [{ uriTemplate: "mem://{id}", name: "t" }],
      }),
      entry(naming("b", { prefix: "" }), {
        prompts: [{ name: "greet" }],
        resources: [{ uri: "mem://x", name: "x from b" }],
        resourceTemplates: [{ uriTemplate: "mem://{id}", name: "t" }],
      }),
    ]);
    assert.equal(catalog.prompt("greet")?.server, "a");
    assert.equal(catalog.resourceServer("mem://x"), "a");
    assert.deepEqual(
      catalog.resources().map((r) => r.name),
      ["x from a"],
    );
    assert.equal(catalog.resourceTemplates().length, 1);
    assert.deepEqual(
      catalog.collisions.map((c) => [c.kind, c.name, c.kept.server, c.dropped.server]),
      [
        ["prompt", "greet", "a", "b"],
        ["resource", "mem://x", "a", "b"],
        ["resourceTemplate", "mem://{id}", "a", "b"],
      ],
    );
  });
});

describe("resources", () => {
  const files: ResourceTemplate = { uriTemplate: "file:///{path}", name: "file" };
  const deep: ResourceTemplate = { uriTemplate: "deep:///{+path}", name: "deep" };
  const users: ResourceTemplate = { uriTemplate: "users://{id}/profile", name: "profile" };
  const search: ResourceTemplate = { uriTemplate: "search://items{?q,page}", name: "search" };
  const listed: Resource = { uri: "file:///etc/hosts", name: "hosts" };
  const catalog = Catalog.build(SEP, [
    entry(naming("fs"), { resources: [listed], resourceTemplates: [files] }),
    entry(naming("deepfs"), { resourceTemplates: [deep, users] }),
    entry(naming("idx"), { resourceTemplates: [search] }),
  ]);

  test("listed URIs route exactly and pass through unchanged", () => {
    assert.equal(catalog.resourceServer("file:///etc/hosts"), "fs");
    assert.equal(catalog.resource("file:///etc/hosts")?.resource, listed);
    assert.deepEqual(catalog.resources(), [listed]);
    assert.deepEqual(catalog.resourceTemplates(), [files, deep, users, search]);
  });

  test("{var} matches one segment, {+var} matches across slashes", () => {
    assert.equal(catalog.resourceServer("file:///readme.md"), "fs");
    assert.equal(catalog.resource("file:///readme.md")?.template, files);
    assert.equal(catalog.resourceServer("file:///a/b.txt"), undefined);
    assert.equal(catalog.resourceServer("file:///"), undefined);
    assert.equal(catalog.resourceServer("deep:///a/b/c.txt"), "deepfs");
    assert.equal(catalog.resourceServer("deep:///"), undefined);
  });

  test("literal text after a variable must match", () => {
    assert.equal(catalog.resourceServer("users://42/profile"), "deepfs");
    assert.equal(catalog.resourceServer("users://42/settings"), undefined);
    assert.equal(catalog.resourceServer("users://a/b/profile"), undefined);
  });

  test("query expressions are optional", () => {
    assert.equal(catalog.resourceServer("search://items"), "idx");
    assert.equal(catalog.resourceServer("search://items?q=x&page=2"), "idx");
    assert.equal(catalog.resourceServer("search://itemsX"), undefined);
  });

  test("the first matching server in config order wins overlapping templates", () => {
    const overlapping = Catalog.build(SEP, [
      entry(naming("narrow"), { resourceTemplates: [{ uriTemplate: "file:///{path}", name: "n" }] }),
      entry(naming("wide"), { resourceTemplates: [{ uriTemplate: "file:///{+path}", name: "w" }] }),
    ]);
    assert.equal(overlapping.resourceServer("file:///x"), "narrow");
    assert.equal(overlapping.resourceServer("file:///x/y"), "wide");
  });

  test("template operators compile to sensible patterns", () => {
    const cases: [string, string, boolean][] = [
      ["a://{x}", "a://v", true],
      ["a://{x,y}", "a://v,w", true],
      ["a://x{/segs*}", "a://x/1/2", true],
      ["a://x{/segs*}", "a://x", true],
      ["a://x{.ext}", "a://x.json", true],
      ["a://x{;p}", "a://x;p=1", true],
      ["a://x{?q}{&r}", "a://x?q=1&r=2", true],
      ["a://x{#frag}", "a://x#top", true],
      ["a://x{#frag}", "a://xy", false],
      ["a://(x).[y]", "a://(x).[y]", true],
      ["a://(x).[y]", "a://(x)z[y]", false],
      ["a://{unclosed", "a://{unclosed", true],
    ];
    for (const [template, uri, expected] of cases) {
      assert.equal(compileUriTemplate(template).test(uri), expected, `${template} vs ${uri}`);
    }
  });
});

describe("prompts", () => {
  test("are named like tools and route back to the own name", () => {
    const greet: Prompt = {
      name: "greet",
      description: "Say hi",
      arguments: [{ name: "who", required: true }],
    };
    const n = naming("chat", { rename: { greet: "hello" }, descriptions: { greet: "Greets someone." } });
    const catalog = Catalog.build(SEP, [entry(n, { prompts: [greet, { name: "other" }] })]);
    assert.deepEqual(
      catalog.prompts().map((p) => p.name),
      ["chat__hello", "chat__other"],
    );
    const route = catalog.prompt("chat__hello");
    assert.equal(route?.server, "chat");
    assert.equal(route?.prompt, "greet");
    assert.equal(route?.definition.description, "Greets someone.");
    assert.deepEqual(route?.definition.arguments, greet.arguments);
    assert.equal(route?.definition._meta?.["switchboard/prompt"], "greet");
  });

  test("respect include/exclude", () => {
    const n = naming("chat", { exclude: ["secret_*"] });
    const catalog = Catalog.build(SEP, [entry(n, { prompts: [{ name: "secret_x" }, { name: "ok" }] })]);
    assert.deepEqual(
      catalog.prompts().map((p) => p.name),
      ["chat__ok"],
    );
  });
});

describe("diff", () => {
  const base = () => entry(naming("db"), { tools: [tool("query")], prompts: [{ name: "p" }] });

  test("reports nothing for an equal rebuild, and nothing against itself", () => {
    const a = Catalog.build(SEP, [base()]);
    const b = Catalog.build(SEP, [base()]);
    assert.deepEqual(b.diff(a), { tools: false, resources: false, prompts: false });
    assert.deepEqual(a.diff(a), { tools: false, resources: false, prompts: false });
  });

  test("detects an added tool", () => {
    const a = Catalog.build(SEP, [base()]);
    const b = Catalog.build(SEP, [
      entry(naming("db"), { tools: [tool("query"), tool("exec")], prompts: [{ name: "p" }] }),
    ]);
    assert.deepEqual(b.diff(a), { tools: true, resources: false, prompts: false });
  });

  test("detects a changed description", () => {
    const a = Catalog.build(SEP, [base()]);
    const n = naming("db", { descriptions: { query: "new words" } });
    const b = Catalog.build(SEP, [entry(n, { tools: [tool("query")], prompts: [{ name: "p" }] })]);
    assert.deepEqual(b.diff(a), { tools: true, resources: false, prompts: false });
  });

  test("detects resource and prompt changes, and ignores filtered-out tools", () => {
    const a = Catalog.build(SEP, [base()]);
    const n = naming("db", { exclude: ["hidden"] });
    const b = Catalog.build(SEP, [
      entry(n, {
        tools: [tool("query"), tool("hidden")],
        prompts: [{ name: "p" }, { name: "q" }],
        resources: [{ uri: "x://1", name: "one" }],
      }),
    ]);
    assert.deepEqual(b.diff(a), { tools: false, resources: true, prompts: true });
  });

  test("an empty catalog differs from a populated one", () => {
    assert.deepEqual(Catalog.build(SEP, [base()]).diff(Catalog.empty), {
      tools: true,
      resources: false,
      prompts: true,
    });
  });
});

describe("immutability and caching", () => {
  test("backend objects are not mutated", () => {
    const tools = [tool("a.b", { _meta: { keep: true } }), tool("x".repeat(100))];
    const prompts: Prompt[] = [{ name: "p", description: "d" }];
    const resources: Resource[] = [{ uri: "r://1", name: "r" }];
    const resourceTemplates: ResourceTemplate[] = [{ uriTemplate: "r://{id}", name: "t" }];
    const parts = { tools, prompts, resources, resourceTemplates };
    const before = structuredClone(parts);
    const n = naming("s", { descriptions: { "a.b": "over", p: "over" }, rename: { p: "q" } });
    const catalog = Catalog.build(SEP, [entry(n, parts)]);
    assert.equal(catalog.tools().length, 2);
    assert.deepEqual(parts, before);
    assert.ok(!Object.isFrozen(tools[0]));
    assert.ok(!Object.isFrozen(resources[0]));
  });

  test("list getters return the same cached arrays", () => {
    const catalog = Catalog.build(SEP, [
      entry(naming("db"), { tools: [tool("q")], prompts: [{ name: "p" }] }),
    ]);
    assert.equal(catalog.tools(), catalog.tools());
    assert.equal(catalog.toolRoutes(), catalog.toolRoutes());
    assert.equal(catalog.prompts(), catalog.prompts());
    assert.equal(catalog.resources(), catalog.resources());
    assert.equal(catalog.resourceTemplates(), catalog.resourceTemplates());
    assert.ok(Object.isFrozen(catalog.tools()));
  });

  test("the empty catalog has nothing and routes nothing", () => {
    assert.equal(Catalog.empty.tools().length, 0);
    assert.equal(Catalog.empty.tool("x"), undefined);
    assert.equal(Catalog.empty.resourceServer("x://y"), undefined);
    assert.equal(Catalog.empty.prompt("x"), undefined);
  });
});

describe("scale", () => {
  test("100 servers x 100 tools: every exposed name routes to its tool", () => {
    const entries: CatalogEntry[] = [];
    for (let s = 0; s < 100; s++) {
      const tools: Tool[] = [];
      for (let t = 0; t < 100; t++) {
        tools.push(
          tool(`tool_${t}`, { inputSchema: { type: "object", properties: { n: { type: "number" } } } }),
        );
      }
      entries.push(entry(naming(`server${s}`), { tools }));
    }
    const catalog = Catalog.build(SEP, entries);
    assert.equal(catalog.tools().length, 10_000);
    assert.equal(catalog.collisions.length, 0);
    for (let s = 0; s < 100; s++) {
      for (let t = 0; t < 100; t++) {
        const route = catalog.tool(`server${s}__tool_${t}`);
        assert.ok(route, `server${s}__tool_${t}`);
        assert.equal(route.server, `server${s}`);
        assert.equal(route.tool, `tool_${t}`);
      }
    }
    for (const route of catalog.toolRoutes()) assert.equal(catalog.tool(route.exposedName), route);
  });
});
