/**
 * `${VAR}` substitution over a parsed config document, before validation, so that the schema checks
 * the values the gateway will really use (a URL from the environment is checked as a URL).
 *
 * Syntax, in any string value (keys are never touched):
 * - `${NAME}`: the variable; unset is an error that names it and where it is used.
 * - `${NAME:-default}`: the default when NAME is unset or empty, as in the shell; the default may
 *   itself hold references, and is only expanded when used. `${NAME:-}` is an empty string.
 * - `$${`: a literal `${`.
 * - `${env:NAME}` and `${env:NAME:-default}`: the same as `${NAME}` and `${NAME:-default}`, as the
 *   config files of Cursor, VS Code, Windsurf, Cline and Roo Code write a variable.
 * - `${prefix:reference}`: handed to the resolver registered for that prefix (e.g. `secret:`).
 *   Prefixes listed in `passThrough` (by default `secret`) are left as written for a later stage.
 *
 * Every problem in the document is collected and reported at once: fixing one missing variable only
 * to meet the next is a slow way to configure a gateway.
 */
import { GatewayError } from "../core/errors.ts";

export type PathSegment = string | number;
export type Environment = Readonly<Record<string, string | undefined>>;

/**
 * Resolves `${<prefix>:<reference>}` for one prefix. Returns the value, or undefined when there is
 * none (reported like a missing variable). Synchronous, so that parsing a config stays synchronous: a
 * resolver backed by a remote store fetches what it needs beforehand and answers from memory.
 */
export type ReferenceResolver = (reference: string, path: readonly PathSegment[]) => string | undefined;

export interface InterpolateOptions {
  /** Where variables come from. Default: process.env. */
  readonly env?: Environment;
  /** Resolvers by prefix, without the colon: { secret: (ref) => … }. Default: none. */
  readonly resolvers?: Readonly<Record<string, ReferenceResolver>>;
  /** Prefixes left as written when no resolver is registered for them. Default ["secret"]. */
  readonly passThrough?: readonly string[];
}

export interface MissingVariable {
  /** The variable's name, or `<prefix>:<reference>` for an unresolved reference. */
  readonly variable: string;
  /** Every place it is used, as formatted JSON paths. */
  readonly paths: readonly string[];
}

export interface InvalidReference {
  readonly path: string;
  readonly message: string;
}

export interface InterpolationResult {
  readonly value: unknown;
  readonly missing: readonly MissingVariable[];
  readonly invalid: readonly InvalidReference[];
}

/** An environment variable name; also what `${secret:env:NAME}` accepts (secrets.ts). */
export const VARIABLE_NAME = /^[A-Za-z_][A-Za-z0-9_]*$/;
/** `prefix:rest`, but not `NAME:-default`; prefixes are lower case so they never look like variables. */
const PREFIXED = /^([a-z][a-z0-9_-]*):(?!-)([\s\S]*)$/;
const DEFAULT_PASS_THROUGH = ["secret"];
/** `${env:NAME}`: a variable, written the way editors' MCP config files write one. */
const ENV_PREFIX = "env";

/**
 * Interpolates every string in `document` and returns a new document. Throws a GatewayError
 * (`config_variable_missing` when a variable is unset, else `config_invalid`) listing every problem.
 */
export function interpolate(document: unknown, options: InterpolateOptions = {}): unknown {
  const result = interpolateDocument(document, options);
  if (result.missing.length > 0 || result.invalid.length > 0) throw interpolationError(result);
  return result.value;
}

/** Like `interpolate`, but returns the problems instead of throwing. */
export function interpolateDocument(
  document: unknown,
  options: InterpolateOptions = {},
): InterpolationResult {
  const state: State = {
    env: options.env ?? process.env,
    resolvers: options.resolvers ?? {},
    passThrough: new Set(options.passThrough ?? DEFAULT_PASS_THROUGH),
    missing: new Map(),
    invalid: [],
  };
  const value = walk(document, [], state);
  return {
    value,
    missing: [...state.missing].map(([variable, paths]) => ({ variable, paths })),
    invalid: state.invalid,
  };
}

/**
 * A JSON path as people read it: `mcpServers.github.headers.Authorization`, `args[1]`,
 * `toolPolicies["github__*"]`. The root is "(root)".
 */
export function formatPath(path: readonly PropertyKey[]): string {
  let out = "";
  for (const segment of path) {
    if (typeof segment === "number") out += `[${segment}]`;
    else {
      const key = String(segment);
      if (/^[A-Za-z0-9_$-]+$/.test(key)) out += out === "" ? key : `.${key}`;
      else out += `[${JSON.stringify(key)}]`;
    }
  }
  return out === "" ? "(root)" : out;
}

interface State {
  readonly env: Environment;
  readonly resolvers: Readonly<Record<string, ReferenceResolver>>;
  readonly passThrough: ReadonlySet<string>;
  readonly missing: Map<string, string[]>;
  readonly invalid: InvalidReference[];
}

function walk(value: unknown, path: PathSegment[], state: State): unknown {
  if (typeof value === "string") return value.includes("$") ? expand(value, path, state) : value;
  if (Array.isArray(value)) return value.map((item, index) => walk(item, [...path, index], state));
  if (isPlainObject(value)) {
    // fromEntries defines own properties, so a "__proto__" key stays data and never sets a prototype.
    return Object.fromEntries(
      Object.entries(value).map(([key, item]) => [key, walk(item, [...path, key], state)]),
    );
  }
  return value;
}

function expand(text: string, path: readonly PathSegment[], state: State): string {
  let out = "";
  for (const piece of scanReferences(text)) {
    if (piece.kind === "text") out += piece.text;
    else if (piece.kind === "reference") out += resolve(piece.body, path, state);
    else {
      state.invalid.push({
        path: formatPath(path),
        message: `"${piece.text}" has no closing "}" (write $\${ for a literal \${)`,
      });
      out += piece.text;
    }
  }
  return out;
}

/** A piece of a string value, as `scanReferences` splits it. */
export type ScannedPiece =
  /** Text taken as written, with `$${` already turned into `${`. */
  | { readonly kind: "text"; readonly text: string }
  /** The inside of one `${…}` (nested references included), not yet interpreted: see `parseReferenceBody`. */
  | { readonly kind: "reference"; readonly body: string }
  /** A `${` that is never closed: the rest of the string from there, always the last piece. */
  | { readonly kind: "unclosed"; readonly text: string };

/**
 * Splits a string into literal text and `${…}` references, in order. The one place that knows where a
 * reference starts and ends (`$${` escapes, nested braces), so that interpolation and the search for
 * secret references (secrets.ts) always agree on what a string refers to.
 */
export function* scanReferences(text: string): Generator<ScannedPiece, void, undefined> {
  let index = 0;
  while (index < text.length) {
    const dollar = text.indexOf("$", index);
    if (dollar === -1) {
      yield { kind: "text", text: text.slice(index) };
      return;
    }
    if (dollar > index) yield { kind: "text", text: text.slice(index, dollar) };
    if (text.startsWith("$${", dollar)) {
      yield { kind: "text", text: "${" };
      index = dollar + 3;
      continue;
    }
    if (text[dollar + 1] !== "{") {
      yield { kind: "text", text: "$" };
      index = dollar + 1;
      continue;
    }
    const close = closingBrace(text, dollar + 2);
    if (close === -1) {
      yield { kind: "unclosed", text: text.slice(dollar) };
      return;
    }
    yield { kind: "reference", body: text.slice(dollar + 2, close) };
    index = close + 1;
  }
}

/** What the inside of a `${…}` asks for. */
export type ReferenceBody =
  /** `${prefix:reference}`, e.g. `${secret:env:TOKEN}`. */
  | { readonly kind: "prefixed"; readonly prefix: string; readonly reference: string }
  /** `${NAME}` (no fallback) or `${NAME:-fallback}`; the fallback may hold references of its own. */
  | { readonly kind: "variable"; readonly name: string; readonly fallback: string | undefined }
  /** Neither a prefix nor a valid variable name. */
  | { readonly kind: "invalid" };

/**
 * Classifies a reference's body by the grammar in this file's header. Shared with secrets.ts for the
 * same reason as `scanReferences`: one grammar, read in one place.
 */
export function parseReferenceBody(body: string): ReferenceBody {
  const prefixed = PREFIXED.exec(body);
  if (prefixed) {
    const [, prefix = "", reference = ""] = prefixed;
    // `env:` names a variable, so it is read as one, default included: one meaning, one code path.
    if (prefix === ENV_PREFIX) return parseVariable(reference);
    return { kind: "prefixed", prefix, reference };
  }
  return parseVariable(body);
}

function parseVariable(body: string): ReferenceBody {
  const separator = body.indexOf(":-");
  const name = separator === -1 ? body : body.slice(0, separator);
  if (!VARIABLE_NAME.test(name)) return { kind: "invalid" };
  return { kind: "variable", name, fallback: separator === -1 ? undefined : body.slice(separator + 2) };
}

/** The index of the `}` that closes a reference whose body starts at `start`, nested `${…}` included. */
function closingBrace(text: string, start: number): number {
  let depth = 1;
  for (let index = start; index < text.length; index++) {
    if (text.startsWith("${", index)) {
      depth++;
      index++;
    } else if (text[index] === "}" && --depth === 0) {
      return index;
    }
  }
  return -1;
}

function resolve(body: string, path: readonly PathSegment[], state: State): string {
  const parsed = parseReferenceBody(body);
  if (parsed.kind === "prefixed") {
    const { prefix, reference } = parsed;
    const resolver = Object.hasOwn(state.resolvers, prefix) ? state.resolvers[prefix] : undefined;
    if (resolver) {
      const value = resolver(reference, path);
      if (value === undefined) addMissing(state, `${prefix}:${reference}`, path);
      return value ?? "";
    }
    if (state.passThrough.has(prefix)) return `\${${body}}`;
    state.invalid.push({
      path: formatPath(path),
      message: `"\${${body}}" uses the unknown prefix "${prefix}:" (for a default value write \${NAME:-value})`,
    });
    return "";
  }

  if (parsed.kind === "invalid") {
    state.invalid.push({
      path: formatPath(path),
      message:
        `"\${${body}}" is not a valid reference: a variable name is letters, digits and "_", ` +
        `not starting with a digit (write $\${ for a literal \${)`,
    });
    return "";
  }
  const { name, fallback } = parsed;
  const value = Object.hasOwn(state.env, name) ? state.env[name] : undefined;
  if (fallback !== undefined) return value ? value : expand(fallback, path, state);
  if (value === undefined) {
    addMissing(state, name, path);
    return "";
  }
  return value;
}

function addMissing(state: State, variable: string, path: readonly PathSegment[]): void {
  const paths = state.missing.get(variable);
  const formatted = formatPath(path);
  if (paths === undefined) state.missing.set(variable, [formatted]);
  else if (!paths.includes(formatted)) paths.push(formatted);
}

function interpolationError(result: InterpolationResult): GatewayError {
  const data = { missing: result.missing, invalid: result.invalid };
  const [only] = result.missing;
  if (only && result.missing.length === 1 && result.invalid.length === 0) {
    return new GatewayError(
      "config_variable_missing",
      `Config error: ${describeMissing(only)} is not set (used at ${only.paths.join(", ")}). ` +
        `Set it, or give a default with \${${only.variable}:-value}.`,
      { data },
    );
  }
  const lines: string[] = [];
  if (result.missing.length > 0) {
    const count = result.missing.length;
    lines.push(
      `Config error: ${count} environment ${count === 1 ? "variable is" : "variables are"} not set:`,
    );
    for (const missing of result.missing) {
      const shown = missing.variable.includes(":") ? `\${${missing.variable}}` : missing.variable;
      lines.push(`  - ${shown} (used at ${missing.paths.join(", ")})`);
    }
    lines.push(`Set ${count === 1 ? "it" : "them"}, or give defaults with \${NAME:-value}.`);
  }
  if (result.invalid.length > 0) {
    lines.push(result.missing.length > 0 ? "And invalid references:" : "Config error: invalid references:");
    for (const invalid of result.invalid) lines.push(`  - ${invalid.path}: ${invalid.message}`);
  }
  return new GatewayError(
    result.missing.length > 0 ? "config_variable_missing" : "config_invalid",
    lines.join("\n"),
    {
      data,
    },
  );
}

function describeMissing(missing: MissingVariable): string {
  return missing.variable.includes(":")
    ? `the reference \${${missing.variable}}`
    : `environment variable ${missing.variable}`;
}

/** An object written as `{…}` in JSON or YAML: what the config walks into (a class instance it leaves). */
export function isPlainObject(value: unknown): value is Record<string, unknown> {
  if (typeof value !== "object" || value === null) return false;
  const prototype = Object.getPrototypeOf(value);
  return prototype === Object.prototype || prototype === null;
}
