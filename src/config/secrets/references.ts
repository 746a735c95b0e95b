/**
 * `${secret:env:NAME}`, `${secret:file:PATH}` and `${secret:exec:COMMAND}` as written in a config:
 * parsing one reference, and finding every reference in a parsed document (with where each is used)
 * so that all of them are fetched before interpolation (see resolver.ts).
 */
import { GatewayError } from "../../core/errors.ts";
import {
  type Environment,
  formatPath,
  type PathSegment,
  parseReferenceBody,
  scanReferences,
  VARIABLE_NAME,
} from "../interpolate.ts";

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

function targetWord(kind: SecretKind): string {
  return kind === "env" ? "variable" : kind === "file" ? "file" : "command";
}
