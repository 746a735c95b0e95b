/**
 * What one client connection owns (one SDK `Server` instance: a stdio connection, a 2025-era HTTP
 * session, or a single 2026-07-28 request): its principal, the log level it set and the resources it
 * subscribed to. Transports and notification forwarding read it here; the gateway knows a connection
 * only as a `Holder`.
 */
import {
  type ClientCapabilities,
  type ElicitRequestFormParams,
  type ElicitRequestURLParams,
  ProtocolError,
  ProtocolErrorCode,
  type Server,
} from "@modelcontextprotocol/server";
import type { BackendLogMessage, CallerChannel, LoggingLevel, Principal } from "../core/types.ts";
import type { Gateway, Holder } from "../gateway/gateway.ts";
import { passes } from "./leg.ts";

export interface ConnectionState extends Holder {
  /** Who opened the connection; for a per-request instance, who made its request. */
  principal: Principal;
  /** The profile whose endpoint it is (config `profiles`); undefined for the default endpoint. */
  readonly profile: string | undefined;
  /** A long-lived connection's own id (see CallContext.session); undefined for a per-request instance. */
  readonly session: string | undefined;
  /** Set by a 2025-era client with `logging/setLevel`. */
  logLevel: LoggingLevel | undefined;
  readonly subscriptions: Set<string>;
  /** Told after the client changed its log level or subscriptions (a session shared by replicas). */
  onChange?: (() => Promise<void>) | undefined;
}

const connections = new WeakMap<Server, ConnectionState>();

export function registerConnection(server: Server, state: ConnectionState): void {
  connections.set(server, state);
}

/** What a connection holds, for the transport that keeps it (a 2025-era HTTP session). */
export function connectionState(server: Server): ConnectionState | undefined {
  return connections.get(server);
}

/** The log level a 2025-era connection asked for with `logging/setLevel`, if it did. */
export function connectionLogLevel(server: Server): LoggingLevel | undefined {
  return connections.get(server)?.logLevel;
}

/** The client session of a long-lived connection (see CallContext.session). */
export function connectionSession(server: Server): string | undefined {
  return connections.get(server)?.session;
}

type LogFromServer = { readonly server: string } & BackendLogMessage;

/**
 * Whether a log message not tied to any call should be sent to this connection: only to a client
 * that asked for log messages (`logging/setLevel`), at its level, and whose access rules let it see
 * the server the message came from.
 */
export function wantsBackgroundLog(gateway: Gateway, server: Server, message: LogFromServer): boolean {
  const state = connections.get(server);
  if (state?.logLevel === undefined) return false;
  return (
    passes(message.level, state.logLevel) &&
    gateway.maySeeServer(state.principal, message.server, state.profile)
  );
}

/** Whether this connection subscribed to `uri` (`resources/subscribe`). */
export function isSubscribed(server: Server, uri: string): boolean {
  return connections.get(server)?.subscriptions.has(uri) ?? false;
}

/**
 * The client of a 2025-era connection, for a path that serves its calls outside the SDK's request
 * handlers (the stdio plain path): backends ask it through the connection, and the call's log
 * messages are written in order with the result. Over stdio the questions need no link to the call:
 * there is one stream.
 */
export function connectionClient(
  server: Server,
  write: (notification: { jsonrpc: "2.0"; method: string; params: Record<string, unknown> }) => void,
): CallerChannel {
  return {
    get capabilities() {
      return server.getClientCapabilities() ?? {};
    },
    createMessage: (params, signal) => {
      assertDeclared(server.getClientCapabilities(), "sampling/createMessage", params);
      return server.createMessage(params, { signal });
    },
    elicit: (params, signal) => {
      assertDeclared(server.getClientCapabilities(), "elicitation/create", params);
      return server.elicitInput(params as ElicitRequestFormParams | ElicitRequestURLParams, { signal });
    },
    listRoots: async (signal) =>
      server.getClientCapabilities()?.roots ? server.listRoots(undefined, { signal }) : undefined,
    log: (message) => {
      if (passes(message.level, connections.get(server)?.logLevel)) {
        write({ jsonrpc: "2.0", method: "notifications/message", params: { ...message } });
      }
      return true;
    },
  };
}

/** Instances that hold a long-lived connection, so that change notifications can reach them. */
export class LiveServers {
  readonly #servers = new Set<Server>();

  add(server: Server): void {
    this.#servers.add(server);
    const previous = server.onclose;
    server.onclose = () => {
      this.#servers.delete(server);
      previous?.();
    };
  }

  get size(): number {
    return this.#servers.size;
  }

  /** Sends to every live connection; a connection that fails to take it is dropped from the set. */
  broadcast(send: (server: Server) => Promise<void> | void): void {
    for (const server of this.#servers) {
      try {
        const sent = send(server);
        if (sent) sent.catch(() => this.#servers.delete(server));
      } catch {
        this.#servers.delete(server);
      }
    }
  }
}

/**
 * A 2025-era client is asked only what it declared it can answer. The gateway's connections to 2025-era
 * servers declare everything it can pass on, as they serve every client; a question the calling client
 * cannot answer is refused to the server as such a client would refuse it (-32601), with the reason.
 */
export function assertDeclared(
  declared: ClientCapabilities | undefined,
  method: "sampling/createMessage" | "elicitation/create",
  params: object,
): void {
  const capability = method === "sampling/createMessage" ? "sampling" : "elicitation";
  const url = method === "elicitation/create" && (params as { mode?: unknown }).mode === "url";
  const has = url ? declared?.elicitation?.url !== undefined : declared?.[capability] !== undefined;
  if (has) return;
  throw new ProtocolError(
    ProtocolErrorCode.MethodNotFound,
    `The client that made this request did not declare ${capability}${url ? " (url mode)" : ""} in its ` +
      `capabilities, so it cannot be asked for ${method}.`,
  );
}
