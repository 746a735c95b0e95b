/**
 * A built-in backend that exposes one folder as MCP tools: list, read, stat and search, plus write,
 * move and delete when `readOnly: false`.
 *
 * Every tool decides containment the same way, with `RootJail.locate` (root-jail.ts): a path that
 * leads outside the root at any level, through any link, is refused with one error, and what is
 * opened is verified to be what was checked. Listings and searches follow no link out either: a
 * listing names a link that leads outside (kind "link") without its target, size or anything else
 * about it, and a search skips it.
 */
import { type Dirent, constants as fsConstants, type Stats } from "node:fs";
import {
  type FileHandle,
  lstat,
  mkdir,
  readdir,
  realpath,
  rename,
  rm,
  rmdir,
  stat,
  unlink,
} from "node:fs/promises";
import { basename, dirname, extname, join, resolve } from "node:path";
import picomatch from "picomatch";
import { z } from "zod";
import { describeError, errorResult, GatewayError, InvalidArguments } from "../../core/errors.ts";
import type {
  Backend,
  BackendCatalog,
  BackendEvents,
  BackendState,
  CallContext,
  CallToolResult,
  GetPromptResult,
  HealthResult,
  ReadResourceResult,
  Tool,
  ToolCall,
} from "../../core/types.ts";
import type { Logger } from "../../observability/logger.ts";
import type { FilesystemBackendConfig } from "../builtin-config.ts";
import { noPrompt, noResource } from "../tools-only.ts";
import {
  type Located,
  notAFile,
  notFound,
  type OpenDir,
  OutsideRoot,
  type RelPath,
  RootJail,
} from "./root-jail.ts";

export type { FilesystemBackendConfig } from "../builtin-config.ts";
export { LEADS_OUTSIDE, OutsideRoot, RootJail } from "./root-jail.ts";

// A FIFO would block a read open forever; non-blocking opens return at once, then fstat refuses it.
const O_NONBLOCK = fsConstants.O_NONBLOCK ?? 0;

// ---------------------------------------------------------------------------------------------------
// Tools

const pathArg = (what: string) => z.string().describe(`${what}, relative to the root ("." is the root).`);

const listArgs = z.strictObject({ path: pathArg("The folder").default(".") });
const readArgs = z.strictObject({
  path: pathArg("The file"),
  offset: z.number().int().min(0).optional().describe("First byte to read. Default 0."),
  length: z.number().int().min(0).optional().describe("Bytes to read. Default: to the end of the file."),
  encoding: z
    .enum(["auto", "text", "base64"])
    .default("auto")
    .describe('"auto": text when the bytes are UTF-8, else base64.'),
});
const statArgs = z.strictObject({ path: pathArg("The file or folder") });
const searchArgs = z
  .strictObject({
    path: pathArg("The folder to search in").default("."),
    pattern: z
      .string()
      .optional()
      .describe(
        'A glob on paths relative to the root ("src/**/*.ts"); without "/" it matches file names ("*.md").',
      ),
    contains: z.string().min(1).optional().describe("Text the file must contain (files up to maxReadBytes)."),
    caseSensitive: z.boolean().default(false).describe("Match `contains` case-sensitively. Default false."),
    maxResults: z.number().int().min(1).optional().describe("At most this many matches (capped by config)."),
  })
  .refine((a) => a.pattern !== undefined || a.contains !== undefined, {
    error: 'pass "pattern", "contains" or both',
  });
const writeArgs = z.strictObject({
  path: pathArg("The file"),
  content: z.string().describe("The new content."),
  encoding: z.enum(["text", "base64"]).default("text").describe('"base64" for binary content.'),
  createDirs: z.boolean().default(false).describe("Create missing parent folders. Default false."),
  overwrite: z.boolean().default(true).describe("Replace an existing file. Default true."),
});
const moveArgs = z.strictObject({
  from: pathArg("The file or folder to move"),
  to: pathArg("The new path (its folder must exist)"),
  overwrite: z.boolean().default(false).describe("Replace an existing file at `to`. Default false."),
});
const deleteArgs = z.strictObject({
  path: pathArg("The file or folder"),
  recursive: z.boolean().default(false).describe("Delete a folder with everything in it. Default false."),
});

function toInputSchema(schema: z.ZodType): Tool["inputSchema"] {
  const { $schema: _dialect, ...json } = z.toJSONSchema(schema, { io: "input" });
  return json as Tool["inputSchema"];
}

const READ_ONLY = { readOnlyHint: true, destructiveHint: false, idempotentHint: true, openWorldHint: false };

function toolDefinitions(config: FilesystemBackendConfig): Tool[] {
  const tools: Tool[] = [
    {
      name: "list",
      description: `Lists a folder: names, kinds and sizes (at most ${config.maxListEntries} entries).`,
      inputSchema: toInputSchema(listArgs),
      annotations: READ_ONLY,
    },
    {
      name: "read",
      description:
        `Reads a file: text as is, binary as base64. At most ${config.maxReadBytes} bytes per call; ` +
        "read larger files in ranges with offset and length.",
      inputSchema: toInputSchema(readArgs),
      annotations: READ_ONLY,
    },
    {
      name: "stat",
      description: "Describes a file or folder: kind, size, modification time, permissions, link target.",
      inputSchema: toInputSchema(statArgs),
      annotations: READ_ONLY,
    },
    {
      name: "search",
      description:
        "Finds files by glob pattern and/or by text they contain, below a folder. " +
        `At most ${config.search.maxResults} matches; stops after ${config.search.maxFiles} files.`,
      inputSchema: toInputSchema(searchArgs),
      annotations: READ_ONLY,
    },
  ];
  if (!config.readOnly) {
    tools.push(
      {
        name: "write",
        description: `Writes a file (created or replaced), at most ${config.maxWriteBytes} bytes.`,
        inputSchema: toInputSchema(writeArgs),
        annotations: {
          readOnlyHint: false,
          destructiveHint: true,
          idempotentHint: true,
          openWorldHint: false,
        },
      },
      {
        name: "move",
        description: "Moves or renames a file or folder inside the root.",
        inputSchema: toInputSchema(moveArgs),
        annotations: {
          readOnlyHint: false,
          destructiveHint: true,
          idempotentHint: false,
          openWorldHint: false,
        },
      },
      {
        name: "delete",
        description: "Deletes a file, an empty folder, or a folder with its contents when recursive is true.",
        inputSchema: toInputSchema(deleteArgs),
        annotations: {
          readOnlyHint: false,
          destructiveHint: true,
          idempotentHint: true,
          openWorldHint: false,
        },
      },
    );
  }
  return tools;
}

const MIME: Readonly<Record<string, string>> = {
  ".png": "image/png",
  ".jpg": "image/jpeg",
  ".jpeg": "image/jpeg",
  ".gif": "image/gif",
  ".webp": "image/webp",
  ".svg": "image/svg+xml",
  ".pdf": "application/pdf",
  ".zip": "application/zip",
  ".gz": "application/gzip",
  ".wav": "audio/wav",
  ".mp3": "audio/mpeg",
};

function mimeOf(path: string): string {
  return MIME[extname(path).toLowerCase()] ?? "application/octet-stream";
}

function isUtf8Text(bytes: Buffer): boolean {
  if (bytes.includes(0)) return false;
  try {
    new TextDecoder("utf-8", { fatal: true }).decode(bytes);
    return true;
  } catch {
    return false;
  }
}

function kindOf(s: Stats): string {
  if (s.isFile()) return "file";
  if (s.isDirectory()) return "folder";
  if (s.isSymbolicLink()) return "link";
  return "other";
}

function text(message: string, structured?: Record<string, unknown>): CallToolResult {
  return {
    content: [{ type: "text", text: message }],
    ...(structured ? { structuredContent: structured } : {}),
  };
}

async function readRange(handle: FileHandle, offset: number, length: number): Promise<Buffer> {
  const buffer = Buffer.alloc(length);
  let filled = 0;
  while (filled < length) {
    const { bytesRead } = await handle.read(buffer, filled, length - filled, offset + filled);
    if (bytesRead === 0) break;
    filled += bytesRead;
  }
  return buffer.subarray(0, filled);
}

// ---------------------------------------------------------------------------------------------------
// The backend

export class FilesystemBackend implements Backend {
  readonly name: string;
  #state: BackendState = "stopped";
  readonly #config: FilesystemBackendConfig;
  readonly #rootPath: string;
  readonly #timeoutMs: number;
  readonly #log: Logger;
  readonly #catalog: BackendCatalog;
  readonly #owner: string;
  #jail: RootJail | undefined;
  #events: BackendEvents | undefined;

  constructor(
    name: string,
    config: FilesystemBackendConfig & { readonly timeoutMs?: number },
    logger: Logger,
  ) {
    this.name = name;
    this.#config = config;
    this.#rootPath = resolve(config.root);
    this.#timeoutMs = config.timeoutMs ?? 60_000;
    this.#log = logger.child({ server: name, backend: "filesystem" });
    this.#owner = `backend "${name}"`;
    this.#catalog = { tools: toolDefinitions(config), resources: [], resourceTemplates: [], prompts: [] };
  }

  get state(): BackendState {
    return this.#state;
  }

  async start(events: BackendEvents): Promise<void> {
    this.#events = events;
    try {
      await this.#root();
      this.#setState("up");
    } catch (error) {
      const reason = describeError(error);
      this.#log.error({ root: this.#rootPath, err: reason }, "filesystem root is not usable");
      this.#setState("down", reason);
    }
  }

  catalog(): BackendCatalog {
    return this.#catalog;
  }

  async callTool(call: ToolCall, ctx: CallContext): Promise<CallToolResult> {
    const timeout = AbortSignal.timeout(this.#timeoutMs);
    const signal = AbortSignal.any([ctx.signal, timeout]);
    try {
      const jail = await this.#root();
      switch (call.tool) {
        case "list":
          return await this.#list(jail, parse(listArgs, call));
        case "read":
          return await this.#read(jail, parse(readArgs, call));
        case "stat":
          return await this.#stat(jail, parse(statArgs, call));
        case "search":
          return await this.#search(jail, parse(searchArgs, call), signal);
        case "write":
          if (this.#config.readOnly) break;
          return await this.#write(jail, parse(writeArgs, call));
        case "move":
          if (this.#config.readOnly) break;
          return await this.#move(jail, parse(moveArgs, call));
        case "delete":
          if (this.#config.readOnly) break;
          return await this.#delete(jail, parse(deleteArgs, call));
      }
      throw new GatewayError(
        "unknown_tool",
        this.#config.readOnly && ["write", "move", "delete"].includes(call.tool)
          ? `Backend "${this.name}" is read-only, so it has no "${call.tool}" tool; set readOnly: false to allow changes.`
          : `Backend "${this.name}" has no tool "${call.tool}"; it offers ${this.#catalog.tools.map((t) => t.name).join(", ")}.`,
        { data: { server: this.name, tool: call.tool } },
      );
    } catch (error) {
      if (ctx.signal.aborted) {
        throw new GatewayError(
          "cancelled",
          `"${call.tool}" on backend "${this.name}" was cancelled by the client.`,
          {
            cause: error,
          },
        );
      }
      if (timeout.aborted) {
        throw new GatewayError(
          "timeout",
          `"${call.tool}" on backend "${this.name}" did not finish within ${this.#timeoutMs} ms; narrow the path or pattern.`,
          { cause: error },
        );
      }
      if (
        error instanceof GatewayError &&
        !["invalid_arguments", "unknown_tool", "backend_unavailable"].includes(error.code)
      ) {
        return errorResult(call.tool, error);
      }
      throw error;
    }
  }

  async readResource(uri: string): Promise<ReadResourceResult> {
    throw noResource(this.name, "filesystem", uri);
  }

  async getPrompt(name: string): Promise<GetPromptResult> {
    throw noPrompt(this.name, "filesystem", name);
  }

  async health(_signal?: AbortSignal): Promise<HealthResult> {
    const started = performance.now();
    try {
      await this.#root(true);
      this.#setState("up");
      return { status: "healthy", latencyMs: performance.now() - started };
    } catch (error) {
      // For operators: unlike a caller, they may see where the root is.
      return { status: "unhealthy", detail: `${describeError(error)} (root: ${this.#rootPath})` };
    }
  }

  async close(): Promise<void> {
    this.#setState("stopped");
  }

  /** The checked root; re-resolved until it works (it may be created after start). */
  async #root(recheck = false): Promise<RootJail> {
    if (this.#jail && !recheck) return this.#jail;
    let real: string;
    let info: Stats;
    try {
      real = await realpath(this.#rootPath);
      info = await stat(real);
    } catch (error) {
      // Callers are not told where the root is on the host; the log at start and health say it.
      const code = (error as NodeJS.ErrnoException).code;
      throw new GatewayError(
        "backend_unavailable",
        `The root folder of backend "${this.name}" cannot be used${code ? ` (${code})` : ""}. ` +
          "Create it or fix `root` in the config.",
        { data: { server: this.name }, cause: error },
      );
    }
    if (!info.isDirectory()) {
      throw new GatewayError(
        "backend_unavailable",
        `The root of backend "${this.name}" is not a folder; point \`root\` at a folder.`,
        { data: { server: this.name } },
      );
    }
    if (this.#jail?.root !== real) {
      this.#jail = new RootJail(real, this.#owner, {
        onRace: (path, what) => this.#log.warn({ path, what }, "refused a path that changed after its check"),
      });
    }
    if (this.#state === "down") this.#setState("up");
    return this.#jail;
  }

  // --- where paths lead ------------------------------------------------------------------------------

  /** Where the caller's path leads under the one rule; it must exist. */
  async #existing(jail: RootJail, given: unknown, argument = "path"): Promise<Located> {
    const located = await jail.locate(jail.parse(given, argument));
    if (!located.exists) throw notFound(located.path.given, jail.owner);
    return located;
  }

  /** The folder holding a located entry and its name, for operations on the entry itself. */
  #entry(jail: RootJail, located: Located): { dir: string; name: string } {
    const { dir, name, path } = located;
    if (name === undefined) {
      throw new GatewayError(
        "forbidden",
        `This operation cannot apply to the root of ${jail.owner} itself; name something inside it.`,
        { data: { path: path.given } },
      );
    }
    if (dir === undefined) throw notFound(path.given, jail.owner);
    return { dir, name };
  }

  /**
   * Where the link `name` in the listed folder leads, by the same rule as any path: its place
   * relative to the root when that is inside, or "outside" with nothing more about it.
   */
  async #linkTarget(
    jail: RootJail,
    folder: RelPath,
    name: string,
  ): Promise<{ target: string; exists: boolean } | "outside" | undefined> {
    const rel = folder.rel === "." ? name : `${folder.rel}/${name}`;
    try {
      const located = await jail.locate({ given: rel, rel, segments: [...folder.segments, name] });
      return { target: jail.relative(located.real), exists: located.exists };
    } catch (error) {
      return error instanceof OutsideRoot ? "outside" : undefined;
    }
  }

  // --- read-only tools -----------------------------------------------------------------------------

  async #list(jail: RootJail, args: z.output<typeof listArgs>): Promise<CallToolResult> {
    const { path, real } = await this.#existing(jail, args.path);
    const dir = await jail.openDir(real, path.given);
    try {
      const dirents = await readdir(dir.entry(""), { withFileTypes: true });
      dirents.sort(
        (a, b) => Number(b.isDirectory()) - Number(a.isDirectory()) || a.name.localeCompare(b.name),
      );
      const limit = this.#config.maxListEntries;
      const entries: Record<string, unknown>[] = [];
      const lines: string[] = [];
      for (const dirent of dirents.slice(0, limit)) {
        const info = await lstat(dir.entry(dirent.name)).catch(() => undefined);
        const kind = info ? kindOf(info) : "other";
        const entry: Record<string, unknown> = { name: dirent.name, kind };
        let line = kind === "folder" ? `${dirent.name}/` : `${dirent.name}  (${kind})`;
        if (info?.isFile()) {
          entry.size = info.size;
          line = `${dirent.name}  (${info.size} bytes)`;
        }
        if (info?.isSymbolicLink()) {
          const led = await this.#linkTarget(jail, path, dirent.name);
          if (led === "outside") {
            // Named, as an entry of a folder inside the root; what it points to is not described.
            entry.outside = true;
            line = `${dirent.name}  (link leading outside the root; no tool follows it)`;
          } else if (led) {
            entry.target = led.target;
            if (!led.exists) entry.broken = true;
            line = `${dirent.name} -> ${led.target}${led.exists ? "" : " (missing)"}`;
          }
        }
        entries.push(entry);
        lines.push(line);
      }
      const truncated = dirents.length > limit;
      const heading = `${path.rel === "." ? "The root" : `"${path.rel}"`} holds ${dirents.length} entries`;
      const more = truncated ? `\n… ${dirents.length - limit} more not shown (maxListEntries ${limit}).` : "";
      return text(`${heading}${dirents.length > 0 ? ":\n" : "."}${lines.join("\n")}${more}`, {
        path: path.rel,
        entries,
        truncated,
      });
    } finally {
      await dir.handle.close();
    }
  }

  async #read(jail: RootJail, args: z.output<typeof readArgs>): Promise<CallToolResult> {
    const { path, real } = await this.#existing(jail, args.path);
    const handle = await jail.openFile(real, path.given, fsConstants.O_RDONLY | O_NONBLOCK);
    try {
      const info = await handle.stat();
      if (!info.isFile()) throw notAFile(path.given, info.isDirectory() ? "a folder" : `a ${kindOf(info)}`);
      const offset = args.offset ?? 0;
      const rest = Math.max(0, info.size - offset);
      const length = Math.min(args.length ?? rest, rest);
      const max = this.#config.maxReadBytes;
      if (length > max) {
        throw new GatewayError(
          "backend_error",
          `"${path.given}" has ${rest} bytes ${offset > 0 ? `from offset ${offset}` : ""}`.trimEnd() +
            `, more than maxReadBytes (${max}); read it in parts with offset and length (at most ${max} bytes each).`,
          { data: { path: path.given, size: info.size, maxReadBytes: max } },
        );
      }
      const bytes = await readRange(handle, offset, length);
      const ranged = offset > 0 || bytes.length < info.size;
      const note = ranged ? `\n(bytes ${offset}–${offset + bytes.length} of ${info.size})` : "";
      const asText = args.encoding === "text" || (args.encoding === "auto" && isUtf8Text(bytes));
      if (asText) {
        const content: CallToolResult["content"] = [{ type: "text", text: bytes.toString("utf8") }];
        if (ranged) content.push({ type: "text", text: note.trim() });
        return { content };
      }
      const mimeType = mimeOf(real);
      const data = bytes.toString("base64");
      return {
        content: [
          {
            type: "text",
            text: `"${path.rel}" is binary (${mimeType}, ${bytes.length} bytes), as base64 below.${note}`,
          },
          mimeType.startsWith("image/")
            ? { type: "image", data, mimeType }
            : { type: "resource", resource: { uri: `file:///${encodeURI(path.rel)}`, mimeType, blob: data } },
        ],
      };
    } finally {
      await handle.close();
    }
  }

  /** Describes the entry as named (a link as a link), once the path passed the one rule. */
  async #stat(jail: RootJail, args: z.output<typeof statArgs>): Promise<CallToolResult> {
    const located = await jail.locate(jail.parse(args.path));
    const { path } = located;
    let info: Stats;
    if (located.name === undefined) {
      info = await stat(jail.root);
    } else {
      const { dir, name } = this.#entry(jail, located);
      const opened = await jail.openDir(dir, path.given);
      try {
        info = await lstat(opened.entry(name)).catch((error: unknown) => {
          throw jail.fsError(error, path.given);
        });
      } finally {
        await opened.handle.close();
      }
    }
    const result: Record<string, unknown> = {
      path: path.rel,
      kind: kindOf(info),
      size: info.size,
      modified: info.mtime.toISOString(),
      mode: `0${(info.mode & 0o777).toString(8)}`,
    };
    if (info.isSymbolicLink()) {
      result.target = jail.relative(located.real);
      if (!located.exists) result.broken = true;
    }
    const lines = Object.entries(result).map(([k, v]) => `${k}: ${v}`);
    return text(lines.join("\n"), result);
  }

  async #search(
    jail: RootJail,
    args: z.output<typeof searchArgs>,
    signal: AbortSignal,
  ): Promise<CallToolResult> {
    const { path, real: start } = await this.#existing(jail, args.path);
    if (!(await stat(start)).isDirectory()) {
      throw new GatewayError(
        "backend_error",
        `"${path.given}" is a file; search in a folder (or "." for the root).`,
        {
          data: { path: path.given, reason: "not_a_folder" },
        },
      );
    }
    const { search } = this.#config;
    const maxResults = Math.min(args.maxResults ?? search.maxResults, search.maxResults);
    const matcher =
      args.pattern === undefined
        ? undefined
        : picomatch(args.pattern, { dot: true, basename: !args.pattern.includes("/") });
    const needle =
      args.contains === undefined
        ? undefined
        : args.caseSensitive
          ? args.contains
          : args.contains.toLowerCase();
    const skip = new Set(search.skipDirs);
    const matches: { path: string; lines?: { line: number; text: string }[] }[] = [];
    let scanned = 0;
    let stopped: string | undefined;
    const queue = [start];
    walk: while (queue.length > 0) {
      const dirReal = queue.shift() as string;
      signal.throwIfAborted();
      let dir: OpenDir;
      try {
        dir = await jail.openDir(dirReal, jail.relative(dirReal));
      } catch {
        // A folder that vanished or changed mid-walk is skipped; one that leads outside is never entered.
        continue;
      }
      let dirents: Dirent[];
      try {
        dirents = await readdir(dir.entry(""), { withFileTypes: true });
      } finally {
        await dir.handle.close();
      }
      dirents.sort((a, b) => a.name.localeCompare(b.name));
      for (const dirent of dirents) {
        const real = join(dirReal, dirent.name);
        // Links are not followed into folders (no loops, no escapes).
        if (dirent.isDirectory()) {
          if (!skip.has(dirent.name)) queue.push(real);
          continue;
        }
        const rel = jail.relative(real);
        let fileReal = real;
        if (dirent.isSymbolicLink()) {
          // The one rule decides, as for a path the caller gives: a link that leads outside (or
          // nowhere) is skipped without a word; one to a file inside counts under its own name.
          const led = await jail.locate({ given: rel, rel, segments: rel.split("/") }).catch(() => undefined);
          if (!led?.exists) continue;
          if (!(await stat(led.real).catch(() => undefined))?.isFile()) continue;
          fileReal = led.real;
        } else if (!dirent.isFile()) {
          continue;
        }
        if (++scanned > search.maxFiles) {
          stopped = `stopped after looking at ${search.maxFiles} files (search.maxFiles); search a narrower folder`;
          break walk;
        }
        if (matcher && !matcher(rel)) continue;
        if (needle !== undefined) {
          const lines = await this.#grep(jail, fileReal, rel, needle, args.caseSensitive);
          if (lines.length === 0) continue;
          matches.push({ path: rel, lines });
        } else {
          matches.push({ path: rel });
        }
        if (matches.length >= maxResults) {
          stopped = `showing the first ${maxResults} matches; narrow the pattern or raise maxResults`;
          break walk;
        }
      }
    }
    const lines = matches.map((m) =>
      m.lines ? [m.path, ...m.lines.map((l) => `  ${l.line}: ${l.text}`)].join("\n") : m.path,
    );
    const heading = matches.length === 0 ? "No matches." : `${matches.length} match(es):`;
    return text([heading, ...lines, ...(stopped ? [`(${stopped})`] : [])].join("\n"), {
      matches,
      truncated: stopped !== undefined,
    });
  }

  /** Up to three matching lines of a text file no larger than maxReadBytes; binaries never match. */
  async #grep(jail: RootJail, real: string, rel: string, needle: string, caseSensitive: boolean) {
    let handle: FileHandle;
    try {
      handle = await jail.openFile(real, rel, fsConstants.O_RDONLY | O_NONBLOCK);
    } catch {
      return [];
    }
    try {
      const info = await handle.stat();
      if (!info.isFile() || info.size > this.#config.maxReadBytes) return [];
      const bytes = await readRange(handle, 0, info.size);
      if (bytes.subarray(0, 8192).includes(0)) return [];
      const found: { line: number; text: string }[] = [];
      const lines = bytes.toString("utf8").split("\n");
      for (let i = 0; i < lines.length && found.length < 3; i++) {
        const line = lines[i] as string;
        if ((caseSensitive ? line : line.toLowerCase()).includes(needle)) {
          found.push({ line: i + 1, text: line.length > 200 ? `${line.slice(0, 200)}…` : line });
        }
      }
      return found;
    } finally {
      await handle.close();
    }
  }

  // --- write tools ---------------------------------------------------------------------------------

  async #write(jail: RootJail, args: z.output<typeof writeArgs>): Promise<CallToolResult> {
    const path = jail.parse(args.path);
    const data =
      args.encoding === "base64" ? Buffer.from(args.content, "base64") : Buffer.from(args.content, "utf8");
    if (data.length > this.#config.maxWriteBytes) {
      throw new GatewayError(
        "backend_error",
        `Writing ${data.length} bytes to "${path.given}" exceeds maxWriteBytes (${this.#config.maxWriteBytes}); write less.`,
        { data: { path: path.given, maxWriteBytes: this.#config.maxWriteBytes } },
      );
    }
    if (args.createDirs) await this.#makeParents(jail, path);
    const located = await jail.locate(path);
    const folderMissing = () =>
      new GatewayError(
        "backend_error",
        `The folder of "${path.given}" does not exist in ${this.#owner}; pass createDirs: true to create it.`,
        { data: { path: path.given, reason: "not_found" } },
      );
    try {
      this.#entry(jail, located);
    } catch (error) {
      if (error instanceof GatewayError && error.data.reason === "not_found") throw folderMissing();
      throw error;
    }
    if (located.exists && !args.overwrite) {
      throw new GatewayError(
        "backend_error",
        `"${path.given}" already exists; pass overwrite: true to replace it.`,
        {
          data: { path: path.given, reason: "exists" },
        },
      );
    }
    // A link that stays inside is written through: its target is what `located.real` names.
    let handle: FileHandle;
    if (located.exists) {
      // No O_TRUNC: the file is emptied only after it is verified to be the one that was checked.
      handle = await jail.openFile(located.real, path.given, fsConstants.O_WRONLY | O_NONBLOCK);
      const info = await handle.stat();
      if (!info.isFile()) {
        await handle.close();
        throw notAFile(path.given, info.isDirectory() ? "a folder" : `a ${kindOf(info)}`);
      }
      await handle.truncate(0);
    } else {
      handle = await jail
        .openFile(located.real, path.given, fsConstants.O_WRONLY, true)
        .catch((error: unknown) => {
          if (error instanceof GatewayError && error.data.reason === "not_found") throw folderMissing();
          throw error;
        });
    }
    try {
      await handle.writeFile(data);
    } finally {
      await handle.close();
    }
    return text(`Wrote ${data.length} bytes to "${path.rel}" (${located.exists ? "replaced" : "created"}).`, {
      path: path.rel,
      bytes: data.length,
      created: !located.exists,
    });
  }

  /** Creates missing folders one at a time, each located by the one rule and made through its verified parent. */
  async #makeParents(jail: RootJail, path: RelPath): Promise<void> {
    for (let depth = 1; depth < path.segments.length; depth++) {
      const segments = path.segments.slice(0, depth);
      const located = await jail.locate({ given: path.given, rel: segments.join("/"), segments });
      if (located.exists) continue;
      const dir = await jail.openDir(dirname(located.real), path.given);
      try {
        await mkdir(dir.entry(basename(located.real))).catch((error: NodeJS.ErrnoException) => {
          if (error.code !== "EEXIST") throw jail.fsError(error, path.given);
        });
      } finally {
        await dir.handle.close();
      }
    }
  }

  async #move(jail: RootJail, args: z.output<typeof moveArgs>): Promise<CallToolResult> {
    const fromLocated = await jail.locate(jail.parse(args.from, "from"));
    const toLocated = await jail.locate(jail.parse(args.to, "to"));
    const from = fromLocated.path;
    const to = toLocated.path;
    const source = this.#entry(jail, fromLocated);
    const target = this.#entry(jail, toLocated);
    const sourceDir = await jail.openDir(source.dir, from.given);
    try {
      const targetDir = await jail.openDir(target.dir, to.given);
      try {
        await lstat(sourceDir.entry(source.name)).catch((error: unknown) => {
          throw jail.fsError(error, from.given);
        });
        const existing = await lstat(targetDir.entry(target.name)).catch(() => undefined);
        if (existing && !args.overwrite) {
          throw new GatewayError(
            "backend_error",
            `"${to.given}" already exists; pass overwrite: true to replace it.`,
            {
              data: { path: to.given, reason: "exists" },
            },
          );
        }
        await rename(sourceDir.entry(source.name), targetDir.entry(target.name)).catch(
          (error: NodeJS.ErrnoException) => {
            if (error.code === "EINVAL") {
              throw new GatewayError(
                "backend_error",
                `"${from.given}" cannot be moved into itself ("${to.given}").`,
                {
                  data: { from: from.given, to: to.given },
                },
              );
            }
            throw jail.fsError(error, from.given);
          },
        );
      } finally {
        await targetDir.handle.close();
      }
    } finally {
      await sourceDir.handle.close();
    }
    return text(`Moved "${from.rel}" to "${to.rel}".`, { from: from.rel, to: to.rel });
  }

  async #delete(jail: RootJail, args: z.output<typeof deleteArgs>): Promise<CallToolResult> {
    const located = await jail.locate(jail.parse(args.path));
    const { path } = located;
    const { dir, name } = this.#entry(jail, located);
    const opened = await jail.openDir(dir, path.given);
    let kind: string;
    try {
      const entry = opened.entry(name);
      const info = await lstat(entry).catch((error: unknown) => {
        throw jail.fsError(error, path.given);
      });
      kind = kindOf(info);
      // A link is removed itself; what it points to is never touched.
      if (!info.isDirectory()) {
        await unlink(entry);
      } else if (args.recursive) {
        await rm(entry, { recursive: true });
      } else {
        await rmdir(entry).catch((error: NodeJS.ErrnoException) => {
          if (error.code === "ENOTEMPTY" || error.code === "EEXIST") {
            throw new GatewayError(
              "backend_error",
              `Folder "${path.given}" is not empty; pass recursive: true to delete it with its contents.`,
              {
                data: { path: path.given, reason: "not_empty" },
              },
            );
          }
          throw jail.fsError(error, path.given);
        });
      }
    } finally {
      await opened.handle.close();
    }
    return text(`Deleted ${kind} "${path.rel}".`, { path: path.rel, kind });
  }

  #setState(state: BackendState, reason?: string): void {
    if (this.#state === state) return;
    this.#state = state;
    this.#events?.state(state, reason);
  }
}

function parse<T extends z.ZodType>(schema: T, call: ToolCall): z.output<T> {
  const parsed = schema.safeParse(call.args);
  if (parsed.success) return parsed.data;
  throw new InvalidArguments(`Invalid arguments for "${call.tool}": ${z.prettifyError(parsed.error)}`, {
    tool: call.tool,
  });
}

export function createFilesystemBackend(
  name: string,
  config: FilesystemBackendConfig & { readonly timeoutMs?: number },
  logger: Logger,
): FilesystemBackend {
  return new FilesystemBackend(name, config, logger);
}
