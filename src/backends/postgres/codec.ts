/**
 * Values between PostgreSQL's text format and JSON, the same way for both drivers (a server through
 * pg, the embedded PGlite), so a query answers alike wherever it runs.
 */
import pg from "pg";

/** Names of common types by OID, so that fields say "int4" rather than only 23. */
export const TYPE_NAMES: Readonly<Record<number, string>> = {
  16: "bool",
  17: "bytea",
  18: "char",
  19: "name",
  20: "int8",
  21: "int2",
  23: "int4",
  25: "text",
  26: "oid",
  114: "json",
  142: "xml",
  199: "json[]",
  650: "cidr",
  700: "float4",
  701: "float8",
  790: "money",
  869: "inet",
  1000: "bool[]",
  1005: "int2[]",
  1007: "int4[]",
  1009: "text[]",
  1015: "varchar[]",
  1016: "int8[]",
  1021: "float4[]",
  1022: "float8[]",
  1042: "bpchar",
  1043: "varchar",
  1082: "date",
  1083: "time",
  1114: "timestamp",
  1115: "timestamp[]",
  1182: "date[]",
  1184: "timestamptz",
  1185: "timestamptz[]",
  1186: "interval",
  1231: "numeric[]",
  1266: "timetz",
  1700: "numeric",
  2950: "uuid",
  2951: "uuid[]",
  3802: "jsonb",
  3807: "jsonb[]",
};

/**
 * Types whose JSON form is exact: numbers that fit a double, booleans, JSON, and arrays of those or
 * of strings. Everything else stays in PostgreSQL's own text form, which loses nothing: int8 and
 * numeric keep every digit, timestamps keep microseconds and their zone, bytea reads as \x… hex.
 */
const DECODED_OIDS = [
  16, 21, 23, 26, 700, 701, 114, 3802, 1000, 1005, 1007, 1028, 1016, 1021, 1022, 1014, 1015, 1009, 199, 3807,
];
const DECODERS = new Map<number, (text: string) => unknown>(
  DECODED_OIDS.map((oid) => [oid, pg.types.getTypeParser(oid, "text") as (text: string) => unknown]),
);

/** One value, from PostgreSQL's text format to JSON. */
export function decodeValue(text: string | null, oid: number): unknown {
  if (text === null) return null;
  const decode = DECODERS.get(oid);
  if (!decode) return text;
  try {
    const value = decode(text);
    // NaN and Infinity have no JSON form; their text does.
    return typeof value === "number" && !Number.isFinite(value) ? text : value;
  } catch {
    return text;
  }
}

/**
 * A parameter in PostgreSQL's text format, so that both drivers send the same thing: arrays become
 * array literals (for `= ANY($1)`), objects become JSON, the rest their plain text.
 */
export function encodeParam(value: unknown): string | null {
  if (value === null || value === undefined) return null;
  if (typeof value === "string") return value;
  if (Array.isArray(value)) return arrayLiteral(value);
  if (typeof value === "object") return JSON.stringify(value);
  return String(value);
}

export function arrayLiteral(values: readonly unknown[]): string {
  const items = values.map((item) => {
    if (item === null || item === undefined) return "NULL";
    if (Array.isArray(item)) return arrayLiteral(item);
    const text = typeof item === "object" ? JSON.stringify(item) : String(item);
    return `"${text.replace(/[\\"]/g, "\\$&")}"`;
  });
  return `{${items.join(",")}}`;
}
