/**
 * Applying a new config to a running gateway, by the difference between its plan and the running
 * one (plan.ts): servers added start; servers whose launch settings changed get a new backend, started
 * and up (within `gateway.startupTimeoutMs`) before it takes over; then the new plan is swapped in at
 * once (policies, access rules, limits, auth, naming); then the backends no longer in the plan drain
 * their requests in flight (up to `gateway.shutdownTimeoutMs`) and stop. A server whose launch settings
 * did not change keeps its backend: its process, its state and its sessions.
 *
 * What a running gateway cannot take without a restart (its store, its HTTP listener, its audit sinks,
 * its observability) is left as it runs, and the report says so.
 */
import type { Config } from "../config/schema.ts";
import type { Backend } from "../core/types.ts";
import type { Logger } from "../observability/logger.ts";
import { canonicalJson } from "../stores/canonical-json.ts";
import { buildPlan, diffPlans, type Plan, type PlannedServer } from "./plan.ts";
import { EMBEDDED, type PlanState, type ServerEntry } from "./plan-state.ts";

export interface ReloadReport {
  readonly added: readonly string[];
  readonly removed: readonly string[];
  readonly restarted: readonly string[];
  readonly kept: readonly string[];
  /** Whether the policies, access rules, signing or argument limits changed. */
  readonly chainsChanged: boolean;
  /** Top-level sections that changed but take effect only at the next restart. */
  readonly needRestart: readonly string[];
  readonly durationMs: number;
}

export interface ReloaderDeps {
  readonly logger: Logger;
  readonly current: () => PlanState;
  readonly makeEntry: (server: PlannedServer) => ServerEntry;
  /** Starts a backend; resolves when it is up or failed its first attempt. */
  readonly start: (entry: ServerEntry) => Promise<void>;
  /** Makes the plan and these entries the running ones. */
  readonly swap: (plan: Plan, entries: readonly ServerEntry[]) => void;
  /** Resolves true once no request is in flight on `backend`, or false after `ms`. */
  readonly idle: (backend: Backend, ms: number) => Promise<boolean>;
}

/** The sections a running gateway takes only at its next start. */
const RESTART_SECTIONS = ["store", "server", "audit", "observability", "oauth"] as const;

export class Reloader {
  readonly #deps: ReloaderDeps;
  /** Reloads run one after another: each diffs against the plan the one before it left. */
  #queue: Promise<unknown> = Promise.resolve();

  constructor(deps: ReloaderDeps) {
    this.#deps = deps;
  }

  apply(config: Config): Promise<ReloadReport> {
    const run = this.#queue.then(() => this.#apply(config));
    this.#queue = run.catch(() => undefined);
    return run;
  }

  async #apply(config: Config): Promise<ReloadReport> {
    const started = performance.now();
    const deps = this.#deps;
    const running = deps.current();
    const next = buildPlan(config);
    const diff = diffPlans(running.plan, next);
    const needRestart = RESTART_SECTIONS.filter(
      (section) =>
        canonicalJson(running.plan.config[section] ?? null) !== canonicalJson(config[section] ?? null),
    );
    const timing = running.plan.config.gateway;

    // New backends first: a restarted server's new process is up before its old one goes.
    const fresh = new Map<string, ServerEntry>();
    for (const server of [...diff.added, ...diff.restarted]) fresh.set(server.name, deps.makeEntry(server));
    const restartedUp = diff.restarted.map((server) =>
      within(deps.start(fresh.get(server.name) as ServerEntry), timing.startupTimeoutMs),
    );
    for (const server of diff.added) {
      void deps.start(fresh.get(server.name) as ServerEntry).catch(() => undefined);
    }
    await Promise.all(restartedUp);

    const entries = next.servers.map((server) => {
      const made = fresh.get(server.name);
      if (made) return made;
      // Kept: the same backend, under its (possibly new) naming.
      const kept = running.byName.get(server.name) as ServerEntry;
      return { ...kept, naming: server.naming };
    });
    // Backends the embedding program gave, which no config names, stay.
    for (const entry of running.entries) {
      if (entry.launchKey === EMBEDDED && !entries.some((e) => e.name === entry.name)) entries.push(entry);
    }
    deps.swap(next, entries);

    // What left the plan drains its requests in flight, then stops.
    const leaving = [...diff.removed, ...diff.restarted].map((server) => running.byName.get(server.name));
    await Promise.all(
      leaving.map(async (entry) => {
        if (!entry) return;
        const drained = await deps.idle(entry.backend, timing.shutdownTimeoutMs);
        if (!drained) {
          deps.logger.warn(
            { server: entry.name, deadlineMs: timing.shutdownTimeoutMs },
            `server "${entry.name}" still had requests in flight at the reload's deadline; stopping it anyway`,
          );
        }
        await entry.backend
          .close()
          .catch((error: unknown) =>
            deps.logger.warn(
              { err: error, server: entry.name },
              `could not stop server "${entry.name}" cleanly`,
            ),
          );
      }),
    );

    const report: ReloadReport = {
      added: diff.added.map((s) => s.name),
      removed: diff.removed.map((s) => s.name),
      restarted: diff.restarted.map((s) => s.name),
      kept: diff.kept.map((s) => s.name),
      chainsChanged: diff.chainsChanged,
      needRestart,
      durationMs: Math.round(performance.now() - started),
    };
    if (needRestart.length > 0) {
      deps.logger.warn(
        { sections: needRestart },
        `the config's ${needRestart.join(", ")} changed; those take effect at the next restart (the rest is applied)`,
      );
    }
    return report;
  }
}

/** Resolves when `promise` settles or `ms` have passed. */
function within(promise: Promise<unknown>, ms: number): Promise<void> {
  let timer: NodeJS.Timeout | undefined;
  return Promise.race([
    promise.then(
      () => undefined,
      () => undefined,
    ),
    new Promise<void>((resolve) => {
      timer = setTimeout(resolve, ms);
    }),
  ]).finally(() => clearTimeout(timer));
}
