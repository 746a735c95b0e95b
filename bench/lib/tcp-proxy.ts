/**
 * A TCP proxy on loopback, shared by the benchmarks and the tests (test/support/redis.ts re-exports it).
 */
import { connect, createServer, type Server, type Socket } from "node:net";

/**
 * A TCP proxy on loopback in front of Redis, to simulate an outage without touching the shared
 * server: `cut()` drops every connection and refuses new ones, `restore()` lets them through again.
 */
export class TcpProxy {
  readonly #server: Server;
  readonly #target: { host: string; port: number };
  readonly #sockets = new Set<Socket>();
  #cut = false;

  private constructor(target: { host: string; port: number }) {
    this.#target = target;
    this.#server = createServer((client) => this.#accept(client));
  }

  static async start(targetUrl: string): Promise<TcpProxy> {
    const target = new URL(targetUrl);
    const proxy = new TcpProxy({ host: target.hostname, port: Number(target.port || 6379) });
    await new Promise<void>((resolve, reject) => {
      proxy.#server.once("error", reject);
      proxy.#server.listen(0, "127.0.0.1", () => resolve());
    });
    return proxy;
  }

  /** The target URL with the proxy's address (credentials and db kept). */
  urlFor(targetUrl: string): string {
    const url = new URL(targetUrl);
    const address = this.#server.address();
    if (!address || typeof address === "string") throw new Error("the proxy is not listening");
    url.hostname = "127.0.0.1";
    url.port = String(address.port);
    return url.toString();
  }

  cut(): void {
    this.#cut = true;
    for (const socket of this.#sockets) socket.destroy();
    this.#sockets.clear();
  }

  restore(): void {
    this.#cut = false;
  }

  async close(): Promise<void> {
    this.cut();
    await new Promise<void>((resolve) => this.#server.close(() => resolve()));
  }

  #accept(client: Socket): void {
    if (this.#cut) {
      client.destroy();
      return;
    }
    const upstream = connect(this.#target.port, this.#target.host);
    for (const socket of [client, upstream]) {
      this.#sockets.add(socket);
      socket.on("error", () => undefined);
      socket.on("close", () => {
        this.#sockets.delete(socket);
        client.destroy();
        upstream.destroy();
      });
    }
    client.pipe(upstream);
    upstream.pipe(client);
  }
}
