/**
 * Sampling, elicitation and roots for 2026-07-28 clients. Such a client cannot be sent requests: a server
 * that needs input answers the call with an `input_required` result, and the client calls again with
 * the answers and the `requestState` it was given ("multi round-trip requests"). A backend, though,
 * asks in the middle of a running call, whatever its era. This module joins the two: the backend call
 * keeps running while the client answers; the request that is waiting returns `input_required` with
 * the questions asked so far and a `requestState` naming the suspended call; the retry that brings
 * that state back delivers the answers and waits for the next questions or the result.
 *
 * The suspended call lives in this process, so a retry must reach the same gateway instance (sticky
 * routing behind a load balancer); elsewhere its `requestState` is unknown and is refused.
 */
import { randomUUID } from "node:crypto";
import {
  CLIENT_CAPABILITIES_META_KEY,
  type ClientCapabilities,
  ProtocolError,
  ProtocolErrorCode,
  type ServerContext,
} from "@modelcontextprotocol/server";
import { GatewayError } from "../core/errors.ts";
import type { CallerChannel, CallToolResult, Principal, ProgressUpdate } from "../core/types.ts";
import type { Gateway } from "../gateway/gateway.ts";
import type { Leg } from "./leg.ts";

/** How long a suspended call waits for the client to come back with answers before it is cancelled. */
const ANSWER_WAIT_MS = 5 * 60_000;

type Method = "sampling/createMessage" | "elicitation/create" | "roots/list";

/** The key prefix of each kind of question in `inputRequests`. */
const KEY_PREFIX: Record<Method, string> = {
  "sampling/createMessage": "sampling",
  "elicitation/create": "elicitation",
  "roots/list": "roots",
};

interface Question {
  readonly method: Method;
  readonly params: Record<string, unknown>;
  resolve(answer: unknown): void;
}

/** What the gateway gives the call it starts: the suspended call's signal, channel and progress. */
export interface RoundCallOptions {
  readonly signal: AbortSignal;
  readonly client: CallerChannel;
  readonly onProgress?: (update: ProgressUpdate) => void;
}

export type RoundOutcome =
  | { readonly kind: "result"; readonly result: CallToolResult }
  | {
      readonly kind: "input";
      readonly inputRequired: {
        readonly resultType: "input_required";
        readonly inputRequests: Record<string, { method: Method; params: Record<string, unknown> }>;
        readonly requestState: string;
      };
    };

type Next =
  | { readonly kind: "done"; readonly ok: true; readonly result: CallToolResult }
  | { readonly kind: "done"; readonly ok: false; readonly error: unknown }
  | { readonly kind: "input"; readonly questions: ReadonlyMap<string, Question> };

export class InputRounds {
  readonly #suspended = new Map<string, SuspendedCall>();
  readonly #gateway: Gateway;

  constructor(gateway: Gateway) {
    this.#gateway = gateway;
  }

  /** How many calls are waiting for a client to come back with answers. */
  get size(): number {
    return this.#suspended.size;
  }

  /**
   * Serves one `tools/call` request of a 2026-07-28 client: a new call, or the retry of a suspended
   * one when the request carries a `requestState`.
   */
  async serve(
    ctx: ServerContext,
    leg: Leg,
    principal: Principal,
    start: (options: RoundCallOptions) => Promise<CallToolResult>,
  ): Promise<RoundOutcome> {
    const state = ctx.mcpReq.requestState();
    let call: SuspendedCall;
    if (state === undefined) {
      call = new SuspendedCall(principal.id, ctx);
      call.attach(ctx, leg);
      call.run(
        start({
          signal: call.signal,
          client: call.channel,
          ...(leg.wantsProgress ? { onProgress: (update) => call.leg?.progress(update) } : {}),
        }),
      );
    } else {
      const found = typeof state === "string" ? this.#suspended.get(state) : undefined;
      // One message for every refusal, so that a guessed or foreign state learns nothing.
      if (!found || found.principal !== principal.id || found.leg !== undefined) {
        throw new ProtocolError(
          ProtocolErrorCode.InvalidParams,
          "Invalid or expired requestState: this gateway instance holds no call waiting for these answers " +
            "(it finished, was cancelled, waited too long, or runs on another instance). Call the tool again.",
          { reason: "invalid_request_state" },
        );
      }
      call = found;
      call.attach(ctx, leg);
      call.answer(ctx.mcpReq.inputResponses ?? {});
    }

    const next = await call.next();
    if (next.kind === "input") {
      this.#suspended.set(call.token, call);
      call.detach(() => {
        this.#suspended.delete(call.token);
        call.cancel(
          `The call was cancelled: its client did not come back with answers within ${ANSWER_WAIT_MS / 1000} s.`,
        );
      });
      const inputRequests: Record<string, { method: Method; params: Record<string, unknown> }> = {};
      for (const [key, question] of next.questions) {
        inputRequests[key] = { method: question.method, params: question.params };
      }
      this.#gateway.logger.debug(
        { requestId: String(ctx.mcpReq.id), questions: Object.keys(inputRequests) },
        "call waits for input from its client",
      );
      return {
        kind: "input",
        inputRequired: { resultType: "input_required", inputRequests, requestState: call.token },
      };
    }
    if (state !== undefined) this.#suspended.delete(call.token);
    call.finish();
    if (!next.ok) throw next.error;
    return { kind: "result", result: next.result };
  }
}

/** One backend call that may be waiting for its client's answers between requests. */
class SuspendedCall {
  readonly principal: string;
  /** The request that currently carries the call; undefined while the client gathers answers. */
  leg: Leg | undefined;
  readonly #controller = new AbortController();
  /** The latest request: its `_meta` envelope says what the client can be asked. */
  #ctx: ServerContext;
  #outcome: Next | undefined;
  /** Asked and not yet answered, by the key the client answers under. */
  readonly #open = new Map<string, Question>();
  /** Questions the client has not been sent yet (new ones, or ones it left unanswered). */
  #unsent = false;
  /** A batch is being gathered: questions asked together go out together. */
  #gathering = false;
  #wake: (() => void) | undefined;
  #seq = 0;
  #token: string | undefined;
  #idle: NodeJS.Timeout | undefined;
  #unlink: (() => void) | undefined;

  readonly channel: CallerChannel;

  constructor(principal: string, ctx: ServerContext) {
    this.principal = principal;
    this.#ctx = ctx;
    this.channel = {
      createMessage: (params, signal) =>
        this.#ask("sampling/createMessage", params, signal) as ReturnType<CallerChannel["createMessage"]>,
      elicit: (params, signal) =>
        this.#ask("elicitation/create", params, signal) as ReturnType<CallerChannel["elicit"]>,
      // A client without roots is not asked: the backend answers from its config instead.
      listRoots: (signal) =>
        declares(this.#ctx, "roots/list")
          ? (this.#ask("roots/list", {}, signal) as ReturnType<CallerChannel["listRoots"]>)
          : Promise.resolve(undefined),
      log: (message) => this.leg?.log(message) ?? false,
    };
  }

  get signal(): AbortSignal {
    return this.#controller.signal;
  }

  /** The `requestState` that names this call; made only for a call that does wait for answers. */
  get token(): string {
    this.#token ??= randomUUID();
    return this.#token;
  }

  run(call: Promise<CallToolResult>): void {
    call.then(
      (result) => this.#settle({ kind: "done", ok: true, result }),
      (error: unknown) => this.#settle({ kind: "done", ok: false, error }),
    );
  }

  /** Binds the call to a request: its progress and logs go there, and its cancel cancels the call. */
  attach(ctx: ServerContext, leg: Leg): void {
    clearTimeout(this.#idle);
    this.#ctx = ctx;
    this.leg = leg;
    const signal = ctx.mcpReq.signal;
    const onAbort = () => this.cancel("The client cancelled the call while it was being asked for input.");
    if (signal.aborted) onAbort();
    else signal.addEventListener("abort", onAbort, { once: true });
    this.#unlink = () => signal.removeEventListener("abort", onAbort);
  }

  /** The request returns `input_required`; the call waits for the retry, up to ANSWER_WAIT_MS. */
  detach(onExpired: () => void): void {
    this.#unlink?.();
    this.#unlink = undefined;
    this.leg = undefined;
    this.#idle = setTimeout(onExpired, ANSWER_WAIT_MS);
    this.#idle.unref();
  }

  finish(): void {
    this.#unlink?.();
    this.#unlink = undefined;
    clearTimeout(this.#idle);
  }

  cancel(message: string): void {
    this.#controller.abort(new GatewayError("cancelled", message));
  }

  answer(responses: Record<string, unknown>): void {
    for (const [key, answer] of Object.entries(responses)) {
      const question = this.#open.get(key);
      if (!question) continue;
      this.#open.delete(key);
      question.resolve(answer);
    }
    if (this.#open.size > 0) this.#unsent = true;
  }

  /** Waits until the call finishes or has questions to send; the result wins if both happen. */
  async next(): Promise<Next> {
    for (;;) {
      if (this.#outcome) return this.#outcome;
      if (this.#unsent && !this.#gathering) {
        this.#unsent = false;
        return { kind: "input", questions: new Map(this.#open) };
      }
      await new Promise<void>((resolve) => {
        this.#wake = resolve;
      });
      this.#wake = undefined;
    }
  }

  #settle(outcome: Next): void {
    this.#outcome = outcome;
    this.#wake?.();
  }

  #ask(method: Method, params: object, signal: AbortSignal): Promise<unknown> {
    assertCanAsk(this.#ctx, method, (params as { mode?: string }).mode);
    if (signal.aborted) return Promise.reject(signal.reason);
    const key = `${KEY_PREFIX[method]}-${++this.#seq}`;
    return new Promise((resolve, reject) => {
      const onAbort = () => {
        this.#open.delete(key);
        reject(signal.reason);
      };
      signal.addEventListener("abort", onAbort, { once: true });
      this.#open.set(key, {
        method,
        params: params as Record<string, unknown>,
        resolve: (answer) => {
          signal.removeEventListener("abort", onAbort);
          resolve(answer);
        },
      });
      this.#unsent = true;
      if (!this.#gathering) {
        // A server that asks several questions at once asks them in one turn; they go out together.
        this.#gathering = true;
        setImmediate(() => {
          this.#gathering = false;
          this.#wake?.();
        });
      }
    });
  }
}

/**
 * Whether a 2026-07-28 request's client declared what an embedded request needs; the SDK would
 * otherwise refuse the whole `input_required` result, leaving the backend waiting for an answer.
 */
function assertCanAsk(ctx: ServerContext, method: Method, mode?: string): void {
  if (!declares(ctx, method, mode)) {
    throw new ProtocolError(
      ProtocolErrorCode.InvalidRequest,
      `The client that made this call did not declare the capability for ${method}` +
        (mode === "url" ? " (url mode)" : "") +
        ", so the question cannot be forwarded to it. Use a client that supports it.",
    );
  }
}

function declares(ctx: ServerContext, method: Method, mode?: string): boolean {
  const declared = envelopeOf(ctx)[CLIENT_CAPABILITIES_META_KEY] as ClientCapabilities | undefined;
  switch (method) {
    case "sampling/createMessage":
      return declared?.sampling !== undefined;
    case "roots/list":
      return declared?.roots !== undefined;
    case "elicitation/create":
      return mode === "url"
        ? declared?.elicitation?.url !== undefined
        : declared?.elicitation !== undefined &&
            (declared.elicitation.form !== undefined || declared.elicitation.url === undefined);
  }
}

/** The reserved `_meta` keys of a 2026-07-28 request (the SDK types the envelope as an empty object). */
export function envelopeOf(ctx: ServerContext): Readonly<Record<string, unknown>> {
  return (ctx.mcpReq.envelope ?? {}) as Record<string, unknown>;
}
