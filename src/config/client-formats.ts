/**
 * The config files MCP clients write, read as Switchboard configs unchanged: Claude Desktop
 * (claude_desktop_config.json), Claude Code (.mcp.json), Cursor (.cursor/mcp.json), Cline
 * (cline_mcp_settings.json), Roo Code (mcp_settings.json, .roo/mcp.json), VS Code (.vscode/mcp.json)
 * and Windsurf (mcp_config.json). Their keys are mapped onto the schema's here, and only here: the
 * schema knows nothing of clients.
 *
 * - What has a meaning in a gateway is translated: VS Code's `servers` is `mcpServers`; `disabled` is
 *   `enabled: false`; `timeout` is `timeoutMs`, in the unit of the client that wrote it; Cline's
 *   `transportType` and `type: "streamableHttp"` are a `type`; Windsurf's `serverUrl` is `url`; Roo
 *   Code's `disabledTools` join `tools.exclude`; an `envFile` is read into `env`; a remote server
 *   written without a `type` gets one.
 * - What only means something to a client (an approval list, a debugger, signing in with OAuth) is
 *   dropped with one warning per key that names every place it appears and what to use instead.
 * - What Switchboard cannot honour and must not ignore (a sandbox) is an error.
 *
 * (Claude Desktop's app settings next to `mcpServers` are the schema's business: that file is the
 * format Switchboard's own is built on, see CLAUDE_DESKTOP_KEYS in schema.ts.)
 *
 * Any other unknown key reaches the schema and fails there: a misspelt Switchboard key must never pass
 * for a client's. This runs after interpolation, so that a type is inferred from the URL the server
 * will really use and `disabled: "${OFF}"` is read as the boolean it spells, and before validation,
 * whose messages are then given the paths the file has (`servers.x.serverUrl`, not `mcpServers.x.url`).
 * VS Code's inputs get their values before that (prepareClientDocument, client-variables.ts).
 */
import { readFileSync } from "node:fs";
import { basename, dirname, resolve as resolvePath } from "node:path";
import * as util from "node:util";
import { errnoAdvice } from "../core/errors.ts";
import { substituteInputs } from "./client-variables.ts";
import { type Environment, formatPath, isPlainObject, type PathSegment } from "./interpolate.ts";
import { type ConfigIssue, invalidConfig } from "./issue-messages.ts";
import { DECIMAL_NUMBER } from "./primitives.ts";

/** A key the config holds that only its client reads, dropped; `check` prints these, serve logs them. */
export interface ConfigWarning {
  /** The key, e.g. "autoApprove". */
  readonly key: string;
  /** Every place it appears, as formatted JSON paths. */
  readonly paths: readonly string[];
  /** One sentence: where, what it means to its client, and what Switchboard offers instead. */
  readonly message: string;
}

export interface ClientFormatOptions {
  /** The config file (its name tells which client wrote it), or "<config>". */
  readonly source: string;
  /** Where a relative `envFile` is found: the config file's folder. */
  readonly baseDir: string;
}

export interface NormalizedDocument {
  /** The document in Switchboard's own keys, for the schema. */
  readonly document: unknown;
  readonly warnings: readonly ConfigWarning[];
  /** A formatted path in `document`, as the file writes it (`mcpServers.x.url` -> `servers.x.serverUrl`). */
  originalPath(path: string): string;
}

type Client = "Claude Desktop" | "Claude Code" | "Cursor" | "Cline" | "Roo Code" | "VS Code" | "Windsurf";

/** The files each client writes, by name; `mcp.json` by the folder it sits in. */
const FILE_CLIENTS: Readonly<Record<string, Client>> = {
  "claude_desktop_config.json": "Claude Desktop",
  ".mcp.json": "Claude Code",
  "cline_mcp_settings.json": "Cline",
  "mcp_settings.json": "Roo Code",
  "mcp_config.json": "Windsurf",
};
const FOLDER_CLIENTS: Readonly<Record<string, Client>> = {
  ".cursor": "Cursor",
  ".roo": "Roo Code",
  ".vscode": "VS Code",
};

/** Keys only one client writes in a server entry: they say who wrote it, whatever the file's name. */
const SERVER_MARKERS: readonly (readonly [string, Client])[] = [
  ["autoApprove", "Cline"],
  ["transportType", "Cline"],
  ["alwaysAllow", "Roo Code"],
  ["watchPaths", "Roo Code"],
  ["disabledTools", "Roo Code"],
  ["serverUrl", "Windsurf"],
];

/** What `timeout: 1` means to the clients that have one: seconds to Cline and Roo Code, ms to Claude Code. */
const TIMEOUT_MS_PER_UNIT: Readonly<Partial<Record<Client, number>>> = {
  Cline: 1000,
  "Roo Code": 1000,
  "Claude Code": 1,
};

/** Cline's legacy `transportType`, and the spellings of a type Switchboard writes otherwise. */
const TRANSPORT_TYPES: Readonly<Record<string, "stdio" | "http" | "sse">> = {
  stdio: "stdio",
  sse: "sse",
  http: "http",
  streamableHttp: "http",
};

interface ClientOnlyKey {
  readonly client: string;
  /** What it is to that client, after "is …'s". */
  readonly means: string;
  /** What Switchboard does or offers instead. */
  readonly instead: string;
  /** Whether a value is the client's (default: any value); a key Switchboard shares is not always. */
  readonly isClients?: (value: unknown) => boolean;
}

const NO_APPROVAL =
  "no call waits for approval in Switchboard; limit who may call which tools with access rules";
const NO_OAUTH =
  'Switchboard signs in to servers itself: set auth: { type: "oauth" } on the server and run ' +
  "`switchboard login <server>`, or send a token in headers " +
  `(e.g. Authorization: "Bearer \${secret:env:TOKEN}")`;
const UNCONFINED = "servers run unconfined; run Switchboard in a container to confine them";

/** Keys of a server entry that mean something only to the client that wrote them. */
export const CLIENT_ONLY_KEYS: Readonly<Record<string, ClientOnlyKey>> = {
  autoApprove: { client: "Cline", means: "list of tools it calls without asking", instead: NO_APPROVAL },
  alwaysAllow: { client: "Roo Code", means: "list of tools it calls without asking", instead: NO_APPROVAL },
  watchPaths: {
    client: "Roo Code",
    means: "list of files whose change restarts the server",
    instead: "a server restarts when it exits, and config edits apply when the config reloads",
  },
  dev: {
    client: "VS Code",
    means: "development mode (restart on file changes, attach a debugger)",
    instead: "start the server under a debugger yourself if you need one",
  },
  sandbox: {
    client: "VS Code",
    means: "sandbox rules, which apply only with sandboxEnabled: true",
    instead: UNCONFINED,
  },
  sandboxEnabled: {
    client: "VS Code",
    means: "sandbox switch, here off",
    instead: UNCONFINED,
  },
  auth: {
    client: "Cursor",
    means: "OAuth client for signing in to the server",
    instead: NO_OAUTH,
    // Switchboard's own `auth` says its `type`; Cursor's (CLIENT_ID, CLIENT_SECRET, scopes) has none.
    isClients: (value) => !(isPlainObject(value) && typeof value.type === "string"),
  },
  oauth: { client: "Claude Code", means: "OAuth client for signing in to the server", instead: NO_OAUTH },
  headersHelper: {
    client: "Claude Code",
    means: "command whose output becomes request headers",
    instead: `put the header in headers, its value from \${secret:exec:COMMAND}`,
  },
};

/**
 * The step before secrets are fetched and `${…}` interpolated: VS Code's inputs get their values
 * (client-variables.ts), and the values of client-only keys are blanked, since nothing will read them:
 * a `${VAR}` or an input inside Cursor's `auth` need not be set for Switchboard. The keys stay, for
 * normalizeClientFormats to warn about. Throws GatewayError (config_variable_missing) for an input
 * without a value.
 */
export function prepareClientDocument(
  document: unknown,
  options: { readonly env: Environment; readonly source: string },
): unknown {
  return substituteInputs(withClientOnlyValuesBlanked(document), options);
}

function withClientOnlyValuesBlanked(document: unknown): unknown {
  if (!isPlainObject(document)) return document;
  const root: Record<string, unknown> = { ...document };
  for (const section of ["servers", "mcpServers"]) {
    const servers = root[section];
    if (!Object.hasOwn(root, section) || !isPlainObject(servers)) continue;
    root[section] = Object.fromEntries(
      Object.entries(servers).map(([name, entry]) => {
        if (!isPlainObject(entry)) return [name, entry];
        const blanked: Entry = { ...entry };
        // sandboxEnabled: true is refused, not ignored, so its value is read.
        for (const [key, about] of Object.entries(CLIENT_ONLY_KEYS)) {
          if (!Object.hasOwn(blanked, key) || key === "sandboxEnabled") continue;
          if (about.isClients?.(blanked[key]) === false) continue;
          blanked[key] = null;
        }
        return [name, blanked];
      }),
    );
  }
  return root;
}

/** Maps a client's file onto Switchboard's keys (see the header). Throws GatewayError (config_invalid). */
export function normalizeClientFormats(document: unknown, options: ClientFormatOptions): NormalizedDocument {
  if (!isPlainObject(document)) return { document, warnings: [], originalPath: (path) => path };
  const state: State = { issues: [], warnings: new Map(), renames: [], baseDir: options.baseDir };
  const root: Record<string, unknown> = { ...document };
  const fileClient = clientOfFile(options.source, root);

  let section = "mcpServers";
  if (Object.hasOwn(root, "servers")) {
    if (Object.hasOwn(root, "mcpServers")) {
      state.issues.push({
        path: "servers",
        message:
          'the file has both "servers" (VS Code\'s name) and "mcpServers": keep one list, under mcpServers',
      });
    } else {
      section = "servers";
      root.mcpServers = root.servers;
      delete root.servers;
      state.renames.push({ from: ["servers"], to: ["mcpServers"] });
    }
  }
  const servers = root.mcpServers;
  if (isPlainObject(servers)) {
    root.mcpServers = Object.fromEntries(
      Object.entries(servers).map(([name, entry]) => [
        name,
        isPlainObject(entry)
          ? normalizeServer(
              { ...entry },
              { from: [section, name], to: ["mcpServers", name] },
              fileClient,
              state,
            )
          : entry,
      ]),
    );
  }
  if (state.issues.length > 0) throw invalidConfig(options.source, state.issues);
  return {
    document: root,
    warnings: [...state.warnings].map(([key, { about, paths }]) => ({
      key,
      paths,
      message:
        `${key} (at ${paths.join(", ")}) is ${about.client}'s ${about.means}, which Switchboard ignores: ` +
        `${about.instead}.`,
    })),
    originalPath: pathMapper(state.renames),
  };
}

interface Rename {
  readonly from: readonly PathSegment[];
  readonly to: readonly PathSegment[];
}

interface State {
  readonly issues: ConfigIssue[];
  /** Client-only key -> what it is, and the formatted paths where it appears, in the order found. */
  readonly warnings: Map<string, { readonly about: ClientOnlyKey; readonly paths: string[] }>;
  readonly renames: Rename[];
  readonly baseDir: string;
}

type Entry = Record<string, unknown>;

function clientOfFile(source: string, root: Record<string, unknown>): Client | undefined {
  if (Object.hasOwn(root, "servers")) return "VS Code";
  const name = basename(source);
  return name === "mcp.json"
    ? ownValue(FOLDER_CLIENTS, basename(dirname(source)))
    : ownValue(FILE_CLIENTS, name);
}

/** A record's own value: a folder named "constructor" is no client. */
function ownValue<T>(record: Readonly<Record<string, T>>, key: string): T | undefined {
  return Object.hasOwn(record, key) ? record[key] : undefined;
}

function clientOfEntry(entry: Entry): Client | undefined {
  if (entry.type === "streamableHttp") return "Cline";
  return SERVER_MARKERS.find(([key]) => Object.hasOwn(entry, key))?.[1];
}

function normalizeServer(entry: Entry, at: Rename, fileClient: Client | undefined, state: State): Entry {
  const client = clientOfEntry(entry) ?? fileClient;
  const issue = (key: string, message: string) =>
    state.issues.push({ path: formatPath([...at.from, key]), message });

  if (entry.sandboxEnabled === true || entry.sandboxEnabled === "true") {
    issue(
      "sandboxEnabled",
      "VS Code runs this server in a sandbox, which Switchboard cannot do: remove sandboxEnabled and " +
        "sandbox to run it unconfined, or run Switchboard itself in a container",
    );
  }
  for (const [key, about] of Object.entries(CLIENT_ONLY_KEYS)) {
    if (!Object.hasOwn(entry, key) || about.isClients?.(entry[key]) === false) continue;
    const found = state.warnings.get(key) ?? { about, paths: [] };
    found.paths.push(formatPath([...at.from, key]));
    state.warnings.set(key, found);
    delete entry[key];
  }

  moveKey(entry, "serverUrl", "url", at, state);
  mapDisabled(entry, at, state);
  mapType(entry, client, issue);
  mapTimeout(entry, client, at, state);
  mapDisabledTools(entry, at, state);
  readEnvFile(entry, state, issue);
  return entry;
}

/** A client's name for a key becomes Switchboard's (Windsurf's `serverUrl` is `url`); both must agree. */
function moveKey(entry: Entry, from: string, to: string, at: Rename, state: State): void {
  if (!Object.hasOwn(entry, from)) return;
  if (Object.hasOwn(entry, to) && entry[to] !== entry[from]) {
    state.issues.push({
      path: formatPath([...at.from, from]),
      message: `both ${from} and ${to} are set, to different values: keep one`,
    });
    return;
  }
  entry[to] = entry[from];
  delete entry[from];
  state.renames.push({ from: [...at.from, from], to: [...at.to, to] });
}

function mapDisabled(entry: Entry, at: Rename, state: State): void {
  if (!Object.hasOwn(entry, "disabled")) return;
  const path = formatPath([...at.from, "disabled"]);
  const disabled = booleanOf(entry.disabled);
  if (disabled === undefined) {
    state.issues.push({ path, message: "expected true or false" });
    return;
  }
  if (Object.hasOwn(entry, "enabled") && booleanOf(entry.enabled) === disabled) {
    state.issues.push({
      path,
      message: `disabled: ${disabled} contradicts enabled: ${disabled}: keep one (enabled is Switchboard's)`,
    });
    return;
  }
  delete entry.disabled;
  entry.enabled = !disabled;
}

/**
 * Cline's legacy `transportType` and its "streamableHttp" become a `type`. A server with a URL and no
 * command but no type either is a remote one: SSE for Cline (its default), else SSE when the URL's
 * path ends in /sse (the legacy transport's usual endpoint), else Streamable HTTP.
 */
function mapType(entry: Entry, client: Client | undefined, issue: (key: string, message: string) => void) {
  if (Object.hasOwn(entry, "transportType")) {
    const type =
      typeof entry.transportType === "string" ? ownValue(TRANSPORT_TYPES, entry.transportType) : undefined;
    if (type === undefined) {
      issue("transportType", 'expected "stdio", "sse" or "http" (or write type: "stdio", "http" or "sse")');
      return;
    }
    // As in Cline, an explicit type wins over the legacy field.
    if (!Object.hasOwn(entry, "type")) entry.type = type;
    delete entry.transportType;
  }
  if (entry.type === "streamableHttp") entry.type = "http";
  if (Object.hasOwn(entry, "type") || Object.hasOwn(entry, "command") || typeof entry.url !== "string")
    return;
  entry.type = client === "Cline" || pathEndsInSse(entry.url) ? "sse" : "http";
}

function pathEndsInSse(url: string): boolean {
  return URL.canParse(url) && /\/sse\/?$/.test(new URL(url).pathname);
}

/** `timeout` in the unit of the client that wrote it; a client without one cannot say which it meant. */
function mapTimeout(entry: Entry, client: Client | undefined, at: Rename, state: State): void {
  if (!Object.hasOwn(entry, "timeout")) return;
  const unit = client === undefined ? undefined : ownValue(TIMEOUT_MS_PER_UNIT, client);
  const value = numberOf(entry.timeout);
  const problem =
    unit === undefined
      ? "the unit of timeout depends on the client that wrote the file (seconds in Cline and Roo Code, " +
        "milliseconds in Claude Code), and nothing here says which: write timeoutMs instead " +
        "(e.g. timeoutMs: 60000 for a minute)"
      : value === undefined
        ? `expected a number of ${unit === 1 ? "milliseconds" : "seconds"}`
        : Object.hasOwn(entry, "timeoutMs")
          ? "both timeout and timeoutMs are set: keep timeoutMs"
          : undefined;
  if (problem !== undefined || unit === undefined || value === undefined) {
    state.issues.push({ path: formatPath([...at.from, "timeout"]), message: problem ?? "" });
    return;
  }
  delete entry.timeout;
  entry.timeoutMs = Math.round(value * unit);
  state.renames.push({ from: [...at.from, "timeout"], to: [...at.to, "timeoutMs"] });
}

/** Roo Code's `disabledTools` are tools not offered: `tools.exclude`, by their own names. */
function mapDisabledTools(entry: Entry, at: Rename, state: State): void {
  if (!Object.hasOwn(entry, "disabledTools")) return;
  const names = entry.disabledTools;
  const tools = entry.tools ?? {};
  const path = formatPath([...at.from, "disabledTools"]);
  if (!Array.isArray(names) || !names.every((name) => typeof name === "string")) {
    state.issues.push({ path, message: "expected a list of tool names" });
    return;
  }
  if (!isPlainObject(tools) || (tools.exclude !== undefined && !Array.isArray(tools.exclude))) {
    state.issues.push({ path, message: "cannot be merged into tools.exclude, which is not a list" });
    return;
  }
  if (tools.exclude === undefined)
    state.renames.push({ from: [...at.from, "disabledTools"], to: [...at.to, "tools", "exclude"] });
  entry.tools = { ...tools, exclude: [...((tools.exclude as unknown[] | undefined) ?? []), ...names] };
  delete entry.disabledTools;
}

const ENV_FILE_ADVICE: Readonly<Record<string, string>> = {
  ENOENT: "it does not exist. Create it, or remove envFile",
  EISDIR: "it is a directory. Give the path of a file of NAME=value lines",
  EACCES: "permission denied. Make it readable by the user running Switchboard",
  EPERM: "permission denied. Make it readable by the user running Switchboard",
};

/**
 * VS Code's and Cursor's `envFile` (NAME=value lines) of a stdio server, read into its `env` when the
 * config loads; `env` wins where both set a variable. Relative to the config file's folder.
 */
function readEnvFile(entry: Entry, state: State, issue: (key: string, message: string) => void): void {
  if (!Object.hasOwn(entry, "envFile")) return;
  // A remote server has no environment: the schema reports the key as out of place there.
  if (entry.type !== "stdio" && entry.type !== undefined) return;
  const written = entry.envFile;
  if (typeof written !== "string" || written === "") {
    issue("envFile", "expected the path of a file of NAME=value lines");
    return;
  }
  if (typeof util.parseEnv !== "function") {
    issue(
      "envFile",
      "reading an envFile needs Node.js 20.12 or later: upgrade Node.js, or list the variables in env",
    );
    return;
  }
  const file = resolvePath(state.baseDir, written);
  let text: string;
  try {
    text = readFileSync(file, "utf8");
  } catch (error) {
    const reason =
      errnoAdvice(error, ENV_FILE_ADVICE) ?? (error instanceof Error ? error.message : String(error));
    issue("envFile", `cannot read ${file}: ${reason}`);
    return;
  }
  const fromFile = Object.entries(util.parseEnv(text)).filter(
    (pair): pair is [string, string] => typeof pair[1] === "string",
  );
  const env = entry.env ?? {};
  // Anything else is reported by the schema, at env.
  if (isPlainObject(env)) entry.env = { ...Object.fromEntries(fromFile), ...env };
  delete entry.envFile;
}

function booleanOf(value: unknown): boolean | undefined {
  if (typeof value === "boolean") return value;
  if (value === "true" || value === "false") return value === "true";
  return undefined;
}

function numberOf(value: unknown): number | undefined {
  const number = typeof value === "string" && DECIMAL_NUMBER.test(value) ? Number(value) : value;
  return typeof number === "number" && Number.isFinite(number) ? number : undefined;
}

/** Longest renamed prefix first, so that `mcpServers.x.url` maps before `mcpServers` does. */
function pathMapper(renames: readonly Rename[]): (path: string) => string {
  const pairs = renames
    .map(({ from, to }) => [formatPath(to), formatPath(from)] as const)
    .sort((a, b) => b[0].length - a[0].length);
  return (path) => {
    for (const [to, from] of pairs) {
      if (path === to || path.startsWith(`${to}.`) || path.startsWith(`${to}[`))
        return from + path.slice(to.length);
    }
    return path;
  };
}
