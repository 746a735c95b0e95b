/**
 * A built-in backend whose module, and the driver it brings (pg and PGlite, ioredis, undici), is
 * loaded when the backend starts. A gateway then pays in memory and start-up time only for the
 * backends its config names: most configs have none of them, and the drivers together weigh tens of
 * megabytes.
 */

import { GatewayError } from "../core/errors.ts";
import {
  type Backend,
  type BackendCatalog,
  type BackendEvents,
  type BackendState,
  type CallContext,
  type CallToolResult,
  EMPTY_CATALOG,
  type GetPromptResult,
  type HealthResult,
  type ReadResourceResult,
  type ToolCall,
} from "../core/types.ts";

export class LazyBackend<B extends Backend = Backend> implements Backend {
  readonly name: string;
  readonly #load: () => Promise<B>;
  readonly #onLoaded: ((backend: B) => void) | undefined;
  #backend: B | undefined;
  #closed = false;

  constructor(name: string, load: () => Promise<B>, onLoaded?: (backend: B) => void) {
    this.name = name;
    this.#load = load;
    this.#onLoaded = onLoaded;
  }

  /** The backend itself, once loaded. */
  get loaded(): B | undefined {
    return this.#backend;
  }

  get state(): BackendState {
    return this.#backend?.state ?? (this.#closed ? "stopped" : "starting");
  }

  async start(events: BackendEvents): Promise<void> {
    this.#backend ??= await this.#load();
    this.#onLoaded?.(this.#backend);
    if (this.#closed) return;
    await this.#backend.start(events);
  }

  catalog(): BackendCatalog {
    return this.#backend?.catalog() ?? EMPTY_CATALOG;
  }

  callTool(call: ToolCall, ctx: CallContext): Promise<CallToolResult> {
    return this.#started().callTool(call, ctx);
  }

  readResource(uri: string, ctx: CallContext): Promise<ReadResourceResult> {
    return this.#started().readResource(uri, ctx);
  }

  getPrompt(
    name: string,
    args: Record<string, string> | undefined,
    ctx: CallContext,
  ): Promise<GetPromptResult> {
    return this.#started().getPrompt(name, args, ctx);
  }

  async health(signal: AbortSignal): Promise<HealthResult> {
    if (!this.#backend) return { status: "unhealthy", detail: "not started yet" };
    return this.#backend.health(signal);
  }

  async close(): Promise<void> {
    this.#closed = true;
    await this.#backend?.close();
  }

  #started(): B {
    if (this.#backend) return this.#backend;
    throw new GatewayError(
      "backend_unavailable",
      `Server "${this.name}" is still starting; try again in a moment.`,
      { data: { server: this.name } },
    );
  }
}
