/**
 * The aggregated catalog: what clients see of all backends, and the way back from an exposed name or
 * URI to the backend that owns it. A catalog is an immutable snapshot; the gateway builds a new one
 * whenever a backend's lists or state change, and compares it with the old one to decide which
 * list_changed notifications to send.
 */
import type { BackendCatalog, Prompt, Resource, ResourceTemplate, Tool } from "../core/types.ts";
import { descriptionOverride, exposeName, isExposed, type ServerNaming } from "./naming.ts";

export type { ServerNaming } from "./naming.ts";
export { exposedName, isExposed } from "./naming.ts";

/** `_meta` keys the catalog adds to exposed tools and prompts. */
export const META_SERVER = "switchboard/server";
export const META_TOOL = "switchboard/tool";
export const META_PROMPT = "switchboard/prompt";
export const META_ORIGINAL_NAME = "switchboard/originalName";

export interface CatalogEntry {
  readonly naming: ServerNaming;
  readonly catalog: BackendCatalog;
}

export interface ToolRoute {
  readonly exposedName: string;
  readonly server: string;
  /** The backend's own name for the tool. */
  readonly tool: string;
  /** The tool as clients see it. */
  readonly definition: Tool;
  /** The tool as the backend described it. */
  readonly original: Tool;
}

export interface PromptRoute {
  readonly exposedName: string;
  readonly server: string;
  /** The backend's own name for the prompt. */
  readonly prompt: string;
  readonly definition: Prompt;
  readonly original: Prompt;
}

export interface ResourceRoute {
  readonly server: string;
  /** Set when the URI was listed exactly. */
  readonly resource?: Resource;
  /** Set when the URI was matched by a template instead. */
  readonly template?: ResourceTemplate;
}

export type CollisionKind = "tool" | "prompt" | "resource" | "resourceTemplate";

/**
 * Two offers under the same exposed name (or URI, or URI template). The first in config order is
 * kept; `name` fields of `kept` and `dropped` are the backends' own names.
 */
export interface Collision {
  readonly kind: CollisionKind;
  readonly name: string;
  readonly kept: { readonly server: string; readonly name: string };
  readonly dropped: { readonly server: string; readonly name: string };
}

export interface CatalogDiff {
  readonly tools: boolean;
  readonly resources: boolean;
  readonly prompts: boolean;
}

interface TemplateRoute {
  readonly server: string;
  readonly template: ResourceTemplate;
  readonly pattern: RegExp;
}

interface CatalogParts {
  readonly tools: ReadonlyMap<string, ToolRoute>;
  readonly prompts: ReadonlyMap<string, PromptRoute>;
  readonly resources: ReadonlyMap<string, ResourceRoute>;
  readonly templates: readonly TemplateRoute[];
  readonly collisions: readonly Collision[];
}

export class Catalog {
  /** No names at all, so no separator either. */
  static readonly empty: Catalog = Catalog.build("", []);

  readonly collisions: readonly Collision[];
  readonly #tools: ReadonlyMap<string, ToolRoute>;
  readonly #prompts: ReadonlyMap<string, PromptRoute>;
  readonly #resources: ReadonlyMap<string, ResourceRoute>;
  readonly #templates: readonly TemplateRoute[];
  // tools/list with 10,000 tools is a hot path: the lists are built once here, never per request.
  // Only the arrays are frozen: freezing 10,000 definitions would more than double the build time,
  // and the readonly types already keep callers from writing to them.
  readonly #toolList: readonly Tool[];
  readonly #toolRouteList: readonly ToolRoute[];
  readonly #promptList: readonly Prompt[];
  readonly #resourceList: readonly Resource[];
  readonly #templateList: readonly ResourceTemplate[];
  // Serialised lists for diff(), computed on first use and kept so the next rebuild reuses them.
  #signatures: { tools?: string; resources?: string; prompts?: string } = {};

  private constructor(parts: CatalogParts) {
    this.#tools = parts.tools;
    this.#prompts = parts.prompts;
    this.#resources = parts.resources;
    this.#templates = parts.templates;
    this.collisions = Object.freeze([...parts.collisions]);
    this.#toolRouteList = Object.freeze([...parts.tools.values()]);
    this.#toolList = Object.freeze(this.#toolRouteList.map((r) => r.definition));
    this.#promptList = Object.freeze([...parts.prompts.values()].map((r) => r.definition));
    this.#resourceList = Object.freeze([...parts.resources.values()].map((r) => r.resource as Resource));
    this.#templateList = Object.freeze(parts.templates.map((t) => t.template));
  }

  /** Builds the catalog clients see from each backend's lists; earlier entries win name clashes. */
  static build(separator: string, entries: readonly CatalogEntry[]): Catalog {
    const tools = new Map<string, ToolRoute>();
    const prompts = new Map<string, PromptRoute>();
    const resources = new Map<string, ResourceRoute>();
    const templates: TemplateRoute[] = [];
    const templateOwners = new Map<string, TemplateRoute>();
    const collisions: Collision[] = [];

    for (const { naming, catalog } of entries) {
      const server = naming.server;

      for (const tool of catalog.tools) {
        if (!isExposed(naming, tool.name)) continue;
        const { name, raw, altered } = exposeName(naming, tool.name, separator);
        const kept = tools.get(name);
        if (kept) {
          collisions.push(collision("tool", name, kept.server, kept.tool, server, tool.name));
          continue;
        }
        const definition = exposedDefinition(tool, naming, name, {
          [META_SERVER]: server,
          [META_TOOL]: tool.name,
          ...(altered ? { [META_ORIGINAL_NAME]: raw } : {}),
        });
        tools.set(name, { exposedName: name, server, tool: tool.name, definition, original: tool });
      }

      for (const prompt of catalog.prompts) {
        if (!isExposed(naming, prompt.name)) continue;
        const { name, raw, altered } = exposeName(naming, prompt.name, separator);
        const kept = prompts.get(name);
        if (kept) {
          collisions.push(collision("prompt", name, kept.server, kept.prompt, server, prompt.name));
          continue;
        }
        const definition = exposedDefinition(prompt, naming, name, {
          [META_SERVER]: server,
          [META_PROMPT]: prompt.name,
          ...(altered ? { [META_ORIGINAL_NAME]: raw } : {}),
        });
        prompts.set(name, { exposedName: name, server, prompt: prompt.name, definition, original: prompt });
      }

      for (const resource of catalog.resources) {
        const kept = resources.get(resource.uri);
        if (kept) {
          collisions.push(
            collision("resource", resource.uri, kept.server, resource.uri, server, resource.uri),
          );
          continue;
        }
        resources.set(resource.uri, { server, resource });
      }

      for (const template of catalog.resourceTemplates) {
        const kept = templateOwners.get(template.uriTemplate);
        if (kept) {
          const uriTemplate = template.uriTemplate;
          collisions.push(
            collision("resourceTemplate", uriTemplate, kept.server, uriTemplate, server, uriTemplate),
          );
          continue;
        }
        const route = { server, template, pattern: compiledTemplate(template) };
        templateOwners.set(template.uriTemplate, route);
        templates.push(route);
      }
    }

    return new Catalog({ tools, prompts, resources, templates, collisions });
  }

  tool(exposedName: string): ToolRoute | undefined {
    return this.#tools.get(exposedName);
  }

  prompt(exposedName: string): PromptRoute | undefined {
    return this.#prompts.get(exposedName);
  }

  /**
   * Which server a `resources/read` goes to: an exactly listed URI first, then the first template (in
   * config order) that matches. Overlapping templates of different servers cannot be told apart
   * before a URI arrives, so the earlier server wins them.
   */
  resource(uri: string): ResourceRoute | undefined {
    const exact = this.#resources.get(uri);
    if (exact) return exact;
    for (const route of this.#templates) {
      if (route.pattern.test(uri)) return { server: route.server, template: route.template };
    }
    return undefined;
  }

  resourceServer(uri: string): string | undefined {
    return this.resource(uri)?.server;
  }

  tools(): readonly Tool[] {
    return this.#toolList;
  }

  toolRoutes(): readonly ToolRoute[] {
    return this.#toolRouteList;
  }

  prompts(): readonly Prompt[] {
    return this.#promptList;
  }

  resources(): readonly Resource[] {
    return this.#resourceList;
  }

  resourceTemplates(): readonly ResourceTemplate[] {
    return this.#templateList;
  }

  /**
   * Which lists differ from `previous`, as clients would see them. Definitions are compared as JSON,
   * so a rebuild that changes nothing visible (a filtered-out tool, a backend reconnecting with the
   * same lists) announces nothing.
   */
  diff(previous: Catalog): CatalogDiff {
    if (previous === this) return { tools: false, resources: false, prompts: false };
    return {
      tools: this.#signature("tools") !== previous.#signature("tools"),
      resources: this.#signature("resources") !== previous.#signature("resources"),
      prompts: this.#signature("prompts") !== previous.#signature("prompts"),
    };
  }

  #signature(list: keyof CatalogDiff): string {
    let signature = this.#signatures[list];
    if (signature === undefined) {
      signature =
        list === "tools"
          ? JSON.stringify(this.#toolList)
          : list === "prompts"
            ? JSON.stringify(this.#promptList)
            : JSON.stringify([this.#resourceList, this.#templateList]);
      this.#signatures[list] = signature;
    }
    return signature;
  }
}

function collision(
  kind: CollisionKind,
  name: string,
  keptServer: string,
  keptName: string,
  droppedServer: string,
  droppedName: string,
): Collision {
  return Object.freeze({
    kind,
    name,
    kept: Object.freeze({ server: keptServer, name: keptName }),
    dropped: Object.freeze({ server: droppedServer, name: droppedName }),
  });
}

/**
 * A copy of a backend's tool or prompt under its exposed name. Everything the backend sent passes
 * through; its `_meta` is kept and extended, never replaced.
 */
function exposedDefinition<T extends Tool | Prompt>(
  original: T,
  naming: ServerNaming,
  name: string,
  meta: Record<string, unknown>,
): T {
  const description = descriptionOverride(naming, original.name);
  const definition: T = { ...original, name, _meta: { ...original._meta, ...meta } };
  if (description !== undefined) definition.description = description;
  return definition;
}

// Keyed by the backend's template object: a backend keeps the same objects until its lists change, so
// rebuilds reuse the compiled patterns, and dropped templates are collected with their objects.
const compiledTemplates = new WeakMap<ResourceTemplate, RegExp>();

function compiledTemplate(template: ResourceTemplate): RegExp {
  let pattern = compiledTemplates.get(template);
  if (!pattern) {
    pattern = compileUriTemplate(template.uriTemplate);
    compiledTemplates.set(template, pattern);
  }
  return pattern;
}

/**
 * What each RFC 6570 expression can expand to, as a regular expression. Simple and reserved
 * expansions are required (one or more characters); the prefixed forms may expand to nothing when
 * their variables are undefined, so they are optional. Each repeated group starts with a character its
 * body cannot contain, which keeps matching linear.
 */
const EXPRESSION_PATTERNS: Readonly<Record<string, string>> = {
  "": "[^/]+",
  "+": ".+",
  "#": "(?:#.*)?",
  ".": "(?:\\.[^/?#.]*)*",
  "/": "(?:/[^/?#]*)*",
  ";": "(?:;[^/?#;]*)*",
  "?": "(?:\\?[^#]*)?",
  "&": "(?:&[^#]*)?",
};

/**
 * Compiles a URI template to a RegExp that tells whether a URI could be an expansion of it. Only
 * routing needs this, so variables are not captured. Text outside well-formed `{…}` is literal.
 */
export function compileUriTemplate(uriTemplate: string): RegExp {
  let source = "";
  let index = 0;
  while (index < uriTemplate.length) {
    const open = uriTemplate.indexOf("{", index);
    const close = open === -1 ? -1 : uriTemplate.indexOf("}", open + 1);
    if (open === -1 || close === -1) {
      source += escapeRegExp(uriTemplate.slice(index));
      break;
    }
    source += escapeRegExp(uriTemplate.slice(index, open));
    const body = uriTemplate.slice(open + 1, close);
    const operator = body.charAt(0);
    source += Object.hasOwn(EXPRESSION_PATTERNS, operator)
      ? EXPRESSION_PATTERNS[operator]
      : (EXPRESSION_PATTERNS[""] as string);
    index = close + 1;
  }
  return new RegExp(`^${source}$`);
}

function escapeRegExp(text: string): string {
  return text.replace(/[.*+?^${}()|[\]\\/]/g, "\\$&");
}
