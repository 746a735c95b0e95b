/**
 * HMAC-SHA256 request signing with replay protection.
 *
 * A signed tool call carries, in `_meta["switchboard/signature"]` (or in the X-Switchboard-* headers
 * of an HTTP request, see `signatureFromHeaders`):
 *
 *   { keyId, timestamp, nonce, signature }
 *
 * - `timestamp`: milliseconds since the Unix epoch, an integer (what `Date.now()` gives);
 * - `nonce`: 16–128 characters of base64url alphabet, fresh for every request;
 * - `signature`: base64url (no padding) of HMAC-SHA256(secret as UTF-8, payload), where payload is
 *   the canonical JSON (RFC 8785, see stores/canonical-json.ts) of
 *   `{ tool: <exposed name>, arguments: <arguments, {} when absent>, principal, timestamp, nonce }`,
 *   where `principal` is the id the gateway authenticates the sender as (e.g. "ci-bot" for an API
 *   key, "jwt:alice" for a token): a signed call captured on the way cannot be sent by anyone else.
 *
 * Canonical JSON makes the signature independent of how a client orders keys. The verifier checks
 * the timestamp first (cheap, and no store access for stale requests), then the HMAC, and only then
 * records the nonce, so that forged requests cannot use up nonces of genuine ones. A nonce is
 * recorded with the store's atomic set-if-absent (`lock`, never released) for twice the allowed
 * skew: exactly as long as a replay of it could still pass the timestamp check.
 */
import { createHash, createHmac, randomBytes, timingSafeEqual } from "node:crypto";
import { z } from "zod";
import { GatewayError } from "../core/errors.ts";
import type { Policy, Principal, Store } from "../core/types.ts";
import type { ToolBinding } from "../policies/types.ts";
import { canonicalJson } from "../stores/canonical-json.ts";
import { compileGlobs, compileSubject } from "./access.ts";
import type { SigningConfig } from "./config.ts";

export const SIGNATURE_META_KEY = "switchboard/signature";

/** The header form of a signature, lower-cased as Node presents incoming headers. */
export const SIGNATURE_HEADERS = {
  keyId: "x-switchboard-key-id",
  timestamp: "x-switchboard-timestamp",
  nonce: "x-switchboard-nonce",
  signature: "x-switchboard-signature",
} as const;

/** The `ctx.notes` key the signature policy sets to the key id of a verified signature. */
export const SIGNATURE_NOTE = "signatureKeyId";

const NONCE = /^[A-Za-z0-9_-]{16,128}$/;

export interface ToolCallSignature {
  readonly keyId: string;
  /** Milliseconds since the Unix epoch. */
  readonly timestamp: number;
  readonly nonce: string;
  /** base64url HMAC-SHA256, no padding. */
  readonly signature: string;
}

/** A zod error message that says "missing" for an absent field instead of naming a type. */
const fieldError = (field: string, expected: string) => (issue: { input?: unknown }) =>
  issue.input === undefined ? `${field} is missing` : `${field} must be ${expected}`;

const signatureShape = z.strictObject({
  keyId: z
    .string({ error: fieldError("keyId", "a string") })
    .min(1, { error: "keyId is empty" })
    .max(256),
  timestamp: z
    .number({ error: fieldError("timestamp", "a number: milliseconds since the Unix epoch") })
    .int({ error: "timestamp must be whole milliseconds since the Unix epoch" })
    .nonnegative(),
  nonce: z.string({ error: fieldError("nonce", "a string") }).regex(NONCE, {
    error: "nonce must be 16 to 128 characters of A-Z a-z 0-9 - _",
  }),
  signature: z
    .string({ error: fieldError("signature", "a string") })
    .regex(/^[A-Za-z0-9_-]{1,512}={0,2}$/, { error: "signature must be base64url" }),
});

export type VerifyResult =
  | { readonly ok: true; readonly keyId: string }
  | {
      readonly ok: false;
      readonly reason:
        | "missing"
        | "unknown_key"
        | "stale"
        | "bad_signature"
        | "replayed"
        | "malformed"
        | "store_unavailable";
      /** For the client: what happened to which tool, and what to do. */
      readonly message: string;
    };

export class SignatureRejected extends GatewayError {
  readonly reason: Exclude<VerifyResult, { ok: true }>["reason"];
  constructor(exposedName: string, reason: SignatureRejected["reason"], message: string) {
    super("unauthorized", message, { data: { tool: exposedName, reason } });
    this.name = "SignatureRejected";
    this.reason = reason;
  }
}

export interface SignatureVerifier {
  /**
   * Checks a call's signature; `signature` is the raw `_meta` value (anything a client sent), and
   * `principal` the id of whoever sent it, which the signature must cover.
   */
  verify(
    exposedName: string,
    args: Readonly<Record<string, unknown>> | undefined,
    signature: unknown,
    principal: string,
  ): Promise<VerifyResult>;
  /** Whether `signing.require` makes this principal's calls to this tool need a signature. */
  isRequired(principal: Principal, exposedName: string): boolean;
}

export interface SignInput {
  /** The exposed tool name, as the client calls it. */
  readonly tool: string;
  readonly arguments?: Readonly<Record<string, unknown>> | undefined;
  /** The principal id the gateway knows the sender as (an API key's `id`; `jwt:<sub>` for a token). */
  readonly principal: string;
  readonly keyId: string;
  readonly secret: string;
  /** Milliseconds since the epoch. Default `Date.now()`. */
  readonly now?: number;
  /** Default: 16 random bytes, base64url. */
  readonly nonce?: string;
}

function hmac(secret: string, payload: string): Buffer {
  return createHmac("sha256", Buffer.from(secret, "utf8")).update(payload, "utf8").digest();
}

function freshNonce(): string {
  return randomBytes(16).toString("base64url");
}

/** The exact bytes a tool call signature covers. */
export function toolCallPayload(
  tool: string,
  args: Readonly<Record<string, unknown>> | undefined,
  principal: string,
  timestamp: number,
  nonce: string,
): string {
  return canonicalJson({ tool, arguments: args ?? {}, principal, timestamp, nonce });
}

/** Signs a tool call; merge the result into the request's `_meta`. */
export function signToolCall(input: SignInput): { [SIGNATURE_META_KEY]: ToolCallSignature } {
  const timestamp = input.now ?? Date.now();
  const nonce = input.nonce ?? freshNonce();
  const payload = toolCallPayload(input.tool, input.arguments, input.principal, timestamp, nonce);
  return {
    [SIGNATURE_META_KEY]: {
      keyId: input.keyId,
      timestamp,
      nonce,
      signature: hmac(input.secret, payload).toString("base64url"),
    },
  };
}

/** Signs a tool call, as the X-Switchboard-* HTTP headers. */
export function signatureHeaders(input: SignInput): Record<string, string> {
  const signed = signToolCall(input)[SIGNATURE_META_KEY];
  return {
    [SIGNATURE_HEADERS.keyId]: signed.keyId,
    [SIGNATURE_HEADERS.timestamp]: String(signed.timestamp),
    [SIGNATURE_HEADERS.nonce]: signed.nonce,
    [SIGNATURE_HEADERS.signature]: signed.signature,
  };
}

/**
 * The signature object from X-Switchboard-* headers, for `verify`; undefined when none is present.
 * Partial or repeated headers give an object that `verify` reports as malformed, rather than being
 * taken for "no signature".
 */
export function signatureFromHeaders(
  headers: Readonly<Record<string, string | readonly string[] | undefined>>,
): Record<string, unknown> | undefined {
  const entries = Object.entries(SIGNATURE_HEADERS).map(
    ([field, header]) => [field, headers[header]] as const,
  );
  if (entries.every(([, value]) => value === undefined)) return undefined;
  const object: Record<string, unknown> = {};
  for (const [field, value] of entries) {
    if (value === undefined) continue;
    object[field] =
      field === "timestamp" && typeof value === "string" && /^\d{1,16}$/.test(value) ? Number(value) : value;
  }
  return object;
}

export interface SignOutboundInput {
  readonly method: string;
  readonly url: string;
  /** The exact request body bytes (or string, as UTF-8). Default: empty. */
  readonly body?: string | Uint8Array | undefined;
  readonly keyId: string;
  readonly secret: string;
  readonly now?: number;
  readonly nonce?: string;
}

/**
 * Signs an outbound HTTP request (HTTP backend → a service that wants to know it is the gateway),
 * with the same headers and the same HMAC as inbound calls, over the canonical JSON of
 * `{ method: <upper case>, url, bodySha256: <hex of the body bytes>, timestamp, nonce }`.
 * Hashing the body keeps the signed payload small and lets the receiver check it while streaming.
 */
export function signOutbound(input: SignOutboundInput): Record<string, string> {
  const timestamp = input.now ?? Date.now();
  const nonce = input.nonce ?? freshNonce();
  const body =
    typeof input.body === "string" ? Buffer.from(input.body, "utf8") : (input.body ?? new Uint8Array());
  const payload = canonicalJson({
    method: input.method.toUpperCase(),
    url: input.url,
    bodySha256: createHash("sha256").update(body).digest("hex"),
    timestamp,
    nonce,
  });
  return {
    [SIGNATURE_HEADERS.keyId]: input.keyId,
    [SIGNATURE_HEADERS.timestamp]: String(timestamp),
    [SIGNATURE_HEADERS.nonce]: nonce,
    [SIGNATURE_HEADERS.signature]: hmac(input.secret, payload).toString("base64url"),
  };
}

function seconds(ms: number): string {
  return `${Math.round(ms / 1000)} s`;
}

export function createSignatureVerifier(
  config: SigningConfig,
  store: Store,
  now: () => number = Date.now,
): SignatureVerifier {
  const secrets = new Map(config.keys.map((key) => [key.id, Buffer.from(key.secret, "utf8")]));
  const maxSkewMs = config.maxSkewSec * 1000;
  const subject = compileSubject(config.require.principals, config.require.roles);
  const tools = config.require.tools;
  const toolMatches = tools === undefined ? () => true : compileGlobs(tools);

  return {
    isRequired(principal, exposedName) {
      return subject(principal) && toolMatches(exposedName);
    },

    async verify(exposedName, args, raw, principal) {
      const rejected = (reason: Exclude<VerifyResult, { ok: true }>["reason"], what: string, todo: string) =>
        ({
          ok: false,
          reason,
          message: `Signature rejected for '${exposedName}': ${what}. ${todo}`,
        }) as const;
      if (raw === undefined || raw === null) {
        return {
          ok: false,
          reason: "missing",
          message:
            `Signature required for '${exposedName}': the call carries no _meta["${SIGNATURE_META_KEY}"] ` +
            "(nor X-Switchboard-* headers). Sign the call with a configured key: { keyId, timestamp, nonce, signature }.",
        };
      }
      const parsed = signatureShape.safeParse(raw);
      if (!parsed.success) {
        const problems = parsed.error.issues.map((issue) => {
          if (issue.code === "unrecognized_keys") return `unknown field(s) ${issue.keys.join(", ")}`;
          return issue.path.length > 0 || issue.code !== "invalid_type"
            ? issue.message
            : "the signature must be an object { keyId, timestamp, nonce, signature }";
        });
        return rejected(
          "malformed",
          problems.join("; "),
          "Send { keyId, timestamp (ms since epoch), nonce, signature (base64url HMAC-SHA256) }.",
        );
      }
      const { keyId, timestamp, nonce, signature } = parsed.data;
      const secret = secrets.get(keyId);
      if (!secret) {
        return rejected(
          "unknown_key",
          `key id '${keyId}' is not configured`,
          "Sign with one of the configured signing keys.",
        );
      }
      const skew = now() - timestamp;
      if (skew > maxSkewMs) {
        return rejected(
          "stale",
          `the timestamp is ${seconds(skew)} old, more than the allowed ${config.maxSkewSec} s`,
          "Sign each request when sending it, and check the client's clock.",
        );
      }
      if (-skew > maxSkewMs) {
        return rejected(
          "stale",
          `the timestamp is ${seconds(-skew)} in the future, more than the allowed ${config.maxSkewSec} s`,
          "Check the client's clock (timestamps are milliseconds since the epoch).",
        );
      }
      let payload: string;
      try {
        payload = toolCallPayload(exposedName, args, principal, timestamp, nonce);
      } catch (error) {
        return rejected(
          "malformed",
          `the arguments have no canonical JSON form (${(error as Error).message})`,
          "Send plain JSON arguments.",
        );
      }
      const expected = createHmac("sha256", secret).update(payload, "utf8").digest();
      const presented = Buffer.from(signature, "base64url");
      // Checking the length first keeps timingSafeEqual from throwing; the length of an HMAC is public.
      if (presented.length !== expected.length || !timingSafeEqual(presented, expected)) {
        return rejected(
          "bad_signature",
          "the signature does not match the tool name, arguments, caller, timestamp and nonce",
          "Sign the canonical JSON of { tool, arguments, principal, timestamp, nonce } with the key's secret " +
            "(principal: the id you are authenticated as), and send exactly the arguments signed.",
        );
      }
      // A shared store that is down would have the nonce remembered by this replica alone (the store
      // fails open to local memory), and a replay to another replica would pass: refuse instead, unless
      // the config accepts that risk. Checked after the claim too, for an outage that began during it.
      const shared = store.shared === true && config.onStoreError === "fail-closed";
      const storeDown = () => shared && store.health().status !== "healthy";
      const unavailable = () =>
        rejected(
          "store_unavailable",
          "the shared store that remembers nonces is unavailable, so a replay could not be ruled out",
          'Retry when it is back; or set signing.onStoreError to "fail-open" to accept per-replica replay checks during outages.',
        );
      if (storeDown()) return unavailable();
      const fresh = await store.lock(`sig-nonce:${keyId}:${nonce}`, 2 * maxSkewMs);
      if (storeDown()) return unavailable();
      if (fresh === undefined) {
        return rejected("replayed", "nonce already used (replay)", "Sign each request with a fresh nonce.");
      }
      return { ok: true, keyId };
    },
  };
}

/**
 * The signature check as a policy in a tool's chain: a signature that is present is always verified;
 * a missing one is refused only where `signing.require` asks for one.
 */
export function signaturePolicy(verifier: SignatureVerifier, binding: ToolBinding): Policy {
  return (next) => async (call, ctx) => {
    const signature = ctx.meta[SIGNATURE_META_KEY];
    if (
      (signature === undefined || signature === null) &&
      !verifier.isRequired(ctx.principal, binding.exposedName)
    ) {
      return next(call, ctx);
    }
    const result = await verifier.verify(binding.exposedName, call.args, signature, ctx.principal.id);
    if (!result.ok) throw new SignatureRejected(binding.exposedName, result.reason, result.message);
    ctx.notes.set(SIGNATURE_NOTE, result.keyId);
    return next(call, ctx);
  };
}
