/**
 * What one principal may see of the catalog (config `access`): a client never learns of what it
 * cannot call, in lists, in statistics and health, in log messages and resource updates.
 */
import type { Principal, Prompt, Resource, ResourceTemplate, Tool } from "../core/types.ts";
import type { AccessControl } from "../security/access.ts";
import type { Catalog } from "./catalog.ts";

/** More principal × server answers than this and the cache starts over (principals are unbounded). */
const MAX_CACHED = 10_000;

export class Visibility {
  readonly #access: AccessControl | undefined;
  readonly #catalog: () => Catalog;
  /** The server of a resource template, as the catalog keeps it. */
  readonly #templateServer: (uriTemplate: string) => string | undefined;
  #servers = new Map<string, boolean>();

  constructor(
    access: AccessControl | undefined,
    catalog: () => Catalog,
    templateServer: (uriTemplate: string) => string | undefined,
  ) {
    this.#access = access;
    this.#catalog = catalog;
    this.#templateServer = templateServer;
  }

  /** The catalog changed: what a principal may see of a server is worked out again. */
  reset(): void {
    this.#servers = new Map();
  }

  tools(principal: Principal): readonly Tool[] {
    const catalog = this.#catalog();
    const tools = catalog.tools();
    if (!this.#access) return tools;
    return this.#access.filter(principal, tools, (tool) => ({
      name: tool.name,
      server: catalog.tool(tool.name)?.server ?? "",
    }));
  }

  prompts(principal: Principal): readonly Prompt[] {
    const catalog = this.#catalog();
    const prompts = catalog.prompts();
    if (!this.#access) return prompts;
    return this.#access.filter(principal, prompts, (prompt) => ({
      name: prompt.name,
      server: catalog.prompt(prompt.name)?.server ?? "",
    }));
  }

  resources(principal: Principal): readonly Resource[] {
    const catalog = this.#catalog();
    const resources = catalog.resources();
    if (!this.#access) return resources;
    return this.#access.filterResources(principal, resources, (r) => catalog.resourceServer(r.uri) ?? "");
  }

  resourceTemplates(principal: Principal): readonly ResourceTemplate[] {
    const templates = this.#catalog().resourceTemplates();
    if (!this.#access) return templates;
    return this.#access.filterResources(
      principal,
      templates,
      (t) => this.#templateServer(t.uriTemplate) ?? "",
    );
  }

  /** Whether the principal may call this exposed tool of `server`. */
  mayCall(principal: Principal, exposedName: string, server: string): boolean {
    return this.#access?.canCall(principal, exposedName, server) ?? true;
  }

  /** Whether the principal may read the resources of `server`. */
  mayRead(principal: Principal, server: string): boolean {
    return this.#access?.canReadServer(principal, server) ?? true;
  }

  /**
   * Whether the principal may see anything of `server`: one of its tools or prompts, or its resources.
   * Log messages and statistics of a server go only to those who may.
   */
  maySeeServer(principal: Principal, server: string): boolean {
    const access = this.#access;
    if (!access) return true;
    const key = `${principal.id}\u0000${principal.roles.join("\u0001")}\u0000${server}`;
    let visible = this.#servers.get(key);
    if (visible === undefined) {
      const catalog = this.#catalog();
      visible =
        access.canReadServer(principal, server) ||
        catalog
          .toolRoutes()
          .some((r) => r.server === server && access.canCall(principal, r.exposedName, server)) ||
        catalog
          .prompts()
          .some(
            (p) => catalog.prompt(p.name)?.server === server && access.canCall(principal, p.name, server),
          );
      if (this.#servers.size >= MAX_CACHED) this.#servers.clear();
      this.#servers.set(key, visible);
    }
    return visible;
  }
}
