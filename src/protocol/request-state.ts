/**
 * The `requestState` a 2026-07-28 client gets with `input_required`: a token that names the gateway
 * replica holding the suspended request and that replica's key for it, until when it is good, and an
 * HMAC over all of that plus the principal and the method it was issued for. Any replica that shares
 * the key can tell a genuine token from a forged or altered one, and which replica to forward the
 * retry to; only the owner can continue the call.
 *
 * The key is shared through the store (see `sharedRequestStateKey`) rather than taken from the config:
 * replicas that share a store already trust each other with everything in it, and a key nobody has to
 * generate, distribute or rotate by hand cannot be forgotten or mismatched between replicas. On the
 * memory store (one replica) it is a random key of this process.
 */
import { createHmac, randomBytes, randomUUID } from "node:crypto";
import { sameText } from "../core/same-text.ts";
import type { Store } from "../core/types.ts";

const KEY_ENTRY = "request-state:key";
const KEY_LOCK = "request-state:key:init";
const KEY_BYTES = 32;

export interface RequestStateClaims {
  /** The replica that holds the suspended request. */
  readonly owner: string;
  /** The owner's key for it. */
  readonly nonce: string;
  /** Epoch ms after which it is refused. */
  readonly expiresAt: number;
}

export class RequestStateTokens {
  /** This replica's id, written into the tokens it issues. */
  readonly owner: string;
  readonly #key: Promise<Buffer>;

  constructor(owner: string, key: Buffer | Promise<Buffer>) {
    this.owner = owner;
    this.#key = Promise.resolve(key);
  }

  /** A token for a request suspended here, good until `expiresAt`, for this principal and method. */
  async issue(
    principal: string,
    method: string,
    expiresAt: number,
  ): Promise<{ token: string; nonce: string }> {
    const nonce = randomUUID();
    const body = Buffer.from(JSON.stringify({ o: this.owner, n: nonce, e: expiresAt })).toString("base64url");
    return { token: `${body}.${await this.#mac(body, principal, method)}`, nonce };
  }

  /**
   * What a token says, if it is genuine, unexpired and was issued to this principal for this method;
   * undefined otherwise (one answer for every kind of refusal, so a forged token learns nothing).
   */
  async read(
    token: unknown,
    principal: string,
    method: string,
    now = Date.now(),
  ): Promise<RequestStateClaims | undefined> {
    if (typeof token !== "string" || token.length > 1024) return undefined;
    const dot = token.indexOf(".");
    if (dot <= 0) return undefined;
    const body = token.slice(0, dot);
    // As text, so that a token has one spelling (see sameText).
    if (!sameText(token.slice(dot + 1), await this.#mac(body, principal, method))) return undefined;
    let claims: { o?: unknown; n?: unknown; e?: unknown };
    try {
      claims = JSON.parse(Buffer.from(body, "base64url").toString("utf8")) as typeof claims;
    } catch {
      return undefined;
    }
    const { o, n, e } = claims;
    if (typeof o !== "string" || typeof n !== "string" || typeof e !== "number" || e < now) return undefined;
    return { owner: o, nonce: n, expiresAt: e };
  }

  async #mac(body: string, principal: string, method: string): Promise<string> {
    return createHmac("sha256", await this.#key)
      .update(`${body}\n${principal}\n${method}`)
      .digest("base64url");
  }
}

/**
 * The key every replica sharing `store` signs request states with: read from the store, or made by
 * the first replica that finds none (under a lock, so that two replicas starting together agree). A
 * store that is not shared gets a key of this process alone.
 */
export async function sharedRequestStateKey(store: Store): Promise<Buffer> {
  if (!store.shared) return randomBytes(KEY_BYTES);
  const read = async () => {
    const text = await store.get(KEY_ENTRY);
    return text ? Buffer.from(text, "base64") : undefined;
  };
  const existing = await read();
  if (existing) return existing;
  const lock = await store.lock(KEY_LOCK, 5_000);
  if (!lock) {
    await store.waitForUnlock(KEY_LOCK, 5_000);
    return (await read()) ?? randomBytes(KEY_BYTES);
  }
  try {
    const again = await read();
    if (again) return again;
    const key = randomBytes(KEY_BYTES);
    await store.set(KEY_ENTRY, key.toString("base64"));
    return key;
  } finally {
    await lock.release();
  }
}

/** The `requestState` of a request body, if it carries one (read before the SDK parses the request). */
export function requestStateOf(body: unknown): unknown {
  if (typeof body !== "object" || body === null || Array.isArray(body)) return undefined;
  const params = (body as { params?: unknown }).params;
  if (typeof params !== "object" || params === null) return undefined;
  return (params as { requestState?: unknown }).requestState;
}
