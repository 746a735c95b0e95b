/**
 * Questions a backend asks that the client cannot answer: it did not declare the capability. Whichever
 * path serves a 2026-07-28 request (an input round, or the plain HTTP path for a client that declared
 * nothing), the request ends with -32021 naming every capability the questions asked together needed,
 * and each question is refused to its backend.
 */
import { type ClientCapabilities, MissingRequiredClientCapabilityError } from "@modelcontextprotocol/server";

/**
 * Questions asked together are answered together. A 2026-07-28 backend's are asked in one turn; a
 * 2025-era backend sends each as a request of its own, which arrive one read apart: a round waits until
 * no new question came for GATHER_QUIET_MS, and never longer than GATHER_MAX_MS after the first.
 */
export const GATHER_QUIET_MS = 15;
export const GATHER_MAX_MS = 200;

export type AskMethod = "sampling/createMessage" | "elicitation/create" | "roots/list";

export interface AskedQuestion {
  readonly method: AskMethod;
  readonly params: Record<string, unknown>;
}

/** The -32021 error for questions the client did not declare the capabilities for. */
export function missingCapability(questions: readonly AskedQuestion[]): MissingRequiredClientCapabilityError {
  const required: Record<string, Record<string, unknown>> = {};
  const asked: string[] = [];
  for (const { method, params } of questions) {
    const [capability, requirement] =
      method === "sampling/createMessage"
        ? ["sampling", params.tools !== undefined || params.toolChoice !== undefined ? { tools: {} } : {}]
        : method === "roots/list"
          ? ["roots", {}]
          : ["elicitation", params.mode === "url" ? { url: {} } : { form: {} }];
    required[capability] = { ...required[capability], ...requirement };
    asked.push(method + (params.mode === "url" ? " (url mode)" : ""));
  }
  return new MissingRequiredClientCapabilityError(
    { requiredCapabilities: required as ClientCapabilities },
    `A server behind the gateway needs ${asked.join(" and ")} to serve this request, and the client did ` +
      `not declare ${Object.keys(required).join(" and ")} in its capabilities. Use a client that supports it.`,
  );
}

/**
 * Refuses every question of a request whose client can be asked nothing. The questions asked together
 * (see GATHER_QUIET_MS) are refused together; then `error` is the request's answer and `onRefused`
 * ends the backend request, whose result nobody waits for any more.
 */
export class CapabilityRefusals {
  #pending: { readonly question: AskedQuestion; reject(error: unknown): void }[] = [];
  #quiet: NodeJS.Timeout | undefined;
  #until = 0;
  #error: MissingRequiredClientCapabilityError | undefined;
  readonly #onRefused: () => void;

  constructor(onRefused: () => void) {
    this.#onRefused = onRefused;
  }

  /** The request's answer once a question was refused; undefined while none was. */
  get error(): MissingRequiredClientCapabilityError | undefined {
    return this.#error;
  }

  refuse(method: AskMethod, params: object): Promise<never> {
    const question = { method, params: params as Record<string, unknown> };
    // A question after the request was answered is refused on its own.
    if (this.#error) return Promise.reject(missingCapability([question]));
    return new Promise<never>((_resolve, reject) => {
      this.#pending.push({ question, reject });
      if (this.#quiet === undefined) this.#until = Date.now() + GATHER_MAX_MS;
      clearTimeout(this.#quiet);
      this.#quiet = setTimeout(
        () => this.#close(),
        Math.max(0, Math.min(GATHER_QUIET_MS, this.#until - Date.now())),
      );
    });
  }

  #close(): void {
    const pending = this.#pending.splice(0);
    this.#error = missingCapability(pending.map((p) => p.question));
    this.#onRefused();
    for (const { question, reject } of pending) reject(missingCapability([question]));
  }
}
