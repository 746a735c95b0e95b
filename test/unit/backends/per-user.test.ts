/**
 * Per-user sessions of a server with per-user credentials: each user's instance is made with that
 * user's credential alone (never the server's own headers), the primary keeps the server's, a caller
 * without a credential is refused before any instance is made, and `sessionLimits` bounds the users.
 */
import assert from "node:assert/strict";
import { describe, test } from "node:test";
import { IsolatedBackend } from "../../../src/backends/isolated.ts";
import { perUserPartitioning, type UserAccess } from "../../../src/backends/mcp/per-user.ts";
import { GatewayError } from "../../../src/core/errors.ts";
import {
  type Backend,
  type CallContext,
  EMPTY_CATALOG,
  NOTE_UPSTREAM_AS,
  type Principal,
} from "../../../src/core/types.ts";
import { createLogger } from "../../../src/observability/logger.ts";
import { perUserCredentials } from "../../../src/security/upstream/credentials.ts";

/** What a request of the instance would send in Authorization. */
async function sent(access: UserAccess | undefined): Promise<string> {
  if (access?.auth) return `Bearer ${await access.auth.provider.token()}`;
  return access?.headers?.Authorization ?? "primary";
}

function backendFor(access: UserAccess | undefined): Backend {
  return {
    name: "crm",
    state: "up",
    start: async () => undefined,
    catalog: () => EMPTY_CATALOG,
    callTool: async () => ({ content: [{ type: "text", text: await sent(access) }] }),
    readResource: async () => ({ contents: [] }),
    getPrompt: async () => ({ messages: [] }),
    health: async () => ({ status: "healthy" }),
    close: async () => undefined,
  };
}

function ctxOf(principal: Principal): CallContext {
  return { requestId: "1", signal: new AbortController().signal, principal, meta: {}, notes: new Map() };
}

describe("per-user sessions", () => {
  const made: (UserAccess | undefined)[] = [];
  const credentials = perUserCredentials(
    {
      type: "per-principal",
      principals: { alice: "alice-key" },
      roles: { ops: "ops-key" },
      header: "Authorization",
      scheme: "Bearer",
    },
    { server: "crm", url: "https://crm.example.com/mcp", gatewayAudiences: () => [] },
  );
  const backend = new IsolatedBackend(
    "crm",
    perUserPartitioning({
      server: "crm",
      credentials,
      perSession: false,
      make: (access) => {
        made.push(access);
        return backendFor(access);
      },
    }),
    { max: 2, idleTimeoutMs: 60_000 },
    createLogger({ level: "silent" }),
  );
  const call = async (principal: Principal) => {
    const ctx = ctxOf(principal);
    const result = await backend.callTool({ server: "crm", tool: "t", args: {} }, ctx);
    return {
      text: (result.content[0] as { text: string }).text,
      upstreamAs: ctx.notes.get(NOTE_UPSTREAM_AS),
    };
  };

  test("each user's instance carries that user's credential only; the primary the server's own", async () => {
    assert.equal(made.length, 1);
    assert.equal(made[0], undefined, "the primary is made first, with the server's own headers");
    assert.deepEqual(await call({ id: "alice", roles: [] }), {
      text: "Bearer alice-key",
      upstreamAs: "alice",
    });
    assert.deepEqual(await call({ id: "frank", roles: ["ops"] }), {
      text: "Bearer ops-key",
      upstreamAs: "role:ops",
    });
    assert.deepEqual(await Promise.all(made.map(sent)), ["primary", "Bearer alice-key", "Bearer ops-key"]);
    assert.ok(
      made.slice(1).every((access) => access?.headers === undefined),
      "no server headers on users'",
    );
    assert.equal(backend.sessions, 2);
  });

  test("a caller without a credential is refused before an instance is made", async () => {
    const before = made.length;
    await assert.rejects(call({ id: "grace", roles: [] }), (error: unknown) => {
      assert.ok(error instanceof GatewayError);
      assert.equal(error.code, "forbidden");
      assert.doesNotMatch(error.message, /alice-key|ops-key/);
      return true;
    });
    assert.equal(made.length, before);
  });

  test("sessionLimits.max bounds the users with a session of their own", async () => {
    await assert.rejects(call({ id: "heidi", roles: ["ops"] }), /already runs 2 users.*sessionLimits\.max/);
    await backend.close();
  });
});
