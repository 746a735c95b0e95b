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
function startedWithin(started: Promise<unknown>, ms: number): Promise<void> {
  let timer: NodeJS.Timeout | undefined;
  return Promise.race([
    started.then(() => undefined),
    new Promise<void>((resolve) => {
      timer = setTimeout(resolve, ms);
      timer.unref();
    }),
  ]).finally(() => clearTimeout(timer));
}

export interface StartupGates {
  readonly firstList: Promise<void>;
  readonly ended: Promise<void>;
}

/**
 * What requests wait for while the servers start. A client's first list waits until every server has
 * had its first start attempt, or until `startupWaitMs` has passed since `waitFrom` (a
 * `performance.now()` time; the CLI passes the process's start): servers up later are announced with
 * list_changed. A call to a tool not listed yet names what it wants, so it waits for the start to end,
 * within `startupTimeoutMs`. Both wait for the store's first connection.
 */
export function startupGates(
  started: Promise<unknown>,
  storeReady: Promise<unknown>,
  timing: { readonly startupWaitMs: number; readonly startupTimeoutMs: number },
  waitFrom?: number,
): StartupGates {
  const waited = waitFrom === undefined ? 0 : Math.max(0, performance.now() - waitFrom);
  const gate = (ms: number) => Promise.all([startedWithin(started, ms), storeReady]).then(() => undefined);
  return {
    firstList: gate(Math.max(0, timing.startupWaitMs - waited)),
    ended: gate(timing.startupTimeoutMs),
  };
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
