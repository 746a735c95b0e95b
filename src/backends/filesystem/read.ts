/**
 * The filesystem backend's read tools: list, read, stat and search. Each reaches entries only through
 * the root's one rule (root-jail.ts); listings name a link that leads outside without describing it,
 * and searches skip it.
 */
import { type Dirent, constants as fsConstants, type Stats } from "node:fs";
import { type FileHandle, lstat, readdir, stat } from "node:fs/promises";
import { join } from "node:path";
import picomatch from "picomatch";
import type { z } from "zod";
import { GatewayError } from "../../core/errors.ts";
import type { CallToolResult } from "../../core/types.ts";
import { binaryBlock, isUtf8Text } from "../content.ts";
import type { listArgs, readArgs, searchArgs, statArgs } from "./args.ts";
import { entryOf, existing, type FsCall, kindOf, mimeOf, O_NONBLOCK, readRange, text } from "./files.ts";
import { notAFile, type OpenDir, OutsideRoot, type RelPath, type RootJail } from "./root-jail.ts";

export async function list(
  args: z.output<typeof listArgs>,
  { jail, config }: FsCall,
): Promise<CallToolResult> {
  const { path, real } = await existing(jail, args.path);
  const dir = await jail.openDir(real, path.given);
  try {
    const dirents = await readdir(dir.entry(""), { withFileTypes: true });
    dirents.sort((a, b) => Number(b.isDirectory()) - Number(a.isDirectory()) || a.name.localeCompare(b.name));
    const limit = config.maxListEntries;
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
        const led = await linkTarget(jail, path, dirent.name);
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

/**
 * Where the link `name` in the listed folder leads, by the same rule as any path: its place
 * relative to the root when that is inside, or "outside" with nothing more about it.
 */
async function linkTarget(
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

export async function read(
  args: z.output<typeof readArgs>,
  { jail, config }: FsCall,
): Promise<CallToolResult> {
  const { path, real } = await existing(jail, args.path);
  const handle = await jail.openFile(real, path.given, fsConstants.O_RDONLY | O_NONBLOCK);
  try {
    const info = await handle.stat();
    if (!info.isFile()) throw notAFile(path.given, info.isDirectory() ? "a folder" : `a ${kindOf(info)}`);
    const offset = args.offset ?? 0;
    const rest = Math.max(0, info.size - offset);
    const length = Math.min(args.length ?? rest, rest);
    const max = config.maxReadBytes;
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
    return {
      content: [
        {
          type: "text",
          text: `"${path.rel}" is binary (${mimeType}, ${bytes.length} bytes), as base64 below.${note}`,
        },
        binaryBlock(bytes.toString("base64"), mimeType, `file:///${encodeURI(path.rel)}`),
      ],
    };
  } finally {
    await handle.close();
  }
}

/** Describes the entry as named (a link as a link), once the path passed the one rule. */
export async function describe(args: z.output<typeof statArgs>, { jail }: FsCall): Promise<CallToolResult> {
  const located = await jail.locate(jail.parse(args.path));
  const { path } = located;
  let info: Stats;
  if (located.name === undefined) {
    info = await stat(jail.root);
  } else {
    const { dir, name } = entryOf(jail, located);
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

interface Match {
  readonly path: string;
  readonly lines?: { line: number; text: string }[];
}

export async function search(
  args: z.output<typeof searchArgs>,
  { jail, config, signal }: FsCall,
): Promise<CallToolResult> {
  const { path, real: start } = await existing(jail, args.path);
  if (!(await stat(start)).isDirectory()) {
    throw new GatewayError(
      "backend_error",
      `"${path.given}" is a file; search in a folder (or "." for the root).`,
      {
        data: { path: path.given, reason: "not_a_folder" },
      },
    );
  }
  const { search: limits } = config;
  const maxResults = Math.min(args.maxResults ?? limits.maxResults, limits.maxResults);
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
  const skip = new Set(limits.skipDirs);
  const matches: Match[] = [];
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
      if (++scanned > limits.maxFiles) {
        stopped = `stopped after looking at ${limits.maxFiles} files (search.maxFiles); search a narrower folder`;
        break walk;
      }
      if (matcher && !matcher(rel)) continue;
      if (needle !== undefined) {
        const lines = await grep(jail, fileReal, rel, needle, args.caseSensitive, config.maxReadBytes);
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
async function grep(
  jail: RootJail,
  real: string,
  rel: string,
  needle: string,
  caseSensitive: boolean,
  maxReadBytes: number,
): Promise<{ line: number; text: string }[]> {
  let handle: FileHandle;
  try {
    handle = await jail.openFile(real, rel, fsConstants.O_RDONLY | O_NONBLOCK);
  } catch {
    return [];
  }
  try {
    const info = await handle.stat();
    if (!info.isFile() || info.size > maxReadBytes) return [];
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
