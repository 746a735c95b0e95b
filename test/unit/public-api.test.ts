/**
 * The public API is what src/index.ts exports, and the README's Embedding section lists all of it:
 * an export the README does not name is not documented, and a name the README documents must exist.
 */
import assert from "node:assert/strict";
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { test } from "node:test";
import * as api from "../../src/index.ts";

const ROOT = join(import.meta.dirname, "../..");
const README = readFileSync(join(ROOT, "README.md"), "utf8");
const EMBEDDING = README.slice(README.indexOf("\n## Embedding\n"), README.indexOf("\n## Error codes\n"));

/** Every name src/index.ts exports, types included (read from its export lists). */
function exportedNames(): string[] {
  const source = readFileSync(join(ROOT, "src/index.ts"), "utf8");
  return [...source.matchAll(/export (?:type )?\{([^}]*)\}/g)]
    .flatMap((m) => (m[1] as string).split(","))
    .map((name) => name.replace(/^\s*type\s+/, "").trim())
    .filter((name) => name !== "")
    .map((name) => name.split(/\s+as\s+/).at(-1) as string);
}

test("the README's Embedding section names every export of the package's entry", () => {
  const names = exportedNames();
  assert.ok(names.length > 30, `found ${names.length} exports`);
  const missing = names.filter((name) => !new RegExp(`\`${name}[\`(<]`).test(EMBEDDING));
  assert.deepEqual(missing, [], "exports the README does not document");
});

test("the functions and values the README documents are exported", () => {
  const documented = [...EMBEDDING.matchAll(/\*\*`([A-Za-z_]+)[(`]/g)].map((m) => m[1] as string);
  const types = new Set(["Gateway", "Backend", "Store", "AuditSink"]);
  for (const name of documented.filter((n) => !types.has(n))) {
    assert.ok(name in api, `${name} is documented but not exported`);
  }
});
