/** Shared fixtures for the policy tests: fake tools, contexts, `next` handlers and a runtime. */
import { mock } from "node:test";
import { compose } from "../../../src/core/compose.ts";
import {
  ANONYMOUS,
  type CallContext,
  type CallHandler,
  type CallToolResult,
  type ChainResult,
  type Principal,
  type Tool,
  type ToolCall,
} from "../../../src/core/types.ts";
import { silentLogger } from "../../../src/observability/logger.ts";
import { type PolicySet, policySetSchema } from "../../../src/policies/config.ts";
import {
  type PolicyDeps,
  type PolicyEventMap,
  PolicyRuntime,
  type ToolBinding,
} from "../../../src/policies/runtime.ts";
import { MemoryStore } from "../../../src/stores/memory.ts";

export const T0 = 1_700_000_000_000;

/** Fake setTimeout and Date, starting at T0. Call `mock.timers.reset()` (or use `afterEach`). */
export function useFakeTimers(): void {
  mock.timers.enable({ apis: ["setTimeout", "Date"], now: T0 });
}

/** Lets promise callbacks run (setImmediate is not faked). */
export async function flush(rounds = 5): Promise<void> {
  for (let i = 0; i < rounds; i++) await new Promise((resolve) => setImmediate(resolve));
}

/** Lets pending work schedule its timers, advances fake time, and lets what was waiting on it run. */
export async function tick(ms: number): Promise<void> {
  await flush();
  mock.timers.tick(ms);
  await flush();
}

export function text(value: string): CallToolResult {
  return { content: [{ type: "text", text: value }] };
}

export function errorText(value: string): CallToolResult {
  return { content: [{ type: "text", text: value }], isError: true };
}

export function firstText(result: ChainResult): string {
  const item = result.content?.[0];
  return item?.type === "text" ? item.text : "";
}

export function binding(exposedName: string, annotations: Tool["annotations"] = {}): ToolBinding {
  const [server = "srv", ...rest] = exposedName.split("__");
  const name = rest.join("__") || exposedName;
  return { exposedName, server, tool: { name, inputSchema: { type: "object" }, annotations } };
}

export const READ_ONLY = { readOnlyHint: true } as const;
export const DESTRUCTIVE = { destructiveHint: true } as const;

export function principal(id: string): Principal {
  return { id, roles: [] };
}

export function makeCtx(overrides: Partial<CallContext> = {}): CallContext {
  return {
    requestId: "req-1",
    signal: new AbortController().signal,
    principal: ANONYMOUS,
    meta: {},
    notes: new Map(),
    ...overrides,
  };
}

export function callOf(b: ToolBinding, args: Record<string, unknown> = {}): ToolCall {
  return { server: b.server, tool: b.tool.name, args };
}

/** A `next` that records its calls and answers with `impl`. */
export function fakeNext(
  impl: (call: ToolCall, ctx: CallContext, n: number) => Promise<CallToolResult> | CallToolResult,
) {
  const calls: { call: ToolCall; ctx: CallContext }[] = [];
  const handler: CallHandler = async (call, ctx) => {
    calls.push({ call, ctx });
    return impl(call, ctx, calls.length);
  };
  return { handler, calls };
}

/** A promise with its resolvers, for backends that answer when the test says so. */
export function deferred<T>() {
  let resolve!: (value: T) => void;
  let reject!: (error: unknown) => void;
  const promise = new Promise<T>((res, rej) => {
    resolve = res;
    reject = rej;
  });
  return { promise, resolve, reject };
}

export interface RuntimeSetup {
  readonly policies?: unknown;
  readonly servers?: Record<string, { policies?: unknown; timeoutMs?: number }>;
  readonly toolPolicies?: Record<string, unknown>;
  readonly callTool?: PolicyDeps["callTool"];
  readonly random?: () => number;
  readonly store?: MemoryStore;
}

/** A runtime over a memory store, on Date.now (fake when fake timers are on), with events recorded. */
export function makeRuntime(setup: RuntimeSetup = {}) {
  const parse = (value: unknown): PolicySet => policySetSchema.parse(value ?? {});
  const servers: Record<string, { policies: PolicySet; timeoutMs?: number }> = {};
  for (const [name, server] of Object.entries(setup.servers ?? {})) {
    servers[name] = {
      policies: parse(server.policies),
      ...(server.timeoutMs ? { timeoutMs: server.timeoutMs } : {}),
    };
  }
  const toolPolicies: Record<string, PolicySet> = {};
  for (const [pattern, set] of Object.entries(setup.toolPolicies ?? {})) toolPolicies[pattern] = parse(set);
  const store = setup.store ?? new MemoryStore({ now: () => Date.now() });
  const warnings: unknown[] = [];
  const logger = silentLogger();
  logger.warn = ((obj: unknown) => {
    warnings.push(obj);
  }) as typeof logger.warn;
  const runtime = new PolicyRuntime(
    { policies: parse(setup.policies), servers, toolPolicies },
    {
      store,
      logger,
      callTool: setup.callTool ?? (async () => errorText("no callTool in this test")),
      now: () => Date.now(),
      random: setup.random ?? (() => 0.5),
    },
  );
  const events: { [K in keyof PolicyEventMap]: PolicyEventMap[K][0][] } = {
    breaker: [],
    breakerRejected: [],
    timeout: [],
    limit: [],
    cache: [],
    retry: [],
    fallback: [],
    bulkhead: [],
  };
  const on = runtime.on.bind(runtime) as (event: string, listener: (payload: unknown) => void) => unknown;
  for (const name of Object.keys(events) as (keyof PolicyEventMap)[]) {
    on(name, (payload) => {
      (events[name] as unknown[]).push(payload);
    });
  }
  /** The composed handler of one tool, over `next`. */
  const handlerFor = (b: ToolBinding, next: CallHandler) => compose(runtime.chainFor(b), next);
  return { runtime, store, events, warnings, handlerFor };
}
