/**
 * One downstream request that carries a call, as the SDK serves it: progress and log messages about
 * the call go out as notifications related to the request, so over HTTP they travel on that request's
 * response stream; `settled` holds the result back until they are written.
 */
import type { ServerContext } from "@modelcontextprotocol/server";
import type { BackendLogMessage, LoggingLevel, ProgressUpdate } from "../core/types.ts";
import { MCP_LOG_LEVELS } from "../core/types.ts";

/** How long a result waits after the last progress update (see `waitAfterProgress`). */
const PROGRESS_GAP_MS = 3;

/**
 * SDK clients dispatch notifications a microtask after responses, so a progress update that arrives in
 * the same read as the result is dropped. Every path that answers a call with progress waits here
 * until a moment has passed since its last update, so that the client reads it on its own.
 */
export async function waitAfterProgress(lastProgressAt: number | undefined): Promise<void> {
  if (lastProgressAt === undefined) return;
  const wait = PROGRESS_GAP_MS - (performance.now() - lastProgressAt);
  if (wait > 0) await new Promise((resolve) => setTimeout(resolve, wait));
}

const SEVERITY: ReadonlyMap<LoggingLevel, number> = new Map(
  MCP_LOG_LEVELS.map((level, index) => [level, index]),
);

/**
 * Whether a message at `level` passes a client's `threshold`. A 2025-era client that set no level gets
 * everything about its own calls, which is what the gateway always sent; a 2026-07-28 request without
 * a level asked for none, so `undefined` there is passed as "none" by the caller.
 */
export function passes(level: LoggingLevel, threshold: LoggingLevel | undefined): boolean {
  if (threshold === undefined) return true;
  return (SEVERITY.get(level) ?? 0) >= (SEVERITY.get(threshold) ?? 0);
}

export class Leg {
  readonly #ctx: ServerContext;
  readonly #progressToken: string | number | undefined;
  /** `null`: this request wants no log messages (a 2026-07-28 request that named no level). */
  readonly #logLevel: LoggingLevel | undefined | null;
  readonly #sending = new Set<Promise<void>>();
  #lastProgressAt: number | undefined;
  /** Set once the result may follow: nothing more can be sent about the call. */
  #answered = false;

  constructor(ctx: ServerContext, logLevel: LoggingLevel | undefined | null) {
    this.#ctx = ctx;
    this.#progressToken = ctx.mcpReq._meta?.progressToken;
    this.#logLevel = logLevel;
  }

  get wantsProgress(): boolean {
    return this.#progressToken !== undefined;
  }

  progress(update: ProgressUpdate): void {
    if (this.#progressToken === undefined || this.#answered) return;
    this.#send({
      method: "notifications/progress",
      params: { progressToken: this.#progressToken, ...update },
    });
    this.#lastProgressAt = performance.now();
  }

  /** False when the call was already answered: the message is then no longer the call's. */
  log(message: BackendLogMessage): boolean {
    if (this.#answered) return false;
    if (this.#logLevel === null || !passes(message.level, this.#logLevel)) return true;
    this.#send({ method: "notifications/message", params: { ...message } });
    return true;
  }

  /** Resolves when the call's notifications are written and the result may follow them. */
  async settled(): Promise<void> {
    if (this.#sending.size > 0) await Promise.all(this.#sending);
    await waitAfterProgress(this.#lastProgressAt);
    this.#answered = true;
  }

  #send(notification: { method: string; params: Record<string, unknown> }): void {
    const sent = this.#ctx.mcpReq.notify(notification).catch(() => undefined);
    this.#sending.add(sent);
    void sent.finally(() => this.#sending.delete(sent));
  }
}
