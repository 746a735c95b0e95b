/**
 * The console's live side: what it knows of the running gateway and how it keeps the open consoles
 * current, over one SSE stream each (stream.ts).
 *
 * What it costs the gateway while nobody watches: a sampler every two seconds that reads the per-tool
 * counters (series.ts) and the servers' state events (a few in a server's life). What it adds while
 * someone watches, and only then: a watcher of finished calls (for the rate-limit buckets), the policy
 * runtime's breaker events, the catalog's changes, and the audit log followed. A call's own path is
 * never longer for the console being enabled.
 */
import type { ServerResponse } from "node:http";
import type { AuditRecord } from "../audit/record.ts";
import { GATEWAY_TOOLS_SERVER } from "../config/schema.ts";
import type { ListChanged, Principal } from "../core/types.ts";
import type { Gateway } from "../gateway/gateway.ts";
import type { Logger } from "../observability/logger.ts";
import type { BreakerEvent } from "../policies/runtime.ts";
import { AuditFeed } from "./audit.ts";
import { type BucketRow, BucketWatch } from "./buckets.ts";
import { type ConfigView, configView } from "./config-view.ts";
import { CallSeries, SAMPLE_INTERVAL_MS, type SeriesPoint } from "./series.ts";
import { type BackendStateEvent, type ServerRow, ServerTracker } from "./servers.ts";
import { type ConsoleEvent, EventStreams } from "./stream.ts";
import { cacheCounts, type ToolLive, type ToolRow, toolLive, toolRows } from "./tools.ts";

export interface Resilience {
  readonly breakers: readonly {
    readonly server: string;
    readonly state: string;
    readonly retryAt?: number;
  }[];
  readonly buckets: readonly BucketRow[];
  readonly cache: {
    /** Entries held, for a store that counts them (the memory store); undefined for a shared one. */
    readonly entries?: number;
    readonly hits: number;
    readonly misses: number;
  };
  readonly store: {
    readonly shared: boolean;
    readonly status: string;
    readonly detail?: string;
    readonly data?: Record<string, unknown>;
  };
}

/** What every tick tells the open consoles. */
export interface Live {
  readonly at: number;
  readonly point?: SeriesPoint;
  readonly servers: readonly ServerRow[];
  readonly tools: Readonly<Record<string, ToolLive>>;
  readonly resilience: Resilience;
  readonly reload: ConfigView["reload"];
  readonly inFlight: number;
}

export interface ConsoleOptions {
  readonly logger: Logger;
  readonly now?: () => number;
  /** How often a point is taken and the consoles updated, in ms. Default 2 000. */
  readonly intervalMs?: number;
}

export class GatewayConsole {
  readonly #gateway: Gateway;
  readonly #logger: Logger;
  readonly #now: () => number;
  readonly #series: CallSeries;
  readonly #servers: ServerTracker;
  readonly #buckets: BucketWatch;
  readonly #audit: AuditFeed;
  readonly #streams: EventStreams;
  readonly #timer: NodeJS.Timeout;
  #stopWatching: (() => void)[] = [];
  #serversDue = false;

  constructor(gateway: Gateway, options: ConsoleOptions) {
    this.#gateway = gateway;
    this.#logger = options.logger;
    this.#now = options.now ?? Date.now;
    this.#series = new CallSeries(gateway.observability.toolStats, this.#now);
    this.#servers = new ServerTracker({
      backends: () => gateway.backends(),
      kindOf: (server) => kindOf(gateway, server),
      toolCounts: () => toolCounts(gateway),
      now: this.#now,
    });
    this.#buckets = new BucketWatch(gateway.policies, this.#now);
    this.#streams = new EventStreams(
      () => this.#watch(),
      () => this.#unwatch(),
    );
    this.#audit = new AuditFeed(gateway.audit, options.logger, (records) => this.#onAudit(records));
    gateway.on("backendState", this.#onState);
    this.#timer = setInterval(() => void this.#tick(), options.intervalMs ?? SAMPLE_INTERVAL_MS);
    // A console is no reason to keep a gateway that is shutting down alive.
    this.#timer.unref();
  }

  get audit(): AuditFeed {
    return this.#audit;
  }

  /** How many consoles are open. */
  get watchers(): number {
    return this.#streams.size;
  }

  /** Opens the live stream for one console: everything it shows first, then updates. */
  async stream(res: ServerResponse, principal: Principal): Promise<void> {
    const snapshot: ConsoleEvent = {
      event: "snapshot",
      data: {
        principal,
        series: this.#series.points(),
        intervalMs: SAMPLE_INTERVAL_MS,
        audit: {
          unavailable: this.#audit.unavailable,
          // Opening the stream starts following the log; until then what was read before, if anything.
          latest: this.#audit.latest(),
        },
        ...(await this.live()),
      },
    };
    this.#streams.open(res, [snapshot]);
  }

  /** The tools page: every tool with its policies in force. */
  tools(): ToolRow[] {
    return toolRows(this.#gateway.catalog.toolRoutes(), this.#gateway.policies, this.#gateway.config);
  }

  config(): ConfigView {
    const gateway = this.#gateway;
    return configView(gateway.config, gateway.configStatus.state, (value) => gateway.redact(value));
  }

  /** What changes by the second: the figures every tick carries. */
  async live(point?: SeriesPoint): Promise<Live> {
    const gateway = this.#gateway;
    const cache = await cacheCounts(
      gateway.observability.metrics,
      gateway.config.observability.metrics.prefix,
    );
    let hits = 0;
    let misses = 0;
    for (const counts of cache.values()) {
      hits += counts.hits;
      misses += counts.misses;
    }
    const store = gateway.store;
    const size = (store as { readonly size?: unknown }).size;
    const health = store.health();
    return {
      at: this.#now(),
      ...(point ? { point } : {}),
      servers: this.#servers.rows(),
      tools: toolLive(gateway.observability.toolStats.snapshot(), cache),
      resilience: {
        breakers: gateway.policies.breakerStates(),
        buckets: this.#buckets.nearEmpty(),
        cache: { ...(typeof size === "number" ? { entries: size } : {}), hits, misses },
        store: {
          shared: store.shared === true,
          status: health.status,
          ...(health.detail === undefined ? {} : { detail: health.detail }),
          ...(health.data === undefined ? {} : { data: health.data }),
        },
      },
      reload: gateway.configStatus.state,
      inFlight: gateway.inFlight,
    };
  }

  /** Ends the open streams and stops sampling (the gateway is closing). */
  close(): void {
    clearInterval(this.#timer);
    this.#gateway.off("backendState", this.#onState);
    this.#streams.close();
    this.#unwatch();
  }

  async #tick(): Promise<void> {
    try {
      const point = this.#series.sample();
      if (this.#streams.size === 0) return;
      this.#streams.send("tick", await this.live(point));
    } catch (error) {
      // A figure that cannot be read this time must not take the gateway down; the next tick tries again.
      this.#logger.warn({ err: error }, "the console could not update its figures");
    }
  }

  readonly #onState = (event: BackendStateEvent): void => {
    this.#servers.onState(event);
    if (this.#serversDue || this.#streams.size === 0) return;
    // After the gateway has finished with the change (its catalog rebuilt), once for a burst of them.
    this.#serversDue = true;
    setImmediate(() => {
      this.#serversDue = false;
      this.#streams.send("servers", this.#servers.rows());
    });
  };

  readonly #onBreaker = (_event: BreakerEvent): void => {
    this.#streams.send("breakers", this.#gateway.policies.breakerStates());
  };

  readonly #onListChanged = (changed: ListChanged): void => {
    if (changed.tools) this.#streams.send("catalog", { tools: true });
  };

  #onAudit(records: readonly AuditRecord[]): void {
    this.#streams.send("audit", records);
  }

  /** The first console opened: start what only watchers need. */
  #watch(): void {
    const gateway = this.#gateway;
    // Every tool's chain, so that each server's breaker exists (and shows) before its first call.
    this.tools();
    this.#stopWatching = [
      gateway.observability.calls.watch((call) => this.#buckets.record(call)),
      () => gateway.policies.off("breaker", this.#onBreaker),
      () => gateway.off("listChanged", this.#onListChanged),
      () => this.#audit.stop(),
    ];
    gateway.policies.on("breaker", this.#onBreaker);
    gateway.on("listChanged", this.#onListChanged);
    this.#audit.follow();
  }

  /** The last console closed: stop it all. */
  #unwatch(): void {
    for (const stop of this.#stopWatching) stop();
    this.#stopWatching = [];
  }
}

function kindOf(gateway: Gateway, server: string): string {
  const config = gateway.config;
  const mcp = config.mcpServers[server];
  if (mcp) return mcp.type;
  const builtin = config.backends[server];
  if (builtin) return builtin.type;
  return server === GATEWAY_TOOLS_SERVER ? "gateway" : "embedded";
}

function toolCounts(gateway: Gateway): Map<string, number> {
  const counts = new Map<string, number>();
  for (const route of gateway.catalog.toolRoutes())
    counts.set(route.server, (counts.get(route.server) ?? 0) + 1);
  return counts;
}
