/**
 * From a file to a frozen `Config`: read, parse (JSON or YAML), interpolate `${VAR}`, validate, freeze.
 * Every failure is a GatewayError whose message a person can act on without reading code: which file,
 * which line or JSON path, what is wrong, and what to do about it.
 */
import { readFile } from "node:fs/promises";
import { dirname, extname, resolve as resolvePath } from "node:path";
import { parseDocument } from "yaml";
import type { z } from "zod";
import { GatewayError } from "../core/errors.ts";
import { redactSecrets } from "../core/redact.ts";
import { type Environment, formatPath, interpolate, type ReferenceResolver } from "./interpolate.ts";
import {
  type AnyServerConfig,
  type BuiltinBackendConfig,
  type Config,
  configSchema,
  type ServerConfig,
} from "./schema.ts";
import { createSecretResolver, findSecretReferences, type SecretResolver } from "./secrets.ts";

export type ConfigFormat = "json" | "yaml" | "auto";

export interface ValidateConfigOptions {
  /** Where `${VAR}` values come from. Default: process.env. */
  readonly env?: Environment;
  /** Resolvers for `${prefix:reference}` (see interpolate.ts). Default: none. */
  readonly resolvers?: Readonly<Record<string, ReferenceResolver>>;
  /** Names the config in messages, usually its file. Default "<config>". */
  readonly source?: string;
}

export interface ParseConfigOptions extends ValidateConfigOptions {
  /** Default: from the extension of `source` (.json, .yaml, .yml), else "auto" (JSON, then YAML). */
  readonly format?: ConfigFormat;
}

export interface LoadConfigOptions extends Omit<ParseConfigOptions, "source"> {
  /**
   * Fetches `${secret:env|file|exec:…}` references before interpolation, and keeps them (refreshed,
   * and listed for redaction) for the caller. Default: a resolver that fetches once, relative to the
   * config file's folder, and is closed after loading.
   */
  readonly secrets?: SecretResolver;
}

/** One problem with the config: where (a formatted JSON path) and what. */
export interface ConfigIssue {
  readonly path: string;
  readonly message: string;
}

/** Reads, parses, interpolates and validates a config file. Throws GatewayError (config_*). */
export async function loadConfigFile(path: string, options: LoadConfigOptions = {}): Promise<Config> {
  const file = resolvePath(path);
  let text: string;
  try {
    text = await readFile(file, "utf8");
  } catch (error) {
    throw new GatewayError("config_file", readFailure(file, error), { data: { source: file }, cause: error });
  }
  const format = options.format ?? formatOf(file);
  const document = parseText(text.replace(/^\uFEFF/, ""), format, file);
  const references = findSecretReferences(document, { env: options.env });
  if (references.length === 0) return validateConfig(document, { ...options, source: file });
  const secrets =
    options.secrets ?? createSecretResolver({ ttlMs: 0, baseDir: dirname(file), env: options.env });
  try {
    await secrets.resolveAll(references);
  } catch (error) {
    if (error instanceof GatewayError) error.data.source = file;
    throw error;
  } finally {
    if (!options.secrets) secrets.close();
  }
  try {
    return validateConfig(document, {
      ...options,
      source: file,
      resolvers: { ...options.resolvers, secret: secrets.resolver },
    });
  } catch (error) {
    // A secret put where a number belongs would be quoted back in "expected a number, got …".
    if (error instanceof GatewayError) {
      const values = secrets.values();
      error.message = redactSecrets(error.message, values);
      const issues = error.data.issues as ConfigIssue[] | undefined;
      if (issues)
        error.data.issues = issues.map((i) => ({ ...i, message: redactSecrets(i.message, values) }));
    }
    throw error;
  }
}

/** Parses config text; `source` names it in messages and, without `format`, picks the parser. */
export function parseConfig(text: string, options: ParseConfigOptions = {}): Config {
  const source = options.source ?? "<config>";
  const format = options.format ?? formatOf(source);
  // Editors on Windows save a byte-order mark that JSON.parse refuses.
  const document = parseText(text.replace(/^\uFEFF/, ""), format, source);
  return validateConfig(document, { ...options, source });
}

/** Interpolates and validates an already parsed document (a file's contents, or an object in code). */
export function validateConfig(document: unknown, options: ValidateConfigOptions = {}): Config {
  const source = options.source ?? "<config>";
  if (document === null || document === undefined) {
    throw invalid(source, [
      {
        path: "(root)",
        message: "the config is empty; it needs at least mcpServers (mcpServers: {} for none yet)",
      },
    ]);
  }
  let interpolated: unknown;
  try {
    interpolated = interpolate(document, { env: options.env, resolvers: options.resolvers });
  } catch (error) {
    if (error instanceof GatewayError) error.data.source = source;
    throw error;
  }

  const knownKeys = new WeakMap<readonly string[], readonly string[]>();
  const parse = () =>
    configSchema.safeParse(interpolated, { error: (issue) => describeIssue(issue, knownKeys) });
  let result = parse();
  // Each round can only turn strings into numbers or booleans, so it ends; a few rounds cover values
  // that a union or a refinement only reaches once the values before them are fixed.
  for (let round = 0; round < 3 && !result.success; round++) {
    if (!coerceScalars(interpolated, result.error.issues, [])) break;
    result = parse();
  }
  if (!result.success)
    throw invalid(
      source,
      result.error.issues.flatMap((issue) => toConfigIssues(issue, [], knownKeys)),
    );
  return deepFreeze(result.data);
}

// ---------------------------------------------------------------------------------------------------
// Scalars from strings

/**
 * Decimal numbers as people write them in settings; not "", " 1", "0x10", "1_000" or "Infinity",
 * which Number() would accept or misread.
 */
const NUMERIC = /^-?(?:0|[1-9][0-9]*)(?:\.[0-9]+)?(?:[eE][+-]?[0-9]+)?$/;

/**
 * Interpolation always yields strings, so `port: "${PORT:-8931}"` is the string "8931" however it is
 * written. Where the schema wants a number (or a boolean) and the string is an exact spelling of one,
 * it is replaced in `document` (the interpolated copy, never the caller's object); anything else stays
 * an error. Driven by the schema's own issues, so every numeric field qualifies, policies included,
 * and no field that takes strings is ever touched. The other direction stays an error (see `text` in
 * schema.ts): a number written where a string is wanted may already have lost digits.
 */
function coerceScalars(document: unknown, issues: readonly Issue[], prefix: readonly PropertyKey[]): boolean {
  let changed = false;
  for (const issue of issues) {
    const path = [...prefix, ...issue.path];
    if (issue.code === "invalid_union") {
      for (const branch of issue.errors) if (coerceScalars(document, branch, path)) changed = true;
      continue;
    }
    if (issue.code !== "invalid_type" || path.length === 0) continue;
    const parent = valueAt(document, path.slice(0, -1));
    const key = path.at(-1) as PropertyKey;
    if (typeof parent !== "object" || parent === null || !Object.hasOwn(parent, key)) continue;
    const value = (parent as Record<PropertyKey, unknown>)[key];
    if (typeof value !== "string") continue;
    let replacement: number | boolean | undefined;
    if (issue.expected === "number" || issue.expected === "int") {
      if (NUMERIC.test(value)) replacement = Number(value);
    } else if (issue.expected === "boolean") {
      if (value === "true" || value === "false") replacement = value === "true";
    }
    // "1e999" spells Infinity, which no setting means.
    if (replacement === undefined || (typeof replacement === "number" && !Number.isFinite(replacement)))
      continue;
    (parent as Record<PropertyKey, unknown>)[key] = replacement;
    changed = true;
  }
  return changed;
}

function valueAt(document: unknown, path: readonly PropertyKey[]): unknown {
  let value = document;
  for (const segment of path) {
    if (typeof value !== "object" || value === null || !Object.hasOwn(value, segment)) return undefined;
    value = (value as Record<PropertyKey, unknown>)[segment];
  }
  return value;
}

// ---------------------------------------------------------------------------------------------------
// Parsing

function formatOf(source: string): ConfigFormat {
  const extension = extname(source).toLowerCase();
  if (extension === ".json") return "json";
  if (extension === ".yaml" || extension === ".yml") return "yaml";
  return "auto";
}

function parseText(text: string, format: ConfigFormat, source: string): unknown {
  if (format === "json") return parseJson(text, source);
  if (format === "yaml") return parseYaml(text, source);
  try {
    return JSON.parse(text);
  } catch {
    // A file that looks like JSON gets the JSON parser's message; YAML's would be about flow mappings.
    return text.trimStart().startsWith("{") ? parseJson(text, source) : parseYaml(text, source);
  }
}

function parseJson(text: string, source: string): unknown {
  if (text.trim() === "") return null;
  try {
    return JSON.parse(text);
  } catch (error) {
    const message = error instanceof Error ? error.message : String(error);
    const position = /at position (\d+)/.exec(message);
    const reason = message
      .replace(/\s*\(line \d+ column \d+\)/, "")
      .replace(/ in JSON at position \d+/, "")
      .replace(/, ".*" is not valid JSON$/s, "");
    const where = position ? lineColumn(text, Number(position[1])) : undefined;
    throw syntaxError(source, "JSON", reason, text, where, error);
  }
}

function parseYaml(text: string, source: string): unknown {
  const document = parseDocument(text, { prettyErrors: true, uniqueKeys: true });
  const [first] = document.errors;
  if (first) {
    const reason = first.message.replace(/ at line \d+, column \d+:[\s\S]*$/, "");
    const start = first.linePos?.[0];
    const where = start ? { line: start.line, column: start.col } : undefined;
    throw syntaxError(source, "YAML", reason, text, where, first);
  }
  try {
    return document.toJS({ maxAliasCount: 100 });
  } catch (error) {
    // Unresolved aliases and alias bombs surface only when the document is converted.
    const reason = error instanceof Error ? error.message : String(error);
    throw syntaxError(source, "YAML", reason, text, undefined, error);
  }
}

interface LineColumn {
  readonly line: number;
  readonly column: number;
}

function lineColumn(text: string, offset: number): LineColumn {
  const before = text.slice(0, offset);
  const line = before.split("\n").length;
  return { line, column: offset - before.lastIndexOf("\n") };
}

function syntaxError(
  source: string,
  format: "JSON" | "YAML",
  reason: string,
  text: string,
  where: LineColumn | undefined,
  cause: unknown,
): GatewayError {
  const at = where ? `, line ${where.line}, column ${where.column}` : "";
  const lines = [`Cannot parse config file ${source} as ${format}${at}: ${reason}.`];
  if (where) lines.push("", ...excerpt(text, where), "");
  lines.push(
    format === "YAML"
      ? 'Fix the syntax there: YAML is indentation-sensitive, and values holding ": ", "#" or starting with {, [, * or & need quotes.'
      : "Fix the syntax there: JSON allows no comments or trailing commas, and needs double quotes around keys and strings.",
  );
  return new GatewayError("config_file", lines.join("\n"), {
    data: { source, format: format.toLowerCase(), ...where },
    cause,
  });
}

/** The offending line, the one before it for context, and a caret under the column. */
function excerpt(text: string, where: LineColumn): string[] {
  const lines = text.split(/\r?\n/);
  const shown: string[] = [];
  for (let number = Math.max(1, where.line - 1); number <= where.line; number++) {
    shown.push(`  ${String(number).padStart(4)} | ${lines[number - 1] ?? ""}`);
  }
  shown.push(`  ${" ".repeat(4)} | ${" ".repeat(Math.max(0, where.column - 1))}^`);
  return shown;
}

function readFailure(file: string, error: unknown): string {
  const code = (error as NodeJS.ErrnoException | undefined)?.code;
  switch (code) {
    case "ENOENT":
      return (
        `Cannot read config file ${file}: it does not exist. Check the path given to --config, or create it ` +
        `(a Claude Desktop or Claude Code mcpServers JSON file works as it is).`
      );
    case "EISDIR":
      return `Cannot read config file ${file}: it is a directory. Give the path of a .json or .yaml file.`;
    case "EACCES":
    case "EPERM":
      return `Cannot read config file ${file}: permission denied. Make it readable by the user running Switchboard.`;
    default:
      return `Cannot read config file ${file}: ${error instanceof Error ? error.message : String(error)}.`;
  }
}

// ---------------------------------------------------------------------------------------------------
// Validation messages

function invalid(source: string, issues: readonly ConfigIssue[]): GatewayError {
  const lines = [
    `Invalid config in ${source}:`,
    ...issues.map((issue) => `  - ${issue.path}: ${issue.message}`),
  ];
  return new GatewayError("config_invalid", lines.join("\n"), { data: { source, issues } });
}

type RawIssue = z.core.$ZodRawIssue;
type Issue = z.core.$ZodIssue;

/**
 * Messages for the whole parse, under any the schema sets itself. Unknown-key issues carry only the
 * keys that are wrong; the object's valid keys are known only here, so they are kept (by the issue's
 * `keys` array, which the final issue shares) for the "did you mean" suggestion.
 */
function describeIssue(
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

function toConfigIssues(
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
 * to spell one, see coerceScalars); elsewhere it may be a secret put in the wrong place.
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

function deepFreeze<T>(value: T): T {
  if (typeof value === "object" && value !== null && !Object.isFrozen(value)) {
    Object.freeze(value);
    for (const item of Object.values(value)) deepFreeze(item);
  }
  return value;
}

// ---------------------------------------------------------------------------------------------------
// Summary

interface ServerSummaryBase {
  readonly name: string;
  readonly enabled: boolean;
  readonly prefix: string;
  readonly timeoutMs: number;
  readonly tools: {
    readonly include: readonly string[];
    readonly exclude: readonly string[];
    readonly rename: Readonly<Record<string, string>>;
  };
  /** Names of the policies set on this server. */
  readonly policies: readonly string[];
}

export interface StdioServerSummary extends ServerSummaryBase {
  readonly type: "stdio";
  readonly command: string;
  /** With passwords in URLs and values of secret-looking flags (--token=…) masked. */
  readonly args: readonly string[];
  readonly cwd?: string;
  /** Names only: values may be secrets. */
  readonly envKeys: readonly string[];
}

export interface RemoteServerSummary extends ServerSummaryBase {
  readonly type: "http" | "sse";
  /** With credentials and query values masked. */
  readonly url: string;
  /** Names only: values may be secrets. */
  readonly headerNames: readonly string[];
}

export interface BuiltinBackendSummary extends ServerSummaryBase {
  readonly type: "postgres" | "redis" | "http" | "filesystem";
  /** What it reaches: a URL with its password masked, "embedded (PGlite)", the root folder or the hosts. */
  readonly target: string;
  /** Whether writes are refused (always true for http, which the allowlist bounds instead). */
  readonly readOnly: boolean;
}

export type ServerSummary = StdioServerSummary | RemoteServerSummary | BuiltinBackendSummary;

export interface ConfigSummary {
  readonly servers: readonly ServerSummary[];
  readonly gateway: Config["gateway"];
  readonly server: Config["server"];
  readonly logging: Config["logging"];
  /** Names of the global policies. */
  readonly policies: readonly string[];
  /** Tool names and globs that have their own policies. */
  readonly toolPolicies: readonly string[];
}

/**
 * What `switchboard check` prints. It must be safe to paste into an issue, so header values and
 * environment values never appear (only their names), and secrets inside URLs and arguments are masked.
 */
export function summarizeConfig(config: Config): ConfigSummary {
  return {
    servers: [
      ...Object.entries(config.mcpServers).map(([name, server]) => summarizeServer(name, server)),
      ...Object.entries(config.backends).map(([name, backend]) => summarizeBuiltin(name, backend)),
    ],
    gateway: { ...config.gateway },
    server: { http: { ...config.server.http } },
    logging: { ...config.logging },
    policies: Object.keys(config.policies),
    toolPolicies: Object.keys(config.toolPolicies),
  };
}

function summarizeBuiltin(name: string, backend: BuiltinBackendConfig): BuiltinBackendSummary {
  const base = summaryBase(name, backend);
  switch (backend.type) {
    case "postgres":
      return {
        ...base,
        type: backend.type,
        target: backend.url === undefined ? "embedded (PGlite)" : maskUrl(backend.url),
        readOnly: backend.readOnly,
      };
    case "redis":
      return { ...base, type: backend.type, target: maskUrl(backend.url), readOnly: backend.readOnly };
    case "http":
      return {
        ...base,
        type: backend.type,
        target: [backend.baseUrl, ...backend.allowHosts].filter((t) => t !== undefined).join(" "),
        readOnly: false,
      };
    case "filesystem":
      return { ...base, type: backend.type, target: backend.root, readOnly: backend.readOnly };
  }
}

function summaryBase(name: string, server: AnyServerConfig): ServerSummaryBase {
  return {
    name,
    enabled: server.enabled,
    prefix: server.prefix,
    timeoutMs: server.timeoutMs,
    tools: {
      include: [...server.tools.include],
      exclude: [...server.tools.exclude],
      rename: { ...server.tools.rename },
    },
    policies: Object.keys(server.policies),
  };
}

function summarizeServer(name: string, server: ServerConfig): ServerSummary {
  const base = summaryBase(name, server);
  if (server.type === "stdio") {
    return {
      ...base,
      type: "stdio",
      command: server.command,
      args: maskArgs(server.args),
      ...(server.cwd === undefined ? {} : { cwd: server.cwd }),
      envKeys: Object.keys(server.env),
    };
  }
  return { ...base, type: server.type, url: maskUrl(server.url), headerNames: Object.keys(server.headers) };
}

const MASK = "***";
const SECRET_FLAG = /^--?[\w-]*(token|secret|password|passwd|pwd|api[-_]?key|auth|credential)[\w-]*$/i;

function maskArgs(args: readonly string[]): string[] {
  return args.map((arg, index) => {
    const previous = index > 0 ? args[index - 1] : undefined;
    if (previous !== undefined && SECRET_FLAG.test(previous)) return MASK;
    const equals = arg.indexOf("=");
    if (equals > 0 && SECRET_FLAG.test(arg.slice(0, equals))) return `${arg.slice(0, equals + 1)}${MASK}`;
    // e.g. a PostgreSQL connection string passed to a database server.
    return arg.includes("://") ? maskUrl(arg) : arg;
  });
}

function maskUrl(value: string): string {
  if (!URL.canParse(value)) return value;
  const url = new URL(value);
  if (url.password === "" && url.search === "") return value;
  if (url.password !== "") url.password = MASK;
  for (const key of new Set(url.searchParams.keys())) url.searchParams.set(key, MASK);
  return url.toString();
}
