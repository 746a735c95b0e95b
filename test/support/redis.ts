/**
 * Tests against a real Redis. The server comes from REDIS_URL; without it the tests are skipped with a
 * message that says how to run them, except in CI (CI=true), where a missing service is a failure.
 *
 * Each run uses its own key prefix, so test files running in parallel (or a developer's leftovers)
 * never collide, and deletes its keys by prefix with SCAN (never KEYS) when done.
 */
import { randomUUID } from "node:crypto";
import { connect, createServer, type Server, type Socket } from "node:net";
import { Redis } from "ioredis";
import { describeWithService, REDIS, serviceUrl } from "./services.ts";

export const REDIS_URL = serviceUrl(REDIS);

/**
 * Registers `body` as a suite when REDIS_URL is set. Otherwise: a failing test in CI, a skipped suite
 * elsewhere (the rule every service test follows; see services.ts).
 */
export function describeWithRedis(name: string, body: (url: string) => void): void {
  describeWithService(REDIS, name, body);
}

/** A key prefix no other test run uses. */
export function uniquePrefix(label = "test"): string {
  return `switchboard-test:${label}:${randomUUID()}:`;
}

/** Deletes every key under `prefix` (SCAN + UNLINK); returns how many went. */
export async function deleteByPrefix(url: string, prefix: string): Promise<number> {
  const redis = new Redis(url, { lazyConnect: true, maxRetriesPerRequest: 1 });
  await redis.connect();
  try {
    const pattern = `${prefix.replace(/[*?[\]\\]/g, "\\$&")}*`;
    let cursor = "0";
    let deleted = 0;
    do {
      const [next, keys] = await redis.scan(cursor, "MATCH", pattern, "COUNT", 1000);
      cursor = next;
      if (keys.length > 0) deleted += await redis.unlink(...keys);
    } while (cursor !== "0");
    return deleted;
  } finally {
    redis.disconnect();
  }
}

/** A plain client for looking at what a store wrote. Disconnect it when done. */
export async function rawClient(url: string): Promise<Redis> {
  const redis = new Redis(url, { lazyConnect: true, maxRetriesPerRequest: 1 });
  await redis.connect();
  return redis;
}

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
