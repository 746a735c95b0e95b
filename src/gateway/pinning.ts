/**
 * Tool definition pinning (config `pinning`): a server must not change a tool after a team approved
 * it. The first time the gateway sees a tool, the tool's definition (name, title, description, input
 * and output schemas, annotations) is hashed (sha256 of its canonical JSON) and pinned in the pins
 * store (pin-store.ts), which every replica shares; a definition seen later that differs is a change:
 *
 * - mode "warn": logged once per new definition, counted (`tool_definition_changes_total`), and shown
 *   by `switchboard tools`; the tool stays listed;
 * - mode "block": the same, and the tool leaves the catalog (every list, every call, on every replica)
 *   until someone approves the new definition (`switchboard pins approve <tool>`).
 *
 * A description the config sets (`tools.descriptions`) is what clients see, so it is what is pinned;
 * changing it in the config is the operator's own change, and is pinned again without a warning.
 *
 * The one entry point is `filter`, which the live catalog calls for each server's lists at every
 * rebuild. It decides from this process's copy of the pins, at once; what it learns is written to the
 * pins store behind it, and when the store knows better (another replica pinned the tool first, an
 * approval), the copy is updated and the catalog rebuilt.
 */
import { GATEWAY_TOOLS_SERVER } from "../config/schema.ts";
import type { PinMode, PinningConfig } from "../config/settings.ts";
import type { BackendCatalog, Store, Tool } from "../core/types.ts";
import type { Logger } from "../observability/logger.ts";
import type { Metrics } from "../observability/metrics.ts";
import { canonicalJson, hashJson } from "../stores/canonical-json.ts";
import { ResilientStore } from "../stores/index.ts";
import { descriptionOverride, exposedName, isExposed, type ServerNaming } from "./naming.ts";
import {
  type DefinitionRecord,
  openPinStore,
  type PinnedDefinition,
  type PinStore,
  type ServerPins,
  type ToolPin,
} from "./pin-store.ts";

/** What the pins read from the gateway, when they need it (the gateway is still being built). */
export interface PinsHost {
  /** The config running now (a reload may change `pinning` modes). */
  readonly config: { readonly pinning: PinningConfig };
  /** The gateway's store: where pins live when it is shared. */
  readonly store: Store;
  readonly logger: Logger;
  readonly observability: { readonly metrics: Metrics | undefined };
}

/** A tool whose definition is not the pinned one. */
export interface ChangedTool {
  readonly server: string;
  /** The server's own name for the tool. */
  readonly tool: string;
  readonly exposedName: string;
  readonly mode: Exclude<PinMode, "off">;
  /** True in mode "block": the tool is hidden from clients. */
  readonly blocked: boolean;
  /** The definition the server offers now. */
  readonly definition: Tool;
}

/** What a tool's definition comes to, once per tool object (backends keep them until their lists change). */
interface Observed {
  readonly tool: string;
  readonly definition: PinnedDefinition;
  readonly record: DefinitionRecord;
  /** The description override it was computed with. */
  readonly override: string | undefined;
}

/** How long a server's pins that could not be read wait before the next try, at most. */
const MAX_RETRY_MS = 30_000;

export class DefinitionPins {
  readonly #host: PinsHost;
  /** Where a pins file's relative path starts (the config file's folder). */
  readonly #baseDir: string;
  /** The pins changed what clients may see: the catalog is to be rebuilt. */
  readonly #changed: () => void;
  #pinStore: PinStore | undefined;
  #stopWatching: Promise<() => Promise<void>> | undefined;
  /** This process's copy of each server's pins; a server not here has not been read yet. */
  readonly #pins = new Map<string, ServerPins>();
  readonly #loading = new Map<string, Promise<void>>();
  /** Servers whose pins are to be read again once the read in flight ends. */
  readonly #readAgain = new Set<string>();
  readonly #retryMs = new Map<string, number>();
  /** The definitions each server offered at the last rebuild, by own tool name. */
  readonly #observed = new Map<string, ReadonlyMap<string, Observed>>();
  /** The write running for each server; another is queued by `#dirty`. */
  readonly #writing = new Map<string, Promise<void>>();
  readonly #dirty = new Set<string>();
  /** server, tool and hash of each change already reported, so that a rebuild does not repeat it. */
  readonly #reported = new Set<string>();
  readonly #changes = new Map<string, readonly ChangedTool[]>();
  readonly #cache = new WeakMap<Tool, Observed>();
  /** Set by `start`, once the store is connected: pins read before would be this replica's memory's. */
  #started = false;
  #closed = false;

  constructor(host: PinsHost, baseDir: string, changed: () => void) {
    this.#host = host;
    this.#baseDir = baseDir;
    this.#changed = changed;
  }

  /** The mode that applies to a server's tools. The gateway's own tools are never pinned. */
  modeOf(server: string): PinMode {
    if (server === GATEWAY_TOOLS_SERVER) return "off";
    const settings = this.#host.config.pinning;
    return settings.servers[server]?.mode ?? settings.mode;
  }

  /**
   * Reads the pins of these servers, so that the first catalog already applies them (a server whose
   * pins are not read yet shows no tools in mode "block"). Does nothing while pinning is off.
   */
  async start(servers: readonly string[]): Promise<void> {
    this.#started = true;
    const pinned = servers.filter((server) => this.modeOf(server) !== "off");
    if (pinned.length === 0) return;
    await Promise.all(pinned.map((server) => this.#load(server)));
  }

  /**
   * A server's lists as clients may see them: in mode "block" without the tools whose definition is
   * not the pinned one. Tools seen for the first time are pinned.
   */
  filter(naming: ServerNaming, catalog: BackendCatalog, separator: string): BackendCatalog {
    const server = naming.server;
    const mode = this.modeOf(server);
    if (mode === "off") {
      this.#changes.delete(server);
      return catalog;
    }
    const observed = new Map<string, Observed>();
    for (const tool of catalog.tools) {
      if (isExposed(naming, tool.name)) observed.set(tool.name, this.#observe(tool, naming, separator));
    }
    this.#observed.set(server, observed);
    const current = this.#pins.get(server);
    if (current === undefined) {
      if (this.#started && !this.#closed) void this.#load(server);
      return mode === "block" ? { ...catalog, tools: [] } : catalog;
    }
    const next = reconcile(current, observed.values());
    if (next !== undefined) {
      this.#pins.set(server, next);
      // Once closed (shutting down), what is learned is still applied, no longer written.
      if (!this.#closed) this.#persist(server);
    }
    const pins = next ?? current;
    const changes: ChangedTool[] = [];
    for (const tool of catalog.tools) {
      const seen = observed.get(tool.name);
      if (!seen || matchesPin(pins[tool.name], seen.record)) continue;
      const change = {
        server,
        tool: tool.name,
        exposedName: seen.record.exposedName,
        mode,
        definition: tool,
      };
      changes.push({ ...change, blocked: mode === "block" });
      this.#report(change, seen.record.hash, pins[tool.name]);
    }
    this.#changes.set(server, changes);
    if (mode !== "block" || changes.length === 0) return catalog;
    const blocked = new Set(changes.map((c) => c.tool));
    return { ...catalog, tools: catalog.tools.filter((t) => !blocked.has(t.name)) };
  }

  /** The tools whose definition is not the pinned one, as of the last rebuild. */
  changes(): readonly ChangedTool[] {
    return [...this.#changes.values()].flat();
  }

  /** Waits for the pins this process has learned to be written (for one-shot commands and tests). */
  async flushed(): Promise<void> {
    while (this.#writing.size > 0 || this.#loading.size > 0) {
      await Promise.all([...this.#loading.values(), ...this.#writing.values()]);
    }
  }

  async close(): Promise<void> {
    this.#closed = true;
    await this.flushed();
    const stop = await this.#stopWatching?.catch(() => undefined);
    await stop?.();
  }

  /** The pins store, opened (and watched for approvals made elsewhere) when first needed. */
  #store(): PinStore {
    if (!this.#pinStore) {
      const store = this.#host.store;
      this.#pinStore = openPinStore(this.#host.config.pinning, store, this.#baseDir);
      this.#stopWatching = this.#pinStore.watch((server) => this.#reload(server));
      this.#stopWatching.catch((error: unknown) =>
        this.#host.logger.warn(
          { err: error, pins: this.#pinStore?.where },
          "cannot watch the tool pins for approvals; an approval reaches this gateway at its next restart",
        ),
      );
      // After an outage of a shared store, approvals made meanwhile were not heard: read them again.
      if (store instanceof ResilientStore) {
        store.on("state", (health) => {
          if (health.status === "healthy") this.#reload(undefined);
        });
      }
    }
    return this.#pinStore;
  }

  #observe(tool: Tool, naming: ServerNaming, separator: string): Observed {
    const override = descriptionOverride(naming, tool.name);
    const cached = this.#cache.get(tool);
    const exposed = exposedName(naming, tool.name, separator);
    if (cached && cached.override === override && cached.record.exposedName === exposed) return cached;
    const definition = pinnedDefinition(tool, override);
    const { description: _description, ...body } = definition;
    const observed: Observed = {
      tool: tool.name,
      definition,
      override,
      record: {
        hash: hashJson(definition),
        bodyHash: hashJson(body),
        configured: override !== undefined,
        exposedName: exposed,
        at: new Date().toISOString(),
      },
    };
    this.#cache.set(tool, observed);
    return observed;
  }

  #report(change: Omit<ChangedTool, "blocked">, hash: string, pin: ToolPin | undefined): void {
    const key = `${change.server}\u0000${change.tool}\u0000${hash}`;
    if (this.#reported.has(key)) return;
    this.#reported.add(key);
    this.#host.observability.metrics?.toolDefinitionChanged(change.server, change.exposedName, change.mode);
    const name = change.exposedName;
    this.#host.logger.warn(
      { server: change.server, tool: name, mode: change.mode, pinnedAt: pin?.at, hash },
      `tool "${name}" of server "${change.server}" changed its definition since it was pinned` +
        (change.mode === "block" ? "; it is hidden from clients until approved" : "") +
        `. Review it with \`switchboard pins diff ${name}\`, approve it with \`switchboard pins approve ${name}\`.`,
    );
  }

  /** Reads a server's pins into this process's copy, then rebuilds; retried with a backoff on failure. */
  #load(server: string): Promise<void> {
    const loading = this.#loading.get(server);
    if (loading) {
      // A read in flight may have started before the change it is asked for: read once more after it.
      this.#readAgain.add(server);
      return loading;
    }
    const load = (async () => {
      try {
        const pins = await this.#store().read(server);
        this.#pins.set(server, pins);
        this.#retryMs.delete(server);
      } catch (error) {
        const delay = Math.min((this.#retryMs.get(server) ?? 500) * 2, MAX_RETRY_MS);
        this.#retryMs.set(server, delay);
        this.#host.logger.warn(
          { err: error, server, pins: this.#pinStore?.where, retryInMs: delay },
          `cannot read the tool pins of "${server}"` +
            (this.modeOf(server) === "block" ? "; its tools stay hidden until they are read" : ""),
        );
        setTimeout(() => this.#changed(), delay).unref();
      } finally {
        this.#loading.delete(server);
      }
      if (this.#readAgain.delete(server) && !this.#closed) await this.#load(server);
    })();
    this.#loading.set(server, load);
    void load.then(() => {
      if (this.#pins.has(server) && !this.#closed) this.#changed();
    });
    return load;
  }

  /**
   * Pins changed elsewhere (an approval): reads them again. The copy in use stays until the new one
   * is read, so that the server's tools do not leave the catalog meanwhile.
   */
  #reload(server: string | undefined): void {
    if (this.#closed) return;
    const servers = server === undefined ? [...this.#pins.keys()] : [server];
    for (const name of servers) if (this.#pins.has(name)) void this.#load(name);
  }

  /** Writes what this process learned of a server's tools to the pins store, one write at a time. */
  #persist(server: string): void {
    if (this.#writing.has(server)) {
      this.#dirty.add(server);
      return;
    }
    const store = this.#store();
    const write = (async () => {
      do {
        this.#dirty.delete(server);
        const observed = [...(this.#observed.get(server)?.values() ?? [])];
        const definitions = new Map(observed.map((o) => [o.record.hash, o.definition]));
        let written: ReadonlyMap<string, PinnedDefinition> = new Map();
        const stored = await store.update(server, (pins) => {
          const next = reconcile(pins, observed);
          if (next) written = definitionsOf(pins, next, definitions);
          return next;
        });
        // The definitions of what was just pinned or noted as changed, for `switchboard pins diff`.
        await store.keepDefinitions(written);
        const before = this.#pins.get(server);
        this.#pins.set(server, stored);
        if (before === undefined || canonicalJson(before) !== canonicalJson(stored)) this.#changed();
      } while (this.#dirty.has(server) && !this.#closed);
    })()
      .catch((error: unknown) =>
        this.#host.logger.warn(
          { err: error, server, pins: this.#pinStore?.where },
          `cannot write the tool pins of "${server}"; this gateway applies them, and will write them at the next change`,
        ),
      )
      .finally(() => this.#writing.delete(server));
    this.#writing.set(server, write);
  }
}

/** The pinned parts of a tool, with the config's description in place of the server's. */
export function pinnedDefinition(tool: Tool, configuredDescription?: string): PinnedDefinition {
  const description = configuredDescription ?? tool.description;
  return {
    name: tool.name,
    ...(tool.title === undefined ? {} : { title: tool.title }),
    ...(description === undefined ? {} : { description }),
    inputSchema: tool.inputSchema,
    ...(tool.outputSchema === undefined ? {} : { outputSchema: tool.outputSchema }),
    ...(tool.annotations === undefined ? {} : { annotations: tool.annotations }),
  };
}

/**
 * Whether a definition seen is the pinned one (or the tool was never pinned). A description the config
 * set over an unchanged tool counts as pinned: the operator wrote it.
 */
export function matchesPin(pin: ToolPin | undefined, seen: DefinitionRecord): boolean {
  if (!pin || pin.hash === seen.hash) return true;
  return seen.configured && pin.bodyHash === seen.bodyHash;
}

/**
 * A server's pins updated with the definitions seen: new tools pinned, a description the config set
 * pinned again, a changed definition noted (once), a change that went back cleared. Undefined when
 * nothing is to change. Tools not seen keep their pins: one that comes back is checked against them.
 */
export function reconcile(
  pins: ServerPins,
  observed: Iterable<{ readonly tool: string; readonly record: DefinitionRecord }>,
): ServerPins | undefined {
  let next: Record<string, ToolPin> | undefined;
  const set = (tool: string, pin: ToolPin) => {
    next ??= { ...pins };
    next[tool] = pin;
  };
  for (const { tool, record } of observed) {
    const pin = pins[tool];
    if (!pin || (pin.hash !== record.hash && matchesPin(pin, record))) {
      set(tool, record);
    } else if (pin.hash === record.hash) {
      if (pin.changed) set(tool, withoutChange(pin));
    } else if (pin.changed?.hash !== record.hash) {
      set(tool, { ...withoutChange(pin), changed: record });
    }
  }
  return next;
}

/** The definitions that pins `next` name and `pins` did not: those of new pins and of new changes. */
function definitionsOf(
  pins: ServerPins,
  next: ServerPins,
  definitions: ReadonlyMap<string, PinnedDefinition>,
): Map<string, PinnedDefinition> {
  const needed = new Map<string, PinnedDefinition>();
  for (const [tool, pin] of Object.entries(next)) {
    if (pins[tool] === pin) continue;
    for (const hash of [pin.hash, pin.changed?.hash]) {
      const definition = hash === undefined ? undefined : definitions.get(hash);
      if (hash !== undefined && definition) needed.set(hash, definition);
    }
  }
  return needed;
}

/** A server's pins with one tool's change approved: the definition seen becomes the pinned one. */
export function approve(pins: ServerPins, tool: string): ServerPins | undefined {
  const changed = pins[tool]?.changed;
  return changed ? { ...pins, [tool]: changed } : undefined;
}

function withoutChange(pin: ToolPin): ToolPin {
  const { changed: _changed, ...rest } = pin;
  return rest;
}
