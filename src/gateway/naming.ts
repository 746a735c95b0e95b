/**
 * How a backend's own tool and prompt names become the names clients see: filter, rename, prefix,
 * then make the result valid for strict clients (`^[a-zA-Z0-9_-]{1,64}$`). Pure functions, so config
 * checks can predict exposed names (and their collisions) without connecting to anything.
 */
import { createHash } from "node:crypto";
import picomatch from "picomatch";
import { GLOB_OPTIONS } from "../config/primitives.ts";

/** Per-server naming rules, derived from config (already validated). */
export interface ServerNaming {
  /** The server's config key, e.g. "github". */
  readonly server: string;
  /** Namespace prefix; "" keeps the server's own names. */
  readonly prefix: string;
  /** Globs over the server's own tool and prompt names; empty means all. */
  readonly include: readonly string[];
  /** Globs over own names; a name matching both include and exclude is excluded. */
  readonly exclude: readonly string[];
  /** Own name -> new name, applied before prefixing; for tools and prompts. */
  readonly rename: Readonly<Record<string, string>>;
  /** Own name -> description that replaces the backend's; for tools and prompts. */
  readonly descriptions: Readonly<Record<string, string>>;
}

export const MAX_NAME_LENGTH = 64;
export const VALID_NAME = /^[a-zA-Z0-9_-]{1,64}$/;

const INVALID_CHARS = /[^a-zA-Z0-9_-]/g;
const HASH_LENGTH = 8;
/** Head length that leaves room for "_" and the hash, so a shortened name is exactly 64 long. */
const HEAD_LENGTH = MAX_NAME_LENGTH - HASH_LENGTH - 1;

export interface ExposedName {
  /** What clients see and call: always matches `VALID_NAME`. */
  readonly name: string;
  /** `prefix + separator + renamed` before any sanitising or shortening. */
  readonly raw: string;
  /** True when `name !== raw` (characters replaced or the name shortened). */
  readonly altered: boolean;
}

/** The name after rename and prefixing, before it is made client-safe. */
export function rawExposedName(naming: ServerNaming, ownName: string, separator: string): string {
  const renamed = lookup(naming.rename, ownName) ?? ownName;
  return naming.prefix === "" ? renamed : `${naming.prefix}${separator}${renamed}`;
}

/**
 * Makes any string a valid tool name. Deterministic: the same input always gives the same output, and
 * the hash of the full input keeps two long names that differ only past the cut apart.
 */
export function clientSafeName(raw: string): string {
  const sanitised = raw.replace(INVALID_CHARS, "_");
  if (sanitised.length > 0 && sanitised.length <= MAX_NAME_LENGTH) return sanitised;
  const hash = createHash("sha256").update(raw).digest("hex").slice(0, HASH_LENGTH);
  return `${sanitised.slice(0, HEAD_LENGTH)}_${hash}`;
}

export function exposeName(naming: ServerNaming, ownName: string, separator: string): ExposedName {
  const raw = rawExposedName(naming, ownName, separator);
  const name = clientSafeName(raw);
  return { name, raw, altered: name !== raw };
}

/** The name clients see for a server's own tool or prompt name (ignores include/exclude). */
export function exposedName(naming: ServerNaming, ownName: string, separator: string): string {
  return clientSafeName(rawExposedName(naming, ownName, separator));
}

/** The description override for an own name, if the config sets one. */
export function descriptionOverride(naming: ServerNaming, ownName: string): string | undefined {
  return lookup(naming.descriptions, ownName);
}

type NameFilter = (ownName: string) => boolean;

// Naming objects live as long as the config, so each server's globs compile once, not per rebuild.
const filters = new WeakMap<ServerNaming, NameFilter>();

/** Whether include/exclude let an own tool or prompt name through. */
export function isExposed(naming: ServerNaming, ownName: string): boolean {
  let filter = filters.get(naming);
  if (!filter) {
    filter = compileFilter(naming);
    filters.set(naming, filter);
  }
  return filter(ownName);
}

function compileFilter(naming: ServerNaming): NameFilter {
  const included = naming.include.length > 0 ? picomatch([...naming.include], GLOB_OPTIONS) : undefined;
  const excluded = naming.exclude.length > 0 ? picomatch([...naming.exclude], GLOB_OPTIONS) : undefined;
  return (ownName) => (included === undefined || included(ownName)) && !excluded?.(ownName);
}

// Own names come from backends: "constructor" or "__proto__" must not find Object.prototype members.
function lookup(record: Readonly<Record<string, string>>, key: string): string | undefined {
  return Object.hasOwn(record, key) ? record[key] : undefined;
}
