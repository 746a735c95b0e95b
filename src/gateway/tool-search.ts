/**
 * Tool search: a full-text index over the tools of one catalog snapshot, ranked with BM25 (minisearch)
 * over each tool's name, title, description, and its parameters' names and descriptions. A catalog is
 * immutable, so its index is built once, when the first search after a change needs it (a catalog that
 * changes often and is never searched costs nothing), and dropped with the snapshot.
 *
 * Terms are split where identifiers join words (`read_text_file`, `readTextFile`, `read-text-file`),
 * lower-cased, stripped of English stop words and stemmed (Porter), so that "reading files" finds
 * `read_file`. The index is the catalog's; what one caller may find is decided at query time by the
 * filter it passes (the endpoint's offer and the caller's access rules).
 */
import { createRequire } from "node:module";
import type MiniSearch from "minisearch";
import { stemmer } from "stemmer";
import {
  CALL_TOOL,
  type FoundTool,
  type GatewayToolsSources,
  SEARCH_TOOL,
} from "../backends/gateway-tools.ts";
import { GATEWAY_TOOLS_SERVER } from "../config/schema.ts";
import type { CallToolResult, Tool } from "../core/types.ts";
import type { Catalog, ToolRoute } from "./catalog.ts";
import type { RequestOptions } from "./running.ts";
import type { Visibility } from "./visibility.ts";

export interface SearchHit {
  readonly route: ToolRoute;
  readonly score: number;
}

export interface SearchOptions {
  /** Most hits returned. */
  readonly limit: number;
  /** Which tools the caller may find; the others are left out before the limit applies. */
  readonly filter: (route: ToolRoute) => boolean;
}

interface IndexedTool {
  readonly id: number;
  readonly name: string;
  readonly title: string;
  readonly description: string;
  readonly parameters: string;
}

/**
 * Field weights: a word of the name or title says more about what a tool does than one of a long
 * description, and parameter names and descriptions the least.
 */
const BOOST = { name: 3, title: 2, description: 1, parameters: 0.5 } as const;

/** Words too common in tool descriptions and queries to tell tools apart. */
const STOP_WORDS = new Set(
  (
    "a an and any are as at be by can do does for from given how i if in into is it its me my of on " +
    "or over should so some such than that the their them then there these this those to use used " +
    "using want was we what when where which while who will with would you your"
  ).split(" "),
);

/** Splits text into words, also where identifiers join them (snake_case, camelCase, kebab-case). */
export function tokenize(text: string): string[] {
  return text
    .replace(/([a-z0-9])([A-Z])/g, "$1 $2")
    .replace(/([A-Z]+)([A-Z][a-z])/g, "$1 $2")
    .split(/[^\p{L}\p{N}]+/u)
    .filter((word) => word.length > 0);
}

/** A word as the index keeps it: lower case, stemmed; a stop word is dropped. */
export function processTerm(word: string): string | null {
  const lower = word.toLowerCase();
  if (STOP_WORDS.has(lower)) return null;
  return stemmer(lower);
}

const indexes = new WeakMap<Catalog, ToolIndex>();

/** The index of a catalog snapshot, built on first use. */
export function toolIndexOf(catalog: Catalog): ToolIndex {
  let index = indexes.get(catalog);
  if (!index) {
    index = new ToolIndex(catalog.toolRoutes());
    indexes.set(catalog, index);
  }
  return index;
}

export class ToolIndex {
  readonly #routes: readonly ToolRoute[];
  readonly #search: MiniSearch<IndexedTool>;

  constructor(routes: readonly ToolRoute[]) {
    this.#routes = routes;
    // Loaded by the first index, not with the gateway: only search discovery (and the console's
    // search) builds one. `require` because an index is built synchronously; minisearch ships CommonJS.
    const MiniSearchClass = createRequire(import.meta.url)("minisearch") as typeof MiniSearch;
    this.#search = new MiniSearchClass<IndexedTool>({
      fields: ["name", "title", "description", "parameters"],
      tokenize,
      processTerm,
      searchOptions: { boost: { ...BOOST }, prefix: (term) => term.length >= 4, fuzzy: 0.15 },
    });
    this.#search.addAll(routes.map((route, id) => indexedTool(id, route.definition)));
  }

  get size(): number {
    return this.#routes.length;
  }

  /** The tools that match `query` best, best first, among those `filter` lets through. */
  search(query: string, options: SearchOptions): SearchHit[] {
    const hits: SearchHit[] = [];
    for (const result of this.#search.search(query)) {
      const route = this.#routes[result.id as number];
      if (!route || !options.filter(route)) continue;
      hits.push({ route, score: result.score });
      if (hits.length >= options.limit) break;
    }
    return hits;
  }
}

function indexedTool(id: number, tool: Tool): IndexedTool {
  return {
    id,
    name: tool.name,
    title: tool.title ?? tool.annotations?.title ?? "",
    description: tool.description ?? "",
    parameters: parameterText(tool.inputSchema),
  };
}

/** The names and descriptions of a schema's properties, one level of nesting included. */
function parameterText(schema: unknown, depth = 0): string {
  const properties = (schema as { properties?: unknown } | undefined)?.properties;
  if (typeof properties !== "object" || properties === null) return "";
  const parts: string[] = [];
  for (const [name, property] of Object.entries(properties as Record<string, unknown>)) {
    parts.push(name);
    const description = (property as { description?: unknown } | null)?.description;
    if (typeof description === "string") parts.push(description);
    if (depth < 1) parts.push(parameterText(property, depth + 1));
  }
  return parts.join(" ");
}

// ─── the gateway's own tools ────────────────────────────────────────────────────────────────────

/** What the gateway's own tools read from the running gateway, at each call. */
export interface OwnToolsHost {
  readonly config: { readonly gateway: { readonly separator: string } };
  readonly observability: {
    readonly health: { report: GatewayToolsSources["report"] };
    readonly toolStats: { snapshot: GatewayToolsSources["toolStats"] };
  };
  visibilityFor(profile?: string): Visibility;
  /** `Gateway.callTool`: the whole chain of the named tool. */
  callTool(name: string, args: Record<string, unknown>, options: RequestOptions): Promise<CallToolResult>;
}

/** The catalog now (listed tools), and a tool's route (a tool whose server is down included). */
export interface OwnToolsCatalog {
  readonly current: Catalog;
  toolRoute(name: string): ToolRoute | undefined;
}

/**
 * The sources of the gateway's own tools (backends/gateway-tools.ts). `separator` is read while the
 * first plan's backends are made, before the host has a config to read.
 */
export function ownToolSources(
  host: OwnToolsHost,
  catalog: OwnToolsCatalog,
  separator: () => string,
): Omit<GatewayToolsSources, "health" | "metrics" | "search"> {
  const deps = {
    visibilityFor: (profile?: string) => host.visibilityFor(profile),
    catalog,
  };
  const exposedName = (tool: string) => `${GATEWAY_TOOLS_SERVER}${separator()}${tool}`;
  return {
    report: () => host.observability.health.report(),
    toolStats: () => host.observability.toolStats.snapshot(),
    maySeeServer: (principal, server, profile) => deps.visibilityFor(profile).maySeeServer(principal, server),
    maySeeTool: (principal, name, profile) => {
      const route = deps.catalog.toolRoute(name);
      return route !== undefined && deps.visibilityFor(profile).mayCall(principal, name, route.server);
    },
    exposedName,
    searchTools(caller, query, { server, limit }) {
      const visibility = deps.visibilityFor(caller.profile);
      const searchTools = new Set([exposedName(SEARCH_TOOL), exposedName(CALL_TOOL)]);
      const hits = toolIndexOf(deps.catalog.current).search(query, {
        limit,
        filter: (route) =>
          (server === undefined || route.server === server) &&
          !(route.server === GATEWAY_TOOLS_SERVER && searchTools.has(route.exposedName)) &&
          visibility.mayCall(caller.principal, route.exposedName, route.server),
      });
      return hits.map(({ route }) => foundTool(route));
    },
    // The call is the caller's own: its principal, endpoint, signal, progress and client go with it.
    callTool: (name, args, ctx) =>
      host.callTool(name, args, {
        principal: ctx.principal,
        signal: ctx.signal,
        meta: ctx.meta,
        requestId: ctx.requestId,
        ...(ctx.onProgress ? { onProgress: ctx.onProgress } : {}),
        ...(ctx.client ? { client: ctx.client } : {}),
        ...(ctx.transport ? { transport: ctx.transport } : {}),
        ...(ctx.profile ? { profile: ctx.profile } : {}),
      }),
  };
}

function foundTool(route: ToolRoute): FoundTool {
  const { name, title, description, inputSchema, outputSchema, annotations } = route.definition;
  return {
    name,
    server: route.server,
    ...(title === undefined ? {} : { title }),
    ...(description === undefined ? {} : { description }),
    inputSchema,
    ...(outputSchema === undefined ? {} : { outputSchema }),
    ...(annotations === undefined ? {} : { annotations }),
  };
}
