/**
 * One circuit breaker per server (shared by all of its tools): closed → open after
 * `consecutiveFailures` failures in a row, or when the failure ratio over `windowMs` reaches
 * `failureRatio` with at least `minCalls` calls; open → half-open after `openMs`; half-open lets
 * `halfOpenMaxCalls` probe calls through at once, and the first probe's outcome closes or reopens it.
 *
 * Open → half-open happens when the next call (or a state read) arrives, not on a timer: an idle
 * breaker costs nothing, and fake clocks need no timers to drive it.
 *
 * Outcomes of calls admitted before the last state change are ignored (each admission carries the
 * breaker's epoch), so a slow call from before the circuit opened cannot close it, and a late
 * failure from before a recovery cannot reopen it.
 *
 * A restart is not an outage: a failure the backend's supervisor explains (the server process died
 * and is being restarted: `backend_unavailable` with `data.restarting`) is not counted, and when the
 * backend is up again (`backendUp`) an open circuit lets trial calls through at once instead of
 * after the rest of `openMs`.
 *
 * With `shared: true` the circuit is shared by the replicas that share a store (BreakerSharing):
 * transitions to open and to closed travel between them; open → half-open does not, since every
 * replica derives it from the same opening time, so each replica lets its own trial calls through.
 */
import { CircuitOpen, describeError, GatewayError } from "../core/errors.ts";
import type { Policy, Store, Unsubscribe } from "../core/types.ts";
import type { Logger } from "../observability/logger.ts";
import type { CircuitBreakerOptions } from "./config.ts";
import type { BreakerState, Emit, PolicyEnv, ToolBinding } from "./types.ts";
import { failureKind, logSharingFailure, resultText, SlidingWindow } from "./util.ts";

/** A transition that replicas share: to open (`at` is when it opened) or to closed. */
export interface SharedTransition {
  readonly to: "open" | "closed";
  /** When it happened (epoch ms). */
  readonly at: number;
  readonly reason: string;
}

export interface BreakerTicket {
  readonly epoch: number;
  readonly probe: boolean;
}

export class CircuitBreaker {
  readonly server: string;
  readonly options: CircuitBreakerOptions;
  readonly #now: () => number;
  readonly #emit: Emit;
  readonly #window: SlidingWindow<"calls" | "failures"> | undefined;
  #state: BreakerState = "closed";
  #epoch = 0;
  #consecutive = 0;
  #openedAt = 0;
  #reason = "";
  #probes = 0;
  readonly #onShared: ((transition: SharedTransition) => void) | undefined;
  /** The last transition to open or closed, made here or applied from another replica. */
  #lastShared: SharedTransition | undefined;

  /** `onShared` hears this breaker's own transitions to open and closed, to share them. */
  constructor(
    server: string,
    options: CircuitBreakerOptions,
    now: () => number,
    emit: Emit,
    onShared?: (transition: SharedTransition) => void,
  ) {
    this.server = server;
    this.options = options;
    this.#now = now;
    this.#emit = emit;
    this.#onShared = onShared;
    this.#window =
      options.failureRatio === undefined
        ? undefined
        : new SlidingWindow(options.windowMs, ["calls", "failures"], now);
  }

  get state(): BreakerState {
    this.#halfOpenIfDue();
    return this.#state;
  }

  /** When an open circuit lets the next probe through (epoch ms); undefined unless open. */
  get retryAt(): number | undefined {
    return this.state === "open" ? this.#openedAt + this.options.openMs : undefined;
  }

  /** The last transition to open or closed (own or applied), for a replica that missed it. */
  get lastShared(): SharedTransition | undefined {
    return this.#lastShared;
  }

  /**
   * Applies a transition another replica made, without sharing it again. One that is not newer than
   * this breaker's own last transition to open or closed is ignored (the newer state wins), and so is
   * an opening whose open time is already over. Returns whether it was applied.
   */
  applyShared(transition: SharedTransition): boolean {
    if (this.#lastShared && transition.at <= this.#lastShared.at) return false;
    this.#halfOpenIfDue();
    if (transition.to === "open") {
      if (transition.at + this.options.openMs <= this.#now()) return false;
      if (this.#state === "open") {
        // Opened here and there at about the same time: keep one circuit, timed from the later opening.
        this.#openedAt = Math.max(this.#openedAt, transition.at);
        this.#lastShared = transition;
        return true;
      }
      this.#transition("open", `${transition.reason} (on another replica)`, transition);
      return true;
    }
    if (this.#state === "closed") {
      this.#lastShared = transition;
      return true;
    }
    this.#transition("closed", `${transition.reason} (on another replica)`, transition);
    return true;
  }

  /** Admits a call or throws CircuitOpen. Report the outcome with `success`, `failure` or `ignore`. */
  enter(binding: ToolBinding): BreakerTicket {
    this.#halfOpenIfDue();
    if (this.#state === "closed") return { epoch: this.#epoch, probe: false };
    if (this.#state === "half-open" && this.#probes < this.options.halfOpenMaxCalls) {
      this.#probes++;
      return { epoch: this.#epoch, probe: true };
    }
    const data = { server: this.server, tool: binding.exposedName, state: this.#state };
    if (this.#state === "half-open") {
      throw new CircuitOpen(
        `Server "${this.server}" is recovering, so "${binding.exposedName}" was not called: a trial call ` +
          "is testing the server right now. Try again in a moment.",
        this.#now(),
        data,
      );
    }
    const retryAt = this.#openedAt + this.options.openMs;
    const inSeconds = Math.max(0, Math.ceil((retryAt - this.#now()) / 1000));
    throw new CircuitOpen(
      `Server "${this.server}" is failing, so "${binding.exposedName}" was not called: its circuit breaker ` +
        `opened after ${this.#reason}. It will let a trial call through at ${new Date(retryAt).toISOString()} ` +
        `(in ${inSeconds} s); try again then, or use another tool.`,
      retryAt,
      data,
    );
  }

  success(ticket: BreakerTicket): void {
    if (ticket.epoch !== this.#epoch) return;
    if (this.#state === "half-open") {
      this.#transition("closed", "a trial call succeeded");
      return;
    }
    this.#consecutive = 0;
    this.#window?.add("calls");
  }

  failure(ticket: BreakerTicket, reason: string): void {
    if (ticket.epoch !== this.#epoch) return;
    if (this.#state === "half-open") {
      this.#transition("open", `a trial call failed (${reason})`);
      return;
    }
    if (this.#state !== "closed") return;
    this.#consecutive++;
    if (this.#consecutive >= this.options.consecutiveFailures) {
      this.#transition("open", `${this.#consecutive} consecutive failures (last: ${reason})`);
      return;
    }
    if (!this.#window || this.options.failureRatio === undefined) return;
    this.#window.add("calls");
    this.#window.add("failures");
    const { calls, failures } = this.#window.totals();
    if (calls >= this.options.minCalls && failures / calls >= this.options.failureRatio) {
      this.#transition(
        "open",
        `${failures} failures in ${calls} calls over ${this.options.windowMs} ms (ratio ` +
          `${(failures / calls).toFixed(2)} ≥ ${this.options.failureRatio}; last: ${reason})`,
      );
    }
  }

  /** The call told nothing about the server (cancelled, rejected locally): frees a probe slot. */
  ignore(ticket: BreakerTicket): void {
    if (ticket.probe && ticket.epoch === this.#epoch && this.#state === "half-open") this.#probes--;
  }

  /** The backend came back up after being down: an open circuit lets trial calls through now. */
  backendUp(): void {
    if (this.#state === "open")
      this.#transition("half-open", "the server is up again; letting trial calls through");
  }

  #halfOpenIfDue(): void {
    if (this.#state === "open" && this.#now() >= this.#openedAt + this.options.openMs) {
      this.#transition("half-open", `open for ${this.options.openMs} ms; letting trial calls through`);
    }
  }

  /** `remote`: the transition another replica made, being applied here. */
  #transition(to: BreakerState, reason: string, remote?: SharedTransition): void {
    const from = this.#state;
    const at = remote?.at ?? this.#now();
    this.#state = to;
    this.#epoch++;
    this.#probes = 0;
    if (to === "open") {
      this.#openedAt = at;
      this.#reason = reason;
    } else if (to === "closed") {
      this.#consecutive = 0;
      this.#window?.reset();
    }
    if (to !== "half-open") {
      this.#lastShared = remote ?? { to, at, reason };
      if (!remote) this.#onShared?.(this.#lastShared);
    }
    this.#emit("breaker", {
      server: this.server,
      from,
      to,
      reason,
      ...(to === "open" ? { retryAt: this.#openedAt + this.options.openMs } : {}),
      ...(remote ? { remote: true } : {}),
    });
  }
}

export function circuitBreakerPolicy(breaker: CircuitBreaker, env: PolicyEnv): Policy {
  const countIsError = breaker.options.countIsError;
  return (next) => async (call, ctx) => {
    let ticket: BreakerTicket;
    try {
      ticket = breaker.enter(env.binding);
    } catch (error) {
      if (error instanceof CircuitOpen) {
        const { server, exposedName: tool } = env.binding;
        env.emit("breakerRejected", { server, tool, state: breaker.state, retryAt: error.retryAt });
      }
      throw error;
    }
    let result: Awaited<ReturnType<typeof next>>;
    try {
      result = await next(call, ctx);
    } catch (error) {
      const kind = failureKind(error, ctx.signal);
      if (restarting(error)) breaker.ignore(ticket);
      else if (kind === "error" || kind === "timeout") breaker.failure(ticket, describeError(error));
      else breaker.ignore(ticket);
      throw error;
    }
    // An isError answer still proves the server is up, so by default it counts as a success.
    if (result.isError && countIsError) breaker.failure(ticket, `isError: ${resultText(result)}`);
    else breaker.success(ticket);
    return result;
  };
}

/** A failure its backend's supervisor already explains and repairs: the process died, a restart is under way. */
function restarting(error: unknown): boolean {
  return (
    error instanceof GatewayError && error.code === "backend_unavailable" && error.data.restarting === true
  );
}

/** The store channel on which replicas announce transitions of shared circuits. */
export const BREAKER_CHANNEL = "breaker";

/**
 * Shares the circuits of breakers with `shared: true` through the store. Each transition to open or
 * closed is published on BREAKER_CHANNEL for the other replicas to apply; an open circuit is also kept
 * as the entry `breaker:<id>` for `openMs`, because messages reach only the replicas connected at the
 * time: a replica reads the entry when it makes the breaker, and again (`resync`) when the store comes
 * back after an outage. Store failures are logged, never thrown: sharing is best effort, and each
 * replica's breaker keeps working on its own.
 */
export class BreakerSharing {
  readonly #store: Store;
  readonly #logger: Logger;
  readonly #now: () => number;
  readonly #breakers = new Map<string, CircuitBreaker>();
  #subscription: Promise<Unsubscribe | undefined> | undefined;

  constructor(store: Store, logger: Logger, now: () => number) {
    this.#store = store;
    this.#logger = logger;
    this.#now = now;
  }

  /** A shared breaker; `id` names its circuit in the store, the same on every replica. */
  create(id: string, server: string, options: CircuitBreakerOptions, emit: Emit): CircuitBreaker {
    const breaker: CircuitBreaker = new CircuitBreaker(server, options, this.#now, emit, (transition) => {
      void this.#share(id, breaker, transition);
    });
    this.#breakers.set(id, breaker);
    this.#subscription ??= this.#subscribe();
    void this.#sync(id, breaker);
    return breaker;
  }

  /** Reads every shared circuit again, and shares what changed here meanwhile (after an outage). */
  async resync(): Promise<void> {
    await Promise.all([...this.#breakers].map(([id, breaker]) => this.#sync(id, breaker)));
  }

  async close(): Promise<void> {
    this.#breakers.clear();
    const unsubscribe = await this.#subscription;
    await unsubscribe?.();
  }

  async #subscribe(): Promise<Unsubscribe | undefined> {
    try {
      return await this.#store.subscribe(BREAKER_CHANNEL, (message, info) => {
        if (!info.fromSelf) this.#onMessage(message);
      });
    } catch (error) {
      this.#logger.warn(
        { err: error },
        "could not subscribe to shared circuit breaker changes; circuits opened elsewhere are seen only " +
          "when this replica re-reads them after a store outage",
      );
      return undefined;
    }
  }

  #onMessage(message: string): void {
    let parsed: unknown;
    try {
      parsed = JSON.parse(message);
    } catch {
      parsed = undefined;
    }
    const transition = asTransition(parsed);
    const id = (parsed as { id?: unknown } | undefined)?.id;
    if (!transition || typeof id !== "string") {
      this.#logger.warn({ message: message.slice(0, 200) }, "ignored a malformed circuit breaker message");
      return;
    }
    this.#breakers.get(id)?.applyShared(transition);
  }

  async #share(id: string, breaker: CircuitBreaker, transition: SharedTransition): Promise<void> {
    const key = `breaker:${id}`;
    try {
      if (transition.to === "open") {
        const ttlMs = transition.at + breaker.options.openMs - this.#now();
        if (ttlMs > 0) await this.#store.set(key, JSON.stringify(transition), { ttlMs });
      } else {
        await this.#store.delete(key);
      }
    } catch (error) {
      logSharingFailure(
        this.#logger,
        error,
        { server: breaker.server, to: transition.to },
        "could not store a shared circuit's state; replicas that start or reconnect meanwhile will not see it",
      );
    }
    try {
      await this.#store.publish(BREAKER_CHANNEL, JSON.stringify({ id, ...transition }));
    } catch (error) {
      logSharingFailure(
        this.#logger,
        error,
        { server: breaker.server, to: transition.to },
        "could not tell other replicas that a shared circuit changed; they see it when this replica " +
          "shares it again after the store recovers, or by their own calls",
      );
    }
  }

  async #sync(id: string, breaker: CircuitBreaker): Promise<void> {
    let stored: SharedTransition | undefined;
    try {
      const raw = await this.#store.get(`breaker:${id}`);
      stored = raw === undefined ? undefined : asTransition(JSON.parse(raw));
    } catch (error) {
      this.#logger.debug({ err: error, server: breaker.server }, "could not read a shared circuit's state");
      return;
    }
    if (stored && breaker.applyShared(stored)) return;
    // What changed here while the store was away is newer than what it holds: share it now.
    const own = breaker.lastShared;
    if (!own || (stored && own.at <= stored.at)) return;
    if (own.to === "open" || stored) await this.#share(id, breaker, own);
  }
}

function asTransition(value: unknown): SharedTransition | undefined {
  if (typeof value !== "object" || value === null) return undefined;
  const { to, at, reason } = value as Record<string, unknown>;
  if ((to !== "open" && to !== "closed") || typeof at !== "number" || typeof reason !== "string") {
    return undefined;
  }
  return { to, at, reason };
}
