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
 */
import { CircuitOpen, describeError } from "../core/errors.ts";
import type { Policy } from "../core/types.ts";
import type { CircuitBreakerOptions } from "./config.ts";
import type { BreakerState, Emit, PolicyEnv, ToolBinding } from "./types.ts";
import { failureKind, resultText, SlidingWindow } from "./util.ts";

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

  constructor(server: string, options: CircuitBreakerOptions, now: () => number, emit: Emit) {
    this.server = server;
    this.options = options;
    this.#now = now;
    this.#emit = emit;
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

  #halfOpenIfDue(): void {
    if (this.#state === "open" && this.#now() >= this.#openedAt + this.options.openMs) {
      this.#transition("half-open", `open for ${this.options.openMs} ms; letting trial calls through`);
    }
  }

  #transition(to: BreakerState, reason: string): void {
    const from = this.#state;
    this.#state = to;
    this.#epoch++;
    this.#probes = 0;
    if (to === "open") {
      this.#openedAt = this.#now();
      this.#reason = reason;
    } else if (to === "closed") {
      this.#consecutive = 0;
      this.#window?.reset();
    }
    this.#emit("breaker", {
      server: this.server,
      from,
      to,
      reason,
      ...(to === "open" ? { retryAt: this.#openedAt + this.options.openMs } : {}),
    });
  }
}

export function circuitBreakerPolicy(breaker: CircuitBreaker, env: PolicyEnv): Policy {
  const countIsError = breaker.options.countIsError;
  return (next) => async (call, ctx) => {
    const ticket = breaker.enter(env.binding);
    let result: Awaited<ReturnType<typeof next>>;
    try {
      result = await next(call, ctx);
    } catch (error) {
      const kind = failureKind(error, ctx.signal);
      if (kind === "error" || kind === "timeout") breaker.failure(ticket, describeError(error));
      else breaker.ignore(ticket);
      throw error;
    }
    // An isError answer still proves the server is up, so by default it counts as a success.
    if (result.isError && countIsError) breaker.failure(ticket, `isError: ${resultText(result)}`);
    else breaker.success(ticket);
    return result;
  };
}
