/**
 * 2025-era Streamable HTTP sessions: each an SDK server and transport (session-transport.ts) kept in
 * memory, found again by its `Mcp-Session-Id`, owned by the principal that opened it, and closed when
 * idle.
 *
 * With a shared store, a session is also a record in the store (session-record.ts), so any replica
 * serves it: a replica that gets a request for a session it does not hold rebuilds it from the record
 * ("adopts" it), checking the principal as for its own. What only one replica has is reached over the
 * replica bus (gateway/replica-bus.ts): a client's answer to a request the server sent during a call
 * goes to the replica whose call waits for it; a cancellation goes to every replica, since the call may
 * run on any; resource updates and log messages servers send outside calls reach every replica, and
 * the one holding the session's standalone stream delivers them; a change of log level or
 * subscriptions reaches every replica that holds the session. A
 * replica that stops takes only its in-flight calls with it. On the memory store none of this runs.
 *
 * Each session keeps a bounded record of the SSE events it sent (event-store.ts): its streams open with
 * a priming event and a `retry` interval, and a client that lost a stream resumes it with
 * `Last-Event-ID` (2025-11-25 clients and later; the SDK primes no stream for older ones).
 */
import { randomUUID } from "node:crypto";
import type { IncomingMessage, ServerResponse } from "node:http";
import type { NodeIncomingMessageLike, NodeServerResponseLike } from "@modelcontextprotocol/node";
import type { JSONRPCMessage, Server } from "@modelcontextprotocol/server";
import { JSON_RPC } from "../../core/errors.ts";
import type { Principal } from "../../core/types.ts";
import type { Logger } from "../../observability/logger.ts";
import type { LiveServers } from "../../protocol/connection.ts";
import { InFlightCalls } from "../../protocol/in-flight.ts";
import type { ServerFactory } from "../../protocol/sdk-server.ts";
import { BoundedEventStore, type EventStoreLimits } from "./event-store.ts";
import type { Session } from "./session.ts";
import type { SessionRecord } from "./session-record.ts";
import { type Handshake, ownerOfResponse, SessionTransport } from "./session-transport.ts";
import type { SharedSessions } from "./shared-sessions.ts";
import { requestBeingServed } from "./stream-ids.ts";

/** What one session keeps for resumption: enough for the streams of a few calls, not a transcript. */
const SESSION_EVENTS: EventStoreLimits = { maxEventsPerStream: 100, maxBytes: 1024 * 1024 };
/** How long a client whose stream dropped waits before it reconnects (the SSE `retry` field). */
const RECONNECT_AFTER_MS = 1_000;

export type { Session } from "./session.ts";

export class Sessions {
  readonly #sessions = new Map<string, Session>();
  readonly #factory: ServerFactory;
  readonly #live: LiveServers;
  readonly #log: Logger;
  readonly #sweep: NodeJS.Timeout;
  readonly #shared: SharedSessions | undefined;
  /** Sessions being adopted, so that requests arriving together rebuild one. */
  readonly #adopting = new Map<string, Promise<Session | undefined>>();

  constructor(
    factory: ServerFactory,
    live: LiveServers,
    log: Logger,
    idleTimeoutMs: number,
    shared?: SharedSessions,
  ) {
    this.#factory = factory;
    this.#live = live;
    this.#log = log;
    this.#shared = shared;
    shared?.attach({
      local: (id) => this.#sessions.get(id),
      close: (id) => this.#closeLocal(id),
    });
    this.#sweep = setInterval(
      () => {
        const cutoff = Date.now() - idleTimeoutMs;
        for (const [id, session] of this.#sessions) {
          if (session.lastSeen >= cutoff) continue;
          // The replica holding a session's stream may see none of its requests, which others serve:
          // while the session's record lives (they renew it), so does the stream.
          if (shared && session.transport.listening) {
            void shared.read(id).then((record) => {
              if (record) session.lastSeen = Date.now();
              else this.#closeLocal(id);
            });
            continue;
          }
          // Idle here; its record expires by itself when it is idle on every replica.
          this.#closeLocal(id);
          shared?.dropped(id);
          log.debug({ session: id }, "idle session closed");
        }
      },
      Math.min(60_000, Math.max(1_000, idleTimeoutMs / 4)),
    );
    this.#sweep.unref();
  }

  /**
   * The session with this id, if `principal` opened it and this replica holds it. Another principal's
   * session is answered exactly as one that does not exist: holding its id gives neither its traffic
   * nor a way to end it or cancel its calls, nor a sign that it exists.
   */
  find(id: string, principal: Principal): Session | undefined {
    const session = this.#sessions.get(id);
    if (!session || session.principal.id !== principal.id) return undefined;
    session.lastSeen = Date.now();
    this.#shared?.touch(id);
    return session;
  }

  /**
   * A session another replica opened, rebuilt here from its record; undefined when there is no record,
   * it is another principal's or another endpoint's (answered as unknown), or no store is shared.
   */
  adopt(id: string, principal: Principal): Promise<Session | undefined> {
    const shared = this.#shared;
    if (!shared) return Promise.resolve(undefined);
    let adopting = this.#adopting.get(id);
    if (!adopting) {
      adopting = this.#adopt(shared, id, principal).finally(() => this.#adopting.delete(id));
      this.#adopting.set(id, adopting);
    }
    return adopting.then((session) => (session?.principal.id === principal.id ? session : undefined));
  }

  async #adopt(shared: SharedSessions, id: string, principal: Principal): Promise<Session | undefined> {
    const record = await shared.read(id);
    if (!record || record.principal !== principal.id) return undefined;
    const server = this.#factory({ era: "legacy" }, principal);
    const transport = this.#transport(() => id);
    await server.connect(transport);
    try {
      await transport.restore(shared.restoreUrl, handshakeOf(record));
    } catch (error) {
      this.#log.warn({ session: id, err: error }, "could not rebuild a session from its record");
      await transport.close().catch(() => undefined);
      return undefined;
    }
    // Found by other requests only once it is whole.
    const session = this.#register(id, transport, server, principal);
    await shared.adopted(session, record);
    this.#live.add(server);
    this.#log.debug({ session: id, openedBy: record.owner }, "session adopted from another replica");
    return session;
  }

  /** Opens a session with an `initialize` request (answered by the SDK, which assigns the id). */
  async open(
    req: IncomingMessage,
    res: ServerResponse,
    body: unknown,
    principal: Principal,
    text?: string,
  ): Promise<void> {
    const server = this.#factory({ era: "legacy" }, principal);
    const transport = this.#transport(
      () => randomUUID(),
      async (id) => {
        const session = this.#register(id, transport, server, principal);
        this.#log.debug({ session: id }, "session opened");
        await this.#shared?.opened(session, initializeParams(body));
      },
    );
    await server.connect(transport);
    this.#live.add(server);
    await transport.handleRequest(req, res, body, text);
    // The SDK refused the opening (a malformed initialize, say): no session exists to own these.
    if (transport.sessionId === undefined) {
      await transport.close().catch(() => undefined);
      await server.close().catch(() => undefined);
    }
  }

  /**
   * Serves one request of a session this replica holds: a client's answer that another replica waits
   * for goes there; anything else is served here (a cancellation also goes to every other replica).
   */
  async serve(
    session: Session,
    req: IncomingMessage,
    res: ServerResponse,
    body: unknown,
    text?: string,
  ): Promise<void> {
    const shared = this.#shared;
    if (shared && req.method === "POST") {
      const owner = ownerOfResponse(body);
      if (owner !== undefined && owner !== shared.replica) {
        shared.forwardResponse(owner, session.id, body as JSONRPCMessage);
        res.writeHead(202).end();
        return;
      }
      shared.forwardCancel(session.id, body);
    }
    if (shared && req.method === "GET" && (await shared.resumedElsewhere(session, req, res))) return;
    await session.transport.handleRequest(req, res, body, text);
  }

  /** Resumes a stream of a session for a client whose request another replica relayed here. */
  async resume(
    id: string,
    principal: Principal,
    req: NodeIncomingMessageLike,
    res: NodeServerResponseLike,
  ): Promise<void> {
    const session = this.find(id, principal) ?? (await this.adopt(id, principal));
    if (!session) {
      res.writeHead(404, { "content-type": "application/json" });
      res.end(
        JSON.stringify({
          jsonrpc: "2.0",
          id: null,
          error: { code: JSON_RPC.SESSION_NOT_FOUND, message: `Session "${id}" not found.` },
        }),
      );
      return;
    }
    await session.transport.resume(req, res);
  }

  async close(): Promise<void> {
    clearInterval(this.#sweep);
    this.#shared?.close();
    // Only this replica's copies: with a shared store, the sessions live on in their records.
    await Promise.allSettled([...this.#sessions.values()].map((s) => s.transport.close()));
    this.#sessions.clear();
  }

  #transport(
    sessionIdGenerator: () => string,
    onsessioninitialized?: (id: string) => Promise<void>,
  ): SessionTransport {
    const shared = this.#shared;
    let transport: SessionTransport | undefined;
    transport = new SessionTransport({
      sessionIdGenerator,
      eventStore: new BoundedEventStore(
        SESSION_EVENTS,
        shared ? { replica: shared.replica, requestBeingServed } : undefined,
      ),
      retryInterval: RECONNECT_AFTER_MS,
      ...(onsessioninitialized ? { onsessioninitialized } : {}),
      onsessionclosed: async (id) => {
        this.#sessions.delete(id);
        this.#log.debug({ session: id }, "session closed by the client");
        await shared?.ended(id);
      },
      replica: shared?.replica,
    });
    transport.onclose = () => {
      const id = transport?.sessionId;
      if (id !== undefined && this.#sessions.get(id)?.transport === transport) this.#sessions.delete(id);
    };
    return transport;
  }

  #register(id: string, transport: SessionTransport, server: Server, principal: Principal): Session {
    const session: Session = {
      id,
      transport,
      server,
      principal,
      calls: new InFlightCalls(),
      lastSeen: Date.now(),
    };
    this.#sessions.set(id, session);
    return session;
  }

  #closeLocal(id: string): void {
    const session = this.#sessions.get(id);
    if (!session) return;
    this.#sessions.delete(id);
    this.#shared?.forget(id);
    void session.transport.close().catch(() => undefined);
  }
}

function initializeParams(body: unknown): Handshake {
  const message = (Array.isArray(body) ? body[0] : body) as { params?: Partial<Handshake> } | undefined;
  const params = message?.params ?? {};
  return {
    protocolVersion: typeof params.protocolVersion === "string" ? params.protocolVersion : "",
    capabilities: (params.capabilities as Record<string, unknown> | undefined) ?? {},
    clientInfo: params.clientInfo ?? { name: "unknown", version: "0" },
  };
}

function handshakeOf(record: SessionRecord): Handshake {
  return {
    protocolVersion: record.protocolVersion,
    capabilities: record.capabilities,
    clientInfo: record.clientInfo,
  };
}
