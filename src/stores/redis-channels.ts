/**
 * The Redis store's pub/sub: the channels it wants to be subscribed to and those Redis confirmed,
 * subscribed again whenever the pub/sub connection is (re)made, since a new connection has none.
 * A message carries its sender's store id before a newline, so that a replica tells its own
 * messages from others'. Store channels are `<prefix>c:<channel>`; the store's own channels (the
 * lock releases) are listened to raw.
 */
import type { Redis } from "ioredis";
import type { StoreMessageHandler, Unsubscribe } from "../core/types.ts";
import { ChannelHandlers } from "./contract.ts";
import type { ListenerErrorEvent } from "./events.ts";
import { isTimeout } from "./redis-connection.ts";

export interface RedisChannelsOptions {
  readonly prefix: string;
  /** This store's id, sent with every message it publishes. */
  readonly id: string;
  /** A message handler threw. */
  readonly onListenerError: (event: ListenerErrorEvent) => void;
  /** Every wanted channel is subscribed again (after a reconnect). */
  readonly onResubscribed: () => void;
}

export class RedisChannels {
  readonly #subscriber: Redis;
  readonly #options: RedisChannelsOptions;
  /** Redis channels this store wants to be subscribed to, and those Redis confirmed. */
  readonly #wanted = new Set<string>();
  readonly #active = new Set<string>();
  readonly #handlers = new ChannelHandlers();
  /** The store's own channels, by name: their payloads go to one function, unframed. */
  readonly #raw = new Map<string, (payload: string) => void>();
  #closed = false;

  constructor(subscriber: Redis, options: RedisChannelsOptions) {
    this.#subscriber = subscriber;
    this.#options = options;
  }

  /** Wants `channel` (a Redis channel name, no prefix added) and hands its payloads to `onPayload`. */
  listen(channel: string, onPayload: (payload: string) => void): void {
    this.#raw.set(channel, onPayload);
    this.#wanted.add(channel);
  }

  /** Whether Redis confirmed the subscription to `channel` on the current connection. */
  isActive(channel: string): boolean {
    return this.#active.has(channel);
  }

  /** The Redis channel and payload that publish `message` on the store channel `channel`. */
  frame(channel: string, message: string): [redisChannel: string, payload: string] {
    return [this.#channel(channel), `${this.#options.id}\n${message}`];
  }

  /**
   * Never fails for want of Redis: the subscription is (re)made whenever the pub/sub connection is
   * up. It resolves once Redis confirmed it, or at once while disconnected.
   */
  async subscribe(channel: string, handler: StoreMessageHandler): Promise<Unsubscribe> {
    const redisChannel = this.#channel(channel);
    const subscription = this.#handlers.add(redisChannel, handler);
    if (!this.#wanted.has(redisChannel)) {
      this.#wanted.add(redisChannel);
      if (this.#subscriber.status === "ready") {
        try {
          await this.#subscriber.subscribe(redisChannel);
          this.#active.add(redisChannel);
        } catch {
          // Resubscribed on the next 'ready'.
        }
      }
    }
    return async () => {
      if (!this.#handlers.remove(redisChannel, subscription)) return;
      this.#wanted.delete(redisChannel);
      this.#active.delete(redisChannel);
      if (this.#closed || this.#subscriber.status !== "ready") return;
      try {
        await this.#subscriber.unsubscribe(redisChannel);
      } catch {
        // A stale subscription only costs messages that nobody handles.
      }
    };
  }

  /** Forgets every handler: the store closes. */
  close(): void {
    this.#closed = true;
    this.#handlers.clear();
  }

  /** The pub/sub connection closed: no subscription holds any more. */
  disconnected(): void {
    this.#active.clear();
  }

  /** Subscribes to every wanted channel on a new connection. */
  async resubscribe(): Promise<void> {
    const channels = [...this.#wanted];
    try {
      await this.#subscriber.subscribe(...channels);
      for (const channel of channels) if (this.#wanted.has(channel)) this.#active.add(channel);
    } catch (error) {
      // The connection dropped again, or is dead without TCP knowing (then it is replaced); the next
      // 'ready' tries again.
      if (isTimeout(error) && this.#subscriber.status === "ready") this.#subscriber.disconnect(true);
      return;
    }
    this.#options.onResubscribed();
  }

  onMessage(channel: string, payload: string): void {
    const raw = this.#raw.get(channel);
    if (raw) {
      raw(payload);
      return;
    }
    const subscribers = this.#handlers.get(channel);
    if (!subscribers) return;
    const newline = payload.indexOf("\n");
    // A message published by something other than a store (e.g. redis-cli) has no sender id.
    const sender = newline >= 0 ? payload.slice(0, newline) : "";
    const message = newline >= 0 ? payload.slice(newline + 1) : payload;
    const info = { fromSelf: sender === this.#options.id };
    const name = channel.slice(`${this.#options.prefix}c:`.length);
    for (const subscriber of [...subscribers]) {
      try {
        subscriber.handler(message, info);
      } catch (error) {
        this.#options.onListenerError({ channel: name, error });
      }
    }
  }

  #channel(channel: string): string {
    return `${this.#options.prefix}c:${channel}`;
  }
}
