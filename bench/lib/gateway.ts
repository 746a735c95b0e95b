/**
 * What every benchmark needs to run the gateway: its paths, a config written to a temporary file, and
 * the gateway started as a child process over stdio (with the load client's handshake done).
 */
import { existsSync, mkdtempSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join, resolve } from "node:path";
import { type RpcClient, StdioRpc } from "./load.ts";

export const ROOT = resolve(import.meta.dirname, "../..");
export const CLI = join(ROOT, "src/cli/main.ts");
/** The gateway as users run it: compiled (`npm run build`, which `npm run bench` does first). */
const BUILT_CLI = join(ROOT, "dist/cli/main.js");
/**
 * The node arguments that start the gateway CLI: the build when there is one, else the sources
 * through tsx (which costs start-up time and some 70 MB of memory that a user's gateway does not).
 */
export const GATEWAY_ARGV: readonly string[] = existsSync(BUILT_CLI) ? [BUILT_CLI] : ["--import", "tsx", CLI];
/** A hand-written server that costs almost nothing (TOOLS, DELAY_MS in its environment). */
export const LIGHT = join(ROOT, "bench/fixtures/light-server.mjs");
/** A typical SDK v1 server. */
export const SDK_SERVER = join(ROOT, "bench/fixtures/sdk-server.mjs");

/** Writes `config` as JSON to a fresh temporary directory and returns the file's path. */
export function writeBenchConfig(config: unknown, label = "bench"): string {
  const file = join(mkdtempSync(join(tmpdir(), `switchboard-${label}-`)), "bench.json");
  writeFileSync(file, JSON.stringify(config));
  return file;
}

/**
 * Starts `switchboard serve --stdio` on `config` (with `argv`, another build's CLI), completes the 2025
 * handshake, and waits until the servers' tools are listed: the gateway answers at once and lists
 * servers as they come up, and a benchmark measures calls, not start-up.
 */
export async function startStdioGateway(
  config: string,
  argv: readonly string[] = GATEWAY_ARGV,
): Promise<StdioRpc> {
  const gateway = new StdioRpc(process.execPath, [...argv, "serve", "--config", config, "--stdio"]);
  await gateway.initialize();
  await untilServersListed(gateway, config);
  return gateway;
}

/** Waits until a server's tools (not only the gateway's own) are listed to `client`. */
export async function untilServersListed(client: RpcClient, config: string): Promise<void> {
  const deadline = Date.now() + 60_000;
  for (;;) {
    const { tools } = (await client.request("tools/list", {})) as { tools: { name: string }[] };
    if (tools.some((tool) => !tool.name.startsWith("switchboard__"))) return;
    if (Date.now() > deadline) throw new Error(`no server's tools listed within 60 s (config ${config})`);
    await new Promise((resolve) => setTimeout(resolve, 100));
  }
}

/**
 * The configs A/B runs and profiles share: the SDK backend with the policy chain off, and with the
 * realistic chain (rate limit, circuit breaker, cache, all roomy enough never to refuse).
 */
export function sdkBackendConfigs(): { readonly plain: string; readonly chained: string } {
  const servers = { backend: { command: process.execPath, args: [SDK_SERVER] } };
  return {
    plain: writeBenchConfig({ mcpServers: servers, logging: { level: "warn" } }),
    chained: writeBenchConfig({
      mcpServers: servers,
      logging: { level: "warn" },
      policies: {
        rateLimit: { capacity: 1_000_000, refillPerSecond: 1_000_000 },
        circuitBreaker: { consecutiveFailures: 5 },
        cache: { ttlMs: 60_000 },
      },
    }),
  };
}
