/**
 * The requests the gateway is running: counted, so that shutdown can wait for them (`drain`), and each
 * with a signal the gateway can abort too, so that shutdown can answer those still running at its
 * deadline (`abortAll`) instead of dropping their connections unanswered.
 */
import { randomUUID } from "node:crypto";
import {
  ANONYMOUS,
  type CallContext,
  type CallerChannel,
  type CallHandler,
  type ChainResult,
  type Principal,
  type ProgressUpdate,
  type ToolCall,
} from "../core/types.ts";

/** What a transport hands the gateway with each request. */
export interface RequestOptions {
  readonly principal?: Principal;
  readonly signal?: AbortSignal;
  readonly meta?: Readonly<Record<string, unknown>>;
  readonly onProgress?: (update: ProgressUpdate) => void;
  readonly requestId?: string;
  /** The calling client, for backends that ask it for sampling or elicitation during a call. */
  readonly client?: CallerChannel;
  readonly transport?: "stdio" | "http";
  /** The profile whose endpoint the request came to (config `profiles`); absent for the default one. */
  readonly profile?: string;
  /** The client session it belongs to (see CallContext.session). */
  readonly session?: string;
}

export class RunningRequests {
  readonly #controllers = new Set<AbortController>();
  #count = 0;
  #drained: (() => void) | undefined;

  get count(): number {
    return this.#count;
  }

  /** Runs one request through its chain. */
  async run(handler: CallHandler, call: ToolCall, ctx: CallContext): Promise<ChainResult> {
    this.#count++;
    // The caller's signal, forwarded to one the gateway can abort too (at the shutdown deadline).
    const controller = new AbortController();
    const forward = () => controller.abort(ctx.signal.reason);
    if (ctx.signal.aborted) forward();
    else ctx.signal.addEventListener("abort", forward, { once: true });
    this.#controllers.add(controller);
    try {
      return await handler(call, { ...ctx, signal: controller.signal });
    } finally {
      ctx.signal.removeEventListener("abort", forward);
      this.#controllers.delete(controller);
      this.#count--;
      if (this.#count === 0) this.#drained?.();
    }
  }

  /** Waits for the requests in flight to finish, up to `deadlineMs`. Resolves true when all finished. */
  async drain(deadlineMs: number): Promise<boolean> {
    if (this.#count === 0) return true;
    let timer: NodeJS.Timeout | undefined;
    const finished = await Promise.race([
      new Promise<boolean>((resolve) => {
        this.#drained = () => resolve(true);
      }),
      new Promise<boolean>((resolve) => {
        timer = setTimeout(() => resolve(false), deadlineMs);
      }),
    ]);
    clearTimeout(timer);
    return finished;
  }

  /** Stops every request still running with `reason`: each caller is answered with it. */
  abortAll(reason: unknown): void {
    for (const controller of this.#controllers) controller.abort(reason);
  }
}

/** A request's context, from what its transport handed over. */
export function contextOf(options: RequestOptions): CallContext {
  return {
    requestId: options.requestId ?? randomUUID(),
    signal: options.signal ?? new AbortController().signal,
    principal: options.principal ?? ANONYMOUS,
    meta: options.meta ?? {},
    notes: new Map(),
    ...(options.onProgress ? { onProgress: options.onProgress } : {}),
    ...(options.client ? { client: options.client } : {}),
    ...(options.transport ? { transport: options.transport } : {}),
    ...(options.profile ? { profile: options.profile } : {}),
    ...(options.session ? { session: options.session } : {}),
  };
}
