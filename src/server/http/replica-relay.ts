/**
 * Requests only one replica can serve, relayed to it over the replica bus when the balancer sent them
 * elsewhere; the landing replica writes the owner's answer back as it comes. Two kinds:
 *
 * - The retry of a 2026-07-28 request suspended for its client's answers: its `requestState` names
 *   the owner (protocol/request-state.ts), which answers with the result or the next `input_required`,
 *   and any progress notifications on the way.
 * - A 2025-era client resuming a request's SSE stream with `Last-Event-ID`: the event id names the
 *   replica whose stream it was (stream-ids.ts), which replays what the client missed and goes on.
 *
 * The owner serves the request as if it had landed there, for the principal the landing replica
 * authenticated. An owner that is gone (its heartbeat expired, or it does not acknowledge the relay in
 * time) gets the client a JSON-RPC error for its request that says so and what to do; an owner that
 * stops in the middle of its answer does the same, as the last event of a stream already open.
 */
import { randomUUID } from "node:crypto";
import type { IncomingMessage, ServerResponse } from "node:http";
import type { NodeIncomingMessageLike, NodeServerResponseLike } from "@modelcontextprotocol/node";
import { JSON_RPC } from "../../core/errors.ts";
import type { Principal } from "../../core/types.ts";
import type { BusMessage, ReplicaBus } from "../../gateway/replica-bus.ts";
import type { Logger } from "../../observability/logger.ts";
import { type RequestStateTokens, requestStateOf } from "../../protocol/request-state.ts";

/** How long the owner has to acknowledge a relayed request before it counts as gone. */
const ACK_WAIT_MS = 3_000;
/** How often a relay in progress checks that its owner is still alive. */
const OWNER_CHECK_MS = 1_000;

export const SUSPENDED_OWNER_GONE =
  "The gateway instance that held this request while it waited for your answers has stopped, so the " +
  "request is lost. Send the request again without a requestState.";

export const STREAM_OWNER_GONE =
  "The gateway instance that was serving this request stopped before it answered, so its outcome is " +
  "unknown. Send the request again if it is safe to repeat.";

/** What a relayed request is, for the owner. */
export interface Relayed {
  /** The endpoint's path. */
  readonly path: string;
  readonly principal: Principal;
  /** The 2025-era session whose stream is resumed; absent for a 2026-07-28 request. */
  readonly session?: string | undefined;
}

/** Serves a relayed request on the owner. */
export type ServeRelayed = (
  relayed: Relayed,
  req: NodeIncomingMessageLike,
  res: NodeServerResponseLike,
) => Promise<void>;

/** How the landing replica relays one request. */
export interface RelayOptions extends Relayed {
  /** The request the client waits for, for the error that says the owner is gone. */
  readonly requestId: string | number | null;
  readonly goneMessage: string;
  readonly goneReason: string;
}

interface RelayRequest extends Relayed {
  readonly relay: string;
  readonly method: string;
  readonly url: string;
  readonly headers: Record<string, string | string[] | undefined>;
  readonly body: string;
}

interface Pending {
  readonly res: ServerResponse;
  acked: boolean;
  done(): void;
}

export class ReplicaRelay {
  readonly #bus: ReplicaBus;
  readonly #tokens: RequestStateTokens;
  readonly #log: Logger;
  /** Relays this replica started, by relay id. */
  readonly #pending = new Map<string, Pending>();
  /** Relays this replica serves as the owner, by relay id: what a client that left must stop. */
  readonly #serving = new Map<string, RelayResponse>();
  #serve: ServeRelayed | undefined;

  constructor(bus: ReplicaBus, tokens: RequestStateTokens, log: Logger) {
    this.#bus = bus;
    this.#tokens = tokens;
    this.#log = log;
    bus.on("relay-request", (message) => void this.#serveRelayed(message));
    bus.on("relay-cancel", ({ payload }) =>
      this.#serving.get((payload as { relay: string }).relay)?.cancel(),
    );
    bus.on("relay-ack", ({ payload }) => {
      const pending = this.#pending.get((payload as { relay: string }).relay);
      if (pending) pending.acked = true;
    });
    bus.on("relay-head", ({ payload }) => {
      const { relay, status, headers } = payload as {
        relay: string;
        status: number;
        headers: Record<string, string>;
      };
      const pending = this.#pending.get(relay);
      if (!pending || pending.res.headersSent) return;
      pending.acked = true;
      pending.res.writeHead(status, headers);
      pending.res.flushHeaders();
    });
    bus.on("relay-chunk", ({ payload }) => {
      const { relay, data } = payload as { relay: string; data: string };
      this.#pending.get(relay)?.res.write(data);
    });
    bus.on("relay-end", ({ payload }) => {
      const pending = this.#pending.get((payload as { relay: string }).relay);
      if (!pending) return;
      pending.done();
      pending.res.end();
    });
  }

  /** How this replica serves what others relay to it (the HTTP handler's endpoints). */
  serveWith(serve: ServeRelayed): void {
    this.#serve = serve;
  }

  /** The replica a request's `requestState` names, when it is genuine and names another replica. */
  async ownerElsewhere(body: unknown, principal: Principal): Promise<string | undefined> {
    const state = requestStateOf(body);
    if (state === undefined) return undefined;
    const method = (body as { method?: unknown }).method;
    if (typeof method !== "string") return undefined;
    const claims = await this.#tokens.read(state, principal.id, method);
    return claims && claims.owner !== this.#tokens.owner ? claims.owner : undefined;
  }

  /** Relays the request to its owner and writes the owner's answer to `res`. */
  async forward(
    owner: string,
    req: IncomingMessage,
    res: ServerResponse,
    body: string,
    options: RelayOptions,
  ): Promise<void> {
    const relay = randomUUID();
    let watch: NodeJS.Timeout | undefined;
    const pending: Pending = {
      res,
      acked: false,
      done: () => {
        clearInterval(watch);
        this.#pending.delete(relay);
      },
    };
    const gone = () => ownerGone(res, options);
    if (!(await this.#bus.alive(owner))) return gone();
    this.#pending.set(relay, pending);
    res.once("close", () => {
      if (!this.#pending.has(relay)) return;
      pending.done();
      void this.#bus.send(owner, "relay-cancel", undefined, { relay });
    });
    const stopped = () => {
      if (!this.#pending.has(relay)) return;
      pending.done();
      this.#log.warn({ owner }, "the replica serving a relayed request stopped; its client is told");
      gone();
    };
    const started = Date.now();
    watch = setInterval(() => {
      if (!pending.acked && Date.now() - started >= ACK_WAIT_MS) return stopped();
      void this.#bus.alive(owner).then((alive) => {
        if (!alive) stopped();
      });
    }, OWNER_CHECK_MS);
    watch.unref();
    const { principal } = options;
    const request: RelayRequest = {
      relay,
      path: options.path,
      session: options.session,
      method: req.method ?? "POST",
      url: req.url ?? options.path,
      headers: withoutCredentials(req.headers),
      body,
      principal: { id: principal.id, roles: [...principal.roles] },
    };
    await this.#bus.send(owner, "relay-request", undefined, request);
  }

  async #serveRelayed(message: BusMessage): Promise<void> {
    const serve = this.#serve;
    const request = message.payload as RelayRequest;
    if (!serve) return;
    const to = message.from;
    await this.#bus.send(to, "relay-ack", undefined, { relay: request.relay });
    const res = new RelayResponse(request.relay, (kind, payload) =>
      this.#bus.send(to, kind, undefined, payload),
    );
    this.#serving.set(request.relay, res);
    const req: NodeIncomingMessageLike = {
      method: request.method,
      url: request.url,
      headers: request.headers,
      async *[Symbol.asyncIterator]() {
        yield Buffer.from(request.body, "utf8");
      },
    };
    try {
      await serve(request, req, res);
    } catch (error) {
      this.#log.error({ err: error }, "could not serve a request another replica relayed");
      res.fail();
    } finally {
      this.#serving.delete(request.relay);
    }
  }
}

/** The owner's side of a relayed answer: what the SDK writes goes back over the bus, in order. */
class RelayResponse implements NodeServerResponseLike {
  destroyed = false;
  readonly #relay: string;
  readonly #send: (kind: string, payload: unknown) => Promise<void>;
  readonly #decoder = new TextDecoder();
  readonly #closeListeners: (() => void)[] = [];
  #ended = false;

  constructor(relay: string, send: (kind: string, payload: unknown) => Promise<void>) {
    this.#relay = relay;
    this.#send = send;
  }

  writeHead(status: number, headers?: Record<string, string>): this {
    void this.#send("relay-head", { relay: this.#relay, status, headers: headers ?? {} });
    return this;
  }

  write(chunk: string | Uint8Array): boolean {
    const data = typeof chunk === "string" ? chunk : this.#decoder.decode(chunk, { stream: true });
    if (data.length > 0) void this.#send("relay-chunk", { relay: this.#relay, data });
    return true;
  }

  end(chunk?: string | Uint8Array): this {
    if (this.#ended) return this;
    if (chunk !== undefined) this.write(chunk);
    this.#ended = true;
    void this.#send("relay-end", { relay: this.#relay });
    this.#closed();
    return this;
  }

  on(event: string, listener: (...args: unknown[]) => void): this {
    if (event === "close") this.#closeListeners.push(listener);
    return this;
  }

  /** The client left on the landing replica. */
  cancel(): void {
    this.destroyed = true;
    this.#closed();
  }

  fail(): void {
    if (!this.#ended) {
      this.writeHead(500, { "content-type": "application/json" });
      this.end(
        JSON.stringify({
          jsonrpc: "2.0",
          id: null,
          error: { code: JSON_RPC.INTERNAL_ERROR, message: "Internal error; see the gateway log." },
        }),
      );
    }
  }

  #closed(): void {
    for (const listener of this.#closeListeners.splice(0)) listener();
  }
}

function ownerGone(res: ServerResponse, options: RelayOptions): void {
  const message = {
    jsonrpc: "2.0",
    id: options.requestId,
    error: {
      code: JSON_RPC.SERVER_ERROR,
      message: options.goneMessage,
      data: { reason: options.goneReason },
    },
  };
  if (res.writableEnded || res.destroyed) return;
  if (!res.headersSent) {
    // A resumed stream is a GET, which the client reads as a stream.
    if (options.session !== undefined) {
      res.writeHead(200, { "content-type": "text/event-stream", "cache-control": "no-cache" });
      res.end(`event: message\ndata: ${JSON.stringify(message)}\n\n`);
      return;
    }
    res.writeHead(200, { "content-type": "application/json" }).end(JSON.stringify(message));
    return;
  }
  // A stream is open already: the error is its last event.
  res.end(`event: message\ndata: ${JSON.stringify(message)}\n\n`);
}

/**
 * The owner serves the relayed request for the principal this replica authenticated: the client's
 * credentials have no business travelling through the store.
 */
const CREDENTIAL_HEADERS = new Set(["authorization", "proxy-authorization", "cookie"]);

function withoutCredentials(headers: IncomingMessage["headers"]): RelayRequest["headers"] {
  return Object.fromEntries(Object.entries(headers).filter(([name]) => !CREDENTIAL_HEADERS.has(name)));
}
