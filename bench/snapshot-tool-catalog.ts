/**
 * Writes bench/fixtures/tool-catalog.json, the realistic catalog the tool search bench measures
 * recall on: the tools/list of the reference MCP servers (server-everything, server-filesystem,
 * server-memory) and of Switchboard's built-in backends (postgres, redis and filesystem with their
 * write tools on, and an http backend with the endpoints of a typical REST API), each under its own
 * names. Run it again when a reference server or a built-in changes its tools:
 *
 *   npm run build && DATABASE_URL=… REDIS_URL=… npx tsx bench/snapshot-tool-catalog.ts
 */
import { execFileSync } from "node:child_process";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join, resolve } from "node:path";

const ROOT = resolve(import.meta.dirname, "..");
const databaseUrl = process.env.DATABASE_URL;
const redisUrl = process.env.REDIS_URL;
if (!databaseUrl || !redisUrl) {
  throw new Error(
    "Set DATABASE_URL and REDIS_URL: the postgres and redis backends list their tools once connected.",
  );
}

const reference = (pkg: string, ...args: string[]) => ({
  command: process.execPath,
  args: [join(ROOT, "node_modules/@modelcontextprotocol", pkg, "dist/index.js"), ...args],
});

/** The endpoints of a typical REST API (a code host), as an http backend would be configured. */
const restEndpoints = [
  [
    "get_repository",
    "GET",
    "/repos/{owner}/{repo}",
    "Get a repository's details: description, default branch, stars, visibility.",
    ["owner", "repo"],
  ],
  [
    "list_pull_requests",
    "GET",
    "/repos/{owner}/{repo}/pulls",
    "List the pull requests of a repository, open ones by default.",
    ["owner", "repo", "state"],
  ],
  [
    "create_pull_request",
    "POST",
    "/repos/{owner}/{repo}/pulls",
    "Open a pull request that merges a branch into another.",
    ["owner", "repo", "title", "head", "base", "body"],
  ],
  [
    "merge_pull_request",
    "PUT",
    "/repos/{owner}/{repo}/pulls/{number}/merge",
    "Merge a pull request.",
    ["owner", "repo", "number", "merge_method"],
  ],
  [
    "list_issues",
    "GET",
    "/repos/{owner}/{repo}/issues",
    "List the issues of a repository, filtered by state, labels or assignee.",
    ["owner", "repo", "state", "labels", "assignee"],
  ],
  [
    "create_issue",
    "POST",
    "/repos/{owner}/{repo}/issues",
    "Create an issue in a repository, with a title, a body, labels and assignees.",
    ["owner", "repo", "title", "body", "labels", "assignees"],
  ],
  [
    "add_issue_comment",
    "POST",
    "/repos/{owner}/{repo}/issues/{number}/comments",
    "Add a comment to an issue or a pull request.",
    ["owner", "repo", "number", "body"],
  ],
  [
    "list_commits",
    "GET",
    "/repos/{owner}/{repo}/commits",
    "List the commits of a branch, newest first.",
    ["owner", "repo", "sha", "author"],
  ],
  [
    "get_file_contents",
    "GET",
    "/repos/{owner}/{repo}/contents/{path}",
    "Get the contents of a file or directory of a repository at a ref.",
    ["owner", "repo", "path", "ref"],
  ],
  [
    "create_branch",
    "POST",
    "/repos/{owner}/{repo}/git/refs",
    "Create a branch from a commit.",
    ["owner", "repo", "ref", "sha"],
  ],
  [
    "search_code",
    "GET",
    "/search/code",
    "Search code across repositories with the code search syntax.",
    ["q"],
  ],
  [
    "list_workflow_runs",
    "GET",
    "/repos/{owner}/{repo}/actions/runs",
    "List the CI workflow runs of a repository and their status.",
    ["owner", "repo", "branch", "status"],
  ],
] as const;

const http = {
  type: "http",
  baseUrl: "https://api.example.com/",
  endpoints: restEndpoints.map(([name, method, path, description, params]) => ({
    name,
    method,
    path,
    description,
    inputSchema: {
      type: "object",
      properties: Object.fromEntries(
        params.map((p) => [p, { type: "string", description: `The ${p.replace(/_/g, " ")}` }]),
      ),
      required: params.filter((p) => path.includes(`{${p}}`)),
    },
  })),
};

const dir = mkdtempSync(join(tmpdir(), "switchboard-snapshot-"));
try {
  const config = {
    mcpServers: {
      everything: reference("server-everything"),
      filesystem: reference("server-filesystem", dir),
      memory: { ...reference("server-memory"), env: { MEMORY_FILE_PATH: join(dir, "memory.jsonl") } },
    },
    backends: {
      postgres: { type: "postgres", url: databaseUrl, readOnly: false },
      redis: {
        type: "redis",
        url: redisUrl,
        readOnly: false,
        allowCommands: [
          "set",
          "del",
          "expire",
          "persist",
          "incr",
          "hset",
          "hdel",
          "lpush",
          "rpush",
          "sadd",
          "srem",
          "zadd",
          "zrem",
        ],
      },
      files: { type: "filesystem", root: dir, readOnly: false },
      api: http,
    },
    gatewayTools: { health: false, metrics: false },
  };
  const configPath = join(dir, "switchboard.json");
  writeFileSync(configPath, JSON.stringify(config));
  const out = execFileSync(
    process.execPath,
    [join(ROOT, "dist/cli/main.js"), "tools", "--json", "--config", configPath],
    {
      encoding: "utf8",
      maxBuffer: 64 * 1024 * 1024,
    },
  );
  const { tools } = JSON.parse(out) as { tools: { name: string; _meta: Record<string, unknown> }[] };
  const servers: Record<string, unknown[]> = {};
  for (const tool of tools) {
    const server = String(tool._meta["switchboard/server"]);
    const { _meta, ...definition } = tool;
    const list = servers[server] ?? [];
    list.push({ ...definition, name: String(_meta["switchboard/tool"]) });
    servers[server] = list;
  }
  const file = join(ROOT, "bench/fixtures/tool-catalog.json");
  writeFileSync(file, `${JSON.stringify({ servers }, null, 1)}\n`);
  console.log(`${tools.length} tools of ${Object.keys(servers).length} servers written to ${file}`);
} finally {
  rmSync(dir, { recursive: true, force: true });
}
