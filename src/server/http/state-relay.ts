/**
 * The retry of a 2026-07-28 request suspended for its client's answers, when it lands on a replica
 * other than the one holding the suspended request: its `requestState` names the owner
 * (protocol/request-state.ts), so the landing replica relays the request to the owner over the replica
 * bus and writes the owner's answer back as it comes (the result or the next `input_required`, with
 * any progress notifications on the way). The owner serves it as if it had landed there, for the
 * principal the landing replica authenticated.
 *
 * An owner that is gone (its heartbeat expired, or it does not acknowledge the relay in time) gets the
 * client a JSON-RPC error that says so and to send the request again without a `requestState`; an
 * owner that stops in the middle of its answer does the same, or cuts a stream already open.
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

export const OWNER_GONE_MESSAGE =
  "The gateway instance that held this request while it waited for your answers has stopped, so the " +
  "request is lost. Send the request again without a requestState.";

/** Serves a relayed request on the owner, as the endpoint at `path` serves 2026-07-28 requests. */
export type ServeRelayed = (
  path: string,
  principal: Principal,
  req: NodeIncomingMessageLike,
  res: NodeServerResponseLike,
) => Promise<void>;

interface RelayRequest {
  readonly relay: string;
  readonly path: string;
  readonly method: string;
  readonly url: string;
  readonly headers: Record<string, string | string[] | undefined>;
  readonly body: string;
  readonly principal: Principal;
}

interface Pending {
  readonly res: ServerResponse;
  readonly requestId: string | number | null;
  acked: boolean;
  done(): void;
}

export class StateRelay {
  readonly #bus: ReplicaBus;
  readonly #tokens: RequestStateTokens;
  readonly #log: Logger;
  /** Relays this replica started, by relay id. */
  readonly #pending = new Map<string, Pending>();
  /** Relays this replica serves as the owner, by relay id: what a client that left must stop. */
  readonly #serving = new Map<string, RelayResponse>();

  constructor(bus: ReplicaBus, tokens: RequestStateTokens, serve: ServeRelayed, log: Logger) {
    this.#bus = bus;
    this.#tokens = tokens;
    this.#log = log;
    bus.on("relay-request", (message) => this.#serve(message, serve));
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
    path: string,
    req: IncomingMessage,
    res: ServerResponse,
    body: string,
    principal: Principal,
  ): Promise<void> {
    const relay = randomUUID();
    const requestId = jsonRpcIdOf(body);
    let watch: NodeJS.Timeout | undefined;
    const pending: Pending = {
      res,
      requestId,
      acked: false,
      done: () => {
        clearInterval(watch);
        this.#pending.delete(relay);
      },
    };
    const gone = () => {
      if (!this.#pending.has(relay)) return;
      pending.done();
      this.#log.warn({ owner }, "a request's owner replica stopped; its client is told to start again");
      ownerGone(res, requestId);
    };
    if (!(await this.#bus.alive(owner))) return ownerGone(res, requestId);
    this.#pending.set(relay, pending);
    res.once("close", () => {
      if (!this.#pending.has(relay)) return;
      pending.done();
      void this.#bus.send(owner, "relay-cancel", undefined, { relay });
    });
    const started = Date.now();
    watch = setInterval(() => {
      if (!pending.acked && Date.now() - started >= ACK_WAIT_MS) return gone();
      void this.#bus.alive(owner).then((alive) => {
        if (!alive) gone();
      });
    }, OWNER_CHECK_MS);
    watch.unref();
    const request: RelayRequest = {
      relay,
      path,
      method: req.method ?? "POST",
      url: req.url ?? path,
      headers: req.headers,
      body,
      principal: { id: principal.id, roles: [...principal.roles] },
    };
    await this.#bus.send(owner, "relay-request", undefined, request);
  }

  async #serve(message: BusMessage, serve: ServeRelayed): Promise<void> {
    const request = message.payload as RelayRequest;
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
      await serve(request.path, request.principal, req, res);
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

function ownerGone(res: ServerResponse, id: string | number | null): void {
  const message = {
    jsonrpc: "2.0",
    id,
    error: {
      code: JSON_RPC.SERVER_ERROR,
      message: OWNER_GONE_MESSAGE,
      data: { reason: "request_state_owner_gone" },
    },
  };
  if (res.writableEnded || res.destroyed) return;
  if (!res.headersSent) {
    res.writeHead(200, { "content-type": "application/json" }).end(JSON.stringify(message));
    return;
  }
  // A stream is open already: the error is its last event.
  res.end(`event: message\ndata: ${JSON.stringify(message)}\n\n`);
}

function jsonRpcIdOf(body: string): string | number | null {
  try {
    const id = (JSON.parse(body) as { id?: unknown }).id;
    return typeof id === "string" || typeof id === "number" ? id : null;
  } catch {
    return null;
  }
}
