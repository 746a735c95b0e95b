/**
 * The official MCP conformance suite through the gateway, and the gateway paths the suite cannot reach
 * because it is a 2025-era client: sampling and elicitation for 2026-07-28 clients (input_required
 * rounds), over HTTP and stdio, one call at a time and several at once.
 *
 * The suite runs through scripts/conformance.ts, which fails on any scenario outside its documented
 * list of known gateway failures; the whole suite takes a few seconds, so every scenario runs here.
 */
import assert from "node:assert/strict";
import { spawn } from "node:child_process";
import { mkdtempSync, readFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, before, describe, test } from "node:test";
import { Client as ClientV2, StreamableHTTPClientTransport as HttpV2 } from "@modelcontextprotocol/client";
import { StdioClientTransport as StdioV2 } from "@modelcontextprotocol/client/stdio";
import { Client as ClientV1 } from "@modelcontextprotocol/sdk/client/index.js";
import { StdioClientTransport as StdioV1 } from "@modelcontextprotocol/sdk/client/stdio.js";
import { StreamableHTTPClientTransport as HttpV1 } from "@modelcontextprotocol/sdk/client/streamableHttp.js";
import {
  CreateMessageRequestSchema,
  ElicitRequestSchema,
  LoggingMessageNotificationSchema,
  ResourceUpdatedNotificationSchema,
} from "@modelcontextprotocol/sdk/types.js";
import {
  eventually,
  ROOT,
  type RunningGateway,
  startHttpGateway,
  stdioGatewayCommand,
} from "../support/gateway-process.ts";

const CONFIGS = {
  "2026-07-28": join(ROOT, "test/fixtures/conformance.yaml"),
  "2025-era": join(ROOT, "test/fixtures/conformance-legacy.yaml"),
} as const;
type BackendEra = keyof typeof CONFIGS;

interface SuiteSummary {
  results: { scenario: string; outcome: string; failures: string[]; note?: string }[];
}

/** Runs scripts/conformance.ts and resolves with its exit code, output and JSON summary. */
function runSuite(args: string[]): Promise<{ code: number | null; output: string; summary?: SuiteSummary }> {
  const json = join(mkdtempSync(join(tmpdir(), "switchboard-conformance-test-")), "summary.json");
  const child = spawn(
    process.execPath,
    ["--import", "tsx", "scripts/conformance.ts", "--timeout", "90000", "--json", json, ...args],
    { cwd: ROOT, stdio: ["ignore", "pipe", "pipe"] },
  );
  let output = "";
  child.stdout.on("data", (chunk: Buffer) => {
    output += chunk.toString("utf8");
  });
  child.stderr.on("data", (chunk: Buffer) => {
    output += chunk.toString("utf8");
  });
  return new Promise((resolve) => {
    child.once("exit", (code) => {
      let summary: SuiteSummary | undefined;
      try {
        summary = JSON.parse(readFileSync(json, "utf8")) as SuiteSummary;
      } catch {
        summary = undefined;
      }
      resolve({ code, output, ...(summary ? { summary } : {}) });
    });
  });
}

describe("official conformance suite (@modelcontextprotocol/conformance 0.1.13) through the gateway", () => {
  for (const [era, flag] of [
    ["2026-07-28", []],
    ["2025-era", ["--legacy-backend"]],
  ] as const) {
    test(`every scenario passes with a ${era} backend`, async () => {
      const run = await runSuite([...flag]);
      assert.equal(run.code, 0, `the suite reported unexpected failures:\n${run.output}`);
      const results = run.summary?.results ?? [];
      // The suite has 32 server scenarios in 0.1.13; fewer results would mean some never ran.
      assert.ok(results.length >= 32, `only ${results.length} scenarios reported:\n${run.output}`);
      const unexpected = results.filter((r) => r.outcome !== "pass" && r.outcome !== "known");
      assert.deepEqual(unexpected, []);
    });
  }
});

/** A 2026-07-28 client that answers elicitation and sampling itself, as the SDK does by default. */
function modernClient(answers: { username: string; onAsk?: () => Promise<void> }) {
  const asked: string[] = [];
  const client = new ClientV2({ name: "conformance-e2e", version: "1" }, {
    versionNegotiation: { mode: { pin: "2026-07-28" } },
    capabilities: { sampling: {}, elicitation: { form: {} } },
  } as never);
  client.setRequestHandler("elicitation/create", async (request) => {
    asked.push(JSON.stringify(request.params));
    await answers.onAsk?.();
    return {
      action: "accept",
      content: { username: answers.username, email: `${answers.username}@example.com` },
    };
  });
  client.setRequestHandler("sampling/createMessage", async () => {
    asked.push("sampling");
    return {
      model: "test-model",
      role: "assistant",
      content: { type: "text", text: `hello ${answers.username}` },
    };
  });
  return { client, asked };
}

function textOf(result: unknown): string {
  const content = (result as { content?: { type: string; text?: string }[] }).content ?? [];
  return content.map((c) => c.text ?? "").join("\n");
}

/** One HTTP gateway per backend era, shared by the tests below. */
const gateways = new Map<BackendEra, RunningGateway>();
before(async () => {
  const eras = Object.keys(CONFIGS) as BackendEra[];
  await Promise.all(
    eras.map(async (era) => {
      gateways.set(era, await startHttpGateway(CONFIGS[era]));
    }),
  );
});
after(async () => {
  await Promise.all([...gateways.values()].map((g) => g.stop()));
});
function gatewayFor(era: BackendEra): RunningGateway {
  const gateway = gateways.get(era);
  if (!gateway) throw new Error(`the ${era} gateway did not start`);
  return gateway;
}

for (const era of Object.keys(CONFIGS) as BackendEra[]) {
  describe(`2026-07-28 clients answer a ${era} backend's questions through input_required rounds`, () => {
    const url = () => new URL(gatewayFor(era).url);

    test("elicitation over HTTP reaches the client with its schema unchanged", async () => {
      const { client, asked } = modernClient({ username: "ada" });
      await client.connect(new HttpV2(url()));
      try {
        const result = await client.callTool({ name: "test_elicitation_sep1330_enums", arguments: {} });
        assert.match(textOf(result), /action=accept/);
        assert.equal(asked.length, 1);
        const params = JSON.parse(asked[0] as string) as {
          requestedSchema: { properties: Record<string, Record<string, unknown>> };
        };
        // The SEP-1330 shapes a gateway could lose by normalising the schema.
        assert.deepEqual(params.requestedSchema.properties.legacyEnum?.enumNames, [
          "Option One",
          "Option Two",
          "Option Three",
        ]);
        assert.deepEqual(params.requestedSchema.properties.titledSingle?.oneOf, [
          { const: "value1", title: "First Option" },
          { const: "value2", title: "Second Option" },
          { const: "value3", title: "Third Option" },
        ]);
        assert.ok(params.requestedSchema.properties.titledMulti?.items);
      } finally {
        await client.close();
      }
    });

    test("sampling over HTTP reaches the client and its answer reaches the server", async () => {
      const { client } = modernClient({ username: "grace" });
      await client.connect(new HttpV2(url()));
      try {
        const result = await client.callTool({ name: "test_sampling", arguments: { prompt: "hi" } });
        assert.equal(textOf(result), "LLM response: hello grace");
      } finally {
        await client.close();
      }
    });

    test("a retry with an unknown requestState is refused with a reason", async () => {
      const client = new ClientV2({ name: "conformance-e2e", version: "1" }, {
        versionNegotiation: { mode: { pin: "2026-07-28" } },
        capabilities: { elicitation: { form: {} } },
        inputRequired: { autoFulfill: false },
      } as never);
      await client.connect(new HttpV2(url()));
      try {
        await assert.rejects(
          client.callTool({
            name: "test_elicitation",
            arguments: { message: "hi" },
            inputResponses: { "elicitation-1": { action: "decline" } },
            requestState: "not-a-state-this-gateway-issued",
          } as never),
          /Invalid or expired requestState/,
        );
      } finally {
        await client.close();
      }
    });
  });
}

test("concurrent calls of 2026-07-28 clients each get their own question and answer", async () => {
  const gateway = gatewayFor("2026-07-28");
  // Both calls are held in their elicitation until both have been asked, so they overlap on the backend.
  let arrived = 0;
  let release: () => void = () => {};
  const bothAsked = new Promise<void>((resolve) => {
    release = resolve;
  });
  const onAsk = async () => {
    if (++arrived === 2) release();
    await bothAsked;
  };
  const clients = ["alan", "barbara"].map((username) => modernClient({ username, onAsk }));
  await Promise.all(clients.map(({ client }) => client.connect(new HttpV2(new URL(gateway.url)))));
  try {
    const results = await Promise.all(
      clients.map(({ client }) =>
        client.callTool({ name: "test_elicitation", arguments: { message: "who?" } }),
      ),
    );
    assert.match(textOf(results[0]), /"username":"alan"/);
    assert.match(textOf(results[1]), /"username":"barbara"/);
  } finally {
    await Promise.all(clients.map(({ client }) => client.close()));
  }
});

describe("sampling and elicitation over stdio", () => {
  test("a 2026-07-28 client answers through input_required rounds", async () => {
    const { client } = modernClient({ username: "edsger" });
    await client.connect(new StdioV2({ ...stdioGatewayCommand(CONFIGS["2026-07-28"]), stderr: "ignore" }));
    try {
      const result = await client.callTool({ name: "test_elicitation", arguments: { message: "name?" } });
      assert.match(textOf(result), /"username":"edsger"/);
    } finally {
      await client.close();
    }
  });

  for (const era of Object.keys(CONFIGS) as BackendEra[]) {
    test(`a 2025-era client (SDK v1) is asked directly, and gets the call's logs (${era} backend)`, async () => {
      const client = new ClientV1(
        { name: "conformance-e2e-v1", version: "1" },
        { capabilities: { sampling: {}, elicitation: {} } },
      );
      client.setRequestHandler(ElicitRequestSchema, async () => ({
        action: "accept",
        content: { username: "barbara", email: "barbara@example.com" },
      }));
      client.setRequestHandler(CreateMessageRequestSchema, async () => ({
        model: "test-model",
        role: "assistant",
        content: { type: "text", text: "hello from v1" },
      }));
      const logs: string[] = [];
      client.setNotificationHandler(LoggingMessageNotificationSchema, (notification) => {
        logs.push(`${notification.params.level} ${String(notification.params.data)}`);
      });
      await client.connect(new StdioV1({ ...stdioGatewayCommand(CONFIGS[era]), stderr: "ignore" }));
      try {
        const elicited = await client.callTool({ name: "test_elicitation", arguments: { message: "name?" } });
        assert.match(textOf(elicited), /"username":"barbara"/);
        const sampled = await client.callTool({ name: "test_sampling", arguments: { prompt: "hi" } });
        assert.equal(textOf(sampled), "LLM response: hello from v1");

        // The level reaches the backend (logging/setLevel or per-request _meta) and filters here too.
        await client.setLoggingLevel("warning");
        await client.callTool({ name: "test_tool_with_logging", arguments: {} });
        await client.setLoggingLevel("debug");
        await client.callTool({ name: "test_tool_with_logging", arguments: {} });
        // stdio keeps order: the call's logs are written before its result.
        assert.deepEqual(logs, [
          "info Tool execution started",
          "info Tool processing data",
          "info Tool execution completed",
        ]);
      } finally {
        await client.close();
      }
    });
  }
});

test("resource subscriptions reach the backend once, and updates only the subscribed clients", async () => {
  const gateway = gatewayFor("2025-era");
  const watched = "test://watched-resource";
  const connect = async () => {
    const client = new ClientV1({ name: "conformance-e2e-v1", version: "1" });
    const updates: string[] = [];
    let notify: () => void = () => {};
    const updated = new Promise<void>((resolve) => {
      notify = resolve;
    });
    client.setNotificationHandler(ResourceUpdatedNotificationSchema, (notification) => {
      updates.push(notification.params.uri);
      notify();
    });
    await client.connect(new HttpV1(new URL(gateway.url)));
    return { client, updates, updated };
  };
  const subscriber = await connect();
  const bystander = await connect();
  try {
    await subscriber.client.subscribeResource({ uri: watched });
    const touched = await bystander.client.callTool({
      name: "test_touch_resource",
      arguments: { uri: watched },
    });
    assert.equal(textOf(touched), `Updated: ${watched}`);
    await subscriber.updated;
    assert.deepEqual(subscriber.updates, [watched]);
    // The bystander's session got the call's response after the update was sent; nothing came for it.
    assert.deepEqual(bystander.updates, []);

    await subscriber.client.unsubscribeResource({ uri: watched });
    const untouched = await bystander.client.callTool({
      name: "test_touch_resource",
      arguments: { uri: watched },
    });
    assert.equal(textOf(untouched), `Not subscribed: ${watched}`);

    await assert.rejects(
      subscriber.client.subscribeResource({ uri: "test://no-such-resource" }),
      (error: unknown) => {
        // Resource-not-found: -32002 by the gateway; the SDK maps it to -32602 for 2025-11-25 clients.
        assert.ok([-32002, -32602].includes((error as { code?: number }).code as number), String(error));
        assert.match(String(error), /no connected server offers it/);
        return true;
      },
    );
  } finally {
    await Promise.all([subscriber.client.close(), bystander.client.close()]);
  }
});

test("a 2026-07-28 client's subscriptions/listen stream subscribes the backend while it is open", async () => {
  const gateway = gatewayFor("2025-era");
  const watched = "test://watched-resource";
  const client = new ClientV2({ name: "conformance-e2e", version: "1" }, {
    versionNegotiation: { mode: { pin: "2026-07-28" } },
  } as never);
  let notify: (uri: string) => void = () => {};
  const updated = new Promise<string>((resolve) => {
    notify = resolve;
  });
  client.setNotificationHandler("notifications/resources/updated", (notification) =>
    notify(notification.params.uri),
  );
  await client.connect(new HttpV2(new URL(gateway.url)));
  try {
    const subscription = await client.listen({ resourceSubscriptions: [watched] });
    // The backend is subscribed as the stream opens, with no event to await; the tool says when it is.
    await eventually(
      async () =>
        textOf(await client.callTool({ name: "test_touch_resource", arguments: { uri: watched } })) ===
        `Updated: ${watched}`,
      10_000,
      "the backend subscription",
    );
    assert.equal(await updated, watched);
    await subscription.close();
  } finally {
    await client.close();
  }
});
