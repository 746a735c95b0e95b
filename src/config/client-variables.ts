/**
 * The variables editors put in their MCP config files, given values a gateway can have:
 *
 * - VS Code's `${input:id}` asks the user for a value (an API key, usually) when the server starts.
 *   A gateway has nobody to ask, so the value is read from the environment variable
 *   `SWITCHBOARD_INPUT_<ID>` (the id in upper case, "-" and other signs as "_"), and handled as a
 *   secret: `${input:api-key}` becomes `${secret:env:SWITCHBOARD_INPUT_API_KEY}` before secrets are
 *   fetched, so its value is redacted wherever secrets are. The `inputs` list itself only describes
 *   the prompts; its descriptions name a missing input in the error.
 * - VS Code's and Cursor's predefined `${workspaceFolder}`, `${workspaceFolderBasename}`,
 *   `${userHome}` and `${pathSeparator}`: the folder the config file sits in (its parent for
 *   `.vscode/mcp.json`, `.cursor/mcp.json` and `.roo/mcp.json`), the home folder, the path separator.
 *   The environment overrides them, like any variable.
 *
 * (`${env:NAME}`, the other way these files write a variable, is part of the grammar: interpolate.ts.)
 */
import { homedir } from "node:os";
import { basename, dirname, sep } from "node:path";
import { GatewayError } from "../core/errors.ts";
import {
  type Environment,
  formatPath,
  isPlainObject,
  type PathSegment,
  parseReferenceBody,
  scanReferences,
} from "./interpolate.ts";

/** Where `${input:<id>}` is read from: this prefix and the id in upper case, other signs as "_". */
export const INPUT_VARIABLE_PREFIX = "SWITCHBOARD_INPUT_";

/** The environment variable that gives VS Code input `id` its value. */
export function inputVariable(id: string): string {
  return `${INPUT_VARIABLE_PREFIX}${id.toUpperCase().replace(/[^A-Z0-9_]/g, "_")}`;
}

/** Folders whose `mcp.json` belongs to the project folder above them. */
const EDITOR_FOLDERS: ReadonlySet<string> = new Set([".vscode", ".cursor", ".roo"]);

/** `env` with the editors' predefined variables under it, for a config whose folder is `baseDir`. */
export function withEditorVariables(env: Environment, baseDir: string): Environment {
  const workspace = EDITOR_FOLDERS.has(basename(baseDir)) ? dirname(baseDir) : baseDir;
  return {
    workspaceFolder: workspace,
    workspaceFolderBasename: basename(workspace),
    userHome: homedir(),
    pathSeparator: sep,
    ...env,
  };
}

interface InputUse {
  readonly id: string;
  readonly paths: string[];
}

/**
 * The document without VS Code's `inputs` list, and with every `${input:id}` turned into the secret
 * reference that reads it from the environment (see this file's header). Throws GatewayError
 * (config_variable_missing) naming every input that has no value, where it is used, and what to set.
 */
export function substituteInputs(
  document: unknown,
  options: { readonly env: Environment; readonly source: string },
): unknown {
  if (!isPlainObject(document)) return document;
  const descriptions = inputDescriptions(document.inputs);
  const uses = new Map<string, InputUse>();
  const rest = descriptions === undefined ? document : withoutKey(document, "inputs");
  const substituted = mapStrings(rest, [], (text, path) =>
    substituteText(text, { path, uses, env: options.env, used: true }),
  );
  const missing = [...uses.values()].filter((use) => !Object.hasOwn(options.env, inputVariable(use.id)));
  if (missing.length > 0) throw missingInputs(missing, descriptions ?? new Map(), options.source);
  return substituted;
}

/** id -> description from VS Code's `inputs`; undefined when there is no list to take out. */
function inputDescriptions(inputs: unknown): Map<string, string> | undefined {
  if (!Array.isArray(inputs)) return undefined;
  const descriptions = new Map<string, string>();
  for (const input of inputs) {
    if (isPlainObject(input) && typeof input.id === "string" && typeof input.description === "string")
      descriptions.set(input.id, input.description);
  }
  return descriptions;
}

interface Substitution {
  readonly path: readonly PathSegment[];
  readonly uses: Map<string, InputUse>;
  readonly env: Environment;
  /** False inside the default of a variable that is set: interpolation will not use it. */
  readonly used: boolean;
}

/**
 * Rewrites the `${input:…}` references of one string, reading it with interpolate's own scanner so that
 * escapes (`$${`) and nesting (`${NAME:-${input:x}}`) keep their meaning. An input counts as used, and
 * so needs a value, where interpolation would use it (the same rule as for secrets).
 */
function substituteText(text: string, at: Substitution): string {
  if (!text.includes("${")) return text;
  let out = "";
  for (const piece of scanReferences(text)) {
    // A function, because "$$" in a replacement string means one "$".
    if (piece.kind === "text") out += piece.text.replaceAll("${", () => "$${");
    else if (piece.kind === "unclosed") out += piece.text;
    else {
      const body = parseReferenceBody(piece.body);
      if (body.kind === "prefixed" && body.prefix === "input") {
        if (at.used) recordUse(at, body.reference);
        out += `\${secret:env:${inputVariable(body.reference)}}`;
      } else if (body.kind === "variable" && body.fallback !== undefined) {
        const name = piece.body.slice(0, piece.body.indexOf(":-"));
        const set = Object.hasOwn(at.env, body.name) && Boolean(at.env[body.name]);
        out += `\${${name}:-${substituteText(body.fallback, { ...at, used: at.used && !set })}}`;
      } else {
        out += `\${${piece.body}}`;
      }
    }
  }
  return out;
}

function recordUse(at: Substitution, id: string): void {
  const use = at.uses.get(id) ?? { id, paths: [] };
  const formatted = formatPath(at.path);
  if (!use.paths.includes(formatted)) use.paths.push(formatted);
  at.uses.set(id, use);
}

function missingInputs(
  missing: readonly InputUse[],
  descriptions: ReadonlyMap<string, string>,
  source: string,
): GatewayError {
  const describe = (use: InputUse) => {
    const description = descriptions.get(use.id);
    const named = description === undefined ? "" : ` (${JSON.stringify(description)})`;
    return (
      `VS Code input "${use.id}"${named} has no value (used at ${use.paths.join(", ")}): ` +
      `set the environment variable ${inputVariable(use.id)}`
    );
  };
  const advice =
    "Switchboard cannot prompt for an input as VS Code does. Or write " +
    `\${secret:env:NAME} or \${secret:file:PATH} in place of \${input:…}.`;
  const [only] = missing;
  const message =
    only && missing.length === 1
      ? `Config error: ${describe(only)}. ${advice}`
      : [
          "Config error: inputs without a value:",
          ...missing.map((use) => `  - ${describe(use)}`),
          advice,
        ].join("\n");
  return new GatewayError("config_variable_missing", message, {
    data: {
      source,
      missing: missing.map((use) => ({ variable: inputVariable(use.id), input: use.id, paths: use.paths })),
    },
  });
}

function mapStrings(
  value: unknown,
  path: PathSegment[],
  map: (text: string, path: readonly PathSegment[]) => string,
): unknown {
  if (typeof value === "string") return map(value, path);
  if (Array.isArray(value)) return value.map((item, index) => mapStrings(item, [...path, index], map));
  if (isPlainObject(value))
    return Object.fromEntries(
      Object.entries(value).map(([key, item]) => [key, mapStrings(item, [...path, key], map)]),
    );
  return value;
}

function withoutKey(object: Record<string, unknown>, key: string): Record<string, unknown> {
  return Object.fromEntries(Object.entries(object).filter(([k]) => k !== key));
}
