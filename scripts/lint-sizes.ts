/**
 * Fails when a source file in src/ is over MAX_LINES lines: a file that long does more than one job and
 * is due a split (see the Architecture section of the README). `npm run lint` runs it.
 */
import { readdirSync, readFileSync } from "node:fs";
import { join, relative } from "node:path";
import { ROOT } from "./pack.ts";

const MAX_LINES = 500;

function sourceFiles(folder: string): string[] {
  return readdirSync(folder, { withFileTypes: true }).flatMap((entry) => {
    const path = join(folder, entry.name);
    if (entry.isDirectory()) return sourceFiles(path);
    return entry.name.endsWith(".ts") ? [path] : [];
  });
}

const tooLong = sourceFiles(join(ROOT, "src"))
  .map((path) => ({ path: relative(ROOT, path), lines: readFileSync(path, "utf8").split("\n").length - 1 }))
  .filter((file) => file.lines > MAX_LINES);
for (const file of tooLong) {
  process.stderr.write(`${file.path}: ${file.lines} lines, over ${MAX_LINES}: split it by job\n`);
}
if (tooLong.length > 0) process.exitCode = 1;
