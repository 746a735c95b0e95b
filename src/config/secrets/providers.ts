/**
 * Where secret values come from: the gateway's environment, a file (a mounted Kubernetes or Docker
 * secret) or the output of a command (a vault CLI). Each failure says which reference failed, why,
 * and what to do; none quotes a value.
 */
import { open } from "node:fs/promises";
import { resolve as resolvePath } from "node:path";
import { describeError, errnoAdvice } from "../../core/errors.ts";
import type { Environment } from "../interpolate.ts";
import type { ParsedSecretReference } from "./references.ts";
import { runCommand } from "./run-command.ts";

export interface SecretSources {
  /** Where `env:` references are read. */
  readonly env: Environment;
  /** Where relative file paths (and commands) start. */
  readonly baseDir: string;
  /** How long a command may run before it is killed. */
  readonly execTimeoutMs: number;
  /** Largest secret read from a file or a command's output, in bytes. */
  readonly maxBytes: number;
}

/** A reference to an environment variable that is not set: a config_variable_missing error. */
export class MissingEnv extends Error {}

const STDERR_TAIL = 500;

/** The current value of one reference. Throws an Error that names the reference and what to do. */
export async function fetchSecret(parsed: ParsedSecretReference, sources: SecretSources): Promise<string> {
  switch (parsed.kind) {
    case "env":
      return fromEnv(parsed, sources.env);
    case "file":
      return await fromFile(parsed, sources);
    case "exec":
      return await fromCommand(parsed, sources);
  }
}

function fromEnv(parsed: ParsedSecretReference, env: Environment): string {
  const value = Object.hasOwn(env, parsed.target) ? env[parsed.target] : undefined;
  if (value === undefined) {
    throw new MissingEnv(
      `secret \${secret:${parsed.reference}}: environment variable ${parsed.target} is not set. Set it ` +
        `in the gateway's environment, or read the secret from a file with \${secret:file:PATH}.`,
    );
  }
  return value;
}

async function fromFile(parsed: ParsedSecretReference, sources: SecretSources): Promise<string> {
  const file = resolvePath(sources.baseDir, parsed.target);
  const shown = `secret \${secret:${parsed.reference}}`;
  let text: string;
  try {
    text = await readCapped(file, sources.maxBytes);
  } catch (error) {
    throw new Error(`${shown}: cannot read ${file}: ${fileProblem(error)}`, { cause: error });
  }
  // Kubernetes and Docker secret files, and `echo secret > file`, end with one newline that is not
  // part of the secret; anything else is kept as written.
  return text.endsWith("\r\n") ? text.slice(0, -2) : text.endsWith("\n") ? text.slice(0, -1) : text;
}

async function fromCommand(parsed: ParsedSecretReference, sources: SecretSources): Promise<string> {
  const shown = `secret \${secret:${parsed.reference}}`;
  const result = await runCommand(parsed.target, {
    cwd: sources.baseDir,
    timeoutMs: sources.execTimeoutMs,
    maxBytes: sources.maxBytes,
  });
  const tail = result.stderr.trim().slice(-STDERR_TAIL);
  const said = tail === "" ? "" : `; it said: ${tail}`;
  if (result.failure === "spawn") {
    throw new Error(`${shown}: cannot start /bin/sh to run the command: ${result.reason}.`);
  }
  if (result.failure === "timeout") {
    throw new Error(
      `${shown}: the command did not finish within ${sources.execTimeoutMs} ms and was killed${said}. ` +
        `Make it faster, or check that it does not wait for input.`,
    );
  }
  if (result.failure === "too_big") {
    throw new Error(
      `${shown}: the command printed more than ${sources.maxBytes} bytes and was killed. ` +
        `It should print only the secret.`,
    );
  }
  if (result.code !== 0) {
    const how = result.code === null ? `was killed by ${result.signal}` : `exited with code ${result.code}`;
    throw new Error(
      `${shown}: the command ${how}${said}. Run it in a shell as the gateway's user to see why.`,
    );
  }
  // Commands print their answer with a trailing newline, sometimes padded; a secret whose
  // surrounding whitespace matters belongs in a file.
  return result.stdout.trim();
}

/** Reads at most `maxBytes` (a path such as /dev/zero must not fill the memory). */
async function readCapped(file: string, maxBytes: number): Promise<string> {
  const handle = await open(file, "r");
  try {
    const buffer = Buffer.alloc(maxBytes + 1);
    let length = 0;
    while (length < buffer.length) {
      const { bytesRead } = await handle.read(buffer, length, buffer.length - length, null);
      if (bytesRead === 0) break;
      length += bytesRead;
    }
    if (length > maxBytes) throw new Error(`it is larger than ${maxBytes} bytes, too large for a secret`);
    return buffer.subarray(0, length).toString("utf8");
  } finally {
    await handle.close();
  }
}

const FILE_ADVICE: Readonly<Record<string, string>> = {
  ENOENT:
    "it does not exist. Mount the secret there, or fix the path (relative paths start at the config file's directory).",
  EACCES: "permission denied. Make it readable by the user running Switchboard.",
  EPERM: "permission denied. Make it readable by the user running Switchboard.",
  EISDIR: "it is a directory. Name the file that holds the secret.",
};

function fileProblem(error: unknown): string {
  return errnoAdvice(error, FILE_ADVICE) ?? `${describeError(error)}.`;
}
