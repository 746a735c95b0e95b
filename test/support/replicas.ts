/**
 * Gateway replicas for the multi-replica e2e tests: the real CLI over Streamable HTTP, each with a
 * 2026-07-28 SDK client (stateless, so any replica can serve any of its requests) and its own
 * flaky-server backend process, whose call counts show what reached that replica's backend.
 */
import { join } from "node:path";
import { Client, StreamableHTTPClientTransport } from "@modelcontextprotocol/client";
import { ROOT, type RunningGateway, startHttpGateway } from "./gateway-process.ts";
import type { ToolResult } from "./mcp-client.ts";

export const FLAKY = join(ROOT, "test/fixtures/flaky-server.ts");
export const REQUEST_TIMEOUT_MS = 15_000;

/** The tool result shape every e2e suite reads (mcp-client.ts), under the name replica tests use. */
export type Result = ToolResult;

export interface Replica {
  readonly gateway: RunningGateway;
  readonly client: Client;
  call(name: string, args?: Record<string, unknown>): Promise<Result>;
  /** Calls per tool that reached this replica's own backend process. */
  backendCalls(): Promise<Record<string, number>>;
}

export function flakyServer() {
  return { command: process.execPath, args: ["--import", "tsx", FLAKY], cwd: ROOT };
}

export async function startReplica(configPath: string): Promise<Replica> {
  const gateway = await startHttpGateway(configPath);
  const client = new Client({ name: "replicas-e2e", version: "1" }, {
    versionNegotiation: { mode: { pin: "2026-07-28" } },
  } as never);
  await client.connect(new StreamableHTTPClientTransport(new URL(gateway.url)));
  const call = (name: string, args: Record<string, unknown> = {}) =>
    client.callTool({ name, arguments: args }, { timeout: REQUEST_TIMEOUT_MS }) as Promise<Result>;
  return {
    gateway,
    client,
    call,
    async backendCalls() {
      const stats = await call("fx__stats");
      return (stats.structuredContent as { calls: Record<string, number> }).calls;
    },
  };
}

export const textOf = (result: Result) =>
  result.content
    .map((c) => c.text ?? "")
    .join(" ")
    .trim();

export const errorCode = (result: Result) =>
  (result._meta?.["switchboard/error"] as { code?: string } | undefined)?.code;

export const sourceOf = (result: Result) => result._meta?.["switchboard/source"];
