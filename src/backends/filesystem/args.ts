/** The arguments of the filesystem tools: checked with these schemas, and listed as their inputSchema. */
import { z } from "zod";

const pathArg = (what: string) => z.string().describe(`${what}, relative to the root ("." is the root).`);

export const listArgs = z.strictObject({ path: pathArg("The folder").default(".") });

export const readArgs = z.strictObject({
  path: pathArg("The file"),
  offset: z.number().int().min(0).optional().describe("First byte to read. Default 0."),
  length: z.number().int().min(0).optional().describe("Bytes to read. Default: to the end of the file."),
  encoding: z
    .enum(["auto", "text", "base64"])
    .default("auto")
    .describe('"auto": text when the bytes are UTF-8, else base64.'),
});

export const statArgs = z.strictObject({ path: pathArg("The file or folder") });

export const searchArgs = z
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

export const writeArgs = z.strictObject({
  path: pathArg("The file"),
  content: z.string().describe("The new content."),
  encoding: z.enum(["text", "base64"]).default("text").describe('"base64" for binary content.'),
  createDirs: z.boolean().default(false).describe("Create missing parent folders. Default false."),
  overwrite: z.boolean().default(true).describe("Replace an existing file. Default true."),
});

export const moveArgs = z.strictObject({
  from: pathArg("The file or folder to move"),
  to: pathArg("The new path (its folder must exist)"),
  overwrite: z.boolean().default(false).describe("Replace an existing file at `to`. Default false."),
});

export const deleteArgs = z.strictObject({
  path: pathArg("The file or folder"),
  recursive: z.boolean().default(false).describe("Delete a folder with everything in it. Default false."),
});
