/**
 * A server run once per partition of its callers, for servers whose state or credentials must not
 * pass from one caller to another:
 *
 * - per client session (config `isolation: "session"`), for stateful servers (a memory, a
 *   scratchpad, sequential thinking): `sessionPartitioning`;
 * - per user, for remote servers that take each caller's own credentials (config `auth` of a per-user
 *   type; backends/mcp/per-user.ts): an MCP session of its own per principal (and per client session
 *   too, with `isolation: "session"`), which only ever carries that principal's credentials.
 *
 * A primary instance, started with the gateway, answers for the catalog, health, resource
 * subscriptions and the requests that belong to no partition (`switchboard call`, a program embedding
 * the gateway, with session isolation). Each partition gets an instance of its own at its first
 * request: a process per session for a stdio server, an MCP session of its own for a remote one, each
 * with its own restart rules (those of the server). It stops when its session ends (`release`), or
 * has been idle for `sessionLimits.idleTimeoutMs`; at most `sessionLimits.max` run at once, and a
 * partition beyond is refused with what to do.
 *
 * What an instance sends reaches its own partition only: a log message or a question to the client
 * (sampling, elicitation) during a call goes to that call's client; a log message outside any call is
 * dropped (there is no one else it belongs to), and its list changes and resource updates are not
 * forwarded (the primary's are: every instance runs the same server).
 */
import { GatewayError } from "../core/errors.ts";
import type {
  Backend,
  BackendCatalog,
  BackendEvents,
  BackendLogMessage,
  BackendState,
  CallContext,
  CallToolResult,
  CompleteRequestParams,
  CompleteResult,
  GetPromptResult,
  HealthResult,
  ListChanged,
  LoggingLevel,
  ReadResourceResult,
  ToolCall,
} from "../core/types.ts";
import type { Logger } from "../observability/logger.ts";

export interface SessionLimits {
  readonly max: number;
  readonly idleTimeoutMs: number;
}

/** How a server's callers are split into instances. */
export interface Partitioning {
  /** What one instance serves, for messages: "client session", "user". */
  readonly unit: string;
  /**
   * The partition of a request, or undefined for the primary. May refuse the request (throw): a
   * caller without the credentials the server needs never gets an instance.
   */
  route(ctx: CallContext): Promise<string | undefined>;
  /** Makes the backend of a partition's instance (undefined: the primary). */
  make(partition: string | undefined): Backend;
  /** Whether an instance stops when the client session that made it ends. */
  readonly endsWithSession: boolean;
  /** A partition's instance stopped: what was kept for it goes. */
  stopped?(partition: string): void;
}

/** One instance per client session (config `isolation: "session"`). */
export function sessionPartitioning(make: () => Backend): Partitioning {
  return {
    unit: "client session",
    route: async (ctx) => ctx.session,
    make: () => make(),
    endsWithSession: true,
  };
}

interface SessionInstance {
  readonly backend: Backend;
  /** The client session that made it, when it ends with that session. */
  readonly session: string | undefined;
  /** Its requests in flight: its messages go to their clients. */
  readonly calls: Set<CallContext>;
  started: Promise<void>;
  lastUsed: number;
}

export class IsolatedBackend implements Backend {
  readonly name: string;
  readonly #primary: Backend;
  readonly #partitioning: Partitioning;
  readonly #limits: SessionLimits;
  readonly #logger: Logger;
  readonly #sessions = new Map<string, SessionInstance>();
  #sweep: NodeJS.Timeout | undefined;
  #logLevel: LoggingLevel | undefined;
  #closed = false;

  constructor(name: string, partitioning: Partitioning, limits: SessionLimits, logger: Logger) {
    this.name = name;
    this.#partitioning = partitioning;
    this.#primary = partitioning.make(undefined);
    this.#limits = limits;
    this.#logger = logger.child({ server: name });
  }

  get state(): BackendState {
    return this.#primary.state;
  }

  /** Partitions (client sessions, users) with an instance of their own now. */
  get sessions(): number {
    return this.#sessions.size;
  }

  async start(events: BackendEvents): Promise<void> {
    const every = Math.min(60_000, Math.max(1_000, this.#limits.idleTimeoutMs / 4));
    this.#sweep = setInterval(() => this.#reapIdle(), every);
    this.#sweep.unref();
    await this.#primary.start(events);
  }

  catalog(): BackendCatalog {
    return this.#primary.catalog();
  }

  callTool(call: ToolCall, ctx: CallContext): Promise<CallToolResult> {
    return this.#run(ctx, (backend) => backend.callTool(call, ctx));
  }

  readResource(uri: string, ctx: CallContext): Promise<ReadResourceResult> {
    return this.#run(ctx, (backend) => backend.readResource(uri, ctx));
  }

  getPrompt(
    name: string,
    args: Record<string, string> | undefined,
    ctx: CallContext,
  ): Promise<GetPromptResult> {
    return this.#run(ctx, (backend) => backend.getPrompt(name, args, ctx));
  }

  complete(params: CompleteRequestParams, ctx: CallContext): Promise<CompleteResult> {
    return this.#run(ctx, (backend) =>
      backend.complete ? backend.complete(params, ctx) : Promise.resolve({ completion: { values: [] } }),
    );
  }

  async subscribeResource(uri: string): Promise<void> {
    await this.#primary.subscribeResource?.(uri);
  }

  async unsubscribeResource(uri: string): Promise<void> {
    await this.#primary.unsubscribeResource?.(uri);
  }

  async setLogLevel(level: LoggingLevel): Promise<void> {
    this.#logLevel = level;
    await Promise.all(
      [this.#primary, ...[...this.#sessions.values()].map((s) => s.backend)].map((b) =>
        b.setLogLevel?.(level),
      ),
    );
  }

  async refreshLists(changed: ListChanged): Promise<void> {
    await this.#primary.refreshLists?.(changed);
  }

  instructions(): string | undefined {
    return this.#primary.instructions?.();
  }

  rootsListChanged(): void {
    for (const backend of this.#all()) backend.rootsListChanged?.();
  }

  health(signal: AbortSignal): Promise<HealthResult> {
    return this.#primary.health(signal);
  }

  /** The client session ended: the instances it made stop, their state with them. */
  releaseSession(session: string): void {
    for (const [partition, instance] of this.#sessions) {
      if (instance.session !== session) continue;
      this.#sessions.delete(partition);
      this.#stop(partition, instance, "its client session ended");
    }
  }

  async close(): Promise<void> {
    this.#closed = true;
    clearInterval(this.#sweep);
    const instances = [...this.#sessions.values()];
    this.#sessions.clear();
    await Promise.allSettled([this.#primary.close(), ...instances.map((s) => s.backend.close())]);
  }

  #all(): Backend[] {
    return [this.#primary, ...[...this.#sessions.values()].map((s) => s.backend)];
  }

  async #run<T>(ctx: CallContext, work: (backend: Backend) => Promise<T>): Promise<T> {
    const partition = await this.#partitioning.route(ctx);
    if (partition === undefined) return work(this.#primary);
    const instance = this.#instanceFor(partition, ctx.session);
    instance.calls.add(ctx);
    instance.lastUsed = Date.now();
    try {
      await instance.started;
      return await work(instance.backend);
    } finally {
      instance.calls.delete(ctx);
      instance.lastUsed = Date.now();
    }
  }

  #instanceFor(partition: string, session: string | undefined): SessionInstance {
    const unit = this.#partitioning.unit;
    const known = this.#sessions.get(partition);
    if (known) return known;
    if (this.#closed) {
      throw new GatewayError(
        "backend_unavailable",
        `Server "${this.name}" is stopping; retry on another instance.`,
      );
    }
    if (this.#sessions.size >= this.#limits.max) this.#reapIdle();
    if (this.#sessions.size >= this.#limits.max) {
      throw new GatewayError(
        "backend_unavailable",
        `Server "${this.name}" already runs ${this.#limits.max} ${unit}s, each with an instance of its own ` +
          `(sessionLimits.max). Retry once one ends or idles, or raise sessionLimits.max.`,
        { data: { server: this.name, max: this.#limits.max } },
      );
    }
    const backend = this.#partitioning.make(partition);
    const instance: SessionInstance = {
      backend,
      session: this.#partitioning.endsWithSession ? session : undefined,
      calls: new Set(),
      started: Promise.resolve(),
      lastUsed: Date.now(),
    };
    instance.started = backend.start(this.#eventsOf(instance)).then(async () => {
      if (this.#logLevel !== undefined) await backend.setLogLevel?.(this.#logLevel);
    });
    this.#sessions.set(partition, instance);
    this.#logger.debug(
      { instances: this.#sessions.size },
      `started an instance of server "${this.name}" for a ${unit}`,
    );
    return instance;
  }

  /** What an instance reports goes to its own partition's calls, and nowhere else. */
  #eventsOf(instance: SessionInstance): BackendEvents {
    const unit = this.#partitioning.unit;
    const callerOf = (signal?: AbortSignal): CallContext | undefined => {
      let latest: CallContext | undefined;
      for (const call of instance.calls) {
        if (signal !== undefined) {
          if (call.signal === signal) return call;
          continue;
        }
        latest = call;
      }
      return latest;
    };
    return {
      state: (state, reason) =>
        this.#logger.debug(
          { state, reason },
          `an instance of server "${this.name}" for a ${unit} is ${state}`,
        ),
      listChanged: () => undefined,
      resourceUpdated: () => undefined,
      log: (message: BackendLogMessage) => {
        const [only, ...others] = instance.calls;
        const logger = message.logger ? `${this.name}/${message.logger}` : this.name;
        if (only && others.length === 0 && only.client?.log({ ...message, logger })) return;
        this.#logger.debug(
          { level: message.level },
          `dropped a log message of an instance for a ${unit}, sent outside any call`,
        );
      },
      callerOf,
    };
  }

  #reapIdle(): void {
    const cutoff = Date.now() - this.#limits.idleTimeoutMs;
    for (const [partition, instance] of this.#sessions) {
      if (instance.calls.size > 0 || instance.lastUsed > cutoff) continue;
      this.#sessions.delete(partition);
      this.#stop(
        partition,
        instance,
        `it was idle for ${this.#limits.idleTimeoutMs} ms (sessionLimits.idleTimeoutMs)`,
      );
    }
  }

  #stop(partition: string, instance: SessionInstance, why: string): void {
    this.#partitioning.stopped?.(partition);
    this.#logger.debug(
      `stopping an instance of server "${this.name}" for a ${this.#partitioning.unit}: ${why}`,
    );
    instance.backend
      .close()
      .catch((error: unknown) =>
        this.#logger.warn({ err: error }, `could not stop an instance of server "${this.name}" cleanly`),
      );
  }
}
