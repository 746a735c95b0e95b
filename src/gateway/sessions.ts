/**
 * What connected clients hold on the gateway's shared backends: resource subscriptions and log
 * levels. A backend hears of a subscription once per URI, whoever asked, and again after it
 * reconnects; it is told the most verbose log level among the clients that may see it.
 */
import { GatewayError } from "../core/errors.ts";
import { type Backend, type LoggingLevel, MCP_LOG_LEVELS, type Principal } from "../core/types.ts";
import type { Logger } from "../observability/logger.ts";

/**
 * Whoever holds subscriptions or a log level (a client connection, a listen stream): a key released
 * with `release` when it goes away, and the principal whose access rules decide what it may hear.
 */
export interface Holder {
  readonly principal: Principal;
  /** The profile whose endpoint it came to (config `profiles`); absent for the default endpoint. */
  readonly profile?: string | undefined;
  /** The client session it is (see CallContext.session), when it is one. */
  readonly session?: string | undefined;
}

/** A running server, as the sessions see it. */
export interface SessionServer {
  readonly name: string;
  readonly backend: Backend;
}

export interface ClientSessionsDeps {
  readonly logger: Logger;
  /** The server that offers this resource URI now. */
  readonly ownerOf: (uri: string) => SessionServer | undefined;
  /** Every running server. */
  readonly servers: () => readonly SessionServer[];
  /** Whether the holder's endpoint offers `server` (a profile may not): what it does not, does not exist. */
  readonly offers: (holder: Holder, server: string) => boolean;
  /** Throws the access error when the holder's principal may not read the resources of `server`. */
  readonly checkRead: (holder: Holder, uri: string, server: string) => void;
  readonly maySeeServer: (holder: Holder, server: string) => boolean;
}

export class ClientSessions {
  readonly #deps: ClientSessionsDeps;
  /** Resource subscriptions: URI to the holders subscribed to it. A backend hears once per URI. */
  readonly #subscriptions = new Map<string, Set<Holder>>();
  /**
   * Long-lived client connections and the log level each asked for (undefined: none yet). A backend
   * gets the most verbose level among the clients that may see it (see #wantedLogLevel).
   */
  readonly #logLevels = new Map<Holder, LoggingLevel | undefined>();
  /** The level each backend was last told, by server name. */
  readonly #backendLogLevels = new Map<string, LoggingLevel>();

  constructor(deps: ClientSessionsDeps) {
    this.#deps = deps;
  }

  /**
   * `resources/subscribe` for one holder. The owning backend is told once per URI, and again after it
   * reconnects; `notifications/resources/updated` then arrives as the gateway's `resourceUpdated` event.
   */
  async subscribe(uri: string, holder: Holder): Promise<void> {
    const owner = this.#deps.ownerOf(uri);
    if (!owner || !this.#deps.offers(holder, owner.name)) {
      throw new GatewayError(
        "unknown_resource",
        `Cannot subscribe to resource "${uri}": no connected server offers it. List resources to see what is available.`,
        { data: { uri } },
      );
    }
    // As for resources/read: a subscription delivers the resource's updates, so it needs the same right.
    this.#deps.checkRead(holder, uri, owner.name);
    let holders = this.#subscriptions.get(uri);
    if (holders?.has(holder)) return;
    if (!holders) {
      holders = new Set();
      this.#subscriptions.set(uri, holders);
    }
    holders.add(holder);
    if (holders.size > 1) return;
    try {
      await owner.backend.subscribeResource?.(uri);
    } catch (error) {
      holders.delete(holder);
      if (holders.size === 0) this.#subscriptions.delete(uri);
      throw error;
    }
  }

  async unsubscribe(uri: string, holder: Holder): Promise<void> {
    const holders = this.#subscriptions.get(uri);
    if (!holders?.delete(holder) || holders.size > 0) return;
    this.#subscriptions.delete(uri);
    await this.#deps.ownerOf(uri)?.backend.unsubscribeResource?.(uri);
  }

  /**
   * A long-lived client connection (stdio, a 2025-era session) that has not set a log level: it
   * receives its own calls' log messages as the backends send them, so no other client's level may
   * make a backend it can see quieter than its default (see #wantedLogLevel).
   */
  attach(holder: Holder): void {
    if (!this.#logLevels.has(holder)) this.#logLevels.set(holder, undefined);
  }

  /** `logging/setLevel` from one holder. */
  async setLogLevel(holder: Holder, level: LoggingLevel): Promise<void> {
    this.#logLevels.set(holder, level);
    await this.#applyLogLevels();
  }

  /** Forgets a holder's subscriptions and log level, when its connection closes. */
  release(holder: Holder): void {
    for (const [uri, holders] of this.#subscriptions) {
      if (!holders.has(holder)) continue;
      this.unsubscribe(uri, holder).catch((error) =>
        this.#deps.logger.debug({ uri, err: error }, "could not unsubscribe from a resource"),
      );
    }
    if (this.#logLevels.delete(holder)) void this.#applyLogLevels();
  }

  /** A reconnected backend has forgotten its subscriptions and log level; tell it again. */
  restore(server: SessionServer): void {
    const level = this.#backendLogLevels.get(server.name);
    if (level !== undefined) void this.#sendLogLevel(server, level);
    for (const uri of this.#subscriptions.keys()) {
      if (this.#deps.ownerOf(uri)?.name !== server.name) continue;
      server.backend
        .subscribeResource?.(uri)
        .catch((error) =>
          this.#deps.logger.warn(
            { server: server.name, uri, err: error },
            `could not renew the subscription to "${uri}" after server "${server.name}" reconnected`,
          ),
        );
    }
  }

  /** A server that left: what it was told is forgotten. */
  forget(server: string): void {
    this.#backendLogLevels.delete(server);
  }

  /**
   * Backends are shared by every client, so each is told the most verbose level among the clients
   * that may see it, and every client filters what it is sent by its own level (a client's level
   * never reaches a backend it may not see). A client that set no level counts as wanting what the
   * backend sends by default: once a backend has been told a level, it is put back to "debug" (the
   * most verbose) for such a client, rather than left at another client's quieter level.
   */
  async #applyLogLevels(): Promise<void> {
    await Promise.all(
      this.#deps.servers().map((server) => {
        const level = this.#wantedLogLevel(server.name);
        if (level === undefined || level === this.#backendLogLevels.get(server.name)) return undefined;
        this.#backendLogLevels.set(server.name, level);
        return this.#sendLogLevel(server, level);
      }),
    );
  }

  #wantedLogLevel(server: string): LoggingLevel | undefined {
    let index: number | undefined;
    let unset = false;
    for (const [holder, level] of this.#logLevels) {
      if (!this.#deps.maySeeServer(holder, server)) continue;
      if (level === undefined) unset = true;
      else index = Math.min(index ?? MCP_LOG_LEVELS.length, MCP_LOG_LEVELS.indexOf(level));
    }
    if (index === undefined) return undefined;
    return unset ? MCP_LOG_LEVELS[0] : MCP_LOG_LEVELS[index];
  }

  async #sendLogLevel(server: SessionServer, level: LoggingLevel): Promise<void> {
    try {
      await server.backend.setLogLevel?.(level);
    } catch (error) {
      this.#deps.logger.warn(
        { server: server.name, level, err: error },
        `could not set the log level of server "${server.name}"; its log messages may be filtered differently`,
      );
    }
  }
}
