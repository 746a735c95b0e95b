/**
 * A route: what one chain is for. Tools and prompts are routed by exposed name; the requests of a
 * server that have no exposed name (resource reads, completions of resource templates) by server.
 */
import type { RequestKind, Tool } from "../core/types.ts";

/** One route: what the chain is for. */
export interface Route {
  readonly kind: RequestKind;
  /**
   * The name policies, limits, metrics and records use: the exposed tool or prompt name, or
   * `<kind>@<server>` for the requests of a server that have no exposed name (resources, completions
   * of resource templates). No tool or prompt name contains "/" or "@", so none collides.
   */
  readonly name: string;
  readonly server: string;
  /**
   * The backend's own definition of a tool, whose annotations decide what is safe to cache and retry;
   * for the other kinds, a stand-in that says they are reads.
   */
  readonly tool: Tool;
  /** How access rules judge it: tools and prompts by exposed name, resources by server. */
  readonly access: "tool" | "prompt" | "resource";
}

/** The route of the requests of `kind` to `server` that are not named by an exposed tool or prompt. */
export function serverRoute(kind: Exclude<RequestKind, "tools/call">, server: string): Route {
  return { kind, name: `${kind}@${server}`, server, tool: readTool(kind), access: "resource" };
}

/** The route of a prompt (its `prompts/get`, or the completion of its arguments). */
export function promptRoute(
  kind: "prompts/get" | "completion/complete",
  exposedName: string,
  server: string,
): Route {
  return { kind, name: exposedName, server, tool: readTool(kind), access: "prompt" };
}

const READS = new Map<RequestKind, Tool>();

/** Resources, prompts and completions are reads: safe to retry, and to cache where a policy says so. */
function readTool(kind: RequestKind): Tool {
  let tool = READS.get(kind);
  if (!tool) {
    tool = {
      name: kind,
      inputSchema: { type: "object" },
      annotations: { readOnlyHint: true, idempotentHint: true, destructiveHint: false },
    };
    READS.set(kind, tool);
  }
  return tool;
}
