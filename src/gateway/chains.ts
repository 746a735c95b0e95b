/**
 * The chain each route's requests pass through, built once per route and kept until the catalog or
 * the plan changes. Every request kind has one:
 *
 *   observe ▸ audit ▸ access ▸ signature* ▸ rate limit ▸ arguments* ▸ cache ▸ fallback* ▸ invalidate* ▸
 *   circuit breaker ▸ bulkhead ▸ retry ▸ timeout ▸ backend
 *
 * (* tools/call only: a signature and a schema cover a tool's arguments, and fallbacks and
 * invalidations are written per tool). The rest apply to resources/read, prompts/get and
 * completion/complete as the global and server policies say; they are reads, so the cache and retries
 * may take them.
 */
import type { AuditLog } from "../audit/index.ts";
import { compose } from "../core/compose.ts";
import type { Backend, CallContext, CallHandler, CompleteRequestParams, ToolCall } from "../core/types.ts";
import type { PolicyRuntime } from "../policies/runtime.ts";
import type { AccessControl } from "../security/access.ts";
import { accessPolicy } from "../security/access.ts";
import {
  type ArgumentsPolicyOptions,
  type ArgumentValidator,
  argumentsPolicy,
} from "../security/arguments.ts";
import { SIGNATURE_META_KEY, type SignatureVerifier, signaturePolicy } from "../security/signing.ts";
import { auditPolicy } from "./audit-policy.ts";
import type { Observability } from "./observe.ts";
import type { Route } from "./route.ts";

export interface ChainDeps {
  /** The endpoint the chains are for ("" for the default one): its own policies apply. */
  readonly profile: string;
  readonly policies: PolicyRuntime;
  readonly observability: Observability;
  readonly audit: AuditLog;
  readonly access: AccessControl | undefined;
  readonly signatures: SignatureVerifier | undefined;
  readonly validator: ArgumentValidator;
  readonly argumentLimits: ArgumentsPolicyOptions["limits"];
  readonly replica: string | undefined;
  /** The backend of a server, as it runs now. */
  readonly backendOf: (server: string) => Backend;
  /**
   * Servers whose results are never cached, whatever the rules say: those run once per client session
   * (`isolation: "session"`), whose results depend on the session's state, and the gateway's own tools,
   * whose answers are live and depend on the caller's endpoint (a profile's search, its health).
   */
  readonly uncached: ReadonlySet<string>;
  readonly inFlight: InFlightRequests;
}

/**
 * Requests in flight per backend, oldest first: where a backend's questions and logs go, and what a
 * backend that leaves the plan waits for before it stops. By backend, not by server name: after a
 * restart, the old and the new backend of a server each have their own.
 */
export class InFlightRequests {
  readonly #byBackend = new Map<Backend, Set<CallContext>>();
  readonly #idle = new Map<Backend, Set<() => void>>();

  add(backend: Backend, ctx: CallContext): void {
    let calls = this.#byBackend.get(backend);
    if (!calls) {
      calls = new Set();
      this.#byBackend.set(backend, calls);
    }
    calls.add(ctx);
  }

  delete(backend: Backend, ctx: CallContext): void {
    const calls = this.#byBackend.get(backend);
    if (!calls?.delete(ctx) || calls.size > 0) return;
    this.#byBackend.delete(backend);
    const waiters = this.#idle.get(backend);
    this.#idle.delete(backend);
    for (const wake of waiters ?? []) wake();
  }

  /** The requests in flight on a backend, oldest first. */
  on(backend: Backend): ReadonlySet<CallContext> | undefined {
    return this.#byBackend.get(backend);
  }

  /** Resolves true once no request is in flight on `backend`, or false after `ms`. */
  idle(backend: Backend, ms: number): Promise<boolean> {
    if ((this.#byBackend.get(backend)?.size ?? 0) === 0) return Promise.resolve(true);
    return new Promise((resolve) => {
      const waiters = this.#idle.get(backend) ?? new Set();
      this.#idle.set(backend, waiters);
      const wake = () => {
        clearTimeout(timer);
        resolve(true);
      };
      const timer = setTimeout(() => {
        waiters.delete(wake);
        resolve(false);
      }, ms);
      waiters.add(wake);
    });
  }
}

export class Chains {
  readonly #deps: ChainDeps;
  #handlers = new Map<string, CallHandler>();

  constructor(deps: ChainDeps) {
    this.#deps = deps;
  }

  /** The chains are built again for the next requests (requests in flight keep theirs). */
  reset(): void {
    this.#handlers = new Map();
  }

  handlerFor(route: Route): CallHandler {
    const key = `${route.kind}\u0000${route.name}`;
    let handler = this.#handlers.get(key);
    if (!handler) {
      handler = this.#build(route);
      this.#handlers.set(key, handler);
    }
    return handler;
  }

  #build(route: Route): CallHandler {
    const deps = this.#deps;
    const isTool = route.kind === "tools/call";
    const binding = { exposedName: route.name, server: route.server, tool: route.tool };
    const configured = deps.policies
      .entriesFor(binding, deps.profile)
      .filter((entry) => isTool || (entry.name !== "fallback" && entry.name !== "invalidate"))
      .filter((entry) => entry.name !== "cache" || !deps.uncached.has(route.server));
    // Arguments are checked after the rate limit (a flood of invalid calls is still limited) and
    // before everything that would store or send them.
    const limits = configured.findIndex((entry) => entry.name !== "rateLimit");
    const split = limits === -1 ? configured.length : limits;
    return compose(
      [
        deps.observability.observe(route),
        ...(deps.audit.enabled ? [auditPolicy(deps.audit, route, deps.replica)] : []),
        ...(deps.access ? [accessPolicy(deps.access, binding, route.access)] : []),
        ...(isTool && deps.signatures ? [signaturePolicy(deps.signatures, binding)] : []),
        ...configured.slice(0, split).map((entry) => entry.policy),
        ...(isTool
          ? [argumentsPolicy({ limits: deps.argumentLimits, validator: deps.validator }, binding)]
          : []),
        ...configured.slice(split).map((entry) => entry.policy),
      ],
      this.#terminal(route),
    );
  }

  /**
   * The backend request. The context registered is the one the backend receives, after every policy
   * has wrapped it: its signal is the one the backend hands back with a server-to-client request.
   */
  #terminal(route: Route): CallHandler {
    const inFlight = this.#deps.inFlight;
    const backendOf = this.#deps.backendOf;
    return (call, received) => {
      const ctx = withoutGatewayMeta(received);
      const backend = backendOf(route.server);
      inFlight.add(backend, ctx);
      return send(backend, call, ctx).finally(() => inFlight.delete(backend, ctx));
    };
  }
}

/** The request as the backend takes it; `call.tool` is the target in the backend's own terms. */
function send(backend: Backend, call: ToolCall, ctx: CallContext): ReturnType<CallHandler> {
  switch (call.kind ?? "tools/call") {
    case "tools/call":
      return backend.callTool(call, ctx);
    case "resources/read":
      return backend.readResource(call.tool, ctx) as ReturnType<CallHandler>;
    case "prompts/get":
      return backend.getPrompt(
        call.tool,
        call.args as Record<string, string>,
        ctx,
      ) as ReturnType<CallHandler>;
    case "completion/complete":
      return (
        backend.complete
          ? backend.complete(call.args as unknown as CompleteRequestParams, ctx)
          : Promise.resolve({ completion: { values: [] } })
      ) as ReturnType<CallHandler>;
  }
}

const GATEWAY_META_PREFIX = "switchboard/";

/**
 * The gateway's own `_meta` keys (`switchboard/…`: a request signature, say) are for the gateway: a
 * backend gets the client's `_meta` without them.
 */
export function withoutGatewayMeta(ctx: CallContext): CallContext {
  let found = false;
  for (const key in ctx.meta) {
    if (key.startsWith(GATEWAY_META_PREFIX)) {
      found = true;
      break;
    }
  }
  if (!found) return ctx;
  const meta = Object.fromEntries(
    Object.entries(ctx.meta).filter(([key]) => !key.startsWith(GATEWAY_META_PREFIX)),
  );
  return { ...ctx, meta };
}

/** A fallback's call is the gateway's own: the client's signature covered the primary call. */
export function withoutSignature(ctx: CallContext): CallContext {
  if (!(SIGNATURE_META_KEY in ctx.meta)) return ctx;
  const { [SIGNATURE_META_KEY]: _dropped, ...meta } = ctx.meta;
  return { ...ctx, meta };
}
