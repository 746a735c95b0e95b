/**
 * What one principal may see of the catalog at one endpoint (the default one or a profile's): what
 * the endpoint offers, then what access rules allow. A client never learns of what it cannot call, in
 * lists, in statistics and health, in log messages and resource updates.
 */
import type { Principal, Prompt, Resource, ResourceTemplate, Tool } from "../core/types.ts";
import type { AccessControl } from "../security/access.ts";
import type { Catalog } from "./catalog.ts";
import type { ProfileView } from "./profiles.ts";

export interface OfferedCatalog {
  readonly tools: readonly Tool[];
  readonly resources: readonly Resource[];
  readonly resourceTemplates: readonly ResourceTemplate[];
  readonly prompts: readonly Prompt[];
}

/** More principal × server answers than this and the cache starts over (principals are unbounded). */
const MAX_CACHED = 10_000;

export class Visibility {
  readonly #access: AccessControl | undefined;
  readonly #view: ProfileView;
  /** The default endpoint in full mode: everything is offered, only access rules filter. */
  readonly #whole: boolean;
  readonly #catalog: () => Catalog;
  /** The server of a resource template, as the catalog keeps it. */
  readonly #templateServer: (uriTemplate: string) => string | undefined;
  #servers = new Map<string, boolean>();

  constructor(
    view: ProfileView,
    catalog: () => Catalog,
    templateServer: (uriTemplate: string) => string | undefined,
  ) {
    this.#view = view;
    this.#access = view.access;
    this.#whole = view.everything;
    this.#catalog = catalog;
    this.#templateServer = templateServer;
  }

  /** The catalog changed: what a principal may see of a server is worked out again. */
  reset(): void {
    this.#servers = new Map();
  }

  /** What the endpoint offers, before anyone's access rules (`switchboard tools --profile`). */
  offered(): OfferedCatalog {
    const catalog = this.#catalog();
    return {
      tools: this.#tools(catalog),
      resources: this.#resources(catalog),
      resourceTemplates: this.#resourceTemplates(catalog),
      prompts: this.#prompts(catalog),
    };
  }

  /**
   * The tools a principal is listed here: in discovery mode "search" only the search tools and the
   * always-on ones; every tool the principal may call stays callable (see `mayCall`). With `client`
   * (what the calling client can be given through the gateway), a tool it could not run is left out:
   * one that runs only as a task, for a client without tasks; a call by name still reaches the server,
   * which says why it refuses.
   */
  tools(principal: Principal, client?: { readonly tasks: boolean }): readonly Tool[] {
    const catalog = this.#catalog();
    const lists = this.#view.lists;
    const listed = lists
      ? this.#tools(catalog).filter((t) => lists(catalog.tool(t.name)?.server ?? "", t.name))
      : this.#tools(catalog);
    const offered =
      client && !client.tasks ? listed.filter((tool) => tool.execution?.taskSupport !== "required") : listed;
    if (!this.#access) return offered;
    return this.#access.filter(principal, offered, (tool) => ({
      name: tool.name,
      server: catalog.tool(tool.name)?.server ?? "",
    }));
  }

  prompts(principal: Principal): readonly Prompt[] {
    const catalog = this.#catalog();
    const offered = this.#prompts(catalog);
    if (!this.#access) return offered;
    return this.#access.filter(principal, offered, (prompt) => ({
      name: prompt.name,
      server: catalog.prompt(prompt.name)?.server ?? "",
    }));
  }

  resources(principal: Principal): readonly Resource[] {
    const catalog = this.#catalog();
    const offered = this.#resources(catalog);
    if (!this.#access) return offered;
    return this.#access.filterResources(principal, offered, (r) => catalog.resourceServer(r.uri) ?? "");
  }

  resourceTemplates(principal: Principal): readonly ResourceTemplate[] {
    const offered = this.#resourceTemplates(this.#catalog());
    if (!this.#access) return offered;
    return this.#access.filterResources(principal, offered, (t) => this.#templateServer(t.uriTemplate) ?? "");
  }

  #tools(catalog: Catalog): readonly Tool[] {
    if (this.#whole) return catalog.tools();
    return catalog.tools().filter((t) => this.#view.offers(catalog.tool(t.name)?.server ?? "", t.name));
  }

  #prompts(catalog: Catalog): readonly Prompt[] {
    if (this.#whole) return catalog.prompts();
    return catalog.prompts().filter((p) => this.#view.offers(catalog.prompt(p.name)?.server ?? "", p.name));
  }

  #resources(catalog: Catalog): readonly Resource[] {
    if (this.#whole) return catalog.resources();
    return catalog.resources().filter((r) => this.#view.offers(catalog.resourceServer(r.uri) ?? ""));
  }

  #resourceTemplates(catalog: Catalog): readonly ResourceTemplate[] {
    if (this.#whole) return catalog.resourceTemplates();
    return catalog
      .resourceTemplates()
      .filter((t) => this.#view.offers(this.#templateServer(t.uriTemplate) ?? ""));
  }

  /**
   * Whether this endpoint offers `server`, and this exposed tool or prompt of it, at all (before access
   * rules). What it does not offer does not exist for its clients.
   */
  readonly offers = (server: string, exposedName?: string): boolean => this.#view.offers(server, exposedName);

  /** Whether the principal may call this exposed tool (or get this prompt) of `server` here. */
  mayCall(principal: Principal, exposedName: string, server: string): boolean {
    if (!this.#view.offers(server, exposedName)) return false;
    return this.#access?.canCall(principal, exposedName, server) ?? true;
  }

  /** Throws the access error when the principal may not read the resources of `server`. */
  checkRead(principal: Principal, uri: string, server: string): void {
    this.#access?.check(principal, uri, server, "resource");
  }

  /** Whether the principal may read the resources of `server` here. */
  mayRead(principal: Principal, server: string): boolean {
    if (!this.#view.offers(server)) return false;
    return this.#access?.canReadServer(principal, server) ?? true;
  }

  /**
   * Whether the principal may see anything of `server` here: one of its tools or prompts, or its
   * resources. Log messages and statistics of a server go only to those who may.
   */
  maySeeServer(principal: Principal, server: string): boolean {
    const view = this.#view;
    if (!view.offers(server)) return false;
    const access = this.#access;
    if (!access && this.#whole) return true;
    const key = `${principal.id}\u0000${principal.roles.join("\u0001")}\u0000${server}`;
    let visible = this.#servers.get(key);
    if (visible === undefined) {
      const catalog = this.#catalog();
      const mayCall = (name: string) =>
        view.offers(server, name) && (access?.canCall(principal, name, server) ?? true);
      visible =
        (access?.canReadServer(principal, server) ?? true) ||
        catalog.toolRoutes().some((r) => r.server === server && mayCall(r.exposedName)) ||
        catalog.prompts().some((p) => catalog.prompt(p.name)?.server === server && mayCall(p.name));
      if (this.#servers.size >= MAX_CACHED) this.#servers.clear();
      this.#servers.set(key, visible);
    }
    return visible;
  }
}
