/**
 * The kinds of value the config is made of: URLs, durations, counts, header names, log levels,
 * server names, globs, secrets and YAML-safe strings. Every config block (config/schema.ts and the
 * `config.ts` of each module) builds on these instead of restating a pattern or a refinement, so a
 * kind of value is checked, and explained when it is wrong, the same way wherever it appears.
 *
 * Messages name the kind expected and an example, never the value of a URL or a secret: URLs may hold
 * passwords, and these messages reach logs and `switchboard check`.
 */
import { z } from "zod";
import { LOG_LEVELS } from "./log-levels.ts";

export { DEFAULT_LOG_LEVEL, LOG_LEVELS, type LogLevel } from "./log-levels.ts";

// ─── numbers ────────────────────────────────────────────────────────────────────────────────────

/** A whole number above 0: a size, a count of things that must exist. */
export const positiveInt = () => z.number().int().positive();

/** A whole number, 0 or more: a count that may be none. */
export const nonNegativeInt = () => z.number().int().min(0);

/**
 * Decimal numbers as people write them in settings; not "", " 1", "0x10", "1_000" or "Infinity",
 * which Number() would accept or misread. How a string from `${VAR}` is judged to spell a number.
 */
export const DECIMAL_NUMBER = /^-?(?:0|[1-9][0-9]*)(?:\.[0-9]+)?(?:[eE][+-]?[0-9]+)?$/;

/** A duration in ms that must pass before something happens (a timeout, a TTL, a window): above 0. */
export const durationMs = () => positiveInt();

/** A delay in ms that may be none (a backoff step, a longest wait): 0 or more. */
export const delayMs = () => nonNegativeInt();

/** A TCP port; 0 takes any free port. */
export const port = () => z.number().int().min(0).max(65_535);

// ─── strings ────────────────────────────────────────────────────────────────────────────────────

/** A string that cannot be empty (an id, a name, a path). */
export const nonEmpty = (error?: string) => z.string().min(1, error === undefined ? undefined : { error });

/**
 * A string that YAML users often write unquoted (`PORT: 8080`, `DEBUG: true`). Converting would hide
 * traps such as `VERSION: 1.10` becoming "1.1", so it is an error that says to quote the value.
 */
export const text = () =>
  z.string({
    error: (issue) => {
      // A YAML key with nothing after the colon is null, not "".
      if (issue.input === null) return 'expected a string, got an empty value: write "" for an empty string';
      if (issue.input === undefined || typeof issue.input === "object") return undefined;
      const shown = String(issue.input);
      return `expected a string, got the ${typeof issue.input} ${shown}: quote it (in YAML, "${shown}")`;
    },
  });

/**
 * An HMAC key: at least 32 characters, used as its UTF-8 bytes, so that it holds at least the 256
 * bits of the SHA-256 it keys.
 */
export const hmacSecret = () => z.string().min(32, { error: "must be at least 32 characters (256 bits)" });

// ─── URLs ───────────────────────────────────────────────────────────────────────────────────────

function urlWhere(accepts: (url: URL) => boolean, error: string) {
  return z.string().refine((value) => URL.canParse(value) && accepts(new URL(value)), { error });
}

/** An http:// or https:// URL. */
export const httpUrl = (example = "https://example.com/mcp") =>
  urlWhere(
    (url) => url.protocol === "http:" || url.protocol === "https:",
    `must be an http:// or https:// URL, e.g. ${example}`,
  );

const LOOPBACK_HOSTS: ReadonlySet<string> = new Set(["localhost", "127.0.0.1", "[::1]"]);

/**
 * An https URL; http only for a loopback host. For what the gateway trusts because of where it came
 * from (signing keys, OAuth metadata): fetched over plain http, it could be swapped by anyone on the
 * path.
 */
export const secureUrl = (example = "https://idp.example.com/jwks") =>
  urlWhere(
    (url) => url.protocol === "https:" || (url.protocol === "http:" && LOOPBACK_HOSTS.has(url.hostname)),
    `must be an https:// URL (http:// is accepted only for localhost), e.g. ${example}`,
  );

/** redis://[user:password@]host[:port][/db], or rediss:// for TLS. */
export const redisUrl = (example = "redis://127.0.0.1:6379") =>
  urlWhere(
    (url) => url.protocol === "redis:" || url.protocol === "rediss:",
    `must be a redis:// or rediss:// URL, e.g. ${example}`,
  );

/** postgres://user:password@host:port/database, or postgresql://. */
export const postgresUrl = (example = "postgres://app@127.0.0.1:5432/app") =>
  urlWhere(
    (url) => url.protocol === "postgres:" || url.protocol === "postgresql:",
    `must be a postgres:// or postgresql:// URL, e.g. ${example}`,
  );

// ─── HTTP ───────────────────────────────────────────────────────────────────────────────────────

/** RFC 9110 token: any other header name makes fetch throw when it connects rather than at start-up. */
export const HEADER_NAME = /^[!#$%&'*+.^_`|~0-9A-Za-z-]+$/;

export const headerName = () =>
  z.string().regex(HEADER_NAME, {
    error: (issue) => `${JSON.stringify(issue.input)} is not a valid HTTP header name`,
  });

/** A header value; a line break in it would end the header and start another (header injection). */
export const headerValue = () =>
  text().refine((value) => !/[\r\n\0]/.test(value), { error: "a header value cannot hold line breaks" });

/** Headers sent with requests, e.g. `{ Authorization: "Bearer ${TOKEN}" }`. */
export const headerMap = () => z.record(headerName(), headerValue());

/** The path of an endpoint the gateway serves, e.g. "/mcp". */
export const httpPath = () =>
  z.string().regex(/^\/[^\s?#]*$/, { error: 'must start with "/" and hold no spaces, "?" or "#"' });

// ─── names ──────────────────────────────────────────────────────────────────────────────────────

/** Server names become tool-name prefixes and metric labels, so they keep to the tool-name alphabet. */
export const SERVER_NAME = /^[a-zA-Z0-9_-]+$/;

/** A key of `mcpServers` or `backends`. */
export const serverName = (kind: "server" | "backend") =>
  z.string().regex(SERVER_NAME, {
    error: (issue) =>
      `${kind} name ${JSON.stringify(issue.input)} may only contain letters, digits, "_" and "-" (it becomes the tools' prefix)`,
  });

/** Put before a server's tool names; "" keeps the server's own names. */
export const toolPrefix = () =>
  z.string().regex(/^[a-zA-Z0-9_-]*$/, {
    error: 'may only contain letters, digits, "_" and "-" ("" for no prefix)',
  });

/** Between a server's prefix and a tool name. */
export const separator = () =>
  z.string().regex(/^[a-zA-Z0-9_-]{1,8}$/, { error: 'must be 1 to 8 letters, digits, "_" or "-"' });

/** What strict clients accept as a tool name. */
export const TOOL_NAME = /^[a-zA-Z0-9_-]{1,64}$/;

export const toolName = () =>
  z.string().regex(TOOL_NAME, { error: 'may only contain letters, digits, "_" and "-" (1-64)' });

// ─── globs ──────────────────────────────────────────────────────────────────────────────────────

/**
 * How every glob over names (tools, principals, servers) is matched: `*` also matches `/`, so that
 * principal globs such as `https://issuer/*` work, and `.` is an ordinary character.
 */
export const GLOB_OPTIONS = { bash: true, dot: true, windows: false } as const;

/** A glob over names, e.g. "db__*"; an exact name is a glob too. */
export const glob = () => nonEmpty();

/**
 * A glob that is not a negation (`!…`), for lists whose meaning a negation would turn inside out;
 * `instead` says how to write what the user meant.
 */
export const plainGlob = (instead: string) =>
  glob().refine((value) => !value.startsWith("!"), {
    error: `negated globs (!…) are not supported here: ${instead}`,
  });

// ─── log levels ─────────────────────────────────────────────────────────────────────────────────

export const logLevel = () => z.enum(LOG_LEVELS);

// ─── defaults ───────────────────────────────────────────────────────────────────────────────────

/**
 * What `schema` makes of a value left out: how code reads a default from the schema that defines it
 * instead of restating it (e.g. `defaultOf(httpServerSchema.shape.host)`).
 */
export function defaultOf<T extends z.ZodType>(schema: T): z.output<T> {
  return schema.parse(undefined);
}
