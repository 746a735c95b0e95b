/**
 * Canonical JSON: one spelling per value, so equal arguments give equal cache keys and signatures
 * whatever order a client wrote the keys in. The output follows RFC 8785 (JCS) for the values it
 * accepts: no whitespace, object keys sorted by UTF-16 code units, arrays in order, numbers as
 * ECMAScript prints them.
 *
 * It is deliberately stricter than JSON.stringify where JSON.stringify would lose information
 * silently and so make two different values share a key: non-finite numbers, bigints, cycles, and
 * objects that are not plain data (Map, Set, class instances without `toJSON`) are rejected with a
 * TypeError naming where they are. `undefined`, functions and symbols are treated as JSON.stringify
 * treats them (dropped from objects, `null` in arrays), so a value and its JSON round trip agree.
 */
import { createHash } from "node:crypto";

export function canonicalJson(value: unknown): string {
  const out = write(value, "$", new Set());
  if (out === undefined) throw new TypeError(`canonicalJson: $ is ${typeof value}, which has no JSON form`);
  return out;
}

export function sha256Hex(text: string): string {
  return createHash("sha256").update(text, "utf8").digest("hex");
}

/** sha256 of the canonical JSON of `value`, hex: the form used for cache keys. */
export function hashJson(value: unknown): string {
  return sha256Hex(canonicalJson(value));
}

function write(input: unknown, path: string, ancestors: Set<object>): string | undefined {
  let value = input;
  if (
    value !== null &&
    typeof value === "object" &&
    typeof (value as { toJSON?: unknown }).toJSON === "function"
  ) {
    value = (value as { toJSON: (key: string) => unknown }).toJSON("");
  }
  switch (typeof value) {
    case "string":
      return JSON.stringify(value);
    case "boolean":
      return value ? "true" : "false";
    case "number":
      if (!Number.isFinite(value))
        throw new TypeError(`canonicalJson: ${path} is ${value}, not a JSON number`);
      // JSON.stringify prints the shortest round-tripping form and turns -0 into 0, as JCS wants.
      return JSON.stringify(value);
    case "bigint":
      throw new TypeError(`canonicalJson: ${path} is a bigint; convert it to a string or number first`);
    case "undefined":
    case "function":
    case "symbol":
      return undefined;
  }
  if (value === null) return "null";
  const object = value as object;
  if (ancestors.has(object)) throw new TypeError(`canonicalJson: ${path} is a circular reference`);
  ancestors.add(object);
  try {
    if (Array.isArray(object)) {
      const items = object.map((item, i) => write(item, `${path}[${i}]`, ancestors) ?? "null");
      return `[${items.join(",")}]`;
    }
    const proto = Object.getPrototypeOf(object);
    if (proto !== Object.prototype && proto !== null) {
      const kind = (object as { constructor?: { name?: string } }).constructor?.name ?? "object";
      throw new TypeError(`canonicalJson: ${path} is a ${kind}, not plain JSON data`);
    }
    const record = object as Record<string, unknown>;
    const parts: string[] = [];
    for (const key of Object.keys(record).sort()) {
      const item = write(record[key], `${path}.${key}`, ancestors);
      if (item !== undefined) parts.push(`${JSON.stringify(key)}:${item}`);
    }
    return `{${parts.join(",")}}`;
  } finally {
    // Only ancestors count as cycles: the same object twice in siblings is fine.
    ancestors.delete(object);
  }
}
