/**
 * Where a request goes: the route whose chain it passes through and the request as its backend takes
 * it, or the error that says nothing offers what it names.
 */
import { errorResult, GatewayError } from "../core/errors.ts";
import type { CallToolResult, CompleteRequestParams, ToolCall } from "../core/types.ts";
import type { Logger } from "../observability/logger.ts";
import type { LiveCatalog } from "./live-catalog.ts";
import type { ProfileView } from "./profiles.ts";
import { promptRoute, type Route, serverRoute } from "./route.ts";

/** Whether the endpoint the request came to offers a server (and an exposed name of it): see profiles.ts. */
type Offers = ProfileView["offers"];

export interface Routed {
  readonly route: Route;
  readonly call: ToolCall;
}

/**
 * A tool call, by exposed name (a tool hidden because its server is down still has its route). A tool
 * the endpoint does not offer is unknown there, with the same error.
 */
export function toolRequest(
  catalog: LiveCatalog,
  name: string,
  args: Record<string, unknown>,
  offers: Offers,
): Routed {
  const found = catalog.toolRoute(name);
  const route = found && offers(found.server, name) ? found : undefined;
  const removedFrom = found ? undefined : catalog.removedServerOf(name);
  const removedWith = removedFrom !== undefined && offers(removedFrom, name) ? removedFrom : undefined;
  if (removedWith !== undefined) {
    throw new GatewayError(
      "unknown_tool",
      `Tool "${name}" is gone: its server "${removedWith}" was removed from the gateway's config. List tools ` +
        "to see what is available.",
      { data: { tool: name, server: removedWith } },
    );
  }
  if (!route) {
    throw new GatewayError(
      "unknown_tool",
      `Tool "${name}" does not exist. List tools to see what is available` +
        (catalog.anyServerDown() ? " (some servers are down and their tools are hidden)." : "."),
      { data: { tool: name } },
    );
  }
  return {
    route: { kind: "tools/call", name, server: route.server, tool: route.original, access: "tool" },
    call: { server: route.server, tool: route.tool, args },
  };
}

/**
 * What a tool call that failed answers: an unknown tool and a backend's JSON-RPC error stay errors
 * (the protocol layer maps them); any other failure of the call, arguments that do not fit the tool's
 * schema included, is an `isError` result the model can read and act on (correct its arguments, wait,
 * try another tool), an unexpected one without its details.
 */
export function toolFailure(name: string, error: unknown, requestId: string, logger: Logger): CallToolResult {
  if (error instanceof GatewayError) {
    if (error.code === "unknown_tool") throw error;
    return errorResult(name, error);
  }
  if (error instanceof Error && typeof (error as { code?: unknown }).code === "number") throw error;
  logger.error({ err: error, tool: name, requestId }, "unexpected error in a tool call");
  return errorResult(
    name,
    new GatewayError(
      "internal",
      `Tool "${name}" failed unexpectedly; see the gateway log (request ${requestId}).`,
    ),
  );
}

export function resourceRequest(catalog: LiveCatalog, uri: string, offers: Offers): Routed {
  const owner = catalog.resourceOwner(uri);
  if (!owner || !offers(owner.name)) {
    throw new GatewayError("unknown_resource", `Resource "${uri}" is not offered by any connected server.`, {
      data: { uri },
    });
  }
  return {
    route: serverRoute("resources/read", owner.name),
    call: { kind: "resources/read", server: owner.name, tool: uri, args: { uri } },
  };
}

export function promptRequest(
  catalog: LiveCatalog,
  name: string,
  args: Record<string, string> | undefined,
  offers: Offers,
): Routed {
  const prompt = catalog.current.prompt(name);
  if (!prompt || !offers(prompt.server, name)) {
    throw new GatewayError(
      "unknown_prompt",
      `Prompt "${name}" does not exist. List prompts to see what is available.`,
      {
        data: { prompt: name },
      },
    );
  }
  return {
    route: promptRoute("prompts/get", name, prompt.server),
    call: { kind: "prompts/get", server: prompt.server, tool: prompt.prompt, args: args ?? {} },
  };
}

/**
 * `completion/complete`: a prompt reference is renamed to the backend's own prompt name; a resource
 * reference goes to the server that offers that template (or URI).
 */
export function completionRequest(
  catalog: LiveCatalog,
  params: CompleteRequestParams,
  offers: Offers,
): Routed {
  const ref = params.ref;
  if (ref.type === "ref/prompt") {
    const prompt = catalog.current.prompt(ref.name);
    if (!prompt || !offers(prompt.server, ref.name)) {
      throw new GatewayError(
        "unknown_prompt",
        `Cannot complete arguments of prompt "${ref.name}": no such prompt. List prompts to see what is available.`,
        { data: { prompt: ref.name } },
      );
    }
    const forwarded = { ...params, ref: { ...ref, name: prompt.prompt } };
    return {
      route: promptRoute("completion/complete", ref.name, prompt.server),
      call: { kind: "completion/complete", server: prompt.server, tool: prompt.prompt, args: forwarded },
    };
  }
  const owner = catalog.templateOwner(ref.uri) ?? catalog.resourceOwner(ref.uri);
  if (!owner || !offers(owner.name)) {
    throw new GatewayError(
      "unknown_resource",
      `Cannot complete arguments of resource "${ref.uri}": no connected server offers that resource ` +
        "template. List resource templates to see what is available.",
      { data: { uri: ref.uri } },
    );
  }
  return {
    route: serverRoute("completion/complete", owner.name),
    call: { kind: "completion/complete", server: owner.name, tool: ref.uri, args: params },
  };
}
