/**
 * 2025-era Streamable HTTP sessions: each a `NodeStreamableHTTPServerTransport` kept in memory, found
 * again by its `Mcp-Session-Id`, owned by the principal that opened it, and closed when idle. Sessions
 * live on the replica that created them (run replicas behind sticky sessions for 2025-era clients).
 *
 * Each session keeps a bounded record of the SSE events it sent (event-store.ts): its streams open with
 * a priming event and a `retry` interval, and a client that lost a stream resumes it with
 * `Last-Event-ID` (2025-11-25 clients and later; the SDK primes no stream for older ones).
 */
import { randomUUID } from "node:crypto";
import type { IncomingMessage, ServerResponse } from "node:http";
import { NodeStreamableHTTPServerTransport } from "@modelcontextprotocol/node";
import type { Server } from "@modelcontextprotocol/server";
import type { Principal } from "../../core/types.ts";
import type { Logger } from "../../observability/logger.ts";
import type { LiveServers } from "../../protocol/connection.ts";
import { InFlightCalls } from "../../protocol/in-flight.ts";
import type { ServerFactory } from "../../protocol/sdk-server.ts";
import { BoundedEventStore, type EventStoreLimits } from "./event-store.ts";

/** What one session keeps for resumption: enough for the streams of a few calls, not a transcript. */
const SESSION_EVENTS: EventStoreLimits = { maxEventsPerStream: 100, maxBytes: 1024 * 1024 };
/** How long a client whose stream dropped waits before it reconnects (the SSE `retry` field). */
const RECONNECT_AFTER_MS = 1_000;

export interface Session {
  readonly id: string;
  readonly transport: NodeStreamableHTTPServerTransport;
  readonly server: Server;
  /** Who opened it: only this principal may use it (post to it, listen on it, end it). */
  readonly principal: Principal;
  /** Calls its plain-JSON path is answering, for `notifications/cancelled` from this session. */
  readonly calls: InFlightCalls;
  lastSeen: number;
}

export class Sessions {
  readonly #sessions = new Map<string, Session>();
  readonly #factory: ServerFactory;
  readonly #live: LiveServers;
  readonly #log: Logger;
  readonly #sweep: NodeJS.Timeout;

  constructor(factory: ServerFactory, live: LiveServers, log: Logger, idleTimeoutMs: number) {
    this.#factory = factory;
    this.#live = live;
    this.#log = log;
    this.#sweep = setInterval(
      () => {
        const cutoff = Date.now() - idleTimeoutMs;
        for (const [id, session] of this.#sessions) {
          if (session.lastSeen < cutoff) {
            this.#sessions.delete(id);
            void session.transport.close().catch(() => undefined);
            log.debug({ session: id }, "idle session closed");
          }
        }
      },
      Math.min(60_000, Math.max(1_000, idleTimeoutMs / 4)),
    );
    this.#sweep.unref();
  }

  /**
   * The session with this id, if `principal` opened it. Another principal's session is answered
   * exactly as one that does not exist: holding its id gives neither its traffic nor a way to end it
   * or cancel its calls, nor a sign that it exists.
   */
  find(id: string, principal: Principal): Session | undefined {
    const session = this.#sessions.get(id);
    if (!session || session.principal.id !== principal.id) return undefined;
    session.lastSeen = Date.now();
    return session;
  }

  /** Opens a session with an `initialize` request (answered by the SDK, which assigns the id). */
  async open(req: IncomingMessage, res: ServerResponse, body: unknown, principal: Principal): Promise<void> {
    const server = this.#factory({ era: "legacy" }, principal);
    const calls = new InFlightCalls();
    const transport = new NodeStreamableHTTPServerTransport({
      sessionIdGenerator: () => randomUUID(),
      eventStore: new BoundedEventStore(SESSION_EVENTS),
      retryInterval: RECONNECT_AFTER_MS,
      onsessioninitialized: (id) => {
        this.#sessions.set(id, { id, transport, server, principal, calls, lastSeen: Date.now() });
        this.#log.debug({ session: id }, "session opened");
      },
      onsessionclosed: (id) => {
        this.#sessions.delete(id);
        this.#log.debug({ session: id }, "session closed by the client");
      },
    });
    transport.onclose = () => {
      if (transport.sessionId) this.#sessions.delete(transport.sessionId);
    };
    await server.connect(transport);
    this.#live.add(server);
    await transport.handleRequest(req, res, body);
    // The SDK refused the opening (a malformed initialize, say): no session exists to own these.
    if (transport.sessionId === undefined) {
      await transport.close().catch(() => undefined);
      await server.close().catch(() => undefined);
    }
  }

  async close(): Promise<void> {
    clearInterval(this.#sweep);
    await Promise.allSettled([...this.#sessions.values()].map((s) => s.transport.close()));
    this.#sessions.clear();
  }
}
