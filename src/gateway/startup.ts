/**
 * A gateway's start: its servers start in parallel; clients may be served before all are up (within
 * `gateway.startupWaitMs` their lists wait), and the start itself ends at `gateway.startupTimeoutMs`
 * with a report of what is up and what is not.
 */
import type { Backend } from "../core/types.ts";
import type { Logger } from "../observability/logger.ts";
import type { Catalog } from "./catalog.ts";
import type { ServerEntry } from "./plan-state.ts";

/** Resolves when `started` does or when `ms` have passed, whichever is first. */
export function startedWithin(started: Promise<unknown>, ms: number): Promise<void> {
  let timer: NodeJS.Timeout | undefined;
  return Promise.race([
    started.then(() => undefined),
    new Promise<void>((resolve) => {
      timer = setTimeout(resolve, ms);
      timer.unref();
    }),
  ]).finally(() => clearTimeout(timer));
}

/** Logs each server not up (and whether it is retried), then the gateway's readiness. */
export function reportStartup(logger: Logger, entries: readonly ServerEntry[], catalog: Catalog): void {
  const down = entries.filter((e) => e.backend.state !== "up");
  for (const entry of down) {
    const backend = entry.backend as Backend & { lastError?: string; gaveUp?: boolean };
    logger.warn(
      { server: entry.name, state: backend.state, reason: backend.lastError ?? backend.state },
      backend.gaveUp
        ? `server "${entry.name}" is not up and will not be retried; serving the others`
        : `server "${entry.name}" is not up yet; serving the others and retrying it in the background`,
    );
  }
  logger.info(
    {
      servers: entries.length,
      up: entries.length - down.length,
      tools: catalog.tools().length,
      resources: catalog.resources().length,
      prompts: catalog.prompts().length,
    },
    "gateway ready",
  );
}
