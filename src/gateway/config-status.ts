/**
 * Whether the config the gateway runs is the one in its file. After a reload that was refused (the
 * file does not load or validate), the gateway keeps running its last good config, and says so: in a
 * health check of its own ("config": degraded, with the reason), in `/healthz` and `/readyz`'s report,
 * and in a metric. The check is not required, so a bad file rolled out to every replica does not take
 * them all out of a load balancer: they keep serving the config they had.
 */
import type { HealthResult } from "../core/types.ts";
import type { HealthCheck } from "../observability/health.ts";
import type { ReloadReport } from "./reload.ts";

export interface ConfigReloadState {
  /** When the running config was applied (start or last good reload), ISO 8601. */
  readonly appliedAt: string;
  /** The last reload's report, when there was one that applied. */
  readonly lastApplied?: ReloadReport;
  /** Set while the file holds a config the gateway refused: why, and when it was tried. */
  readonly stale?: { readonly reason: string; readonly at: string };
}

export class ConfigStatus {
  #state: ConfigReloadState = { appliedAt: new Date().toISOString() };

  get state(): ConfigReloadState {
    return this.#state;
  }

  applied(report: ReloadReport): void {
    this.#state = { appliedAt: new Date().toISOString(), lastApplied: report };
  }

  refused(reason: string): void {
    this.#state = { ...this.#state, stale: { reason, at: new Date().toISOString() } };
  }

  check(): HealthCheck {
    return {
      name: "config",
      kind: "process",
      required: false,
      run: (): HealthResult => {
        const { stale, appliedAt } = this.#state;
        return stale
          ? {
              status: "degraded",
              detail: `config stale: the file was refused at ${stale.at} (${stale.reason}); running the config applied at ${appliedAt}`,
              data: { appliedAt, refusedAt: stale.at },
            }
          : { status: "healthy", data: { appliedAt } };
      },
    };
  }
}
