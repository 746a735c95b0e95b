import assert from "node:assert/strict";
import { appendFile, mkdir, mkdtemp, rename, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, before, describe, test } from "node:test";
import { pino } from "pino";
import { createJsonlSink } from "../../../src/audit/jsonl-sink.ts";
import { auditFiles, globToLike, searchAudit, tailAudit } from "../../../src/audit/reader.ts";
import type { AuditOutcome, AuditRecord } from "../../../src/audit/record.ts";

let dir: string;
before(async () => {
  dir = await mkdtemp(join(tmpdir(), "sb-audit-reader-"));
});
after(async () => {
  await rm(dir, { recursive: true, force: true });
});

let counter = 0;
async function freshDir(): Promise<string> {
  const path = join(dir, `case-${counter++}`);
  await mkdir(path);
  return path;
}

function record(n: number, extra: Partial<AuditRecord> = {}): AuditRecord {
  return {
    time: new Date(Date.UTC(2026, 0, 1, 0, n)).toISOString(),
    requestId: `r${n}`,
    principal: n % 2 === 0 ? "alice" : "bob",
    server: n % 3 === 0 ? "db" : "api",
    tool: n % 3 === 0 ? "db__query" : "api__call",
    arguments: {},
    outcome: (["ok", "tool_error", "denied"] as const)[n % 3] as AuditOutcome,
    durationMs: n,
    source: "backend",
    ...extra,
  };
}

const line = (r: AuditRecord) => `${JSON.stringify(r)}\n`;
const ids = (records: readonly AuditRecord[]) => records.map((r) => r.requestId);

/**
 * audit.jsonl.2 holds r0-r3, .1 r4-r7, and the live file r8-r11 followed by a line torn by a crash.
 * Also a stray `audit.jsonl.bak` that is not a rotated sibling.
 */
async function rotatedFixture(): Promise<string> {
  const base = join(await freshDir(), "audit.jsonl");
  const chunk = (from: number) => [0, 1, 2, 3].map((i) => line(record(from + i))).join("");
  await writeFile(`${base}.2`, chunk(0));
  await writeFile(`${base}.1`, chunk(4));
  await writeFile(base, `${chunk(8)}{"time":"2026-01-01T00:12:00.000Z","requestId":"r1`);
  await writeFile(`${base}.bak`, line(record(99)));
  return base;
}

describe("searchAudit over JSONL files", () => {
  test("reads rotated siblings oldest first, skipping and counting the torn last line", async () => {
    const base = await rotatedFixture();
    assert.deepEqual(await auditFiles(base), [`${base}.2`, `${base}.1`, base]);
    const result = await searchAudit({ type: "file", path: base }, { limit: 1000 });
    assert.deepEqual(
      ids(result.records),
      Array.from({ length: 12 }, (_, i) => `r${i}`),
    );
    assert.equal(result.torn, 1);
    assert.equal(result.invalid, 0);
    assert.equal(result.truncated, false);
  });

  test("filters by tool glob, principal, outcome, server, request id and time", async () => {
    const base = await rotatedFixture();
    const search = async (filter: Parameters<typeof searchAudit>[1]) =>
      ids((await searchAudit({ type: "file", path: base }, filter)).records);
    assert.deepEqual(await search({ tool: "db__*" }), ["r0", "r3", "r6", "r9"]);
    assert.deepEqual(await search({ principal: "bob", tool: "api__*" }), ["r1", "r5", "r7", "r11"]);
    assert.deepEqual(await search({ outcome: "denied" }), ["r2", "r5", "r8", "r11"]);
    assert.deepEqual(await search({ outcome: ["denied", "tool_error"], principal: "alice" }), [
      "r2",
      "r4",
      "r8",
      "r10",
    ]);
    assert.deepEqual(await search({ server: "db", principal: "alice" }), ["r0", "r6"]);
    assert.deepEqual(await search({ requestId: "r7" }), ["r7"]);
    assert.deepEqual(
      await search({
        since: new Date(Date.UTC(2026, 0, 1, 0, 3)),
        until: new Date(Date.UTC(2026, 0, 1, 0, 6)),
      }),
      ["r3", "r4", "r5"],
    );
  });

  test("limit keeps the newest matches and says it truncated", async () => {
    const base = await rotatedFixture();
    const result = await searchAudit({ type: "file", path: base }, { limit: 3 });
    assert.deepEqual(ids(result.records), ["r9", "r10", "r11"]);
    assert.equal(result.truncated, true);
  });

  test("a mid-file line that is not a record is skipped and counted as invalid", async () => {
    const base = join(await freshDir(), "audit.jsonl");
    await writeFile(base, `${line(record(1))}not json\n{"json":"but not a record"}\n\n${line(record(2))}`);
    const result = await searchAudit({ type: "file", path: base });
    assert.deepEqual(ids(result.records), ["r1", "r2"]);
    assert.equal(result.invalid, 2);
    assert.equal(result.torn, 0);
  });

  test("a missing file says where it looked", async () => {
    await assert.rejects(
      searchAudit({ type: "file", path: join(dir, "nowhere", "audit.jsonl") }),
      /no audit file at .*nowhere\/audit\.jsonl/,
    );
  });

  test("reads what the sink wrote across its own rotations", async () => {
    const base = join(await freshDir(), "audit.jsonl");
    const sink = createJsonlSink({
      path: base,
      durability: "sync",
      maxBytes: 1_000,
      maxFiles: 50,
      logger: pino({ level: "silent" }),
    });
    for (let i = 0; i < 30; i++) await sink.write(record(i));
    await sink.close();
    assert.ok((await auditFiles(base)).length > 2);
    const result = await searchAudit({ type: "file", path: base }, { limit: 1000 });
    assert.deepEqual(
      ids(result.records),
      Array.from({ length: 30 }, (_, i) => `r${i}`),
    );
  });
});

describe("tailAudit", () => {
  test("yields the last lines, oldest first, and reports the torn one", async () => {
    const base = await rotatedFixture();
    const skipped: { torn: boolean }[] = [];
    const out: AuditRecord[] = [];
    for await (const r of tailAudit(base, { lines: 3, onSkip: (s) => skipped.push(s) })) out.push(r);
    assert.deepEqual(ids(out), ["r9", "r10", "r11"]);
    assert.deepEqual(
      skipped.map((s) => s.torn),
      [true],
    );
  });

  test("reads backwards across chunk boundaries", async () => {
    const base = join(await freshDir(), "audit.jsonl");
    const big = (n: number) => record(n, { arguments: { pad: "x".repeat(30_000) } });
    await writeFile(base, Array.from({ length: 10 }, (_, i) => line(big(i))).join(""));
    const out: AuditRecord[] = [];
    for await (const r of tailAudit(base, { lines: 4 })) out.push(r);
    assert.deepEqual(ids(out), ["r6", "r7", "r8", "r9"]);
  });

  test("follow yields appended records, across a rotation, until aborted", async () => {
    const base = join(await freshDir(), "audit.jsonl");
    await writeFile(base, line(record(1)));
    const controller = new AbortController();
    const iterator = tailAudit(base, {
      lines: 10,
      follow: true,
      signal: controller.signal,
      pollIntervalMs: 10,
    });
    const next = async () => (await iterator.next()).value as AuditRecord;
    assert.equal((await next()).requestId, "r1");

    // Half a line first: nothing is yielded until it is complete.
    const second = line(record(2));
    await appendFile(base, second.slice(0, 20));
    const pending = next();
    await appendFile(base, second.slice(20));
    assert.equal((await pending).requestId, "r2");

    await rename(base, `${base}.1`);
    await writeFile(base, line(record(3)));
    assert.equal((await next()).requestId, "r3");

    const ended = iterator.next();
    controller.abort();
    assert.deepEqual(await ended, { done: true, value: undefined });
  });
});

describe("globToLike", () => {
  test("turns simple globs into LIKE patterns, and declines others", () => {
    assert.equal(globToLike("db__*"), "db\\_\\_%");
    assert.equal(globToLike("a?c"), "a_c");
    assert.equal(globToLike("{a,b}__*"), undefined);
  });
});
