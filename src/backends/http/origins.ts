/**
 * What an HTTP backend keeps per origin: one keep-alive undici Pool (bounded by `connections`), its
 * own circuit breaker, so that one failing host does not stop calls to the others, and the addresses
 * its host was last checked to resolve to, which are the only ones its connections may use.
 */
import { Pool } from "undici";
import { CircuitOpen } from "../../core/errors.ts";
import type { Logger } from "../../observability/logger.ts";
import { CircuitBreaker } from "../../policies/circuit-breaker.ts";
import type { Emit, ToolBinding } from "../../policies/types.ts";
import type { HttpBackendConfig } from "./config.ts";
import {
  checkHost,
  type HostPattern,
  matchesHostPattern,
  parseHostPattern,
  pinnedLookup,
  type ResolvedAddress,
  type Resolver,
} from "./ssrf.ts";

export interface Origin {
  readonly origin: string;
  readonly pool: Pool;
  readonly breaker: CircuitBreaker | undefined;
  /** The addresses the last check passed; the pool's connections may only use these. */
  pinned: readonly ResolvedAddress[];
  pinnedAt: number;
}

export interface OriginsOptions {
  readonly name: string;
  readonly config: HttpBackendConfig;
  readonly log: Logger;
  readonly resolve: Resolver;
  readonly emit: Emit;
  readonly now: () => number;
  /** The tool a breaker's events name. */
  readonly binding: (tool: string) => ToolBinding;
}

/** How long checked addresses are reused before the host is resolved and checked again. */
const PIN_TTL_MS = 30_000;

/** More origins than this and the least recently used pool is closed (allowHosts may be wildcards). */
const MAX_ORIGINS = 64;

export class Origins {
  readonly #options: OriginsOptions;
  readonly #allowPrivate: readonly HostPattern[];
  readonly #origins = new Map<string, Origin>();

  constructor(options: OriginsOptions) {
    this.#options = options;
    this.#allowPrivate = options.config.allowPrivateHosts.map((p) => parseHostPattern(p) as HostPattern);
  }

  get size(): number {
    return this.#origins.size;
  }

  keys(): string[] {
    return [...this.#origins.keys()];
  }

  /** Origins whose breaker is not closed, for health. */
  troubled(): { origin: string; state: string | undefined }[] {
    return [...this.#origins.values()]
      .filter((o) => o.breaker && o.breaker.state !== "closed")
      .map((o) => ({ origin: o.origin, state: o.breaker?.state }));
  }

  async close(): Promise<void> {
    const pools = [...this.#origins.values()].map((o) => o.pool);
    this.#origins.clear();
    await Promise.all(pools.map((pool) => pool.close().catch(() => undefined)));
  }

  /** The origin of `url`, opened on first use; the least recently used one goes past MAX_ORIGINS. */
  of(url: URL): Origin {
    const key = url.origin;
    const existing = this.#origins.get(key);
    if (existing) {
      // Most recently used last, so eviction takes the idlest.
      this.#origins.delete(key);
      this.#origins.set(key, existing);
      return existing;
    }
    const { name, config, now, emit } = this.#options;
    const state: Origin = {
      origin: key,
      pinned: [],
      pinnedAt: 0,
      breaker: config.circuitBreaker
        ? new CircuitBreaker(`${name} (${key})`, { ...config.circuitBreaker, countIsError: false }, now, emit)
        : undefined,
      pool: new Pool(key, {
        connections: config.connections,
        connect: {
          timeout: config.connectTimeoutMs,
          lookup: pinnedLookup(() => state.pinned),
        },
      }),
    };
    this.#origins.set(key, state);
    if (this.#origins.size > MAX_ORIGINS) {
      const [oldest] = this.#origins.values();
      if (oldest) {
        this.#origins.delete(oldest.origin);
        void oldest.pool.close().catch(() => undefined);
      }
    }
    return state;
  }

  /** Passes the origin's breaker; an open one at a redirect's target is not named to the caller. */
  enter(origin: Origin, tool: string, redirect: string | undefined) {
    const { name, log, binding } = this.#options;
    try {
      return origin.breaker?.enter(binding(tool));
    } catch (error) {
      if (!redirect || !(error instanceof CircuitOpen)) throw error;
      log.debug({ tool, origin: origin.origin }, "a redirect led to an origin whose circuit is open");
      throw new CircuitOpen(
        `${redirect} on backend "${name}" leads to a server that is failing, so it was not followed: ` +
          `its circuit breaker is open until ${new Date(error.retryAt).toISOString()}; try again then.`,
        error.retryAt,
        { server: name },
      );
    }
  }

  /**
   * Resolves and checks the origin's host, unless it was checked within PIN_TTL_MS. Only checked
   * addresses are ever pinned, so reusing them cannot reach anything the check would refuse now.
   */
  async pin(origin: Origin, url: URL, redirect: string | undefined, signal: AbortSignal): Promise<void> {
    if (origin.pinned.length > 0 && performance.now() - origin.pinnedAt < PIN_TTL_MS) return;
    origin.pinned = await checkHost(url.hostname, {
      resolve: this.#options.resolve,
      allowPrivate: matchesHostPattern(url, this.#allowPrivate),
      signal,
      owner: `backend "${this.#options.name}"`,
      redirect,
    });
    origin.pinnedAt = performance.now();
  }
}
