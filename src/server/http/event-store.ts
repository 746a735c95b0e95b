/**
 * What a 2025-era session keeps of the SSE events it sent, so that a client whose stream dropped can
 * reconnect with `Last-Event-ID` and get what it missed. Handing the SDK's Streamable HTTP transport an
 * event store is also what makes it open every SSE stream with a priming event (an id, empty data and
 * the `retry` interval), which is how a client learns it may resume at all.
 *
 * The memory is bounded, per session: at most `maxEventsPerStream` events of one stream and
 * `maxBytes` of messages in all; the oldest go first. A message larger than `maxBytes` is sent but not
 * kept: only its id is, so a client can resume after it, and its stream's earlier events are dropped.
 * Either way a client that comes back after what it needs was dropped is told its event id is unknown
 * (the SDK answers 400) rather than handed a stream with a gap in it.
 *
 * When replicas share sessions, an event id also names the replica that sent it and the request its
 * stream answers (see stream-ids.ts): a client that resumes through another replica can be told what
 * became of its request.
 */
import type { EventId, EventStore, JSONRPCMessage, StreamId } from "@modelcontextprotocol/server";
import { type EventIdNaming, eventIdOf } from "./stream-ids.ts";

export interface EventStoreLimits {
  readonly maxEventsPerStream: number;
  readonly maxBytes: number;
}

interface StoredEvent {
  readonly streamId: StreamId;
  readonly seq: number;
  /** Undefined for a priming event (nothing to replay) and for a message too large to keep. */
  readonly message: JSONRPCMessage | undefined;
  readonly bytes: number;
}

export class BoundedEventStore implements EventStore {
  readonly #limits: EventStoreLimits;
  /** Every kept event, oldest first (a Map iterates in insertion order). */
  readonly #events = new Map<EventId, StoredEvent>();
  /** The kept event ids of each stream, oldest first. */
  readonly #streams = new Map<StreamId, EventId[]>();
  /** The request each stream answers, when ids name it (see EventIdNaming). */
  readonly #requests = new Map<StreamId, string | number>();
  readonly #naming: EventIdNaming | undefined;
  #bytes = 0;
  #seq = 0;

  constructor(limits: EventStoreLimits, naming?: EventIdNaming) {
    this.#limits = limits;
    this.#naming = naming;
  }

  /** Bytes of messages kept, for tests and diagnostics. */
  get bytes(): number {
    return this.#bytes;
  }

  /** Events kept, priming events included. */
  get size(): number {
    return this.#events.size;
  }

  async storeEvent(streamId: StreamId, message: JSONRPCMessage): Promise<EventId> {
    const seq = ++this.#seq;
    // The SDK stores an empty object for the priming event: it only marks where the stream starts.
    const priming = Object.keys(message).length === 0;
    const naming = this.#naming;
    if (naming && priming) {
      const request = naming.requestBeingServed();
      if (request !== undefined) this.#requests.set(streamId, request);
    }
    const eventId = naming ? eventIdOf(naming.replica, seq, this.#requests.get(streamId)) : `${seq}`;
    const bytes = priming ? 0 : Buffer.byteLength(JSON.stringify(message));
    const kept = !priming && bytes <= this.#limits.maxBytes;
    this.#events.set(eventId, {
      streamId,
      seq,
      message: kept ? message : undefined,
      bytes: kept ? bytes : 0,
    });
    this.#bytes += kept ? bytes : 0;
    const ids = this.#streams.get(streamId) ?? [];
    // Replaying across a message that was not kept would leave a hole: resuming before it is refused.
    if (!priming && !kept) for (const earlier of [...ids]) this.#drop(earlier);
    ids.push(eventId);
    this.#streams.set(streamId, ids);
    while (ids.length > this.#limits.maxEventsPerStream) this.#drop(ids[0] as EventId);
    for (const oldest of this.#events.keys()) {
      if (this.#bytes <= this.#limits.maxBytes) break;
      this.#drop(oldest);
    }
    return eventId;
  }

  async getStreamIdForEventId(eventId: EventId): Promise<StreamId | undefined> {
    return this.#events.get(eventId)?.streamId;
  }

  async replayEventsAfter(
    lastEventId: EventId,
    { send }: { send: (eventId: EventId, message: JSONRPCMessage) => Promise<void> },
  ): Promise<StreamId> {
    const last = this.#events.get(lastEventId);
    // Not reached through the SDK, which asks getStreamIdForEventId first and refuses unknown ids.
    if (last === undefined) throw new Error(`unknown event id ${lastEventId}`);
    for (const eventId of [...(this.#streams.get(last.streamId) ?? [])]) {
      const event = this.#events.get(eventId);
      if (event !== undefined && event.seq > last.seq && event.message !== undefined) {
        await send(eventId, event.message);
      }
    }
    return last.streamId;
  }

  #drop(eventId: EventId): void {
    const event = this.#events.get(eventId);
    if (event === undefined) return;
    this.#events.delete(eventId);
    this.#bytes -= event.bytes;
    const ids = this.#streams.get(event.streamId);
    if (ids === undefined) return;
    const at = ids.indexOf(eventId);
    if (at >= 0) ids.splice(at, 1);
    if (ids.length === 0) {
      this.#streams.delete(event.streamId);
      this.#requests.delete(event.streamId);
    }
  }
}
