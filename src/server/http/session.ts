/**
 * One 2025-era session as a replica holds it (sessions.ts keeps them): its SDK server and transport,
 * its principal, and the calls its plain path answers.
 */
import type { JSONRPCMessage, Server } from "@modelcontextprotocol/server";
import type { Principal } from "../../core/types.ts";
import { cancelledRequestId, type InFlightCalls } from "../../protocol/in-flight.ts";
import type { SessionTransport } from "./session-transport.ts";

export interface Session {
  readonly id: string;
  readonly transport: SessionTransport;
  readonly server: Server;
  /** Who opened it: only this principal may use it (post to it, listen on it, end it). */
  readonly principal: Principal;
  /** Calls its plain-JSON path is answering, for `notifications/cancelled` from this session. */
  readonly calls: InFlightCalls;
  lastSeen: number;
}

/**
 * Cancels a call of this session that this replica serves, on the plain path or the SDK's (which
 * ignores a request id it does not hold).
 */
export function cancelLocally(session: Session, message: JSONRPCMessage): void {
  const id = cancelledRequestId(message as unknown as Record<string, unknown>);
  if (id !== undefined && session.calls.cancel(id)) return;
  session.transport.deliver(message);
}
