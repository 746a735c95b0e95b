/**
 * Runs the real `switchboard` CLI as a child process for end-to-end tests, and waits on its JSON log
 * lines (stderr) instead of sleeping. The CLI is the build in dist/, what users run (`npm test`
 * builds it first); SWITCHBOARD_TEST_SOURCES=1 runs src/ through tsx instead, a fast path while
 * developing.
 */
import { type ChildProcess, spawn } from "node:child_process";
import { existsSync, mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { dirname, join, resolve } from "node:path";
import { createInterface } from "node:readline";
import { after } from "node:test";

export const ROOT = resolve(import.meta.dirname, "../..");
const FROM_SOURCES = process.env.SWITCHBOARD_TEST_SOURCES === "1";
export const CLI = join(ROOT, FROM_SOURCES ? "src/cli/main.ts" : "dist/cli/main.js");
/** The node arguments that run the CLI (before its own arguments). */
export const CLI_ARGS: readonly string[] = FROM_SOURCES ? ["--import", "tsx", CLI] : [CLI];
if (!existsSync(CLI)) {
  throw new Error(
    `${CLI} is missing: e2e tests run the built CLI. Run \`npm run build\` first (\`npm test\` does), ` +
      "or set SWITCHBOARD_TEST_SOURCES=1 to run the sources through tsx.",
  );
}
export const FIXTURE = join(ROOT, "test/fixtures/fixture-server.ts");
export const HTTP_FIXTURE = join(ROOT, "test/fixtures/http-server.ts");

export const REFERENCE = {
  everything: join(ROOT, "node_modules/@modelcontextprotocol/server-everything/dist/index.js"),
  filesystem: join(ROOT, "node_modules/@modelcontextprotocol/server-filesystem/dist/index.js"),
  memory: join(ROOT, "node_modules/@modelcontextprotocol/server-memory/dist/index.js"),
};

/**
 * Writes a config object to a fresh temporary directory and returns its path. Unless the config says
 * otherwise, a client's first list waits up to 30 s for the servers still starting (the default is 1 s,
 * and a test's fixture servers start slower than that on a loaded machine): a test about something
 * else should not see a half-started gateway. Tests about start-up set `gateway.startupWaitMs`.
 */
export function writeConfig(config: unknown, name = "switchboard.json"): string {
  const dir = mkdtempSync(join(tmpdir(), "switchboard-test-"));
  const file = join(dir, name);
  writeFileSync(
    file,
    typeof config === "string" ? config : JSON.stringify(withTestDefaults(config), null, 2),
  );
  return file;
}

function withTestDefaults(config: unknown): unknown {
  if (typeof config !== "object" || config === null || Array.isArray(config)) return config;
  const gateway = (config as { gateway?: Record<string, unknown> }).gateway ?? {};
  return { ...config, gateway: { startupWaitMs: 30_000, ...gateway } };
}

/**
 * A `writeConfig` for suites that write several configs (and files next to them): each config's
 * temporary directory is removed, with all it holds, after the suite that called this.
 */
export function writeConfigRemovedAfterSuite(): (config: unknown) => string {
  const dirs: string[] = [];
  after(() => {
    for (const dir of dirs) rmSync(dir, { recursive: true, force: true });
  });
  return (config) => {
    const path = writeConfig(config);
    dirs.push(dirname(path));
    return path;
  };
}

/** A fixture-server entry for a config, run with tsx. */
export function fixtureServer(extra: Record<string, unknown> = {}, env: Record<string, string> = {}) {
  return { command: process.execPath, args: ["--import", "tsx", FIXTURE], env, cwd: ROOT, ...extra };
}

export interface HttpFixture {
  /** `http://127.0.0.1:PORT`: Streamable HTTP at `/mcp`, legacy SSE at `/sse`. */
  readonly url: string;
  stop(): void;
}

/**
 * Starts test/fixtures/http-server.ts (an MCP server over HTTP, for remote backends) and resolves with
 * its URL once it listens. It exits when its stdin closes, which `stop` does (and kills it as well).
 */
export async function startHttpFixture(): Promise<HttpFixture> {
  const child = spawn(process.execPath, ["--import", "tsx", HTTP_FIXTURE], {
    cwd: ROOT,
    stdio: ["pipe", "pipe", "inherit"],
  });
  const stop = () => {
    child.stdin?.end();
    child.kill();
  };
  try {
    const url = await new Promise<string>((resolvePromise, reject) => {
      const timer = setTimeout(() => reject(new Error("http fixture did not start")), 20_000);
      createInterface({ input: child.stdout as NodeJS.ReadableStream }).once("line", (line) => {
        clearTimeout(timer);
        resolvePromise((JSON.parse(line) as { url: string }).url);
      });
    });
    return { url, stop };
  } catch (error) {
    stop();
    throw error;
  }
}

export type LogLine = Record<string, unknown> & { msg?: string };

/** Collects a child's JSON log lines and lets tests wait for one that matches. */
export class LogWatcher {
  readonly lines: LogLine[] = [];
  readonly #waiters: { match: (l: LogLine) => boolean; resolve: (l: LogLine) => void }[] = [];

  constructor(stream: NodeJS.ReadableStream) {
    createInterface({ input: stream }).on("line", (text) => {
      let line: LogLine;
      try {
        line = JSON.parse(text) as LogLine;
      } catch {
        line = { msg: text, raw: true };
      }
      this.lines.push(line);
      for (const waiter of [...this.#waiters]) {
        if (waiter.match(line)) {
          this.#waiters.splice(this.#waiters.indexOf(waiter), 1);
          waiter.resolve(line);
        }
      }
    });
  }

  /** Resolves with the first line (already seen or future) that matches, or rejects after `timeoutMs`. */
  waitFor(match: (l: LogLine) => boolean, timeoutMs = 20_000, what = "log line"): Promise<LogLine> {
    const seen = this.lines.find(match);
    if (seen) return Promise.resolve(seen);
    return new Promise((resolvePromise, reject) => {
      const timer = setTimeout(() => {
        const index = this.#waiters.findIndex((w) => w.resolve === done);
        if (index >= 0) this.#waiters.splice(index, 1);
        reject(new Error(`timed out after ${timeoutMs} ms waiting for ${what}; last lines:\n${this.tail()}`));
      }, timeoutMs);
      const done = (line: LogLine) => {
        clearTimeout(timer);
        resolvePromise(line);
      };
      this.#waiters.push({ match, resolve: done });
    });
  }

  tail(n = 15): string {
    return this.lines
      .slice(-n)
      .map((l) => JSON.stringify(l))
      .join("\n");
  }
}

export interface RunningGateway {
  readonly child: ChildProcess;
  readonly logs: LogWatcher;
  readonly url: string;
  stop(signal?: NodeJS.Signals): Promise<number | null>;
}

/**
 * Starts `switchboard serve --http 127.0.0.1:0` and resolves once it is ready (every server has had its
 * first start attempt), or, with `listening` true, as soon as it listens.
 */
export async function startHttpGateway(
  configPath: string,
  extraArgs: string[] = [],
  env: Record<string, string> = {},
  { listening: onlyListening = false }: { listening?: boolean } = {},
): Promise<RunningGateway> {
  const child = spawn(
    process.execPath,
    [...CLI_ARGS, "serve", "--config", configPath, "--http", "127.0.0.1:0", ...extraArgs],
    { cwd: ROOT, stdio: ["ignore", "pipe", "pipe"], env: { ...process.env, ...env } },
  );
  // A test file that dies (timeout, crash) must not leave its gateway listening behind it.
  const killOrphan = () => child.kill("SIGKILL");
  process.once("exit", killOrphan);
  child.once("exit", () => process.off("exit", killOrphan));
  const logs = new LogWatcher(child.stderr as NodeJS.ReadableStream);
  const exited = new Promise<number | null>((r) => child.once("exit", (code) => r(code)));
  const failed = exited.then((code) => {
    throw new Error(`gateway exited with ${code} before it was ready:\n${logs.tail()}`);
  });
  // Raced below only until the gateway is ready; its exit later (at stop) is no failure.
  failed.catch(() => undefined);
  const listening = await Promise.race([
    logs.waitFor((l) => l.msg === "listening", 30_000, "the gateway to listen"),
    failed,
  ]);
  // The gateway listens at once; "gateway ready" follows once every server has had its first start
  // attempt (or gateway.startupTimeoutMs passed). Tests start from there, as they always have.
  if (!onlyListening) {
    await Promise.race([
      logs.waitFor((l) => l.msg === "gateway ready", 60_000, "the gateway to be ready"),
      failed,
    ]);
  }
  return {
    child,
    logs,
    url: String(listening.url),
    async stop(signal: NodeJS.Signals = "SIGTERM") {
      if (child.exitCode !== null) return child.exitCode;
      child.kill(signal);
      return exited;
    },
  };
}

/** The argv that runs the gateway over stdio, for SDK stdio client transports. */
export function stdioGatewayCommand(configPath: string): { command: string; args: string[]; cwd: string } {
  return {
    command: process.execPath,
    args: [...CLI_ARGS, "serve", "--config", configPath, "--stdio"],
    cwd: ROOT,
  };
}

/** Polls `check` until it returns true or the deadline passes. For state that has no event to await. */
export async function eventually(
  check: () => Promise<boolean> | boolean,
  timeoutMs = 15_000,
  what = "condition",
) {
  const deadline = Date.now() + timeoutMs;
  let delay = 20;
  while (Date.now() < deadline) {
    if (await check()) return;
    await new Promise((r) => setTimeout(r, delay));
    delay = Math.min(delay * 2, 250);
  }
  throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`);
}
