/**
 * The servers behind the gateway as the console's overview shows them: state, how long up, restarts,
 * the last error and when, the protocol version agreed, how many tools. The state comes from the
 * backends themselves; what a backend does not keep (since when it is up, how often it came back, its
 * last error once it recovered) is learned from the gateway's `backendState` events, which come a few
 * times in a server's life, never per call.
 */
import type { Backend, BackendState } from "../core/types.ts";

export interface ServerRow {
  readonly name: string;
  /** stdio | http | sse (MCP servers), postgres | redis | http-api | filesystem (built-ins), gateway… */
  readonly kind: string;
  readonly state: BackendState;
  /** True once a supervised server stopped retrying (restart.maxRestarts reached). */
  readonly gaveUp: boolean;
  /** Since when it is up (epoch ms), while up; the console's start when it was up before that. */
  readonly upSince?: number;
  /** Times it came back up after being down. */
  readonly restarts: number;
  readonly lastError?: string;
  readonly lastErrorAt?: number;
  /** The protocol version agreed with an MCP server, while up. */
  readonly protocolVersion?: string;
  /** Tools it has in the gateway's catalog now. */
  readonly tools: number;
}

export interface BackendStateEvent {
  readonly server: string;
  readonly state: BackendState;
  readonly reason?: string | undefined;
}

export interface ServerTrackerDeps {
  /** The backends serving now (reloads add and remove them). */
  readonly backends: () => readonly Backend[];
  /** The kind of a server, from the config. */
  readonly kindOf: (server: string) => string;
  /** Tools in the catalog, by server. */
  readonly toolCounts: () => ReadonlyMap<string, number>;
  readonly now?: () => number;
}

interface Track {
  upSince?: number;
  restarts: number;
  lastState?: BackendState;
  lastError?: string;
  lastErrorAt?: number;
}

/** What an MCP backend tells besides the Backend contract (read when it has them). */
interface Supervised {
  readonly gaveUp?: unknown;
  readonly protocolVersion?: unknown;
  readonly lastError?: unknown;
}

export class ServerTracker {
  readonly #deps: ServerTrackerDeps;
  readonly #now: () => number;
  readonly #tracks = new Map<string, Track>();

  constructor(deps: ServerTrackerDeps) {
    this.#deps = deps;
    this.#now = deps.now ?? Date.now;
    const now = this.#now();
    for (const backend of deps.backends()) {
      this.#tracks.set(backend.name, {
        restarts: 0,
        lastState: backend.state,
        ...(backend.state === "up" ? { upSince: now } : {}),
      });
    }
  }

  /** The gateway's `backendState` event. */
  onState(event: BackendStateEvent): void {
    let track = this.#tracks.get(event.server);
    if (!track) {
      track = { restarts: 0 };
      this.#tracks.set(event.server, track);
    }
    if (event.state === "up") {
      if (track.lastState === "down") track.restarts++;
      track.upSince = this.#now();
    } else {
      delete track.upSince;
    }
    if (event.state === "down" && event.reason !== undefined && event.reason !== "") {
      track.lastError = event.reason;
      track.lastErrorAt = this.#now();
    }
    track.lastState = event.state;
  }

  rows(): ServerRow[] {
    const counts = this.#deps.toolCounts();
    const backends = this.#deps.backends();
    const names = new Set(backends.map((b) => b.name));
    // Servers a reload removed are forgotten, so that one added back under the same name starts afresh.
    for (const name of this.#tracks.keys()) if (!names.has(name)) this.#tracks.delete(name);
    return backends.map((backend) => {
      const track = this.#tracks.get(backend.name) ?? { restarts: 0 };
      const extra = backend as Backend & Supervised;
      const current =
        typeof extra.lastError === "string" && extra.lastError !== "" ? extra.lastError : undefined;
      const lastError = track.lastError ?? current;
      const up = backend.state === "up";
      return {
        name: backend.name,
        kind: this.#deps.kindOf(backend.name),
        state: backend.state,
        gaveUp: extra.gaveUp === true,
        ...(up ? { upSince: track.upSince ?? this.#now() } : {}),
        restarts: track.restarts,
        ...(lastError === undefined ? {} : { lastError }),
        ...(track.lastErrorAt === undefined ? {} : { lastErrorAt: track.lastErrorAt }),
        ...(up && typeof extra.protocolVersion === "string"
          ? { protocolVersion: extra.protocolVersion }
          : {}),
        tools: counts.get(backend.name) ?? 0,
      };
    });
  }
}
