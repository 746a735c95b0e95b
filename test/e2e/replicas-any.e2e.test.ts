/**
 * Any request on any replica: three Switchboard replicas (the built CLI, one Redis under a prefix of
 * this run's own, each with its own fixture-server backend process) behind a round-robin load balancer
 * on loopback that has no stickiness at all (test/support/round-robin-proxy.ts). Clients of both SDKs
 * and both eras list, call with progress, answer an elicitation in the middle of a call, set a log
 * level and get log messages, and subscribe to a resource and get its update, while consecutive
 * requests of one client land on different replicas; the balancer's record shows where each went.
 *
 * Then one replica is killed with SIGKILL while a slow call runs on it: that call fails, and every
 * session it opened keeps working through the others.
 */
import assert from "node:assert/strict";
import { createHash, randomUUID } from "node:crypto";
import { after, before, test } from "node:test";
import { Client as ClientV2, StreamableHTTPClientTransport as HttpV2 } from "@modelcontextprotocol/client";
import { Client as ClientV1 } from "@modelcontextprotocol/sdk/client/index.js";
import { StreamableHTTPClientTransport as HttpV1 } from "@modelcontextprotocol/sdk/client/streamableHttp.js";
import {
  ElicitRequestSchema,
  LoggingMessageNotificationSchema,
  ResourceUpdatedNotificationSchema,
} from "@modelcontextprotocol/sdk/types.js";
import {
  eventually,
  fixtureServer,
  type RunningGateway,
  startHttpGateway,
  writeConfig,
} from "../support/gateway-process.ts";
import { listenForLogs, type ToolResult, textOf } from "../support/mcp-client.ts";
import { deleteByPrefix, describeWithRedis, uniquePrefix } from "../support/redis.ts";
import { type RoundRobinProxy, startRoundRobinProxy } from "../support/round-robin-proxy.ts";

const TIMEOUT = { timeout: 20_000 };
const ANSWER = { action: "accept", content: { answer: "forty-two" } } as const;

/** What a client flavor does in the scenario, whatever its SDK. */
interface Flavor {
  readonly logs: string[];
  readonly updates: string[];
  sessionId(): string | undefined;
  listTools(): Promise<string[]>;
  call(
    name: string,
    args: Record<string, unknown>,
    onProgress?: () => void,
    signal?: AbortSignal,
  ): Promise<ToolResult>;
  setLogLevel(level: "error" | "debug"): Promise<void>;
  subscribe(uri: string): Promise<void>;
  firstResourceUri(): Promise<string>;
  close(): Promise<void>;
}

async function v1Client(url: string): Promise<Flavor> {
  const logs: string[] = [];
  const updates: string[] = [];
  const client = new ClientV1(
    { name: "any-replica-v1", version: "1" },
    { capabilities: { elicitation: {} } },
  );
  client.setRequestHandler(ElicitRequestSchema, async () => ANSWER);
  client.setNotificationHandler(
    LoggingMessageNotificationSchema,
    (n) => void logs.push(String(n.params.data)),
  );
  client.setNotificationHandler(ResourceUpdatedNotificationSchema, (n) => void updates.push(n.params.uri));
  const transport = new HttpV1(new URL(url));
  await client.connect(transport);
  return {
    logs,
    updates,
    sessionId: () => transport.sessionId,
    listTools: async () => (await client.listTools()).tools.map((t) => t.name),
    call: (name, args, onProgress, signal) =>
      client.callTool({ name, arguments: args }, undefined, {
        ...TIMEOUT,
        ...(onProgress ? { onprogress: onProgress } : {}),
        ...(signal ? { signal } : {}),
      }) as Promise<ToolResult>,
    setLogLevel: async (level) => void (await client.setLoggingLevel(level)),
    subscribe: async (uri) => void (await client.subscribeResource({ uri })),
    firstResourceUri: async () => (await client.listResources()).resources[0]?.uri ?? "",
    close: () => client.close(),
  };
}

async function v2Client(url: string, era: "legacy" | "modern"): Promise<Flavor> {
  const logs: string[] = [];
  const updates: string[] = [];
  const client = new ClientV2({ name: `any-replica-v2-${era}`, version: "1" }, {
    capabilities: { elicitation: { form: {} } },
    versionNegotiation: { mode: era === "legacy" ? "legacy" : { pin: "2026-07-28" } },
  } as never);
  client.setRequestHandler("elicitation/create", async () => ANSWER as never);
  client.setNotificationHandler("notifications/message", (n) => void logs.push(String(n.params.data)));
  client.setNotificationHandler("notifications/resources/updated", (n) => void updates.push(n.params.uri));
  const transport = new HttpV2(new URL(url));
  await client.connect(transport);
  let logLevel: string | undefined;
  return {
    logs,
    updates,
    sessionId: () => transport.sessionId,
    listTools: async () => (await client.listTools()).tools.map((t) => t.name),
    call: (name, args, onProgress) =>
      client.callTool(
        {
          name,
          arguments: args,
          // A 2026-07-28 client names its log level on each request.
          ...(era === "modern" && logLevel
            ? { _meta: { "io.modelcontextprotocol/logLevel": logLevel } }
            : {}),
        },
        { ...TIMEOUT, ...(onProgress ? { onprogress: onProgress } : {}) },
      ) as Promise<ToolResult>,
    setLogLevel: async (level) => {
      if (era === "legacy") await client.setLoggingLevel(level);
      logLevel = level;
    },
    subscribe: async (uri) => {
      if (era === "legacy") await client.subscribeResource({ uri });
      else await client.listen({ resourceSubscriptions: [uri] });
    },
    firstResourceUri: async () => (await client.listResources()).resources[0]?.uri ?? "",
    close: () => client.close(),
  };
}

/** One raw 2026-07-28 tools/call (a client that keeps its requestState to retry it later). */
async function modernCall(
  url: string,
  params: Record<string, unknown>,
): Promise<{ result?: Record<string, unknown>; error?: { message: string } }> {
  const response = await fetch(url, {
    method: "POST",
    headers: {
      "content-type": "application/json",
      accept: "application/json, text/event-stream",
      "mcp-protocol-version": "2026-07-28",
      "mcp-method": "tools/call",
      "mcp-name": String(params.name),
    },
    body: JSON.stringify({
      jsonrpc: "2.0",
      id: 7,
      method: "tools/call",
      params: {
        ...params,
        _meta: {
          "io.modelcontextprotocol/protocolVersion": "2026-07-28",
          "io.modelcontextprotocol/clientInfo": { name: "any-replica-raw", version: "1" },
          "io.modelcontextprotocol/clientCapabilities": { elicitation: { form: {} } },
        },
      },
    }),
  });
  const text = await response.text();
  const data = text
    .split("\n")
    .filter((line) => line.startsWith("data:"))
    .map((line) => line.slice(5).trim())
    .filter((line) => line.length > 0);
  const messages = (data.length > 0 ? data : [text]).map((m) => JSON.parse(m) as { id?: unknown });
  const answer = messages.find((m) => m.id === 7);
  assert.ok(answer, `no answer (HTTP ${response.status}): ${text}`);
  return answer as { result?: Record<string, unknown>; error?: { message: string } };
}

describeWithRedis("any request on any replica, behind a round-robin balancer", (redisUrl) => {
  const prefix = uniquePrefix("replicas-any");
  const configPath = writeConfig({
    mcpServers: { fx: fixtureServer() },
    // A command slowed past the 1 s default by a loaded test machine would count as an outage.
    store: { type: "redis", url: redisUrl, keyPrefix: prefix, commandTimeoutMs: 10_000 },
  });
  let gateways: RunningGateway[] = [];
  let proxy: RoundRobinProxy;
  let mcpUrl = "";

  before(async () => {
    gateways = await Promise.all([0, 1, 2].map(() => startHttpGateway(configPath)));
    const first = new URL((gateways[0] as RunningGateway).url);
    proxy = await startRoundRobinProxy(gateways.map((g) => new URL(g.url).origin));
    mcpUrl = `${proxy.url}${first.pathname}`;
  });

  after(async () => {
    await proxy?.close();
    await Promise.all(gateways.map((g) => g.stop()));
    await deleteByPrefix(redisUrl, prefix);
  });

  /** The replicas that served a session's requests, in order. */
  const landedOn = (session: string | undefined) =>
    proxy.served.filter((s) => session !== undefined && s.session === session).map((s) => s.upstream);

  /** The replica holding a client's notification stream: a session's GET, or a 2026-07-28 listen. */
  const streamOf = (session: string | undefined, since: number) =>
    proxy.served
      .slice(since)
      .find((s) =>
        session === undefined
          ? s.rpc === "subscriptions/listen"
          : s.method === "GET" && s.session === session,
      )?.upstream;

  const scenario = async (flavor: Flavor, stateless: boolean) => {
    const servedBefore = proxy.served.length;
    const tools = await flavor.listTools();
    assert.ok(tools.includes("fx__slow") && tools.includes("fx__ask"), tools.join(", "));

    let progress = 0;
    const slow = await flavor.call("fx__slow", { ms: 100 }, () => progress++);
    assert.equal(slow.isError, undefined, textOf(slow));
    assert.equal(progress, 5, "every progress notification of the call arrived");

    // Asked until the client's answer lands on a replica other than the one that started the call: a
    // 2025-era client's answer is a POST of its own; a 2026-07-28 client retries the call with it.
    let crossed = false;
    for (let i = 0; i < 6 && !crossed; i++) {
      const from = proxy.served.length;
      const asked = await flavor.call("fx__ask", { question: "The answer?" });
      assert.equal(asked.isError, undefined, textOf(asked));
      assert.match(textOf(asked), /forty-two/, "the elicitation answered mid-call reached the backend");
      const exchange = proxy.served.slice(from).filter((s) => s.method === "POST");
      const started = exchange.find((s) => s.rpc === "tools/call")?.upstream;
      const answered = stateless
        ? exchange.filter((s) => s.rpc === "tools/call")[1]?.upstream
        : exchange.find((s) => s.rpc === undefined)?.upstream;
      crossed = answered !== undefined && answered !== started;
    }
    assert.ok(crossed, "an answer landed on another replica than its call");

    // The level set through one replica filters the log messages of calls served by the others.
    await flavor.setLogLevel("error");
    await flavor.call("fx__log", { text: "filtered out" });
    await flavor.setLogLevel("debug");
    const logged = await flavor.call("fx__log", { text: "hello from a call" });
    assert.equal(logged.isError, undefined, textOf(logged));
    await eventually(() => flavor.logs.includes("hello from a call"), 10_000, "the call's log message");
    assert.ok(!flavor.logs.includes("filtered out"), "a warning was sent to a client that asked for errors");

    const uri = await flavor.firstResourceUri();
    await flavor.subscribe(uri);
    const stream = streamOf(flavor.sessionId(), servedBefore);
    assert.notEqual(stream, undefined, "the client holds a stream for notifications");
    // Touched through a replica other than the one holding the client's stream: that replica's own
    // backend announces the update, and the stream's replica must get it to the client.
    for (;;) {
      const from = proxy.served.length;
      await flavor.call("fx__touch", {});
      if (proxy.served.slice(from).some((s) => s.rpc === "tools/call" && s.upstream !== stream)) break;
    }
    await eventually(() => flavor.updates.includes(uri), 10_000, `the update of ${uri}`);

    if (!stateless) {
      // A log message a backend sends after the call that caused it ended goes on the session's stream,
      // from whichever replica ran the call.
      for (;;) {
        const from = proxy.served.length;
        await flavor.call("fx__log_later", { text: "after the call", delayMs: 50 });
        if (proxy.served.slice(from).some((s) => s.rpc === "tools/call" && s.upstream !== stream)) break;
      }
      await eventually(() => flavor.logs.includes("after the call"), 10_000, "the background log message");
    }

    if (!stateless) {
      const landed = landedOn(flavor.sessionId());
      assert.deepEqual(new Set(landed).size, 3, `the session's requests landed on ${landed.join(",")}`);
      const moves = landed.filter((u, i) => i > 0 && u !== landed[i - 1]).length;
      assert.ok(moves >= landed.length / 2, `consecutive requests moved between replicas: ${landed}`);
    } else {
      const landed = proxy.served.slice(servedBefore).map((s) => s.upstream);
      assert.equal(new Set(landed).size, 3, `the client's requests landed on ${landed.join(",")}`);
    }
  };

  test("an SDK v1 client (2025-era session)", async () => {
    const client = await v1Client(mcpUrl);
    try {
      await scenario(client, false);
    } finally {
      await client.close();
    }
  });

  test("an SDK v2 client in a 2025-era session", async () => {
    const client = await v2Client(mcpUrl, "legacy");
    try {
      await scenario(client, false);
    } finally {
      await client.close();
    }
  });

  test("an SDK v2 client on 2026-07-28 (stateless, input_required rounds)", async () => {
    const client = await v2Client(mcpUrl, "modern");
    try {
      await scenario(client, true);
    } finally {
      await client.close();
    }
  });

  test("a 2026-07-28 listen stream gets the log messages servers send outside calls on other replicas", async () => {
    const from = proxy.served.length;
    const controller = new AbortController();
    const listen = await listenForLogs(mcpUrl, "warning", controller.signal);
    assert.equal(listen.status, 200);
    const stream = proxy.served.slice(from).find((s) => s.rpc === "subscriptions/listen")?.upstream;
    const heard: string[] = [];
    const reading = (async () => {
      const decoder = new TextDecoder();
      for await (const chunk of listen.body as unknown as AsyncIterable<Uint8Array>) {
        heard.push(decoder.decode(chunk, { stream: true }));
      }
    })().catch(() => undefined);
    const client = await v2Client(mcpUrl, "modern");
    try {
      for (;;) {
        const before = proxy.served.length;
        await client.call("fx__log_later", { text: "heard on another replica", delayMs: 50 });
        if (proxy.served.slice(before).some((s) => s.rpc === "tools/call" && s.upstream !== stream)) break;
      }
      await eventually(
        () => heard.join("").includes("heard on another replica"),
        10_000,
        "the log message on the listen stream",
      );
    } finally {
      controller.abort();
      await reading;
      await client.close();
    }
  });

  test("a cancellation that lands on another replica cancels the call where it runs", async () => {
    /** Cancellations every replica's backend saw (each replica has its own backend process). */
    const cancelled = async () => {
      let total = 0;
      for (const gateway of gateways) {
        const direct = await v1Client(gateway.url);
        try {
          const stats = await direct.call("fx__stats", {});
          total += (stats.structuredContent as { cancelled: number }).cancelled;
        } finally {
          await direct.close();
        }
      }
      return total;
    };
    const before = await cancelled();
    const client = await v1Client(mcpUrl);
    try {
      let crossed = false;
      let tries = 0;
      for (; tries < 6 && !crossed; tries++) {
        const from = proxy.served.length;
        const controller = new AbortController();
        const slow = client.call("fx__slow", { ms: 30_000 }, undefined, controller.signal);
        slow.catch(() => undefined);
        let started: number | undefined;
        await eventually(
          () => {
            started = proxy.served
              .slice(from)
              .find((s) => s.rpc === "tools/call" && s.session === client.sessionId())?.upstream;
            return started !== undefined;
          },
          10_000,
          "the call to start",
        );
        controller.abort("the user changed their mind");
        await assert.rejects(slow);
        let cancel: number | undefined;
        await eventually(
          () => {
            cancel = proxy.served.slice(from).find((s) => s.rpc === "notifications/cancelled")?.upstream;
            return cancel !== undefined;
          },
          10_000,
          "the cancellation to be sent",
        );
        crossed = cancel !== started;
      }
      assert.ok(crossed, "a cancellation landed on another replica than its call");
      // Every try was cancelled at its backend, the one whose cancellation crossed included.
      await eventually(
        async () => (await cancelled()) === before + tries,
        15_000,
        "the backends' cancellations",
      );
    } finally {
      await client.close();
    }
  });

  test("a client whose stream dropped resumes it through another replica", async () => {
    const client = await v1Client(mcpUrl);
    try {
      const from = proxy.served.length;
      let progress = 0;
      const slow = client.call("fx__slow", { ms: 1_500 }, () => progress++);
      let started: number | undefined;
      await eventually(
        () => {
          started = proxy.served
            .slice(from)
            .find((s) => s.rpc === "tools/call" && s.session === client.sessionId())?.upstream;
          return started !== undefined;
        },
        10_000,
        "the call's stream to open",
      );
      assert.equal(
        proxy.cut((s) => s.rpc === "tools/call" && s.session === client.sessionId()),
        1,
      );
      const result = await slow;
      assert.equal(textOf(result), "waited 1500 ms", "the result came through the resumed stream");
      const resumed = proxy.served
        .slice(from)
        .filter((s) => s.lastEventId !== undefined && s.method === "GET");
      assert.ok(resumed.length > 0, "the client resumed its stream");
      assert.notEqual(resumed[0]?.upstream, started, "the resumption landed on another replica");
    } finally {
      await client.close();
    }
  });

  // Last: it kills a replica.
  test("a replica killed with SIGKILL takes only its in-flight calls; its sessions live on", async () => {
    // Sessions opened through every replica (the balancer's record says which replica opened each).
    const opened: { client: Flavor; by: number }[] = [];
    for (let i = 0; i < 9 && new Set(opened.map((o) => o.by)).size < 3; i++) {
      const from = proxy.served.length;
      const client = await v1Client(mcpUrl);
      const by = proxy.served.slice(from).find((s) => s.rpc === "initialize")?.upstream;
      assert.notEqual(by, undefined);
      opened.push({ client, by: by as number });
      // A client's opening is three requests: one more moves the next opening to the next replica.
      await fetch(`${proxy.url}/livez`);
    }
    try {
      assert.equal(new Set(opened.map((o) => o.by)).size, 3, "a session was opened through each replica");
      const caller = (opened[0] as { client: Flavor }).client;
      const from = proxy.served.length;
      const slow = caller.call("fx__slow", { ms: 60_000 });
      slow.catch(() => undefined);
      let victim: number | undefined;
      await eventually(
        () => {
          victim = proxy.served
            .slice(from)
            .find((s) => s.rpc === "tools/call" && s.session === caller.sessionId())?.upstream;
          return victim !== undefined;
        },
        10_000,
        "the slow call to reach a replica",
      );
      // A 2026-07-28 call waits on the same replica for its client's answers.
      const killed = gateways[victim as number] as RunningGateway;
      const round = await modernCall(killed.url, { name: "fx__ask", arguments: { question: "?" } });
      const suspended = round.result as { requestState: string; inputRequests: Record<string, unknown> };
      assert.equal(typeof suspended.requestState, "string", JSON.stringify(round));

      // Its answer stream is open, so the call is in flight on the replica about to die.
      await killed.stop("SIGKILL");

      await assert.rejects(slow, (error: Error) => {
        assert.match(error.message, /gateway instance that was serving this request stopped/);
        return true;
      });

      // The retry of the suspended call, wherever it lands, says that the call is lost and what to do.
      const [key] = Object.keys(suspended.inputRequests);
      const retry = await modernCall(mcpUrl, {
        name: "fx__ask",
        arguments: { question: "?" },
        requestState: suspended.requestState,
        inputResponses: { [key as string]: ANSWER },
      });
      assert.match(
        String(retry.error?.message),
        /has stopped, so the request is lost\. Send the request again without a requestState/,
      );

      const orphans = opened.filter((o) => o.by === victim);
      assert.ok(orphans.length > 0, "the killed replica had opened sessions");
      for (const { client } of opened) {
        const echo = await client.call("fx__echo", { message: "still here" });
        assert.equal(textOf(echo), "still here");
        assert.ok((await client.listTools()).includes("fx__echo"));
      }
    } finally {
      await Promise.allSettled(opened.map((o) => o.client.close()));
    }
  });
});

describeWithRedis("a session adopted by another replica keeps its owner", (redisUrl) => {
  const prefix = uniquePrefix("replicas-owner");
  const keys = { alice: `sk_alice_${randomUUID()}`, bob: `sk_bob_${randomUUID()}` };
  const sha256 = (text: string) => createHash("sha256").update(text, "utf8").digest("hex");
  const configPath = writeConfig({
    mcpServers: { fx: fixtureServer() },
    store: { type: "redis", url: redisUrl, keyPrefix: prefix, commandTimeoutMs: 10_000 },
    auth: { apiKeys: Object.entries(keys).map(([id, value]) => ({ id, sha256: sha256(value) })) },
  });
  let gateways: RunningGateway[] = [];

  before(async () => {
    gateways = await Promise.all([0, 1].map(() => startHttpGateway(configPath)));
  });

  after(async () => {
    await Promise.all(gateways.map((g) => g.stop()));
    await deleteByPrefix(redisUrl, prefix);
  });

  test("another principal's session id answers on another replica exactly as an unknown one", async () => {
    const [a, b] = gateways as [RunningGateway, RunningGateway];
    const post = (url: string, who: keyof typeof keys, body: unknown, session?: string) =>
      fetch(url, {
        method: "POST",
        headers: {
          "content-type": "application/json",
          accept: "application/json, text/event-stream",
          authorization: `Bearer ${keys[who]}`,
          ...(session ? { "mcp-session-id": session, "mcp-protocol-version": "2025-06-18" } : {}),
        },
        body: JSON.stringify(body),
      });
    const opened = await post(a.url, "alice", {
      jsonrpc: "2.0",
      id: 1,
      method: "initialize",
      params: {
        protocolVersion: "2025-06-18",
        capabilities: {},
        clientInfo: { name: "alice", version: "1" },
      },
    });
    await opened.text();
    const session = opened.headers.get("mcp-session-id") as string;
    assert.ok(session);
    const list = { jsonrpc: "2.0", id: 2, method: "tools/list" };
    const asBob = await post(b.url, "bob", list, session);
    const unknownId = randomUUID();
    const unknown = await post(b.url, "bob", list, unknownId);
    assert.equal(asBob.status, 404);
    assert.equal(unknown.status, 404);
    const [bobBody, unknownBody] = [await asBob.text(), await unknown.text()];
    assert.equal(bobBody.replaceAll(session, "ID"), unknownBody.replaceAll(unknownId, "ID"));
    const asAlice = await post(b.url, "alice", list, session);
    assert.equal(asAlice.status, 200, "its owner is served by the other replica");
    assert.match(await asAlice.text(), /fx__echo/);
    // Bob's attempt did not give the session to him on that replica either.
    const again = await post(b.url, "bob", list, session);
    assert.equal(again.status, 404);
    await again.text();
    // Ended through the replica that did not open it, it is ended on every replica.
    const ended = await fetch(b.url, {
      method: "DELETE",
      headers: {
        authorization: `Bearer ${keys.alice}`,
        "mcp-session-id": session,
        "mcp-protocol-version": "2025-06-18",
      },
    });
    assert.equal(ended.status, 200);
    await ended.text();
    for (const replica of [a, b]) {
      const after = await post(replica.url, "alice", list, session);
      assert.equal(after.status, 404, "an ended session is unknown everywhere");
      await after.text();
    }
  });
});
