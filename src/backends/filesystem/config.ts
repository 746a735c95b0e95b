/**
 * The filesystem backend's config block (`type: "filesystem"` under `backends:`). The extensions
 * every server shares are merged in by config/schema.ts.
 */
import { z } from "zod";
import { nonEmpty, positiveInt } from "../config.ts";

export const filesystemBackendSchema = z.strictObject({
  type: z.literal("filesystem"),
  /** The folder exposed; a relative path resolves against the working directory. Must exist. Required. */
  root: nonEmpty(),
  /** Only list, read, stat and search; false adds write, move and delete. Default true. */
  readOnly: z.boolean().default(true),
  /** Most bytes one read returns (larger files are read in ranges); also the largest file searched by content. Default 1 048 576 (1 MiB). */
  maxReadBytes: positiveInt().default(1_048_576),
  /** Most bytes one write takes. Default 10 485 760 (10 MiB). */
  maxWriteBytes: positiveInt().default(10_485_760),
  /** Entries one listing returns. Default 1 000. */
  maxListEntries: positiveInt().default(1_000),
  search: z
    .strictObject({
      /** Matches one search returns at most (a caller may ask for fewer). Default 100. */
      maxResults: positiveInt().default(100),
      /** Files one search looks at before it stops and says so. Default 10 000. */
      maxFiles: positiveInt().default(10_000),
      /** Folder names a search never descends into. Default [".git", "node_modules"]. */
      skipDirs: z.array(nonEmpty()).default([".git", "node_modules"]),
    })
    .prefault({}),
});

export type FilesystemBackendConfig = z.output<typeof filesystemBackendSchema>;
export type FilesystemBackendInput = z.input<typeof filesystemBackendSchema>;
