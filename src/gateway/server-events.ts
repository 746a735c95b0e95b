/**
 * What the gateway does when a running server speaks: its state changes (counted, the catalog rebuilt,
 * subscriptions and log level restored after a reconnect), its lists change (announced to the other
 * replicas), it logs (to the caller of its one request in flight, else to the clients that asked), a
 * resource changes, or it asks the client of one of its requests. When it comes up or its lists
 * change, its cached results are dropped if, and only if, its definitions changed (server-definitions.ts).
 */
import type {
  Backend,
  BackendEvents,
  BackendLogMessage,
  BackendState,
  CallContext,
  ListChanged,
  Store,
} from "../core/types.ts";
import type { Logger } from "../observability/logger.ts";
import type { Metrics } from "../observability/metrics.ts";
import type { PolicyRuntime } from "../policies/runtime.ts";
import type { ReplicaSync } from "./replica-sync.ts";
import { serverRoute } from "./route.ts";
import { ServerDefinitions } from "./server-definitions.ts";
import type { ClientSessions, SessionServer } from "./sessions.ts";

export interface ServerEventsDeps {
  readonly logger: Logger;
  readonly policies: PolicyRuntime;
  /** Where the servers' definitions hashes are kept, shared by the replicas that share it. */
  readonly store: Store;
  readonly sessions: ClientSessions;
  readonly sync: ReplicaSync;
  readonly metrics: () => Metrics | undefined;
  /** The requests in flight on a backend, oldest first. */
  readonly inFlight: (backend: Backend) => ReadonlySet<CallContext> | undefined;
  /** The server of this name in the running plan. */
  readonly server: (name: string) => SessionServer | undefined;
  /** Rebuilds the catalog; returns which exposed lists changed. */
  readonly rebuildCatalog: () => ListChanged;
  /** Redacts a message on its way to clients. */
  readonly redact: <T>(value: T) => T;
  /** What the gateway tells its clients. */
  readonly emit: {
    backendState(event: { server: string; state: BackendState; reason?: string | undefined }): void;
    listChanged(changed: ListChanged): void;
    log(message: { server: string } & BackendLogMessage): void;
    resourceUpdated(uri: string): void;
  };
}

export class ServerEvents {
  readonly #deps: ServerEventsDeps;
  /**
   * Servers that went down since they were last up. A restart is a server up again after it went
   * down: backends pass through "starting" on the way back, so the state just before "up" says nothing.
   */
  readonly #wentDown = new Set<string>();
  /** Servers whose lists are being re-read because another replica said so: not announced again. */
  readonly #refreshing = new Set<string>();

  readonly #definitions: ServerDefinitions;

  constructor(deps: ServerEventsDeps) {
    this.#deps = deps;
    this.#definitions = new ServerDefinitions({
      store: deps.store,
      logger: deps.logger,
      invalidate: (server) => deps.policies.invalidateServer(server),
    });
  }

  /**
   * The events one server's backend reports to. A backend that is not (or no longer) the running
   * plan's for its server — a new one starting during a reload, an old one draining after it — still
   * answers its own requests' questions and logs, but its state and list changes are not the server's.
   */
  for(server: SessionServer): BackendEvents {
    const current = () => this.#deps.server(server.name)?.backend === server.backend;
    return {
      state: (state, reason) => {
        if (current()) this.#onState(server, state, reason);
      },
      listChanged: (changed) => {
        if (current()) this.#onListChanged(server, changed);
      },
      log: (message) => this.#onLog(server, message),
      resourceUpdated: (uri) => this.#onResourceUpdated(server.name, uri),
      callerOf: (signal) => this.#callerOf(server.backend, signal),
    };
  }

  /**
   * Another replica heard that a server's lists changed. Its connection to that server is not this
   * one's: a backend that can re-read its lists does (and reports a change as usual); otherwise this
   * replica's clients are told to list again.
   */
  remoteListChanged(name: string, changed: ListChanged): void {
    const backend: Backend | undefined = this.#deps.server(name)?.backend;
    if (!backend) return;
    if (!backend.refreshLists) {
      this.#deps.emit.listChanged({
        ...(changed.tools ? { tools: true } : {}),
        ...(changed.resources ? { resources: true } : {}),
        ...(changed.prompts ? { prompts: true } : {}),
      });
      return;
    }
    this.#refreshing.add(name);
    backend
      .refreshLists(changed)
      .catch((error: unknown) =>
        this.#deps.logger.warn(
          { err: error, server: name },
          `could not re-read the lists of server "${name}" after another replica saw them change`,
        ),
      )
      .finally(() => this.#refreshing.delete(name));
  }

  #onState(server: SessionServer, state: BackendState, reason?: string): void {
    const deps = this.#deps;
    deps.emit.backendState({ server: server.name, state, reason });
    const restarted = state === "up" && this.#wentDown.delete(server.name);
    if (state === "down") this.#wentDown.add(server.name);
    else if (state === "stopped") this.#wentDown.delete(server.name);
    const metrics = deps.metrics();
    if (metrics) {
      metrics.setBackendUp(server.name, state === "up");
      if (restarted) metrics.backendRestarted(server.name);
    }
    if (state === "up" || state === "down") {
      if (state === "up") {
        void this.#definitions.seen(server.name, server.backend.catalog());
        // A circuit opened while it was down need not wait out openMs: the server is back.
        deps.policies.backendUp(server.name);
      }
      deps.rebuildCatalog();
      if (state === "up") deps.sessions.restore(server);
    }
  }

  #onListChanged(server: SessionServer, changed: ListChanged): void {
    void this.#definitions.seen(server.name, server.backend.catalog());
    const exposed = this.#deps.rebuildCatalog();
    if (!(exposed.tools || exposed.resources || exposed.prompts) || this.#refreshing.has(server.name)) return;
    void this.#deps.sync.announceListChanged(server.name, changed);
  }

  /**
   * A backend log goes to the caller when exactly one request is in flight on that backend (so it
   * rides on that request's response stream); otherwise (or when that request was answered in the
   * meantime) it cannot be attributed and goes to the clients that asked for log messages and may see
   * the server.
   */
  #onLog({ name: server, backend }: SessionServer, received: BackendLogMessage): void {
    const message = this.#deps.redact(received);
    const calls = this.#deps.inFlight(backend);
    if (calls?.size === 1) {
      const [only] = calls;
      const logger = message.logger ? `${server}/${message.logger}` : server;
      if (only?.client?.log({ ...message, logger })) return;
    }
    this.#deps.emit.log({ server, ...message });
  }

  /** A resource changed: reads of it cached here are stale, and its subscribers hear of it. */
  #onResourceUpdated(server: string, uri: string): void {
    void this.#deps.policies.invalidateTools([serverRoute("resources/read", server).name]);
    this.#deps.emit.resourceUpdated(uri);
  }

  /**
   * With a signal the backend knows which request asked, and only the request with that signal may
   * answer (none, if it was not a tool call). Without one, the most recent request on the server is
   * the best guess; with a single one in flight it is the right one.
   */
  #callerOf(backend: Backend, signal?: AbortSignal): CallContext | undefined {
    const calls = this.#deps.inFlight(backend);
    if (!calls) return undefined;
    let latest: CallContext | undefined;
    for (const call of calls) {
      if (signal !== undefined) {
        if (call.signal === signal) return call;
        continue;
      }
      latest = call;
    }
    return latest;
  }
}
