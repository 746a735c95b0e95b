/**
 * What the filesystem tools share: the context of one call, where a caller's path leads under the
 * root's one rule (root-jail.ts), and how entries and bytes are described.
 */
import { constants as fsConstants, type Stats } from "node:fs";
import type { FileHandle } from "node:fs/promises";
import { extname } from "node:path";
import { GatewayError } from "../../core/errors.ts";
import type { CallToolResult } from "../../core/types.ts";
import type { FilesystemBackendConfig } from "./config.ts";
import { type Located, notFound, type RootJail } from "./root-jail.ts";

/** One tool call: the checked root, the backend's config, and the signal that stops the work. */
export interface FsCall {
  readonly jail: RootJail;
  readonly config: FilesystemBackendConfig;
  readonly signal: AbortSignal;
}

// A FIFO would block a read open forever; non-blocking opens return at once, then fstat refuses it.
export const O_NONBLOCK = fsConstants.O_NONBLOCK ?? 0;

/** Where the caller's path leads under the one rule; it must exist. */
export async function existing(jail: RootJail, given: unknown, argument = "path"): Promise<Located> {
  const located = await jail.locate(jail.parse(given, argument));
  if (!located.exists) throw notFound(located.path.given, jail.owner);
  return located;
}

/** The folder holding a located entry and its name, for operations on the entry itself. */
export function entryOf(jail: RootJail, located: Located): { dir: string; name: string } {
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

export function kindOf(s: Stats): string {
  if (s.isFile()) return "file";
  if (s.isDirectory()) return "folder";
  if (s.isSymbolicLink()) return "link";
  return "other";
}

export function text(message: string, structured?: Record<string, unknown>): CallToolResult {
  return {
    content: [{ type: "text", text: message }],
    ...(structured ? { structuredContent: structured } : {}),
  };
}

export async function readRange(handle: FileHandle, offset: number, length: number): Promise<Buffer> {
  const buffer = Buffer.alloc(length);
  let filled = 0;
  while (filled < length) {
    const { bytesRead } = await handle.read(buffer, filled, length - filled, offset + filled);
    if (bytesRead === 0) break;
    filled += bytesRead;
  }
  return buffer.subarray(0, filled);
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

export function mimeOf(path: string): string {
  return MIME[extname(path).toLowerCase()] ?? "application/octet-stream";
}
