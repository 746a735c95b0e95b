/**
 * Secrets in the config: `${secret:env:NAME}`, `${secret:file:PATH}` and `${secret:exec:COMMAND}`.
 *
 * Interpolation (interpolate.ts) is synchronous, while reading a mounted file or running a command is
 * not, so secrets are resolved in two steps:
 *
 * 1. `findSecretReferences(document)` lists every reference in the parsed (not yet interpolated)
 *    config, and `resolver.resolveAll(references)` fetches them all at once, reporting every failure
 *    in one error (like missing variables).
 * 2. `validateConfig(document, { resolvers: { secret: resolver.resolver } })` substitutes them from
 *    memory.
 *
 * Values are refetched every `ttlMs` in the background, so a rotated Kubernetes secret or a vault
 * lease is picked up; `onChange` tells whoever holds a connection built from the old value. A refresh
 * that fails keeps the last value: a secret store that blips must not take a running gateway down.
 *
 * Values never appear in messages or logs from here; `values()` hands them to whoever redacts output
 * (logger, audit, errors, `check`), and `redactSecrets` (core/redact.ts) is the one function that does it.
 */
import { spawn } from "node:child_process";
import { open } from "node:fs/promises";
import { resolve as resolvePath } from "node:path";
import { describeError, GatewayError } from "../core/errors.ts";
import { MIN_REDACTED_LENGTH, redactSecrets } from "../core/redact.ts";
import type { Logger } from "../observability/logger.ts";
import {
  type Environment,
  formatPath,
  type PathSegment,
  parseReferenceBody,
  type ReferenceResolver,
  scanReferences,
  VARIABLE_NAME,
} from "./interpolate.ts";

export type SecretKind = "env" | "file" | "exec";

export interface ParsedSecretReference {
  /** The reference as written after `secret:`, e.g. "file:/run/secrets/db". The key for `get`. */
  readonly reference: string;
  readonly kind: SecretKind;
  /** The variable name, file path or command. */
  readonly target: string;
}

/** One reference and every place in the config that uses it. */
export interface SecretReferenceUse {
  readonly reference: string;
  /** Formatted JSON paths, as in other config messages. */
  readonly paths: readonly string[];
}

export interface SecretChange {
  /** The reference whose value changed; read the new value with `get`. */
  readonly reference: string;
}

export interface SecretRefreshSummary {
  readonly changed: readonly string[];
  readonly failed: readonly string[];
}

export interface SecretResolverOptions {
  /**
   * How long a value is trusted before it is fetched again in the background. 0 turns refreshing off.
   * Default 300 000 ms (5 minutes).
   */
  readonly ttlMs?: number;
  /** How long a `${secret:exec:…}` command may run before it is killed. Default 10 000 ms. */
  readonly execTimeoutMs?: number;
  /** Largest secret read from a file or a command's output, in bytes. Default 1 048 576 (1 MiB). */
  readonly maxBytes?: number;
  /** Where relative file paths (and commands) start: the config file's directory. Default process.cwd(). */
  readonly baseDir?: string;
  /** Where `env:` references are read. Default process.env. */
  readonly env?: Environment;
  /**
   * Where refresh failures and rotations are logged; a function when the logger is made later
   * (its level comes from the very config these secrets are part of).
   */
  readonly logger?: Logger | (() => Logger | undefined);
  /** The clock, in ms since the epoch. Default Date.now. */
  readonly now?: () => number;
}

export interface SecretResolver {
  /**
   * Fetches every reference not fetched yet, in parallel. Rejects with one GatewayError that lists
   * every reference that failed, where it is used and what to do; the ones that worked are kept.
   */
  resolveAll(references: Iterable<string | SecretReferenceUse>): Promise<void>;
  /** The value of a fetched reference. Throws when it was never fetched (a bug: resolveAll first). */
  get(reference: string): string;
  /**
   * The hook for interpolate's `secret` prefix: the value, or undefined for a reference not fetched,
   * which interpolation then reports with the path where it is used.
   */
  readonly resolver: ReferenceResolver;
  /** Fetches every known reference again now. Failures keep the last value and are logged. */
  refresh(): Promise<SecretRefreshSummary>;
  /**
   * Every secret value known: the current ones and, for rotated secrets, the one before, which
   * connections opened earlier may still use and print. For redaction by value.
   */
  values(): readonly string[];
  /** Calls `listener` after a refresh changed a value. Returns a function that unsubscribes. */
  onChange(listener: (change: SecretChange) => void): () => void;
  /** Stops refreshing. Known values stay readable. */
  close(): void;
}

const DEFAULT_TTL_MS = 300_000;
const DEFAULT_EXEC_TIMEOUT_MS = 10_000;
const DEFAULT_MAX_BYTES = 1024 * 1024;
/** A failed refresh is retried sooner than a full TTL, but not in a tight loop. */
const MAX_RETRY_MS = 30_000;
const STDERR_TAIL = 500;

/** Splits `env:NAME`, `file:PATH` or `exec:COMMAND`. Throws GatewayError (config_invalid) otherwise. */
export function parseSecretReference(reference: string): ParsedSecretReference {
  const colon = reference.indexOf(":");
  const kind = colon === -1 ? "" : reference.slice(0, colon);
  const target = colon === -1 ? "" : reference.slice(colon + 1);
  const shown = `\${secret:${reference}}`;
  if (kind !== "env" && kind !== "file" && kind !== "exec") {
    throw new GatewayError(
      "config_invalid",
      `${shown} is not a valid secret reference: write \${secret:env:NAME}, \${secret:file:PATH} or ` +
        `\${secret:exec:COMMAND}.`,
      { data: { reference } },
    );
  }
  if (target.trim() === "") {
    throw new GatewayError(
      "config_invalid",
      `${shown} names no ${targetWord(kind)}: add one after "${kind}:".`,
      {
        data: { reference },
      },
    );
  }
  if (kind === "env" && !VARIABLE_NAME.test(target)) {
    throw new GatewayError(
      "config_invalid",
      `${shown}: "${target}" is not a variable name (letters, digits and "_", not starting with a digit).`,
      { data: { reference } },
    );
  }
  return { reference, kind, target };
}

/**
 * Every `${secret:…}` reference in a parsed config, with the paths that use it, found by the same
 * rules interpolation applies: `$${` is a literal, keys are never read, and the default of
 * `${NAME:-…}` is only searched when NAME is unset or empty in `env` (there it would be used).
 */
export function findSecretReferences(
  document: unknown,
  options: { readonly env?: Environment } = {},
): SecretReferenceUse[] {
  const found = new Map<string, string[]>();
  const env = options.env ?? process.env;
  const visit = (value: unknown, path: PathSegment[]): void => {
    if (typeof value === "string") {
      if (value.includes("${")) scanText(value, formatPath(path), env, found);
    } else if (Array.isArray(value)) {
      for (const [index, item] of value.entries()) visit(item, [...path, index]);
    } else if (typeof value === "object" && value !== null) {
      for (const [key, item] of Object.entries(value)) visit(item, [...path, key]);
    }
  };
  visit(document, []);
  return [...found].map(([reference, paths]) => ({ reference, paths }));
}

/**
 * Records the `${secret:…}` references in one string, reading it with interpolate's own scanner so
 * that both always find the same references: a default is searched only where interpolation would
 * use it.
 */
function scanText(text: string, path: string, env: Environment, found: Map<string, string[]>): void {
  for (const piece of scanReferences(text)) {
    if (piece.kind !== "reference") continue;
    const body = parseReferenceBody(piece.body);
    if (body.kind === "prefixed") {
      if (body.prefix === "secret") {
        const paths = found.get(body.reference);
        if (paths === undefined) found.set(body.reference, [path]);
        else if (!paths.includes(path)) paths.push(path);
      }
    } else if (body.kind === "variable" && body.fallback !== undefined) {
      const value = Object.hasOwn(env, body.name) ? env[body.name] : undefined;
      if (!value) scanText(body.fallback, path, env, found);
    }
  }
}

interface Entry {
  readonly parsed: ParsedSecretReference;
  value: string;
  previous: string | undefined;
  nextRefreshAt: number;
  refreshing: Promise<void> | undefined;
}

export function createSecretResolver(options: SecretResolverOptions = {}): SecretResolver {
  return new Resolver(options);
}

class Resolver implements SecretResolver {
  readonly #ttlMs: number;
  readonly #execTimeoutMs: number;
  readonly #maxBytes: number;
  readonly #baseDir: string;
  readonly #env: Environment;
  readonly #loggerOption: Logger | (() => Logger | undefined) | undefined;

  get #logger(): Logger | undefined {
    const option = this.#loggerOption;
    return typeof option === "function" ? option() : option;
  }
  readonly #now: () => number;
  readonly #entries = new Map<string, Entry>();
  readonly #listeners = new Set<(change: SecretChange) => void>();
  #timer: NodeJS.Timeout | undefined;
  #closed = false;

  readonly resolver: ReferenceResolver = (reference) => this.#entries.get(reference)?.value;

  constructor(options: SecretResolverOptions) {
    this.#ttlMs = options.ttlMs ?? DEFAULT_TTL_MS;
    this.#execTimeoutMs = options.execTimeoutMs ?? DEFAULT_EXEC_TIMEOUT_MS;
    this.#maxBytes = options.maxBytes ?? DEFAULT_MAX_BYTES;
    this.#baseDir = options.baseDir ?? process.cwd();
    this.#env = options.env ?? process.env;
    this.#loggerOption = options.logger;
    this.#now = options.now ?? Date.now;
    if (!(this.#ttlMs >= 0) || !(this.#execTimeoutMs > 0)) {
      throw new RangeError("createSecretResolver: ttlMs must be >= 0 and execTimeoutMs > 0");
    }
  }

  async resolveAll(references: Iterable<string | SecretReferenceUse>): Promise<void> {
    const uses = new Map<string, string[]>();
    for (const item of references) {
      const use = typeof item === "string" ? { reference: item, paths: [] } : item;
      const paths = uses.get(use.reference) ?? [];
      for (const path of use.paths) if (!paths.includes(path)) paths.push(path);
      uses.set(use.reference, paths);
    }
    const failures: { reference: string; paths: readonly string[]; message: string; missingEnv: boolean }[] =
      [];
    await Promise.all(
      [...uses].map(async ([reference, paths]) => {
        if (this.#entries.has(reference)) return;
        try {
          const parsed = parseSecretReference(reference);
          const value = await this.#fetch(parsed);
          // Two resolveAll calls may race for the same reference; the first to finish wins.
          if (!this.#entries.has(reference)) {
            this.#entries.set(reference, {
              parsed,
              value,
              previous: undefined,
              nextRefreshAt: this.#now() + this.#ttlMs,
              refreshing: undefined,
            });
            this.#warnIfUnredactable(reference, value);
          }
        } catch (error) {
          failures.push({
            reference,
            paths,
            message: this.#redact(describeError(error)),
            missingEnv: error instanceof MissingEnv,
          });
        }
      }),
    );
    this.#schedule();
    if (failures.length > 0) {
      failures.sort((a, b) => a.reference.localeCompare(b.reference));
      const where = (paths: readonly string[]) => (paths.length > 0 ? ` (used at ${paths.join(", ")})` : "");
      const message =
        failures.length === 1 && failures[0]
          ? `Config error: ${failures[0].message}${where(failures[0].paths)}`
          : [
              `Config error: ${failures.length} secrets could not be resolved:`,
              ...failures.map((f) => `  - ${f.message}${where(f.paths)}`),
            ].join("\n");
      throw new GatewayError(
        failures.every((f) => f.missingEnv) ? "config_variable_missing" : "config_invalid",
        message,
        {
          data: { secrets: failures.map(({ reference, paths, message }) => ({ reference, paths, message })) },
        },
      );
    }
  }

  get(reference: string): string {
    const entry = this.#entries.get(reference);
    if (entry === undefined) {
      throw new GatewayError(
        "internal",
        `Secret \${secret:${reference}} was used before it was resolved: pass it to resolveAll first.`,
        { data: { reference } },
      );
    }
    return entry.value;
  }

  async refresh(): Promise<SecretRefreshSummary> {
    return await this.#refreshEntries([...this.#entries.values()]);
  }

  values(): readonly string[] {
    const out = new Set<string>();
    for (const entry of this.#entries.values()) {
      out.add(entry.value);
      if (entry.previous !== undefined) out.add(entry.previous);
    }
    return [...out];
  }

  onChange(listener: (change: SecretChange) => void): () => void {
    this.#listeners.add(listener);
    return () => {
      this.#listeners.delete(listener);
    };
  }

  close(): void {
    this.#closed = true;
    clearTimeout(this.#timer);
    this.#timer = undefined;
  }

  async #refreshEntries(entries: readonly Entry[]): Promise<SecretRefreshSummary> {
    const changed: string[] = [];
    const failed: string[] = [];
    await Promise.all(
      entries.map(async (entry) => {
        // A refresh already under way for this entry answers for this one too.
        entry.refreshing ??= this.#refreshEntry(entry, changed, failed).finally(() => {
          entry.refreshing = undefined;
        });
        await entry.refreshing;
      }),
    );
    return { changed, failed };
  }

  async #refreshEntry(entry: Entry, changed: string[], failed: string[]): Promise<void> {
    const reference = entry.parsed.reference;
    try {
      const value = await this.#fetch(entry.parsed);
      entry.nextRefreshAt = this.#now() + this.#ttlMs;
      if (value === entry.value) return;
      entry.previous = entry.value;
      entry.value = value;
      changed.push(reference);
      this.#warnIfUnredactable(reference, value);
      this.#logger?.info({ secret: `\${secret:${reference}}` }, "secret changed on refresh");
      for (const listener of this.#listeners) {
        try {
          listener({ reference });
        } catch (error) {
          this.#logger?.error(
            { secret: `\${secret:${reference}}`, err: this.#redact(describeError(error)) },
            "a secret change listener failed",
          );
        }
      }
    } catch (error) {
      failed.push(reference);
      entry.nextRefreshAt = this.#now() + Math.min(this.#ttlMs || MAX_RETRY_MS, MAX_RETRY_MS);
      this.#logger?.warn(
        { secret: `\${secret:${reference}}`, err: this.#redact(describeError(error)) },
        "secret refresh failed; keeping the last value",
      );
    }
  }

  /** One timer for all entries, set for the earliest refresh due; unref'd so it never holds the process. */
  #schedule(): void {
    clearTimeout(this.#timer);
    this.#timer = undefined;
    if (this.#closed || this.#ttlMs === 0 || this.#entries.size === 0) return;
    let earliest = Number.POSITIVE_INFINITY;
    for (const entry of this.#entries.values()) earliest = Math.min(earliest, entry.nextRefreshAt);
    const delay = Math.max(0, earliest - this.#now());
    this.#timer = setTimeout(() => void this.#tick(), delay);
    this.#timer.unref();
  }

  async #tick(): Promise<void> {
    const now = this.#now();
    const due = [...this.#entries.values()].filter((entry) => entry.nextRefreshAt <= now);
    await this.#refreshEntries(due);
    this.#schedule();
  }

  async #fetch(parsed: ParsedSecretReference): Promise<string> {
    switch (parsed.kind) {
      case "env":
        return this.#fromEnv(parsed);
      case "file":
        return await this.#fromFile(parsed);
      case "exec":
        return await this.#fromCommand(parsed);
    }
  }

  #fromEnv(parsed: ParsedSecretReference): string {
    const value = Object.hasOwn(this.#env, parsed.target) ? this.#env[parsed.target] : undefined;
    if (value === undefined) {
      throw new MissingEnv(
        `secret \${secret:${parsed.reference}}: environment variable ${parsed.target} is not set. Set it ` +
          `in the gateway's environment, or read the secret from a file with \${secret:file:PATH}.`,
      );
    }
    return value;
  }

  async #fromFile(parsed: ParsedSecretReference): Promise<string> {
    const file = resolvePath(this.#baseDir, parsed.target);
    const shown = `secret \${secret:${parsed.reference}}`;
    let text: string;
    try {
      text = await readCapped(file, this.#maxBytes);
    } catch (error) {
      throw new Error(`${shown}: cannot read ${file}: ${fileProblem(error)}`, { cause: error });
    }
    // Kubernetes and Docker secret files, and `echo secret > file`, end with one newline that is not
    // part of the secret; anything else is kept as written.
    return text.endsWith("\r\n") ? text.slice(0, -2) : text.endsWith("\n") ? text.slice(0, -1) : text;
  }

  async #fromCommand(parsed: ParsedSecretReference): Promise<string> {
    const shown = `secret \${secret:${parsed.reference}}`;
    const result = await runCommand(parsed.target, {
      cwd: this.#baseDir,
      timeoutMs: this.#execTimeoutMs,
      maxBytes: this.#maxBytes,
    });
    const tail = result.stderr.trim().slice(-STDERR_TAIL);
    const said = tail === "" ? "" : `; it said: ${tail}`;
    if (result.failure === "spawn") {
      throw new Error(`${shown}: cannot start /bin/sh to run the command: ${result.reason}.`);
    }
    if (result.failure === "timeout") {
      throw new Error(
        `${shown}: the command did not finish within ${this.#execTimeoutMs} ms and was killed${said}. ` +
          `Make it faster, or check that it does not wait for input.`,
      );
    }
    if (result.failure === "too_big") {
      throw new Error(
        `${shown}: the command printed more than ${this.#maxBytes} bytes and was killed. ` +
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

  #warnIfUnredactable(reference: string, value: string): void {
    if (value.length > 0 && value.length < MIN_REDACTED_LENGTH) {
      this.#logger?.warn(
        { secret: `\${secret:${reference}}` },
        `secret is shorter than ${MIN_REDACTED_LENGTH} characters, so it cannot be redacted from logs and audit records`,
      );
    }
  }

  #redact(text: string): string {
    return redactSecrets(text, this.values());
  }
}

class MissingEnv extends Error {}

function targetWord(kind: SecretKind): string {
  return kind === "env" ? "variable" : kind === "file" ? "file" : "command";
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

function fileProblem(error: unknown): string {
  switch ((error as NodeJS.ErrnoException | undefined)?.code) {
    case "ENOENT":
      return "it does not exist. Mount the secret there, or fix the path (relative paths start at the config file's directory).";
    case "EACCES":
    case "EPERM":
      return "permission denied. Make it readable by the user running Switchboard.";
    case "EISDIR":
      return "it is a directory. Name the file that holds the secret.";
    default:
      return `${describeError(error)}.`;
  }
}

interface CommandResult {
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
function runCommand(
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
