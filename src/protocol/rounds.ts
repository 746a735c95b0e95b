/**
 * Sampling, elicitation and roots for 2026-07-28 clients. Such a client cannot be sent requests: a server
 * that needs input answers the request (`tools/call`, `prompts/get`, `resources/read`) with an
 * `input_required` result, and the client sends it again with the answers and the `requestState` it was
 * given ("multi round-trip requests"). A backend, though, asks in the middle of a running request,
 * whatever its era. This module joins the two: the backend request keeps running while the client
 * answers; the request that is waiting returns `input_required` with the questions asked so far and a
 * `requestState` naming the suspended request; the retry that brings that state back delivers the
 * answers and waits for the next questions or the result.
 *
 * - A question keeps the key its server gave it (a 2026-07-28 backend names each one in its own
 *   `input_required` result); a 2025-era backend's questions have no name, so they get one here.
 * - Every round gets a new `requestState`, good for one retry.
 * - A first request that already carries answers (`inputResponses` without a `requestState`) has them
 *   used for the questions whose keys they name, instead of being asked again.
 * - A question the client did not declare the capability for ends the request with -32021 and the
 *   missing capability in `data.requiredCapabilities` (HTTP 400), and the backend request is cancelled.
 *
 * The suspended request lives in this process. Its `requestState` is a signed token naming this replica
 * (request-state.ts): a retry that lands on another replica is forwarded here by the HTTP server
 * (server/http/state-relay.ts); a forged, altered, expired or foreign token is refused as unknown.
 */
import { randomBytes, randomUUID } from "node:crypto";
import {
  CLIENT_CAPABILITIES_META_KEY,
  type ClientCapabilities,
  ProtocolError,
  ProtocolErrorCode,
  type ServerContext,
} from "@modelcontextprotocol/server";
import { GatewayError } from "../core/errors.ts";
import type { AskOptions, CallerChannel, Principal, ProgressUpdate } from "../core/types.ts";
import type { Gateway } from "../gateway/gateway.ts";
import type { Leg } from "./leg.ts";
import {
  type AskedQuestion,
  type AskMethod,
  GATHER_MAX_MS,
  GATHER_QUIET_MS,
  missingCapability,
} from "./refusals.ts";
import { RequestStateTokens } from "./request-state.ts";

/** How long a suspended request waits for the client to come back with answers before it is cancelled. */
const ANSWER_WAIT_MS = 5 * 60_000;

/** The key prefix of each kind of question a 2025-era backend asks, which comes without a key. */
const KEY_PREFIX: Record<AskMethod, string> = {
  "sampling/createMessage": "sampling",
  "elicitation/create": "elicitation",
  "roots/list": "roots",
};

interface Question extends AskedQuestion {
  resolve(answer: unknown): void;
}

interface Refused extends AskedQuestion {
  reject(error: unknown): void;
}

/** What the gateway gives the request it starts: the suspended request's signal, channel and progress. */
export interface RoundCallOptions {
  readonly signal: AbortSignal;
  readonly client: CallerChannel;
  readonly onProgress?: (update: ProgressUpdate) => void;
}

export interface InputRequired {
  readonly resultType: "input_required";
  readonly inputRequests: Record<string, { method: AskMethod; params: Record<string, unknown> }>;
  readonly requestState: string;
}

export type RoundOutcome<T> =
  | { readonly kind: "result"; readonly result: T }
  | { readonly kind: "input"; readonly inputRequired: InputRequired };

type Next<T> =
  | { readonly kind: "done"; readonly ok: true; readonly result: T }
  | { readonly kind: "done"; readonly ok: false; readonly error: unknown }
  | { readonly kind: "input"; readonly questions: ReadonlyMap<string, Question> };

export class InputRounds {
  readonly #suspended = new Map<string, SuspendedCall<unknown>>();
  readonly #gateway: Gateway;
  readonly #tokens: RequestStateTokens;

  /** `tokens`: how request states are signed (shared by replicas); a key of this process by default. */
  constructor(gateway: Gateway, tokens = new RequestStateTokens(randomUUID(), randomBytes(32))) {
    this.#gateway = gateway;
    this.#tokens = tokens;
  }

  /** How many requests are waiting for a client to come back with answers. */
  get size(): number {
    return this.#suspended.size;
  }

  /**
   * Serves one request of a 2026-07-28 client that may need input (`tools/call`, `prompts/get`,
   * `resources/read`): a new one, or the retry of a suspended one when it carries a `requestState`.
   */
  async serve<T>(
    ctx: ServerContext,
    leg: Leg,
    principal: Principal,
    start: (options: RoundCallOptions) => Promise<T>,
  ): Promise<RoundOutcome<T>> {
    const state = ctx.mcpReq.requestState();
    let call: SuspendedCall<T>;
    if (state === undefined) {
      call = new SuspendedCall<T>(principal.id, ctx);
      call.attach(ctx, leg);
      // Answers sent before any question was asked are kept for the questions they name.
      call.preset(ctx.mcpReq.inputResponses ?? {});
      call.run(
        start({
          signal: call.signal,
          client: call.channel,
          ...(leg.wantsProgress ? { onProgress: (update) => call.leg?.progress(update) } : {}),
        }),
      );
    } else {
      const claims = await this.#tokens.read(state, principal.id, ctx.mcpReq.method);
      const nonce = claims?.owner === this.#tokens.owner ? claims.nonce : undefined;
      const found = nonce === undefined ? undefined : this.#suspended.get(nonce);
      // One message for every refusal, so that a guessed or foreign state learns nothing.
      if (
        !found ||
        found.principal !== principal.id ||
        found.method !== ctx.mcpReq.method ||
        found.leg !== undefined
      ) {
        throw new ProtocolError(
          ProtocolErrorCode.InvalidParams,
          "Invalid or expired requestState: this gateway instance holds no request waiting for these " +
            "answers (it finished, was cancelled, waited too long, was answered already, or runs on another " +
            "instance). Send the request again without a requestState.",
          { reason: "invalid_request_state" },
        );
      }
      // A requestState is good for one retry: the next round has a new one.
      this.#suspended.delete(nonce as string);
      call = found as SuspendedCall<T>;
      call.attach(ctx, leg);
      call.answer(ctx.mcpReq.inputResponses ?? {});
    }

    const next = await call.next();
    if (next.kind === "input") {
      const { token, nonce } = await this.#tokens.issue(
        principal.id,
        ctx.mcpReq.method,
        Date.now() + ANSWER_WAIT_MS,
      );
      this.#suspended.set(nonce, call as SuspendedCall<unknown>);
      call.detach(() => {
        this.#suspended.delete(nonce);
        call.cancel(
          `The request was cancelled: its client did not come back with answers within ${ANSWER_WAIT_MS / 1000} s.`,
        );
      });
      const inputRequests: InputRequired["inputRequests"] = {};
      for (const [key, question] of next.questions) {
        inputRequests[key] = { method: question.method, params: question.params };
      }
      this.#gateway.logger.debug(
        { requestId: String(ctx.mcpReq.id), questions: Object.keys(inputRequests) },
        "request waits for input from its client",
      );
      return {
        kind: "input",
        inputRequired: { resultType: "input_required", inputRequests, requestState: token },
      };
    }
    call.finish();
    if (!next.ok) throw next.error;
    return { kind: "result", result: next.result };
  }
}

/** One backend request that may be waiting for its client's answers between requests. */
class SuspendedCall<T> {
  readonly principal: string;
  /** The method of the request it serves: a retry must be of the same method. */
  readonly method: string;
  /** The request that currently carries the call; undefined while the client gathers answers. */
  leg: Leg | undefined;
  readonly #controller = new AbortController();
  /** The latest request: its `_meta` envelope says what the client can be asked. */
  #ctx: ServerContext;
  #outcome: Next<T> | undefined;
  /** Asked and not yet answered, by the key the client answers under. */
  readonly #open = new Map<string, Question>();
  /** Asked, but not declared by the client: refused when the round closes (see `next`). */
  readonly #refused: Refused[] = [];
  /** Answers the first request brought before anything was asked, by key. */
  readonly #presets = new Map<string, unknown>();
  /** Questions the client has not been sent yet (new ones, or ones it left unanswered). */
  #unsent = false;
  /** A batch is being gathered: questions asked together go out together. */
  #gathering: { quiet: NodeJS.Timeout; readonly until: number } | undefined;
  #wake: (() => void) | undefined;
  #seq = 0;
  #idle: NodeJS.Timeout | undefined;
  #unlink: (() => void) | undefined;

  readonly channel: CallerChannel;

  constructor(principal: string, ctx: ServerContext) {
    this.principal = principal;
    this.method = ctx.mcpReq.method;
    this.#ctx = ctx;
    const call = this;
    this.channel = {
      get capabilities() {
        return declaredBy(call.#ctx) ?? {};
      },
      createMessage: (params, signal, ask) =>
        this.#ask("sampling/createMessage", params, signal, ask) as ReturnType<
          CallerChannel["createMessage"]
        >,
      elicit: (params, signal, ask) =>
        this.#ask("elicitation/create", params, signal, ask) as ReturnType<CallerChannel["elicit"]>,
      // A client without roots is not asked: the backend answers from its config instead.
      listRoots: (signal, ask) =>
        declares(this.#ctx, "roots/list")
          ? (this.#ask("roots/list", {}, signal, ask) as ReturnType<CallerChannel["listRoots"]>)
          : Promise.resolve(undefined),
      log: (message) => this.leg?.log(message) ?? false,
    };
  }

  get signal(): AbortSignal {
    return this.#controller.signal;
  }

  run(call: Promise<T>): void {
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
    const onAbort = () => this.cancel("The client cancelled the request while it was being asked for input.");
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
    if (this.#gathering) clearTimeout(this.#gathering.quiet);
  }

  cancel(message: string): void {
    this.#controller.abort(new GatewayError("cancelled", message));
  }

  preset(responses: Record<string, unknown>): void {
    for (const [key, answer] of Object.entries(responses)) this.#presets.set(key, answer);
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

  /**
   * Waits until the call finishes or has questions to send; the result wins if both happen. Questions the
   * client cannot answer are refused to the backend; when a round has nothing else to ask, the request
   * ends with -32021 naming what the client lacks.
   */
  async next(): Promise<Next<T>> {
    for (;;) {
      if (this.#outcome) return this.#outcome;
      if (!this.#gathering && (this.#unsent || this.#refused.length > 0)) {
        const refused = this.#refused.splice(0);
        this.#unsent = false;
        if (this.#open.size === 0 && refused.length > 0) {
          const error = missingCapability(refused);
          this.#settle({ kind: "done", ok: false, error });
          // Nobody waits for the backend request any more.
          this.cancel(`The request was ended: ${error.message}`);
        }
        for (const question of refused) question.reject(missingCapability([question]));
        if (this.#outcome) return this.#outcome;
        if (this.#open.size > 0) return { kind: "input", questions: new Map(this.#open) };
        continue;
      }
      await new Promise<void>((resolve) => {
        this.#wake = resolve;
      });
      this.#wake = undefined;
    }
  }

  /** The first outcome stands: a refusal sent to the client is not replaced by what the backend did next. */
  #settle(outcome: Next<T>): void {
    this.#outcome ??= outcome;
    this.#wake?.();
  }

  #ask(method: AskMethod, params: object, signal: AbortSignal, ask?: AskOptions): Promise<unknown> {
    const mode = (params as { mode?: string }).mode;
    if (!declares(this.#ctx, method, mode)) {
      return new Promise((_resolve, reject) => {
        this.#refused.push({ method, params: params as Record<string, unknown>, reject });
        this.#gather();
      });
    }
    if (signal.aborted) return Promise.reject(signal.reason);
    const named = ask?.key;
    if (named !== undefined && this.#presets.has(named)) {
      const answer = this.#presets.get(named);
      this.#presets.delete(named);
      return Promise.resolve(answer);
    }
    const key =
      named !== undefined && !this.#open.has(named) ? named : `${KEY_PREFIX[method]}-${++this.#seq}`;
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
      this.#gather();
    });
  }

  /** Holds the round back while questions keep arriving (see GATHER_QUIET_MS). */
  #gather(): void {
    const until = this.#gathering?.until ?? Date.now() + GATHER_MAX_MS;
    if (this.#gathering) clearTimeout(this.#gathering.quiet);
    const quiet = setTimeout(
      () => {
        this.#gathering = undefined;
        this.#wake?.();
      },
      Math.max(0, Math.min(GATHER_QUIET_MS, until - Date.now())),
    );
    this.#gathering = { quiet, until };
  }
}

/** What a 2026-07-28 request's client declared (the `_meta` envelope). */
function declaredBy(ctx: ServerContext): ClientCapabilities | undefined {
  return envelopeOf(ctx)[CLIENT_CAPABILITIES_META_KEY] as ClientCapabilities | undefined;
}

function declares(ctx: ServerContext, method: AskMethod, mode?: string): boolean {
  const declared = declaredBy(ctx);
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

/**
 * -32021 for questions the client did not declare it can answer, with what it lacks in
 * `data.requiredCapabilities`: the SDK would otherwise refuse the whole `input_required` result, and
 * the client could not know why.
 */
/** The reserved `_meta` keys of a 2026-07-28 request (the SDK types the envelope as an empty object). */
export function envelopeOf(ctx: ServerContext): Readonly<Record<string, unknown>> {
  return (ctx.mcpReq.envelope ?? {}) as Record<string, unknown>;
}
