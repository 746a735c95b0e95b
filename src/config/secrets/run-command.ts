/**
 * Runs a `${secret:exec:…}` command, bounded in time and in output, and reports how it ended rather
 * than throwing: the caller words the message.
 */
import { spawn } from "node:child_process";
import { describeError } from "../../core/errors.ts";

export interface CommandResult {
  readonly stdout: string;
  readonly stderr: string;
  readonly code: number | null;
  readonly signal: NodeJS.Signals | null;
  readonly failure?: "spawn" | "timeout" | "too_big";
  readonly reason?: string;
}

/**
 * Runs `sh -c command` in its own process group, so that a timeout kills what the shell started too
 * (a pipeline or a helper holding stdout open would otherwise keep us waiting after the shell died).
 */
export function runCommand(
  command: string,
  options: { readonly cwd: string; readonly timeoutMs: number; readonly maxBytes: number },
): Promise<CommandResult> {
  return new Promise((resolve) => {
    const child = spawn("/bin/sh", ["-c", command], {
      cwd: options.cwd,
      stdio: ["ignore", "pipe", "pipe"],
      detached: true,
    });
    const stdout: Buffer[] = [];
    const stderr: Buffer[] = [];
    let stdoutBytes = 0;
    let stderrBytes = 0;
    let failure: CommandResult["failure"];
    let reason: string | undefined;
    const killGroup = () => {
      try {
        if (child.pid !== undefined) process.kill(-child.pid, "SIGKILL");
      } catch {
        // Already gone.
      }
    };
    const timer = setTimeout(() => {
      failure ??= "timeout";
      killGroup();
    }, options.timeoutMs);
    child.stdout.on("data", (chunk: Buffer) => {
      stdoutBytes += chunk.length;
      if (stdoutBytes > options.maxBytes) {
        failure ??= "too_big";
        killGroup();
      } else stdout.push(chunk);
    });
    child.stderr.on("data", (chunk: Buffer) => {
      // Only the tail is shown; keep a bounded amount.
      stderr.push(chunk);
      stderrBytes += chunk.length;
      while (stderrBytes > 64 * 1024 && stderr.length > 1) stderrBytes -= stderr.shift()?.length ?? 0;
    });
    const finish = (code: number | null, signal: NodeJS.Signals | null) => {
      clearTimeout(timer);
      resolve({
        stdout: Buffer.concat(stdout).toString("utf8"),
        stderr: Buffer.concat(stderr).toString("utf8"),
        code,
        signal,
        ...(failure === undefined ? {} : { failure }),
        ...(reason === undefined ? {} : { reason }),
      });
    };
    child.on("error", (error) => {
      // A process that could not be started emits no "close" to wait for.
      if (child.pid === undefined) {
        failure ??= "spawn";
        reason = describeError(error);
        finish(null, null);
      }
    });
    child.on("close", (code, signal) => {
      // Whatever the shell left behind in its group after a kill must not linger.
      if (failure !== undefined) killGroup();
      finish(code, signal);
    });
  });
}
