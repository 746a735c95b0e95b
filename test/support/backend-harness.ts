/**
 * Helpers for the tests that drive one backend through the Backend interface (start, callTool, …):
 * events to start it with, a call context, and ways to read a call's result.
 */
import {
  ANONYMOUS,
  type BackendEvents,
  type BackendState,
  type CallContext,
  type CallToolResult,
} from "../../src/core/types.ts";

/** Backend events that go nowhere. */
export const NO_EVENTS: BackendEvents = { state() {}, listChanged() {}, log() {}, resourceUpdated() {} };

/** Backend events that keep every state change (with its reason) in `states`. */
export function recorder(): { states: [BackendState, string | undefined][]; events: BackendEvents } {
  const states: [BackendState, string | undefined][] = [];
  const events: BackendEvents = {
    state: (state, reason) => states.push([state, reason]),
    listChanged: () => undefined,
    log: () => undefined,
    resourceUpdated: () => undefined,
  };
  return { states, events };
}

/** The context of an anonymous call, cancelled by `signal` (by default, never). */
export function context(signal: AbortSignal = new AbortController().signal): CallContext {
  return { requestId: "test", signal, principal: ANONYMOUS, meta: {}, notes: new Map() };
}

/** A result's text blocks, one a line (other blocks as empty lines). */
export function textOf(result: CallToolResult): string {
  return result.content.map((c) => (c.type === "text" ? c.text : "")).join("\n");
}

/** A result's blocks, one a line: text as it is, any other block as `[its type]`. */
export function textOrTypeOf(result: CallToolResult): string {
  return result.content.map((c) => (c.type === "text" ? c.text : `[${c.type}]`)).join("\n");
}

/** The `switchboard/error` details of a failed result ({} when there are none). */
export function errorMeta(result: CallToolResult): Record<string, unknown> {
  return (result._meta?.["switchboard/error"] ?? {}) as Record<string, unknown>;
}

/** The error code of a failed result, if it has one. */
export function errorCode(result: CallToolResult): string | undefined {
  return (result._meta?.["switchboard/error"] as { code?: string } | undefined)?.code;
}
