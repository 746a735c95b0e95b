/**
 * Runs the newest pre-release of the official MCP conformance suite (@modelcontextprotocol/conformance
 * 0.2.x, on Node 22: see conformance-toolchain.ts) against the conformance fixture alone and against the
 * gateway in front of it, and prints one row per scenario and wire version, one column per target.
 *
 *   node --import tsx scripts/conformance-next.ts            every target, every wire, every scenario
 *
 * Targets (--target, repeatable; default all three):
 *   fixture          test/fixtures/conformance-http.ts alone
 *   gateway          the gateway on test/fixtures/conformance.yaml (its backend connection speaks 2026-07-28)
 *   gateway-legacy   the gateway on test/fixtures/conformance-legacy.yaml (a 2025 backend connection)
 *
 * Wires (--wire, repeatable; default all three). The suite runs a scenario at one wire version, and
 * one that applies to both revisions must run under each:
 *   2025-11-25   the stateful initialize handshake        (--spec-version 2025-11-25)
 *   2026-07-28   stateless requests with per-request _meta (--spec-version 2026-07-28)
 *   extension    the extension scenarios (tasks, skills), which the suite runs at 2026-07-28
 *
 * Other options:
 *   --scenario <name>   only this scenario (repeatable)
 *   --timeout <ms>      bound on the whole run, installs and start-ups included (default 900000)
 *   --cache <dir>       where Node 22 and the suite are installed (see conformance-toolchain.ts)
 *   --json <file>       also write the results as JSON
 *   --markdown          print the table as Markdown
 *   --readme <file>     check that the table between the conformance-next markers of <file> (README.md)
 *                       is the one this run produced; fail (exit 1) if it is not
 *   --write-readme <file>  write it there instead (both need a full run: every target, wire and scenario)
 *   --keep              keep the suite's checks.json files (their directory is printed)
 *   --verbose           print the suite's and npm's own output
 *
 * A scenario passes when none of its checks fails (WARNING checks are shown, not failed, as the suite's
 * own exit code treats them); it is skipped when the suite skipped every check. Through the gateway it
 * must do what it does against the fixture alone, except for the known failures listed, with their
 * reasons, in conformance-known.ts.
 *
 * Exit code: 0 when every result is a pass, a skip the fixture shares, or a known failure; 1 otherwise;
 * 2 when the run itself could not be done (install, start-up, timeout, bad usage).
 */
import type { ChildProcess } from "node:child_process";
import { mkdir, mkdtemp, readFile, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join, resolve } from "node:path";
import {
  type Check,
  countChecks,
  formatMarkdownTable,
  formatTable,
  readChecks,
  reportCrash,
  runToEnd,
  startFixture,
  startGateway,
  stopChild,
  UsageError,
} from "./conformance-common.ts";
import { type GatewayTarget, knownFailure, type Wire } from "./conformance-known.ts";
import { defaultCacheDir, ensureToolchain, type Toolchain } from "./conformance-toolchain.ts";

const TARGETS = ["fixture", "gateway", "gateway-legacy"] as const;
type Target = (typeof TARGETS)[number];
const TARGET_LABELS: Record<Target, string> = {
  fixture: "fixture alone",
  gateway: "gateway (2026-07-28 backend)",
  "gateway-legacy": "gateway (2025 backend)",
};
const WIRES: readonly Wire[] = ["2025-11-25", "2026-07-28", "extension"];

interface Options {
  targets: Target[];
  wires: Wire[];
  scenarios: string[];
  timeoutMs: number;
  cache: string;
  json?: string;
  markdown: boolean;
  readme?: { file: string; write: boolean };
  keep: boolean;
  verbose: boolean;
}

type Outcome = "pass" | "skip" | "fail" | "known" | "missing";

interface Cell {
  outcome: Outcome;
  passed: number;
  failed: number;
  warnings: number;
  failures: string[];
  note?: string;
}

interface Row {
  scenario: string;
  wire: Wire;
  cells: Partial<Record<Target, Cell>>;
}

const USAGE =
  "usage: scripts/conformance-next.ts [--target fixture|gateway|gateway-legacy]... " +
  "[--wire 2025-11-25|2026-07-28|extension]... [--scenario <name>]... [--timeout <ms>] [--cache <dir>] " +
  "[--json <file>] [--markdown] [--readme <file> | --write-readme <file>] [--keep] [--verbose]";

function parseArgs(argv: string[]): Options {
  const options: Options = {
    targets: [],
    wires: [],
    scenarios: [],
    timeoutMs: 900_000,
    cache: defaultCacheDir(),
    markdown: false,
    keep: false,
    verbose: false,
  };
  const value = (i: number, flag: string): string => {
    const v = argv[i + 1];
    if (v === undefined || v.startsWith("--")) throw new UsageError(`${flag} needs a value\n${USAGE}`);
    return v;
  };
  for (let i = 0; i < argv.length; i++) {
    const arg = argv[i] as string;
    switch (arg) {
      case "--target": {
        const target = value(i++, arg);
        if (!(TARGETS as readonly string[]).includes(target)) {
          throw new UsageError(`--target must be one of ${TARGETS.join(", ")}, got "${target}"`);
        }
        options.targets.push(target as Target);
        break;
      }
      case "--wire": {
        const wire = value(i++, arg);
        if (!(WIRES as readonly string[]).includes(wire)) {
          throw new UsageError(`--wire must be one of ${WIRES.join(", ")}, got "${wire}"`);
        }
        options.wires.push(wire as Wire);
        break;
      }
      case "--scenario":
        options.scenarios.push(value(i++, arg));
        break;
      case "--timeout": {
        const ms = Number(value(i++, arg));
        if (!Number.isInteger(ms) || ms <= 0)
          throw new UsageError("--timeout must be a positive number of ms");
        options.timeoutMs = ms;
        break;
      }
      case "--cache":
        options.cache = resolve(value(i++, arg));
        break;
      case "--json":
        options.json = value(i++, arg);
        break;
      case "--markdown":
        options.markdown = true;
        break;
      case "--readme":
      case "--write-readme":
        options.readme = { file: value(i++, arg), write: arg === "--write-readme" };
        break;
      case "--keep":
        options.keep = true;
        break;
      case "--verbose":
        options.verbose = true;
        break;
      case "--help":
      case "-h":
        throw new UsageError(USAGE);
      default:
        throw new UsageError(`unknown argument ${arg}\n${USAGE}`);
    }
  }
  if (options.readme && options.targets.length + options.wires.length + options.scenarios.length > 0) {
    throw new UsageError("--readme and --write-readme need a full run: drop --target, --wire and --scenario");
  }
  if (options.targets.length === 0) options.targets = [...TARGETS];
  if (options.wires.length === 0) options.wires = [...WIRES];
  return options;
}

/** A server scenario and the wires it applies to, from `conformance list --server`. */
interface Scenario {
  name: string;
  wires: Wire[];
}

async function listScenarios(tools: Toolchain, deadline: AbortSignal): Promise<Scenario[]> {
  const { code, output } = await runToEnd(tools.node, [tools.suite, "list", "--server"], deadline, false);
  if (code !== 0) throw new Error(`conformance list failed (exit ${code}):\n${output}`);
  return [...output.matchAll(/^\s+-\s+(\S+)\s+\[([^\]]*)\]\s*$/gm)].map((m) => {
    const tags = (m[2] as string).split(",").map((t) => t.trim());
    return { name: m[1] as string, wires: WIRES.filter((wire) => tags.includes(wire)) };
  });
}

/** Runs one target through the selected wires; the results are keyed `scenario@wire`. */
async function runTarget(
  tools: Toolchain,
  url: string,
  scenarios: readonly Scenario[],
  options: Options,
  outDir: string,
  deadline: AbortSignal,
): Promise<Map<string, Check[]>> {
  const results = new Map<string, Check[]>();
  const suite = async (args: string[], out: string) => {
    await mkdir(out, { recursive: true });
    reportCrash(
      await runToEnd(
        tools.node,
        [tools.suite, "server", "--url", url, "-o", out, ...args],
        deadline,
        options.verbose,
      ),
    );
    return readChecks(out);
  };
  const filtered = options.scenarios.length > 0;
  for (const wire of options.wires) {
    const wanted = scenarios.filter((s) => s.wires.includes(wire)).map((s) => s.name);
    if (wanted.length === 0 || deadline.aborted) continue;
    const out = join(outDir, wire);
    let checks = new Map<string, Check[]>();
    // One suite process for a whole wire is much faster than one per scenario.
    if (!filtered && wire !== "extension")
      checks = await suite(["--suite", "all", "--spec-version", wire], out);
    // The suite's pending list holds the extension scenarios (and a few others, run again under their wire).
    if (!filtered && wire === "extension") checks = await suite(["--suite", "pending"], out);
    for (const name of wanted) {
      if (checks.has(name) || deadline.aborted) continue;
      const one = await suite(
        ["--scenario", name, ...(wire === "extension" ? [] : ["--spec-version", wire])],
        out,
      );
      const found = one.get(name);
      if (found) checks.set(name, found);
    }
    for (const name of wanted) {
      const found = checks.get(name);
      if (found) results.set(`${name}@${wire}`, found);
    }
  }
  return results;
}

function judge(checks: Check[] | undefined): Cell {
  if (checks === undefined) return { outcome: "missing", passed: 0, failed: 0, warnings: 0, failures: [] };
  const counts = countChecks(checks);
  // wire-schema-valid is appended to every scenario; it says nothing about whether the scenario ran.
  const ran = checks.some((c) => c.status === "SUCCESS" && c.id !== "wire-schema-valid");
  const outcome: Outcome = counts.failed > 0 ? "fail" : !ran && counts.skipped > 0 ? "skip" : "pass";
  return { outcome, ...counts };
}

/** Applies the known-failure list and the "as the fixture alone" rule to a gateway cell. */
function judgeGateway(cell: Cell, row: Row, target: GatewayTarget): Cell {
  const known = knownFailure(row.scenario, row.wire, target);
  const fixture = row.cells.fixture?.outcome;
  // A skip is short of what the fixture alone does unless the fixture skipped too (or was not run).
  const skippedAlone = cell.outcome === "skip" && fixture !== "skip";
  const short = cell.outcome === "fail" || cell.outcome === "missing" || skippedAlone;
  if (known && short) return { ...cell, outcome: "known", note: `known (${known.kind}): ${known.reason}` };
  if (known)
    return { ...cell, note: `listed as a known ${known.kind} failure, but it did not fail: remove it` };
  if (cell.outcome === "skip" && fixture === "pass") {
    return { ...cell, outcome: "fail", note: "every check was skipped, while the fixture alone passes them" };
  }
  return cell;
}

function cellText(cell: Cell | undefined): string {
  if (cell === undefined) return "";
  const checks = `${cell.passed}/${cell.passed + cell.failed}`;
  const warn = cell.warnings > 0 ? `, ${cell.warnings} warning${cell.warnings > 1 ? "s" : ""}` : "";
  switch (cell.outcome) {
    case "pass":
      return `pass ${checks}${warn}`;
    case "skip":
      return "skipped";
    case "known":
      return `known ${checks}`;
    case "missing":
      return "MISSING";
    default:
      return `FAIL ${checks}${warn}`;
  }
}

function printResults(rows: Row[], options: Options, tools: Toolchain): boolean {
  const header = ["scenario", "wire", ...options.targets.map((t) => TARGET_LABELS[t])];
  const lines = rows.map((row) => [
    row.scenario,
    row.wire,
    ...options.targets.map((t) => cellText(row.cells[t])),
  ]);
  const table = options.markdown ? formatMarkdownTable(header, lines) : formatTable(header, lines);
  const out: string[] = [
    `@modelcontextprotocol/conformance ${tools.suiteVersion} on Node ${tools.nodeVersion}`,
    "",
    table,
    "",
  ];
  let clean = true;
  const notes = new Map<string, string[]>();
  for (const target of options.targets) {
    const cells = rows.flatMap((row) =>
      row.cells[target] ? [{ row, cell: row.cells[target] as Cell }] : [],
    );
    const count = (o: Outcome) => cells.filter((x) => x.cell.outcome === o).length;
    const bad = cells.filter((x) => x.cell.outcome === "fail" || x.cell.outcome === "missing");
    if (bad.length > 0) clean = false;
    out.push(
      `${TARGET_LABELS[target]}: ${count("pass")} passed, ${count("skip")} skipped, ` +
        `${count("known")} known failure(s), ${bad.length} unexpected failure(s)`,
    );
    for (const { row, cell } of bad) {
      out.push(`  FAIL ${row.scenario}@${row.wire}${cell.note ? `: ${cell.note}` : ""}`);
      for (const failure of cell.failures) out.push(`      ${failure}`);
    }
    // Notes (known-failure reasons above all) are the same for both gateway targets: print each once.
    for (const { row, cell } of cells) {
      if (cell.note === undefined || cell.outcome === "fail" || cell.outcome === "missing") continue;
      const key = `${row.scenario}@${row.wire}: ${cell.note}`;
      notes.set(key, [...(notes.get(key) ?? []), TARGET_LABELS[target]]);
    }
  }
  if (notes.size > 0) out.push("", "Notes:");
  for (const [note, targets] of notes) out.push(`  ${note} [${targets.join("; ")}]`);
  process.stdout.write(`${out.join("\n")}\n`);
  return clean;
}

const README_BEGIN = "<!-- conformance-next:begin -->";
const README_END = "<!-- conformance-next:end -->";

/** The README's version of a cell: the outcome without check counts, which say more than a reader needs. */
function readmeCell(cell: Cell | undefined): string {
  if (cell === undefined) return "";
  const warn = cell.warnings > 0 ? ` (${cell.warnings} warning${cell.warnings > 1 ? "s" : ""})` : "";
  if (cell.outcome === "known") return "known failure";
  if (cell.outcome === "skip") return "skipped";
  if (cell.outcome === "pass") return `pass${warn}`;
  return "FAIL";
}

function readmeTable(rows: Row[], tools: Toolchain): string {
  const header = ["scenario", "wire", ...TARGETS.map((t) => TARGET_LABELS[t])];
  const lines = rows.map((row) => [
    `\`${row.scenario}\``,
    row.wire,
    ...TARGETS.map((t) => readmeCell(row.cells[t])),
  ]);
  return [
    README_BEGIN,
    `<!-- @modelcontextprotocol/conformance ${tools.suiteVersion}; written by scripts/conformance-next.ts --write-readme -->`,
    "",
    formatMarkdownTable(header, lines),
    "",
    README_END,
  ].join("\n");
}

/** Checks (or writes) the README's table; false when the README says something this run did not find. */
async function syncReadme(readme: { file: string; write: boolean }, table: string): Promise<boolean> {
  const path = resolve(readme.file);
  const text = await readFile(path, "utf8");
  const begin = text.indexOf(README_BEGIN);
  const end = text.indexOf(README_END);
  if (begin < 0 || end < begin)
    throw new Error(`${readme.file} has no ${README_BEGIN} ... ${README_END} block`);
  const current = text.slice(begin, end + README_END.length);
  if (current === table) return true;
  if (readme.write) {
    await writeFile(path, text.slice(0, begin) + table + text.slice(end + README_END.length));
    process.stdout.write(`\nconformance: wrote the table into ${readme.file}\n`);
    return true;
  }
  process.stdout.write(
    `\nconformance: the table in ${readme.file} is not what this run found; update it with\n` +
      `  npm run conformance:next -- --write-readme ${readme.file}\n`,
  );
  return false;
}

async function main(): Promise<number> {
  let options: Options;
  try {
    options = parseArgs(process.argv.slice(2));
  } catch (error) {
    if (!(error instanceof UsageError)) throw error;
    process.stderr.write(`${error.message}\n`);
    return 2;
  }
  const deadline = AbortSignal.timeout(options.timeoutMs);
  const outDir = await mkdtemp(join(tmpdir(), "switchboard-conformance-next-"));
  let server: ChildProcess | undefined;
  try {
    const tools = await ensureToolchain(options.cache, deadline, options.verbose);
    let scenarios = await listScenarios(tools, deadline);
    if (options.scenarios.length > 0) {
      const unknown = options.scenarios.filter((s) => !scenarios.some((x) => x.name === s));
      if (unknown.length > 0) {
        throw new Error(
          `unknown scenario(s): ${unknown.join(", ")}; known: ${scenarios.map((s) => s.name).join(", ")}`,
        );
      }
      scenarios = scenarios.filter((s) => options.scenarios.includes(s.name));
    }
    const rows: Row[] = scenarios.flatMap((s) =>
      s.wires.filter((w) => options.wires.includes(w)).map((wire) => ({ scenario: s.name, wire, cells: {} })),
    );
    for (const target of options.targets) {
      const started =
        target === "fixture"
          ? await startFixture(deadline)
          : await startGateway(target === "gateway" ? "modern" : "legacy", deadline);
      server = started.child;
      process.stderr.write(`conformance: testing ${started.url} (${TARGET_LABELS[target]})\n`);
      const results = await runTarget(tools, started.url, scenarios, options, join(outDir, target), deadline);
      await stopChild(server);
      server = undefined;
      if (deadline.aborted) throw new Error(`the run took longer than --timeout ${options.timeoutMs} ms`);
      for (const row of rows) row.cells[target] = judge(results.get(`${row.scenario}@${row.wire}`));
    }
    for (const row of rows) {
      for (const target of ["gateway", "gateway-legacy"] as const) {
        const cell = row.cells[target];
        if (cell) row.cells[target] = judgeGateway(cell, row, target);
      }
    }
    let clean = printResults(rows, options, tools);
    if (options.readme) clean = (await syncReadme(options.readme, readmeTable(rows, tools))) && clean;
    if (options.json !== undefined) {
      const summary = { suite: tools.suiteVersion, node: tools.nodeVersion, targets: options.targets, rows };
      await writeFile(resolve(options.json), `${JSON.stringify(summary, null, 2)}\n`);
    }
    return clean ? 0 : 1;
  } catch (error) {
    process.stderr.write(`conformance: ${error instanceof Error ? error.message : String(error)}\n`);
    return 2;
  } finally {
    if (server !== undefined) await stopChild(server);
    if (options.keep) process.stderr.write(`conformance: checks kept in ${outDir}\n`);
    else await rm(outDir, { recursive: true, force: true });
  }
}

process.exitCode = await main();
