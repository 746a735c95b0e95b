/**
 * Profiles: named endpoints, each a view of the one gateway for a team — the servers and tools it
 * offers, and, when it says so, its own auth, access rules and policies. Served at
 * `<server.http.path>/<name>` (and `serve --stdio --profile <name>`); backends are shared by every
 * profile (one process per server).
 */
import { z } from "zod";
import { policySetSchema } from "../policies/config.ts";
import { accessSchema, authSchema } from "../security/config.ts";
import { glob, nonEmpty, SERVER_NAME } from "./primitives.ts";
import { type DiscoveryConfig, discoverySchema } from "./settings.ts";

export const profileSchema = z.strictObject({
  /** The servers the profile offers, by config name. Default: every server. */
  servers: z.array(nonEmpty()).optional(),
  /**
   * Globs over exposed names (`db__query`, `github__*`) of tools and prompts the profile offers, among
   * its servers'; exclude wins. Default { include: ["*"], exclude: [] }.
   */
  tools: z
    .strictObject({
      include: z.array(glob()).default(["*"]),
      exclude: z.array(glob()).default([]),
    })
    .prefault({}),
  /**
   * How the profile's endpoint shows its tools: "full", or "search" (only the search tools and the
   * `alwaysOn` ones are listed; see config/settings.ts). Default "full".
   */
  discovery: discoverySchema,
  /** Replaces the top-level `auth` on this profile's endpoint. Default: the top-level `auth`. */
  auth: authSchema.optional(),
  /** Replaces the top-level `access` for this profile. Default: the top-level `access`. */
  access: accessSchema.optional(),
  /**
   * Policies for the profile's requests, over the top-level `policies` (a key given here replaces the
   * top-level one; server and tool rules stay more specific). Default {}.
   */
  policies: policySetSchema.prefault({}),
  /** Tool rules of the profile, winning over top-level rules for the same name. Default {}. */
  toolPolicies: z.record(nonEmpty("a tool name or glob cannot be empty"), policySetSchema).default({}),
});

export type ProfileConfig = z.output<typeof profileSchema>;

/** Profile names appear in URL paths, log lines and metric labels. */
export const profilesSchema = z
  .record(
    z.string().regex(SERVER_NAME, {
      error: (issue) =>
        `profile name ${JSON.stringify(issue.input)} may only contain letters, digits, "_" and "-" (it is a URL path segment)`,
    }),
    profileSchema,
  )
  .default({});

/** Each profile names only servers that exist. */
export function checkProfiles(
  profiles: Readonly<Record<string, ProfileConfig>>,
  servers: ReadonlySet<string>,
  ctx: z.RefinementCtx,
): void {
  for (const [name, profile] of Object.entries(profiles)) {
    for (const [index, server] of (profile.servers ?? []).entries()) {
      if (servers.has(server)) continue;
      ctx.addIssue({
        code: "custom",
        path: ["profiles", name, "servers", index],
        message: `"${server}" is not a server under mcpServers or backends; list configured servers only`,
      });
    }
  }
}

/** What decides where the gateway's search tools are offered. */
export interface SearchToolsSettings {
  readonly gatewayTools: { readonly search?: boolean | undefined };
  readonly gateway: { readonly discovery: DiscoveryConfig };
  readonly profiles: Readonly<Record<string, { readonly discovery: DiscoveryConfig }>>;
}

/** Whether some endpoint (the default one or a profile) lists its tools in search mode. */
export function anySearchEndpoint(config: SearchToolsSettings): boolean {
  return (
    config.gateway.discovery.mode === "search" ||
    Object.values(config.profiles).some((profile) => profile.discovery.mode === "search")
  );
}

/**
 * Whether the gateway offers `switchboard__search_tools` and `switchboard__call_tool` at all: where
 * `gatewayTools.search` says so, else wherever an endpoint is in search mode.
 */
export function searchToolsOn(config: SearchToolsSettings): boolean {
  return config.gatewayTools.search ?? anySearchEndpoint(config);
}

/** An endpoint in search mode needs the search tools: `gatewayTools.search: false` contradicts it. */
export function checkDiscovery(config: SearchToolsSettings, ctx: z.RefinementCtx): void {
  if (config.gatewayTools.search !== false || !anySearchEndpoint(config)) return;
  ctx.addIssue({
    code: "custom",
    path: ["gatewayTools", "search"],
    message:
      'is false, but an endpoint has discovery "search", whose clients find tools only with them; ' +
      'leave gatewayTools.search out, or set that endpoint\'s discovery to "full"',
  });
}
