/**
 * What makes a replica's 2025-era sessions part of one set shared by every replica of a store: their
 * records (session-record.ts), and the replica bus messages about them (gateway/replica-bus.ts):
 *
 * - `client-response`: a client's answer to a request this replica's server sent during a call.
 * - `client-cancel`: `notifications/cancelled` for a call that may run on any replica (the client's
 *   request id names no replica), so it goes to all; a replica without the call ignores it.
 * - `session-changed`: its log level or subscriptions changed on one replica; the others that hold
 *   the session take the change and acknowledge it (`session-ack`), and the client is answered once
 *   they all did (or CHANGE_ACK_MS passed): its next request may land on any of them, and a log level
 *   set through one replica applies everywhere.
 * - `session-ended`: the client ended it (DELETE); every replica drops its copy, and acknowledges it
 *   as it does a change.
 */
import { randomUUID } from "node:crypto";
import type { IncomingMessage, ServerResponse } from "node:http";
import type { JSONRPCMessage } from "@modelcontextprotocol/server";
import type { LoggingLevel } from "../../core/types.ts";
import type { Gateway } from "../../gateway/gateway.ts";
import type { BusMessage, ReplicaBus } from "../../gateway/replica-bus.ts";
import type { Logger } from "../../observability/logger.ts";
import { type ConnectionState, connectionState } from "../../protocol/connection.ts";
import { cancelledRequestId } from "../../protocol/in-flight.ts";
import { type ReplicaRelay, STREAM_OWNER_GONE } from "./replica-relay.ts";
import { cancelLocally, type Session } from "./session.ts";
import type { SessionRecord, SessionRecords } from "./session-record.ts";
import type { Handshake } from "./session-transport.ts";
import { parseEventId } from "./stream-ids.ts";

/** What sessions.ts lets this module reach: the copies this replica holds. */
export interface LocalSessions {
  local(id: string): Session | undefined;
  close(id: string): void;
}

export interface SharedSessionsDeps {
  readonly gateway: Gateway;
  readonly bus: ReplicaBus;
  readonly records: SessionRecords;
  readonly relay: ReplicaRelay;
  /** The endpoint's path, for what is relayed to another replica. */
  readonly path: string;
  /** The endpoint's profile: a session belongs to the endpoint that opened it. */
  readonly profile: string | undefined;
  readonly idleTimeoutMs: number;
  readonly logger: Logger;
}

interface Changed {
  readonly logLevel: LoggingLevel | null;
  readonly subscriptions: readonly string[];
  /** Names the change, for its acknowledgements. */
  readonly change?: string;
}

/** The longest a change waits for the other replicas that hold the session to take it. */
const CHANGE_ACK_MS = 1_000;

export class SharedSessions {
  /** Any URL does: a replayed handshake never leaves the process (session-transport.ts). */
  readonly restoreUrl = "http://switchboard.invalid/mcp";
  readonly #deps: SharedSessionsDeps;
  readonly #touched = new Map<string, number>();
  /** Changes waiting for acknowledgements: the replicas yet to acknowledge, and what to wake. */
  readonly #changes = new Map<string, { readonly waiting: Set<string>; readonly done: () => void }>();
  #stop: (() => void)[] = [];

  constructor(deps: SharedSessionsDeps) {
    this.#deps = deps;
  }

  get replica(): string {
    return this.#deps.bus.id;
  }

  attach(local: LocalSessions): void {
    const { bus } = this.#deps;
    const on = (kind: string, handle: (session: Session, message: BusMessage) => void) =>
      bus.on(kind, (message) => {
        const session = message.session === undefined ? undefined : local.local(message.session);
        if (session) handle(session, message);
      });
    this.#stop = [
      on("client-response", (session, { payload }) => session.transport.deliver(payload as JSONRPCMessage)),
      on("client-cancel", (session, { payload }) => cancelLocally(session, payload as JSONRPCMessage)),
      on("session-changed", (session, { from, payload }) => {
        const changed = payload as Changed;
        this.#apply(session, changed);
        void bus.send(from, "session-ack", session.id, { change: changed.change });
      }),
      on("session-ended", (session, { from, payload }) => {
        local.close(session.id);
        void bus.send(from, "session-ack", session.id, payload);
      }),
      bus.on("session-ack", ({ from, payload }) => {
        const change = this.#changes.get(String((payload as { change?: unknown }).change));
        change?.waiting.delete(from);
        if (change?.waiting.size === 0) change.done();
      }),
    ];
  }

  close(): void {
    for (const stop of this.#stop) stop();
    this.#stop = [];
  }

  /** The session's record, if it belongs to this endpoint; undefined when unknown or unreadable. */
  async read(id: string): Promise<SessionRecord | undefined> {
    try {
      const record = await this.#deps.records.read(id);
      return record?.profile === (this.#deps.profile ?? null) ? record : undefined;
    } catch (error) {
      this.#deps.logger.warn({ session: id, err: error }, "could not read a session's record");
      return undefined;
    }
  }

  /** A session opened here: its record is written before the client gets its id. */
  async opened(session: Session, handshake: Handshake): Promise<void> {
    this.#watch(session);
    await this.#write({
      id: session.id,
      principal: session.principal.id,
      profile: this.#deps.profile ?? null,
      protocolVersion: handshake.protocolVersion,
      capabilities: handshake.capabilities,
      clientInfo: handshake.clientInfo,
      logLevel: null,
      subscriptions: [],
      owner: this.replica,
      holders: [this.replica],
    });
  }

  /** A session rebuilt here from its record: it takes the record's log level and subscriptions. */
  async adopted(session: Session, record: SessionRecord): Promise<void> {
    this.#apply(session, record);
    this.#watch(session);
    await this.#update(session.id, (current) => ({
      ...current,
      holders: [...new Set([...current.holders, this.replica])],
    }));
  }

  /** This replica dropped its copy (idle here): changes no longer wait for it. */
  dropped(id: string): void {
    this.#touched.delete(id);
    void this.#update(id, (record) => ({
      ...record,
      holders: record.holders.filter((holder) => holder !== this.replica),
    }));
  }

  /** This replica closed its copy of the session: nothing is kept about it. */
  forget(id: string): void {
    this.#touched.delete(id);
  }

  /** Renews the record's expiry, at most a few times per idle timeout. */
  touch(id: string): void {
    const now = Date.now();
    if (now - (this.#touched.get(id) ?? 0) < this.#deps.idleTimeoutMs / 4) return;
    this.#touched.set(id, now);
    void this.#update(id, (record) => record);
  }

  /** The client ended the session: its record goes, and so does every replica's copy, before the answer. */
  async ended(id: string): Promise<void> {
    this.#touched.delete(id);
    const record = await this.read(id);
    try {
      await this.#deps.records.delete(id);
    } catch (error) {
      this.#deps.logger.warn({ session: id, err: error }, "could not delete an ended session's record");
    }
    const others = (record?.holders ?? []).filter((holder) => holder !== this.replica);
    await this.#announce("session-ended", id, { change: randomUUID() }, others);
  }

  /**
   * A client resuming a stream that another replica sent (`Last-Event-ID` names it; stream-ids.ts). A
   * request's stream is resumed where it is, through the relay; if that replica stopped, the client
   * gets an error for the request it waits for, so that it fails now rather than at its timeout. A
   * standalone stream is opened afresh here. True when the request is answered.
   */
  async resumedElsewhere(session: Session, req: IncomingMessage, res: ServerResponse): Promise<boolean> {
    const last = req.headers["last-event-id"];
    const named = typeof last === "string" ? parseEventId(last) : undefined;
    if (!named || named.replica === this.replica) return false;
    if (named.request === undefined) {
      delete req.headers["last-event-id"];
      return false;
    }
    await this.#deps.relay.forward(named.replica, req, res, "", {
      path: this.#deps.path,
      principal: session.principal,
      session: session.id,
      requestId: named.request,
      goneMessage: STREAM_OWNER_GONE,
      goneReason: "replica_stopped",
    });
    return true;
  }

  forwardResponse(owner: string, id: string, message: JSONRPCMessage): void {
    void this.#deps.bus.send(owner, "client-response", id, message);
  }

  forwardCancel(id: string, body: unknown): void {
    if (typeof body !== "object" || body === null || Array.isArray(body)) return;
    if (cancelledRequestId(body as Record<string, unknown>) === undefined) return;
    void this.#deps.bus.broadcast("client-cancel", id, body);
  }

  /** Writes every change of log level or subscriptions to the record, and tells the other replicas. */
  #watch(session: Session): void {
    const state = connectionState(session.server);
    if (!state) return;
    state.onChange = async () => {
      const changed: Changed = {
        logLevel: state.logLevel ?? null,
        subscriptions: [...state.subscriptions],
        change: randomUUID(),
      };
      // Written before the client is answered: its next request may land on any replica.
      const record = await this.#update(session.id, (current) => ({
        ...current,
        logLevel: changed.logLevel,
        subscriptions: [...changed.subscriptions],
      }));
      const others = (record?.holders ?? []).filter((holder) => holder !== this.replica);
      await this.#announce("session-changed", session.id, changed, others);
    };
  }

  /** Tells the other holders of the session of a change, and waits (bounded) until they took it. */
  async #announce(
    kind: string,
    id: string,
    changed: { readonly change?: string | undefined },
    holders: readonly string[],
  ): Promise<void> {
    const change = changed.change as string;
    let timer: NodeJS.Timeout | undefined;
    const taken = new Promise<void>((resolve) => {
      this.#changes.set(change, { waiting: new Set(holders), done: resolve });
      timer = setTimeout(resolve, holders.length > 0 ? CHANGE_ACK_MS : 0);
    });
    await this.#deps.bus.broadcast(kind, id, changed);
    await taken;
    clearTimeout(timer);
    this.#changes.delete(change);
  }

  /**
   * Takes another replica's change. A subscription is held on the backends of the replica that took it;
   * this copy only records it, so that the updates any replica reports reach the client through the
   * replica that holds its stream, and drops what the client unsubscribed.
   */
  #apply(session: Session, changed: Changed): void {
    const state = connectionState(session.server);
    if (!state) return;
    const { gateway, logger } = this.#deps;
    if (changed.logLevel !== null && changed.logLevel !== state.logLevel) {
      state.logLevel = changed.logLevel;
      gateway
        .setLogLevel(state, changed.logLevel)
        .catch((error: unknown) => logger.debug({ err: error }, "could not apply a session's log level"));
    }
    const wanted = new Set(changed.subscriptions);
    for (const uri of [...state.subscriptions]) {
      if (wanted.has(uri)) continue;
      state.subscriptions.delete(uri);
      unsubscribe(gateway, state, uri, logger);
    }
    for (const uri of wanted) state.subscriptions.add(uri);
  }

  async #write(record: SessionRecord): Promise<void> {
    try {
      await this.#deps.records.write(record);
    } catch (error) {
      this.#deps.logger.warn(
        { session: record.id, err: error },
        "could not write a session's record; other replicas will not know the session",
      );
    }
  }

  async #update(
    id: string,
    change: (record: SessionRecord) => SessionRecord,
  ): Promise<SessionRecord | undefined> {
    const record = await this.read(id);
    if (!record) return undefined;
    const next = change(record);
    await this.#write(next);
    return next;
  }
}

function unsubscribe(gateway: Gateway, state: ConnectionState, uri: string, logger: Logger): void {
  gateway
    .unsubscribe(uri, state)
    .catch((error: unknown) => logger.debug({ err: error, uri }, "could not drop a subscription"));
}
