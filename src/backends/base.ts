/**
 * The one backend base: what every backend does the same way as it lives, written once so that the
 * backends cannot drift apart.
 *
 * `BackendBase` (every backend, MCP clients included):
 * - its state, told to the gateway (`events.state`) only when it changes; the reason it went down is
 *   kept as `lastError` for health and errors, and cleared when it comes back up;
 * - start and close: `start` keeps the events and opens; `close` marks the backend closed and
 *   stopped first, then releases what it holds, so nothing that finishes afterwards reports a state;
 * - redaction of what it says about failures (a connection string and its password, secrets the
 *   gateway knows), through core/redact.ts like every other message a client can see;
 * - health measured one way: the latency of one probe, or why the probe failed;
 * - what a call becomes when its caller's signal stopped it.
 *
 * `ToolsOnlyBackend` adds what backends that offer tools and nothing else share (the built-ins and the
 * gateway's own tools): a table of tools whose JSON Schemas come from the zod schemas their arguments
 * are checked with, one answer for a tool the backend does not have, one for arguments that do not
 * fit, and one for a request for a resource or a prompt.
 */
import { z } from "zod";
import { describeError, errorResult, GatewayError, InvalidArguments } from "../core/errors.ts";
import { redactSecrets } from "../core/redact.ts";
import type {
  Backend,
  BackendCatalog,
  BackendEvents,
  BackendState,
  CallContext,
  CallToolResult,
  GetPromptResult,
  HealthResult,
  ReadResourceResult,
  Tool,
  ToolCall,
} from "../core/types.ts";
import type { Logger } from "../observability/logger.ts";
import { DEFAULT_TIMEOUT_MS } from "../policies/config.ts";
import { noPrompt, noResource } from "./tools-only.ts";

export interface BackendBaseOptions {
  /** What kind of backend it is ("filesystem", "redis", …): in its log lines and in its answers. */
  readonly kind?: string;
  /** Applied to every failure reason the backend keeps or reports. Default: none. */
  readonly redact?: (text: string) => string;
}

export abstract class BackendBase implements Backend {
  readonly name: string;
  protected readonly log: Logger;
  readonly #redact: ((text: string) => string) | undefined;
  #state: BackendState = "stopped";
  #events: BackendEvents | undefined;
  #lastError = "";
  #closed = false;

  protected constructor(name: string, logger: Logger, options: BackendBaseOptions = {}) {
    this.name = name;
    this.log = logger.child(options.kind ? { server: name, backend: options.kind } : { server: name });
    this.#redact = options.redact;
  }

  get state(): BackendState {
    return this.#state;
  }

  /** Why the backend is not up, for logs and health ("" while it is up). */
  get lastError(): string {
    return this.#lastError;
  }

  async start(events: BackendEvents): Promise<void> {
    this.#events = events;
    this.#closed = false;
    await this.open();
  }

  async close(): Promise<void> {
    this.#closed = true;
    this.setState("stopped");
    await this.release();
  }

  abstract catalog(): BackendCatalog;
  abstract callTool(call: ToolCall, ctx: CallContext): Promise<CallToolResult>;
  abstract readResource(uri: string, ctx: CallContext): Promise<ReadResourceResult>;
  abstract getPrompt(
    name: string,
    args: Record<string, string> | undefined,
    ctx: CallContext,
  ): Promise<GetPromptResult>;
  abstract health(signal: AbortSignal): Promise<HealthResult>;

  /** Connects (or checks what the backend needs); a failure leaves it `down`, never rejects start. */
  protected abstract open(): Promise<void>;

  /** Releases connections, timers and handles, after the backend was marked stopped. */
  protected async release(): Promise<void> {}

  /** Where the gateway's events go, once started. */
  protected get events(): BackendEvents | undefined {
    return this.#events;
  }

  /** True from `close` until the next `start`: late work must then report nothing. */
  protected get closed(): boolean {
    return this.#closed;
  }

  /**
   * Moves to `state`, telling the gateway when it changed. Going down records `reason` as the last
   * error even when the backend was already down (a retry that failed again, for another reason);
   * coming up clears it.
   */
  protected setState(state: BackendState, reason?: string): void {
    if (state === "up") this.#lastError = "";
    else if (state === "down" && reason !== undefined) this.#lastError = reason;
    if (this.#state === state) return;
    this.#state = state;
    this.#events?.state(state, reason);
  }

  /** Records why the backend is failing without a change of state (an error before the close it causes). */
  protected noteError(reason: string): void {
    this.#lastError = reason;
  }

  protected redact(text: string): string {
    return this.#redact ? this.#redact(text) : text;
  }

  /** A failure's reason, redacted: what a backend may say about it. */
  protected reasonOf(error: unknown): string {
    return this.redact(describeError(error));
  }

  /**
   * Health from one probe: healthy with its latency, or unhealthy with `failed(reason)`, the reason
   * redacted. `data` goes with either answer.
   */
  protected async probe(
    run: () => Promise<unknown>,
    failed: (reason: string) => string,
    data?: Record<string, unknown>,
  ): Promise<HealthResult> {
    const started = performance.now();
    try {
      await run();
      return { status: "healthy", latencyMs: performance.now() - started, ...(data ? { data } : {}) };
    } catch (error) {
      return { status: "unhealthy", detail: failed(this.reasonOf(error)), ...(data ? { data } : {}) };
    }
  }

  /**
   * What a failed call becomes when its caller's signal stopped it: the signal's own reason when it
   * is ours (a timeout policy's), else `cancelled` with `message`. Undefined when the caller did not
   * stop it, so the backend says what went wrong itself.
   */
  protected stoppedByCaller(
    signal: AbortSignal,
    message: string,
    options: { readonly data?: Record<string, unknown>; readonly cause?: unknown } = {},
  ): GatewayError | undefined {
    if (!signal.aborted) return undefined;
    if (signal.reason instanceof GatewayError) return signal.reason;
    return new GatewayError("cancelled", message, options);
  }
}

// ─── tools ──────────────────────────────────────────────────────────────────────────────────────

/** A tool a backend offers: its definition, the schema its arguments are checked with, and its work. */
export interface ToolSpec<R, C = undefined> {
  readonly tool: Tool;
  readonly args: z.ZodType;
  run(args: unknown, context: C): Promise<R>;
}

export interface ToolDefinition<S extends z.ZodType, R, C> {
  readonly name: string;
  readonly title?: string;
  readonly description: string;
  readonly args: S;
  /** The shape of `structuredContent`, when the tool has one. */
  readonly output?: z.ZodType;
  readonly annotations: NonNullable<Tool["annotations"]>;
  readonly run: (args: z.output<S>, context: C) => Promise<R>;
}

/** A JSON Schema from the zod schema that also checks the arguments (or describes the result). */
export function toolSchema(schema: z.ZodType, io: "input" | "output" = "input"): Tool["inputSchema"] {
  const { $schema: _dialect, ...json } = z.toJSONSchema(schema, { io, unrepresentable: "any" });
  return json as Tool["inputSchema"];
}

export function defineTool<S extends z.ZodType, R, C = undefined>(
  definition: ToolDefinition<S, R, C>,
): ToolSpec<R, C> {
  const { name, title, description, args, output, annotations, run } = definition;
  return {
    tool: {
      name,
      ...(title === undefined ? {} : { title }),
      description,
      inputSchema: toolSchema(args, "input"),
      ...(output === undefined ? {} : { outputSchema: toolSchema(output, "output") }),
      annotations: title === undefined ? annotations : { title, ...annotations },
    },
    args,
    run: (parsed, context) => run(parsed as z.output<S>, context),
  };
}

/** A result whose text is the structured content as JSON, followed by notes for the reader. */
export function structuredResult(structured: object, notes: readonly string[] = []): CallToolResult {
  return {
    content: [
      { type: "text", text: JSON.stringify(structured) },
      ...notes.map((text) => ({ type: "text" as const, text })),
    ],
    structuredContent: structured as Record<string, unknown>,
  };
}

/**
 * Failures the pipeline must see, which are thrown on: bad requests become JSON-RPC errors, and
 * outages, timeouts, open circuits and cancels reach its retry, breaker and fallback.
 */
const THROWN: ReadonlySet<string> = new Set([
  "invalid_arguments",
  "unknown_tool",
  "backend_unavailable",
  "timeout",
  "cancelled",
  "circuit_open",
]);

/**
 * A tool's failure as the caller gets it: a refusal the model can act on (a path outside the root, a
 * URL out of scope, a body too large) becomes an isError result; anything the pipeline must see is
 * thrown on.
 */
export function failureResult(tool: string, error: unknown): CallToolResult {
  if (error instanceof GatewayError && !THROWN.has(error.code)) return errorResult(tool, error);
  throw error;
}

/** A backend that offers tools only: the built-ins and the gateway's own tools. */
export abstract class ToolsOnlyBackend<R = CallToolResult, C = undefined> extends BackendBase {
  /** How answers name the kind of backend: "filesystem", "redis", "gateway tools"… */
  protected readonly kind: string;
  #specs: ReadonlyMap<string, ToolSpec<R, C>> = new Map();
  #tools: readonly Tool[] = [];

  protected constructor(
    name: string,
    logger: Logger,
    options: BackendBaseOptions & { readonly kind: string },
  ) {
    super(name, logger, options);
    this.kind = options.kind;
  }

  async readResource(uri: string): Promise<ReadResourceResult> {
    throw noResource(this.name, this.kind, uri);
  }

  async getPrompt(name: string): Promise<GetPromptResult> {
    throw noPrompt(this.name, this.kind, name);
  }

  /** Every tool the backend has, whether or not it offers them right now. */
  protected get tools(): readonly Tool[] {
    return this.#tools;
  }

  /** Sets the backend's tools, in the order they are listed. */
  protected offer(specs: readonly ToolSpec<R, C>[]): void {
    this.#specs = new Map(specs.map((spec) => [spec.tool.name, spec]));
    this.#tools = specs.map((spec) => spec.tool);
  }

  /** The call's tool and its arguments checked against the tool's schema; throws when either is wrong. */
  protected prepare(call: ToolCall): { readonly spec: ToolSpec<R, C>; readonly args: unknown } {
    const spec = this.#specs.get(call.tool);
    if (!spec) throw this.unknownTool(call.tool);
    return { spec, args: this.parseArgs(spec.args, call) };
  }

  /** Why the backend has no tool of this name, when there is more to say than that it has none. */
  protected whyNoTool(_tool: string): string | undefined {
    return undefined;
  }

  protected unknownTool(tool: string): GatewayError {
    const why = this.whyNoTool(tool);
    const offered =
      this.#tools.length === 0
        ? "It has no tools."
        : `Its tools are ${this.#tools.map((t) => t.name).join(", ")}.`;
    return new GatewayError(
      "unknown_tool",
      `Backend "${this.name}" (${this.kind}) has no tool "${tool}".${why ? ` ${why}` : ""} ${offered}`,
      { data: { server: this.name, tool } },
    );
  }

  protected parseArgs<S extends z.ZodType>(schema: S, call: ToolCall): z.output<S> {
    const parsed = schema.safeParse(call.args);
    if (parsed.success) return parsed.data;
    const problems = parsed.error.issues
      .map((issue) => `${issue.path.length > 0 ? issue.path.join(".") : "arguments"}: ${issue.message}`)
      .join("; ");
    throw new InvalidArguments(
      `Invalid arguments for tool "${call.tool}" of backend "${this.name}" (${this.kind}): ${problems}. ` +
        "See the tool's inputSchema.",
      { server: this.name, tool: call.tool },
    );
  }

  /** A refusal by the backend's server (an SQL error, a Redis error reply) as an isError result. */
  protected refusal(text: string, data: Record<string, unknown> = {}): CallToolResult {
    return {
      content: [{ type: "text", text }],
      isError: true,
      _meta: { "switchboard/error": { code: "backend_error", server: this.name, ...data } },
    };
  }
}

// ─── helpers ────────────────────────────────────────────────────────────────────────────────────

/**
 * How long a built-in's call may take: its config's `timeoutMs`, or, for a backend built without one
 * (as in tests), the default the config schema gives it.
 */
export function callTimeoutOf(config: { readonly timeoutMs?: number | undefined }): number {
  return config.timeoutMs ?? DEFAULT_TIMEOUT_MS;
}

/** The signals of one call: its caller's, the backend's own timeout, and either (what the work listens to). */
export interface CallSignals {
  readonly caller: AbortSignal;
  readonly timeout: AbortSignal;
  readonly any: AbortSignal;
}

export function callSignals(caller: AbortSignal, timeoutMs: number): CallSignals {
  const timeout = AbortSignal.timeout(timeoutMs);
  return { caller, timeout, any: AbortSignal.any([caller, timeout]) };
}

/**
 * Redaction for a backend reached by a URL that may carry a password: the URL itself, and the
 * password raw and as written in it, never appear in what the backend says.
 */
export function urlRedactor(url: string | undefined): (text: string) => string {
  const secrets = url === undefined ? [] : [url];
  if (url !== undefined && URL.canParse(url)) {
    const { password } = new URL(url);
    if (password) {
      secrets.push(password);
      try {
        secrets.push(decodeURIComponent(password));
      } catch {
        // A malformed escape: the raw form is already covered.
      }
    }
  }
  return (text) => redactSecrets(text, secrets);
}
