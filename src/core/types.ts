/**
 * The shared vocabulary of the gateway: what a call is, what travels with it, and what a backend,
 * a policy and a store promise. Every other module speaks in these types.
 */
import type {
  CallToolResult,
  GetPromptResult,
  Prompt,
  ReadResourceResult,
  Resource,
  ResourceTemplateType as ResourceTemplate,
  Tool,
} from "@modelcontextprotocol/client";

export type { CallToolResult, GetPromptResult, Prompt, ReadResourceResult, Resource, ResourceTemplate, Tool };

export type MaybePromise<T> = T | Promise<T>;

/** Who is calling. Local stdio is `anonymous` unless the config names a principal for it. */
export interface Principal {
  readonly id: string;
  readonly roles: readonly string[];
}

export const ANONYMOUS: Principal = Object.freeze({ id: "anonymous", roles: Object.freeze([]) });

/** One tool call, already routed: `server` is the config key of the backend, `tool` its own name there. */
export interface ToolCall {
  readonly server: string;
  readonly tool: string;
  readonly args: Readonly<Record<string, unknown>>;
}

export interface ProgressUpdate {
  readonly progress: number;
  readonly total?: number;
  readonly message?: string;
}

export interface CallContext {
  readonly requestId: string;
  /** Reaches every policy and the backend request: a client's cancel aborts the backend call. */
  readonly signal: AbortSignal;
  readonly principal: Principal;
  /** The request's `_meta` as the client sent it (traceparent, signature, …), minus the progress token. */
  readonly meta: Readonly<Record<string, unknown>>;
  /** Per-call facts for audit, metrics and `_meta` of the result (cache: hit, fallback: source, …). */
  readonly notes: Map<string, unknown>;
  /** Set when the client asked for progress; backends forward their progress here. */
  readonly onProgress?: (update: ProgressUpdate) => void;
}

export type CallHandler = (call: ToolCall, ctx: CallContext) => Promise<CallToolResult>;

/** A policy wraps the rest of the chain. First listed is outermost (see core/compose.ts). */
export type Policy = (next: CallHandler) => CallHandler;

/** What a backend offers, under its own names (the catalog applies prefixes, renames and filters). */
export interface BackendCatalog {
  readonly tools: readonly Tool[];
  readonly resources: readonly Resource[];
  readonly resourceTemplates: readonly ResourceTemplate[];
  readonly prompts: readonly Prompt[];
}

export const EMPTY_CATALOG: BackendCatalog = Object.freeze({
  tools: [],
  resources: [],
  resourceTemplates: [],
  prompts: [],
});

export type BackendState = "starting" | "up" | "down" | "stopped";

export interface HealthResult {
  readonly status: "healthy" | "degraded" | "unhealthy";
  readonly detail?: string;
  readonly latencyMs?: number;
  readonly data?: Record<string, unknown>;
}

/** Which lists of a backend changed; the gateway re-reads the catalog and tells its clients. */
export interface ListChanged {
  readonly tools?: boolean;
  readonly resources?: boolean;
  readonly prompts?: boolean;
}

export interface BackendLogMessage {
  readonly level: "debug" | "info" | "notice" | "warning" | "error" | "critical" | "alert" | "emergency";
  readonly logger?: string;
  readonly data: unknown;
}

/** What a backend tells the gateway as it lives. */
export interface BackendEvents {
  /** The backend's state changed (up after a (re)connect, down after a crash or a failed start). */
  state(state: BackendState, reason?: string): void;
  /** The backend's lists changed; `catalog()` already returns the new lists. */
  listChanged(changed: ListChanged): void;
  /** A logging message the backend sent (`notifications/message`). */
  log(message: BackendLogMessage): void;
  /** A resource the backend reports as updated (`notifications/resources/updated`). */
  resourceUpdated(uri: string): void;
}

export interface Backend {
  readonly name: string;
  readonly state: BackendState;
  /** Starts (or begins supervising) the backend. Resolves when it is up or has failed its first start. */
  start(events: BackendEvents): Promise<void>;
  catalog(): BackendCatalog;
  callTool(call: ToolCall, ctx: CallContext): Promise<CallToolResult>;
  readResource(uri: string, ctx: CallContext): Promise<ReadResourceResult>;
  getPrompt(
    name: string,
    args: Record<string, string> | undefined,
    ctx: CallContext,
  ): Promise<GetPromptResult>;
  health(signal: AbortSignal): Promise<HealthResult>;
  close(): Promise<void>;
}

/** One contract; the memory store (default, bounded) and the Redis store implement it. */
export interface Store {
  get(key: string): MaybePromise<string | undefined>;
  set(key: string, value: string, opts?: { ttlMs?: number; tags?: readonly string[] }): MaybePromise<void>;
  delete(key: string): MaybePromise<boolean>;
  /** Deletes every entry set with this tag; returns how many. Never scans keys. */
  invalidateTag(tag: string): MaybePromise<number>;
  /** Atomically takes `n` tokens if available. `retryAfterMs` is the exact wait until they would be. */
  takeTokens(
    key: string,
    bucket: { capacity: number; refillPerSec: number },
    n?: number,
  ): MaybePromise<{ ok: boolean; retryAfterMs: number; remaining: number }>;
  close(): MaybePromise<void>;
}
