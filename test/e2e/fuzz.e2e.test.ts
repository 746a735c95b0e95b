/**
 * Fuzzing both faces of a real gateway process: one served over Streamable HTTP, one over stdio, each
 * in front of the fixture server. fast-check generates the inputs (a fixed seed; FUZZ_SEED=<n> to
 * change it, FUZZ_SCALE=<n> for n times the runs): malformed JSON, wrong JSON-RPC envelopes, known
 * methods with wrong params, payloads near and over server.http.maxBodyBytes, deep nesting, invalid
 * UTF-8, unknown methods, batch abuse and, over HTTP, oversized headers, wrong content types, odd
 * methods, bogus session ids and uploads cut short.
 *
 * What must hold, whatever the input:
 * - HTTP: an HTTP status below 500 and, for every refusal, a JSON-RPC error object (or, for what
 *   node:http refuses before the gateway sees it, its bare 4xx and a closed connection); every request
 *   in the body is answered; a protocol error is never dressed up as -32603 (that code is for
 *   unexpected exceptions, which are logged and never shown) and its message is one line.
 * - stdio: every line that is a request gets a response with its id (or an error with id null), every
 *   line that is not JSON-RPC gets an error with id null, notifications may be ignored, stdout carries
 *   nothing but JSON-RPC, and the process stays up.
 * - Between batches a witness, the SDK v1 Client, calls fx__echo on each gateway and must succeed (on
 *   stdio it shares the child's pipes with the fuzz lines through a small transport); at the end both
 *   processes are alive and neither logged an error. The diagnostics report how many inputs were sent.
 *
 * Inputs are sent one at a time (a stdio line is followed by a `ping` sentinel, so that whatever the
 * gateway writes for the line has arrived when the sentinel's answer does); waits are on events or
 * deadlines, never sleeps.
 */
import assert from "node:assert/strict";
import { type ChildProcess, spawn } from "node:child_process";
import { connect } from "node:net";
import { createInterface } from "node:readline";
import { StringDecoder } from "node:string_decoder";
import { after, before, describe, test } from "node:test";
import { Client } from "@modelcontextprotocol/sdk/client/index.js";
import { StreamableHTTPClientTransport } from "@modelcontextprotocol/sdk/client/streamableHttp.js";
import type { Transport } from "@modelcontextprotocol/sdk/shared/transport.js";
import type { JSONRPCMessage } from "@modelcontextprotocol/sdk/types.js";
import fc from "fast-check";
import { params, SEED } from "../support/fuzz.ts";
import {
  fixtureServer,
  LogWatcher,
  type RunningGateway,
  startHttpGateway,
  stdioGatewayCommand,
  writeConfig,
} from "../support/gateway-process.ts";

const MAX_BODY_BYTES = 65_536;
/** How long one HTTP exchange, or one stdio line's answers, may take before it counts as unanswered. */
const ANSWER_TIMEOUT_MS = 10_000;
/** After the sentinel's answer, how long a request's own answer may still take (a backend round trip). */
const LATE_ANSWER_MS = 5_000;
const MCP_HEADERS = { "content-type": "application/json", accept: "application/json, text/event-stream" };
/** node:http's default limit on the request head (--max-http-header-size); the heads below exceed it. */
const NODE_MAX_HEADER_BYTES = 16 * 1024;

const encoder = new TextEncoder();
const utf8 = (text: string) => encoder.encode(text);
const concat = (...parts: Uint8Array[]) => new Uint8Array(Buffer.concat(parts));

/** Inputs sent, per channel and category, for the summary. */
const sent = { http: new Map<string, number>(), stdio: new Map<string, number>() };
const count = (channel: "http" | "stdio", category: string) =>
  sent[channel].set(category, (sent[channel].get(category) ?? 0) + 1);
const witnessCalls = { http: 0, stdio: 0 };

// ---------------------------------------------------------------------------------------------------
// Inputs
// ---------------------------------------------------------------------------------------------------

/** One fuzz input: raw bytes, named by what made it (which is what fast-check prints on failure). */
class Payload {
  constructor(
    readonly category: string,
    readonly what: string,
    readonly bytes: Uint8Array,
  ) {}

  [fc.toStringMethod](): string {
    return `${this.category}/${this.what} (${this.bytes.length} bytes: ${preview(this.bytes)})`;
  }
}

function preview(bytes: Uint8Array, max = 100): string {
  const text = Buffer.from(bytes.subarray(0, max)).toString("latin1");
  return JSON.stringify(text) + (bytes.length > max ? "…" : "");
}

const payload = (category: string, what: string, body: string | Uint8Array) =>
  new Payload(category, what, typeof body === "string" ? utf8(body) : body);

const rpcText = (method: string, params?: unknown, id: unknown = 1) =>
  JSON.stringify({ jsonrpc: "2.0", id, method, ...(params === undefined ? {} : { params }) });

const SAMPLE_MESSAGES = [
  rpcText("ping"),
  rpcText("tools/list", {}, "list-1"),
  rpcText("tools/call", { name: "fx__echo", arguments: { message: "hello" } }, 7),
  rpcText("resources/read", { uri: "fixture://nothing" }, 3),
  JSON.stringify({ jsonrpc: "2.0", method: "notifications/initialized" }),
  rpcText("prompts/get", { name: "fx__greeting", arguments: { name: "x" } }, "p"),
];

const KNOWN_METHODS = [
  "ping",
  "initialize",
  "tools/list",
  "tools/call",
  "resources/list",
  "resources/templates/list",
  "resources/read",
  "resources/subscribe",
  "resources/unsubscribe",
  "prompts/list",
  "prompts/get",
  "completion/complete",
  "logging/setLevel",
  "tasks/get",
  "tasks/result",
  "tasks/list",
  "tasks/cancel",
];

const idArb = fc.oneof(
  fc.string({ minLength: 1, maxLength: 12 }).map((s) => `fz-${s}`),
  fc.integer({ min: 1_000_000, max: 2_000_000_000 }),
);

const unknownMethodArb = fc
  .oneof(
    fc.string({ minLength: 1, maxLength: 40 }),
    fc.constantFrom(
      "foo/bar",
      "__proto__",
      "constructor",
      "toString",
      "hasOwnProperty",
      "tools/call/extra",
      "TOOLS/LIST",
      " ping",
      "ping ",
      "tools\u0000list",
      "rpc.discover",
      "notifications/initialized",
      "sampling/createMessage",
      "elicitation/create",
      "roots/list",
      "tasks/unknown",
      "x".repeat(5_000),
    ),
  )
  .filter((m) => !KNOWN_METHODS.includes(m) && m !== "subscriptions/listen");

/**
 * Requests that pass the gateway's own shape check (message-shape.ts) but not the SDK's JSON-RPC
 * schema: a fractional, unsafe or infinite id, array params, a `_meta` that is not an object, a
 * progress token of the wrong type, an extra member, a request that is also a response.
 */
const SDK_REFUSED_REQUESTS = [
  '{"jsonrpc":"2.0","id":1.5,"method":"ping"}',
  '{"jsonrpc":"2.0","id":9007199254740993,"method":"ping"}',
  '{"jsonrpc":"2.0","id":1e400,"method":"ping"}',
  '{"jsonrpc":"2.0","id":"array-params","method":"ping","params":[]}',
  '{"jsonrpc":"2.0","id":"meta-5","method":"ping","params":{"_meta":5}}',
  '{"jsonrpc":"2.0","id":"meta-null","method":"tools/list","params":{"_meta":null}}',
  '{"jsonrpc":"2.0","id":"token-object","method":"tools/list","params":{"_meta":{"progressToken":{}}}}',
  '{"jsonrpc":"2.0","id":"extra-member","method":"ping","extra":1}',
  '{"jsonrpc":"2.0","id":"also-a-result","method":"ping","result":{}}',
];

/** 1. Bytes that are not JSON. */
const malformedJsonArb: fc.Arbitrary<Payload> = fc.oneof(
  fc
    .tuple(fc.constantFrom(...SAMPLE_MESSAGES), fc.double({ min: 0.01, max: 0.99, noNaN: true }))
    .map(([m, cut]) =>
      payload("malformed", "truncated", m.slice(0, Math.max(1, Math.floor(m.length * cut)))),
    ),
  fc.uint8Array({ minLength: 1, maxLength: 300 }).map((b) => payload("malformed", "random bytes", b)),
  fc
    .array(
      fc.constantFrom(
        "{",
        "}",
        "[",
        "]",
        ":",
        ",",
        '"',
        "null",
        "tru",
        "1e",
        "-",
        "\\u12",
        '"jsonrpc"',
        '"2.0"',
        " ",
      ),
      { minLength: 1, maxLength: 60 },
    )
    .map((tokens) => payload("malformed", "json-ish tokens", tokens.join(""))),
  fc
    .constantFrom(
      `${SAMPLE_MESSAGES[0]}x`,
      `${SAMPLE_MESSAGES[0]}${SAMPLE_MESSAGES[1]}`,
      "{'jsonrpc':'2.0','id':1,'method':'ping'}",
      '{"jsonrpc":"2.0","id":1,"method":"ping",}',
      '{"jsonrpc":"2.0","id":NaN,"method":"ping"}',
      '{"jsonrpc":"2.0","id":1,"method":"ping"} // comment',
      '{"jsonrpc":"2.0","id":0x10,"method":"ping"}',
      '{"jsonrpc":"2.0","id":1,"method":"\\x41"}',
      '{"jsonrpc":"2.0","id":1,"method":"ping"\u0000}',
      `\uFEFF${SAMPLE_MESSAGES[0]}`,
      "[".repeat(5),
      '"unterminated',
      "undefined",
      "{}}",
    )
    .map((text) => payload("malformed", "near-JSON", text)),
);

/** A JSON value as raw text, for values JSON.stringify cannot write (-0, 1e400, huge integers). */
const rawValue = (...texts: string[]) => fc.constantFrom(...texts);

/** 2. JSON objects with a wrong JSON-RPC envelope (methods whose params are all optional). */
const wrongShapeArb: fc.Arbitrary<Payload> = fc
  .record(
    {
      jsonrpc: rawValue('"2.0"', '"2.0"', '"1.0"', "2", "2.0", "null", '""', '"2.0 "', '["2.0"]'),
      id: fc.oneof(
        idArb.map((id) => JSON.stringify(id)),
        rawValue(
          "null",
          "true",
          "{}",
          "[]",
          "[1]",
          '{"a":1}',
          "1.5",
          "-1",
          "0",
          "-0",
          "1e400",
          "-1e400",
          "123456789012345678901234567890",
          "9007199254740993",
          '""',
          JSON.stringify("i".repeat(10_000)),
        ),
      ),
      method: fc.oneof(
        fc.constantFrom("ping", "tools/list", "resources/list", "prompts/list").map((m) => JSON.stringify(m)),
        unknownMethodArb.map((m) => JSON.stringify(m)),
        rawValue("5", "null", '""', "[]", '{"name":"ping"}', "true"),
      ),
      params: rawValue(
        "{}",
        "[]",
        "[1,2]",
        "5",
        '"x"',
        "null",
        "true",
        '{"_meta":5}',
        '{"_meta":null}',
        '{"_meta":[]}',
        '{"_meta":{"progressToken":{}}}',
        '{"_meta":{"progressToken":1.5}}',
      ),
      extra: rawValue('"result":{}', '"error":{"code":-32603,"message":"x"}', '"extra":1', '"id":"dup"'),
    },
    { requiredKeys: [] },
  )
  .map((fields) => {
    const parts = Object.entries(fields).map(([key, raw]) =>
      key === "extra" ? raw : `${JSON.stringify(key)}:${raw}`,
    );
    return payload("wrong-shape", Object.keys(fields).join("+") || "empty object", `{${parts.join(",")}}`);
  });

/**
 * Params for known methods: the keys they read, with values of any JSON type. (Not `_meta`: a wrong
 * `_meta` is an envelope problem, covered by the wrong-shape inputs.)
 */
const paramsArb = fc.dictionary(
  fc.constantFrom(
    "name",
    "arguments",
    "uri",
    "cursor",
    "level",
    "ref",
    "argument",
    "protocolVersion",
    "capabilities",
    "clientInfo",
    "x",
  ),
  fc.oneof(
    fc.jsonValue({ maxDepth: 2 }),
    fc.constantFrom("fx__echo", "nope__missing", "__proto__", "", "debug", "fixture://x"),
  ),
  { maxKeys: 4 },
);

/** 2b. Known methods with params of the wrong types (and tools/call with odd names and arguments). */
const wrongParamsArb: fc.Arbitrary<Payload> = fc.oneof(
  fc
    .tuple(fc.constantFrom(...KNOWN_METHODS), paramsArb, idArb)
    .map(([method, p, id]) => payload("wrong-params", method, rpcText(method, p, id))),
  fc
    .tuple(
      fc.constantFrom(
        "fx__echo",
        "fx__nope",
        "nope__missing",
        "fx__",
        "__echo",
        "fx__echo ",
        "FX__ECHO",
        "a".repeat(300),
      ),
      fc.oneof(
        fc.dictionary(fc.string({ maxLength: 8 }), fc.jsonValue({ maxDepth: 2 }), { maxKeys: 3 }),
        fc.constant(undefined),
      ),
      idArb,
    )
    .map(([name, args, id]) =>
      payload(
        "wrong-params",
        `tools/call ${name.slice(0, 20)}`,
        rpcText("tools/call", { name, arguments: args }, id),
      ),
    ),
);

/** 4. Deep nesting, as raw text (never built as objects, which JSON.stringify would recurse over). */
const nestedArb = (maxDepth: number): fc.Arbitrary<Payload> =>
  fc
    .tuple(
      fc.oneof(fc.constantFrom(1_000, 10_000, maxDepth), fc.integer({ min: 100, max: maxDepth })),
      fc.constantFrom("array", "object", "unbalanced", "params", "arguments", "meta", "id"),
      idArb,
    )
    .map(([depth, where, id]) => {
      const arrays = "[".repeat(depth) + "]".repeat(depth);
      const objects = `${'{"a":'.repeat(depth)}1${"}".repeat(depth)}`;
      const idText = JSON.stringify(id);
      const text = {
        array: arrays,
        object: objects,
        unbalanced: "[".repeat(depth),
        params: `{"jsonrpc":"2.0","id":${idText},"method":"ping","params":{"x":${objects}}}`,
        arguments: `{"jsonrpc":"2.0","id":${idText},"method":"tools/call","params":{"name":"fx__echo","arguments":${objects}}}`,
        meta: `{"jsonrpc":"2.0","id":${idText},"method":"tools/list","params":{"_meta":{"x":${arrays}}}}`,
        id: `{"jsonrpc":"2.0","id":${arrays},"method":"ping"}`,
      }[where];
      return payload("deep-nesting", `${where} × ${depth}`, text);
    });

/** 5. Invalid UTF-8 spliced into valid messages (in strings, keys, between tokens) or alone. */
const INVALID_SEQUENCES = [
  [0xff],
  [0xfe, 0xff],
  [0xc0, 0x80], // overlong NUL
  [0xc1, 0xbf],
  [0xe0, 0x80, 0x80], // overlong
  [0xed, 0xa0, 0x80], // a UTF-16 surrogate
  [0xf4, 0x90, 0x80, 0x80], // past U+10FFFF
  [0xe2, 0x82], // truncated
  [0x80], // lone continuation
  [0xf8, 0x88, 0x80, 0x80, 0x80], // 5-byte form
];

const invalidUtf8Arb: fc.Arbitrary<Payload> = fc.oneof(
  fc
    .tuple(
      fc.constantFrom(...SAMPLE_MESSAGES),
      fc.double({ min: 0, max: 1, noNaN: true }),
      fc.array(fc.constantFrom(...INVALID_SEQUENCES), { minLength: 1, maxLength: 3 }),
    )
    .map(([message, at, seqs]) => {
      const bytes = utf8(message);
      const cut = Math.floor(bytes.length * at);
      const bad = Uint8Array.from(seqs.flat());
      return payload("invalid-utf8", "spliced", concat(bytes.subarray(0, cut), bad, bytes.subarray(cut)));
    }),
  fc
    .tuple(fc.array(fc.constantFrom(...INVALID_SEQUENCES), { minLength: 1, maxLength: 3 }), idArb)
    .map(([seqs, id]) => {
      const bad = Buffer.from(seqs.flat());
      const where = bad.toString("hex");
      return payload(
        "invalid-utf8",
        `inside a string (${where})`,
        concat(
          utf8(
            `{"jsonrpc":"2.0","id":${JSON.stringify(id)},"method":"tools/call","params":{"name":"fx__echo","arguments":{"message":"`,
          ),
          bad,
          utf8('"}}}'),
        ),
      );
    }),
  fc.constantFrom("utf16le", "utf16be").map((encoding) => {
    const le = Buffer.from(SAMPLE_MESSAGES[0] as string, "utf16le");
    const bytes = encoding === "utf16le" ? le : Buffer.from(le).swap16();
    // A UTF-16 newline would end the stdio line early; keep it one line.
    return payload(
      "invalid-utf8",
      encoding,
      new Uint8Array(bytes).filter((b) => b !== 0x0a),
    );
  }),
);

/** 6. Valid envelopes with methods nobody serves, as requests and as notifications. */
const unknownMethodPayloadArb: fc.Arbitrary<Payload> = fc
  .tuple(unknownMethodArb, fc.option(idArb, { nil: undefined }), fc.option(paramsArb, { nil: undefined }))
  .map(([method, id, p]) => {
    const message = {
      jsonrpc: "2.0",
      ...(id === undefined ? {} : { id }),
      method,
      ...(p ? { params: p } : {}),
    };
    return payload("unknown-method", id === undefined ? "notification" : "request", JSON.stringify(message));
  });

/** 7. Batches: empty, at and over the SDK's 100-message limit, of garbage, nested, mixed. */
const validBatchElementArb = fc.oneof(
  idArb.map((id) => ({ jsonrpc: "2.0", id, method: "ping" })),
  idArb.map((id) => ({ jsonrpc: "2.0", id, method: "tools/list" })),
  idArb.map((id) => ({
    jsonrpc: "2.0",
    id,
    method: "tools/call",
    params: { name: "fx__echo", arguments: { message: "b" } },
  })),
  idArb.map((id) => ({ jsonrpc: "2.0", id, method: "foo/unknown" })),
  fc.constant({ jsonrpc: "2.0", method: "notifications/unknown" }),
);

/** Gives the requests of a batch distinct ids (a batch with two requests of one id is a client bug). */
function distinctIds(elements: unknown[]): unknown[] {
  return elements.map((element, i) =>
    typeof element === "object" && element !== null && "id" in element
      ? { ...element, id: `b${i}` }
      : element,
  );
}

const batchArb: fc.Arbitrary<Payload> = fc.oneof(
  fc.constant(payload("batch", "empty", "[]")),
  fc.constant(payload("batch", "empty nested", "[[]]")),
  fc
    .array(validBatchElementArb, { minLength: 1, maxLength: 100 })
    .map((elements) => payload("batch", `${elements.length} valid`, JSON.stringify(distinctIds(elements)))),
  fc
    .integer({ min: 101, max: 1_000 })
    .map((n) =>
      payload(
        "batch",
        `${n} pings`,
        JSON.stringify(Array.from({ length: n }, (_, i) => ({ jsonrpc: "2.0", id: i, method: "ping" }))),
      ),
    ),
  fc.constant(
    payload(
      "batch",
      "1000 notifications",
      JSON.stringify(Array.from({ length: 1_000 }, () => ({ jsonrpc: "2.0", method: "notifications/x" }))),
    ),
  ),
  fc
    .array(fc.oneof(fc.jsonValue({ maxDepth: 1 }), validBatchElementArb), { minLength: 1, maxLength: 30 })
    .map((elements) => payload("batch", "garbage and valid", JSON.stringify(distinctIds(elements)))),
  fc
    .integer({ min: 2, max: 200 })
    .map((depth) =>
      payload("batch", `nested × ${depth}`, `${"[".repeat(depth)}${SAMPLE_MESSAGES[0]}${"]".repeat(depth)}`),
    ),
);

/** Requests that work: a ping, a tool list, an echo. */
const validRequestArb: fc.Arbitrary<Payload> = fc
  .tuple(fc.constantFrom("ping", "tools/list", "echo"), idArb)
  .map(([what, id]) =>
    payload(
      "valid",
      what,
      what === "echo"
        ? rpcText("tools/call", { name: "fx__echo", arguments: { message: "m" } }, id)
        : rpcText(what, {}, id),
    ),
  );

/** 3. (stdio) Long lines: valid echo calls of 64 KiB to 1 MiB, and garbage of that size. */
const longLineArb: fc.Arbitrary<Payload> = fc
  .tuple(fc.integer({ min: 64 * 1024, max: 1024 * 1024 }), fc.boolean(), idArb)
  .map(([size, valid, id]) =>
    valid
      ? payload(
          "huge",
          `echo of ${size} chars`,
          rpcText("tools/call", { name: "fx__echo", arguments: { message: "x".repeat(size) } }, id),
        )
      : payload(
          "huge",
          `${size} bytes of garbage`,
          `{"jsonrpc":"2.0","id":1,"method":"ping","params":${"9".repeat(size)}`,
        ),
  );

// ---------------------------------------------------------------------------------------------------
// JSON-RPC answers
// ---------------------------------------------------------------------------------------------------

interface RpcMessage {
  readonly jsonrpc?: unknown;
  readonly id?: unknown;
  readonly method?: unknown;
  readonly result?: unknown;
  readonly error?: { readonly code?: unknown; readonly message?: unknown };
}

/** Problems with one message the gateway wrote: JSON-RPC 2.0, and an error the design allows. */
function messageProblems(message: unknown): string[] {
  if (typeof message !== "object" || message === null || Array.isArray(message)) {
    return [`not a JSON-RPC message: ${JSON.stringify(message)?.slice(0, 200)}`];
  }
  const m = message as RpcMessage;
  const problems: string[] = [];
  if (m.jsonrpc !== "2.0") problems.push(`"jsonrpc" is ${JSON.stringify(m.jsonrpc)}`);
  if (m.error !== undefined) {
    const { code, message: text } = m.error;
    if (!Number.isInteger(code)) problems.push(`error code ${JSON.stringify(code)} is not an integer`);
    if (typeof text !== "string") problems.push("error message is not a string");
    // (A parse error quotes the bytes it choked on; whether that stays one line has a test of its own.)
    else if (/[\r\n]/.test(text) && code !== -32700) {
      problems.push(`error message is not one line: ${JSON.stringify(text.slice(0, 160))}`);
    }
    if (code === -32603) {
      problems.push(
        `-32603 (internal error, for unexpected exceptions only) answered a malformed request: ${JSON.stringify(String(text).slice(0, 160))}`,
      );
    }
  } else if (m.method === undefined && !("result" in m)) {
    problems.push("a response with neither result nor error");
  }
  return problems;
}

type Expectation =
  /** Not JSON: one -32700 error with id null. */
  | { readonly kind: "parse" }
  /** JSON, not a JSON-RPC message: one error with id null. */
  | { readonly kind: "invalid" }
  /** A request (it has a usable id): answered with its id, or with an error whose id is null. */
  | { readonly kind: "request"; readonly id: string | number }
  /** A notification or a response: may go unanswered. */
  | { readonly kind: "free" };

const has = (value: object, key: string) => Object.hasOwn(value, key);

/** What one JSON-RPC message (already parsed) calls for, by the JSON-RPC 2.0 spec. */
function expectationOfValue(value: unknown): Expectation {
  if (typeof value !== "object" || value === null || Array.isArray(value)) return { kind: "invalid" };
  const m = value as Record<string, unknown>;
  if (!has(m, "method") && (has(m, "result") || has(m, "error"))) return { kind: "free" };
  if (!has(m, "id"))
    return typeof m.method === "string" && m.method !== "" ? { kind: "free" } : { kind: "invalid" };
  if (typeof m.id === "string" || (typeof m.id === "number" && Number.isFinite(m.id)))
    return { kind: "request", id: m.id };
  // An id of a wrong type, or a number JSON cannot write back (1e400 parses to Infinity).
  return { kind: "invalid" };
}

function expectationOf(text: string): Expectation {
  try {
    return expectationOfValue(JSON.parse(text));
  } catch {
    return { kind: "parse" };
  }
}

const isError = (m: RpcMessage) => m.error !== undefined;
const answers = (m: RpcMessage, id: string | number) => m.id === id;

// ---------------------------------------------------------------------------------------------------
// HTTP
// ---------------------------------------------------------------------------------------------------

interface HttpAnswer {
  readonly status: number;
  readonly contentType: string;
  readonly text: string;
}

/** The JSON-RPC messages of an answer: one JSON value (or array) or the data of each SSE event. */
function messagesOf(answer: HttpAnswer): unknown[] {
  if (answer.text === "") return [];
  if (answer.contentType.startsWith("text/event-stream")) {
    const out: unknown[] = [];
    for (const event of answer.text.split(/\r?\n\r?\n/)) {
      const data = event
        .split(/\r?\n/)
        .filter((line) => line.startsWith("data:"))
        .map((line) => line.slice(5).replace(/^ /, ""))
        .join("\n");
      if (data !== "") out.push(JSON.parse(data));
    }
    return out;
  }
  const value: unknown = JSON.parse(answer.text);
  return Array.isArray(value) ? value : [value];
}

/**
 * Problems with the answer to a POST of `body` (sent with proper headers): the HTTP status and
 * JSON-RPC errors the guards owe it, then what each message in it calls for.
 */
function postProblems(body: Uint8Array, answer: HttpAnswer): string[] {
  const problems: string[] = [];
  if (answer.status >= 500) problems.push(`HTTP ${answer.status}`);
  let messages: unknown[];
  try {
    messages = messagesOf(answer);
  } catch {
    return [...problems, `HTTP ${answer.status} with a body that is not JSON: ${answer.text.slice(0, 200)}`];
  }
  for (const m of messages) problems.push(...messageProblems(m));
  const rpc = messages as RpcMessage[];
  if (answer.status >= 400) {
    if (!answer.contentType.startsWith("application/json"))
      problems.push(`HTTP ${answer.status} is not JSON`);
    if (rpc.length !== 1 || !rpc[0] || !isError(rpc[0]))
      problems.push(`HTTP ${answer.status} without one JSON-RPC error`);
  }
  const code = rpc[0]?.error?.code;
  if (body.length > MAX_BODY_BYTES) {
    if (answer.status !== 413 || code !== -32600)
      problems.push(`a ${body.length}-byte body got HTTP ${answer.status} ${code}, not 413 -32600`);
    return problems;
  }
  const text = Buffer.from(body).toString("utf8");
  let value: unknown;
  try {
    value = JSON.parse(text);
  } catch {
    if (answer.status !== 400 || code !== -32700)
      problems.push(`a body that is not JSON got HTTP ${answer.status} ${code}, not 400 -32700`);
    return problems;
  }
  const elements = Array.isArray(value) ? value : [value];
  if (Array.isArray(value) && value.length === 0) {
    if (answer.status !== 400 || code !== -32600)
      problems.push(`an empty batch got HTTP ${answer.status} ${code}, not 400 -32600`);
    return problems;
  }
  const expectations = elements.map(expectationOfValue);
  if (answer.status === 400) return problems; // the whole body refused with one error: fine for any of these
  if (answer.status === 202) {
    if (expectations.some((e) => e.kind !== "free"))
      problems.push("HTTP 202 (nothing to answer) for a body with requests in it");
    return problems;
  }
  if (answer.status !== 200) {
    problems.push(`HTTP ${answer.status} for a well-formed POST`);
    return problems;
  }
  for (const e of expectations) {
    if (e.kind === "request" && !rpc.some((m) => answers(m, e.id) || (m.id === null && isError(m)))) {
      problems.push(`request ${JSON.stringify(e.id)} went unanswered in an HTTP 200`);
    }
    if ((e.kind === "invalid" || e.kind === "parse") && !rpc.some((m) => m.id === null && isError(m))) {
      problems.push("an invalid message went without an error in an HTTP 200");
    }
  }
  return problems;
}

interface HttpRequestSpec {
  readonly method?: string;
  readonly headers?: Record<string, string>;
  readonly body?: Uint8Array;
}

async function httpExchange(url: string, spec: HttpRequestSpec): Promise<HttpAnswer> {
  const response = await fetch(url, {
    method: spec.method ?? "POST",
    headers: spec.headers ?? MCP_HEADERS,
    ...(spec.body ? { body: spec.body } : {}),
    signal: AbortSignal.timeout(ANSWER_TIMEOUT_MS),
  });
  return {
    status: response.status,
    contentType: response.headers.get("content-type") ?? "",
    text: await response.text(),
  };
}

/** `value` with a name, which is all fast-check prints of it. */
function named<T extends object>(what: string, value: T): T & { readonly what: string } {
  return Object.assign(value, { what, [fc.toStringMethod]: () => what });
}

/** A raw request (latin1 text) and the statuses that may answer it; printed by name only. */
class RawCase {
  constructor(
    readonly what: string,
    readonly text: string,
    readonly accept: (status: number) => boolean,
  ) {}

  [fc.toStringMethod](): string {
    return this.what;
  }
}

interface RawAnswer {
  /** 0 when the connection closed without a status line. */
  readonly status: number;
  readonly headers: Record<string, string>;
  readonly body: string;
  readonly closed: boolean;
}

/** Sends raw bytes on a fresh loopback connection; resolves with what came back when it closes. */
function rawExchange(
  port: number,
  bytes: Uint8Array,
  opts: { destroyAfterWrite?: boolean } = {},
): Promise<RawAnswer> {
  return new Promise((resolve, reject) => {
    const socket = connect(port, "127.0.0.1");
    const chunks: Buffer[] = [];
    const timer = setTimeout(() => {
      socket.destroy();
      reject(new Error(`no answer within ${ANSWER_TIMEOUT_MS} ms on a raw connection`));
    }, ANSWER_TIMEOUT_MS);
    socket.on("data", (chunk: Buffer) => chunks.push(chunk));
    socket.on("error", () => undefined); // a reset after node:http's 431 is one way to close
    socket.on("close", () => {
      clearTimeout(timer);
      resolve(parseRawResponse(Buffer.concat(chunks)));
    });
    socket.on("connect", () => {
      if (opts.destroyAfterWrite) socket.write(bytes, () => socket.destroy());
      else socket.end(bytes);
    });
  });
}

function parseRawResponse(raw: Buffer): RawAnswer {
  const text = raw.toString("latin1");
  const end = text.indexOf("\r\n\r\n");
  const head = end === -1 ? text : text.slice(0, end);
  const [statusLine = "", ...headerLines] = head.split("\r\n");
  const status = Number(/^HTTP\/1\.[01] (\d{3})/.exec(statusLine)?.[1] ?? 0);
  const headers: Record<string, string> = {};
  for (const line of headerLines) {
    const colon = line.indexOf(":");
    if (colon > 0) headers[line.slice(0, colon).trim().toLowerCase()] = line.slice(colon + 1).trim();
  }
  let body =
    end === -1 ? "" : raw.subarray(Buffer.byteLength(text.slice(0, end + 4), "latin1")).toString("utf8");
  if (headers["transfer-encoding"] === "chunked") {
    let decoded = "";
    let rest = body;
    for (;;) {
      const lineEnd = rest.indexOf("\r\n");
      if (lineEnd === -1) break;
      const size = Number.parseInt(rest.slice(0, lineEnd), 16);
      if (!(size > 0)) break;
      decoded += rest.slice(lineEnd + 2, lineEnd + 2 + size);
      rest = rest.slice(lineEnd + 2 + size + 2);
    }
    body = decoded;
  }
  return { status, headers, body, closed: true };
}

/** Problems with an answer to a request the gateway must refuse with a JSON-RPC error of this status. */
function refusalProblems(
  answer: HttpAnswer,
  status: number | readonly number[],
  code?: number | undefined,
): string[] {
  const statuses = typeof status === "number" ? [status] : status;
  const problems: string[] = [];
  if (!statuses.includes(answer.status))
    problems.push(`HTTP ${answer.status}, expected ${statuses.join(" or ")}`);
  let messages: unknown[] = [];
  try {
    messages = messagesOf(answer);
  } catch {
    return [...problems, `HTTP ${answer.status} with a body that is not JSON: ${answer.text.slice(0, 200)}`];
  }
  const [m] = messages as RpcMessage[];
  if (messages.length !== 1 || !m || !isError(m))
    problems.push(`HTTP ${answer.status} without one JSON-RPC error: ${answer.text.slice(0, 200)}`);
  else {
    problems.push(...messageProblems(m));
    if (code !== undefined && m.error?.code !== code)
      problems.push(`JSON-RPC code ${m.error?.code}, expected ${code}`);
  }
  return problems;
}

// ---------------------------------------------------------------------------------------------------
// stdio
// ---------------------------------------------------------------------------------------------------

/** The JSON-RPC lines the gateway will see in `bytes`, as it splits and decodes them. */
function linesOf(bytes: Uint8Array): string[] {
  const lines: string[] = [];
  let start = 0;
  for (let i = 0; i <= bytes.length; i++) {
    if (i === bytes.length || bytes[i] === 0x0a) {
      const decoder = new StringDecoder("utf8");
      const line = (decoder.write(Buffer.from(bytes.subarray(start, i))) + decoder.end()).replace(/\r$/, "");
      if (line.trim() !== "") lines.push(line);
      start = i + 1;
    }
  }
  return lines;
}

/**
 * A gateway on stdio, shared by a witness (an SDK v1 Client on a transport over the child's pipes)
 * and raw fuzz lines. While the witness runs, everything the gateway writes goes to it; while fuzz
 * lines run, answers go to an inbox the checks read.
 */
class StdioGateway {
  readonly child: ChildProcess;
  readonly logs: LogWatcher;
  /** Lines on stdout that were not JSON: stdout belongs to the protocol. */
  readonly garbage: string[] = [];
  readonly transport: Transport;
  #phase: "witness" | "fuzz" = "witness";
  #inbox: RpcMessage[] = [];
  #wake: (() => void) | undefined;
  #sentinels = 0;
  readonly exited: Promise<number | null>;

  constructor(configPath: string) {
    const command = stdioGatewayCommand(configPath);
    this.child = spawn(command.command, command.args, { cwd: command.cwd, stdio: ["pipe", "pipe", "pipe"] });
    this.logs = new LogWatcher(this.child.stderr as NodeJS.ReadableStream);
    this.exited = new Promise((resolve) => this.child.once("exit", (code) => resolve(code)));
    const self = this;
    this.transport = {
      async start() {},
      async send(message: JSONRPCMessage) {
        self.write(utf8(`${JSON.stringify(message)}\n`));
      },
      async close() {
        self.child.stdin?.end();
      },
    };
    createInterface({ input: this.child.stdout as NodeJS.ReadableStream }).on("line", (line) => {
      let message: unknown;
      try {
        message = JSON.parse(line);
      } catch {
        this.garbage.push(line.slice(0, 300));
        return;
      }
      if (this.#phase === "witness") {
        this.transport.onmessage?.(message as JSONRPCMessage);
        return;
      }
      const m = message as RpcMessage;
      if (typeof m === "object" && m !== null && m.method !== undefined) return; // its own notifications
      this.#inbox.push(m);
      this.#wake?.();
    });
    this.child.once("exit", () => this.#wake?.());
  }

  write(bytes: Uint8Array): void {
    this.child.stdin?.write(bytes);
  }

  /** Runs `body` with the gateway's answers routed to the witness. */
  async asWitness<T>(body: () => Promise<T>): Promise<T> {
    this.#phase = "witness";
    try {
      return await body();
    } finally {
      this.#phase = "fuzz";
    }
  }

  /** Waits until `done` holds for the inbox, or the deadline passes (then false). */
  async #until(done: () => boolean, timeoutMs: number): Promise<boolean> {
    const deadline = Date.now() + timeoutMs;
    while (!done()) {
      if (this.child.exitCode !== null) return false;
      const left = deadline - Date.now();
      if (left <= 0) return false;
      await new Promise<void>((resolve) => {
        const timer = setTimeout(resolve, left);
        this.#wake = () => {
          clearTimeout(timer);
          resolve();
        };
      });
      this.#wake = undefined;
    }
    return true;
  }

  /**
   * Writes one fuzz input (and a newline), then a ping sentinel; returns the problems with what came
   * back for the input's lines.
   */
  async fuzz(input: Payload): Promise<string[]> {
    this.#inbox = [];
    const expectations = linesOf(input.bytes).map(expectationOf);
    const sentinel = `\u0001sentinel-${++this.#sentinels}`;
    this.write(
      concat(input.bytes, utf8(`\n${JSON.stringify({ jsonrpc: "2.0", id: sentinel, method: "ping" })}\n`)),
    );
    const gotSentinel = await this.#until(
      () => this.#inbox.some((m) => m.id === sentinel),
      ANSWER_TIMEOUT_MS,
    );
    if (!gotSentinel) {
      return [
        this.child.exitCode !== null
          ? `the gateway exited (${this.child.exitCode})`
          : "the sentinel ping went unanswered",
      ];
    }
    const requests = expectations.filter(
      (e): e is Extract<Expectation, { kind: "request" }> => e.kind === "request",
    );
    const nullErrors = () => this.#inbox.filter((m) => m.id === null && isError(m)).length;
    const mustBeNull = expectations.filter((e) => e.kind === "parse" || e.kind === "invalid").length;
    const unanswered = () => requests.filter((r) => !this.#inbox.some((m) => answers(m, r.id)));
    // Requests that reach a backend are answered after the sentinel; give them a moment.
    await this.#until(() => unanswered().length + mustBeNull <= nullErrors(), LATE_ANSWER_MS);
    const problems: string[] = [];
    for (const m of this.#inbox) if (m.id !== sentinel) problems.push(...messageProblems(m));
    const missing = unanswered().length + mustBeNull - nullErrors();
    if (missing > 0) {
      const which = unanswered().map((r) => JSON.stringify(r.id));
      problems.push(
        `${missing} of ${expectations.length} line(s) got no answer (requests without their own answer: ` +
          `${which.join(", ") || "none"}; errors with id null: ${nullErrors()} of ${mustBeNull} owed to invalid lines)`,
      );
    }
    for (const e of expectations) {
      if (e.kind === "parse" && !this.#inbox.some((m) => m.id === null && m.error?.code === -32700)) {
        problems.push("a line that is not JSON got no -32700");
      }
    }
    if (this.garbage.length > 0)
      problems.push(`stdout carried non-JSON: ${JSON.stringify(this.garbage.slice(0, 3))}`);
    return problems;
  }

  /** The error messages the last fuzz input got. */
  lastErrorMessages(): string[] {
    return this.#inbox.flatMap((m) => (typeof m.error?.message === "string" ? [m.error.message] : []));
  }

  async stop(): Promise<number | null> {
    if (this.child.exitCode !== null) return this.child.exitCode;
    this.child.stdin?.end();
    return this.exited;
  }
}

// ---------------------------------------------------------------------------------------------------
// The gateways and their witnesses
// ---------------------------------------------------------------------------------------------------

let http: RunningGateway;
let httpPort: number;
let httpWitness: Client;
let httpWitnessTransport: StreamableHTTPClientTransport;
let stdio: StdioGateway;
let stdioWitness: Client;

before(async () => {
  const configPath = writeConfig({
    mcpServers: { fx: fixtureServer() },
    server: { http: { maxBodyBytes: MAX_BODY_BYTES } },
  });
  stdio = new StdioGateway(configPath);
  stdioWitness = new Client({ name: "stdio-witness", version: "1" });
  const [gateway] = await Promise.all([
    startHttpGateway(configPath),
    stdio.asWitness(() => stdioWitness.connect(stdio.transport)),
  ]);
  http = gateway;
  httpPort = Number(new URL(http.url).port);
  httpWitness = new Client({ name: "http-witness", version: "1" });
  httpWitnessTransport = new StreamableHTTPClientTransport(new URL(http.url));
  await httpWitness.connect(httpWitnessTransport);
});

after(async () => {
  await httpWitness?.close();
  const [httpCode, stdioCode] = await Promise.all([http?.stop(), stdio?.stop()]);
  assert.equal(httpCode, 0, `the HTTP gateway exits 0 on SIGTERM:\n${http?.logs.tail()}`);
  assert.equal(stdioCode, 0, `the stdio gateway exits 0 when stdin closes:\n${stdio?.logs.tail()}`);
});

/** Both witnesses call fx__echo, and both processes are still running. */
async function witnessesServe(tag: string): Promise<void> {
  assert.equal(http.child.exitCode, null, `the HTTP gateway is still running:\n${http.logs.tail()}`);
  assert.equal(stdio.child.exitCode, null, `the stdio gateway is still running:\n${stdio.logs.tail()}`);
  const message = `still here after ${tag}`;
  const viaHttp = await httpWitness.callTool({ name: "fx__echo", arguments: { message } });
  witnessCalls.http++;
  assert.deepEqual(viaHttp.content, [{ type: "text", text: message }], "the HTTP witness's fx__echo");
  const viaStdio = await stdio.asWitness(() =>
    stdioWitness.callTool({ name: "fx__echo", arguments: { message } }),
  );
  witnessCalls.stdio++;
  assert.deepEqual(viaStdio.content, [{ type: "text", text: message }], "the stdio witness's fx__echo");
}

const withSession = () => ({
  ...MCP_HEADERS,
  "mcp-session-id": String(httpWitnessTransport.sessionId),
  "mcp-protocol-version": String(httpWitnessTransport.protocolVersion),
});

/** POSTs each payload (outside and, for `inSession`, inside the witness's session) and checks it. */
async function postAll(category: string, inputs: readonly Payload[], inSession: boolean): Promise<void> {
  const problems: string[] = [];
  for (const [i, input] of inputs.entries()) {
    const headers = inSession && i % 2 === 1 ? withSession() : MCP_HEADERS;
    count("http", category);
    let answer: HttpAnswer;
    try {
      answer = await httpExchange(http.url, { headers, body: input.bytes });
    } catch (error) {
      problems.push(`${input[fc.toStringMethod]()}: ${String(error)}`);
      continue;
    }
    for (const p of postProblems(input.bytes, answer)) problems.push(`${input[fc.toStringMethod]()}: ${p}`);
  }
  await witnessesServe(category);
  assert.deepEqual(problems, [], `HTTP, ${category}:\n${problems.slice(0, 12).join("\n")}`);
}

/** Writes each payload to the stdio gateway and checks what came back. */
async function writeAll(category: string, inputs: readonly Payload[]): Promise<void> {
  const problems: string[] = [];
  for (const input of inputs) {
    count("stdio", category);
    const found = await stdio.fuzz(input);
    for (const p of found) problems.push(`${input[fc.toStringMethod]()}: ${p}`);
    if (stdio.child.exitCode !== null) break;
    // Each unanswered line costs LATE_ANSWER_MS of waiting; one is enough to report.
    if (found.some((p) => p.includes("got no answer"))) break;
  }
  await witnessesServe(category);
  assert.deepEqual(problems, [], `stdio, ${category}:\n${problems.slice(0, 12).join("\n")}`);
}

const batchOf = (arb: fc.Arbitrary<Payload>, max: number) =>
  fc.array(arb, { minLength: 1, maxLength: max, size: "max" });

// ---------------------------------------------------------------------------------------------------
// HTTP
// ---------------------------------------------------------------------------------------------------

describe(`HTTP fuzz (FUZZ_SEED=${SEED})`, () => {
  test("malformed JSON: 400 with -32700, in and out of a session", async () => {
    await fc.assert(
      fc.asyncProperty(batchOf(malformedJsonArb, 60), (inputs) => postAll("malformed", inputs, true)),
      params(24),
    );
  });

  test("a parse error's message stays one line whatever the body's bytes (it quotes them)", async () => {
    const broken = fc
      .tuple(fc.string({ maxLength: 12 }), fc.constantFrom("\n", "\r", "\r\n"), fc.string({ maxLength: 12 }))
      .map(([a, eol, b]) => payload("parse-error-message", "line break in the body", `x${a}${eol}${b}`));
    await fc.assert(
      fc.asyncProperty(fc.array(broken, { minLength: 1, maxLength: 10 }), async (inputs) => {
        const problems: string[] = [];
        for (const input of inputs) {
          count("http", "parse-error-message");
          const answer = await httpExchange(http.url, { body: input.bytes });
          const [m] = messagesOf(answer) as RpcMessage[];
          const text = String(m?.error?.message);
          if (answer.status !== 400 || m?.error?.code !== -32700)
            problems.push(`${input[fc.toStringMethod]()}: ${answer.status} ${answer.text}`);
          else if (/[\r\n]/.test(text))
            problems.push(`${input[fc.toStringMethod]()}: ${JSON.stringify(text)}`);
        }
        assert.deepEqual(problems, [], problems.slice(0, 5).join("\n"));
      }),
      params(10),
    );
  });

  test("requests the SDK's schema refuses: 400 with -32600 (the answer stdio owes them too)", async () => {
    for (const text of SDK_REFUSED_REQUESTS) {
      count("http", "sdk-refused");
      const answer = await httpExchange(http.url, { body: utf8(text) });
      assert.deepEqual(refusalProblems(answer, 400, -32600), [], text);
    }
  });

  test("wrong JSON-RPC envelopes (jsonrpc, id, method, params): 400 with an error, or a proper answer", async () => {
    await fc.assert(
      fc.asyncProperty(batchOf(wrongShapeArb, 60), (inputs) => postAll("wrong-shape", inputs, true)),
      params(24),
    );
  });

  test("known methods with params of the wrong types: an error the client can act on, never -32603", async () => {
    await fc.assert(
      fc.asyncProperty(batchOf(wrongParamsArb, 30), (inputs) => postAll("wrong-params", inputs, true)),
      params(20),
    );
  });

  test("bodies near server.http.maxBodyBytes: served up to the byte, 413 past it (bytes, not characters)", async () => {
    const sizedEcho = fc
      .tuple(fc.integer({ min: -64, max: 64 }), fc.constantFrom("x", "é", "€", "😀"), fc.boolean())
      .map(([delta, char, valid]) => {
        const target = MAX_BODY_BYTES + delta;
        const shell = rpcText("tools/call", { name: "fx__echo", arguments: { message: "" } }, "size");
        const room = target - Buffer.byteLength(shell);
        const unit = Buffer.byteLength(char);
        const message = char.repeat(Math.floor(room / unit)) + "x".repeat(room % unit);
        const body = valid
          ? rpcText("tools/call", { name: "fx__echo", arguments: { message } }, "size")
          : `{"garbage":"${message}`;
        return payload(
          "huge",
          `${valid ? "echo" : "garbage"} of ${Buffer.byteLength(body)} bytes (${char})`,
          body,
        );
      });
    const wayOver = fc
      .integer({ min: MAX_BODY_BYTES * 2, max: 4 * 1024 * 1024 })
      .map((size) => payload("huge", `${size} bytes`, "[".repeat(size)));
    await fc.assert(
      fc.asyncProperty(
        fc.array(fc.oneof({ weight: 5, arbitrary: sizedEcho }, wayOver), {
          minLength: 1,
          maxLength: 20,
          size: "max",
        }),
        async (inputs) => {
          await postAll("huge", inputs, true);
          // A body at the limit is served: a real answer, not just an error.
          for (const input of inputs.filter(
            (i) => i.bytes.length <= MAX_BODY_BYTES && i.what.startsWith("echo"),
          )) {
            const answer = await httpExchange(http.url, { body: input.bytes });
            count("http", "huge");
            const [m] = messagesOf(answer) as RpcMessage[];
            assert.equal(answer.status, 200, `${input[fc.toStringMethod]()}: HTTP ${answer.status}`);
            assert.ok(
              m?.result !== undefined || m?.error?.code === -32602,
              `${input[fc.toStringMethod]()}: ${answer.text.slice(0, 200)}`,
            );
          }
        },
      ),
      params(16),
    );
  });

  test("deep nesting (up to 30 000 levels under the limit, 100 000 over it): no 500, no stack overflow", async () => {
    await fc.assert(
      fc.asyncProperty(
        batchOf(fc.oneof({ weight: 4, arbitrary: nestedArb(30_000) }, nestedArb(100_000)), 12),
        (inputs) => postAll("deep-nesting", inputs, true),
      ),
      params(16),
    );
  });

  test("invalid UTF-8 (overlong, surrogates, truncated, UTF-16): a proper answer", async () => {
    await fc.assert(
      fc.asyncProperty(batchOf(invalidUtf8Arb, 50), (inputs) => postAll("invalid-utf8", inputs, true)),
      params(20),
    );
  });

  test("unknown methods: -32601 for requests, 202 for notifications", async () => {
    await fc.assert(
      fc.asyncProperty(batchOf(unknownMethodPayloadArb, 40), async (inputs) => {
        await postAll("unknown-method", inputs, true);
        for (const input of inputs.filter((i) => i.what === "request").slice(0, 5)) {
          const answer = await httpExchange(http.url, { body: input.bytes });
          count("http", "unknown-method");
          const [m] = messagesOf(answer) as RpcMessage[];
          assert.equal(m?.error?.code, -32601, `${input[fc.toStringMethod]()}: ${answer.text.slice(0, 200)}`);
        }
      }),
      params(20),
    );
  });

  test("batch abuse (empty, 100 and over, garbage, nested, 1 000 notifications): every request answered or the batch refused", async () => {
    await fc.assert(
      fc.asyncProperty(batchOf(batchArb, 12), (inputs) => postAll("batch", inputs, true)),
      params(20),
    );
  });

  test("content types, accept headers, protocol versions and bogus session ids: the right 4xx and a JSON-RPC error", async () => {
    const body = utf8(rpcText("ping", undefined, "h"));
    const witnessSession = () => String(httpWitnessTransport.sessionId);
    const headerCase = fc.oneof(
      fc
        .oneof(
          fc.constantFrom(
            "text/plain",
            "application/xml",
            "application/x-www-form-urlencoded",
            "multipart/form-data; boundary=x",
            "",
            "application/jsonx",
            "json",
            "text/json",
            "application/json-seq",
          ),
          fc.stringMatching(/^[a-z]{1,10}\/[a-z+.-]{1,12}$/).filter((t) => !t.includes("json")),
        )
        .map((contentType) =>
          named(`content-type ${JSON.stringify(contentType)}`, {
            headers: { ...MCP_HEADERS, "content-type": contentType },
            status: [415],
            code: -32000,
          }),
        ),
      fc.constantFrom("application/json", "text/event-stream", "text/html", "*/x", "").map((accept) =>
        named(`accept ${JSON.stringify(accept)}`, {
          headers: { ...MCP_HEADERS, accept },
          status: [406],
          code: -32000,
        }),
      ),
      fc
        .oneof(
          fc.constantFrom("1999-01-01", "garbage", "2025-13-45", "latest"),
          fc.stringMatching(/^[0-9a-z-]{1,20}$/),
        )
        .filter((v) => !/^20\d\d-\d\d-\d\d$/.test(v) || v === "1999-01-01" || v === "2025-13-45")
        // -32000 for a 2025-era version the SDK does not know, -32602 for a later one without its envelope.
        .map((version) =>
          named(`mcp-protocol-version ${version}`, {
            headers: { ...MCP_HEADERS, "mcp-protocol-version": version },
            status: [400],
            code: undefined,
          }),
        ),
      fc
        .oneof(
          fc.uuid(),
          fc.stringMatching(/^[!-~]{1,200}$/),
          fc.constantFrom(
            "0",
            "null",
            "undefined",
            "../../etc/passwd",
            "x".repeat(4_000),
            "%00",
            "__proto__",
          ),
        )
        .filter((id) => id !== witnessSession())
        .map((id) =>
          named(`mcp-session-id ${id.slice(0, 40)}`, {
            headers: { ...MCP_HEADERS, "mcp-session-id": id },
            status: [404],
            code: -32001,
          }),
        ),
    );
    await fc.assert(
      fc.asyncProperty(fc.array(headerCase, { minLength: 1, maxLength: 40, size: "max" }), async (cases) => {
        const problems: string[] = [];
        for (const c of cases) {
          count("http", "headers");
          const answer = await httpExchange(http.url, { headers: c.headers, body }).catch((e: unknown) => e);
          if (answer instanceof Error) {
            problems.push(`${c.what}: ${answer.message}`);
            continue;
          }
          for (const p of refusalProblems(answer as HttpAnswer, c.status, c.code))
            problems.push(`${c.what}: ${p}`);
        }
        await witnessesServe("headers");
        assert.deepEqual(problems, [], problems.slice(0, 12).join("\n"));
      }),
      params(16),
    );
  });

  test("odd methods, and GET/DELETE with bodies (raw): 405 or 404 with a JSON-RPC error", async () => {
    const host = `127.0.0.1:${httpPort}`;
    const methodCase = fc.record({
      method: fc.constantFrom("GET", "DELETE", "PUT", "PATCH", "OPTIONS"),
      session: fc.oneof(fc.constant(undefined), fc.uuid(), fc.stringMatching(/^[a-zA-Z0-9-]{1,60}$/)),
      body: fc.oneof(fc.constant(""), fc.constantFrom(...SAMPLE_MESSAGES), fc.string({ maxLength: 200 })),
    });
    await fc.assert(
      fc.asyncProperty(fc.array(methodCase, { minLength: 1, maxLength: 25, size: "max" }), async (cases) => {
        const problems: string[] = [];
        for (const c of cases) {
          if (c.session === httpWitnessTransport.sessionId) continue;
          count("http", "methods");
          const bodyBytes = utf8(c.body);
          const head =
            `${c.method} /mcp HTTP/1.1\r\nHost: ${host}\r\nAccept: application/json, text/event-stream\r\n` +
            "Content-Type: application/json\r\n" +
            (c.session === undefined ? "" : `Mcp-Session-Id: ${c.session}\r\n`) +
            `Content-Length: ${bodyBytes.length}\r\nConnection: close\r\n\r\n`;
          const raw = await rawExchange(httpPort, concat(utf8(head), bodyBytes)).catch((e: unknown) => e);
          const what = `${c.method} session=${c.session ?? "-"} body=${JSON.stringify(c.body.slice(0, 40))}`;
          if (raw instanceof Error) {
            problems.push(`${what}: ${raw.message}`);
            continue;
          }
          const answer = raw as RawAnswer;
          const expected = c.session === undefined ? [405] : [404];
          const code = c.session === undefined ? undefined : -32001;
          const asHttp = {
            status: answer.status,
            contentType: answer.headers["content-type"] ?? "",
            text: answer.body,
          };
          for (const p of refusalProblems(asHttp, expected, code)) problems.push(`${what}: ${p}`);
        }
        await witnessesServe("methods");
        assert.deepEqual(problems, [], problems.slice(0, 12).join("\n"));
      }),
      params(12),
    );
  });

  test("oversized headers and broken request heads: node:http's 431/4xx and a closed connection, then business as usual", async () => {
    const host = `127.0.0.1:${httpPort}`;
    const big = (what: string, text: string) => new RawCase(what, text, (status) => status === 431);
    const headCase = fc.oneof(
      fc
        .integer({ min: NODE_MAX_HEADER_BYTES + 1024, max: 80 * 1024 })
        .map((size) =>
          big(
            `one ${size}-byte header`,
            `POST /mcp HTTP/1.1\r\nHost: ${host}\r\nX-Big: ${"a".repeat(size)}\r\nConnection: close\r\n\r\n`,
          ),
        ),
      fc
        .integer({ min: 600, max: 2_000 })
        .map((n) =>
          big(
            `${n} headers`,
            `POST /mcp HTTP/1.1\r\nHost: ${host}\r\n${Array.from({ length: n }, (_, i) => `X-H${i}: ${"v".repeat(30)}\r\n`).join("")}Connection: close\r\n\r\n`,
          ),
        ),
      fc
        .oneof(
          fc.constantFrom(
            "GARBAGE\r\n\r\n",
            "POST /mcp HTTP/9.9\r\n\r\n",
            "POST /mcp HTTP/1.1\r\nContent-Length: 5\r\nContent-Length: 6\r\n\r\nabcdef",
            "POST /mcp HTTP/1.1\r\nContent-Length: -1\r\n\r\n",
            "POST /mcp HTTP/1.1\r\nTransfer-Encoding: chunked\r\nContent-Length: 3\r\n\r\n",
            "POST /mcp\r\n\r\n",
            "POST  HTTP/1.1\r\n\r\n",
          ),
          fc
            .uint8Array({ minLength: 1, maxLength: 100 })
            .map((b) => `${Buffer.from(b).toString("latin1")}\r\n\r\n`),
        )
        // node:http's 400 (505 for an HTTP version it does not speak), the gateway's own 4xx (a head
        // without Host is refused by the Host check), or just a closed connection; never a 5xx of ours.
        .map(
          (text) =>
            new RawCase(
              `broken head ${JSON.stringify(text.slice(0, 40))}`,
              text,
              (status) => status === 0 || status === 505 || (status >= 400 && status < 500),
            ),
        ),
    );
    await fc.assert(
      fc.asyncProperty(fc.array(headCase, { minLength: 1, maxLength: 15, size: "max" }), async (cases) => {
        const problems: string[] = [];
        for (const c of cases) {
          count("http", "raw-heads");
          const answer = await rawExchange(httpPort, Buffer.from(c.text, "latin1")).catch((e: unknown) => e);
          if (answer instanceof Error) problems.push(`${c.what}: ${answer.message}`);
          else if (!c.accept((answer as RawAnswer).status))
            problems.push(`${c.what}: HTTP ${(answer as RawAnswer).status}`);
        }
        await witnessesServe("raw-heads");
        assert.deepEqual(problems, [], problems.slice(0, 12).join("\n"));
      }),
      params(6),
    );
  });
});

// ---------------------------------------------------------------------------------------------------
// stdio
// ---------------------------------------------------------------------------------------------------

describe(`stdio fuzz (FUZZ_SEED=${SEED})`, () => {
  test("malformed JSON: one -32700 with id null per line", async () => {
    await fc.assert(
      fc.asyncProperty(batchOf(malformedJsonArb, 60), (inputs) => writeAll("malformed", inputs)),
      params(28),
    );
  });

  test("a parse error's message stays one line whatever the line's bytes (a lone CR, say)", async () => {
    const broken = fc
      .tuple(fc.string({ maxLength: 12 }), fc.string({ minLength: 1, maxLength: 12 }))
      .map(([a, b]) =>
        payload("parse-error-message", "CR inside the line", `x${a}\r${b.replace(/[\r\n]/g, "")}`),
      );
    await fc.assert(
      fc.asyncProperty(fc.array(broken, { minLength: 1, maxLength: 10 }), async (inputs) => {
        const problems: string[] = [];
        for (const input of inputs) {
          count("stdio", "parse-error-message");
          problems.push(...(await stdio.fuzz(input)).map((p) => `${input[fc.toStringMethod]()}: ${p}`));
          const message = stdio.lastErrorMessages().find((t) => /[\r\n]/.test(t));
          if (message !== undefined)
            problems.push(`${input[fc.toStringMethod]()}: ${JSON.stringify(message)}`);
        }
        assert.deepEqual(problems, [], problems.slice(0, 5).join("\n"));
      }),
      params(10),
    );
  });

  test("requests the SDK's schema refuses are answered, not dropped (the client would wait forever)", async () => {
    // All in one write, with a request that works first, so that one wait covers them all.
    const lines = [rpcText("ping", undefined, "works"), ...SDK_REFUSED_REQUESTS];
    count("stdio", "sdk-refused");
    const problems = await stdio.fuzz(payload("sdk-refused", `${lines.length} lines`, lines.join("\n")));
    await witnessesServe("sdk-refused");
    assert.deepEqual(problems, [], lines.join("\n"));
  });

  test("wrong JSON-RPC envelopes (jsonrpc, id, method, params): every request answered", async () => {
    await fc.assert(
      fc.asyncProperty(batchOf(wrongShapeArb, 60), (inputs) => writeAll("wrong-shape", inputs)),
      params(28),
    );
  });

  test("known methods with params of the wrong types: an error the client can act on, never -32603", async () => {
    await fc.assert(
      fc.asyncProperty(batchOf(wrongParamsArb, 40), (inputs) => writeAll("wrong-params", inputs)),
      params(20),
    );
  });

  test("long lines (64 KiB to 1 MiB, echo calls and garbage)", async () => {
    await fc.assert(
      fc.asyncProperty(batchOf(longLineArb, 6), (inputs) => writeAll("huge", inputs)),
      params(8),
    );
  });

  test("deep nesting up to 100 000 levels", async () => {
    await fc.assert(
      fc.asyncProperty(batchOf(nestedArb(100_000), 12), (inputs) => writeAll("deep-nesting", inputs)),
      params(16),
    );
  });

  test("invalid UTF-8", async () => {
    await fc.assert(
      fc.asyncProperty(batchOf(invalidUtf8Arb, 40), (inputs) => writeAll("invalid-utf8", inputs)),
      params(20),
    );
  });

  test("unknown methods: -32601 for requests, nothing for notifications", async () => {
    await fc.assert(
      fc.asyncProperty(batchOf(unknownMethodPayloadArb, 60), (inputs) => writeAll("unknown-method", inputs)),
      params(20),
    );
  });

  test("batches (stdio takes one message per line): an error with id null, never silence", async () => {
    await fc.assert(
      fc.asyncProperty(batchOf(batchArb, 15), (inputs) => writeAll("batch", inputs)),
      params(16),
    );
  });

  test("several messages in one write, and CRLF line ends", async () => {
    const mixed = fc
      .array(fc.oneof(malformedJsonArb, unknownMethodPayloadArb, validRequestArb), {
        minLength: 2,
        maxLength: 8,
      })
      .chain((parts) =>
        fc
          .constantFrom("\n", "\r\n")
          .map((eol) =>
            payload(
              "multi-line",
              `${parts.length} lines (${JSON.stringify(eol)})`,
              concat(...parts.flatMap((p) => [p.bytes.filter((b) => b !== 0x0a), utf8(eol)])),
            ),
          ),
      );
    await fc.assert(
      fc.asyncProperty(batchOf(mixed, 20), (inputs) => writeAll("multi-line", inputs)),
      params(12),
    );
  });
});

// ---------------------------------------------------------------------------------------------------
// Afterwards
// ---------------------------------------------------------------------------------------------------

describe("after all of it", () => {
  test("both gateways still serve: the witnesses, and a new client on each", async (t) => {
    await witnessesServe("everything");
    const fresh = new Client({ name: "fresh", version: "1" });
    await fresh.connect(new StreamableHTTPClientTransport(new URL(http.url)));
    const { tools } = await fresh.listTools();
    assert.ok(tools.some((tool) => tool.name === "fx__echo"));
    await fresh.close();
    const total = (m: Map<string, number>) => [...m.values()].reduce((a, b) => a + b, 0);
    t.diagnostic(
      `FUZZ_SEED=${SEED}; inputs sent over HTTP: ${total(sent.http)} ${JSON.stringify(Object.fromEntries(sent.http))}`,
    );
    t.diagnostic(
      `inputs sent over stdio: ${total(sent.stdio)} ${JSON.stringify(Object.fromEntries(sent.stdio))}`,
    );
    t.diagnostic(`witness calls: ${JSON.stringify(witnessCalls)}`);
    assert.equal(http.child.exitCode, null);
    assert.equal(stdio.child.exitCode, null);
  });

  test("neither gateway logged an error, and stdout carried only JSON-RPC", () => {
    for (const [name, logs] of [
      ["http", http.logs],
      ["stdio", stdio.logs],
    ] as const) {
      const unexpected = logs.lines.filter(
        (l) => l.level === "error" || l.level === "fatal" || l.raw === true,
      );
      assert.deepEqual(
        unexpected.map((l) => JSON.stringify(l).slice(0, 300)),
        [],
        `${name} gateway log`,
      );
    }
    assert.deepEqual(stdio.garbage, []);
  });
});

describe("last, since it leaves errors in the log if it fails", () => {
  test("a client that hangs up mid-upload, or sends a broken chunked body, is not an error in the gateway's log", async () => {
    const host = `127.0.0.1:${httpPort}`;
    const head = `POST /mcp HTTP/1.1\r\nHost: ${host}\r\nContent-Type: application/json\r\nAccept: application/json, text/event-stream\r\n`;
    const before = http.logs.lines.length;
    const upload = fc.oneof(
      fc
        .tuple(fc.integer({ min: 10, max: MAX_BODY_BYTES }), fc.double({ min: 0, max: 0.9, noNaN: true }))
        .map(([declared, share]) =>
          named(`hang-up after ${Math.floor(declared * share)} of ${declared} bytes`, {
            bytes: concat(
              utf8(`${head}Content-Length: ${declared}\r\n\r\n`),
              utf8("{".repeat(Math.floor(declared * share))),
            ),
            hangUp: true,
          }),
        ),
      fc.constantFrom("zz\r\n", "5\r\nabc\r\n0\r\n\r\n", "-1\r\n", "1;\x00\r\n").map((chunks) =>
        named(`chunked body ${JSON.stringify(chunks)}`, {
          bytes: utf8(`${head}Transfer-Encoding: chunked\r\nConnection: close\r\n\r\n${chunks}`),
          hangUp: false,
        }),
      ),
    );
    await fc.assert(
      fc.asyncProperty(fc.array(upload, { minLength: 1, maxLength: 10 }), async (uploads) => {
        for (const u of uploads) {
          count("http", "broken-upload");
          const answer = await rawExchange(httpPort, u.bytes, { destroyAfterWrite: u.hangUp });
          if (!u.hangUp) assert.ok([0, 400].includes(answer.status), `${u.what}: HTTP ${answer.status}`);
        }
        await witnessesServe("broken uploads");
      }),
      params(6),
    );
    // The witness's calls after the hang-ups were answered, so the gateway has handled the hang-ups too.
    const errors = http.logs.lines.slice(before).filter((l) => l.level === "error" || l.level === "fatal");
    assert.deepEqual(
      errors.map((l) => `${l.msg}: ${JSON.stringify(l.err).slice(0, 200)}`),
      [],
      "a hang-up mid-upload is the client's doing, not an unexpected error",
    );
  });
});
