/**
 * What scripts/conformance.ts (the 0.1.x suite) and scripts/conformance-next.ts (the newest pre-release)
 * share: starting the servers under test and the suite as child processes that never outlive the
 * script, reading the suite's per-scenario checks, judging a scenario from its checks, and printing
 * tables.
 */
import { type ChildProcess, spawn } from "node:child_process";
import { readdir, readFile } from "node:fs/promises";
import { dirname, join, resolve } from "node:path";
import { fileURLToPath } from "node:url";

export const ROOT = resolve(dirname(fileURLToPath(import.meta.url)), "..");

/** The gateway's configs, by the protocol era its connection to the conformance fixture speaks. */
export const GATEWAY_CONFIGS = {
  modern: "test/fixtures/conformance.yaml",
  legacy: "test/fixtures/conformance-legacy.yaml",
} as const;
export type BackendEra = keyof typeof GATEWAY_CONFIGS;

/** One check of a scenario, as the suite writes it to checks.json. */
export interface Check {
  id: string;
  status: "SUCCESS" | "FAILURE" | "WARNING" | "INFO" | "SKIPPED" | string;
  description?: string;
  errorMessage?: string;
}

export class UsageError extends Error {}

/** Children this process started; all are stopped on every way out. */
const children = new Set<ChildProcess>();

function signalChild(child: ChildProcess, signal: NodeJS.Signals): void {
  if (child.exitCode !== null || child.signalCode !== null || child.pid === undefined) return;
  try {
    // Each child leads its own process group, so this also reaches what it spawned (the gateway's backends).
    process.kill(-child.pid, signal);
  } catch {
    child.kill(signal);
  }
}

export async function stopChild(child: ChildProcess, graceMs = 5_000): Promise<void> {
  if (child.exitCode !== null || child.signalCode !== null) return;
  const exited = new Promise<void>((done) => child.once("exit", () => done()));
  signalChild(child, "SIGTERM");
  const timer = setTimeout(() => signalChild(child, "SIGKILL"), graceMs);
  await exited;
  clearTimeout(timer);
  children.delete(child);
}

export function startChild(command: string, args: string[]): ChildProcess {
  const child = spawn(command, args, { cwd: ROOT, stdio: ["pipe", "pipe", "pipe"], detached: true });
  children.add(child);
  child.once("exit", () => children.delete(child));
  return child;
}

process.on("exit", () => {
  for (const child of children) signalChild(child, "SIGKILL");
});
for (const signal of ["SIGINT", "SIGTERM"] as const) {
  process.once(signal, () => {
    void Promise.allSettled([...children].map((c) => stopChild(c, 2_000))).finally(() =>
      process.exit(signal === "SIGINT" ? 130 : 143),
    );
  });
}

/** Keeps the last lines a child wrote, to explain a failed start without flooding the terminal. */
function tail(lines: string[], line: string, max = 40): void {
  lines.push(line);
  if (lines.length > max) lines.shift();
}

/**
 * Starts a server and waits for its JSON log line `{"msg":"listening","url":...}` on stderr. The gateway
 * and conformance-http.ts both print it, so one parser serves both.
 */
export async function startServer(
  command: string,
  args: string[],
  deadline: AbortSignal,
): Promise<{ child: ChildProcess; url: string }> {
  const child = startChild(command, args);
  const recent: string[] = [];
  return new Promise((resolvePromise, reject) => {
    let buffer = "";
    const fail = (why: string) => {
      cleanup();
      void stopChild(child);
      reject(
        new Error(`${why}\n--- last output of ${[command, ...args].join(" ")} ---\n${recent.join("\n")}`),
      );
    };
    const onData = (chunk: Buffer) => {
      buffer += chunk.toString("utf8");
      for (let nl = buffer.indexOf("\n"); nl >= 0; nl = buffer.indexOf("\n")) {
        const line = buffer.slice(0, nl).trim();
        buffer = buffer.slice(nl + 1);
        if (line === "") continue;
        tail(recent, line);
        let record: unknown;
        try {
          record = JSON.parse(line);
        } catch {
          continue;
        }
        const r = record as { msg?: unknown; url?: unknown };
        if (r.msg === "listening" && typeof r.url === "string") {
          cleanup();
          // Keep draining stderr so a chatty server never blocks on a full pipe.
          child.stderr?.on("data", () => {});
          resolvePromise({ child, url: r.url });
          return;
        }
      }
    };
    const onExit = (code: number | null, signal: NodeJS.Signals | null) =>
      fail(`server exited before listening (code ${code}, signal ${signal})`);
    const onAbort = () => fail("server did not report listening before the deadline");
    const cleanup = () => {
      child.stderr?.off("data", onData);
      child.off("exit", onExit);
      deadline.removeEventListener("abort", onAbort);
    };
    child.stdout?.on("data", (chunk: Buffer) => tail(recent, chunk.toString("utf8").trimEnd()));
    child.stderr?.on("data", onData);
    child.once("exit", onExit);
    child.once("error", (error) => fail(`could not start: ${error.message}`));
    if (deadline.aborted) onAbort();
    else deadline.addEventListener("abort", onAbort, { once: true });
  });
}

/** Starts the gateway (from source) in front of the conformance fixture, with the given backend era. */
export function startGateway(
  era: BackendEra,
  deadline: AbortSignal,
): Promise<{ child: ChildProcess; url: string }> {
  return startServer(
    process.execPath,
    [
      "--import",
      "tsx",
      "src/cli/main.ts",
      "serve",
      "--config",
      GATEWAY_CONFIGS[era],
      "--http",
      "127.0.0.1:0",
    ],
    deadline,
  );
}

/** Starts the conformance fixture alone over Streamable HTTP (test/fixtures/conformance-http.ts). */
export function startFixture(deadline: AbortSignal): Promise<{ child: ChildProcess; url: string }> {
  return startServer(
    process.execPath,
    ["--import", "tsx", "test/fixtures/conformance-http.ts", "0", "--exit-with-stdin"],
    deadline,
  );
}

/**
 * Runs a command to its end (the suite, an installer) and resolves with its exit code and the tail of
 * what it printed; the deadline stops it.
 */
export async function runToEnd(
  command: string,
  args: string[],
  deadline: AbortSignal,
  verbose: boolean,
): Promise<{ code: number | null; output: string }> {
  const child = startChild(command, args);
  child.stdin?.end();
  let output = "";
  const collect = (chunk: Buffer) => {
    const text = chunk.toString("utf8");
    if (verbose) process.stderr.write(text);
    // The output only matters when the command itself breaks; a bounded copy is enough to explain that.
    output = (output + text).slice(-200_000);
  };
  child.stdout?.on("data", collect);
  child.stderr?.on("data", collect);
  const onAbort = () => void stopChild(child, 2_000);
  deadline.addEventListener("abort", onAbort, { once: true });
  const code = await new Promise<number | null>((done) => {
    child.once("exit", (c) => done(c));
    child.once("error", () => done(null));
  });
  deadline.removeEventListener("abort", onAbort);
  return { code, output };
}

/** Exit codes 0 and 1 are the suite's verdicts; anything else means it broke, and its output says why. */
export function reportCrash(run: { code: number | null; output: string }): void {
  if (run.code === 0 || run.code === 1) return;
  process.stderr.write(
    `conformance: the suite exited with ${run.code}; its last output:\n${run.output.slice(-4_000)}\n`,
  );
}

/** The suite writes <out>/server-<scenario>-<ISO time with : and . as ->/checks.json per scenario. */
const RESULT_DIR = /^server-(.+)-\d{4}-\d{2}-\d{2}T\d{2}-\d{2}-\d{2}-\d{3}Z$/;

export async function readChecks(outDir: string): Promise<Map<string, Check[]>> {
  const results = new Map<string, Check[]>();
  for (const entry of await readdir(outDir, { withFileTypes: true }).catch(() => [])) {
    const match = entry.isDirectory() ? RESULT_DIR.exec(entry.name) : null;
    if (match === null) continue;
    const raw = await readFile(join(outDir, entry.name, "checks.json"), "utf8").catch(() => undefined);
    if (raw === undefined) continue;
    results.set(match[1] as string, JSON.parse(raw) as Check[]);
  }
  return results;
}

export interface CheckCounts {
  passed: number;
  failed: number;
  warnings: number;
  skipped: number;
  failures: string[];
}

/**
 * Counts a scenario's checks. A scenario passes when none is FAILURE; WARNING checks (SHOULD-level
 * advice) are counted and shown but do not fail it, which is how the suite's own exit code treats them.
 */
export function countChecks(checks: readonly Check[]): CheckCounts {
  const failures = checks.filter((c) => c.status === "FAILURE");
  return {
    passed: checks.filter((c) => c.status === "SUCCESS").length,
    failed: failures.length,
    warnings: checks.filter((c) => c.status === "WARNING").length,
    skipped: checks.filter((c) => c.status === "SKIPPED").length,
    failures: failures.map((c) => `${c.id}: ${c.errorMessage ?? c.description ?? "failed"}`),
  };
}

/** A plain-text table: columns padded to their widest cell. */
export function formatTable(header: string[], rows: string[][]): string {
  const widths = header.map((h, i) => Math.max(h.length, ...rows.map((row) => (row[i] ?? "").length)));
  const line = (cells: string[]) =>
    cells
      .map((c, i) => c.padEnd(widths[i] as number))
      .join("  ")
      .trimEnd();
  return [line(header), line(widths.map((w) => "-".repeat(w))), ...rows.map(line)].join("\n");
}

/** A Markdown table, padded the way the project's formatter (Biome) lays tables out. */
export function formatMarkdownTable(header: string[], rows: string[][]): string {
  const escaped = [header, ...rows].map((row) => row.map((cell) => cell.replaceAll("|", "\\|")));
  const widths = header.map((_, i) => Math.max(3, ...escaped.map((row) => (row[i] ?? "").length)));
  const line = (cells: string[]) => `| ${cells.map((c, i) => c.padEnd(widths[i] as number)).join(" | ")} |`;
  const [head, ...body] = escaped as [string[], ...string[][]];
  return [line(head), line(widths.map((w) => "-".repeat(w))), ...body.map(line)].join("\n");
}
