/**
 * The console's one live stream: Server-Sent Events to every open console, each event serialized once
 * for all of them. The first console to connect and the last to leave are told (`onFirst`, `onLast`),
 * so that what costs something while watched runs only then.
 */
import type { ServerResponse } from "node:http";
import { SECURITY_HEADERS } from "./assets.ts";

/** A comment line this often keeps proxies and browsers from closing an idle stream. */
const HEARTBEAT_MS = 15_000;
/** A console that reads slower than the stream writes is dropped past this much unsent data; it reconnects. */
const MAX_BUFFERED_BYTES = 1024 * 1024;
/** How long a browser waits before it reconnects after the stream broke, in ms. */
const RETRY_MS = 2_000;

export interface ConsoleEvent {
  readonly event: string;
  readonly data: unknown;
}

export class EventStreams {
  readonly #clients = new Set<ServerResponse>();
  readonly #onFirst: () => void;
  readonly #onLast: () => void;
  #heartbeat: NodeJS.Timeout | undefined;

  constructor(onFirst: () => void, onLast: () => void) {
    this.#onFirst = onFirst;
    this.#onLast = onLast;
  }

  get size(): number {
    return this.#clients.size;
  }

  /** Starts a stream on `res`: `first` are its first events (what the page needs before any update). */
  open(res: ServerResponse, first: readonly ConsoleEvent[]): void {
    res.writeHead(200, {
      ...SECURITY_HEADERS,
      "content-type": "text/event-stream; charset=utf-8",
      "cache-control": "no-store",
      connection: "keep-alive",
      // Proxies that buffer responses (nginx) would hold the events back.
      "x-accel-buffering": "no",
    });
    res.write(`retry: ${RETRY_MS}\n\n`);
    const wasEmpty = this.#clients.size === 0;
    this.#clients.add(res);
    res.once("close", () => this.#leave(res));
    if (wasEmpty) {
      this.#onFirst();
      this.#heartbeat = setInterval(() => this.#write(": ping\n\n"), HEARTBEAT_MS);
      this.#heartbeat.unref();
    }
    for (const { event, data } of first) res.write(frame(event, data));
  }

  /** Sends one event to every open console. */
  send(event: string, data: unknown): void {
    if (this.#clients.size === 0) return;
    this.#write(frame(event, data));
  }

  /** Ends every stream (the gateway is closing). */
  close(): void {
    for (const res of [...this.#clients]) res.end();
  }

  #write(text: string): void {
    for (const res of this.#clients) {
      if (res.writableLength > MAX_BUFFERED_BYTES) {
        res.destroy();
        continue;
      }
      res.write(text);
    }
  }

  #leave(res: ServerResponse): void {
    if (!this.#clients.delete(res) || this.#clients.size > 0) return;
    clearInterval(this.#heartbeat);
    this.#heartbeat = undefined;
    this.#onLast();
  }
}

function frame(event: string, data: unknown): string {
  // JSON.stringify writes no raw newline, so one data line carries the whole event.
  return `event: ${event}\ndata: ${JSON.stringify(data)}\n\n`;
}
