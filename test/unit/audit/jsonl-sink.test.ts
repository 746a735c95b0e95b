import assert from "node:assert/strict";
import { spawn } from "node:child_process";
import { once } from "node:events";
import { mkdtemp, readFile, rm, stat, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join, resolve } from "node:path";
import { after, before, describe, test } from "node:test";
import { pathToFileURL } from "node:url";
import { pino } from "pino";
import { createJsonlSink } from "../../../src/audit/jsonl-sink.ts";
import type { AuditRecord } from "../../../src/audit/record.ts";
import { eventually } from "../../support/gateway-process.ts";

const ROOT = resolve(import.meta.dirname, "../../..");
const silent = pino({ level: "silent" });

let dir: string;
before(async () => {
  dir = await mkdtemp(join(tmpdir(), "sb-audit-jsonl-"));
});
after(async () => {
  await rm(dir, { recursive: true, force: true });
});

let counter = 0;
function fresh(name: string): string {
  return join(dir, `${name}-${counter++}`, "audit.jsonl");
}

function record(requestId: string, extra: Partial<AuditRecord> = {}): AuditRecord {
  return {
    time: new Date().toISOString(),
    requestId,
    principal: "alice",
    server: "db",
    tool: "db__query",
    arguments: { sql: "select 1" },
    outcome: "ok",
    durationMs: 1.5,
    source: "backend",
    ...extra,
  };
}

async function readLines(path: string): Promise<string[]> {
  const text = await readFile(path, "utf8");
  return text.split("\n").filter((line) => line !== "");
}

async function requestIds(path: string): Promise<string[]> {
  return (await readLines(path)).map((line) => (JSON.parse(line) as AuditRecord).requestId);
}

describe("JSONL sink, sync durability", () => {
  test("write resolves after the line is in the file; the file is 0600 in a created directory", async () => {
    const path = fresh("sync");
    const sink = createJsonlSink({ path, durability: "sync", logger: silent });
    await sink.write(record("r1"));
    assert.deepEqual(await requestIds(path), ["r1"]);
    assert.equal((await stat(path)).mode & 0o777, 0o600);
    await Promise.all(["r2", "r3", "r4"].map((id) => sink.write(record(id))));
    assert.deepEqual((await requestIds(path)).sort(), ["r1", "r2", "r3", "r4"]);
    await sink.close();
  });

  test("kill -9 mid-stream: every record whose write resolved is in the file", async () => {
    const path = fresh("kill");
    const script = join(dir, `writer-${counter++}.mts`);
    const sinkUrl = pathToFileURL(join(ROOT, "src/audit/jsonl-sink.ts")).href;
    const loggerUrl = pathToFileURL(join(ROOT, "src/observability/logger.ts")).href;
    // Eight concurrent writers, as concurrent calls would be; an id is printed only once its write
    // has resolved, which is the moment the gateway would answer the call.
    await writeFile(
      script,
      `import { createJsonlSink } from ${JSON.stringify(sinkUrl)};
import { silentLogger } from ${JSON.stringify(loggerUrl)};
const sink = createJsonlSink({ path: process.argv[2], durability: "sync", logger: silentLogger() });
let next = 0;
async function writer() {
  for (;;) {
    const id = "r" + next++;
    await sink.write({ time: new Date().toISOString(), requestId: id, principal: "p", server: "s",
      tool: "s__t", arguments: { pad: "x".repeat(200) }, outcome: "ok", durationMs: 1, source: "backend" });
    process.stdout.write(id + "\\n");
  }
}
for (let i = 0; i < 8; i++) void writer();
`,
    );
    const child = spawn(process.execPath, ["--import", "tsx", script, path], {
      cwd: ROOT,
      stdio: ["ignore", "pipe", "pipe"],
    });
    let stderr = "";
    child.stderr.on("data", (chunk: Buffer) => {
      stderr += chunk.toString();
    });
    const printed: string[] = [];
    let carry = "";
    const exited = once(child, "exit");
    child.stdout.on("data", (chunk: Buffer) => {
      const parts = (carry + chunk.toString()).split("\n");
      carry = parts.pop() ?? "";
      printed.push(...parts);
      if (printed.length >= 300 && child.exitCode === null && !child.killed) child.kill("SIGKILL");
    });
    const [code, signal] = await exited;
    assert.equal(signal, "SIGKILL", `the writer should have been killed, not exit (${code}): ${stderr}`);
    assert.ok(printed.length >= 300);

    const inFile = new Set<string>();
    const lines = (await readFile(path, "utf8")).split("\n");
    for (const [index, line] of lines.entries()) {
      if (line === "") continue;
      try {
        inFile.add((JSON.parse(line) as AuditRecord).requestId);
      } catch {
        // Only the very last line may be torn, by the kill.
        assert.equal(index, lines.length - 1, `line ${index + 1} is not JSON: ${line.slice(0, 80)}`);
      }
    }
    const missing = printed.filter((id) => !inFile.has(id));
    assert.deepEqual(missing, [], "records answered before the kill are missing from the file");
  });

  test("a write that cannot reach the disk rejects, saying what and where", async () => {
    const blocker = join(dir, `blocker-${counter++}`);
    await writeFile(blocker, "a file where a directory should be");
    const sink = createJsonlSink({ path: join(blocker, "audit.jsonl"), durability: "sync", logger: silent });
    await assert.rejects(sink.write(record("r1")), (error: Error) => {
      assert.match(
        error.message,
        /could not commit the record: cannot append to .*blocker-\d+\/audit\.jsonl/,
      );
      return true;
    });
    const health = sink.health();
    assert.equal(health.consecutiveFailures, 1);
    assert.equal(health.pending, 1);
    await sink.close();
    assert.equal(sink.health().dropped, 1);
  });

  test("after a torn last line (a crash mid-write), the next record starts on a line of its own", async () => {
    const path = fresh("torn");
    const sink = createJsonlSink({ path, durability: "sync", logger: silent });
    await sink.write(record("r1"));
    await sink.close();
    await writeFile(path, '{"time":"2026-01-01T00:00:00.000Z","requestId":"half', { flag: "a" });
    const again = createJsonlSink({ path, durability: "sync", logger: silent });
    await again.write(record("r2"));
    await again.close();
    const lines = await readLines(path);
    assert.equal(lines.length, 3);
    assert.equal((JSON.parse(lines[2] ?? "") as AuditRecord).requestId, "r2");
  });
});

describe("JSONL sink, rotation", () => {
  test("rotates by size, shifting .1 to .2 and dropping beyond maxFiles", async () => {
    const path = fresh("rotate");
    const lineBytes = Buffer.byteLength(`${JSON.stringify(record("r00"))}\n`);
    // Room for three lines per file.
    const sink = createJsonlSink({
      path,
      durability: "sync",
      maxBytes: lineBytes * 3,
      maxFiles: 2,
      logger: silent,
    });
    for (let i = 0; i < 12; i++) await sink.write(record(`r${String(i).padStart(2, "0")}`));
    await sink.close();
    assert.deepEqual(await requestIds(path), ["r09", "r10", "r11"]);
    assert.deepEqual(await requestIds(`${path}.1`), ["r06", "r07", "r08"]);
    assert.deepEqual(await requestIds(`${path}.2`), ["r03", "r04", "r05"]);
    await assert.rejects(stat(`${path}.3`), { code: "ENOENT" });
    for (const file of [path, `${path}.1`, `${path}.2`]) assert.ok((await stat(file)).size <= lineBytes * 3);
  });

  test("a group of records larger than a file is split across rotations", async () => {
    const path = fresh("rotate-group");
    const lineBytes = Buffer.byteLength(`${JSON.stringify(record("r00"))}\n`);
    const sink = createJsonlSink({
      path,
      durability: "sync",
      maxBytes: lineBytes * 2,
      maxFiles: 5,
      logger: silent,
    });
    await Promise.all(Array.from({ length: 6 }, (_, i) => sink.write(record(`r0${i}`))));
    await sink.close();
    const all = [
      ...(await requestIds(`${path}.2`)),
      ...(await requestIds(`${path}.1`)),
      ...(await requestIds(path)),
    ];
    assert.deepEqual(all.sort(), ["r00", "r01", "r02", "r03", "r04", "r05"]);
    for (const file of [path, `${path}.1`, `${path}.2`]) assert.equal((await readLines(file)).length, 2);
  });
});

describe("JSONL sink, batched durability", () => {
  test("write resolves at once; lines reach the file on the interval", async () => {
    const path = fresh("batched");
    const sink = createJsonlSink({ path, durability: "batched", flushIntervalMs: 20, logger: silent });
    await sink.write(record("r1"));
    await sink.write(record("r2"));
    await eventually(
      async () => (await readFile(path, "utf8").catch(() => "")).includes('"r2"'),
      5_000,
      "the interval flush",
    );
    assert.deepEqual(await requestIds(path), ["r1", "r2"]);
    await sink.close();
  });

  test("close flushes what is buffered", async () => {
    const path = fresh("batched-close");
    const sink = createJsonlSink({ path, durability: "batched", flushIntervalMs: 60_000, logger: silent });
    for (let i = 0; i < 5; i++) await sink.write(record(`r${i}`));
    await assert.rejects(stat(path), { code: "ENOENT" });
    await sink.close();
    assert.deepEqual(await requestIds(path), ["r0", "r1", "r2", "r3", "r4"]);
  });

  test("a write that fails never throws; the records wait for the file to be writable", async () => {
    const parent = join(dir, `late-${counter++}`);
    await writeFile(parent, "not a directory yet");
    const path = join(parent, "audit.jsonl");
    const sink = createJsonlSink({ path, durability: "batched", flushIntervalMs: 10, logger: silent });
    await sink.write(record("r1"));
    await eventually(() => sink.health().consecutiveFailures > 0, 5_000, "a failed flush");
    await rm(parent);
    await eventually(() => sink.health().pending === 0, 5_000, "the retried flush");
    assert.deepEqual(await requestIds(path), ["r1"]);
    await sink.close();
  });
});
