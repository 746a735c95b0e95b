/**
 * The catalog as the running servers make it: rebuilt from every backend's lists whenever one changes
 * or a backend comes or goes, with the way back from a name or URI to the server that owns it. A tool
 * whose server is down leaves the catalog but keeps its route here, so that a call to it still reaches
 * that server's backend, which answers that it is unavailable and why (and the policies, a fallback
 * included, see that failure), rather than the caller being told that the tool does not exist.
 */
import type { Backend, BackendCatalog, ListChanged } from "../core/types.ts";
import type { Logger } from "../observability/logger.ts";
import { Catalog, type ServerNaming, type ToolRoute } from "./catalog.ts";

export interface CatalogServer {
  readonly name: string;
  readonly naming: ServerNaming;
  readonly backend: Backend;
}

/** What clients may see of a server's lists (definition pinning hides changed tools: pinning.ts). */
export type CatalogFilter = (
  naming: ServerNaming,
  catalog: BackendCatalog,
  separator: string,
) => BackendCatalog;

export class LiveCatalog {
  readonly #separator: () => string;
  readonly #logger: Logger;
  readonly #servers: () => readonly CatalogServer[];
  readonly #server: (name: string) => CatalogServer | undefined;
  #current: Catalog = Catalog.empty;
  readonly #hidden = new Map<string, ToolRoute>();
  /** Tools of servers a reload removed, with their server: a call to one is told so. */
  readonly #removed = new Map<string, string>();
  /** Name clashes already logged. */
  readonly #reported = new Set<string>();
  readonly #filter: CatalogFilter | undefined;

  constructor(
    separator: () => string,
    servers: () => readonly CatalogServer[],
    server: (name: string) => CatalogServer | undefined,
    logger: Logger,
    filter?: CatalogFilter,
  ) {
    this.#filter = filter;
    this.#separator = separator;
    this.#servers = servers;
    this.#server = server;
    this.#logger = logger;
  }

  get current(): Catalog {
    return this.#current;
  }

  /** A tool's route, the route of a tool hidden because its server is not up included. */
  toolRoute(name: string): ToolRoute | undefined {
    const listed = this.#current.tool(name);
    if (listed) return listed;
    const hidden = this.#hidden.get(name);
    if (!hidden) return undefined;
    const server = this.#server(hidden.server);
    return server && server.backend.state !== "up" ? hidden : undefined;
  }

  /**
   * A reload removed servers: their tools (listed or hidden) are remembered as gone with them, so that
   * a client that calls one learns why. A server added again under the same name clears its record.
   */
  forgetRemoved(before: readonly CatalogServer[], after: readonly CatalogServer[]): void {
    const kept = new Set(after.map((s) => s.name));
    const gone = new Set(before.filter((s) => !kept.has(s.name)).map((s) => s.name));
    for (const route of [...this.#current.toolRoutes(), ...this.#hidden.values()]) {
      if (gone.has(route.server)) this.#removed.set(route.exposedName, route.server);
    }
    for (const [name, route] of this.#hidden) if (gone.has(route.server)) this.#hidden.delete(name);
    for (const [name, server] of this.#removed) if (kept.has(server)) this.#removed.delete(name);
  }

  /** The server a reload removed, if this tool was one of its. */
  removedServerOf(name: string): string | undefined {
    return this.#removed.get(name);
  }

  /** Whether some server is not up (its tools are hidden). */
  anyServerDown(): boolean {
    return this.#servers().some((s) => s.backend.state !== "up");
  }

  /** The server that offers this URI now (listed exactly, or by a template). */
  resourceOwner(uri: string): CatalogServer | undefined {
    const server = this.#current.resourceServer(uri);
    return server === undefined ? undefined : this.#server(server);
  }

  /** The first server in config order that lists this exact URI template, as the catalog keeps it. */
  templateOwner(uriTemplate: string): CatalogServer | undefined {
    return this.#servers().find(
      (s) =>
        s.backend.state === "up" &&
        s.backend.catalog().resourceTemplates.some((t) => t.uriTemplate === uriTemplate),
    );
  }

  /** Rebuilds the catalog from the backends' lists and returns which exposed lists changed. */
  rebuild(): ListChanged {
    const previous = this.#current;
    const servers = this.#servers();
    const separator = this.#separator();
    const filter = this.#filter;
    const next = Catalog.build(
      separator,
      servers.map((s) => ({
        naming: s.naming,
        catalog: filter ? filter(s.naming, s.backend.catalog(), separator) : s.backend.catalog(),
      })),
    );
    for (const c of next.collisions) {
      // Said once for each server whose offer is dropped, not at every rebuild (each server coming up
      // rebuilds the catalog).
      const key = `${c.kind}\u0000${c.name}\u0000${c.dropped.server}`;
      if (this.#reported.has(key)) continue;
      this.#reported.add(key);
      this.#logger.warn(
        { kind: c.kind, name: c.name, kept: c.kept, dropped: c.dropped },
        `${c.kind} "${c.name}" is offered by both "${c.kept.server}" and "${c.dropped.server}"; ` +
          `keeping "${c.kept.server}". Give one of them a prefix or a rename.`,
      );
    }
    for (const route of previous.toolRoutes()) {
      if (!next.tool(route.exposedName) && this.#server(route.server)?.backend.state !== "up") {
        this.#hidden.set(route.exposedName, route);
      }
    }
    for (const route of next.toolRoutes()) this.#hidden.delete(route.exposedName);
    this.#current = next;
    return next.diff(previous);
  }
}
