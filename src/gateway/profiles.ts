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
import { GatewayError } from "../core/errors.ts";
import { type AccessControl, createAccessControl } from "../security/access.ts";

export interface ProfileView {
  /** "" for the default endpoint. */
  readonly name: string;
  readonly access: AccessControl | undefined;
  /** Whether the profile offers this server, and this exposed name of it (a tool or a prompt). */
  offers(server: string, exposedName?: string): boolean;
}

export function defaultView(access: AccessControl | undefined): ProfileView {
  return { name: "", access, offers: () => true };
}

export function profileView(
  name: string,
  profile: ProfileConfig,
  globalAccess: AccessControl | undefined,
): ProfileView {
  const servers = profile.servers ? new Set(profile.servers) : undefined;
  const include = picomatch([...profile.tools.include], GLOB_OPTIONS);
  const exclude =
    profile.tools.exclude.length > 0 ? picomatch([...profile.tools.exclude], GLOB_OPTIONS) : () => false;
  return {
    name,
    access: profile.access ? createAccessControl(profile.access) : globalAccess,
    offers(server, exposedName) {
      if (servers && !servers.has(server)) return false;
      return exposedName === undefined || (include(exposedName) && !exclude(exposedName));
    },
  };
}

/** The views of a config: "" for the default endpoint, then one per profile. */
export function viewsOf(config: Config, globalAccess: AccessControl | undefined): Map<string, ProfileView> {
  const views = new Map<string, ProfileView>([["", defaultView(globalAccess)]]);
  for (const [name, profile] of Object.entries(config.profiles)) {
    views.set(name, profileView(name, profile, globalAccess));
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
