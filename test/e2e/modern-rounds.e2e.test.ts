/**
 * What a 2026-07-28 client sees of a backend's questions through the gateway, with raw HTTP requests as
 * the conformance suite sends them, against the conformance fixture behind a 2026-07-28 backend
 * connection and behind a 2025-era one:
 *
 * - a question the client did not declare the capability for ends the request with -32021, the missing
 *   capability in `data.requiredCapabilities`, and HTTP 400;
 * - a 2026-07-28 server's question keys reach the client (`user_name`); a 2025-era server's questions
 *   have none, so the gateway names them;
 * - questions asked together (elicitation, sampling and roots/list) go out in one round;
 * - every round has a new requestState, good for one retry;
 * - a backend may ask during `prompts/get`, for 2026-07-28 and 2025-era clients;
 * - a 2026-07-28 backend is told the calling client's own capabilities, so it asks only what the client
 *   can answer; roots are answered from the config for a client without them;
 * - answers sent with the first request are used for the questions they name;
 * - `Mcp-Param-*` headers are checked against the tool's `x-mcp-header` arguments (HTTP 400, -32020).
 *
 * (Tools that run only as tasks are left out of lists: test/integration/task-only-tools.test.ts.)
 */
import assert from "node:assert/strict";
import { join } from "node:path";
import { after, before, describe, test } from "node:test";
import { Client as ClientV1 } from "@modelcontextprotocol/sdk/client/index.js";
import { StreamableHTTPClientTransport as HttpV1 } from "@modelcontextprotocol/sdk/client/streamableHttp.js";
import { ElicitRequestSchema } from "@modelcontextprotocol/sdk/types.js";
import { ROOT, type RunningGateway, startHttpGateway } from "../support/gateway-process.ts";

const CONFIGS = {
  "2026-07-28": join(ROOT, "test/fixtures/conformance.yaml"),
  "2025-era": join(ROOT, "test/fixtures/conformance-legacy.yaml"),
} as const;
type BackendEra = keyof typeof CONFIGS;

const ALL = { sampling: {}, elicitation: {}, roots: { listChanged: true } };

interface Reply {
  readonly status: number;
  readonly result?: Record<string, unknown> & {
    resultType?: string;
    inputRequests?: Record<string, { method: string; params?: unknown }>;
    requestState?: string;
    content?: { type: string; text?: string }[];
    messages?: unknown[];
  };
  readonly error?: { code: number; message: string; data?: Record<string, unknown> };
}

let nextId = 1;

/** One 2026-07-28 request, with its envelope and the standard headers, as the suite sends it. */
async function rpc(
  url: string,
  method: string,
  params: Record<string, unknown>,
  options: { capabilities?: Record<string, unknown>; headers?: Record<string, string> } = {},
): Promise<Reply> {
  const id = nextId++;
  const body = {
    jsonrpc: "2.0",
    id,
    method,
    params: {
      ...params,
      _meta: {
        "io.modelcontextprotocol/protocolVersion": "2026-07-28",
        "io.modelcontextprotocol/clientInfo": { name: "rounds-e2e", version: "1" },
        "io.modelcontextprotocol/clientCapabilities": options.capabilities ?? ALL,
      },
    },
  };
  const named = params.name ?? params.uri;
  const response = await fetch(url, {
    method: "POST",
    headers: {
      "content-type": "application/json",
      accept: "application/json, text/event-stream",
      "mcp-protocol-version": "2026-07-28",
      "mcp-method": method,
      ...(typeof named === "string" ? { "mcp-name": named } : {}),
      ...options.headers,
    },
    body: JSON.stringify(body),
  });
  const text = await response.text();
  const messages = (response.headers.get("content-type") ?? "").includes("text/event-stream")
    ? text
        .split("\n")
        .filter((line) => line.startsWith("data:"))
        .map((line) => line.slice(5).trim())
        .filter((data) => data.length > 0)
        .map((data) => JSON.parse(data) as Record<string, unknown>)
    : [JSON.parse(text) as Record<string, unknown>];
  const answer = messages.find((m) => m.id === id);
  assert.ok(answer, `no answer to ${method} (HTTP ${response.status}): ${text}`);
  return { status: response.status, ...(answer as Omit<Reply, "status">) };
}

const call = (url: string, name: string, extra: Record<string, unknown> = {}, options = {}) =>
  rpc(url, "tools/call", { name, arguments: {}, ...extra }, options);

const accept = (content: Record<string, unknown>) => ({ action: "accept", content });
const sampled = (text: string) => ({
  role: "assistant",
  content: { type: "text", text },
  model: "test-model",
  stopReason: "endTurn",
});

function textOf(reply: Reply): string {
  return (reply.result?.content ?? []).map((c) => c.text ?? "").join("\n");
}

function inputRequired(reply: Reply): NonNullable<Reply["result"]> {
  assert.equal(reply.error, undefined, JSON.stringify(reply.error));
  assert.equal(reply.result?.resultType, "input_required", JSON.stringify(reply.result));
  return reply.result as NonNullable<Reply["result"]>;
}

const gateways = new Map<BackendEra, RunningGateway>();
before(async () => {
  await Promise.all(
    (Object.keys(CONFIGS) as BackendEra[]).map(async (era) => {
      gateways.set(era, await startHttpGateway(CONFIGS[era]));
    }),
  );
});
after(async () => {
  await Promise.all([...gateways.values()].map((g) => g.stop()));
});
function urlOf(era: BackendEra): string {
  const gateway = gateways.get(era);
  if (!gateway) throw new Error(`the gateway with a ${era} backend did not start`);
  return gateway.url;
}

for (const era of Object.keys(CONFIGS) as BackendEra[]) {
  describe(`2026-07-28 clients, ${era} backend`, () => {
    test("a question the client did not declare: -32021 naming the capability, HTTP 400", async () => {
      const reply = await call(urlOf(era), "test_missing_capability", {}, { capabilities: {} });
      assert.equal(reply.error?.code, -32021, JSON.stringify(reply));
      assert.deepEqual(reply.error?.data?.requiredCapabilities, { sampling: {} });
      assert.equal(reply.status, 400);
    });

    test("questions asked together go out in one round, and their answers complete the call", async () => {
      const url = urlOf(era);
      const round = inputRequired(await call(url, "test_input_required_result_multiple_inputs"));
      const requests = Object.entries(round.inputRequests ?? {});
      assert.deepEqual(requests.map(([, r]) => r.method).sort(), [
        "elicitation/create",
        "roots/list",
        "sampling/createMessage",
      ]);
      if (era === "2026-07-28") {
        assert.deepEqual(requests.map(([key]) => key).sort(), ["client_roots", "greeting", "user_name"]);
      }
      const answers: Record<string, unknown> = {};
      for (const [key, request] of requests) {
        answers[key] =
          request.method === "elicitation/create"
            ? accept({ name: "Alice" })
            : request.method === "sampling/createMessage"
              ? sampled("Hello there!")
              : { roots: [{ uri: "file:///test/root", name: "Test Root" }] };
      }
      const done = await call(url, "test_input_required_result_multiple_inputs", {
        inputResponses: answers,
        requestState: round.requestState,
      });
      assert.equal(done.result?.resultType ?? "complete", "complete", JSON.stringify(done));
      assert.match(textOf(done), /Received all three answers for Alice/);
    });

    test("every round has a new requestState, good for one retry", async () => {
      const url = urlOf(era);
      const first = inputRequired(await call(url, "test_input_required_result_multi_round"));
      const [key1] = Object.keys(first.inputRequests ?? {});
      const second = inputRequired(
        await call(url, "test_input_required_result_multi_round", {
          inputResponses: { [key1 as string]: accept({ name: "Alice" }) },
          requestState: first.requestState,
        }),
      );
      assert.notEqual(second.requestState, first.requestState);
      const replay = await call(url, "test_input_required_result_multi_round", {
        inputResponses: { [key1 as string]: accept({ name: "Alice" }) },
        requestState: first.requestState,
      });
      assert.match(String(replay.error?.message), /Invalid or expired requestState/);
      const [key2] = Object.keys(second.inputRequests ?? {});
      const done = await call(url, "test_input_required_result_multi_round", {
        inputResponses: { [key2 as string]: accept({ color: "blue" }) },
        requestState: second.requestState,
      });
      assert.equal(textOf(done), "Alice likes blue");
    });

    test("a backend asks during prompts/get: the client answers through a round of prompts/get", async () => {
      const url = urlOf(era);
      const round = inputRequired(
        await rpc(url, "prompts/get", { name: "test_input_required_result_prompt" }),
      );
      const [key] = Object.keys(round.inputRequests ?? {});
      if (era === "2026-07-28") assert.equal(key, "user_context");
      // The state belongs to this prompts/get: a tool call cannot take its answers.
      const misused = await call(url, "test_input_required_result_elicitation", {
        inputResponses: { [key as string]: accept({ context: "test context" }) },
        requestState: round.requestState,
      });
      assert.match(String(misused.error?.message), /Invalid or expired requestState/);
      const done = await rpc(url, "prompts/get", {
        name: "test_input_required_result_prompt",
        inputResponses: { [key as string]: accept({ context: "test context" }) },
        requestState: round.requestState,
      });
      assert.deepEqual(done.result?.messages, [
        { role: "user", content: { type: "text", text: "Use this context: test context" } },
      ]);
    });

    test("a client that declared only sampling is asked only for sampling", async () => {
      const url = urlOf(era);
      const capabilities = { sampling: {} };
      const round = inputRequired(
        await call(url, "test_input_required_result_capabilities", {}, { capabilities }),
      );
      assert.deepEqual(
        Object.values(round.inputRequests ?? {}).map((r) => r.method),
        ["sampling/createMessage"],
      );
    });

    test("a client without roots is not asked: the server gets the configured ones (none)", async () => {
      const url = urlOf(era);
      const done = await call(url, "test_input_required_result_list_roots", {}, { capabilities: {} });
      assert.equal(textOf(done), "The client has 0 root(s): ", JSON.stringify(done));
      const round = inputRequired(await call(url, "test_input_required_result_list_roots"));
      const [key] = Object.keys(round.inputRequests ?? {});
      const answered = await call(url, "test_input_required_result_list_roots", {
        inputResponses: { [key as string]: { roots: [{ uri: "file:///work", name: "work" }] } },
        requestState: round.requestState,
      });
      assert.equal(textOf(answered), "The client has 1 root(s): file:///work");
    });

    test("Mcp-Param headers must match the tool's x-mcp-header arguments (400, -32020)", async () => {
      const url = urlOf(era);
      const region = (value: string | undefined) =>
        call(
          url,
          "test_header_param",
          { arguments: { region: "Hello" } },
          {
            headers: value === undefined ? {} : { "mcp-param-region": value },
          },
        );
      const encoded = `=?base64?${Buffer.from("Hello").toString("base64")}?=`;
      for (const [value, accepted] of [
        [encoded, true],
        ["Hello", true],
        [undefined, false],
        ["Goodbye", false],
        ["=?base64?SGVsbG8?=", false],
        ["=?base64?SGVs!!!bG8=?=", false],
      ] as const) {
        const reply = await region(value);
        if (accepted) {
          assert.equal(textOf(reply), "Region: Hello", `${value}: ${JSON.stringify(reply)}`);
        } else {
          assert.equal(reply.status, 400, `${value}: ${JSON.stringify(reply)}`);
          assert.equal(reply.error?.code, -32020, `${value}: ${JSON.stringify(reply)}`);
          assert.deepEqual(Object.keys(reply.error?.data?.mismatch ?? {}), ["header", "body"]);
        }
      }
    });
  });
}

describe("2026-07-28 clients, 2026-07-28 backend", () => {
  test("the server's question keys reach the client", async () => {
    const url = urlOf("2026-07-28");
    const round = inputRequired(await call(url, "test_input_required_result_elicitation"));
    assert.deepEqual(Object.keys(round.inputRequests ?? {}), ["user_name"]);
    const done = await call(url, "test_input_required_result_elicitation", {
      inputResponses: { user_name: accept({ name: "Alice" }) },
      requestState: round.requestState,
    });
    assert.equal(textOf(done), "Hello, Alice!");
  });

  test("answers sent with the first request are used for the questions they name", async () => {
    const done = await call(urlOf("2026-07-28"), "test_input_required_result_elicitation", {
      inputResponses: {
        user_name: accept({ name: "Alice" }),
        unknown_extra_key: accept({ foo: "bar" }),
      },
    });
    assert.equal(textOf(done), "Hello, Alice!", JSON.stringify(done));
  });
});

describe("2025-era clients", () => {
  for (const era of Object.keys(CONFIGS) as BackendEra[]) {
    test(`a question the client did not declare is refused, with the reason (${era} backend)`, async () => {
      for (const capabilities of [{}, { elicitation: {} }]) {
        const client = new ClientV1({ name: "rounds-e2e-v1", version: "1" }, { capabilities });
        await client.connect(new HttpV1(new URL(urlOf(era))));
        try {
          const result = await client.callTool({ name: "test_sampling", arguments: { prompt: "hi" } }).then(
            (r) => JSON.stringify(r),
            (e: unknown) => String(e),
          );
          // A 2026-07-28 server is told what the client declared and refuses the call itself; a 2025-era
          // one asks, and hears why the gateway cannot forward the question.
          assert.match(
            result,
            era === "2026-07-28"
              ? /-32021/
              : /did not declare sampling|cannot be asked \(it declared none of sampling, elicitation and roots\)/,
            JSON.stringify(capabilities),
          );
        } finally {
          await client.close();
        }
      }
    });

    test(`a backend asks during prompts/get and the client answers directly (${era} backend)`, async () => {
      const client = new ClientV1(
        { name: "rounds-e2e-v1", version: "1" },
        { capabilities: { elicitation: {} } },
      );
      const asked: string[] = [];
      client.setRequestHandler(ElicitRequestSchema, async (request) => {
        asked.push(request.params.message);
        return { action: "accept", content: { context: "from v1" } };
      });
      await client.connect(new HttpV1(new URL(urlOf(era))));
      try {
        const prompt = await client.getPrompt({ name: "test_input_required_result_prompt" });
        assert.deepEqual(asked, ["What context should the prompt use?"]);
        assert.deepEqual(prompt.messages, [
          { role: "user", content: { type: "text", text: "Use this context: from v1" } },
        ]);
      } finally {
        await client.close();
      }
    });
  }
});
