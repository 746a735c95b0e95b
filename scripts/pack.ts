/**
 * `npm pack` of this project into a folder, as a publish would make it: `prepack` runs first (a clean
 * build of dist/), so the tarball holds what users install, never a stale build.
 */
import { execFileSync } from "node:child_process";
import { join, resolve } from "node:path";

export const ROOT = resolve(import.meta.dirname, "..");

/** Packs the project into `destination` and returns the tarball's path. */
export function packProject(destination: string): string {
  const out = execFileSync("npm", ["pack", "--json", "--pack-destination", destination], {
    cwd: ROOT,
    encoding: "utf8",
    // prepack's build output goes to stderr, so that stdout holds only the JSON.
    stdio: ["ignore", "pipe", "inherit"],
    env: { ...process.env, npm_config_loglevel: "warn" },
  });
  const [packed] = JSON.parse(out) as { filename: string }[];
  if (!packed) throw new Error(`npm pack printed no tarball:\n${out}`);
  return join(destination, packed.filename);
}
