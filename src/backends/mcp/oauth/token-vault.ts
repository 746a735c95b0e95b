/**
 * Where the gateway keeps what an OAuth login of a remote server leaves behind (tokens, the client
 * the gateway registered, what discovery found): encrypted, in a file by default, or in the shared
 * store when replicas share one (so that every replica uses one token set, refreshed once).
 *
 * Each login is a JWE (compact, `dir` + A256GCM, with jose) under a key derived (HKDF-SHA256) from the
 * configured `oauth.encryptionKey`; its protected header names the server it belongs to and is checked
 * when read, so an entry copied under another server's name is refused rather than used. Nothing in
 * the file or the store is readable, or usable, without the key.
 *
 * `withLock` is how refreshes happen once: across replicas with a shared store (the store's lock,
 * whose release wakes the waiters), within the process with a file.
 */
import { hkdfSync, randomUUID } from "node:crypto";
import { mkdir, readFile, rename, writeFile } from "node:fs/promises";
import { dirname, resolve as resolvePath } from "node:path";
import type {
  OAuthDiscoveryState,
  OAuthTokens,
  StoredOAuthClientInformation,
} from "@modelcontextprotocol/client";
import { describeError, GatewayError } from "../../../core/errors.ts";
import type { Store } from "../../../core/types.ts";
import { ResilientStore } from "../../../stores/resilient.ts";

/** What one server's login keeps. */
export interface StoredLogin {
  /** The server URL the login was made for: a login for another URL is not used. */
  readonly url: string;
  readonly tokens?: OAuthTokens & { readonly issuer?: string };
  /** When `tokens` were obtained, in ms since the epoch (their `expires_in` counts from then). */
  readonly obtainedAt?: number;
  /** The client the gateway registered (dynamic registration, or its metadata document URL). */
  readonly client?: StoredOAuthClientInformation;
  readonly discovery?: OAuthDiscoveryState;
  /** The redirect URI the login used: refreshing must present the same client. */
  readonly redirectUri?: string;
}

export interface TokenVault {
  /** Says where logins are kept, for messages: "the file …" or "the shared store". */
  readonly where: string;
  read(server: string): Promise<StoredLogin | undefined>;
  write(server: string, login: StoredLogin): Promise<void>;
  delete(server: string): Promise<void>;
  /**
   * Runs `work` while no other holder (another replica, another call) runs work for `server`: the
   * one way to refresh, so that a token is refreshed once however many want it at the same time.
   */
  withLock<T>(server: string, work: () => Promise<T>): Promise<T>;
}

const ENCRYPTION = { alg: "dir", enc: "A256GCM" } as const;
/** How long a refresh may hold the lock before another may take it (its holder died). */
const LOCK_TTL_MS = 30_000;

/** The 256-bit content key for `secret`: a secret of any length, stretched and bound to this use. */
function contentKey(secret: string): Uint8Array {
  return new Uint8Array(hkdfSync("sha256", secret, "switchboard", "oauth token vault", 32));
}

/** Encrypts and decrypts one server's login. */
class Sealer {
  readonly #key: Uint8Array;

  constructor(secret: string) {
    this.#key = contentKey(secret);
  }

  async seal(server: string, login: StoredLogin): Promise<string> {
    // jose is loaded by the first stored login, not with the gateway: most gateways have none.
    const { CompactEncrypt } = await import("jose");
    return new CompactEncrypt(new TextEncoder().encode(JSON.stringify(login)))
      .setProtectedHeader({ ...ENCRYPTION, "switchboard/server": server })
      .encrypt(this.#key);
  }

  async open(server: string, sealed: string, where: string): Promise<StoredLogin> {
    const { compactDecrypt } = await import("jose");
    let result: Awaited<ReturnType<typeof compactDecrypt>>;
    try {
      result = await compactDecrypt(sealed, this.#key, { keyManagementAlgorithms: ["dir"] });
    } catch (error) {
      throw new GatewayError(
        "backend_unavailable",
        `The stored login of server "${server}" in ${where} cannot be decrypted (${describeError(error)}): ` +
          `oauth.encryptionKey changed, or the entry was altered. Run \`switchboard login ${server}\` again.`,
        { data: { server }, cause: error },
      );
    }
    if (result.protectedHeader["switchboard/server"] !== server) {
      throw new GatewayError(
        "backend_unavailable",
        `The stored login under server "${server}" in ${where} belongs to another server. ` +
          `Run \`switchboard login ${server}\` again.`,
        { data: { server } },
      );
    }
    return JSON.parse(new TextDecoder().decode(result.plaintext)) as StoredLogin;
  }
}

/** Logins in one JSON file, `{ "version": 1, "logins": { "<server>": "<JWE>" } }`, mode 0600. */
export class FileTokenVault implements TokenVault {
  readonly where: string;
  readonly #path: string;
  readonly #sealer: Sealer;
  /** Writes and locked work, one at a time per file: a read-modify-write must not lose another's. */
  #queue: Promise<unknown> = Promise.resolve();
  readonly #locks = new Map<string, Promise<unknown>>();

  constructor(path: string, secret: string) {
    this.#path = path;
    this.#sealer = new Sealer(secret);
    this.where = `the file ${path}`;
  }

  async read(server: string): Promise<StoredLogin | undefined> {
    const sealed = (await this.#load()).logins[server];
    return sealed === undefined ? undefined : this.#sealer.open(server, sealed, this.where);
  }

  async write(server: string, login: StoredLogin): Promise<void> {
    const sealed = await this.#sealer.seal(server, login);
    await this.#update((logins) => {
      logins[server] = sealed;
    });
  }

  async delete(server: string): Promise<void> {
    await this.#update((logins) => {
      delete logins[server];
    });
  }

  async withLock<T>(server: string, work: () => Promise<T>): Promise<T> {
    const before = this.#locks.get(server) ?? Promise.resolve();
    const run = before.then(work, work);
    const settled = run.catch(() => undefined);
    this.#locks.set(server, settled);
    try {
      return await run;
    } finally {
      if (this.#locks.get(server) === settled) this.#locks.delete(server);
    }
  }

  #update(change: (logins: Record<string, string>) => void): Promise<void> {
    const next = this.#queue.then(async () => {
      const file = await this.#load();
      change(file.logins);
      await mkdir(dirname(this.#path), { recursive: true, mode: 0o700 });
      // Written whole to a file of its own, then renamed over the old one: a reader never sees half.
      const temporary = `${this.#path}.${randomUUID()}.tmp`;
      await writeFile(temporary, `${JSON.stringify(file, null, 2)}\n`, { mode: 0o600 });
      await rename(temporary, this.#path);
    });
    this.#queue = next.catch(() => undefined);
    return next;
  }

  async #load(): Promise<{ version: 1; logins: Record<string, string> }> {
    let text: string;
    try {
      text = await readFile(this.#path, "utf8");
    } catch (error) {
      if ((error as NodeJS.ErrnoException).code === "ENOENT") return { version: 1, logins: {} };
      throw new GatewayError(
        "backend_unavailable",
        `Cannot read the OAuth token file ${this.#path} (${describeError(error)}): make it readable by the ` +
          "user running Switchboard, or set oauth.tokenFile to another path.",
        { cause: error },
      );
    }
    try {
      const parsed = JSON.parse(text) as { version?: unknown; logins?: unknown };
      if (parsed.version === 1 && typeof parsed.logins === "object" && parsed.logins !== null) {
        return { version: 1, logins: { ...(parsed.logins as Record<string, string>) } };
      }
    } catch {
      // Reported below, as for any other shape.
    }
    throw new GatewayError(
      "backend_unavailable",
      `The OAuth token file ${this.#path} is not one Switchboard wrote: move it away and log in again.`,
    );
  }
}

/** Logins in the shared store (Redis), one entry per server, for every replica. */
export class StoreTokenVault implements TokenVault {
  readonly where = "the shared store";
  readonly #store: Store & { ready?(): Promise<void> };
  readonly #sealer: Sealer;

  constructor(store: Store & { ready?(): Promise<void> }, secret: string) {
    this.#store = store;
    this.#sealer = new Sealer(secret);
  }

  /**
   * Waits for the store's connection (a gateway starting up asks before Redis answers); when it
   * cannot be had, the operation itself fails with the store's own explanation.
   */
  async #connected(): Promise<void> {
    await this.#store.ready?.().catch(() => undefined);
  }

  async read(server: string): Promise<StoredLogin | undefined> {
    await this.#connected();
    const sealed = await this.#store.get(entryKey(server));
    return sealed === undefined ? undefined : this.#sealer.open(server, sealed, this.where);
  }

  async write(server: string, login: StoredLogin): Promise<void> {
    await this.#connected();
    await this.#store.set(entryKey(server), await this.#sealer.seal(server, login));
  }

  async delete(server: string): Promise<void> {
    await this.#connected();
    await this.#store.delete(entryKey(server));
  }

  async withLock<T>(server: string, work: () => Promise<T>): Promise<T> {
    const name = `oauth:refresh:${server}`;
    const deadline = Date.now() + LOCK_TTL_MS * 2;
    await this.#connected();
    for (;;) {
      const lock = await this.#store.lock(name, LOCK_TTL_MS);
      if (lock) {
        try {
          return await work();
        } finally {
          await lock.release();
        }
      }
      if (Date.now() > deadline) {
        throw new GatewayError(
          "backend_unavailable",
          `Another replica has been refreshing the login of server "${server}" for too long; try again shortly.`,
          { data: { server } },
        );
      }
      await this.#store.waitForUnlock(name, LOCK_TTL_MS);
    }
  }
}

function entryKey(server: string): string {
  return `oauth:login:${server}`;
}

/**
 * The vault a gateway keeps its logins in: the shared store when replicas share one (its Redis
 * itself, never the replica-local memory a resilient store falls back to: a token refreshed there
 * would be lost to the others), else the file `settings.tokenFile` (relative to `baseDir`).
 */
export function openTokenVault(
  settings: { readonly encryptionKey: string; readonly tokenFile: string },
  store: Store,
  baseDir: string,
): TokenVault {
  if (store.shared) {
    const shared = store instanceof ResilientStore ? store.primary : store;
    return new StoreTokenVault(shared, settings.encryptionKey);
  }
  return new FileTokenVault(resolvePath(baseDir, settings.tokenFile), settings.encryptionKey);
}

/** A vault opened at its first use (the gateway's store opens after its backends are made). */
export function lazyVault(open: () => TokenVault): TokenVault {
  let vault: TokenVault | undefined;
  const get = () => {
    vault ??= open();
    return vault;
  };
  return {
    get where() {
      return get().where;
    },
    read: (server) => get().read(server),
    write: (server, login) => get().write(server, login),
    delete: (server) => get().delete(server),
    withLock: (server, work) => get().withLock(server, work),
  };
}
