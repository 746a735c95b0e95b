import assert from "node:assert/strict";
import { mkdtemp, readFile, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, before, describe, test } from "node:test";
import { pino } from "pino";
import {
  type AuditRecordInput,
  auditConfigSchema,
  createAuditLog,
  searchAudit,
} from "../../../src/audit/index.ts";
import { GatewayError } from "../../../src/core/errors.ts";

const silent = pino({ level: "silent" });

let dir: string;
before(async () => {
  dir = await mkdtemp(join(tmpdir(), "sb-audit-log-"));
});
after(async () => {
  await rm(dir, { recursive: true, force: true });
});

function call(requestId: string, extra: Partial<AuditRecordInput> = {}): AuditRecordInput {
  return {
    requestId,
    principal: "alice",
    roles: ["dev"],
    server: "db",
    tool: "db__query",
    arguments: { sql: "select 1", password: "pw" },
    outcome: "ok",
    durationMs: 2,
    source: "backend",
    transport: "stdio",
    ...extra,
  };
}

describe("audit config", () => {
  test("no audit block: off", () => {
    assert.equal(auditConfigSchema.parse(undefined).enabled, false);
  });

  test("an empty block: on, one sync JSONL file next to the config", () => {
    assert.deepEqual(auditConfigSchema.parse({}), {
      enabled: true,
      sinks: [
        {
          type: "file",
          path: "./switchboard-audit.jsonl",
          durability: "sync",
          maxBytes: 104_857_600,
          maxFiles: 5,
          flushIntervalMs: 1_000,
          maxPending: 100_000,
        },
      ],
      redact: [],
      omitArguments: false,
    });
  });

  test("postgres defaults, and what is refused", () => {
    const parsed = auditConfigSchema.parse({ sinks: [{ type: "postgres" }] });
    assert.deepEqual(parsed.sinks[0], {
      type: "postgres",
      table: "switchboard_audit",
      durability: "sync",
      flushIntervalMs: 1_000,
      batchSize: 500,
      maxPending: 100_000,
    });
    const refused = (input: unknown) => auditConfigSchema.safeParse(input).success === false;
    assert.ok(refused({ sinks: [{ type: "postgres", table: "Robert'); DROP TABLE students;--" }] }));
    assert.ok(refused({ sinks: [{ type: "postgres", batchSize: 501 }] }));
    assert.ok(refused({ sinks: [{ type: "postgres", url: "mysql://x" }] }));
    assert.ok(refused({ sinks: [] }));
    assert.ok(refused({ redact: [{ tools: ["*"], arguments: ["a..b"] }] }));
    assert.ok(refused({ sinks: [{ type: "file", pathh: "x" }] }));
    assert.ok(!refused({ sinks: [{ type: "postgres", table: "audit.calls" }] }));
  });
});

describe("createAuditLog", () => {
  test("records to a file relative to baseDir, redacted by rule and by secret value", async () => {
    const config = auditConfigSchema.parse({
      sinks: [{ type: "file", path: "logs/audit.jsonl" }],
      redact: [{ tools: ["db__*"], arguments: ["password"] }],
    });
    const log = createAuditLog(config, { logger: silent, baseDir: dir, secretValues: () => ["tok-123456"] });
    await log.record(call("r1", { arguments: { sql: "select 'tok-123456'", password: "pw" } }));
    await log.record(
      call("r2", {
        outcome: "error",
        error: "auth tok-123456 refused",
        time: new Date("2026-01-01T00:00:00Z"),
      }),
    );
    const text = await readFile(join(dir, "logs/audit.jsonl"), "utf8");
    assert.ok(!text.includes("tok-123456"));
    assert.ok(!text.includes('"pw"'));
    const [location] = log.locations();
    assert.ok(location);
    const { records } = await searchAudit(location);
    assert.deepEqual(records[0]?.arguments, { sql: "select '[redacted]'", password: "[redacted]" });
    assert.equal(records[1]?.error, "auth [redacted] refused");
    assert.equal(records[1]?.time, "2026-01-01T00:00:00.000Z");
    assert.match(records[0]?.time ?? "", /^\d{4}-\d\d-\d\dT/);
    assert.equal(log.health().status, "healthy");
    await log.close();
  });

  test("a sync sink that cannot write fails the record with an actionable GatewayError", async () => {
    const blocker = join(dir, "blocker");
    await writeFile(blocker, "a file, not a directory");
    const config = auditConfigSchema.parse({ sinks: [{ type: "file", path: join(blocker, "audit.jsonl") }] });
    const log = createAuditLog(config, { logger: silent });
    await assert.rejects(log.record(call("r1")), (error: unknown) => {
      assert.ok(error instanceof GatewayError);
      assert.equal(error.code, "audit_unavailable");
      assert.match(error.message, /The call to "db__query" could not be recorded in the audit log \(file:/);
      assert.match(error.message, /fix the sink, or set its durability to "batched"/);
      return true;
    });
    const health = log.health();
    assert.equal(health.status, "unhealthy");
    assert.match(health.detail ?? "", /failing/);
    await log.close();
  });

  test("a batched sink that cannot write never fails the record; health says degraded", async () => {
    const blocker = join(dir, "blocker-batched");
    await writeFile(blocker, "a file, not a directory");
    const config = auditConfigSchema.parse({
      sinks: [{ type: "file", path: join(blocker, "audit.jsonl"), durability: "batched" }],
    });
    const log = createAuditLog(config, { logger: silent });
    await log.record(call("r1"));
    await assert.rejects(log.flush(), /not committed yet/);
    assert.equal(log.health().status, "degraded");
    await log.close();
  });

  test("off: record does nothing", async () => {
    const log = createAuditLog(auditConfigSchema.parse(undefined), { logger: silent });
    assert.equal(log.enabled, false);
    await log.record(call("r1"));
    await log.close();
  });

  test("a postgres sink needs a url or DATABASE_URL, and says so", () => {
    const config = auditConfigSchema.parse({
      sinks: [{ type: "file", path: join(dir, "a.jsonl") }, { type: "postgres" }],
    });
    assert.throws(
      () => createAuditLog(config, { logger: silent, env: {} }),
      /audit\.sinks\[1\] \(postgres\) has no url, and DATABASE_URL is not set/,
    );
  });
});
