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

/**
 * Signals whose controller a transport made for one request alone, handed over with it (`handOver`):
 * the gateway aborts that controller itself at the shutdown deadline, instead of forwarding the signal
 * to a controller of its own (on the hot path, an AbortController and two listeners less per call).
 */
const handedOver = new WeakMap<AbortSignal, AbortController>();

/** Handed-over signals the gateway aborted itself: their callers are answered, not cancelled. */
const abortedByGateway = new WeakSet<AbortSignal>();

/**
 * Whether the client cancelled the request of `signal` (no answer is sent), as opposed to the gateway
 * stopping it at its shutdown deadline (the caller gets the reason as its answer).
 */
export function cancelledByClient(signal: AbortSignal): boolean {
  return signal.aborted && !abortedByGateway.has(signal);
}

/** The signal of a controller made for one request alone, which the gateway may abort too. */
export function handOver(controller: AbortController): AbortSignal {
  handedOver.set(controller.signal, controller);
  return controller.signal;
}

export class RunningRequests {
  /** What abortAll aborts, with how many runs use each (a request's nested runs share its signal). */
  readonly #controllers = new Map<AbortController, number>();
  #count = 0;
  #drained: (() => void) | undefined;

  get count(): number {
    return this.#count;
  }

  /** Runs one request through its chain. */
  async run(handler: CallHandler, call: ToolCall, ctx: CallContext): Promise<ChainResult> {
    this.#count++;
    const own = handedOver.get(ctx.signal);
    if (own) {
      this.#hold(own);
      try {
        return await handler(call, ctx);
      } finally {
        this.#letGo(own);
      }
    }
    // The caller's signal, forwarded to one the gateway can abort too (at the shutdown deadline).
    const controller = new AbortController();
    const forward = () => controller.abort(ctx.signal.reason);
    if (ctx.signal.aborted) forward();
    else ctx.signal.addEventListener("abort", forward, { once: true });
    this.#hold(controller);
    try {
      return await handler(call, { ...ctx, signal: controller.signal });
    } finally {
      ctx.signal.removeEventListener("abort", forward);
      this.#letGo(controller);
    }
  }

  #hold(controller: AbortController): void {
    this.#controllers.set(controller, (this.#controllers.get(controller) ?? 0) + 1);
  }

  #letGo(controller: AbortController): void {
    const uses = (this.#controllers.get(controller) ?? 1) - 1;
    if (uses > 0) this.#controllers.set(controller, uses);
    else this.#controllers.delete(controller);
    this.#count--;
    if (this.#count === 0) this.#drained?.();
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
    for (const controller of this.#controllers.keys()) {
      if (handedOver.has(controller.signal)) abortedByGateway.add(controller.signal);
      controller.abort(reason);
    }
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
