/**
 * From a file to a frozen `Config`: read, parse (JSON or YAML, parse.ts), give VS Code's inputs their
 * values (client-formats.ts), fetch `${secret:…}` references, interpolate, map the keys of MCP
 * clients' files onto Switchboard's (client-formats.ts) and validate (validate.ts), freeze. Every
 * failure is a GatewayError whose message a person can act on without reading code: which file,
 * which line or JSON path, what is wrong, and what to do about it.
 */
import { readFile } from "node:fs/promises";
import { dirname, resolve as resolvePath } from "node:path";
import { errnoAdvice, GatewayError } from "../core/errors.ts";
import { redactSecrets } from "../core/redact.ts";
import { prepareClientDocument } from "./client-formats.ts";
import { withEditorVariables } from "./client-variables.ts";
import type { ConfigIssue } from "./issue-messages.ts";
import { type ConfigFormat, formatOf, parseText } from "./parse.ts";
import type { Config } from "./schema.ts";
import { findSecretReferences } from "./secrets/references.ts";
import { createSecretResolver, type SecretResolver } from "./secrets/resolver.ts";
import { type ValidateConfigOptions, validateConfig, validateDocument } from "./validate.ts";

export interface ParseConfigOptions extends ValidateConfigOptions {
  /** Default: from the extension of `source` (.json, .yaml, .yml), else "auto" (JSON, then YAML). */
  readonly format?: ConfigFormat;
}

/** `source` and `baseDir` are the file and its folder. */
export interface LoadConfigOptions extends Omit<ParseConfigOptions, "source" | "baseDir"> {
  /**
   * Fetches `${secret:env|file|exec:…}` references before interpolation, and keeps them (refreshed,
   * and listed for redaction) for the caller. Default: a resolver that fetches once, relative to the
   * config file's folder, and is closed after loading.
   */
  readonly secrets?: SecretResolver;
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
  const baseDir = dirname(file);
  const env = withEditorVariables(options.env ?? process.env, baseDir);
  // A VS Code input becomes a secret reference, to be fetched with the others.
  const document = prepareClientDocument(parseText(text, format, file), { env, source: file });
  const references = findSecretReferences(document, { env });
  if (references.length === 0) return validateDocument(document, { ...options, source: file, baseDir });
  const secrets = options.secrets ?? createSecretResolver({ ttlMs: 0, baseDir, env: options.env });
  try {
    await secrets.resolveAll(references);
  } catch (error) {
    if (error instanceof GatewayError) error.data.source = file;
    throw error;
  } finally {
    if (!options.secrets) secrets.close();
  }
  try {
    return validateDocument(document, {
      ...options,
      source: file,
      baseDir,
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
  return validateConfig(parseText(text, format, source), { ...options, source });
}

const READ_ADVICE: Readonly<Record<string, string>> = {
  ENOENT:
    "it does not exist. Check the path given to --config, or create it " +
    "(a Claude Desktop or Claude Code mcpServers JSON file works as it is).",
  EISDIR: "it is a directory. Give the path of a .json or .yaml file.",
  EACCES: "permission denied. Make it readable by the user running Switchboard.",
  EPERM: "permission denied. Make it readable by the user running Switchboard.",
};

function readFailure(file: string, error: unknown): string {
  const reason =
    errnoAdvice(error, READ_ADVICE) ?? `${error instanceof Error ? error.message : String(error)}.`;
  return `Cannot read config file ${file}: ${reason}`;
}
