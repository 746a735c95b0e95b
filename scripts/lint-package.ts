/**
 * Lints the package as it would be published: packs it once, then checks the tarball with publint
 * (package.json fields, exports, files) and Are the Types Wrong (types resolve for every importer of
 * an ESM-only package). `npm run lint` runs it.
 */
import { execFileSync } from "node:child_process";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { packProject, ROOT } from "./pack.ts";

const bin = (name: string) => join(ROOT, "node_modules/.bin", name);
const folder = mkdtempSync(join(tmpdir(), "switchboard-lint-package-"));
try {
  const tarball = packProject(folder);
  execFileSync(bin("publint"), ["run", tarball, "--strict"], { stdio: "inherit" });
  // ESM only, on purpose: the package targets Node 20+, where every importer can load ESM.
  execFileSync(bin("attw"), [tarball, "--profile", "esm-only", "--no-emoji", "--no-color"], {
    stdio: "inherit",
  });
} catch (error) {
  const status = (error as { status?: number }).status;
  process.stderr.write(`lint:package failed${status === undefined ? `: ${String(error)}` : ""}\n`);
  process.exitCode = 1;
} finally {
  rmSync(folder, { recursive: true, force: true });
}
