/**
 * What a config means for a running gateway, worked out by a pure function: the servers to run (each
 * with its naming and what starting it depends on), the policy rules, who may call what, and the
 * settings the gateway reads while it runs. A running gateway applies a plan; a second plan, built
 * from an edited config, can be compared with the running one (`diffPlans`) to apply only what
 * changed.
 */

import { searchToolsOn } from "../config/profiles.ts";
import type { AnyServerConfig, BuiltinBackendConfig, Config, ServerConfig } from "../config/schema.ts";
import { GATEWAY_TOOLS_SERVER } from "../config/schema.ts";
import type { PolicyRuntimeConfig } from "../policies/runtime.ts";
import { canonicalJson } from "../stores/canonical-json.ts";
import type { ServerNaming } from "./naming.ts";

/** Where a server's backend comes from. */
export type ServerSource =
  | { readonly kind: "mcp"; readonly config: ServerConfig }
  | { readonly kind: "builtin"; readonly config: BuiltinBackendConfig }
  | {
      readonly kind: "gateway-tools";
      readonly health: boolean;
      readonly metrics: boolean;
      readonly search: boolean;
    };

export interface PlannedServer {
  readonly name: string;
  readonly naming: ServerNaming;
  readonly source: ServerSource;
  /**
   * What starting the backend depends on (command, arguments, environment, URL, headers, driver
   * settings…), as canonical JSON: two plans whose servers have the same key can keep the running
   * backend, its process and its state. Naming and policies are not part of it: they change what the
   * gateway does with the backend, not the backend.
   */
  readonly launchKey: string;
}

export interface Plan {
  readonly config: Config;
  /** Enabled servers in config order (MCP servers, then built-ins, then the gateway's own tools). */
  readonly servers: readonly PlannedServer[];
  readonly policies: PolicyRuntimeConfig;
}

/** MCP servers and built-in backends: one namespace of names (the config checks it). */
export function allServers(config: Config): [string, AnyServerConfig][] {
  return [...Object.entries(config.mcpServers), ...Object.entries(config.backends)];
}

export function namingOf(name: string, server: AnyServerConfig | undefined): ServerNaming {
  return {
    server: name,
    prefix: server?.prefix ?? name,
    include: server?.tools.include ?? [],
    exclude: server?.tools.exclude ?? [],
    rename: server?.tools.rename ?? {},
    descriptions: server?.tools.descriptions ?? {},
  };
}

export function buildPlan(config: Config): Plan {
  const servers: PlannedServer[] = [];
  for (const [name, server] of allServers(config)) {
    if (!server.enabled) continue;
    servers.push({
      name,
      naming: namingOf(name, server),
      // One namespace of names: a name is either a built-in backend's or an MCP server's.
      source: Object.hasOwn(config.backends, name)
        ? { kind: "builtin", config: server as BuiltinBackendConfig }
        : { kind: "mcp", config: server as ServerConfig },
      launchKey: launchKeyOf(server),
    });
  }
  const own = { health: config.gatewayTools.health, metrics: config.gatewayTools.metrics };
  const search = searchToolsOn(config);
  if (own.health || own.metrics || search) {
    servers.push({
      name: GATEWAY_TOOLS_SERVER,
      naming: { ...namingOf(GATEWAY_TOOLS_SERVER, undefined), prefix: GATEWAY_TOOLS_SERVER },
      source: { kind: "gateway-tools", ...own, search },
      launchKey: canonicalJson({ ...own, search }),
    });
  }
  return {
    config,
    servers,
    policies: {
      policies: config.policies,
      servers: Object.fromEntries(
        allServers(config).map(([name, s]) => [name, { policies: s.policies, timeoutMs: s.timeoutMs }]),
      ),
      toolPolicies: config.toolPolicies,
      profiles: Object.fromEntries(
        Object.entries(config.profiles).map(([name, p]) => [
          name,
          { policies: p.policies, toolPolicies: p.toolPolicies },
        ]),
      ),
    },
  };
}

/** The settings of a server that its backend is started with (what is not naming or policy). */
function launchKeyOf(server: AnyServerConfig): string {
  const { prefix: _prefix, tools: _tools, policies: _policies, enabled: _enabled, ...launch } = server;
  return canonicalJson(launch);
}

export interface PlanDiff {
  /** Servers only the next plan has: start them. */
  readonly added: readonly PlannedServer[];
  /** Servers only the running plan has: drain and stop them. */
  readonly removed: readonly PlannedServer[];
  /** Servers in both whose launch settings differ: restart them. */
  readonly restarted: readonly PlannedServer[];
  /** Servers in both with the same launch settings: keep the running backend (naming may differ). */
  readonly kept: readonly PlannedServer[];
  /** Whether anything the chains are built from changed (policies, access, signing, limits). */
  readonly chainsChanged: boolean;
}

/** What applying `next` over `running` takes. */
export function diffPlans(running: Plan, next: Plan): PlanDiff {
  const before = new Map(running.servers.map((s) => [s.name, s]));
  const after = new Map(next.servers.map((s) => [s.name, s]));
  const added: PlannedServer[] = [];
  const restarted: PlannedServer[] = [];
  const kept: PlannedServer[] = [];
  for (const server of next.servers) {
    const old = before.get(server.name);
    if (!old) added.push(server);
    else if (old.launchKey !== server.launchKey) restarted.push(server);
    else kept.push(server);
  }
  const removed = running.servers.filter((s) => !after.has(s.name));
  const chainKey = (plan: Plan) =>
    canonicalJson({
      policies: plan.policies,
      access: plan.config.access ?? null,
      signing: plan.config.signing ?? null,
      argumentLimits: plan.config.argumentLimits,
    });
  return { added, removed, restarted, kept, chainsChanged: chainKey(running) !== chainKey(next) };
}
