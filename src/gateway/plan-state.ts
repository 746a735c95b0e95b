/**
 * What the gateway runs for one plan: its servers' backends, the access rules, the principal of stdio
 * clients and the chains. A reload builds the next one and swaps it in whole, so that a request sees
 * one plan from start to end: a request in flight finishes under the chain (and the backend) it
 * started with; the next request uses the new ones.
 */
import type { AuditLog } from "../audit/index.ts";
import type { Backend, Principal, Store } from "../core/types.ts";
import type { Logger } from "../observability/logger.ts";
import type { PolicyRuntime } from "../policies/runtime.ts";
import { type AccessControl, createAccessControl } from "../security/access.ts";
import { createArgumentValidator } from "../security/arguments.ts";
import { stdioPrincipal } from "../security/auth.ts";
import { createSignatureVerifier } from "../security/signing.ts";
import type { Catalog, ServerNaming } from "./catalog.ts";
import { Chains, type InFlightRequests } from "./chains.ts";
import type { Observability } from "./observe.ts";
import { namingOf, type Plan, type PlannedServer } from "./plan.ts";
import { viewsOf } from "./profiles.ts";
import { Visibility } from "./visibility.ts";

/**
 * The launch key of a backend the embedding program gave that the config does not name: it is not in
 * any plan, so every reload keeps it as it is.
 */
export const EMBEDDED = "embedded";

export interface ServerEntry {
  readonly name: string;
  readonly naming: ServerNaming;
  readonly backend: Backend;
  /** The planned server's launch settings, to tell a kept backend from one to restart. */
  readonly launchKey: string;
}

/** A planned server on its backend. */
export function entryOf(server: PlannedServer, backend: Backend): ServerEntry {
  return { name: server.name, naming: server.naming, launchKey: server.launchKey, backend };
}

/**
 * The entries of a plan's servers: the backend the embedding program gave under a server's name, else
 * a new one; then the program's backends that no server names, each under its own name as a server
 * with no settings.
 */
export function entriesOf(
  plan: Plan,
  given: readonly Backend[],
  make: (server: PlannedServer) => Backend,
): ServerEntry[] {
  const entries = plan.servers.map((server) =>
    entryOf(server, given.find((b) => b.name === server.name) ?? make(server)),
  );
  for (const backend of given) {
    if (entries.some((entry) => entry.name === backend.name)) continue;
    entries.push({
      name: backend.name,
      naming: namingOf(backend.name, undefined),
      launchKey: EMBEDDED,
      backend,
    });
  }
  return entries;
}

export interface PlanState {
  readonly plan: Plan;
  readonly entries: readonly ServerEntry[];
  readonly byName: ReadonlyMap<string, ServerEntry>;
  /** Per-principal access rules (config `access`); undefined when everyone may call everything. */
  readonly access: AccessControl | undefined;
  /** The principal of local stdio clients (config `auth.stdioPrincipal`, else anonymous). */
  readonly stdioPrincipal: Principal;
  /** The chains of an endpoint ("" for the default one); undefined for a profile the plan has not. */
  chainsFor(profile: string): Chains | undefined;
  /** What a principal may see at an endpoint ("" for the default one); undefined as above. */
  visibilityFor(profile: string): Visibility | undefined;
  /** The catalog changed: chains and visibility are worked out again. */
  catalogChanged(): void;
}

export interface PlanStateDeps {
  readonly logger: Logger;
  readonly policies: PolicyRuntime;
  readonly observability: Observability;
  readonly audit: AuditLog;
  readonly store: Store;
  readonly replica: string | undefined;
  /** Requests in flight per server: one registry for every plan, so that a reload loses none. */
  readonly inFlight: InFlightRequests;
  /** The aggregated catalog now, and the server of a resource template in it. */
  readonly catalog: () => Catalog;
  readonly templateServer: (uriTemplate: string) => string | undefined;
}

export function planState(plan: Plan, entries: readonly ServerEntry[], deps: PlanStateDeps): PlanState {
  const config = plan.config;
  const byName = new Map(entries.map((e) => [e.name, e]));
  const access = config.access ? createAccessControl(config.access) : undefined;
  const views = viewsOf(config, access);
  const signatures = config.signing ? createSignatureVerifier(config.signing, deps.store) : undefined;
  const validator = createArgumentValidator({
    onCompileError: (schema, error) =>
      deps.logger.warn(
        { err: error, schema },
        "a tool's inputSchema does not compile; its calls are passed on without argument validation",
      ),
  });
  const uncached = new Set(
    plan.servers
      .filter(
        (s) =>
          s.source.kind === "gateway-tools" ||
          (s.source.kind === "mcp" && s.source.config.isolation === "session"),
      )
      .map((s) => s.name),
  );
  const chains = new Map<string, Chains>();
  const visibilities = new Map<string, Visibility>();
  for (const [name, view] of views) {
    visibilities.set(name, new Visibility(view, deps.catalog, deps.templateServer));
    chains.set(
      name,
      new Chains({
        profile: name,
        policies: deps.policies,
        observability: deps.observability,
        audit: deps.audit,
        access: view.access,
        signatures,
        validator,
        argumentLimits: config.argumentLimits,
        replica: deps.replica,
        // The backends of this plan: a request on its chain reaches the backend it was routed to, even
        // if a reload has since replaced that server's backend.
        backendOf: (server) => (byName.get(server) as ServerEntry).backend,
        uncached,
        inFlight: deps.inFlight,
      }),
    );
  }
  return {
    plan,
    entries,
    byName,
    access,
    stdioPrincipal: stdioPrincipal(config.auth),
    chainsFor: (profile) => chains.get(profile),
    visibilityFor: (profile) => visibilities.get(profile),
    catalogChanged() {
      for (const c of chains.values()) c.reset();
      for (const v of visibilities.values()) v.reset();
    },
  };
}
