/**
 * The README's account of the newest conformance suite agrees with the script's list of known gateway
 * failures. The results themselves are checked by the CI step (`npm run conformance:next -- --readme
 * README.md`), which needs Node 22 and fails when the README's table differs from what it found; this
 * test keeps the table and the reasons next to it in step with scripts/conformance-known.ts in `npm test`.
 */
import assert from "node:assert/strict";
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { test } from "node:test";
import { KNOWN_GATEWAY_FAILURES } from "../../scripts/conformance-known.ts";
import { ROOT } from "../support/gateway-process.ts";

const readme = readFileSync(join(ROOT, "README.md"), "utf8");
const section = readme.slice(readme.indexOf("## Conformance\n"), readme.indexOf("## Reliability\n"));

/** The README table's rows: scenario, wire, fixture, gateway (2026-07-28 backend), gateway (2025 backend). */
function tableRows(): string[][] {
  const block = section.slice(
    section.indexOf("<!-- conformance-next:begin -->"),
    section.indexOf("<!-- conformance-next:end -->"),
  );
  return block
    .split("\n")
    .filter((line) => line.startsWith("| `"))
    .map((line) =>
      line
        .slice(1, -1)
        .split(" | ")
        .map((cell) => cell.trim().replaceAll("`", "")),
    );
}

test("the README's 0.2.x table marks exactly the known gateway failures, and the fixture passes everything", () => {
  const rows = tableRows();
  assert.ok(rows.length >= 80, `the README's table has only ${rows.length} rows`);
  const marked = new Set<string>();
  for (const [scenario, wire, fixture, gateway, legacy] of rows) {
    assert.match(
      fixture as string,
      /^(pass|skipped)/,
      `${scenario}@${wire}: the fixture alone says ${fixture}`,
    );
    if (gateway === "known failure") marked.add(`${scenario}@${wire}@gateway`);
    if (legacy === "known failure") marked.add(`${scenario}@${wire}@gateway-legacy`);
    for (const cell of [gateway, legacy]) assert.notEqual(cell, "FAIL", `${scenario}@${wire} fails`);
  }
  const listed = new Set(
    KNOWN_GATEWAY_FAILURES.flatMap((k) => k.targets.map((target) => `${k.scenario}@${k.wire}@${target}`)),
  );
  assert.deepEqual([...marked].sort(), [...listed].sort());
});

test("the README names every known gateway failure next to its reason", () => {
  const prose = section.slice(section.indexOf("<!-- conformance-next:end -->"));
  for (const known of KNOWN_GATEWAY_FAILURES) {
    assert.ok(
      prose.includes(`\`${known.scenario}\``),
      `the README's known failures do not name ${known.scenario}`,
    );
  }
});
