/**
 * When a server's cached results must go: when its definitions (tools, resources, resource templates,
 * prompts) changed, not whenever it comes up. A hash of the definitions is kept in the store, so that
 * replicas sharing a Redis agree on what was last seen: a replica that starts (a rolling deploy, a
 * scale-out) or a server that restarts with the same definitions keeps the cache every replica
 * shares; a server that comes up or announces lists that differ drops its cached results once, for
 * all of them.
 */
import type { BackendCatalog, Store } from "../core/types.ts";
import type { Logger } from "../observability/logger.ts";
import { hashJson } from "../stores/canonical-json.ts";
import { ResilientStore } from "../stores/index.ts";

/** The store key of a server's definitions hash (the store adds its own prefix). */
export function definitionsKey(server: string): string {
  return `definitions:${server}`;
}

/**
 * A hash of what a server offers, whatever order it lists things in: the same definitions listed
 * in another order are the same definitions.
 */
export function definitionsHash(catalog: BackendCatalog): string {
  const byName = <T extends { name: string }>(items: readonly T[]) =>
    [...items].sort((a, b) => compare(a.name, b.name));
  return hashJson({
    tools: byName(catalog.tools),
    resources: [...catalog.resources].sort((a, b) => compare(a.uri, b.uri)),
    resourceTemplates: [...catalog.resourceTemplates].sort((a, b) => compare(a.uriTemplate, b.uriTemplate)),
    prompts: byName(catalog.prompts),
  });
}

function compare(a: string, b: string): number {
  return a < b ? -1 : a > b ? 1 : 0;
}

export interface ServerDefinitionsDeps {
  readonly store: Store;
  readonly logger: Logger;
  /** Drops every cached result of the server, on every replica. Never rejects. */
  readonly invalidate: (server: string) => Promise<void>;
}

export class ServerDefinitions {
  readonly #deps: ServerDefinitionsDeps;
  /** One comparison at a time per server, so that an "up" and a list change cannot interleave. */
  readonly #pending = new Map<string, Promise<void>>();

  constructor(deps: ServerDefinitionsDeps) {
    this.#deps = deps;
  }

  /**
   * The server offers `catalog` now: if that differs from the definitions last recorded (by any
   * replica), its cached results are dropped and these recorded. Resolves true when they changed.
   * Never rejects: when the recorded hash cannot be read or written, the cache is dropped anyway,
   * since results cached under other definitions must not be served.
   */
  seen(server: string, catalog: BackendCatalog): Promise<boolean> {
    const previous = this.#pending.get(server) ?? Promise.resolve();
    const next = previous.then(() => this.#compare(server, catalog));
    const settled = next.then(() => undefined);
    this.#pending.set(server, settled);
    void settled.then(() => {
      if (this.#pending.get(server) === settled) this.#pending.delete(server);
    });
    return next;
  }

  async #compare(server: string, catalog: BackendCatalog): Promise<boolean> {
    const { store, logger, invalidate } = this.#deps;
    const key = definitionsKey(server);
    // A server may come up before the shared store's first connection: comparing with this replica's
    // own memory then would find nothing recorded and drop what every replica shares. (During an
    // outage there is nothing better to compare with: the drop is replayed to Redis when it is back.)
    if (store instanceof ResilientStore) await store.connect();
    let hash: string | undefined;
    let recorded: boolean | undefined;
    try {
      hash = definitionsHash(catalog);
      const last = await store.get(key);
      if (last === hash) {
        logger.info({ server }, "server definitions unchanged");
        return false;
      }
      recorded = last !== undefined;
    } catch (error) {
      logger.warn(
        { err: error, server },
        "could not compare the server's definitions with the ones last recorded; dropping its cached results",
      );
    }
    await invalidate(server);
    if (hash !== undefined) {
      try {
        await store.set(key, hash);
      } catch (error) {
        logger.warn(
          { err: error, server },
          "could not record the server's definitions; the next start of this server drops its cached results again",
        );
      }
    }
    // `recorded: false`: none were recorded (the server's first start with this store), so there was
    // nothing to compare with.
    logger.info({ server, recorded }, "server definitions changed");
    return true;
  }
}
