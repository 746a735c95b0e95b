/**
 * A round-robin HTTP load balancer on loopback, for tests of replicas behind one: no stickiness at all,
 * each request goes to the next upstream in turn, whatever session it belongs to. Responses stream
 * through as they come (SSE included), and a client that leaves closes its upstream request. An
 * upstream that refuses the connection (a replica that died) is skipped, as a balancer's health check
 * would, and the request goes to the next one; an upstream that dies in the middle of a response cuts
 * the client's response, as it would behind a real balancer.
 *
 * `served` records which upstream got each request, so tests can show that consecutive requests of one
 * client landed on different replicas.
 */
import {
  createServer,
  request as httpRequest,
  type IncomingMessage,
  type Server,
  type ServerResponse,
} from "node:http";
import type { AddressInfo } from "node:net";

export interface Served {
  readonly upstream: number;
  readonly method: string;
  readonly session: string | undefined;
  /** The JSON-RPC method of a POST, when the body names one. */
  readonly rpc: string | undefined;
  /** The `Last-Event-ID` of a GET that resumes a stream. */
  readonly lastEventId: string | undefined;
}

export interface RoundRobinProxy {
  readonly url: string;
  readonly served: Served[];
  /** Requests per upstream. */
  counts(): number[];
  /**
   * Sends the next request that resumes a stream (a GET with `Last-Event-ID`) to any upstream but
   * `upstream`, so that a test sees a resumption land elsewhere rather than by the luck of the turn.
   */
  resumeAwayFrom(upstream: number): void;
  /** Cuts the client's side of the answers still streaming that match, as a dropped connection would. */
  cut(match: (served: Served) => boolean): number;
  close(): Promise<void>;
}

/** Starts a balancer over `upstreams` (base URLs such as http://127.0.0.1:1234). */
export async function startRoundRobinProxy(upstreams: readonly string[]): Promise<RoundRobinProxy> {
  const served: Served[] = [];
  const down = new Set<number>();
  const streaming = new Map<ServerResponse, Served>();
  let avoid: number | undefined;
  let next = 0;

  const forward = (req: IncomingMessage, res: ServerResponse, body: Buffer, tries: number) => {
    if (tries >= upstreams.length) {
      res.writeHead(502, { "content-type": "text/plain" }).end("no upstream answered");
      return;
    }
    let index = next;
    const skip = (i: number) =>
      down.has(i) || (i === avoid && req.method === "GET" && headerOf(req, "last-event-id") !== undefined);
    for (let i = 0; i < upstreams.length && skip(index); i++) index = (index + 1) % upstreams.length;
    if (req.method === "GET" && headerOf(req, "last-event-id") !== undefined) avoid = undefined;
    next = (index + 1) % upstreams.length;
    const target = new URL(req.url ?? "/", upstreams[index]);
    const upstream = httpRequest(target, {
      method: req.method,
      headers: { ...req.headers, host: target.host },
    });
    let answered = false;
    upstream.on("response", (answer) => {
      answered = true;
      const entry: Served = {
        upstream: index,
        method: req.method ?? "GET",
        session: headerOf(req, "mcp-session-id"),
        rpc: rpcMethod(body),
        lastEventId: headerOf(req, "last-event-id"),
      };
      served.push(entry);
      streaming.set(res, entry);
      res.once("close", () => streaming.delete(res));
      res.writeHead(answer.statusCode ?? 502, answer.headers);
      res.flushHeaders();
      answer.on("data", (chunk: Buffer) => res.write(chunk));
      answer.on("end", () => res.end());
      // The upstream died in the middle of its answer: the client sees its connection cut.
      answer.on("aborted", () => res.destroy());
      answer.on("error", () => res.destroy());
    });
    upstream.on("error", (error: NodeJS.ErrnoException) => {
      if (!answered && error.code === "ECONNREFUSED") {
        down.add(index);
        forward(req, res, body, tries + 1);
        return;
      }
      res.destroy();
    });
    res.on("close", () => {
      if (!res.writableFinished) upstream.destroy();
    });
    upstream.end(body);
  };

  const server: Server = createServer((req, res) => {
    const chunks: Buffer[] = [];
    req.on("data", (chunk: Buffer) => chunks.push(chunk));
    req.on("end", () => forward(req, res, Buffer.concat(chunks), 0));
  });
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  const { port } = server.address() as AddressInfo;
  return {
    url: `http://127.0.0.1:${port}`,
    served,
    counts() {
      const counts = upstreams.map(() => 0);
      for (const s of served) counts[s.upstream] = (counts[s.upstream] ?? 0) + 1;
      return counts;
    },
    resumeAwayFrom(upstream) {
      avoid = upstream;
    },
    cut(match) {
      let cut = 0;
      for (const [res, entry] of streaming) {
        if (!match(entry)) continue;
        res.destroy();
        cut++;
      }
      return cut;
    },
    close() {
      server.closeAllConnections();
      return new Promise((resolve) => server.close(() => resolve()));
    },
  };
}

function headerOf(req: IncomingMessage, name: string): string | undefined {
  const value = req.headers[name];
  return Array.isArray(value) ? value[0] : value;
}

function rpcMethod(body: Buffer): string | undefined {
  if (body.length === 0) return undefined;
  try {
    const parsed = JSON.parse(body.toString("utf8")) as { method?: unknown };
    return typeof parsed.method === "string" ? parsed.method : undefined;
  } catch {
    return undefined;
  }
}
