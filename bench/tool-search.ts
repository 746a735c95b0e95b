/**
 * Tool search (`discovery: "search"`) against the full catalog, in a gateway in this process:
 *
 * - tokens of the catalog a client receives (the `tools/list` result) at an endpoint in full mode and
 *   at one in search mode, at 100, 1 000 and 10 000 tools, counted with the o200k_base tokenizer
 *   (gpt-tokenizer: GPT-4o's), plus what one search answer costs (5 tools with their schemas);
 * - recall@1 and recall@5 of `switchboard__search_tools` on QUERIES (each with the tool it should
 *   find) over a realistic catalog: the reference servers' and the built-in backends' tools
 *   (bench/fixtures/tool-catalog.json, see bench/snapshot-tool-catalog.ts), plus generated look-alikes
 *   (bench/lib/look-alike-tools.ts) up to each size;
 * - the time to build the index (on the first search after a catalog change) and of one search.
 *
 * Run alone with `npx tsx bench/tool-search.ts`; `npm run bench` runs it with the rest.
 */
import { readFileSync } from "node:fs";
import { resolve } from "node:path";
import { countTokens } from "gpt-tokenizer/encoding/o200k_base";
import type { FoundTool } from "../src/backends/gateway-tools.ts";
import { ANONYMOUS } from "../src/core/types.ts";
import {
  type Backend,
  type BackendEvents,
  type BackendState,
  type CallToolResult,
  createGateway,
  EMPTY_CATALOG,
  type Gateway,
  GatewayError,
  silentLogger,
  type Tool,
} from "../src/index.ts";
import { type GeneratedServer, lookAlikeServers } from "./lib/look-alike-tools.ts";
import type { BenchRatio } from "./lib/process.ts";

/** What a user asks for, and the tool (exposed name) that does it. */
export const QUERIES: readonly (readonly [query: string, expected: string])[] = [
  ["add two numbers together", "everything__get-sum"],
  ["echo back a string I send", "everything__echo"],
  ["show the environment variables of the server", "everything__get-env"],
  ["return a small logo image", "everything__get-tiny-image"],
  ["compress a file with gzip", "everything__gzip-file-as-resource"],
  ["ask the client's LLM to generate text", "everything__trigger-sampling-request"],
  ["run a long operation that reports progress", "everything__trigger-long-running-operation"],
  ["turn random log messages on or off", "everything__toggle-simulated-logging"],
  ["do deep research on a topic", "everything__simulate-research-query"],
  ["ask the user to fill in a form", "everything__trigger-elicitation-request"],
  ["read a text file's contents", "filesystem__read_text_file"],
  ["read an image file as base64", "filesystem__read_media_file"],
  ["read several files at once", "filesystem__read_multiple_files"],
  ["make line-based edits to a file and show the diff", "filesystem__edit_file"],
  ["create a directory and its parents", "filesystem__create_directory"],
  ["recursive tree of files and directories as JSON", "filesystem__directory_tree"],
  ["list files in a directory with their sizes", "filesystem__list_directory_with_sizes"],
  ["which directories may the file server access", "filesystem__list_allowed_directories"],
  ["find files matching a glob pattern recursively", "filesystem__search_files"],
  ["file metadata: size, creation time, permissions", "filesystem__get_file_info"],
  ["rename a file or move it to another directory", "filesystem__move_file"],
  ["add entities to the knowledge graph", "memory__create_entities"],
  ["connect two entities with a relation", "memory__create_relations"],
  ["record new facts about an existing entity", "memory__add_observations"],
  ["remove entities from the knowledge graph", "memory__delete_entities"],
  ["remove some observations from an entity", "memory__delete_observations"],
  ["dump the whole knowledge graph", "memory__read_graph"],
  ["search the knowledge graph for nodes", "memory__search_nodes"],
  ["run a SQL query on the PostgreSQL database", "postgres__query"],
  ["execute several SQL statements atomically", "postgres__transaction"],
  ["what tables does the postgres database have", "postgres__list_tables"],
  ["show the columns and constraints of a table", "postgres__describe_table"],
  ["get the string value of a redis key", "redis__get"],
  ["fetch the values of many keys at once", "redis__mget"],
  ["read all fields of a hash", "redis__hgetall"],
  ["get elements of a list from start to stop", "redis__lrange"],
  ["members of a sorted set by rank with their scores", "redis__zrange"],
  ["iterate over keys matching a pattern with a cursor", "redis__scan"],
  ["how many seconds until a key expires", "redis__ttl"],
  ["what type of value does a key hold", "redis__type"],
  ["increment a counter stored at a key", "redis__incr"],
  ["remove the expiry of a key so it stays", "redis__persist"],
  ["push values onto the head of a list", "redis__lpush"],
  ["add members to a set", "redis__sadd"],
  ["delete keys whatever they hold", "redis__del"],
  ["write a file in base64 and create missing folders", "files__write"],
  ["read a big file in ranges with offset and length", "files__read"],
  ["delete a folder with its contents", "files__delete"],
  ["find files by the text they contain", "files__search"],
  ["send an HTTP request to the API", "api__fetch"],
  ["open a pull request from a branch", "api__create_pull_request"],
  ["merge a pull request", "api__merge_pull_request"],
  ["report a bug as a new issue with labels", "api__create_issue"],
  ["comment on an issue", "api__add_issue_comment"],
  ["list the recent commits of a branch", "api__list_commits"],
  ["status of CI workflow runs", "api__list_workflow_runs"],
  ["search code across repositories", "api__search_code"],
  ["default branch and star count of a repository", "api__get_repository"],
  ["create a git branch from a commit", "api__create_branch"],
  ["list the open pull requests of a repo", "api__list_pull_requests"],
  ["contents of a file in a repository at a ref", "api__get_file_contents"],
];

export const SIZES = [100, 1_000, 10_000] as const;

const TOKENIZER = "o200k_base (gpt-tokenizer)";

export interface TokenFigures {
  readonly bytes: number;
  readonly tokens: number;
}

export interface SizeReport {
  readonly tools: number;
  /** `tools/list` of a full-mode endpoint. */
  readonly full: TokenFigures;
  /** `tools/list` of a search-mode endpoint. */
  readonly search: TokenFigures;
  /** One `switchboard__search_tools` answer (limit 5), averaged over the queries. */
  readonly searchAnswer: TokenFigures;
  readonly recallAt1: number;
  readonly recallAt5: number;
  /** Queries whose tool was not in the top 5, with what came first. */
  readonly misses: readonly { readonly query: string; readonly expected: string; readonly top: string }[];
  /** The first search after the catalog changed, which builds the index. */
  readonly indexBuildMs: number;
  readonly searchP50Ms: number;
}

export interface ToolSearchReport {
  readonly tokenizer: string;
  readonly queries: number;
  /** Tools of the reference servers and built-ins in the catalog (the rest are generated). */
  readonly realTools: number;
  readonly sizes: readonly SizeReport[];
  readonly ratios: readonly BenchRatio[];
}

/** A server whose tools are given: enough for listing and searching, calls answer nothing. */
class StaticBackend implements Backend {
  state: BackendState = "stopped";
  constructor(
    readonly name: string,
    readonly tools: readonly Tool[],
  ) {}
  async start(events: BackendEvents) {
    this.state = "up";
    events.state("up");
  }
  catalog() {
    return { ...EMPTY_CATALOG, tools: this.tools };
  }
  async callTool(): Promise<CallToolResult> {
    return { content: [] };
  }
  async readResource(): Promise<never> {
    throw new GatewayError("unknown_resource", "none");
  }
  async getPrompt(): Promise<never> {
    throw new GatewayError("unknown_prompt", "none");
  }
  async health() {
    return { status: "healthy" as const };
  }
  async close() {}
}

function realServers(): GeneratedServer[] {
  const file = resolve(import.meta.dirname, "fixtures/tool-catalog.json");
  const { servers } = JSON.parse(readFileSync(file, "utf8")) as { servers: Record<string, Tool[]> };
  return Object.entries(servers).map(([name, tools]) => ({ name, tools }));
}

function figures(value: unknown): TokenFigures {
  const text = JSON.stringify(value);
  return { bytes: Buffer.byteLength(text), tokens: countTokens(text) };
}

const median = (values: number[]) => [...values].sort((a, b) => a - b)[Math.floor(values.length / 2)] ?? 0;

async function measureSize(size: number, real: readonly GeneratedServer[]): Promise<SizeReport> {
  const realCount = real.reduce((n, s) => n + s.tools.length, 0);
  const servers = [...real, ...lookAlikeServers(Math.max(0, size - realCount))];
  const gateway: Gateway = await createGateway({
    config: {
      mcpServers: {},
      gatewayTools: { health: false, metrics: false },
      profiles: { agents: { discovery: "search" } },
    },
    backends: servers.map((s) => new StaticBackend(s.name, s.tools)),
    logger: silentLogger(),
  });
  try {
    await gateway.start();
    const full = figures({ tools: gateway.toolsFor(ANONYMOUS) });
    const search = figures({ tools: gateway.toolsFor(ANONYMOUS, "agents") });
    const answers: TokenFigures[] = [];
    const durations: number[] = [];
    const misses: { query: string; expected: string; top: string }[] = [];
    let at1 = 0;
    let at5 = 0;
    let indexBuildMs = 0;
    for (const [index, [query, expected]] of QUERIES.entries()) {
      const started = performance.now();
      const result = await gateway.callTool(
        "switchboard__search_tools",
        { query, limit: 5 },
        { profile: "agents" },
      );
      const ms = performance.now() - started;
      if (index === 0) indexBuildMs = ms;
      else durations.push(ms);
      const text = result.content[0]?.type === "text" ? result.content[0].text : "";
      answers.push({ bytes: Buffer.byteLength(text), tokens: countTokens(text) });
      const names = text.startsWith("{")
        ? (JSON.parse(text) as { tools: FoundTool[] }).tools.map((t) => t.name)
        : [];
      if (names[0] === expected) at1++;
      if (names.includes(expected)) at5++;
      else misses.push({ query, expected, top: names[0] ?? "(nothing)" });
    }
    const mean = (pick: (f: TokenFigures) => number) =>
      Math.round(answers.reduce((sum, f) => sum + pick(f), 0) / answers.length);
    return {
      tools: gateway.toolsFor(ANONYMOUS).length,
      full,
      search,
      searchAnswer: { bytes: mean((f) => f.bytes), tokens: mean((f) => f.tokens) },
      recallAt1: at1 / QUERIES.length,
      recallAt5: at5 / QUERIES.length,
      misses,
      indexBuildMs,
      searchP50Ms: median(durations),
    };
  } finally {
    await gateway.close();
  }
}

export async function measureToolSearch(): Promise<ToolSearchReport> {
  const real = realServers();
  const sizes: SizeReport[] = [];
  for (const size of SIZES) sizes.push(await measureSize(size, real));
  const largest = sizes.at(-1) as SizeReport;
  const saved = largest.full.tokens / largest.search.tokens;
  return {
    tokenizer: TOKENIZER,
    queries: QUERIES.length,
    realTools: real.reduce((n, s) => n + s.tools.length, 0),
    sizes,
    ratios: [
      {
        what: `tools/list tokens, full / search mode, ${largest.tools} tools`,
        measured: saved,
        target: "≥ 100",
        ok: saved >= 100,
      },
      {
        what: `tool search recall@5, ${largest.tools} tools`,
        measured: largest.recallAt5,
        target: "≥ 0.9",
        ok: largest.recallAt5 >= 0.9,
      },
    ],
  };
}

export function printToolSearch(report: ToolSearchReport): void {
  const widths = [7, 22, 16, 20, 9, 9, 10, 10];
  const row = (cells: readonly string[]) => cells.map((c, i) => c.padEnd(widths[i] ?? 0)).join("  ");
  console.log(
    `tokens counted with ${report.tokenizer}; recall over ${report.queries} queries, ` +
      `${report.realTools} real tools plus generated look-alikes`,
  );
  console.log(
    row([
      "tools",
      "full tools/list",
      "search tools/list",
      "one search (5 tools)",
      "recall@1",
      "recall@5",
      "index ms",
      "search ms",
    ]),
  );
  for (const s of report.sizes) {
    console.log(
      row([
        String(s.tools),
        `${s.full.tokens} tok (${(s.full.bytes / 1024).toFixed(0)} KiB)`,
        `${s.search.tokens} tok`,
        `${s.searchAnswer.tokens} tok`,
        s.recallAt1.toFixed(2),
        s.recallAt5.toFixed(2),
        s.indexBuildMs.toFixed(0),
        s.searchP50Ms.toFixed(2),
      ]),
    );
  }
  const last = report.sizes.at(-1);
  for (const miss of last?.misses ?? []) {
    console.log(`  missed at ${last?.tools}: "${miss.query}" → expected ${miss.expected}, first ${miss.top}`);
  }
}

if (import.meta.url === `file://${process.argv[1]}`) {
  printToolSearch(await measureToolSearch());
}
