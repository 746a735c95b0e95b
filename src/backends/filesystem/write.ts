/**
 * The filesystem backend's write tools, offered with `readOnly: false`: write, move and delete. Each
 * acts through folders opened and verified by the root's one rule (root-jail.ts); a link is written
 * through only when it stays inside, and moved or deleted itself, never what it points to.
 */
import { constants as fsConstants } from "node:fs";
import { type FileHandle, lstat, mkdir, rename, rm, rmdir, unlink } from "node:fs/promises";
import { basename, dirname } from "node:path";
import type { z } from "zod";
import { GatewayError } from "../../core/errors.ts";
import type { CallToolResult } from "../../core/types.ts";
import type { deleteArgs, moveArgs, writeArgs } from "./args.ts";
import { entryOf, type FsCall, kindOf, O_NONBLOCK, text } from "./files.ts";
import { notAFile, type RelPath, type RootJail } from "./root-jail.ts";

function alreadyExists(given: string): GatewayError {
  return new GatewayError("backend_error", `"${given}" already exists; pass overwrite: true to replace it.`, {
    data: { path: given, reason: "exists" },
  });
}

export async function write(
  args: z.output<typeof writeArgs>,
  { jail, config }: FsCall,
): Promise<CallToolResult> {
  const path = jail.parse(args.path);
  const data =
    args.encoding === "base64" ? Buffer.from(args.content, "base64") : Buffer.from(args.content, "utf8");
  if (data.length > config.maxWriteBytes) {
    throw new GatewayError(
      "backend_error",
      `Writing ${data.length} bytes to "${path.given}" exceeds maxWriteBytes (${config.maxWriteBytes}); write less.`,
      { data: { path: path.given, maxWriteBytes: config.maxWriteBytes } },
    );
  }
  if (args.createDirs) await makeParents(jail, path);
  const located = await jail.locate(path);
  const folderMissing = (error: unknown): unknown =>
    error instanceof GatewayError && error.data.reason === "not_found"
      ? new GatewayError(
          "backend_error",
          `The folder of "${path.given}" does not exist in ${jail.owner}; pass createDirs: true to create it.`,
          { data: { path: path.given, reason: "not_found" } },
        )
      : error;
  try {
    entryOf(jail, located);
  } catch (error) {
    throw folderMissing(error);
  }
  if (located.exists && !args.overwrite) throw alreadyExists(path.given);
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
        throw folderMissing(error);
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
async function makeParents(jail: RootJail, path: RelPath): Promise<void> {
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

export async function move(args: z.output<typeof moveArgs>, { jail }: FsCall): Promise<CallToolResult> {
  const fromLocated = await jail.locate(jail.parse(args.from, "from"));
  const toLocated = await jail.locate(jail.parse(args.to, "to"));
  const from = fromLocated.path;
  const to = toLocated.path;
  const source = entryOf(jail, fromLocated);
  const target = entryOf(jail, toLocated);
  const sourceDir = await jail.openDir(source.dir, from.given);
  try {
    const targetDir = await jail.openDir(target.dir, to.given);
    try {
      await lstat(sourceDir.entry(source.name)).catch((error: unknown) => {
        throw jail.fsError(error, from.given);
      });
      const existing = await lstat(targetDir.entry(target.name)).catch(() => undefined);
      if (existing && !args.overwrite) throw alreadyExists(to.given);
      await rename(sourceDir.entry(source.name), targetDir.entry(target.name)).catch(
        (error: NodeJS.ErrnoException) => {
          if (error.code === "EINVAL") {
            throw new GatewayError(
              "backend_error",
              `"${from.given}" cannot be moved into itself ("${to.given}").`,
              { data: { from: from.given, to: to.given } },
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

export async function remove(args: z.output<typeof deleteArgs>, { jail }: FsCall): Promise<CallToolResult> {
  const located = await jail.locate(jail.parse(args.path));
  const { path } = located;
  const { dir, name } = entryOf(jail, located);
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
            { data: { path: path.given, reason: "not_empty" } },
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
