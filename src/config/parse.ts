/**
 * Config text to a plain document: JSON or YAML, picked by the file's extension or by trying both.
 * A syntax error names the file, the line and column, shows the line with a caret under the column,
 * and says what the format needs there.
 */
import { createRequire } from "node:module";
import { extname } from "node:path";
import { GatewayError } from "../core/errors.ts";

export type ConfigFormat = "json" | "yaml" | "auto";

/** From the extension of `source` (.json, .yaml, .yml), else "auto" (JSON, then YAML). */
export function formatOf(source: string): ConfigFormat {
  const extension = extname(source).toLowerCase();
  if (extension === ".json") return "json";
  if (extension === ".yaml" || extension === ".yml") return "yaml";
  return "auto";
}

/** The parsed document; the byte-order mark editors on Windows save (JSON.parse refuses it) is dropped. */
export function parseText(text: string, format: ConfigFormat, source: string): unknown {
  const body = text.replace(/^\uFEFF/, "");
  if (format === "json") return parseJson(body, source);
  if (format === "yaml") return parseYaml(body, source);
  try {
    return JSON.parse(body);
  } catch {
    // A file that looks like JSON gets the JSON parser's message; YAML's would be about flow mappings.
    return body.trimStart().startsWith("{") ? parseJson(body, source) : parseYaml(body, source);
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
  // Loaded for the first YAML text: a JSON config (every MCP client's format) never needs the parser,
  // which costs memory and start-up time. `require` because parsing is synchronous (parseConfig).
  const { parseDocument } = createRequire(import.meta.url)("yaml") as typeof import("yaml");
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
