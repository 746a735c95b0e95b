import { SDK_SERVER, untilServersListed, writeBenchConfig } from "./lib/gateway.ts";
import { HttpModernRpc, HttpSessionRpc, runLoad } from "./lib/load.ts";
import { startHttpGateway } from "./lib/process.ts";

const cli = process.argv[2] ?? "/tmp/after/dist/cli/main.js";
const era = process.argv[3] ?? "2026";
const config = writeBenchConfig({
  mcpServers: { backend: { command: process.execPath, args: [SDK_SERVER] } },
  logging: { level: "warn" },
});
const gw = await startHttpGateway(config, {
  nodeFlags: ["--cpu-prof", "--cpu-prof-dir=/tmp/prof"],
  cli: [cli],
});
const clients = Array.from({ length: 8 }, () =>
  era === "2026" ? new HttpModernRpc(gw.url) : new HttpSessionRpc(gw.url),
);
if (era !== "2026") await Promise.all(clients.map((c) => (c as HttpSessionRpc).initialize()));
await untilServersListed(clients[0] as never, config);
let u = 0;
const r = await runLoad(
  clients,
  (c) => c.request("tools/call", { name: "backend__echo", arguments: { message: `u${++u}` } }),
  { total: 20000, warmup: 1000 },
);
console.log(r.perSecond.toFixed(0), r.p50Ms);
await Promise.all(clients.map((c) => c.close()));
await gw.stop();
await new Promise((r) => setTimeout(r, 2000));
