/**
 * Two (three) principals on one HTTP gateway, each with a valid key: what one may do to another, over
 * both protocol eras. A session, its streams and its calls belong to whoever opened it; another
 * principal holding its id gets what it would get for a session that does not exist. A client hears
 * only what its access rules let it see: log messages, resource updates, statistics and health of
 * servers it may use. One client's log level does not silence another's. A token's subject is not an
 * API key's id. A signature covers its sender. Ambiguous credentials are refused.
 */
import assert from "node:assert/strict";
import { createHash, randomBytes } from "node:crypto";
import { connect } from "node:net";
import { after, before, describe, test } from "node:test";
import { SignJWT } from "jose";
import { signToolCall } from "../../src/security/signing.ts";
import {
  fixtureServer,
  type RunningGateway,
  startHttpGateway,
  writeConfig,
} from "../support/gateway-process.ts";
import {
  httpPaths,
  type JsonRpcMessage,
  MODERN_VERSION,
  type PathSession,
  type RequestPath,
} from "../support/request-paths.ts";

const key = (label: string) => `sk_${label}_${randomBytes(18).toString("base64url")}`;
const KEYS = { alice: key("alice"), bob: key("bob"), carol: key("carol") };
const JWT_SECRET = randomBytes(32).toString("hex");
const SIGNING_SECRET = randomBytes(24).toString("hex");
const sha256 = (text: string) => createHash("sha256").update(text, "utf8").digest("hex");
const auth = (who: keyof typeof KEYS) => ({ authorization: `Bearer ${KEYS[who]}` });
const FX_DOC = "fixture://fx/doc";
const OT_DOC = "fixture://ot/doc";

const configPath = writeConfig({
  mcpServers: {
    fx: fixtureServer({}, { FIXTURE_DOC_URI: FX_DOC }),
    ot: fixtureServer({}, { FIXTURE_DOC_URI: OT_DOC }),
  },
  auth: {
    apiKeys: Object.entries(KEYS).map(([id, value]) => ({ id, sha256: sha256(value) })),
    jwt: { secret: JWT_SECRET, audience: "switchboard" },
  },
  access: {
    rules: [
      { principals: ["alice", "carol"], allow: ["server:fx", "switchboard__*"] },
      { principals: ["bob"], allow: ["server:ot", "switchboard__*"] },
    ],
  },
  signing: { keys: [{ id: "k1", secret: SIGNING_SECRET }], require: { tools: [] } },
});

let gateway: RunningGateway;
const url = () => gateway.url;

before(async () => {
  gateway = await startHttpGateway(configPath);
});

after(async () => {
  await gateway?.stop();
});

const toolCall = (name: string, args: Record<string, unknown> = {}) => ({ name, arguments: args });
const resultOf = (m: JsonRpcMessage) => m.result as { content?: { text?: string }[]; isError?: boolean };
const textOf = (m: JsonRpcMessage) =>
  resultOf(m)
    .content?.map((c) => c.text ?? "")
    .join("\n") ?? "";

async function post(body: unknown, headers: Record<string, string>) {
  const response = await fetch(url(), {
    method: "POST",
    headers: {
      "content-type": "application/json",
      accept: "application/json, text/event-stream",
      ...headers,
    },
    body: JSON.stringify(body),
    signal: AbortSignal.timeout(15_000),
  });
  return { status: response.status, text: await response.text(), headers: response.headers };
}

/** A raw 2025-era session id opened by `who` (initialize, then initialized). */
async function openSession(who: keyof typeof KEYS): Promise<string> {
  const init = await post(
    {
      jsonrpc: "2.0",
      id: 0,
      method: "initialize",
      params: { protocolVersion: "2025-11-25", capabilities: {}, clientInfo: { name: who, version: "1" } },
    },
    auth(who),
  );
  const id = init.headers.get("mcp-session-id");
  assert.ok(id, init.text);
  await post({ jsonrpc: "2.0", method: "notifications/initialized" }, { ...auth(who), "mcp-session-id": id });
  return id;
}

describe("a session belongs to whoever opened it (2025-era)", () => {
  test("another principal with the session id is answered as for a session that does not exist", async () => {
    const session = await openSession("alice");
    const asBob = { ...auth("bob"), "mcp-session-id": session };
    const asNobody = { ...auth("bob"), "mcp-session-id": "00000000-0000-4000-8000-000000000000" };
    const list = { jsonrpc: "2.0", id: 5, method: "tools/list", params: {} };

    const stolen = await post(list, asBob);
    const missing = await post(list, asNobody);
    assert.equal(stolen.status, 404);
    assert.equal(missing.status, 404);
    assert.equal(
      stolen.text.replace(session, "ID"),
      missing.text.replace("00000000-0000-4000-8000-000000000000", "ID"),
      "the refusal says nothing that a made-up id would not",
    );

    // Its server-to-client stream cannot be opened, nor the session ended.
    const stream = await fetch(url(), { method: "GET", headers: { accept: "text/event-stream", ...asBob } });
    assert.equal(stream.status, 404);
    await stream.body?.cancel();
    const ended = await fetch(url(), { method: "DELETE", headers: asBob });
    assert.equal(ended.status, 404);
    await ended.body?.cancel();

    // Alice's own use keeps working.
    const mine = await post(list, { ...auth("alice"), "mcp-session-id": session });
    assert.equal(mine.status, 200);
    assert.match(mine.text, /fx__echo/);
    const end = await fetch(url(), {
      method: "DELETE",
      headers: { ...auth("alice"), "mcp-session-id": session },
    });
    assert.equal(end.status, 200);
    await end.body?.cancel();
  });

  for (const [label, capabilities] of [
    ["plain-JSON path", {}],
    ["SDK path", { elicitation: {} }],
  ] as const) {
    test(`another principal cannot cancel a call (${label})`, async () => {
      const init = await post(
        {
          jsonrpc: "2.0",
          id: 0,
          method: "initialize",
          params: {
            protocolVersion: "2025-11-25",
            capabilities,
            clientInfo: { name: "alice", version: "1" },
          },
        },
        auth("alice"),
      );
      const session = init.headers.get("mcp-session-id") as string;
      const mine = { ...auth("alice"), "mcp-session-id": session };
      await post({ jsonrpc: "2.0", method: "notifications/initialized" }, mine);
      const call = post(
        { jsonrpc: "2.0", id: 41, method: "tools/call", params: toolCall("fx__slow", { ms: 400 }) },
        mine,
      );
      const cancel = await post(
        { jsonrpc: "2.0", method: "notifications/cancelled", params: { requestId: 41, reason: "mine now" } },
        { ...auth("bob"), "mcp-session-id": session },
      );
      assert.equal(cancel.status, 404);
      const answered = await call;
      assert.equal(answered.status, 200);
      assert.match(answered.text, /waited 400 ms/, "the call ran to its end");
    });
  }
});

/** A `subscriptions/listen` stream of a 2026-07-28 client: every message it receives. */
async function listen(headers: Record<string, string>, uris: string[]) {
  const controller = new AbortController();
  const response = await fetch(url(), {
    method: "POST",
    headers: {
      "content-type": "application/json",
      accept: "application/json, text/event-stream",
      "mcp-protocol-version": MODERN_VERSION,
      "mcp-method": "subscriptions/listen",
      ...headers,
    },
    body: JSON.stringify({
      jsonrpc: "2.0",
      id: "listen",
      method: "subscriptions/listen",
      params: {
        notifications: { resourceSubscriptions: uris },
        _meta: {
          "io.modelcontextprotocol/protocolVersion": MODERN_VERSION,
          "io.modelcontextprotocol/clientInfo": { name: "listener", version: "1" },
          "io.modelcontextprotocol/clientCapabilities": {},
        },
      },
    }),
    signal: controller.signal,
  });
  assert.equal(response.status, 200);
  const received: JsonRpcMessage[] = [];
  const waiters: { match: (m: JsonRpcMessage) => boolean; resolve: () => void }[] = [];
  void (async () => {
    const decoder = new TextDecoder();
    let buffer = "";
    try {
      for await (const chunk of response.body as AsyncIterable<Uint8Array>) {
        buffer += decoder.decode(chunk, { stream: true });
        let end = buffer.indexOf("\n\n");
        while (end >= 0) {
          const data = buffer
            .slice(0, end)
            .split("\n")
            .filter((l) => l.startsWith("data:"))
            .map((l) => l.slice(5).trim())
            .join("");
          buffer = buffer.slice(end + 2);
          if (data) {
            const message = JSON.parse(data) as JsonRpcMessage;
            received.push(message);
            for (const w of [...waiters]) if (w.match(message)) w.resolve();
          }
          end = buffer.indexOf("\n\n");
        }
      }
    } catch {
      // closed
    }
  })();
  return {
    received,
    until(match: (m: JsonRpcMessage) => boolean, timeoutMs = 10_000) {
      if (received.some(match)) return Promise.resolve();
      return new Promise<void>((resolve, reject) => {
        const timer = setTimeout(
          () => reject(new Error(`listen stream: timed out; received ${JSON.stringify(received)}`)),
          timeoutMs,
        );
        waiters.push({
          match,
          resolve: () => {
            clearTimeout(timer);
            resolve();
          },
        });
      });
    },
    close: () => controller.abort(),
  };
}

const updated = (uri: string) => (m: JsonRpcMessage) =>
  m.method === "notifications/resources/updated" && m.params?.uri === uri;

describe("a client sees only what its rules allow", () => {
  for (const path of httpPaths(url)) {
    describe(path.name, () => {
      const sessions: PathSession[] = [];
      const as = async (who: keyof typeof KEYS, on: RequestPath = path) => {
        const session = await withHeaders(on, auth(who)).open();
        sessions.push(session);
        return session;
      };
      after(async () => {
        await Promise.all(sessions.map((s) => s.close()));
      });

      test("switchboard__metrics and switchboard__health show only the servers the caller may use", async () => {
        const alice = await as("alice");
        const bob = await as("bob");
        await alice.request("tools/call", toolCall("fx__echo", { message: "counted" }));
        await bob.request("tools/call", toolCall("ot__echo", { message: "counted" }));
        const metrics = await bob.request("tools/call", toolCall("switchboard__metrics"));
        const tools = Object.keys(JSON.parse(textOf(metrics.response)).tools as object);
        assert.ok(tools.includes("ot__echo"), tools.join(","));
        assert.ok(
          !tools.some((t) => t.startsWith("fx__")),
          `bob sees only ot's statistics: ${tools.join(",")}`,
        );
        const health = await bob.request("tools/call", toolCall("switchboard__health"));
        const checks = Object.keys(JSON.parse(textOf(health.response)).checks as object);
        assert.ok(checks.includes("ot") && !checks.includes("fx"), checks.join(","));
        const aliceHealth = await alice.request("tools/call", toolCall("switchboard__health"));
        const aliceChecks = Object.keys(JSON.parse(textOf(aliceHealth.response)).checks as object);
        assert.ok(aliceChecks.includes("fx") && !aliceChecks.includes("ot"), aliceChecks.join(","));
      });

      test("a signed call captured from one principal is refused when another sends it", async () => {
        const carol = await as("carol");
        const alice = await as("alice");
        const args = { message: "signed by alice" };
        const signed = signToolCall({
          tool: "fx__echo",
          arguments: args,
          principal: "alice",
          keyId: "k1",
          secret: SIGNING_SECRET,
        });
        const stolen = await carol.request("tools/call", toolCall("fx__echo", args), { meta: signed });
        assert.equal(resultOf(stolen.response).isError, true);
        assert.match(textOf(stolen.response), /does not match the tool name, arguments, caller/);
        const genuine = await alice.request("tools/call", toolCall("fx__echo", args), { meta: signed });
        assert.equal(textOf(genuine.response), "signed by alice");
      });

      test("a token whose subject is an API key's id does not get that key's rules", async () => {
        const token = await new SignJWT({})
          .setProtectedHeader({ alg: "HS256" })
          .setSubject("alice")
          .setAudience("switchboard")
          .setExpirationTime("5m")
          .sign(new TextEncoder().encode(JWT_SECRET));
        const impostor = await withHeaders(path, { authorization: `Bearer ${token}` }).open();
        sessions.push(impostor);
        const listed = await impostor.request("tools/list", {});
        assert.deepEqual(listed.response.result?.tools, [], "jwt:alice has no rules, so sees nothing");
        const refused = await impostor.request("tools/call", toolCall("fx__echo", { message: "x" }));
        assert.match(JSON.stringify(refused.response), /principal 'jwt:alice'/);
      });

      if (path.era === "2025") {
        // First of the tests that set log levels: a quieter level is only visible while no other open
        // session asked for a more verbose one.
        test("one client's log level does not silence another client's calls", async () => {
          const alice = await as("alice");
          const carol = await as("carol", sdkPathOf(path));
          await alice.request("logging/setLevel", { level: "error" });
          // fx__log sends a warning about carol's call; carol set no level, so she gets it.
          const exchange = await carol.request("tools/call", toolCall("fx__log", { text: "for carol" }), {
            progress: true,
          });
          assert.ok(
            exchange.notifications.some(
              (n) => n.method === "notifications/message" && n.params?.data === "for carol",
            ),
            `carol's call brings its warning: ${JSON.stringify(exchange.notifications)}`,
          );
        });
        test("resources/subscribe to a server the caller may not use is refused", async () => {
          const bob = await as("bob");
          const refused = await bob.request("resources/subscribe", { uri: FX_DOC });
          assert.ok(refused.response.error, JSON.stringify(refused.response));
          assert.match(refused.response.error.message, /Access denied: principal 'bob'/);
          const allowed = await bob.request("resources/subscribe", { uri: OT_DOC });
          assert.deepEqual(allowed.response.result, {});
        });

        test("log messages outside any call reach only clients that asked and may see their server", async () => {
          const alice = await as("alice");
          const bob = await as("bob");
          const quiet = await as("carol");
          await alice.request("logging/setLevel", { level: "debug" });
          await bob.request("logging/setLevel", { level: "debug" });
          const marker = randomBytes(6).toString("hex");
          await alice.request("tools/call", toolCall("fx__log_later", { text: `fx ${marker}`, delayMs: 10 }));
          const fromFx = (m: JsonRpcMessage) =>
            m.method === "notifications/message" && m.params?.data === `fx ${marker}`;
          await alice.waitForBackground(fromFx);
          // Bob hears his own server's message, sent after fx's was delivered: fx's would be here by now.
          await bob.request("tools/call", toolCall("ot__log_later", { text: `ot ${marker}`, delayMs: 10 }));
          await bob.waitForBackground((m) => m.params?.data === `ot ${marker}`);
          assert.ok(!bob.background.some(fromFx), "bob may not see fx: none of its log messages");
          assert.ok(!alice.background.some((m) => m.params?.data === `ot ${marker}`), "nor alice ot's");
          assert.ok(!quiet.background.some(fromFx), "carol asked for no log messages");
        });
      } else {
        test("a listen stream never carries updates of resources the caller may not read", async () => {
          const alice = await as("alice", legacyPath());
          await alice.request("resources/subscribe", { uri: FX_DOC });
          const bobs = await listen(auth("bob"), [FX_DOC, OT_DOC]);
          try {
            await alice.request("tools/call", toolCall("fx__touch"));
            await alice.waitForBackground(updated(FX_DOC));
            const bob = await as("bob");
            await bob.request("tools/call", toolCall("ot__touch"));
            await bobs.until(updated(OT_DOC));
            assert.ok(!bobs.received.some(updated(FX_DOC)), JSON.stringify(bobs.received));
          } finally {
            bobs.close();
          }
        });
      }
    });
  }

  test("credentials sent twice are refused as ambiguous, whichever comes first", async () => {
    for (const [first, second] of [
      ["alice", "bob"],
      ["bob", "alice"],
    ] as const) {
      // Raw bytes: fetch and node:http would merge or drop a repeated header before it left.
      const target = new URL(url());
      const body = JSON.stringify({ jsonrpc: "2.0", id: 1, method: "tools/list", params: {} });
      const answer = await new Promise<string>((resolve, reject) => {
        const socket = connect(Number(target.port), target.hostname, () => {
          socket.end(
            [
              `POST ${target.pathname} HTTP/1.1`,
              `Host: ${target.host}`,
              "Content-Type: application/json",
              "Accept: application/json, text/event-stream",
              `Authorization: Bearer ${KEYS[first]}`,
              `Authorization: Bearer ${KEYS[second]}`,
              `Content-Length: ${Buffer.byteLength(body)}`,
              "Connection: close",
              "",
              body,
            ].join("\r\n"),
          );
        });
        let text = "";
        socket.setEncoding("utf8").on("data", (chunk: string) => {
          text += chunk;
        });
        socket.on("end", () => resolve(text));
        socket.on("error", reject);
      });
      const status = Number(answer.split(" ", 2)[1]);
      assert.match(
        answer,
        /Authorization header was sent more than once|authorization header was sent more than once/i,
      );
      assert.equal(status, 400);
    }
  });
});

/** The same path with credentials on every request. */
function withHeaders(path: RequestPath, headers: Record<string, string>): RequestPath {
  const [same] = httpPaths(url, headers).filter((p) => p.name === path.name);
  assert.ok(same);
  return same;
}

/** The SDK-path twin of a 2025-era HTTP path (a call with progress needs its stream). */
function sdkPathOf(path: RequestPath): RequestPath {
  return httpPaths(url).find((p) => p.era === path.era && p.name.includes("SDK")) ?? path;
}

function legacyPath(): RequestPath {
  return httpPaths(url).find((p) => p.era === "2025") as RequestPath;
}
