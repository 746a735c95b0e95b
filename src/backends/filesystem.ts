/**
 * A built-in backend that exposes one folder as MCP tools: list, read, stat and search, plus write,
 * move and delete when `readOnly: false`.
 *
 * Containment is decided on real paths, never on the text of a path: the path is resolved with
 * realpath and must land under the real root. Text checks only turn away forms that have no
 * business in a relative path (absolute, "..", NUL, backslashes, drive letters, URL encoding) with
 * a clearer message than "outside the root" would give.
 *
 * A check is only as good as its use, so operations never go back to the path text after the
 * check: the checked parent folder is opened (O_DIRECTORY | O_NOFOLLOW) and verified through
 * /proc/self/fd, and the final name is reached through that open folder
 * (`/proc/self/fd/<fd>/<name>`, openat in effect) with O_NOFOLLOW. A folder swapped for a symlink
 * between check and use then either fails to open or shows its real location, which is refused.
 * Where /proc is missing, the opened file's device and inode must match the checked path's, and
 * that path's realpath must still be inside.
 */
import { type Dirent, existsSync, constants as fsConstants, type Stats } from "node:fs";
import {
  type FileHandle,
  lstat,
  mkdir,
  open,
  readdir,
  readlink,
  realpath,
  rename,
  rm,
  rmdir,
  stat,
  unlink,
} from "node:fs/promises";
import { basename, dirname, extname, join, resolve, sep } from "node:path";
import picomatch from "picomatch";
import { z } from "zod";
import { describeError, errorResult, GatewayError, InvalidArguments } from "../core/errors.ts";
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
} from "../core/types.ts";
import type { Logger } from "../observability/logger.ts";
import type { FilesystemBackendConfig } from "./builtin-config.ts";
import { noPrompt, noResource } from "./tools-only.ts";

export type { FilesystemBackendConfig } from "./builtin-config.ts";

// ---------------------------------------------------------------------------------------------------
// Containment

const PROC_FD = "/proc/self/fd";
const O_NOFOLLOW = fsConstants.O_NOFOLLOW ?? 0;
const O_DIRECTORY = fsConstants.O_DIRECTORY ?? 0;
// A FIFO would block a read open forever; non-blocking opens return at once, then fstat refuses it.
const O_NONBLOCK = fsConstants.O_NONBLOCK ?? 0;

/** A path refused because it is, or leads, outside the root. */
export class OutsideRoot extends GatewayError {
  constructor(path: string, owner: string, why: string) {
    super(
      "forbidden",
      `Path ${shown(path)} is outside the root of ${owner}: ${why}. Use a path relative to the root ` +
        '(like "notes/todo.md") that stays inside it.',
      { data: { path, reason: why } },
    );
    this.name = "OutsideRoot";
  }
}

/** A caller's path as messages show it: quoted, control characters escaped, long ones cut. */
function shown(path: string): string {
  return JSON.stringify(path.length > 200 ? `${path.slice(0, 200)}…` : path);
}

function notFound(path: string, owner: string): GatewayError {
  return new GatewayError(
    "backend_error",
    `"${path}" does not exist under the root of ${owner}; list its folder to see what is there.`,
    { data: { path, reason: "not_found" } },
  );
}

/** A path as the caller wrote it, checked for form, split into segments under the root. */
export interface RelPath {
  /** As given, for messages. */
  readonly given: string;
  /** Normalized, "/"-separated, "." for the root itself. */
  readonly rel: string;
  readonly segments: readonly string[];
}

/** A folder opened and verified to be inside the root; operations reach names through it. */
interface OpenDir {
  readonly handle: FileHandle;
  readonly real: string;
  /** How to name an entry of this folder without going back to the path text. */
  entry(name: string): string;
}

/**
 * The root of one filesystem backend and every check against it. Exported for tests, which drive
 * check and use separately to prove that a swap in between is caught.
 */
export class RootJail {
  readonly root: string;
  readonly owner: string;
  readonly #useProc: boolean;

  /** `root` must already be a real path (no symlinks), as `realpath` returns it. */
  constructor(root: string, owner: string, options: { useProcFd?: boolean } = {}) {
    this.root = root;
    this.owner = owner;
    this.#useProc = options.useProcFd ?? existsSync(PROC_FD);
  }

  /** Checks the text of a path; never touches the filesystem. */
  parse(given: unknown, argument = "path"): RelPath {
    if (typeof given !== "string") {
      throw new InvalidArguments(`Argument "${argument}" must be a string path relative to the root.`);
    }
    const refuse = (why: string): never => {
      throw new OutsideRoot(given, this.owner, why);
    };
    if (given.length > 4096) refuse("it is longer than 4096 characters");
    if (given.includes("\0")) refuse("it contains a NUL byte");
    if (given.includes("\\")) refuse('it contains a backslash (use "/" between folders)');
    if (/%(2e|2f|5c|00)/i.test(given))
      refuse("it looks URL-encoded (%2e, %2f, %5c or %00); send the plain path");
    if (/^[a-z]:/i.test(given)) refuse("it starts with a Windows drive letter");
    if (/^[a-z][a-z0-9+.-]*:\/\//i.test(given)) refuse("it is a URL, not a path");
    if (given.startsWith("/")) refuse("it is absolute; paths are relative to the root");
    const segments = given.split("/").filter((s) => s !== "" && s !== ".");
    if (segments.includes("..")) refuse('it contains ".."');
    return { given, rel: segments.length === 0 ? "." : segments.join("/"), segments };
  }

  isInside(real: string): boolean {
    if (real === this.root) return true;
    const prefix = this.root.endsWith(sep) ? this.root : `${this.root}${sep}`;
    return real.startsWith(prefix);
  }

  /** Relative form of a real path inside the root, for results. */
  relative(real: string): string {
    if (real === this.root) return ".";
    const prefix = this.root.endsWith(sep) ? this.root : `${this.root}${sep}`;
    return real.slice(prefix.length).split(sep).join("/");
  }

  /** The real path of an existing file or folder, following symlinks, which must stay inside. */
  async real(path: RelPath): Promise<string> {
    let real: string;
    try {
      real = await realpath(join(this.root, ...path.segments));
    } catch (error) {
      throw this.fsError(error, path.given);
    }
    if (!this.isInside(real))
      throw new OutsideRoot(path.given, this.owner, "it leads outside through a symbolic link");
    return real;
  }

  /**
   * The real parent folder of a path and its final name, not following the final name: for
   * operations on the entry itself (stat of a link, move, delete, create).
   */
  async parent(path: RelPath): Promise<{ dir: string; name: string }> {
    const name = path.segments[path.segments.length - 1];
    if (name === undefined) {
      const message = `This operation cannot apply to the root of ${this.owner} itself; name something inside it.`;
      throw new GatewayError("forbidden", message, { data: { path: path.given } });
    }
    const dir = await this.real({ given: path.given, rel: "", segments: path.segments.slice(0, -1) });
    return { dir, name };
  }

  /** Opens a checked real folder and verifies what was opened is still inside. */
  async openDir(real: string, given: string): Promise<OpenDir> {
    let handle: FileHandle;
    try {
      handle = await open(real, fsConstants.O_RDONLY | O_DIRECTORY | O_NOFOLLOW);
    } catch (error) {
      throw this.fsError(error, given);
    }
    try {
      await this.#verify(handle, real, given);
    } catch (error) {
      await handle.close();
      throw error;
    }
    const via = this.#useProc ? `${PROC_FD}/${handle.fd}` : real;
    return { handle, real, entry: (name) => `${via}/${name}` };
  }

  /**
   * Opens a checked real file through its verified folder, never following a symlink at the last
   * step, then verifies the opened file is inside. `create` makes a new file (O_EXCL).
   */
  async openFile(real: string, given: string, flags: number, create = false): Promise<FileHandle> {
    if (real === this.root) throw notAFile(given, "the root folder");
    const dir = await this.openDir(dirname(real), given);
    try {
      let handle: FileHandle;
      try {
        handle = await open(
          dir.entry(basename(real)),
          flags | O_NOFOLLOW | (create ? fsConstants.O_CREAT | fsConstants.O_EXCL : 0),
          0o644,
        );
      } catch (error) {
        throw this.fsError(error, given);
      }
      try {
        await this.#verify(handle, real, given);
      } catch (error) {
        await handle.close();
        throw error;
      }
      return handle;
    } finally {
      await dir.handle.close();
    }
  }

  async #verify(handle: FileHandle, expected: string, given: string): Promise<void> {
    if (this.#useProc) {
      const actual = await readlink(`${PROC_FD}/${handle.fd}`);
      if (this.isInside(actual)) return;
      throw new OutsideRoot(
        given,
        this.owner,
        "a folder on its way was replaced by a link leading outside while it was being opened",
      );
    }
    const [opened, checked] = await Promise.all([handle.stat(), stat(expected).catch(() => undefined)]);
    if (
      checked &&
      opened.dev === checked.dev &&
      opened.ino === checked.ino &&
      this.isInside(await realpath(expected))
    )
      return;
    throw new OutsideRoot(given, this.owner, "it changed while it was being opened");
  }

  /** A filesystem error as a message about the caller's path, never showing real paths. */
  fsError(error: unknown, given: string): GatewayError {
    const code = (error as NodeJS.ErrnoException).code;
    if (error instanceof GatewayError) return error;
    if (code === "ENOENT") return notFound(given, this.owner);
    if (code === "ELOOP") {
      return new OutsideRoot(
        given,
        this.owner,
        "it is (or became) a symbolic link where a real file or folder was checked",
      );
    }
    if (code === "EISDIR") return notAFile(given, "a folder");
    if (code === "ENOTDIR") {
      return new GatewayError(
        "backend_error",
        `"${given}" is, or goes through, a file where a folder was expected in ${this.owner}; check the path.`,
        {
          data: { path: given, reason: "not_a_folder" },
        },
      );
    }
    if (code === "EACCES" || code === "EPERM") {
      return new GatewayError(
        "backend_error",
        `Permission denied for "${given}" in ${this.owner}; the gateway's user may not access it.`,
        {
          data: { path: given, reason: "permission" },
        },
      );
    }
    // The code only: Node's message names the real path (or a /proc path), which is not the caller's business.
    const what = code ?? describeError(error);
    return new GatewayError(
      "backend_error",
      `"${given}" in ${this.owner} failed (${what}); try again or check the path.`,
      {
        data: { path: given },
        cause: error,
      },
    );
  }
}

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
      return { status: "unhealthy", detail: describeError(error) };
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
      throw new GatewayError(
        "backend_unavailable",
        `The root folder of backend "${this.name}" (${this.#rootPath}) cannot be used: ${describeError(error)}. ` +
          "Create it or fix `root` in the config.",
        { data: { server: this.name }, cause: error },
      );
    }
    if (!info.isDirectory()) {
      throw new GatewayError(
        "backend_unavailable",
        `The root of backend "${this.name}" (${this.#rootPath}) is not a folder; point \`root\` at a folder.`,
        { data: { server: this.name } },
      );
    }
    if (this.#jail?.root !== real) this.#jail = new RootJail(real, this.#owner);
    if (this.#state === "down") this.#setState("up");
    return this.#jail;
  }

  // --- read-only tools -----------------------------------------------------------------------------

  async #list(jail: RootJail, args: z.output<typeof listArgs>): Promise<CallToolResult> {
    const path = jail.parse(args.path);
    const real = await jail.real(path);
    const dir = await jail.openDir(real, path.given);
    try {
      const dirents = await readdir(dir.entry(""), { withFileTypes: true });
      dirents.sort(
        (a, b) => Number(b.isDirectory()) - Number(a.isDirectory()) || a.name.localeCompare(b.name),
      );
      const limit = this.#config.maxListEntries;
      const entries: Record<string, unknown>[] = [];
      for (const dirent of dirents.slice(0, limit)) {
        const info = await lstat(dir.entry(dirent.name)).catch(() => undefined);
        const kind = info ? kindOf(info) : "other";
        const entry: Record<string, unknown> = { name: dirent.name, kind };
        if (info?.isFile()) entry.size = info.size;
        if (info?.isSymbolicLink()) entry.target = await this.#linkTarget(jail, join(real, dirent.name));
        entries.push(entry);
      }
      const truncated = dirents.length > limit;
      const lines = entries.map((e) => {
        if (e.kind === "folder") return `${e.name}/`;
        if (e.kind === "link") return `${e.name} -> ${e.target}`;
        return e.kind === "file" ? `${e.name}  (${e.size} bytes)` : `${e.name}  (${e.kind})`;
      });
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

  /** Where a link points, said without revealing paths outside the root. */
  async #linkTarget(jail: RootJail, linkPath: string): Promise<string> {
    try {
      const real = await realpath(linkPath);
      return jail.isInside(real) ? jail.relative(real) : "(outside the root)";
    } catch {
      return "(broken link)";
    }
  }

  async #read(jail: RootJail, args: z.output<typeof readArgs>): Promise<CallToolResult> {
    const path = jail.parse(args.path);
    const real = await jail.real(path);
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

  async #stat(jail: RootJail, args: z.output<typeof statArgs>): Promise<CallToolResult> {
    const path = jail.parse(args.path);
    let info: Stats;
    let entryPath: string;
    if (path.segments.length === 0) {
      entryPath = jail.root;
      info = await stat(jail.root);
    } else {
      const { dir, name } = await jail.parent(path);
      const opened = await jail.openDir(dir, path.given);
      try {
        info = await lstat(opened.entry(name)).catch((error: unknown) => {
          throw jail.fsError(error, path.given);
        });
      } finally {
        await opened.handle.close();
      }
      entryPath = join(dir, name);
    }
    const result: Record<string, unknown> = {
      path: path.rel,
      kind: kindOf(info),
      size: info.size,
      modified: info.mtime.toISOString(),
      mode: `0${(info.mode & 0o777).toString(8)}`,
    };
    if (info.isSymbolicLink()) result.target = await this.#linkTarget(jail, entryPath);
    const lines = Object.entries(result).map(([k, v]) => `${k}: ${v}`);
    return text(lines.join("\n"), result);
  }

  async #search(
    jail: RootJail,
    args: z.output<typeof searchArgs>,
    signal: AbortSignal,
  ): Promise<CallToolResult> {
    const path = jail.parse(args.path);
    const start = await jail.real(path);
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
      } catch (error) {
        // A folder that vanished or changed mid-walk is skipped; one that leads outside is never entered.
        if (error instanceof OutsideRoot)
          this.#log.warn({ dir: jail.relative(dirReal) }, "search skipped a folder that changed");
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
        // Links are not followed into folders (no loops, no escapes); linked files count if inside.
        if (dirent.isDirectory()) {
          if (!skip.has(dirent.name)) queue.push(real);
          continue;
        }
        let fileReal = real;
        if (dirent.isSymbolicLink()) {
          const target = await realpath(real).catch(() => undefined);
          if (!target || !jail.isInside(target)) continue;
          if (!(await stat(target).catch(() => undefined))?.isFile()) continue;
          fileReal = target;
        } else if (!dirent.isFile()) {
          continue;
        }
        if (++scanned > search.maxFiles) {
          stopped = `stopped after looking at ${search.maxFiles} files (search.maxFiles); search a narrower folder`;
          break walk;
        }
        const rel = jail.relative(real);
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
    const { dir, name } = await jail.parent(path).catch((error: unknown) => {
      if (error instanceof GatewayError && error.data.reason === "not_found") {
        throw new GatewayError(
          "backend_error",
          `The folder of "${path.given}" does not exist in ${this.#owner}; pass createDirs: true to create it.`,
          { data: { path: path.given, reason: "not_found" } },
        );
      }
      throw error;
    });
    const opened = await jail.openDir(dir, path.given);
    let existing: Stats | undefined;
    try {
      existing = await lstat(opened.entry(name)).catch(() => undefined);
    } finally {
      await opened.handle.close();
    }
    if (existing && !args.overwrite) {
      throw new GatewayError(
        "backend_error",
        `"${path.given}" already exists; pass overwrite: true to replace it.`,
        {
          data: { path: path.given, reason: "exists" },
        },
      );
    }
    let handle: FileHandle;
    if (existing) {
      // An existing link is written through only when it leads to a file inside the root.
      const real = await jail.real(path);
      // No O_TRUNC: the file is emptied only after it is verified to be the one that was checked.
      handle = await jail.openFile(real, path.given, fsConstants.O_WRONLY | O_NONBLOCK);
      const info = await handle.stat();
      if (!info.isFile()) {
        await handle.close();
        throw notAFile(path.given, info.isDirectory() ? "a folder" : `a ${kindOf(info)}`);
      }
      await handle.truncate(0);
    } else {
      handle = await jail.openFile(join(dir, name), path.given, fsConstants.O_WRONLY, true);
    }
    try {
      await handle.writeFile(data);
    } finally {
      await handle.close();
    }
    return text(`Wrote ${data.length} bytes to "${path.rel}" (${existing ? "replaced" : "created"}).`, {
      path: path.rel,
      bytes: data.length,
      created: !existing,
    });
  }

  /** Creates missing folders one at a time, each through its verified parent. */
  async #makeParents(jail: RootJail, path: RelPath): Promise<void> {
    let current = jail.root;
    for (const segment of path.segments.slice(0, -1)) {
      const dir = await jail.openDir(current, path.given);
      try {
        await mkdir(dir.entry(segment)).catch((error: NodeJS.ErrnoException) => {
          if (error.code !== "EEXIST") throw jail.fsError(error, path.given);
        });
      } finally {
        await dir.handle.close();
      }
      const next = await realpath(join(current, segment)).catch((error: unknown) => {
        throw jail.fsError(error, path.given);
      });
      if (!jail.isInside(next))
        throw new OutsideRoot(path.given, jail.owner, "a folder on its way is a link leading outside");
      current = next;
    }
  }

  async #move(jail: RootJail, args: z.output<typeof moveArgs>): Promise<CallToolResult> {
    const from = jail.parse(args.from, "from");
    const to = jail.parse(args.to, "to");
    const source = await jail.parent(from);
    const target = await jail.parent(to);
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
    const path = jail.parse(args.path);
    const { dir, name } = await jail.parent(path);
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

function notAFile(given: string, what: string): GatewayError {
  return new GatewayError(
    "backend_error",
    `"${given}" is ${what}, not a file; use "list" to see what it holds.`,
    {
      data: { path: given, reason: "not_a_file" },
    },
  );
}

export function createFilesystemBackend(
  name: string,
  config: FilesystemBackendConfig & { readonly timeoutMs?: number },
  logger: Logger,
): FilesystemBackend {
  return new FilesystemBackend(name, config, logger);
}
