/**
 * The replica bus: how a gateway replica reaches another one that holds what it cannot serve itself —
 * a call waiting for its client's answer, a session's standalone stream, a 2026-07-28 request
 * suspended for its client's answers. Each replica listens on a channel of its own id; messages for
 * every replica (a cancellation whose call may run anywhere, a session's changed log level) go on one
 * channel all replicas listen on. A message names its kind, the session it is about (if any) and a
 * JSON payload.
 *
 * Why the store's pub/sub rather than an HTTP hop between replicas: replicas need no address of each
 * other (none to configure, expose past the load balancer, or authenticate), and the store is already
 * shared, authenticated and watched by every replica. Delivery is at most once: what must survive a
 * lost message (a session's record) is kept in a store entry as well.
 *
 * Each replica also keeps a heartbeat entry that expires soon after it stops: a replica waiting on
 * another learns that the other is gone instead of waiting out its whole timeout.
 */
import { randomUUID } from "node:crypto";
import type { Store, Unsubscribe } from "../core/types.ts";
import type { Logger } from "../observability/logger.ts";

/** How often a replica renews its heartbeat, and how long the heartbeat lasts without renewal. */
const HEARTBEAT_EVERY_MS = 1_000;
const HEARTBEAT_TTL_MS = 4_000;

const BROADCAST_CHANNEL = "replicas:all";
const channelOf = (replica: string) => `replica:${replica}`;
const heartbeatKey = (replica: string) => `replica:${replica}:alive`;

export interface BusMessage {
  /** The replica that sent it. */
  readonly from: string;
  readonly kind: string;
  /** The 2025-era session it is about, if any. */
  readonly session?: string | undefined;
  readonly payload: unknown;
}

export type BusHandler = (message: BusMessage) => void;

export class ReplicaBus {
  /** This replica's id: unique per process, so a restarted replica is a new one. */
  readonly id: string = randomUUID();
  readonly #store: Store;
  readonly #log: Logger;
  readonly #handlers = new Map<string, Set<BusHandler>>();
  #subscriptions: Unsubscribe[] = [];
  #heartbeat: NodeJS.Timeout | undefined;
  #started: Promise<void> | undefined;

  constructor(store: Store, logger: Logger) {
    this.#store = store;
    this.#log = logger.child({ component: "replica-bus", replica: this.id });
  }

  /** Listens on this replica's channel and the common one, and starts the heartbeat. Idempotent. */
  start(): Promise<void> {
    this.#started ??= this.#start();
    return this.#started;
  }

  async #start(): Promise<void> {
    const deliver = (text: string) => this.#deliver(text);
    this.#subscriptions = await Promise.all([
      this.#store.subscribe(channelOf(this.id), deliver),
      this.#store.subscribe(BROADCAST_CHANNEL, (text, info) => {
        if (!info.fromSelf) deliver(text);
      }),
    ]);
    await this.#beat();
    this.#heartbeat = setInterval(() => void this.#beat(), HEARTBEAT_EVERY_MS);
    this.#heartbeat.unref();
  }

  /** Calls `handler` for every message of this kind; returns what stops it. */
  on(kind: string, handler: BusHandler): () => void {
    let handlers = this.#handlers.get(kind);
    if (!handlers) {
      handlers = new Set();
      this.#handlers.set(kind, handlers);
    }
    handlers.add(handler);
    return () => handlers.delete(handler);
  }

  /** Sends a message to one replica. Never rejects: a lost message is logged. */
  async send(to: string, kind: string, session: string | undefined, payload: unknown): Promise<void> {
    await this.#publish(channelOf(to), { from: this.id, kind, session, payload });
  }

  /** Sends a message to every other replica. Never rejects. */
  async broadcast(kind: string, session: string | undefined, payload: unknown): Promise<void> {
    await this.#publish(BROADCAST_CHANNEL, { from: this.id, kind, session, payload });
  }

  /** Whether a replica's heartbeat is current (a store that cannot say counts as alive). */
  async alive(replica: string): Promise<boolean> {
    if (replica === this.id) return true;
    try {
      return (await this.#store.get(heartbeatKey(replica))) !== undefined;
    } catch {
      return true;
    }
  }

  async close(): Promise<void> {
    clearInterval(this.#heartbeat);
    await Promise.allSettled(this.#subscriptions.map((stop) => stop()));
    this.#subscriptions = [];
    try {
      await this.#store.delete(heartbeatKey(this.id));
    } catch {
      // It expires by itself.
    }
  }

  async #beat(): Promise<void> {
    try {
      await this.#store.set(heartbeatKey(this.id), "1", { ttlMs: HEARTBEAT_TTL_MS });
    } catch (error) {
      this.#log.debug({ err: error }, "could not renew this replica's heartbeat");
    }
  }

  async #publish(channel: string, message: BusMessage): Promise<void> {
    try {
      await this.#store.publish(channel, JSON.stringify(message));
    } catch (error) {
      this.#log.warn(
        { err: error, kind: message.kind, session: message.session },
        "could not send a message to another replica; what it was for is lost",
      );
    }
  }

  #deliver(text: string): void {
    let message: BusMessage;
    try {
      message = JSON.parse(text) as BusMessage;
    } catch {
      return;
    }
    if (typeof message?.kind !== "string" || typeof message.from !== "string") return;
    for (const handler of this.#handlers.get(message.kind) ?? []) {
      try {
        handler(message);
      } catch (error) {
        this.#log.warn({ err: error, kind: message.kind }, "a replica bus message could not be handled");
      }
    }
  }
}
