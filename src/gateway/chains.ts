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
import { type SignatureVerifier, signaturePolicy } from "../security/signing.ts";
import { auditPolicy } from "./audit-policy.ts";
import type { Observability } from "./observe.ts";
import type { Route } from "./route.ts";

export interface ChainDeps {
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
}

export class Chains {
  readonly #deps: ChainDeps;
  #handlers = new Map<string, CallHandler>();
  /** Requests in flight per server, oldest first: where a backend's questions and logs go. */
  readonly #inFlight = new Map<string, Set<CallContext>>();

  constructor(deps: ChainDeps) {
    this.#deps = deps;
  }

  /** The chains are built again for the next requests (requests in flight keep theirs). */
  reset(): void {
    this.#handlers = new Map();
  }

  /** The requests in flight on a server, oldest first. */
  inFlight(server: string): ReadonlySet<CallContext> | undefined {
    return this.#inFlight.get(server);
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
      .entriesFor(binding)
      .filter((entry) => isTool || (entry.name !== "fallback" && entry.name !== "invalidate"));
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
    let calls = this.#inFlight.get(route.server);
    if (!calls) {
      calls = new Set();
      this.#inFlight.set(route.server, calls);
    }
    const inFlight = calls;
    const backendOf = this.#deps.backendOf;
    return (call, received) => {
      const ctx = withoutGatewayMeta(received);
      const backend = backendOf(route.server);
      inFlight.add(ctx);
      return send(backend, call, ctx).finally(() => inFlight.delete(ctx));
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
