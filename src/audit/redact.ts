/**
 * What of a call's arguments reaches the audit log. Two mechanisms, both always applied:
 *
 * - rules, by tool and argument path: `{ tools: ["db__*"], arguments: ["password", "auth.token",
 *   "headers.*"] }` replaces those values with "[redacted]" (paths are dotted, `*` is any one key or
 *   array index, a number is an array index);
 * - by value: every secret the gateway knows (`${secret:…}` values) is replaced wherever it turns up,
 *   in any argument and in the error text, because a secret pasted into an argument by a model or
 *   echoed back in an error message matches no rule written beforehand.
 *
 * `omitArguments` leaves arguments out of records altogether.
 */
import picomatch from "picomatch";
import { GLOB_OPTIONS } from "../config/primitives.ts";
import { REDACTED, redactedCopy, redactSecrets } from "../core/redact.ts";
import { parseArgumentPath } from "./config.ts";
import type { AuditRecord } from "./record.ts";

export { REDACTED };

export interface RedactRule {
  /** Globs over exposed tool names ("db__*"). */
  readonly tools: readonly string[];
  /** Dotted argument paths; `*` is one segment. */
  readonly arguments: readonly string[];
}

export interface RedactorOptions {
  readonly rules?: readonly RedactRule[];
  /** Leave arguments out of records. Default false. */
  readonly omitArguments?: boolean;
  /** The secret values to redact wherever they appear; read on every record, so rotation is seen. */
  readonly secretValues?: () => readonly string[];
}

export interface Redactor {
  /** A new arguments object with rules and secret values applied; undefined with `omitArguments` or none given. */
  arguments(
    tool: string,
    args: Readonly<Record<string, unknown>> | undefined,
  ): Record<string, unknown> | undefined;
  /** The text with every known secret value replaced. */
  text(text: string): string;
  /** The record as the log should keep it: arguments and error redacted. */
  record(record: AuditRecord): AuditRecord;
}

/** Tool names seen, with their paths; cleared when full (unknown names from clients are unbounded). */
const MAX_CACHED_TOOLS = 1_000;

type Path = readonly string[];

export function createRedactor(options: RedactorOptions = {}): Redactor {
  const rules = (options.rules ?? []).map((rule) => ({
    matches: picomatch([...rule.tools], GLOB_OPTIONS),
    paths: rule.arguments.map(parseArgumentPath),
  }));
  const secretValues = options.secretValues ?? (() => []);
  const omit = options.omitArguments ?? false;
  const pathsByTool = new Map<string, Path[]>();

  const pathsFor = (tool: string): Path[] => {
    let paths = pathsByTool.get(tool);
    if (paths === undefined) {
      paths = rules.filter((rule) => rule.matches(tool)).flatMap((rule) => rule.paths);
      if (pathsByTool.size >= MAX_CACHED_TOOLS) pathsByTool.clear();
      pathsByTool.set(tool, paths);
    }
    return paths;
  };

  const redactor: Redactor = {
    arguments(tool, args) {
      if (omit || args === undefined) return undefined;
      const values = secretValues();
      const copy = redactedCopy(args, values);
      for (const path of pathsFor(tool)) redactPath(copy, path, 0);
      return copy;
    },
    text(text) {
      return redactSecrets(text, secretValues());
    },
    record(record) {
      const { arguments: args, error, ...rest } = record;
      const redactedArgs = redactor.arguments(record.tool, args);
      return {
        ...rest,
        ...(redactedArgs === undefined ? {} : { arguments: redactedArgs }),
        ...(error === undefined ? {} : { error: redactor.text(error) }),
      };
    },
  };
  return redactor;
}

/** Replaces, in place on our own copy, the values at `path` that exist; never adds keys. */
function redactPath(value: unknown, path: Path, index: number): void {
  const segment = path[index];
  if (segment === undefined || typeof value !== "object" || value === null) return;
  const last = index === path.length - 1;
  const visit = (container: Record<string | number, unknown>, key: string | number) => {
    if (last) container[key] = REDACTED;
    else redactPath(container[key], path, index + 1);
  };
  if (Array.isArray(value)) {
    const items = value as unknown[] as Record<number, unknown>;
    if (segment === "*") for (let i = 0; i < value.length; i++) visit(items, i);
    else if (/^(0|[1-9][0-9]*)$/.test(segment) && Number(segment) < value.length)
      visit(items, Number(segment));
    return;
  }
  const record = value as Record<string, unknown>;
  if (segment === "*") for (const key of Object.keys(record)) visit(record, key);
  else if (Object.hasOwn(record, segment)) visit(record, segment);
}
