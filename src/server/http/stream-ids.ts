/**
 * SSE event ids of 2025-era sessions shared by replicas: `<replica>.<seq>` for the standalone stream,
 * `<replica>.<seq>.<request>` for the stream of a request (the request id as JSON, base64url). A client
 * that lost a stream resumes it with `Last-Event-ID` on whichever replica the balancer picks; the id
 * tells that replica whose stream it was, and which request the client still waits for.
 */
import { AsyncLocalStorage } from "node:async_hooks";

export interface EventIdNaming {
  readonly replica: string;
  /** The request whose POST stream is opening, while the transport serves it. */
  requestBeingServed(): string | number | undefined;
}

export function eventIdOf(replica: string, seq: number, request: string | number | undefined): string {
  const base = `${replica}.${seq}`;
  return request === undefined
    ? base
    : `${base}.${Buffer.from(JSON.stringify(request)).toString("base64url")}`;
}

/** What an event id names; undefined for an id that is not one of these (a single replica's). */
export function parseEventId(
  id: string,
): { readonly replica: string; readonly request: string | number | undefined } | undefined {
  const [replica, seq, request, ...rest] = id.split(".");
  if (!replica || !seq || rest.length > 0 || !/^\d+$/.test(seq)) return undefined;
  if (request === undefined) return { replica, request: undefined };
  try {
    const parsed: unknown = JSON.parse(Buffer.from(request, "base64url").toString("utf8"));
    return typeof parsed === "string" || typeof parsed === "number"
      ? { replica, request: parsed }
      : undefined;
  } catch {
    return undefined;
  }
}

const serving = new AsyncLocalStorage<string | number>();

/** Runs `serve` with the id of the request `body` carries known to the event store. */
export function servingRequest<T>(body: unknown, serve: () => T): T {
  const id = (body as { id?: unknown } | undefined)?.id;
  const isRequest = typeof body === "object" && body !== null && !Array.isArray(body) && "method" in body;
  return isRequest && (typeof id === "string" || typeof id === "number") ? serving.run(id, serve) : serve();
}

export function requestBeingServed(): string | number | undefined {
  return serving.getStore();
}
