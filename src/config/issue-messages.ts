/**
 * zod's issues, reworded for people who write config files: "required (a string)", "expected a
 * number, got the string "80a"", an unknown key with the key it most likely meant, and a union
 * reported by the branch whose shape fits. Values a secret could be are never quoted back.
 */
import type { z } from "zod";
import { GatewayError } from "../core/errors.ts";
import { formatPath } from "./interpolate.ts";

/** One problem with the config: where (a formatted JSON path) and what. */
export interface ConfigIssue {
  readonly path: string;
  readonly message: string;
}

type RawIssue = z.core.$ZodRawIssue;
export type Issue = z.core.$ZodIssue;

/** The config_invalid error that lists every problem, one line each. */
export function invalidConfig(source: string, issues: readonly ConfigIssue[]): GatewayError {
  const lines = [
    `Invalid config in ${source}:`,
    ...issues.map((issue) => `  - ${issue.path}: ${issue.message}`),
  ];
  return new GatewayError("config_invalid", lines.join("\n"), { data: { source, issues } });
}

/**
 * Messages for the whole parse, under any the schema sets itself. Unknown-key issues carry only the
 * keys that are wrong; the object's valid keys are known only here, so they are kept (by the issue's
 * `keys` array, which the final issue shares) for the "did you mean" suggestion.
 */
export function describeIssue(
  issue: RawIssue,
  knownKeys: WeakMap<readonly string[], readonly string[]>,
): string | undefined {
  if (issue.code === "unrecognized_keys") {
    const shape = (issue.inst?._zod.def as { shape?: Record<string, unknown> } | undefined)?.shape;
    if (shape) knownKeys.set(issue.keys, Object.keys(shape));
    return undefined;
  }
  if (issue.code === "invalid_type" && issue.input === undefined)
    return `required (${withArticle(issue.expected)})`;
  if (issue.code === "invalid_type") {
    if (issue.expected === "int" && typeof issue.input === "number")
      return `expected a whole number, got ${issue.input}`;
    const expected = issue.expected === "boolean" ? "true or false" : withArticle(issue.expected);
    return `expected ${expected}, got ${describeValue(issue.input, issue.expected)}`;
  }
  if (issue.code === "too_big" && issue.origin === "number")
    return issue.inclusive
      ? `must be at most ${issue.maximum}, got ${String(issue.input)}`
      : `must be less than ${issue.maximum}, got ${String(issue.input)}`;
  if (issue.code === "too_small" && issue.origin === "number")
    return issue.inclusive
      ? `must be at least ${issue.minimum}, got ${String(issue.input)}`
      : `must be greater than ${issue.minimum}, got ${String(issue.input)}`;
  return undefined;
}

export function toConfigIssues(
  issue: Issue,
  prefix: readonly PropertyKey[],
  knownKeys: WeakMap<readonly string[], readonly string[]>,
): ConfigIssue[] {
  const path = [...prefix, ...issue.path];
  switch (issue.code) {
    case "unrecognized_keys": {
      // One line per key, at the key's own path, so each can be found and fixed on its own.
      const known = knownKeys.get(issue.keys) ?? [];
      return issue.keys.map((key) => ({
        path: formatPath([...path, key]),
        message: unknownKeyMessage(key, known),
      }));
    }
    case "invalid_key":
      return [{ path: formatPath(path), message: issue.issues.map((inner) => inner.message).join("; ") }];
    case "invalid_union": {
      if (issue.errors.length === 0) return [{ path: formatPath(path), message: issue.message }];
      // The branches whose issues are all below this value are those of the right shape: report theirs.
      const fitting = issue.errors.filter((branch) => branch.every((inner) => inner.path.length > 0));
      const best = fitting.sort((a, b) => a.length - b.length)[0];
      if (best) return best.flatMap((inner) => toConfigIssues(inner, path, knownKeys));
      return [{ path: formatPath(path), message: `expected ${alternatives(issue.errors)}` }];
    }
    default:
      return [{ path: formatPath(path), message: issue.message }];
  }
}

/** "false, an object or an array", from what each branch of a union expected at its root. */
function alternatives(branches: readonly (readonly Issue[])[]): string {
  const expected: string[] = [];
  for (const branch of branches) {
    const root = branch.find((inner) => inner.path.length === 0);
    let text: string | undefined;
    if (root?.code === "invalid_type") text = withArticle(root.expected);
    else if (root?.code === "invalid_value")
      text = root.values.map((value) => JSON.stringify(value)).join(" or ");
    if (text !== undefined && !expected.includes(text)) expected.push(text);
  }
  if (expected.length === 0) return "a different value";
  return expected.length === 1
    ? (expected[0] ?? "")
    : `${expected.slice(0, -1).join(", ")} or ${expected.at(-1)}`;
}

function withArticle(expected: string): string {
  if (expected === "record") return "an object";
  if (expected === "int") return "a whole number";
  return /^[aeiou]/.test(expected) ? `an ${expected}` : `a ${expected}`;
}

/**
 * What was found instead. A string is shown only where a number or boolean was expected (it failed
 * to spell one, see coerceScalars in validate.ts); elsewhere it may be a secret put in the wrong place.
 */
function describeValue(input: unknown, expected: string): string {
  if (typeof input === "string") {
    if (expected !== "number" && expected !== "int" && expected !== "boolean") return "a string";
    return `the string ${JSON.stringify(input.length > 40 ? `${input.slice(0, 40)}…` : input)}`;
  }
  if (typeof input === "number") return `the number ${input}`;
  if (typeof input === "boolean") return String(input);
  if (input === null) return "an empty value";
  if (Array.isArray(input)) return "an array";
  return typeof input === "object" ? "an object" : `a ${typeof input}`;
}

const STDIO_ONLY = new Set(["command", "args", "env", "cwd"]);
const REMOTE_ONLY = new Set(["url", "headers"]);

function unknownKeyMessage(key: string, known: readonly string[]): string {
  const quoted = JSON.stringify(key);
  // Keys that belong to the other kind of server mean the kind is wrong, not the key.
  if (known.includes("command") && REMOTE_ONLY.has(key)) {
    return `unknown key ${quoted} for a stdio server (no type, or type "stdio"); a remote server needs type "http" or "sse" and no command`;
  }
  if (known.includes("url") && STDIO_ONLY.has(key)) {
    return `unknown key ${quoted} for a remote server (type "http" or "sse"); a stdio server has a command and no type or url`;
  }
  const suggestion = closest(key, known);
  return suggestion === undefined
    ? `unknown key ${quoted}`
    : `unknown key ${quoted} (did you mean "${suggestion}"?)`;
}

/**
 * The valid key a typo most likely meant: the same letters in another case, a couple of edits away,
 * or a valid key it begins (a unit suffix left out: "ttl" for "ttlMs").
 */
function closest(key: string, known: readonly string[]): string | undefined {
  const lower = key.toLowerCase();
  let best: string | undefined;
  let bestDistance = Number.POSITIVE_INFINITY;
  for (const candidate of known) {
    const candidateLower = candidate.toLowerCase();
    if (candidateLower === lower) return candidate;
    const distance = editDistance(lower, candidateLower);
    // Short keys are a couple of edits from almost anything ("url" -> "cwd"), so scale with length.
    const near = distance <= 2 && distance * 2 < key.length;
    const truncated = key.length >= 3 && candidateLower.startsWith(lower);
    if ((near || truncated) && distance < bestDistance) {
      best = candidate;
      bestDistance = distance;
    }
  }
  return best;
}

function editDistance(a: string, b: string): number {
  let previous = Array.from({ length: b.length + 1 }, (_, index) => index);
  for (let i = 1; i <= a.length; i++) {
    const current = [i];
    for (let j = 1; j <= b.length; j++) {
      const substitution = (previous[j - 1] ?? 0) + (a[i - 1] === b[j - 1] ? 0 : 1);
      current.push(Math.min((previous[j] ?? 0) + 1, (current[j - 1] ?? 0) + 1, substitution));
    }
    previous = current;
  }
  return previous[b.length] ?? 0;
}
