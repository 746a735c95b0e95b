/**
 * Redaction by value: every secret the gateway knows (`${secret:…}` values) is replaced wherever it
 * turns up, in log lines, audit records and everything sent to a client that is not a tool's own
 * successful result. By value, because a secret echoed back in a backend's error message matches no
 * rule that could have been written beforehand.
 */

export const REDACTED = "[redacted]";
/** Shorter values are not redacted: "abc" would turn up inside ordinary words and mangle logs. */
export const MIN_REDACTED_LENGTH = 4;
/** Deeper than this, a subtree is replaced whole: walking it could exhaust the stack. */
const MAX_DEPTH = 64;
const TOO_DEEP = "[redacted: nested too deep]";

/**
 * Replaces every occurrence of each value (of 4 characters or more) with "[redacted]". Longer values
 * go first, so a secret that contains another is not left half visible.
 */
export function redactSecrets(text: string, values: readonly string[]): string {
  if (values.length === 0 || text.length < MIN_REDACTED_LENGTH) return text;
  const forms = new Set<string>();
  for (const value of values) {
    if (value.length < MIN_REDACTED_LENGTH) continue;
    forms.add(value);
    // As it appears inside JSON (log lines, --json output, /healthz): quotes and backslashes escaped.
    forms.add(JSON.stringify(value).slice(1, -1));
  }
  let out = text;
  // Longest first, so that a secret containing another is replaced whole.
  for (const form of [...forms].sort((a, b) => b.length - a.length)) {
    if (out.includes(form)) out = out.split(form).join(REDACTED);
  }
  return out;
}

/**
 * A deep copy of JSON-like data with secret values replaced in every string (keys included). The
 * input is returned as it is when there is nothing to redact, so the common case costs no copy.
 */
export function redactDeep<T>(value: T, secrets: readonly string[]): T {
  if (secrets.length === 0) return value;
  return redactedCopy(value, secrets);
}

/** Always a deep copy (depth-limited), with secret values replaced: for callers that edit the copy. */
export function redactedCopy<T>(value: T, secrets: readonly string[]): T {
  return copyRedacting(value, secrets, 0) as T;
}

function copyRedacting(value: unknown, secrets: readonly string[], depth: number): unknown {
  if (typeof value === "string") return secrets.length > 0 ? redactSecrets(value, secrets) : value;
  if (typeof value !== "object" || value === null) return value;
  if (depth >= MAX_DEPTH) return TOO_DEEP;
  if (Array.isArray(value)) return value.map((item) => copyRedacting(item, secrets, depth + 1));
  // fromEntries defines own properties, so a "__proto__" key stays data.
  return Object.fromEntries(
    Object.entries(value).map(([key, item]) => [
      redactSecrets(key, secrets),
      copyRedacting(item, secrets, depth + 1),
    ]),
  );
}
