/**
 * The path-equivalence contract: the same requests over every request path — HTTP and stdio, both
 * eras, the SDK's path and the gateway's plain paths (test/support/request-paths.ts) — get the same
 * answers, byte for byte. Within an era the raw JSON text of each response must be identical; across
 * eras, identical once the 2026-07-28 envelope (`resultType`, the server's identity in `_meta`) is
 * set aside. A path that answered differently would show a client which path it took.
 */
import assert from "node:assert/strict";
import { randomBytes } from "node:crypto";
import { after, before, describe, test } from "node:test";
import {
  fixtureServer,
  type RunningGateway,
  startHttpGateway,
  writeConfig,
} from "../support/gateway-process.ts";
import {
  type Exchange,
  type JsonRpcMessage,
  type PathSession,
  type RequestOptions,
  type RequestPath,
  requestPaths,
} from "../support/request-paths.ts";

const SECRET = `pathsecret-${randomBytes(8).toString("hex")}`;
const ENV_VAR = `SB_E2E_PATHS_${randomBytes(4).toString("hex").toUpperCase()}`;

const configPath = writeConfig({
  mcpServers: {
    fx: fixtureServer({}, { S1: `\${secret:env:${ENV_VAR}}` }),
    // The same server with a short time limit, for the timeout case.
    to: fixtureServer({ timeoutMs: 300 }),
  },
});

/** Each case: one request (or a request and a cancel) and what its answer must show on every path. */
interface Case {
  readonly name: string;
  readonly method?: string;
  readonly params: Record<string, unknown>;
  readonly options?: RequestOptions;
  /** Checked on one answer; the rest must equal it. */
  readonly check: (exchange: Exchange) => void;
}

const resultOf = (e: Exchange) => e.response.result as Record<string, unknown> & { content?: unknown[] };
const errorOf = (e: Exchange) => e.response.error as { code: number; message: string; data?: unknown };

const CASES: Case[] = [
  {
    name: "a result with every content type, structured content and _meta",
    params: { name: "fx__all_content", arguments: {} },
    check: (e) => {
      const types = (resultOf(e).content as { type: string }[]).map((c) => c.type);
      assert.deepEqual(types, ["text", "image", "audio", "resource", "resource_link"]);
      assert.deepEqual(resultOf(e).structuredContent, { ok: true, n: 1 });
    },
  },
  {
    name: "a malformed result from the backend",
    params: { name: "fx__malformed", arguments: {} },
    check: (e) => {
      assert.equal(resultOf(e).isError, true);
      assert.match(JSON.stringify(resultOf(e).content), /not valid MCP/);
    },
  },
  {
    name: "an isError result",
    params: { name: "fx__fail", arguments: { reason: "no luck" } },
    check: (e) => {
      assert.equal(resultOf(e).isError, true);
      assert.deepEqual(resultOf(e).content, [{ type: "text", text: "no luck" }]);
    },
  },
  {
    name: "an unknown tool",
    params: { name: "fx__nope", arguments: {} },
    check: (e) => assert.match(errorOf(e).message, /Tool "fx__nope" does not exist/),
  },
  {
    name: "invalid arguments: a tool error the model can read",
    params: { name: "fx__echo", arguments: { message: 5 } },
    check: (e) => {
      assert.equal(resultOf(e).isError, true);
      assert.match(JSON.stringify(resultOf(e).content), /\/message must be string/);
      assert.equal(
        (resultOf(e)._meta as Record<string, { code: string }>)["switchboard/error"]?.code,
        "invalid_arguments",
      );
    },
  },
  {
    name: "a call that outruns its time limit",
    params: { name: "to__slow", arguments: { ms: 5_000 } },
    check: (e) => {
      assert.equal(resultOf(e).isError, true);
      assert.match(JSON.stringify(resultOf(e)), /timeout/);
    },
  },
  {
    name: "progress",
    params: { name: "fx__slow", arguments: { ms: 50 } },
    options: { progress: true },
    check: (e) => {
      assert.deepEqual(resultOf(e).content, [{ type: "text", text: "waited 50 ms" }]);
      assert.equal(e.notifications.filter((n) => n.method === "notifications/progress").length, 5);
    },
  },
  {
    name: "a secret in a backend's error",
    params: { name: "fx__leak", arguments: { env: "S1", via: "rpc_error" } },
    check: (e) => {
      assert.match(errorOf(e).message, /\[redacted\]$/);
      assert.ok(!JSON.stringify(e.response).includes(SECRET));
    },
  },
];

/** What differs by era by design: the 2026-07-28 result envelope. */
function withoutEra(message: JsonRpcMessage): unknown {
  const result = message.result as Record<string, unknown> | undefined;
  if (!result) return message;
  const { resultType: _type, _meta, ...rest } = result;
  const meta = { ...(_meta as Record<string, unknown> | undefined) };
  delete meta["io.modelcontextprotocol/serverInfo"];
  return { ...message, result: Object.keys(meta).length > 0 ? { ...rest, _meta: meta } : rest };
}

let gateway: RunningGateway;
const paths: RequestPath[] = requestPaths(configPath, () => gateway.url, { env: { [ENV_VAR]: SECRET } });
const sessions = new Map<string, PathSession>();
/** Per case: each path's exchange. */
const answers = new Map<string, Map<string, Exchange>>();

before(async () => {
  gateway = await startHttpGateway(configPath, [], { [ENV_VAR]: SECRET });
  for (const path of paths) sessions.set(path.name, await path.open());
  for (const c of CASES) {
    const byPath = new Map<string, Exchange>();
    for (const path of paths) {
      const session = sessions.get(path.name) as PathSession;
      byPath.set(path.name, await session.request(c.method ?? "tools/call", c.params, c.options));
    }
    answers.set(c.name, byPath);
  }
});

after(async () => {
  await Promise.all([...sessions.values()].map((s) => s.close()));
  await gateway?.stop();
});

describe("every request path answers the same", () => {
  for (const c of CASES) {
    test(c.name, () => {
      const byPath = answers.get(c.name) as Map<string, Exchange>;
      for (const [name, exchange] of byPath) {
        try {
          c.check(exchange);
        } catch (error) {
          throw new Error(`${name}: ${(error as Error).message}\n${exchange.raw}`);
        }
      }
      for (const era of ["2025", "2026-07-28"] as const) {
        const inEra = paths.filter((p) => p.era === era);
        const [first, ...rest] = inEra.map((p) => ({ name: p.name, raw: byPath.get(p.name)?.raw }));
        for (const other of rest) {
          assert.equal(other.raw, first?.raw, `${other.name} answers like ${first?.name}, byte for byte`);
        }
      }
      const reference = withoutEra((byPath.get(paths[0]?.name ?? "") as Exchange).response);
      for (const path of paths) {
        assert.deepEqual(
          withoutEra((byPath.get(path.name) as Exchange).response),
          reference,
          `${path.name} answers like ${paths[0]?.name}, once the era's envelope is set aside`,
        );
      }
      const progress = (e: Exchange) =>
        JSON.stringify(e.notifications.filter((n) => n.method === "notifications/progress"));
      const [head, ...others] = [...byPath.values()].map(progress);
      for (const other of others) assert.equal(other, head, "the same progress notifications");
    });
  }

  test("cancellation: the backend call is cancelled and no response is sent", async () => {
    for (const path of paths.filter((p) => p.era === "2025" || p.transport === "stdio")) {
      const session = sessions.get(path.name) as PathSession;
      const before = await stats(session);
      const { id, exchange } = session.send("tools/call", { name: "fx__slow", arguments: { ms: 3_000 } });
      exchange.catch(() => undefined);
      // Cancelled once the backend has the call (its call count says so), so that it has one to cancel.
      await until(async () => (await stats(session)).calls > before.calls, `${path.name}: the call started`);
      await session.notify("notifications/cancelled", { requestId: id, reason: "changed my mind" });
      await until(
        async () => (await stats(session)).cancelled > before.cancelled,
        `${path.name}: the backend saw the cancellation`,
      );
    }
  });
});

async function stats(session: PathSession): Promise<{ calls: number; cancelled: number }> {
  const answer = await session.request("tools/call", { name: "fx__stats", arguments: {} });
  return resultOf(answer).structuredContent as { calls: number; cancelled: number };
}

/** Polls until `check` holds; fails the test when 10 s pass first. */
async function until(check: () => Promise<boolean>, what: string): Promise<void> {
  const deadline = Date.now() + 10_000;
  while (!(await check())) {
    assert.ok(Date.now() < deadline, `timed out waiting until ${what}`);
    await new Promise((resolve) => setTimeout(resolve, 50));
  }
}
