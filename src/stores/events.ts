/**
 * The events stores emit. Apart from the stores (and from index.ts, which builds them) so that each
 * store can name them without importing the module that imports it.
 */
import type { HealthResult } from "../core/types.ts";
import type { StoreUse } from "./config.ts";

/** An entry that was not stored. */
export interface StoreSkipEvent {
  readonly key: string;
  readonly reason: "value_too_large";
  readonly bytes: number;
  readonly maxValueBytes: number;
}

export interface ListenerErrorEvent {
  readonly channel: string;
  readonly error: unknown;
}

/** A store that fails open for one use, serving that use from the replica's own memory. */
export interface StoreFallbackEvent {
  readonly use: StoreUse;
  readonly op: string;
  readonly reason: string;
}

/**
 * Events of the Redis store and of the resilient wrapper (the memory store has none). There is no
 * "error" event on purpose: Node throws an "error" event that nobody listens to.
 */
export interface StoreEventMap {
  /** The store's health changed (e.g. Redis went away, or came back). */
  state: [HealthResult];
  /** A value was not stored (and any older value under its key was dropped). */
  skipped: [StoreSkipEvent];
  /** A message handler threw. */
  listenerError: [ListenerErrorEvent];
  /** Resilient store only: one operation was served by local memory (fail-open). */
  fallback: [StoreFallbackEvent];
}
