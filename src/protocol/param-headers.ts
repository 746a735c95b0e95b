/**
 * `Mcp-Param-*` headers of 2026-07-28 tool calls over HTTP. A tool may mark primitive arguments with
 * `x-mcp-header: <Name>` in its input schema; a client then mirrors each such argument in a
 * `Mcp-Param-<Name>` header (Base64 inside `=?base64?…?=` when it is not plain ASCII), so that proxies
 * can route on it without reading the body. A server must refuse a call whose header is missing,
 * disagrees with the body, or is badly encoded: HTTP 400, -32020.
 *
 * The SDK performs this check only when its HTTP handler is given an `McpServer` that registered the
 * tool itself; the gateway serves with a low-level `Server` and forwards tools it does not own, and the
 * SDK does not export its check. So the gateway checks the call here, against the schema of the tool
 * as the gateway lists it, by the same rules.
 */
import { JSON_RPC } from "../core/errors.ts";

const HEADER_PREFIX = "mcp-param-";
const BASE64_OPEN = "=?base64?";
const BASE64_CLOSE = "?=";
/** Canonical Base64: the alphabet, and padding only as the last one or two characters. */
const CANONICAL_BASE64 = /^(?:[A-Za-z0-9+/]{4})*(?:[A-Za-z0-9+/]{2}==|[A-Za-z0-9+/]{3}=)?$/;
const DECIMAL = /^-?\d+(\.\d+)?$/;

/** One argument a client mirrors in a header. */
export interface ParamHeader {
  /** Where the argument is in `arguments`: property names from the root. */
  readonly path: readonly string[];
  /** The header is `Mcp-Param-<name>`. */
  readonly name: string;
  readonly type: string | undefined;
}

export interface ParamHeaderMismatch {
  readonly code: typeof JSON_RPC.HEADER_MISMATCH;
  readonly message: string;
  readonly data: { readonly mismatch: { readonly header: string; readonly body: string } };
}

/**
 * The arguments of a tool that travel in headers: `x-mcp-header` on a property reached through
 * `properties` alone (a declaration anywhere else makes the tool invalid for clients, which then do not
 * send headers for it, so it is not looked for there).
 */
export function paramHeaders(inputSchema: unknown, path: readonly string[] = []): ParamHeader[] {
  const found: ParamHeader[] = [];
  if (typeof inputSchema !== "object" || inputSchema === null) return found;
  const schema = inputSchema as Record<string, unknown>;
  const name = schema["x-mcp-header"];
  if (path.length > 0 && typeof name === "string" && name.length > 0) {
    found.push({ path, name, type: typeof schema.type === "string" ? schema.type : undefined });
  }
  const properties = schema.properties;
  if (typeof properties === "object" && properties !== null) {
    for (const [key, child] of Object.entries(properties)) found.push(...paramHeaders(child, [...path, key]));
  }
  return found;
}

/**
 * Whether the call's headers agree with its arguments. An argument that is absent or null needs no
 * header (one that is there anyway is ignored); one that is present needs its header, decoded equal to
 * it (numbers compare as numbers, so `42.0` matches `42`).
 */
export function checkParamHeaders(
  declared: readonly ParamHeader[],
  args: unknown,
  header: (lowerCaseName: string) => string | undefined,
): ParamHeaderMismatch | undefined {
  for (const param of declared) {
    const value = valueAt(args, param.path);
    const text = asHeaderText(value);
    if (text === undefined) continue;
    const name = `Mcp-Param-${param.name}`;
    const argument = `${param.path.join(".")}=${JSON.stringify(value)}`;
    const raw = header(`${HEADER_PREFIX}${param.name.toLowerCase()}`);
    if (raw === undefined)
      return mismatch(name, `the body carries ${argument} but the ${name} header is absent`);
    const decoded = decodeHeaderValue(raw.trim());
    if (decoded === undefined) {
      return mismatch(name, `the ${name} header carries an invalid Base64 value (=?base64?…?=)`);
    }
    const equal =
      typeof value === "number" && DECIMAL.test(decoded) ? Number(decoded) === value : decoded === text;
    if (!equal) {
      return mismatch(
        name,
        `the ${name} header decodes to ${JSON.stringify(decoded)} but the body carries ${argument}`,
      );
    }
  }
  return undefined;
}

/** A header value as text: Base64 inside the sentinel is decoded (UTF-8); anything else is literal. */
export function decodeHeaderValue(value: string): string | undefined {
  if (!value.startsWith(BASE64_OPEN) || !value.endsWith(BASE64_CLOSE)) return value;
  const payload = value.slice(BASE64_OPEN.length, value.length - BASE64_CLOSE.length);
  if (!CANONICAL_BASE64.test(payload)) return undefined;
  try {
    return new TextDecoder("utf-8", { fatal: true }).decode(Buffer.from(payload, "base64"));
  } catch {
    return undefined;
  }
}

/** How a primitive argument reads in a header; undefined for what travels in no header. */
function asHeaderText(value: unknown): string | undefined {
  if (typeof value === "string") return value;
  if (typeof value === "boolean") return value ? "true" : "false";
  if (typeof value === "number" && Number.isFinite(value)) {
    return Number.isInteger(value) && !Number.isSafeInteger(value) ? undefined : String(value);
  }
  return undefined;
}

function valueAt(root: unknown, path: readonly string[]): unknown {
  let node = root;
  for (const key of path) {
    if (typeof node !== "object" || node === null) return undefined;
    node = (node as Record<string, unknown>)[key];
  }
  return node;
}

function mismatch(header: string, body: string): ParamHeaderMismatch {
  return {
    code: JSON_RPC.HEADER_MISMATCH,
    message: `Bad Request: the request headers and body disagree: ${body}. Send the header as the tool's x-mcp-header declares it.`,
    data: { mismatch: { header, body } },
  };
}
