/**
 * What passes between clients and MCP servers through the gateway, as a user sees it through the real
 * CLI:
 *
 * - health is checked with what each era offers: a Switchboard behind a Switchboard (2026-07-28
 *   between them, where there is no `ping`) is healthy, so /readyz with it required is 200;
 * - each server's `instructions` reach clients under the server's name, after the gateway's own;
 * - a server's JSON-RPC error reaches clients with its message once ("MCP error -32000: …"), not with
 *   the code prefixed again by every hop;
 * - a server's `roots/list` is answered: during a call by the calling client (2025-era over HTTP and
 *   stdio, 2026-07-28 through input_required rounds), outside a call from the server's config
 *   `roots`, and a client's `notifications/roots/list_changed` reaches the servers;
 * - a server's log message outside any call reaches a 2026-07-28 client listening on the outer one of
 *   two chained Switchboards (its listen request names a log level);
 * - a server's question in URL mode goes only to a client that declared URL elicitation; one that
 *   declared forms only is never sent it, and the call fails saying why;
 * - a crashed server's reason names the error its runtime printed, not the tail of the stack trace.
 */
import assert from "node:assert/strict";
import { join } from "node:path";
import { after, before, describe, test } from "node:test";
import { Client as ClientV2, StreamableHTTPClientTransport as HttpV2 } from "@modelcontextprotocol/client";
import { Client } from "@modelcontextprotocol/sdk/client/index.js";
import { StdioClientTransport } from "@modelcontextprotocol/sdk/client/stdio.js";
import { StreamableHTTPClientTransport } from "@modelcontextprotocol/sdk/client/streamableHttp.js";
import { ElicitRequestSchema, ListRootsRequestSchema, McpError } from "@modelcontextprotocol/sdk/types.js";
import { assertExitCode, runCli } from "../support/cli.ts";
import {
  eventually,
  fixtureServer,
  ROOT,
  type RunningGateway,
  startHttpGateway,
  stdioGatewayCommand,
  writeConfigRemovedAfterSuite,
} from "../support/gateway-process.ts";
import { listenForLogs } from "../support/mcp-client.ts";

const FAULTY = join(ROOT, "test/fixtures/faulty-server.ts");
const INSTRUCTIONS = "Use fx__echo to repeat things back.\nNever call fx__crash.";
const CONFIG_ROOTS = [{ uri: "file:///srv/project", name: "project" }, { uri: "file:///srv/shared" }];
const CLIENT_ROOTS = [{ uri: "file:///home/ada/work", name: "work" }];
const GATEWAY_SENTENCE = "Switchboard gateway: tools from several MCP servers, named <server>__<tool>.";

const writeConfig = writeConfigRemovedAfterSuite();

const innerConfig = () =>
  writeConfig({
    gateway: { name: "inner" },
    mcpServers: {
      fx: { ...fixtureServer({}, { FIXTURE_INSTRUCTIONS: INSTRUCTIONS }), roots: CONFIG_ROOTS },
      plain: fixtureServer(),
    },
  });

/** An SDK v1 client over Streamable HTTP; with `roots`, it declares them and answers roots/list. */
async function connectV1(url: string, roots?: typeof CLIENT_ROOTS): Promise<Client> {
  const client = new Client(
    { name: "fidelity-e2e", version: "1" },
    roots ? { capabilities: { roots: { listChanged: true } } } : {},
  );
  if (roots) client.setRequestHandler(ListRootsRequestSchema, async () => ({ roots }));
  await client.connect(new StreamableHTTPClientTransport(new URL(url)));
  return client;
}

type Structured = { structuredContent?: Record<string, unknown>; isError?: boolean; content?: unknown };

async function call(client: Client, name: string, args: Record<string, unknown> = {}): Promise<Structured> {
  return (await client.callTool({ name, arguments: args })) as Structured;
}

describe("a Switchboard behind a Switchboard, 2026-07-28 between them", () => {
  let inner: RunningGateway;
  let outer: RunningGateway;

  before(async () => {
    inner = await startHttpGateway(innerConfig());
    outer = await startHttpGateway(
      writeConfig({
        mcpServers: { inner: { type: "http", url: inner.url } },
        observability: { health: { required: ["inner"] } },
      }),
    );
  });
  after(async () => {
    await outer?.stop();
    await inner?.stop();
  });

  test("the inner one is healthy and required: /readyz of the outer one is 200", async () => {
    const up = await outer.logs.waitFor((l) => l.server === "inner" && l.msg === "server up");
    assert.equal(up.protocol, "2026-07-28", "the two negotiated the 2026-07-28 revision");
    const base = new URL(outer.url).origin;
    const ready = await fetch(`${base}/readyz`);
    assert.equal(ready.status, 200, await ready.text());
    const report = (await (await fetch(`${base}/healthz`)).json()) as {
      checks: Record<string, { status: string; detail?: string }>;
    };
    const check = report.checks.inner;
    assert.equal(check?.status, "healthy", JSON.stringify(check));
  });

  test("instructions: the gateway's sentence, then one section per server that has some", async () => {
    const client = await connectV1(inner.url);
    try {
      assert.equal(client.getInstructions(), `${GATEWAY_SENTENCE}\n\n## fx\n${INSTRUCTIONS}`);
    } finally {
      await client.close();
    }
    // And through a second hop, read from the inner gateway's server/discover.
    const throughOuter = await connectV1(outer.url);
    try {
      assert.equal(
        throughOuter.getInstructions(),
        `${GATEWAY_SENTENCE}\n\n## inner\n${GATEWAY_SENTENCE}\n\n## fx\n${INSTRUCTIONS}`,
      );
    } finally {
      await throughOuter.close();
    }
  });

  test("a server's JSON-RPC error reaches the client with its message once, through one hop or two", async () => {
    for (const [url, tool] of [
      [inner.url, "fx__rpc_error"],
      [outer.url, "inner__fx__rpc_error"],
    ] as const) {
      const client = await connectV1(url);
      try {
        const error = await call(client, tool, { code: -32000, message: "the backend says no" }).catch(
          (e: unknown) => e,
        );
        assert.ok(error instanceof McpError, `${tool}: a JSON-RPC error, got ${JSON.stringify(error)}`);
        assert.equal(error.code, -32000);
        assert.equal(error.message, "MCP error -32000: the backend says no", tool);
      } finally {
        await client.close();
      }
    }
  });
  test("a server's log message outside any call reaches a listening 2026-07-28 client of the outer one", async () => {
    // A listen request that names a log level gets the log messages no request carries.
    const listen = await listenForLogs(outer.url, "warning");
    assert.equal(listen.status, 200);
    const reader = (listen.body as ReadableStream<Uint8Array>).getReader();
    const decoder = new TextDecoder();
    const messages: Record<string, unknown>[] = [];
    let buffered = "";
    const next = async (): Promise<Record<string, unknown>> => {
      for (;;) {
        const message = messages.shift();
        if (message) return message;
        const { value, done } = await reader.read();
        if (done) throw new Error("the listen stream ended");
        buffered += decoder.decode(value, { stream: true });
        const lines = buffered.split("\n");
        buffered = lines.pop() ?? "";
        for (const line of lines) {
          if (line.startsWith("data:") && line.slice(5).trim()) messages.push(JSON.parse(line.slice(5)));
        }
      }
    };
    const deadline = setTimeout(() => void reader.cancel(), 15_000);
    const client = await connectV1(outer.url);
    try {
      const ack = await next();
      assert.equal(ack.method, "notifications/subscriptions/acknowledged");
      await call(client, "inner__fx__log_later", { text: "from behind two gateways", delayMs: 50 });
      let log: Record<string, unknown>;
      do log = await next();
      while (log.method !== "notifications/message");
      const params = log.params as Record<string, unknown>;
      assert.equal(params.data, "from behind two gateways");
      assert.equal(params.level, "warning");
      assert.equal(params.logger, "inner/fx/fixture");
      assert.deepEqual(params._meta, { "io.modelcontextprotocol/subscriptionId": "logs-1" });
    } finally {
      clearTimeout(deadline);
      await reader.cancel().catch(() => undefined);
      await client.close();
    }
  });
});

test("instructions of a server a client may not see are left out, for both eras", async () => {
  const gateway = await startHttpGateway(
    writeConfig({
      mcpServers: {
        fx: fixtureServer({}, { FIXTURE_INSTRUCTIONS: INSTRUCTIONS }),
        plain: fixtureServer({}, { FIXTURE_INSTRUCTIONS: "Plain things." }),
      },
      access: { rules: [{ allow: ["server:plain"] }] },
    }),
  );
  try {
    const expected = `${GATEWAY_SENTENCE}\n\n## plain\nPlain things.`;
    const legacy = await connectV1(gateway.url);
    try {
      assert.equal(legacy.getInstructions(), expected);
    } finally {
      await legacy.close();
    }
    const modern = new ClientV2({ name: "fidelity-modern", version: "1" }, {
      versionNegotiation: { mode: { pin: "2026-07-28" } },
    } as never);
    await modern.connect(new HttpV2(new URL(gateway.url)));
    try {
      assert.equal(modern.getInstructions(), expected);
    } finally {
      await modern.close();
    }
  } finally {
    await gateway.stop();
  }
});

describe("roots", () => {
  let gateway: RunningGateway;
  before(async () => {
    gateway = await startHttpGateway(innerConfig());
  });
  after(async () => {
    await gateway?.stop();
  });

  test("outside a call a server is given its configured roots (none by default)", async () => {
    const client = await connectV1(gateway.url);
    try {
      assert.deepEqual((await call(client, "fx__startup_roots")).structuredContent?.roots, CONFIG_ROOTS);
      assert.deepEqual((await call(client, "plain__startup_roots")).structuredContent?.roots, []);
    } finally {
      await client.close();
    }
  });

  test("during a call, over HTTP: the calling client's roots; a client without roots: the configured ones", async () => {
    const withRoots = await connectV1(gateway.url, CLIENT_ROOTS);
    const without = await connectV1(gateway.url);
    try {
      assert.deepEqual((await call(withRoots, "fx__roots")).structuredContent?.roots, CLIENT_ROOTS);
      assert.deepEqual((await call(without, "fx__roots")).structuredContent?.roots, CONFIG_ROOTS);
    } finally {
      await withRoots.close();
      await without.close();
    }
  });

  test("during a call, over stdio: the calling client's roots; its roots/list_changed reaches the servers", async () => {
    const client = new Client(
      { name: "fidelity-stdio", version: "1" },
      { capabilities: { roots: { listChanged: true } } },
    );
    client.setRequestHandler(ListRootsRequestSchema, async () => ({ roots: CLIENT_ROOTS }));
    await client.connect(
      new StdioClientTransport({ ...stdioGatewayCommand(innerConfig()), stderr: "ignore" }),
    );
    try {
      assert.deepEqual((await call(client, "fx__roots")).structuredContent?.roots, CLIENT_ROOTS);
      assert.equal((await call(client, "plain__startup_roots")).structuredContent?.listChanged, 0);
      await client.sendRootsListChanged();
      let changed = 0;
      await eventually(
        async () => {
          changed = Number((await call(client, "plain__startup_roots")).structuredContent?.listChanged);
          return changed > 0;
        },
        10_000,
        "the server to hear that the roots changed",
      );
      assert.equal(changed, 1, "the server heard that the roots changed");
    } finally {
      await client.close();
    }
  });

  test("during a call, for a 2026-07-28 client: asked through an input_required round", async () => {
    const asked: string[] = [];
    const client = new ClientV2({ name: "fidelity-modern", version: "1" }, {
      versionNegotiation: { mode: { pin: "2026-07-28" } },
      capabilities: { roots: {} },
    } as never);
    client.setRequestHandler("roots/list", async () => {
      asked.push("roots/list");
      return { roots: CLIENT_ROOTS };
    });
    await client.connect(new HttpV2(new URL(gateway.url)));
    try {
      const result = (await client.callTool({ name: "fx__roots", arguments: {} })) as Structured;
      assert.deepEqual(result.structuredContent?.roots, CLIENT_ROOTS, JSON.stringify(result));
      assert.deepEqual(asked, ["roots/list"]);
    } finally {
      await client.close();
    }
  });
});

describe("elicitation by URL goes only to clients that declared it", () => {
  let gateway: RunningGateway;
  before(async () => {
    gateway = await startHttpGateway(writeConfig({ mcpServers: { fx: fixtureServer() } }));
  });
  after(async () => {
    await gateway?.stop();
  });

  /** An SDK v1 client declaring `elicitation`; it records what it is asked and accepts. */
  async function connectAsked(elicitation: Record<string, unknown>) {
    const asked: Record<string, unknown>[] = [];
    const client = new Client({ name: "fidelity-e2e", version: "1" }, { capabilities: { elicitation } });
    client.setRequestHandler(ElicitRequestSchema, async (request) => {
      asked.push(request.params);
      return { action: "accept" };
    });
    await client.connect(new StreamableHTTPClientTransport(new URL(gateway.url)));
    return { client, asked };
  }

  test("a client that takes URLs is asked and its answer completes the call", async () => {
    const { client, asked } = await connectAsked({ url: {} });
    try {
      const result = await call(client, "fx__ask_url", { url: "https://login.example/start" });
      assert.equal(result.isError, undefined, JSON.stringify(result));
      assert.deepEqual(result.structuredContent, { action: "accept" });
      assert.equal(asked.length, 1);
      assert.equal(asked[0]?.mode, "url");
      assert.equal(asked[0]?.url, "https://login.example/start");
    } finally {
      await client.close();
    }
  });

  test("a client that declared forms only is never sent the URL; the call fails saying why", async () => {
    const { client, asked } = await connectAsked({ form: {} });
    try {
      const result = await call(client, "fx__ask_url", { url: "https://login.example/start" });
      assert.equal(result.isError, true, JSON.stringify(result));
      assert.match(JSON.stringify(result.content), /did not declare elicitation \(url mode\)/);
      assert.equal(asked.length, 0);
      // A form question still reaches the same client.
      const form = await call(client, "fx__ask", { question: "Name?" });
      assert.equal(form.isError, undefined, JSON.stringify(form));
      assert.equal(asked.length, 1);
    } finally {
      await client.close();
    }
  });
});

describe("a crash says why", () => {
  test("a server that dies of an uncaught exception: the call's error names it", async () => {
    const config = writeConfig({
      mcpServers: { faulty: { command: process.execPath, args: ["--import", "tsx", FAULTY], cwd: ROOT } },
    });
    const run = await runCli(["call", "faulty__throw_uncaught", "{}", "--config", config]);
    assertExitCode(run, 1);
    const result = JSON.parse(run.stdout) as { content: { text: string }[]; isError: boolean };
    assert.equal(result.isError, true);
    assert.match(
      result.content[0]?.text ?? "",
      /Server "faulty" went away during tool "throw_uncaught" \(connection closed; its stderr said: TypeError: Cannot read properties of null \(reading 'boom'\)\)/,
    );
  });

  test("a server that cannot start: health names the error; the log keeps the whole tail", async () => {
    const config = writeConfig({
      gateway: { startupTimeoutMs: 10_000 },
      mcpServers: {
        broken: {
          command: process.execPath,
          args: ["-e", "require('switchboard-no-such-module')"],
          restart: { maxRestarts: 0 },
        },
      },
    });
    const run = await runCli(["health", "--json", "--config", config, "--log-level", "warn"]);
    const report = JSON.parse(run.stdout) as { checks: Record<string, { detail?: string }> };
    const detail = report.checks.broken?.detail ?? "";
    assert.match(detail, /its stderr said: Error: Cannot find module 'switchboard-no-such-module'/, detail);
    const failed = run.stderr
      .split("\n")
      .filter(Boolean)
      .map((line) => JSON.parse(line) as { msg?: string; stderr?: string[] })
      .find((line) => line.msg === "server failed to start");
    assert.ok(failed?.stderr?.includes("Require stack:"), `the log keeps the tail: ${run.stderr}`);
  });
});
