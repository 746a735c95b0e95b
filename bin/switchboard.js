#!/usr/bin/env node
// Runs the compiled gateway when it is built (`npm run build`; `npm start` builds first), else the
// TypeScript sources through tsx, so the package also works from a checkout without a build step.
import { existsSync } from "node:fs";

const built = new URL("../dist/cli/main.js", import.meta.url);
if (existsSync(built)) {
  await import(built.href);
} else {
  const { register } = await import("tsx/esm/api");
  register();
  await import("../src/cli/main.ts");
}
