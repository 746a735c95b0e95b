import { runLoad, StdioRpc } from "./lib/load.ts";

const g = new StdioRpc(process.execPath, [
  "--cpu-prof",
  "--cpu-prof-dir=/tmp/prof",
  "--import",
  "tsx",
  "src/cli/main.ts",
  "serve",
  "--config",
  "/tmp/prof.json",
  "--stdio",
]);
await g.initialize();
console.log(
  await runLoad(
    [g],
    (c, i) => c.request("tools/call", { name: "backend__echo", arguments: { message: "m" + i } }),
    { total: 20000, warmup: 1000 },
  ),
);
await g.close();
