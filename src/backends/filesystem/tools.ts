/** The filesystem backend's tools: what each is called, says and promises, and the work it does. */
import type { CallToolResult } from "../../core/types.ts";
import { defineTool, type ToolSpec } from "../base.ts";
import { deleteArgs, listArgs, moveArgs, readArgs, searchArgs, statArgs, writeArgs } from "./args.ts";
import type { FilesystemBackendConfig } from "./config.ts";
import type { FsCall } from "./files.ts";
import { describe, list, read, search } from "./read.ts";
import { move, remove, write } from "./write.ts";

export type FilesystemTool = ToolSpec<CallToolResult, FsCall>;

/** The tools that change files: offered only with `readOnly: false`. */
export const WRITE_TOOLS: readonly string[] = ["write", "move", "delete"];

const READ_ONLY = { readOnlyHint: true, destructiveHint: false, idempotentHint: true, openWorldHint: false };

const changes = (idempotent: boolean) => ({
  readOnlyHint: false,
  destructiveHint: true,
  idempotentHint: idempotent,
  openWorldHint: false,
});

export function filesystemTools(config: FilesystemBackendConfig): FilesystemTool[] {
  const tools: FilesystemTool[] = [
    defineTool({
      name: "list",
      description: `Lists a folder: names, kinds and sizes (at most ${config.maxListEntries} entries).`,
      args: listArgs,
      annotations: READ_ONLY,
      run: list,
    }),
    defineTool({
      name: "read",
      description:
        `Reads a file: text as is, binary as base64. At most ${config.maxReadBytes} bytes per call; ` +
        "read larger files in ranges with offset and length.",
      args: readArgs,
      annotations: READ_ONLY,
      run: read,
    }),
    defineTool({
      name: "stat",
      description: "Describes a file or folder: kind, size, modification time, permissions, link target.",
      args: statArgs,
      annotations: READ_ONLY,
      run: describe,
    }),
    defineTool({
      name: "search",
      description:
        "Finds files by glob pattern and/or by text they contain, below a folder. " +
        `At most ${config.search.maxResults} matches; stops after ${config.search.maxFiles} files.`,
      args: searchArgs,
      annotations: READ_ONLY,
      run: search,
    }),
  ];
  if (config.readOnly) return tools;
  return [
    ...tools,
    defineTool({
      name: "write",
      description: `Writes a file (created or replaced), at most ${config.maxWriteBytes} bytes.`,
      args: writeArgs,
      annotations: changes(true),
      run: write,
    }),
    defineTool({
      name: "move",
      description: "Moves or renames a file or folder inside the root.",
      args: moveArgs,
      annotations: changes(false),
      run: move,
    }),
    defineTool({
      name: "delete",
      description: "Deletes a file, an empty folder, or a folder with its contents when recursive is true.",
      args: deleteArgs,
      annotations: changes(true),
      run: remove,
    }),
  ];
}
