/**
 * The answer of a backend that offers tools only (the built-ins and the gateway's own tools) when it
 * is asked for a resource or a prompt. The gateway routes only what a backend listed, so these are
 * reached by a stale client or a direct call; one wording for all of them says what to do instead.
 */
import { GatewayError } from "../core/errors.ts";

export function noResource(server: string, kind: string, uri: string): GatewayError {
  return new GatewayError(
    "unknown_resource",
    `Backend "${server}" (${kind}) offers no resources, so "${uri}" cannot be read; call its tools instead.`,
    { data: { server, uri } },
  );
}

export function noPrompt(server: string, kind: string, name: string): GatewayError {
  return new GatewayError(
    "unknown_prompt",
    `Backend "${server}" (${kind}) offers no prompts, so "${name}" does not exist; call its tools instead.`,
    { data: { server, prompt: name } },
  );
}
