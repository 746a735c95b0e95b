/**
 * Caps the calls running at once against one server, with a bounded FIFO queue behind the cap. One
 * slow backend then fills its own bulkhead instead of every socket and every caller of the gateway.
 * Overflow, and a wait in the queue longer than `maxQueueWaitMs`, fail fast with `bulkhead_full`.
 */
import { GatewayError } from "../core/errors.ts";
import type { Policy } from "../core/types.ts";
import type { BulkheadOptions } from "./config.ts";
import { NOTES, type PolicyEnv, type ToolBinding } from "./types.ts";
import { cancelledError } from "./util.ts";

interface Waiter {
  readonly grant: () => void;
  readonly fail: (error: unknown) => void;
}

export class Bulkhead {
  readonly server: string;
  readonly options: BulkheadOptions;
  #running = 0;
  readonly #queue: Waiter[] = [];

  constructor(server: string, options: BulkheadOptions) {
    this.server = server;
    this.options = options;
  }

  get running(): number {
    return this.#running;
  }

  get queued(): number {
    return this.#queue.length;
  }

  /**
   * Resolves when the caller holds a slot (call `release` exactly once afterwards). Rejects with
   * `bulkhead_full` on overflow or a too-long wait, with `cancelled` if the caller leaves first.
   */
  acquire(signal: AbortSignal, binding: ToolBinding): Promise<"now" | "queued"> {
    if (signal.aborted) return Promise.reject(cancelledError(binding));
    if (this.#running < this.options.maxConcurrent) {
      this.#running++;
      return Promise.resolve("now");
    }
    if (this.#queue.length >= this.options.maxQueue) {
      return Promise.reject(this.#full(binding, "its queue is full"));
    }
    return new Promise((resolve, reject) => {
      const leave = () => {
        clearTimeout(timer);
        signal.removeEventListener("abort", onAbort);
        const index = this.#queue.indexOf(waiter);
        if (index >= 0) this.#queue.splice(index, 1);
      };
      const onAbort = () => {
        leave();
        reject(cancelledError(binding));
      };
      const timer = setTimeout(() => {
        leave();
        reject(this.#full(binding, `the call waited ${this.options.maxQueueWaitMs} ms in its queue`));
      }, this.options.maxQueueWaitMs);
      const waiter: Waiter = {
        grant: () => {
          clearTimeout(timer);
          signal.removeEventListener("abort", onAbort);
          resolve("queued");
        },
        fail: (error) => {
          leave();
          reject(error);
        },
      };
      signal.addEventListener("abort", onAbort, { once: true });
      this.#queue.push(waiter);
    });
  }

  release(): void {
    const waiter = this.#queue.shift();
    // The slot passes straight to the next waiter, so `running` does not change and nobody can
    // slip in between.
    if (waiter) waiter.grant();
    else this.#running--;
  }

  /** Fails every queued call (used on shutdown). */
  drain(error: unknown): void {
    for (const waiter of [...this.#queue]) waiter.fail(error);
  }

  #full(binding: ToolBinding, why: string): GatewayError {
    const { maxConcurrent, maxQueue } = this.options;
    return new GatewayError(
      "bulkhead_full",
      `Server "${this.server}" is at its concurrency limit (at most ${maxConcurrent} calls at once and ` +
        `${maxQueue} waiting) and ${why}; "${binding.exposedName}" was not called. Try again shortly.`,
      {
        data: {
          server: this.server,
          tool: binding.exposedName,
          maxConcurrent,
          maxQueue,
          running: this.#running,
          queued: this.#queue.length,
        },
      },
    );
  }
}

export function bulkheadPolicy(bulkhead: Bulkhead, env: PolicyEnv): Policy {
  const { server, exposedName } = env.binding;
  return (next) => async (call, ctx) => {
    const queuedAt = env.now();
    const mustQueue = bulkhead.running >= bulkhead.options.maxConcurrent;
    if (mustQueue) {
      env.emit("bulkhead", {
        server,
        tool: exposedName,
        outcome: bulkhead.queued >= bulkhead.options.maxQueue ? "rejected" : "queued",
        running: bulkhead.running,
        queued: bulkhead.queued,
      });
    }
    const how = await bulkhead.acquire(ctx.signal, env.binding);
    if (how === "queued") ctx.notes.set(NOTES.queuedMs, env.now() - queuedAt);
    try {
      return await next(call, ctx);
    } finally {
      bulkhead.release();
    }
  };
}
