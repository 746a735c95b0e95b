/**
 * What replicas that share a store tell each other, and how a replica lives with the store's
 * outages. A replica that hears a server's list_changed announces it, because another replica's own
 * connection to that server may not have heard it; the store's outages and recoveries are logged, and
 * a recovery re-reads shared circuit state.
 */
import type { ListChanged, Store, Unsubscribe } from "../core/types.ts";
import type { Logger } from "../observability/logger.ts";
import { ResilientStore } from "../stores/index.ts";

/**
 * The store channel on which a replica announces that a backend's lists changed (JSON
 * `{ server, changed }`), for replicas whose own connection to that server may not have heard it.
 */
const LIST_CHANGED_CHANNEL = "catalog:list-changed";

export interface ReplicaSyncDeps {
  readonly store: Store;
  readonly logger: Logger;
  /** Another replica heard that a server's lists changed. */
  readonly onRemoteListChanged: (server: string, changed: ListChanged) => void;
  /** The shared store is back after an outage. */
  readonly onStoreRecovered: () => void;
}

export class ReplicaSync {
  readonly #deps: ReplicaSyncDeps;
  #subscription: Unsubscribe | undefined;
  /** undefined until the store's first connection attempt is over (connect() reports that one). */
  #storeDown: boolean | undefined;

  constructor(deps: ReplicaSyncDeps) {
    this.#deps = deps;
    this.#watchStore();
  }

  /**
   * Waits for a shared store's first connection (bounded by its connect timeout) and subscribes to
   * other replicas' list changes. An unreachable store is logged, not fatal: it reconnects by itself,
   * and `store.onStoreError` says what calls do meanwhile.
   */
  async connect(): Promise<void> {
    const { store, logger } = this.#deps;
    if (store instanceof ResilientStore) {
      const health = await store.connect();
      this.#storeDown = health.status !== "healthy";
      if (!this.#storeDown) logger.info({ store: health.data }, "shared store connected");
      else logger.warn({ store: health.data }, `shared store unavailable at start: ${health.detail}`);
    }
    try {
      this.#subscription = await store.subscribe(LIST_CHANGED_CHANNEL, (message, info) => {
        if (!info.fromSelf) this.#heard(message);
      });
    } catch (error) {
      logger.warn(
        { err: error },
        "could not subscribe to other replicas' list changes; clients of this replica hear only its own",
      );
    }
  }

  /** Tells the other replicas that a server's lists changed. Never rejects. */
  async announceListChanged(server: string, changed: ListChanged): Promise<void> {
    try {
      await this.#deps.store.publish(LIST_CHANGED_CHANNEL, JSON.stringify({ server, changed }));
    } catch (error) {
      this.#deps.logger.warn(
        { err: error, server },
        "could not tell other replicas that a server's lists changed; their clients may list stale tools",
      );
    }
  }

  async close(): Promise<void> {
    await this.#subscription?.();
  }

  #heard(message: string): void {
    let parsed: { server?: unknown; changed?: unknown } | undefined;
    try {
      parsed = JSON.parse(message) as typeof parsed;
    } catch {
      parsed = undefined;
    }
    const changed = parsed?.changed;
    if (typeof parsed?.server !== "string" || typeof changed !== "object" || changed === null) return;
    this.#deps.onRemoteListChanged(parsed.server, changed as ListChanged);
  }

  #watchStore(): void {
    const { store, logger } = this.#deps;
    if (!(store instanceof ResilientStore)) return;
    store.on("state", (health) => {
      if (this.#storeDown === undefined) return;
      if (health.status === "healthy") {
        if (!this.#storeDown) return;
        this.#storeDown = false;
        logger.info({ store: health.data }, "shared store available again; state is shared again");
        this.#deps.onStoreRecovered();
      } else if (!this.#storeDown) {
        this.#storeDown = true;
        logger.warn({ store: health.data }, `shared store unavailable: ${health.detail}`);
      }
    });
    store.on("fallback", (event) =>
      logger.debug(event, "a store operation was served by this replica's memory (fail-open)"),
    );
    store.on("skipped", (event) =>
      logger.debug(event, "a value was too large for the shared store and was not stored"),
    );
  }
}
