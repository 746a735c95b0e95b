import assert from "node:assert/strict";
import { describe, test } from "node:test";
import { isGatewayError, jsonRpcCode } from "../../../src/core/errors.ts";
import type { CallContext, Principal, Tool } from "../../../src/core/types.ts";
import {
  AccessDenied,
  accessPolicy,
  createAccessControl,
  effectiveDefault,
} from "../../../src/security/access.ts";
import { type AccessConfigInput, accessSchema } from "../../../src/security/config.ts";

const who = (id: string, ...roles: string[]): Principal => ({ id, roles });

const alice = who("alice", "analyst");
const bob = who("bob", "admin");
const ci = who("ci-bot");
const auth0User = who("auth0|12345");

function control(input: AccessConfigInput) {
  return createAccessControl(accessSchema.parse(input));
}

describe("access rules", () => {
  const rules: AccessConfigInput = {
    rules: [
      { roles: ["analyst"], allow: ["db__*", "search__web"] },
      { roles: ["analyst"], deny: ["db__drop*"] },
      { roles: ["admin"], allow: ["server:*"] },
      { principals: ["ci-*"], allow: ["server:deploy"], deny: ["deploy__rollback"] },
      { principals: ["auth0|*"], allow: ["search__*"] },
      { allow: ["docs__read"] },
    ],
  };
  const access = control(rules);

  const matrix: [Principal, string, string, boolean][] = [
    [alice, "db__query", "db", true],
    [alice, "search__web", "search", true],
    [alice, "search__images", "search", false],
    [alice, "db__drop_table", "db", false], // deny in another rule beats the allow
    [alice, "fs__write", "fs", false], // nothing allows it; rules exist, so the default is deny
    [bob, "db__drop_table", "db", true], // the analyst deny does not apply to admins
    [bob, "anything__at_all", "anything", true],
    [ci, "deploy__release", "deploy", true],
    [ci, "deploy__rollback", "deploy", false],
    [ci, "db__query", "db", false],
    [auth0User, "search__images", "search", true], // `*` in principal globs crosses `|` and `/`
    [who("stranger"), "docs__read", "docs", true], // a rule naming no one applies to everyone
    [who("stranger"), "db__query", "db", false],
  ];

  for (const [principal, name, server, expected] of matrix) {
    test(`${principal.id} ${expected ? "may" : "may not"} call ${name}`, () => {
      assert.equal(
        access.canCall(principal, name, server),
        expected,
        access.explain(principal, name, server),
      );
    });
  }

  test("deny wins whatever the order of the rules", () => {
    const reversed = control({ rules: [...(rules.rules ?? [])].reverse() });
    for (const [principal, name, server, expected] of matrix) {
      assert.equal(reversed.canCall(principal, name, server), expected, `${principal.id} ${name}`);
    }
  });

  test("explain names the rule that decided, in words and as a config path", () => {
    assert.equal(
      access.explain(alice, "db__drop_table", "db"),
      "rule 2 (access.rules[1]) denies 'db__drop*'",
    );
    assert.equal(access.explain(alice, "db__query", "db"), "rule 1 (access.rules[0]) allows 'db__*'");
    assert.equal(
      access.explain(alice, "fs__write", "fs"),
      "no rule allows 'fs__write' for this principal and the default is deny",
    );
  });

  test("check throws AccessDenied: forbidden, with the message a user can act on", () => {
    assert.throws(
      () => access.check(alice, "db__drop_table", "db"),
      (error: unknown) => {
        assert.ok(error instanceof AccessDenied);
        assert.ok(isGatewayError(error));
        assert.equal(error.code, "forbidden");
        assert.equal(jsonRpcCode(error), -32600);
        assert.equal(
          error.message,
          "Access denied: principal 'alice' may not call tool 'db__drop_table' (rule 2 (access.rules[1]) denies " +
            "'db__drop*'). Ask an administrator to grant access in the access rules.",
        );
        assert.deepEqual(error.data, {
          principal: "alice",
          tool: "db__drop_table",
          server: "db",
          reason: "rule 2 (access.rules[1]) denies 'db__drop*'",
        });
        return true;
      },
    );
    assert.doesNotThrow(() => access.check(alice, "db__query", "db"));
  });

  test("decisions depend on the roles, not only on the id (the cache keys both)", () => {
    assert.equal(access.canCall(who("carol", "analyst"), "db__query", "db"), true);
    assert.equal(access.canCall(who("carol"), "db__query", "db"), false);
    assert.equal(access.canCall(who("carol", "admin"), "db__drop_table", "db"), true);
  });
});

describe("defaults", () => {
  test("no rules: everything is allowed; any rule: the default becomes deny; an explicit default wins", () => {
    const open = control({});
    assert.equal(effectiveDefault(accessSchema.parse({})), "allow");
    assert.equal(open.canCall(alice, "db__drop_table", "db"), true);

    const listed = control({ rules: [{ principals: ["alice"], allow: ["db__query"] }] });
    assert.equal(listed.canCall(alice, "db__query", "db"), true);
    assert.equal(listed.canCall(alice, "db__other", "db"), false);
    assert.equal(listed.canCall(bob, "db__query", "db"), false);

    const denyList = control({ default: "allow", rules: [{ roles: ["analyst"], deny: ["db__*"] }] });
    assert.equal(denyList.canCall(alice, "db__query", "db"), false);
    assert.equal(denyList.canCall(bob, "db__query", "db"), true);

    const closed = control({ default: "deny" });
    assert.equal(closed.canCall(alice, "db__query", "db"), false);
  });

  test("an empty principals list matches no one", () => {
    const access = control({ default: "allow", rules: [{ principals: [], deny: ["*"] }] });
    assert.equal(access.canCall(alice, "db__query", "db"), true);
  });
});

describe("lists and resources", () => {
  const access = control({
    rules: [
      { roles: ["analyst"], allow: ["db__*", "server:docs"] },
      { roles: ["analyst"], deny: ["db__drop*"] },
    ],
  });

  test("filter keeps the tools and prompts the principal may use, in order", () => {
    const items = [
      { exposedName: "db__query", server: "db" },
      { exposedName: "db__drop_table", server: "db" },
      { exposedName: "fs__read", server: "fs" },
      { exposedName: "docs__search", server: "docs" },
    ];
    assert.deepEqual(
      access.filter(alice, items).map((item) => item.exposedName),
      ["db__query", "docs__search"],
    );
    const tools = [
      { name: "db__query", _meta: { "switchboard/server": "db" } },
      { name: "fs__read", _meta: { "switchboard/server": "fs" } },
    ];
    assert.deepEqual(
      access
        .filter(alice, tools, (tool) => ({ name: tool.name, server: tool._meta["switchboard/server"] }))
        .map((tool) => tool.name),
      ["db__query"],
    );
  });

  test("resources are judged by server: entries only", () => {
    const resources = [
      { uri: "docs://readme", server: "docs" },
      { uri: "db://schema", server: "db" },
    ];
    // `db__*` grants db's tools, not its resources: only `server:docs` reaches resources.
    assert.deepEqual(
      access.filterResources(alice, resources, (resource) => resource.server).map((resource) => resource.uri),
      ["docs://readme"],
    );
    assert.equal(access.canReadServer(alice, "docs"), true);
    assert.throws(
      () => access.check(alice, "db://schema", "db", "resource"),
      /may not read resource 'db:\/\/schema'/,
    );
  });
});

describe("config", () => {
  test("a rule must allow or deny something; negated globs are refused", () => {
    assert.throws(() => accessSchema.parse({ rules: [{ roles: ["x"] }] }), /neither allows nor denies/);
    assert.throws(() => accessSchema.parse({ rules: [{ allow: ["!db__*"] }] }), /list the names in `deny`/);
    assert.throws(() => accessSchema.parse({ rules: [], extra: true }), /extra/);
  });
});

describe("accessPolicy", () => {
  const access = control({ rules: [{ principals: ["alice"], allow: ["db__query"] }] });
  const binding = (exposedName: string) => ({ exposedName, server: "db", tool: { name: "x" } as Tool });
  const ctx = (principal: Principal) => ({ principal }) as unknown as CallContext;
  const call = { server: "db", tool: "x", args: {} };

  test("calls next when allowed, rejects with AccessDenied without calling next when not", async () => {
    let calls = 0;
    const next = async () => {
      calls++;
      return { content: [] };
    };
    await accessPolicy(access, binding("db__query"))(next)(call, ctx(alice));
    assert.equal(calls, 1);
    await assert.rejects(accessPolicy(access, binding("db__drop"))(next)(call, ctx(alice)), AccessDenied);
    await assert.rejects(accessPolicy(access, binding("db__query"))(next)(call, ctx(bob)), AccessDenied);
    assert.equal(calls, 1);
  });
});
