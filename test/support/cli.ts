/**
 * Runs the real `switchboard` CLI to completion in a child process and hands back what a user sees:
 * stdout, stderr and the exit code. One runner for every e2e file, so each waits the same way and a
 * command that hangs fails the same clear way instead of holding the suite until its own timeout.
 */
import assert from "node:assert/strict";
import { spawn } from "node:child_process";
import { CLI_ARGS, ROOT } from "./gateway-process.ts";

/** How long one command may run before it is killed and the test fails. */
export const CLI_TIMEOUT_MS = 60_000;

export interface CliRun {
  readonly code: number | null;
  readonly stdout: string;
  readonly stderr: string;
}

/**
 * Runs `switchboard <args>` with `env` over this process's environment (a variable set to undefined
 * is removed); kills it and rejects if it takes longer than CLI_TIMEOUT_MS.
 */
export function runCli(
  args: readonly string[],
  env: Record<string, string | undefined> = {},
): Promise<CliRun> {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, [...CLI_ARGS, ...args], {
      cwd: ROOT,
      env: { ...process.env, ...env },
      stdio: ["ignore", "pipe", "pipe"],
    });
    let stdout = "";
    let stderr = "";
    child.stdout.setEncoding("utf8").on("data", (chunk: string) => {
      stdout += chunk;
    });
    child.stderr.setEncoding("utf8").on("data", (chunk: string) => {
      stderr += chunk;
    });
    const timer = setTimeout(() => {
      child.kill("SIGKILL");
      reject(new Error(`switchboard ${args.join(" ")} did not finish in ${CLI_TIMEOUT_MS} ms:\n${stderr}`));
    }, CLI_TIMEOUT_MS);
    child.on("error", reject);
    child.on("close", (code) => {
      clearTimeout(timer);
      resolve({ code, stdout, stderr });
    });
  });
}

/** Asserts the exit code, showing the output when it differs. */
export function assertExitCode(result: CliRun, code: number): void {
  assert.equal(result.code, code, `exit code; stdout:\n${result.stdout}\nstderr:\n${result.stderr}`);
}
