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
import { describeError, GatewayError } from "../../core/errors.ts";
import { MIN_REDACTED_LENGTH, redactSecrets } from "../../core/redact.ts";
import type { Logger } from "../../observability/logger.ts";
import type { Environment, ReferenceResolver } from "../interpolate.ts";
import { fetchSecret, MissingEnv, type SecretSources } from "./providers.ts";
import { type ParsedSecretReference, parseSecretReference, type SecretReferenceUse } from "./references.ts";

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
  readonly #sources: SecretSources;
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
    this.#sources = {
      execTimeoutMs: options.execTimeoutMs ?? DEFAULT_EXEC_TIMEOUT_MS,
      maxBytes: options.maxBytes ?? DEFAULT_MAX_BYTES,
      baseDir: options.baseDir ?? process.cwd(),
      env: options.env ?? process.env,
    };
    this.#loggerOption = options.logger;
    this.#now = options.now ?? Date.now;
    if (!(this.#ttlMs >= 0) || !(this.#sources.execTimeoutMs > 0)) {
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
          const value = await fetchSecret(parsed, this.#sources);
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
      const value = await fetchSecret(entry.parsed, this.#sources);
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
