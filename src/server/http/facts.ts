/**
 * What the HTTP layer learned about a request before the MCP handlers run: who is calling (from
 * authentication) and the request's HTTP headers that stand in for `_meta` keys (trace context,
 * signature). It travels to the handlers as the SDK's pass-through `authInfo.extra`.
 */
import type { IncomingMessage } from "node:http";
import type { AuthInfo, ServerContext } from "@modelcontextprotocol/server";
import { ANONYMOUS, type Principal } from "../../core/types.ts";
import { SIGNATURE_META_KEY, signatureFromHeaders } from "../../security/signing.ts";
import { header } from "./guards.ts";

export interface RequestFacts {
  readonly principal: Principal;
  readonly metaFromHeaders: Readonly<Record<string, unknown>>;
}

const FACTS_KEY = "switchboard/request";

export function attachFacts(req: IncomingMessage, principal: Principal): void {
  const facts: RequestFacts = { principal, metaFromHeaders: metaFromHeaders(req) };
  (req as IncomingMessage & { auth?: AuthInfo }).auth = {
    token: "",
    clientId: facts.principal.id,
    scopes: [...facts.principal.roles],
    extra: { [FACTS_KEY]: facts },
  };
}

export function factsOfRequest(req: IncomingMessage): RequestFacts | undefined {
  return (req as IncomingMessage & { auth?: AuthInfo }).auth?.extra?.[FACTS_KEY] as RequestFacts | undefined;
}

export function principalOfRequest(req: IncomingMessage): Principal {
  return factsOfRequest(req)?.principal ?? ANONYMOUS;
}

export function factsOf(ctx: ServerContext): RequestFacts | undefined {
  return ctx.http?.authInfo?.extra?.[FACTS_KEY] as RequestFacts | undefined;
}

export function principalOfContext(ctx: ServerContext): Principal {
  return factsOf(ctx)?.principal ?? ANONYMOUS;
}

/**
 * HTTP headers that carry what `_meta` would: W3C trace context and a request signature. `_meta`
 * wins when both are sent.
 */
function metaFromHeaders(req: IncomingMessage): Record<string, unknown> {
  const meta: Record<string, unknown> = {};
  const signature = signatureFromHeaders(req.headers);
  if (signature !== undefined) meta[SIGNATURE_META_KEY] = signature;
  const traceparent = header(req, "traceparent");
  if (traceparent !== undefined) {
    meta.traceparent = traceparent;
    const tracestate = header(req, "tracestate");
    if (tracestate !== undefined) meta.tracestate = tracestate;
  }
  return meta;
}
