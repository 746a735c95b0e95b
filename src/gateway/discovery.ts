/**
 * How an endpoint shows its tools (config `gateway.discovery`, `profiles.<name>.discovery`): "full"
 * lists every tool it offers; "search" lists only the gateway's search tools and the `alwaysOn` ones,
 * and keeps every other tool callable, found with `switchboard__search_tools`. The search tools
 * themselves are offered only where they are wanted (see `searchToolsOn`), so that a profile in search
 * mode does not add them to the lists of the other endpoints.
 */
import picomatch from "picomatch";
import { CALL_TOOL, SEARCH_TOOL } from "../backends/gateway-tools.ts";
import { GLOB_OPTIONS } from "../config/primitives.ts";
import { type SearchToolsSettings, searchToolsOn } from "../config/profiles.ts";
import { GATEWAY_TOOLS_SERVER } from "../config/schema.ts";
import type { DiscoveryConfig } from "../config/settings.ts";

export interface DiscoveryView {
  /** True when the endpoint lists everything it offers and offers every tool (no search tools hidden). */
  readonly everything: boolean;
  /** Whether the endpoint offers this exposed tool of `server`, as far as discovery goes. */
  offers(server: string, exposedName: string): boolean;
  /** Whether the endpoint lists it in `tools/list`; undefined in full mode, where it lists all it offers. */
  readonly lists: ((server: string, exposedName: string) => boolean) | undefined;
}

export interface DiscoverySettings extends SearchToolsSettings {
  readonly gateway: SearchToolsSettings["gateway"] & { readonly separator: string };
}

export function discoveryView(discovery: DiscoveryConfig, config: DiscoverySettings): DiscoveryView {
  const separator = config.gateway.separator;
  const searchTools = new Set(
    [SEARCH_TOOL, CALL_TOOL].map((tool) => `${GATEWAY_TOOLS_SERVER}${separator}${tool}`),
  );
  const isSearchTool = (server: string, name: string) =>
    server === GATEWAY_TOOLS_SERVER && searchTools.has(name);
  const search = discovery.mode === "search";
  // Where the search tools are on because some other endpoint is in search mode, a full-mode endpoint
  // does not offer them: its clients see what they saw before.
  const offersSearchTools = search || config.gatewayTools.search === true;
  const alwaysOn =
    discovery.alwaysOn.length > 0 ? picomatch([...discovery.alwaysOn], GLOB_OPTIONS) : () => false;
  return {
    everything: !search && (offersSearchTools || !searchToolsOn(config)),
    offers: (server, name) => offersSearchTools || !isSearchTool(server, name),
    lists: search ? (server, name) => isSearchTool(server, name) || alwaysOn(name) : undefined,
  };
}
