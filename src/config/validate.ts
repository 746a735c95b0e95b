/**
 * A parsed document to a frozen `Config`: give VS Code's inputs their values, interpolate `${VAR}`, map
 * the keys MCP clients write onto Switchboard's, validate against the one schema, turn strings that
 * spell numbers or booleans into them where the schema asks for one, freeze.
 */
import { GatewayError } from "../core/errors.ts";
import { type ConfigWarning, normalizeClientFormats, prepareClientDocument } from "./client-formats.ts";
import { withEditorVariables } from "./client-variables.ts";
import { type Environment, interpolate, type ReferenceResolver } from "./interpolate.ts";
import { describeIssue, type Issue, invalidConfig, toConfigIssues } from "./issue-messages.ts";
import { DECIMAL_NUMBER } from "./primitives.ts";
import { type Config, configSchema } from "./schema.ts";

export interface ValidateConfigOptions {
  /** Where `${VAR}` values come from. Default: process.env. */
  readonly env?: Environment;
  /** Resolvers for `${prefix:reference}` (see interpolate.ts). Default: none. */
  readonly resolvers?: Readonly<Record<string, ReferenceResolver>>;
  /**
   * Names the config in messages, usually its file; the file's name also tells which MCP client wrote
   * it (client-formats.ts). Default "<config>".
   */
  readonly source?: string;
  /**
   * Where a relative `envFile` is found, and what `${workspaceFolder}` is (the parent folder when this
   * is .vscode, .cursor or .roo). Default: the current directory; loadConfigFile: the file's folder.
   */
  readonly baseDir?: string;
  /**
   * Told, once the config is valid, of each key in it that only an MCP client reads (e.g. Cline's
   * `autoApprove`), once per key. Default: nobody (the CLI logs them at warn; `check` prints them).
   */
  readonly onWarning?: (warning: ConfigWarning) => void;
}

/** Interpolates and validates an already parsed document (a file's contents, or an object in code). */
export function validateConfig(document: unknown, options: ValidateConfigOptions = {}): Config {
  const source = options.source ?? "<config>";
  const env = withEditorVariables(options.env ?? process.env, options.baseDir ?? process.cwd());
  return validateDocument(prepareClientDocument(document, { env, source }), options);
}

/**
 * `validateConfig` for a document `prepareClientDocument` has already seen: the loader runs that first,
 * because a VS Code input becomes a secret reference that has to be fetched before interpolation.
 */
export function validateDocument(document: unknown, options: ValidateConfigOptions = {}): Config {
  const source = options.source ?? "<config>";
  const baseDir = options.baseDir ?? process.cwd();
  if (document === null || document === undefined) {
    throw invalidConfig(source, [
      {
        path: "(root)",
        message: "the config is empty; it needs at least mcpServers (mcpServers: {} for none yet)",
      },
    ]);
  }
  let interpolated: unknown;
  try {
    interpolated = interpolate(document, {
      env: withEditorVariables(options.env ?? process.env, baseDir),
      resolvers: options.resolvers,
    });
  } catch (error) {
    if (error instanceof GatewayError) error.data.source = source;
    throw error;
  }
  const normalized = normalizeClientFormats(interpolated, { source, baseDir });

  const knownKeys = new WeakMap<readonly string[], readonly string[]>();
  const parse = () =>
    configSchema.safeParse(normalized.document, { error: (issue) => describeIssue(issue, knownKeys) });
  let result = parse();
  // Each round can only turn strings into numbers or booleans, so it ends; a few rounds cover values
  // that a union or a refinement only reaches once the values before them are fixed.
  for (let round = 0; round < 3 && !result.success; round++) {
    if (!coerceScalars(normalized.document, result.error.issues, [])) break;
    result = parse();
  }
  if (!result.success)
    throw invalidConfig(
      source,
      result.error.issues
        .flatMap((issue) => toConfigIssues(issue, [], knownKeys))
        .map((issue) => ({ ...issue, path: normalized.originalPath(issue.path) })),
    );
  const config = deepFreeze(result.data);
  for (const warning of normalized.warnings) options.onWarning?.(warning);
  return config;
}

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
      if (DECIMAL_NUMBER.test(value)) replacement = Number(value);
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

function deepFreeze<T>(value: T): T {
  if (typeof value === "object" && value !== null && !Object.isFrozen(value)) {
    Object.freeze(value);
    for (const item of Object.values(value)) deepFreeze(item);
  }
  return value;
}
