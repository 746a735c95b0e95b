import { SDK_SERVER, startStdioGateway, writeBenchConfig } from "./lib/gateway.ts";
import { runLoad } from "./lib/load.ts";

const cli = process.argv[2] ?? "/tmp/after/dist/cli/main.js";
const chain = process.argv[3] === "chain";
const config = writeBenchConfig({
  mcpServers: { backend: { command: process.execPath, args: [SDK_SERVER] } },
  logging: { level: "warn" },
  ...(chain
    ? {
        policies: {
          rateLimit: { capacity: 1_000_000, refillPerSecond: 1_000_000 },
          circuitBreaker: { consecutiveFailures: 5 },
          cache: { ttlMs: 60_000 },
        },
      }
    : {}),
});
const gw = await startStdioGateway(config, ["--cpu-prof", "--cpu-prof-dir=/tmp/prof", cli]);
let u = 0;
const r = await runLoad(
  Array(8).fill(gw),
  (c) => c.request("tools/call", { name: "backend__echo", arguments: { message: `u${++u}` } }),
  { total: 20000, warmup: 1000 },
);
console.log(r.perSecond.toFixed(0), r.p50Ms);
await gw.close();
await new Promise((r) => setTimeout(r, 2000));
