/**
 * The shared vocabulary of the gateway: what a call is, what travels with it, and what a backend,
 * a policy and a store promise. Every other module speaks in these types.
 */
import type * as Mcp from "@modelcontextprotocol/client";
import type * as Skills from "@modelcontextprotocol/client/ext/skills";

// The MCP types the gateway speaks in, under the names it uses; this file refers to them as `Mcp.*`.
export type {
  CallToolResult,
  ClientCapabilities,
  CompleteRequestParams,
  CompleteResult,
  CreateMessageRequestParams,
  CreateMessageResult,
  CreateMessageResultWithTools,
  ElicitRequestParams,
  ElicitResult,
  GetPromptResult,
  ListRootsResult,
  LoggingLevel,
  Prompt,
  ReadResourceResult,
  Resource,
  ResourceTemplateType as ResourceTemplate,
  Root,
  Tool,
} from "@modelcontextprotocol/client";

export type MaybePromise<T> = T | Promise<T>;

/** MCP's log levels (RFC 5424 severities), least severe first, as the spec orders them. */
export const MCP_LOG_LEVELS: readonly Mcp.LoggingLevel[] = Object.freeze([
  "debug",
  "info",
  "notice",
  "warning",
  "error",
  "critical",
  "alert",
  "emergency",
]);

/** Who is calling. Local stdio is `anonymous` unless the config names a principal for it. */
export interface Principal {
  readonly id: string;
  readonly roles: readonly string[];
}

export const ANONYMOUS: Principal = Object.freeze({ id: "anonymous", roles: Object.freeze([]) });

/**
 * The requests that reach a backend, each through a chain of its own (observe, audit, access, limits,
 * cache, breaker, retry, timeout): one answerer per kind in protocol/, one chain per route here.
 */
export const REQUEST_KINDS = ["tools/call", "resources/read", "prompts/get", "completion/complete"] as const;
export type RequestKind = (typeof REQUEST_KINDS)[number];

/**
 * One request, already routed: `server` is the config key of the backend, `tool` its own name there.
 * For the other kinds, `tool` is what the request names in the backend's terms (the resource URI, the
 * prompt's own name, the completion's reference) and `args` the request's parameters.
 */
export interface ToolCall {
  readonly server: string;
  readonly tool: string;
  readonly args: Readonly<Record<string, unknown>>;
  /** Absent: "tools/call". */
  readonly kind?: RequestKind;
}

/** What a request of another kind than `tools/call` answers: never an `isError` result. */
export type KindResult = (Mcp.ReadResourceResult | Mcp.GetPromptResult | Mcp.CompleteResult) & {
  readonly isError?: never;
  readonly content?: never;
};

/** What a chain answers: a tool's result, or another kind's. */
export type ChainResult = Mcp.CallToolResult | KindResult;

export interface ProgressUpdate {
  readonly progress: number;
  readonly total?: number;
  readonly message?: string;
}

/**
 * The client that made a call, as a backend may need it while the call runs: MCP servers ask their
 * client for an LLM completion (sampling) or for user input (elicitation) in the middle of a tool call,
 * and send log messages about it. The transport layer implements this for each protocol era, so
 * backends never see how the question reaches the client.
 */
export interface CallerChannel {
  /**
   * What the client declared it can be asked (its `initialize` capabilities, or a 2026-07-28 request's
   * envelope): backends are told only this, so that they ask only what the client can answer.
   */
  readonly capabilities: Mcp.ClientCapabilities;
  /** Asks the client's LLM (`sampling/createMessage`). Rejects when the client cannot sample. */
  createMessage(
    params: Mcp.CreateMessageRequestParams,
    signal: AbortSignal,
    ask?: AskOptions,
  ): Promise<Mcp.CreateMessageResult | Mcp.CreateMessageResultWithTools>;
  /** Asks the user (`elicitation/create`); `requestedSchema` reaches the client unchanged. */
  elicit(params: Mcp.ElicitRequestParams, signal: AbortSignal, ask?: AskOptions): Promise<Mcp.ElicitResult>;
  /**
   * The client's roots (`roots/list`); undefined when the client did not declare the roots
   * capability, so that the backend answers from its config instead.
   */
  listRoots(signal: AbortSignal, ask?: AskOptions): Promise<Mcp.ListRootsResult | undefined>;
  /**
   * A log message about this call, filtered by the level the client asked for. False when the call
   * was already answered (a message that came just after its result): it is then no longer the
   * call's, and goes where log messages outside any call go.
   */
  log(message: BackendLogMessage): boolean;
}

/** How a backend asked a question of its client. */
export interface AskOptions {
  /**
   * The key of the question in the backend's own `input_required` result (2026-07-28 backends): a
   * 2026-07-28 client is asked under the same key, so the names a server chose reach its client.
   */
  readonly key?: string;
}

/**
 * The `notes` key set (to true) on a call during which its backend asked the client for sampling or
 * elicitation: the result depends on the answers, so a cache must not keep it.
 */
export const NOTE_ASKED_CLIENT = "askedClient";

/**
 * The `notes` key (a string) a backend sets when a failure's full detail must not reach the client
 * (resolved addresses, socket errors, redirect targets): the audit record keeps it, the answer does not.
 */
export const NOTE_ERROR_DETAIL = "errorDetail";

/**
 * The `notes` key (a string) a backend sets when the call went upstream with the caller's own
 * credentials (security/upstream/): who the remote server saw, for the audit record.
 */
export const NOTE_UPSTREAM_AS = "upstreamAs";

export interface CallContext {
  readonly requestId: string;
  /** Reaches every policy and the backend request: a client's cancel aborts the backend call. */
  readonly signal: AbortSignal;
  readonly principal: Principal;
  /**
   * The request's `_meta` as the client sent it (traceparent, signature, …), minus the progress token,
   * plus the log level the client asked for under `io.modelcontextprotocol/logLevel`, which is how a
   * 2026-07-28 server learns it.
   */
  readonly meta: Readonly<Record<string, unknown>>;
  /** Per-call facts for audit, metrics and `_meta` of the result (cache: hit, fallback: source, …). */
  readonly notes: Map<string, unknown>;
  /** Set when the client asked for progress; backends forward their progress here. */
  readonly onProgress?: (update: ProgressUpdate) => void;
  /** Set when a client made the call over MCP; absent for calls the gateway makes on its own. */
  readonly client?: CallerChannel;
  /** How the call arrived, for the audit log; absent for calls made in code. */
  readonly transport?: "stdio" | "http";
  /** The profile whose endpoint the call came to (config `profiles`); absent for the default one. */
  readonly profile?: string;
  /**
   * The client session the request belongs to (a stdio connection, a 2025-era HTTP session; for a
   * 2026-07-28 client, its principal): servers with `isolation: "session"` run once per session.
   */
  readonly session?: string;
}

export type CallHandler = (call: ToolCall, ctx: CallContext) => Promise<ChainResult>;

/** A policy wraps the rest of the chain. First listed is outermost (see core/compose.ts). */
export type Policy = (next: CallHandler) => CallHandler;

/** What a backend offers, under its own names (the catalog applies prefixes, renames and filters). */
export interface BackendCatalog {
  readonly tools: readonly Mcp.Tool[];
  readonly resources: readonly Mcp.Resource[];
  readonly resourceTemplates: readonly Mcp.ResourceTemplateType[];
  readonly prompts: readonly Mcp.Prompt[];
  /** The skills it offers (the `io.modelcontextprotocol/skills` extension); absent when it offers none. */
  readonly skills?: BackendSkills;
}

/** One child of a skill directory, as `resources/directory/read` lists it. */
export type SkillDirectoryEntry = Skills.DirectoryResource;

/** A server's skills: their entries and, when it serves directory reads, each directory's children. */
export interface BackendSkills {
  readonly skills: readonly Skills.Skill[];
  /** By directory URI; absent when the server does not serve `resources/directory/read`. */
  readonly directories?: ReadonlyMap<string, readonly SkillDirectoryEntry[]>;
  /** How long a client may keep the listing, and whether it may share it (2026-07-28 servers say). */
  readonly ttlMs?: number;
  readonly cacheScope?: Skills.SkillCacheScope;
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
  readonly level: Mcp.LoggingLevel;
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
  /**
   * The tool call a server-to-client request belongs to, for forwarding it to that call's client. When
   * the backend knows which of its requests caused it, it passes that request's abort signal, and only
   * the call given that signal matches. A 2025-era request carries no such link, so without a signal
   * the gateway picks the only call in flight on this backend, else the most recent one.
   */
  callerOf?(signal?: AbortSignal): CallContext | undefined;
}

export interface Backend {
  readonly name: string;
  readonly state: BackendState;
  /** Starts (or begins supervising) the backend. Resolves when it is up or has failed its first start. */
  start(events: BackendEvents): Promise<void>;
  catalog(): BackendCatalog;
  callTool(call: ToolCall, ctx: CallContext): Promise<Mcp.CallToolResult>;
  readResource(uri: string, ctx: CallContext): Promise<Mcp.ReadResourceResult>;
  getPrompt(
    name: string,
    args: Record<string, string> | undefined,
    ctx: CallContext,
  ): Promise<Mcp.GetPromptResult>;
  /** `completion/complete`, with `ref` already in the backend's own names. */
  complete?(params: Mcp.CompleteRequestParams, ctx: CallContext): Promise<Mcp.CompleteResult>;
  /** Starts `notifications/resources/updated` for `uri` (the gateway counts subscribers; one call per URI). */
  subscribeResource?(uri: string): Promise<void>;
  unsubscribeResource?(uri: string): Promise<void>;
  /** The most verbose log level any client of the gateway asked for; re-sent after every reconnect. */
  setLogLevel?(level: Mcp.LoggingLevel): Promise<void>;
  /**
   * Reads these lists again, as on the server's own list_changed (reporting `listChanged` when they
   * differ). The gateway calls it when another replica heard a list_changed from the same server,
   * which this replica's connection may not have.
   */
  refreshLists?(changed: ListChanged): Promise<void>;
  health(signal: AbortSignal): Promise<HealthResult>;
  /** A client session ended: what the backend kept for it alone goes (see backends/isolated.ts). */
  releaseSession?(session: string): void;
  /**
   * What the server said about itself for its clients' model (`instructions` of its initialize or
   * discover result), if anything: the gateway passes it on under the server's name.
   */
  instructions?(): string | undefined;
  /** A client of the gateway said its roots changed (`notifications/roots/list_changed`). */
  rootsListChanged?(): void;
  close(): Promise<void>;
}

/** A lock taken with `Store.lock`. */
export interface StoreLock {
  /**
   * Frees the lock if this holder still owns it (a lock that expired and was taken by another is left
   * alone) and wakes its waiters. Idempotent, and never rejects: a release that cannot reach the store
   * leaves the lock to expire by its TTL.
   */
  release(): Promise<void>;
}

export interface StoreMessageInfo {
  /** True when this very store instance published the message. */
  readonly fromSelf: boolean;
}

/** Called for each message on a channel. A handler that throws is reported, never crashes the store. */
export type StoreMessageHandler = (message: string, info: StoreMessageInfo) => void;

/** Stops one subscription. Idempotent, never rejects. */
export type Unsubscribe = () => Promise<void>;

/**
 * One contract; the memory store (default, bounded) and the Redis store implement it. Besides
 * entries, tags and token buckets it has what replicas sharing a Redis need to act as one: locks for
 * single flight across replicas, and messages to every replica (see stores/index.ts). On the memory
 * store these act within the process, so that policies keep one code path whatever the store.
 */
export interface Store {
  /**
   * True when other processes (replicas) share this store's state: the Redis store and its resilient
   * wrapper. Policies coordinate across replicas (single-flight locks) only then: within one process
   * their own bookkeeping does the same for less. Default false.
   */
  readonly shared?: boolean;
  get(key: string): MaybePromise<string | undefined>;
  set(key: string, value: string, opts?: { ttlMs?: number; tags?: readonly string[] }): MaybePromise<void>;
  delete(key: string): MaybePromise<boolean>;
  /** Deletes every entry set with this tag; returns how many. Never scans keys. */
  invalidateTag(tag: string): MaybePromise<number>;
  /**
   * Atomically takes `n` tokens if available. `retryAfterMs` is the exact wait until they would be,
   * behind the tokens already reserved. With `maxWaitMs`, tokens that will be there within that wait
   * are reserved instead of refused: `ok` is true, `retryAfterMs` is the wait before they may be used,
   * and later takes queue behind them (see stores/contract.ts).
   */
  takeTokens(
    key: string,
    bucket: { capacity: number; refillPerSec: number },
    n?: number,
    options?: { readonly maxWaitMs?: number },
  ): MaybePromise<{ ok: boolean; retryAfterMs: number; remaining: number }>;
  /**
   * Gives back `n` tokens a take got (reserved, or taken at once) and will not use, `dueInMs` before
   * they were due (0 for tokens taken at once). Takes reserved after them keep their turn, so the
   * tokens those count on are not given back twice.
   */
  returnTokens(
    key: string,
    bucket: { capacity: number; refillPerSec: number },
    n: number,
    dueInMs: number,
  ): MaybePromise<void>;
  /**
   * Takes the lock named `key` for `ttlMs` if no one holds it; undefined if someone does. Lock names
   * are their own namespace: `lock("k")` and `set("k")` do not touch each other.
   */
  lock(key: string, ttlMs: number): MaybePromise<StoreLock | undefined>;
  /**
   * Resolves true as soon as the lock named `key` is not held (at once if it is not held now), false
   * after `timeoutMs`; rejects with the signal's reason when `signal` aborts.
   */
  waitForUnlock(key: string, timeoutMs: number, signal?: AbortSignal): Promise<boolean>;
  /**
   * Sends `message` to every subscriber of `channel` on every replica, this one included. At most
   * once: a replica that is disconnected meanwhile misses it.
   */
  publish(channel: string, message: string): MaybePromise<void>;
  /** Calls `handler` for each message on `channel` until the returned function is called. */
  subscribe(channel: string, handler: StoreMessageHandler): MaybePromise<Unsubscribe>;
  /** Whether the store works right now, and if not, why and what it does about it. */
  health(): HealthResult;
  close(): MaybePromise<void>;
}
