/**
 * The transport of one 2025-era session on one replica: the SDK's web-standard Streamable HTTP
 * transport, served to `node:http` through the SDK's own adapter, with what lets several replicas
 * serve one session:
 *
 * - `restore`: a replica that did not open the session rebuilds it from its record. The SDK offers no
 *   way to create a transport or server that is already initialized (`_initialized` and the client's
 *   capabilities are private), so the handshake is replayed through the transport's public entry
 *   point: a fresh transport whose id generator returns the recorded id is sent the client's recorded
 *   `initialize` and `notifications/initialized`, and the answers are dropped. The server then holds
 *   the same protocol version, capabilities and client info as the one that opened the session, by
 *   the SDK's own code path. That is why this is the web-standard transport rather than the Node one:
 *   a replay needs a `Request`, not a socket.
 * - Request ids: the server numbers the requests it sends the client (elicitation, sampling, roots)
 *   from 0 on every replica, so when replicas share sessions each id is prefixed with this replica's
 *   id; the client's response names the replica whose call waits for it (see `ownerOfResponse`).
 */
import type { IncomingMessage, ServerResponse } from "node:http";
import {
  type NodeIncomingMessageLike,
  type NodeMcpRequestHandler,
  type NodeServerResponseLike,
  toNodeHandler,
} from "@modelcontextprotocol/node";
import {
  type JSONRPCMessage,
  type Transport,
  type TransportSendOptions,
  WebStandardStreamableHTTPServerTransport,
} from "@modelcontextprotocol/server";
import { withRawBody } from "./body.ts";
import { servingRequest } from "./stream-ids.ts";

type WebOptions = ConstructorParameters<typeof WebStandardStreamableHTTPServerTransport>[0];
type ScopeResolver = Parameters<WebStandardStreamableHTTPServerTransport["setScopeChallengeResolver"]>[0];

/** Separates a replica id from the server's own request id, in the ids the client is sent. */
const ID_SEPARATOR = "~";

/** What the client said at initialize, which a restored session replays. */
export interface Handshake {
  readonly protocolVersion: string;
  readonly capabilities: Record<string, unknown>;
  readonly clientInfo: { readonly name: string; readonly version: string };
}

export interface SessionTransportOptions extends NonNullable<WebOptions> {
  /** This replica's id, when replicas share sessions; absent, ids stay as the SDK makes them. */
  readonly replica?: string | undefined;
}

export class SessionTransport implements Transport {
  readonly #web: WebStandardStreamableHTTPServerTransport;
  readonly #node: NodeMcpRequestHandler;
  readonly #prefix: string | undefined;
  /** This replica's open standalone streams of the session (the SDK allows one). */
  readonly #listening = new Set<ServerResponse>();

  onclose?: (() => void) | undefined;
  onerror?: ((error: Error) => void) | undefined;
  onmessage?: Transport["onmessage"];

  constructor(options: SessionTransportOptions) {
    const { replica, ...web } = options;
    this.#web = new WebStandardStreamableHTTPServerTransport(web);
    this.#prefix = replica === undefined ? undefined : `${replica}${ID_SEPARATOR}`;
    this.#node = toNodeHandler({ fetch: (request, extra) => this.#web.handleRequest(request, extra) });
    this.#web.onclose = () => this.onclose?.();
    this.#web.onerror = (error) => this.onerror?.(error);
    this.#web.onmessage = (message, extra) => this.onmessage?.(this.#inbound(message), extra);
  }

  get sessionId(): string | undefined {
    return this.#web.sessionId;
  }

  /** Whether this replica holds the session's standalone stream now. */
  get listening(): boolean {
    for (const res of this.#listening) if (res.statusCode === 200 && !res.writableEnded) return true;
    return false;
  }

  start(): Promise<void> {
    return this.#web.start();
  }

  close(): Promise<void> {
    return this.#web.close();
  }

  setSupportedProtocolVersions(versions: string[]): void {
    this.#web.setSupportedProtocolVersions(versions);
  }

  setScopeChallengeResolver(resolver: ScopeResolver): void {
    this.#web.setScopeChallengeResolver(resolver);
  }

  async send(message: JSONRPCMessage, options?: TransportSendOptions): Promise<void> {
    await this.#web.send(this.#outbound(message), options);
  }

  /**
   * Serves one HTTP request of the session (its body already read: `text` as it came, `body` parsed).
   * The adapter is given the text, not the parsed body, which it would serialise again (see
   * withRawBody).
   */
  async handleRequest(
    req: IncomingMessage,
    res: ServerResponse,
    body?: unknown,
    text?: string,
  ): Promise<void> {
    if (req.method === "GET") {
      this.#listening.add(res);
      res.once("close", () => this.#listening.delete(res));
    }
    const serve = () =>
      text === undefined ? this.#node(req, res, body) : this.#node(withRawBody(req, text), res);
    // With ids that name it, the event store learns which request a stream answers (stream-ids.ts).
    if (this.#prefix === undefined) await serve();
    else await servingRequest(body, serve);
  }

  /** Resumes one of this replica's streams for a client another replica relayed (replica-relay.ts). */
  async resume(req: NodeIncomingMessageLike, res: NodeServerResponseLike): Promise<void> {
    await this.#node(req, res);
  }

  /** Hands the server a message another replica received for this session. */
  deliver(message: JSONRPCMessage): void {
    this.onmessage?.(this.#inbound(message));
  }

  /** Rebuilds an initialized session (see the module comment). */
  async restore(url: string, handshake: Handshake): Promise<void> {
    const headers = {
      accept: "application/json, text/event-stream",
      "content-type": "application/json",
    };
    const initialize = {
      jsonrpc: "2.0",
      id: 0,
      method: "initialize",
      params: handshake,
    };
    const answer = await this.#web.handleRequest(new Request(url, { method: "POST", headers }), {
      parsedBody: initialize,
    });
    // The stream ends once the server answered initialize; its content is what the client got already.
    await answer.text();
    const initialized = { jsonrpc: "2.0", method: "notifications/initialized" };
    await this.#web.handleRequest(
      new Request(url, {
        method: "POST",
        headers: { ...headers, "mcp-session-id": this.sessionId ?? "" },
      }),
      { parsedBody: initialized },
    );
  }

  /** A request the server sends gets an id that names this replica. */
  #outbound(message: JSONRPCMessage): JSONRPCMessage {
    if (this.#prefix === undefined || !("method" in message) || !("id" in message)) return message;
    return { ...message, id: `${this.#prefix}${message.id}` };
  }

  /** The client's response to one of those gets its id back as the server made it. */
  #inbound(message: JSONRPCMessage): JSONRPCMessage {
    if (this.#prefix === undefined || "method" in message || !("id" in message)) return message;
    const id = message.id;
    if (typeof id !== "string" || !id.startsWith(this.#prefix)) return message;
    const own = Number(id.slice(this.#prefix.length));
    return Number.isSafeInteger(own) ? ({ ...message, id: own } as JSONRPCMessage) : message;
  }
}

/**
 * The replica a client's response is for, when `body` is a single response to a request a replica
 * sent (see `SessionTransport`); undefined for anything else.
 */
export function ownerOfResponse(body: unknown): string | undefined {
  if (typeof body !== "object" || body === null || Array.isArray(body)) return undefined;
  const message = body as { method?: unknown; id?: unknown };
  if (message.method !== undefined || typeof message.id !== "string") return undefined;
  const at = message.id.lastIndexOf(ID_SEPARATOR);
  return at > 0 ? message.id.slice(0, at) : undefined;
}
