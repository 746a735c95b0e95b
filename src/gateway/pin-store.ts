/**
 * Where tool definition pins live: in the store when it is shared (Redis: every replica reads and
 * writes the same pins, and hears of approvals on a store channel), else in a JSON file beside the
 * config (see `pinning.file`). Both are read and changed by the running gateways and by
 * `switchboard pins`, so every change is a read-modify-write under a lock (a store lock, or a lock file).
 *
 * A server's pins are one value, keyed by the server's own tool names; definitions are kept apart, by
 * their hash (content-addressed), since only a diff reads them.
 */
import { watch } from "node:fs";
import { mkdir, readFile, rename, writeFile } from "node:fs/promises";
import { basename, dirname, resolve as resolvePath } from "node:path";
import type { PinningConfig } from "../config/settings.ts";
import { GatewayError } from "../core/errors.ts";
import type { Store, Tool } from "../core/types.ts";

/** The parts of a tool definition that are pinned: what a model reads and what a call sends. */
export interface PinnedDefinition {
  readonly name: string;
  readonly title?: string;
  readonly description?: string;
  readonly inputSchema: Tool["inputSchema"];
  readonly outputSchema?: Tool["outputSchema"];
  readonly annotations?: Tool["annotations"];
}

/** One definition of a tool, as pinned or as seen. */
export interface DefinitionRecord {
  /** sha256 of the canonical JSON of the definition. */
  readonly hash: string;
  /** The same without the description, to tell a description the config changed from a server's change. */
  readonly bodyHash: string;
  /** Whether the description is the config's (`tools.descriptions`), not the server's. */
  readonly configured: boolean;
  /** The tool's exposed name then, for people (`switchboard pins approve <name>`). */
  readonly exposedName: string;
  /** When it was pinned, or first seen (ISO 8601). */
  readonly at: string;
}

export interface ToolPin extends DefinitionRecord {
  /** A definition seen since that differs from the pinned one, waiting for approval. */
  readonly changed?: DefinitionRecord;
}

/** A server's pins, by the server's own tool names. */
export type ServerPins = Readonly<Record<string, ToolPin>>;

export interface PinStore {
  /** Where the pins are, for messages ("the store", a file path). */
  readonly where: string;
  /** The pins of a server ({} when it has none). */
  read(server: string): Promise<ServerPins>;
  /**
   * Reads a server's pins, applies `change` and writes the result, under a lock shared with every
   * other writer. `change` returns undefined to leave the pins as they are. Resolves with the pins now.
   */
  update(server: string, change: (pins: ServerPins) => ServerPins | undefined): Promise<ServerPins>;
  /** Keeps definitions by their hash. */
  keepDefinitions(definitions: ReadonlyMap<string, PinnedDefinition>): Promise<void>;
  definition(hash: string): Promise<PinnedDefinition | undefined>;
  /** Tells every gateway that uses these pins that a server's pins changed (an approval). */
  announce(server: string): Promise<void>;
  /** Calls `changed` when another process changed pins: a server's, or (undefined) any. Resolves with the stop. */
  watch(changed: (server: string | undefined) => void): Promise<() => Promise<void>>;
}

/** The default pins file, beside the config, when the store is not shared. */
export const DEFAULT_PINS_FILE = "switchboard-pins.json";

/** The pins store a config asks for: its file, else the store when shared, else the default file. */
export function openPinStore(pinning: PinningConfig, store: Store | undefined, baseDir: string): PinStore {
  if (pinning.file === undefined && store?.shared === true) return new StorePins(store);
  return new FilePins(resolvePath(baseDir, pinning.file ?? DEFAULT_PINS_FILE));
}

// ─── in the store ───────────────────────────────────────────────────────────────────────────────

const CHANGED_CHANNEL = "pins:changed";
const LOCK_TTL_MS = 5_000;
/** Rounds of waiting for another writer's lock before giving up. */
const LOCK_ROUNDS = 10;

export class StorePins implements PinStore {
  readonly where = "the store";
  readonly #store: Store;

  constructor(store: Store) {
    this.#store = store;
  }

  async read(server: string): Promise<ServerPins> {
    return parsePins(await this.#store.get(serverKey(server)), `the store's pins of "${server}"`);
  }

  async update(server: string, change: (pins: ServerPins) => ServerPins | undefined): Promise<ServerPins> {
    const name = `pins:${server}`;
    for (let round = 0; round < LOCK_ROUNDS; round++) {
      const held = await this.#store.lock(name, LOCK_TTL_MS);
      if (!held) {
        await this.#store.waitForUnlock(name, LOCK_TTL_MS);
        continue;
      }
      try {
        const pins = await this.read(server);
        const next = change(pins);
        if (next === undefined) return pins;
        await this.#store.set(serverKey(server), JSON.stringify(next));
        return next;
      } finally {
        await held.release();
      }
    }
    throw new GatewayError(
      "store_unavailable",
      `Could not lock the pins of "${server}" in the store: another writer held the lock ${LOCK_ROUNDS} times ` +
        "in a row. Try again.",
      { data: { server } },
    );
  }

  async keepDefinitions(definitions: ReadonlyMap<string, PinnedDefinition>): Promise<void> {
    for (const [hash, definition] of definitions) {
      await this.#store.set(definitionKey(hash), JSON.stringify(definition));
    }
  }

  async definition(hash: string): Promise<PinnedDefinition | undefined> {
    const text = await this.#store.get(definitionKey(hash));
    return text === undefined ? undefined : (JSON.parse(text) as PinnedDefinition);
  }

  async announce(server: string): Promise<void> {
    await this.#store.publish(CHANGED_CHANNEL, server);
  }

  async watch(changed: (server: string | undefined) => void): Promise<() => Promise<void>> {
    return this.#store.subscribe(CHANGED_CHANNEL, (message) => changed(message));
  }
}

function serverKey(server: string): string {
  return `pins:server:${server}`;
}

function definitionKey(hash: string): string {
  return `pins:definition:${hash}`;
}

// ─── in a file ──────────────────────────────────────────────────────────────────────────────────

interface PinsFile {
  readonly version: 1;
  readonly servers: Record<string, ServerPins>;
  readonly definitions: Record<string, PinnedDefinition>;
}

export class FilePins implements PinStore {
  readonly where: string;
  readonly #path: string;
  /** What this process wrote last: a watch event for its own write is no change from elsewhere. */
  #written: string | undefined;

  constructor(path: string) {
    this.#path = path;
    this.where = path;
  }

  async read(server: string): Promise<ServerPins> {
    return (await this.#load()).servers[server] ?? {};
  }

  async update(server: string, change: (pins: ServerPins) => ServerPins | undefined): Promise<ServerPins> {
    return this.#locked(async () => {
      const file = await this.#load();
      const pins = file.servers[server] ?? {};
      const next = change(pins);
      if (next === undefined) return pins;
      await this.#save({ ...file, servers: { ...file.servers, [server]: next } });
      return next;
    });
  }

  async keepDefinitions(definitions: ReadonlyMap<string, PinnedDefinition>): Promise<void> {
    await this.#locked(async () => {
      const file = await this.#load();
      const missing = [...definitions].filter(([hash]) => !Object.hasOwn(file.definitions, hash));
      if (missing.length === 0) return;
      await this.#save({ ...file, definitions: { ...file.definitions, ...Object.fromEntries(missing) } });
    });
  }

  async definition(hash: string): Promise<PinnedDefinition | undefined> {
    return (await this.#load()).definitions[hash];
  }

  // Gateways that share a pins file notice its changes by watching it: nothing to send.
  async announce(): Promise<void> {}

  async watch(changed: (server: string | undefined) => void): Promise<() => Promise<void>> {
    const dir = dirname(this.#path);
    await mkdir(dir, { recursive: true });
    const name = basename(this.#path);
    // The folder is watched, not the file: a write replaces the file (rename), which ends a file watch.
    const watcher = watch(dir, (_event, file) => {
      if (file !== name) return;
      void readFile(this.#path, "utf8").then(
        (text) => {
          if (text !== this.#written) changed(undefined);
        },
        () => undefined,
      );
    });
    watcher.unref();
    return async () => watcher.close();
  }

  async #load(): Promise<PinsFile> {
    let text: string;
    try {
      text = await readFile(this.#path, "utf8");
    } catch (error) {
      if ((error as NodeJS.ErrnoException).code === "ENOENT")
        return { version: 1, servers: {}, definitions: {} };
      throw error;
    }
    try {
      const parsed = JSON.parse(text) as Partial<PinsFile>;
      return { version: 1, servers: parsed.servers ?? {}, definitions: parsed.definitions ?? {} };
    } catch (error) {
      throw new GatewayError(
        "config_file",
        `The pins file ${this.#path} is not valid JSON (${(error as Error).message}). Fix it, or move it away ` +
          "to pin every tool again.",
        { cause: error },
      );
    }
  }

  /** Writes the file whole, by a rename, so that a reader never sees half of it. */
  async #save(file: PinsFile): Promise<void> {
    const text = `${JSON.stringify(file, null, 2)}\n`;
    const temporary = `${this.#path}.${process.pid}.tmp`;
    await writeFile(temporary, text, { mode: 0o600 });
    this.#written = text;
    await rename(temporary, this.#path);
  }

  async #locked<T>(work: () => Promise<T>): Promise<T> {
    await mkdir(dirname(this.#path), { recursive: true });
    let release: () => Promise<void>;
    try {
      // Loaded when pins are first written: it patches fs methods and costs start-up time that a
      // gateway without pinning (or one that only reads its pins) has no use for.
      const { lock } = await import("proper-lockfile");
      release = await lock(this.#path, {
        realpath: false,
        stale: 10_000,
        retries: { retries: 20, minTimeout: 20, maxTimeout: 500 },
      });
    } catch (error) {
      throw new GatewayError(
        "store_unavailable",
        `Could not lock the pins file ${this.#path}: ${(error as Error).message}. Another process may be ` +
          "writing it; try again.",
        { cause: error },
      );
    }
    try {
      return await work();
    } finally {
      await release();
    }
  }
}

function parsePins(text: string | undefined, what: string): ServerPins {
  if (text === undefined) return {};
  try {
    return JSON.parse(text) as ServerPins;
  } catch (error) {
    throw new GatewayError("store_unavailable", `${what} are not valid JSON: ${(error as Error).message}.`, {
      cause: error,
    });
  }
}
