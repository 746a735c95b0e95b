import assert from "node:assert/strict";
import { describe, test } from "node:test";
import type { z } from "zod";
import {
  defaultOf,
  durationMs,
  headerMap,
  httpPath,
  httpUrl,
  LOG_LEVELS,
  logLevel,
  plainGlob,
  postgresUrl,
  redisUrl,
  secureUrl,
  serverName,
  text,
} from "../../src/config/primitives.ts";
import { httpServerSchema, loggingSchema, RESTART_DEFAULTS } from "../../src/config/schema.ts";
import { validateConfig } from "../../src/config/validate.ts";
import { createLogger } from "../../src/observability/logger.ts";
import { DEFAULT_TIMEOUT_MS } from "../../src/policies/config.ts";

/** The messages `schema` gives `value`, or [] when it accepts it. */
function problems(schema: z.ZodType, value: unknown): string[] {
  const parsed = schema.safeParse(value);
  return parsed.success ? [] : parsed.error.issues.map((issue) => issue.message);
}

describe("URL primitives", () => {
  const password = "s3cr3t-pw";

  test("each accepts its schemes and refuses others, without repeating the value", () => {
    const cases: [z.ZodType, string[], string[]][] = [
      [httpUrl(), ["http://a.example/mcp", "https://a.example"], ["ftp://a.example", "a.example", ""]],
      [
        secureUrl(),
        ["https://idp.example", "http://localhost:8080/jwks", "http://127.0.0.1/x", "http://[::1]:1/"],
        ["http://idp.example/jwks", "http://10.0.0.1/", "ws://localhost/"],
      ],
      [redisUrl(), ["redis://127.0.0.1:6379", "rediss://u:p@h:6380/0"], ["http://h", "redis"]],
      [postgresUrl(), ["postgres://a@h/db", "postgresql://h/db"], ["pg://h/db", "mysql://h"]],
    ];
    for (const [schema, accepted, refused] of cases) {
      for (const value of accepted) assert.deepEqual(problems(schema, value), [], value);
      for (const value of refused) assert.equal(problems(schema, value).length, 1, value);
    }
    const withPassword = `ftp://user:${password}@host/`;
    for (const schema of [httpUrl(), secureUrl(), redisUrl(), postgresUrl()]) {
      const [message] = problems(schema, withPassword);
      assert.ok(message && !message.includes(password), `no password in: ${message}`);
    }
  });

  test("messages name the schemes and an example", () => {
    assert.deepEqual(problems(httpUrl("https://x.example/mcp"), "ftp://x"), [
      "must be an http:// or https:// URL, e.g. https://x.example/mcp",
    ]);
    assert.match(problems(secureUrl(), "http://x.example")[0] ?? "", /^must be an https:\/\/ URL \(http:/);
  });
});

describe("other primitives", () => {
  test("header names are RFC 9110 tokens and values hold no line breaks", () => {
    assert.deepEqual(problems(headerMap(), { "X-Api-Key": "k", Authorization: "Bearer t" }), []);
    assert.match(problems(headerMap(), { "Bad Header": "v" }).join(), /Invalid key|not a valid HTTP header/);
    assert.deepEqual(problems(headerMap(), { "X-A": "a\r\nX-B: b" }), [
      "a header value cannot hold line breaks",
    ]);
    assert.deepEqual(problems(headerMap(), { "X-A": 8080 }), [
      'expected a string, got the number 8080: quote it (in YAML, "8080")',
    ]);
  });

  test("text says to quote what YAML read as a number, a boolean or nothing", () => {
    assert.match(problems(text(), true)[0] ?? "", /got the boolean true: quote it/);
    assert.match(problems(text(), null)[0] ?? "", /got an empty value/);
  });

  test("durations, paths, names, globs and log levels", () => {
    assert.equal(problems(durationMs(), 0).length, 1);
    assert.equal(problems(durationMs(), 1.5).length, 1);
    assert.deepEqual(problems(httpPath(), "/mcp"), []);
    assert.equal(problems(httpPath(), "mcp").length, 1);
    assert.match(problems(serverName("backend"), "a b")[0] ?? "", /^backend name "a b" may only contain/);
    assert.match(problems(plainGlob("say it another way"), "!x")[0] ?? "", /: say it another way$/);
    assert.deepEqual(logLevel().options, [...LOG_LEVELS]);
  });
});

describe("code defaults are the schema's", () => {
  test("defaultOf reads what the schema fills in", () => {
    assert.equal(defaultOf(httpServerSchema.shape.host), "127.0.0.1");
  });

  test("a server's timeout and restart backoff are the values code falls back to", () => {
    const config = validateConfig({ mcpServers: { a: { command: "x" } } });
    assert.equal(config.mcpServers.a?.timeoutMs, DEFAULT_TIMEOUT_MS);
    assert.deepEqual(config.mcpServers.a?.restart, RESTART_DEFAULTS);
  });

  test("a logger made without a level has the config's default level", () => {
    assert.equal(createLogger().level, defaultOf(loggingSchema.shape.level));
  });
});
