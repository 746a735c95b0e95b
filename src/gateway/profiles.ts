/**
 * What one endpoint of the gateway offers: the default endpoint everything; a profile (config
 * `profiles`) its servers and the tools and prompts its globs select, under its own access rules when
 * it has them, and its own policies (see policies/runtime.ts). A request outside a profile is refused
 * as if the tool did not exist.
 */
import picomatch from "picomatch";
import { GLOB_OPTIONS } from "../config/primitives.ts";
import type { ProfileConfig } from "../config/profiles.ts";
import type { Config } from "../config/schema.ts";
import { GATEWAY_TOOLS_SERVER } from "../config/schema.ts";
import { GatewayError } from "../core/errors.ts";
import { type AccessControl, createAccessControl } from "../security/access.ts";
import { type DiscoverySettings, discoveryView } from "./discovery.ts";

export interface ProfileView {
  /** "" for the default endpoint. */
  readonly name: string;
  readonly access: AccessControl | undefined;
  /** True when the endpoint offers and lists everything (the default endpoint in full mode). */
  readonly everything: boolean;
  /** Whether the profile offers this server, and this exposed name of it (a tool or a prompt). */
  offers(server: string, exposedName?: string): boolean;
  /**
   * Whether `tools/list` lists this offered tool; undefined when it lists every tool it offers. In
   * discovery mode "search" only the search tools and the `alwaysOn` ones are listed (see discovery.ts).
   */
  readonly lists: ((server: string, exposedName: string) => boolean) | undefined;
}

const FULL: DiscoverySettings = {
  gatewayTools: {},
  gateway: { separator: "__", discovery: { mode: "full", alwaysOn: [] } },
  profiles: {},
};

export function defaultView(
  access: AccessControl | undefined,
  config: DiscoverySettings = FULL,
): ProfileView {
  const discovery = discoveryView(config.gateway.discovery, config);
  return {
    name: "",
    access,
    everything: discovery.everything,
    offers: (server, exposedName) => exposedName === undefined || discovery.offers(server, exposedName),
    lists: discovery.lists,
  };
}

export function profileView(
  name: string,
  profile: ProfileConfig,
  globalAccess: AccessControl | undefined,
  config: DiscoverySettings = FULL,
): ProfileView {
  const servers = profile.servers ? new Set(profile.servers) : undefined;
  const include = picomatch([...profile.tools.include], GLOB_OPTIONS);
  const exclude =
    profile.tools.exclude.length > 0 ? picomatch([...profile.tools.exclude], GLOB_OPTIONS) : () => false;
  const discovery = discoveryView(profile.discovery, config);
  return {
    name,
    access: profile.access ? createAccessControl(profile.access) : globalAccess,
    everything: false,
    offers(server, exposedName) {
      // The gateway's own tools (health, metrics, search) are at every endpoint, whatever its servers
      // and globs: they only ever report and reach what the endpoint offers.
      if (server === GATEWAY_TOOLS_SERVER)
        return exposedName === undefined || discovery.offers(server, exposedName);
      if (servers && !servers.has(server)) return false;
      if (exposedName === undefined) return true;
      return include(exposedName) && !exclude(exposedName) && discovery.offers(server, exposedName);
    },
    lists: discovery.lists,
  };
}

/** The views of a config: "" for the default endpoint, then one per profile. */
export function viewsOf(config: Config, globalAccess: AccessControl | undefined): Map<string, ProfileView> {
  const views = new Map<string, ProfileView>([["", defaultView(globalAccess, config)]]);
  for (const [name, profile] of Object.entries(config.profiles)) {
    views.set(name, profileView(name, profile, globalAccess, config));
  }
  return views;
}

/** A request to a profile the config (no longer) has. */
export function unknownProfile(name: string): GatewayError {
  return new GatewayError(
    "unknown_tool",
    `Profile "${name}" does not exist (a config reload may have removed it). Use an endpoint the gateway serves.`,
    { data: { profile: name } },
  );
}
