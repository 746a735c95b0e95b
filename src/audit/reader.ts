/**
 * Reading the audit log back: `tailAudit` for the last lines of a JSONL file (and what follows), and
 * `searchAudit` for records matching a filter, in a JSONL file with its rotated siblings or in the
 * PostgreSQL table.
 *
 * A line that is not a record is skipped and counted, never fatal: the last line of a file may be torn
 * by a crash mid-write (the sink starts its next record on a fresh line, so it tears nothing else).
 */
import { createReadStream } from "node:fs";
import { type FileHandle, open, readdir, stat } from "node:fs/promises";
import { basename, dirname, join, resolve as resolvePath } from "node:path";
import { setTimeout as sleep } from "node:timers/promises";
import type pg from "pg";
import picomatch from "picomatch";
import { GLOB_OPTIONS } from "../config/primitives.ts";
import { POSTGRES_SINK_CONFIG_DEFAULTS, parseTableName } from "./config.ts";
import { type AuditOutcome, type AuditRecord, isAuditRecord } from "./record.ts";

export interface AuditFilter {
  /** A glob over exposed tool names ("db__*"). */
  readonly tool?: string;
  readonly principal?: string;
  readonly server?: string;
  readonly requestId?: string;
  readonly outcome?: AuditOutcome | readonly AuditOutcome[];
  /** Records at or after this time. */
  readonly since?: Date;
  /** Records before this time. */
  readonly until?: Date;
  /** Most records returned: the newest that match. Default 100. */
  readonly limit?: number;
}

export type AuditLocation =
  | { readonly type: "file"; readonly path: string }
  | {
      readonly type: "postgres";
      /** Either a URL (a connection is opened for the search) or a pool to borrow from. */
      readonly url?: string;
      readonly pool?: pg.Pool;
      /** Default: the config's table (audit/config.ts). */
      readonly table?: string;
    };

export interface AuditSearchResult {
  /** The newest `limit` matching records, oldest first. */
  readonly records: AuditRecord[];
  /** More records matched than `limit`. */
  readonly truncated: boolean;
  /** Unreadable last lines of files (a crash mid-write). */
  readonly torn: number;
  /** Other lines that are not records. */
  readonly invalid: number;
  /** The files read, oldest first (file locations only). */
  readonly files?: readonly string[];
}

const DEFAULT_LIMIT = 100;

/** A predicate for records, shared by both locations. */
export function auditMatcher(filter: AuditFilter): (record: AuditRecord) => boolean {
  const tool = filter.tool === undefined ? undefined : picomatch(filter.tool, GLOB_OPTIONS);
  const outcomes =
    filter.outcome === undefined
      ? undefined
      : new Set<string>(typeof filter.outcome === "string" ? [filter.outcome] : filter.outcome);
  const since = filter.since?.getTime();
  const until = filter.until?.getTime();
  return (record) => {
    if (tool !== undefined && !tool(record.tool)) return false;
    if (filter.principal !== undefined && record.principal !== filter.principal) return false;
    if (filter.server !== undefined && record.server !== filter.server) return false;
    if (filter.requestId !== undefined && record.requestId !== filter.requestId) return false;
    if (outcomes !== undefined && !outcomes.has(record.outcome)) return false;
    if (since !== undefined || until !== undefined) {
      const time = Date.parse(record.time);
      if (Number.isNaN(time)) return false;
      if (since !== undefined && time < since) return false;
      if (until !== undefined && time >= until) return false;
    }
    return true;
  };
}

export async function searchAudit(
  location: AuditLocation,
  filter: AuditFilter = {},
): Promise<AuditSearchResult> {
  const limit = filter.limit ?? DEFAULT_LIMIT;
  if (!Number.isInteger(limit) || limit < 1)
    throw new RangeError("searchAudit: limit must be a whole number >= 1");
  return location.type === "file"
    ? await searchFiles(resolvePath(location.path), filter, limit)
    : await searchTable(location, filter, limit);
}

// ---------------------------------------------------------------------------------------------------
// Files

/** The file and its rotated siblings (`.N` … `.1`), oldest first; those that do not exist are left out. */
export async function auditFiles(path: string): Promise<string[]> {
  const file = resolvePath(path);
  const directory = dirname(file);
  const base = basename(file);
  let names: string[];
  try {
    names = await readdir(directory);
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === "ENOENT") return [];
    throw error;
  }
  const rotated = names
    .map((name) => {
      if (!name.startsWith(`${base}.`)) return undefined;
      const suffix = name.slice(base.length + 1);
      return /^[1-9][0-9]*$/.test(suffix) ? { name, index: Number(suffix) } : undefined;
    })
    .filter((entry) => entry !== undefined)
    .sort((a, b) => b.index - a.index)
    .map((entry) => join(directory, entry.name));
  return names.includes(base) ? [...rotated, file] : rotated;
}

async function searchFiles(path: string, filter: AuditFilter, limit: number): Promise<AuditSearchResult> {
  const files = await auditFiles(path);
  if (files.length === 0) {
    throw new Error(`no audit file at ${path} (nor rotated ones): check audit.sinks[].path in the config`);
  }
  const matches = auditMatcher(filter);
  // The newest `limit` matches: a ring of limit + 1, so that one more than fits says "truncated".
  const kept: AuditRecord[] = [];
  let matched = 0;
  let torn = 0;
  let invalid = 0;
  for (const file of files) {
    const counts = await readRecords(file, (record) => {
      if (!matches(record)) return;
      matched++;
      kept.push(record);
      if (kept.length > limit) kept.shift();
    });
    torn += counts.torn;
    invalid += counts.invalid;
  }
  return { records: kept, truncated: matched > limit, torn, invalid, files };
}

/** Streams a file's records to `each`; counts the lines that are not records. */
async function readRecords(
  file: string,
  each: (record: AuditRecord) => void,
): Promise<{ torn: number; invalid: number }> {
  let invalid = 0;
  let torn = 0;
  let carry = "";
  try {
    // The stream decodes UTF-8 across chunk boundaries.
    for await (const chunk of createReadStream(file, { encoding: "utf8", highWaterMark: 256 * 1024 })) {
      const lines = (carry + (chunk as string)).split("\n");
      carry = lines.pop() ?? "";
      for (const line of lines) {
        const record = parseLine(line);
        if (record === undefined) {
          if (line.trim() !== "") invalid++;
        } else each(record);
      }
    }
  } catch (error) {
    // Rotated away between listing and reading: its records are in the next name now, read later.
    if ((error as NodeJS.ErrnoException).code === "ENOENT") return { torn, invalid };
    throw error;
  }
  if (carry.trim() !== "") {
    // Without its newline, a line is complete only if it parses: the crash may have hit just before "\n".
    const record = parseLine(carry);
    if (record === undefined) torn++;
    else each(record);
  }
  return { torn, invalid };
}

function parseLine(line: string): AuditRecord | undefined {
  if (line.trim() === "") return undefined;
  try {
    const value: unknown = JSON.parse(line);
    return isAuditRecord(value) ? value : undefined;
  } catch {
    return undefined;
  }
}

// ---------------------------------------------------------------------------------------------------
// Tail

export interface TailOptions {
  /** How many of the last records to start with. Default 10. */
  readonly lines?: number;
  /** Keep going: yield records as they are appended, across rotations, until `signal` aborts. */
  readonly follow?: boolean;
  readonly signal?: AbortSignal;
  /** Following: how often the file is checked for more. Default 250 ms. */
  readonly pollIntervalMs?: number;
  /** Told about each line that is not a record (`torn`: the last line of the file, incomplete). */
  readonly onSkip?: (skip: { readonly line: string; readonly torn: boolean }) => void;
}

/**
 * The last `lines` records of a JSONL audit file, oldest first; with `follow`, then every record
 * appended until `signal` aborts (the iteration then ends without an error).
 */
export async function* tailAudit(path: string, options: TailOptions = {}): AsyncGenerator<AuditRecord> {
  const file = resolvePath(path);
  const count = options.lines ?? 10;
  const signal = options.signal;
  const skip = (line: string, torn: boolean) => options.onSkip?.({ line, torn });
  let handle: FileHandle;
  try {
    handle = await open(file, "r");
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === "ENOENT") {
      throw new Error(`no audit file at ${file}: check audit.sinks[].path in the config`);
    }
    throw error;
  }
  try {
    const { size, ino } = await handle.stat();
    let inode = ino;
    const { lines, end } = await lastLines(handle, size, count);
    for (const line of lines) {
      const record = parseLine(line);
      if (record === undefined) skip(line, false);
      else yield record;
    }
    let position = end;
    if (!options.follow) {
      if (end < size) {
        const rest = await readRange(handle, end, size);
        const record = parseLine(rest);
        if (record === undefined) skip(rest, true);
        else yield record;
      }
      return;
    }
    let carry = "";
    const interval = options.pollIntervalMs ?? 250;
    while (!signal?.aborted) {
      // Whatever was appended to the file we hold, rotated or not, comes first.
      const current = (await handle.stat()).size;
      if (current < position) {
        position = 0;
        carry = "";
      }
      if (current > position) {
        const text = carry + (await readRange(handle, position, current));
        position = current;
        const parts = text.split("\n");
        carry = parts.pop() ?? "";
        for (const line of parts) {
          if (line.trim() === "") continue;
          const record = parseLine(line);
          if (record === undefined) skip(line, false);
          else yield record;
        }
        continue;
      }
      const now = await stat(file).catch(() => undefined);
      if (now !== undefined && now.ino !== inode) {
        // Rotated: the old file is complete (the sink closed it), so move to the new one.
        if (carry.trim() !== "") skip(carry, true);
        await handle.close();
        handle = await open(file, "r");
        inode = (await handle.stat()).ino;
        position = 0;
        carry = "";
        continue;
      }
      try {
        await sleep(interval, undefined, { signal });
      } catch {
        return;
      }
    }
  } finally {
    await handle.close().catch(() => undefined);
  }
}

/** The last `count` complete lines before `size`, read backwards in chunks, and where they end. */
async function lastLines(
  handle: FileHandle,
  size: number,
  count: number,
): Promise<{ lines: string[]; end: number }> {
  const chunkSize = 64 * 1024;
  const chunks: Buffer[] = [];
  let start = size;
  let newlines = 0;
  // count + 1 newlines bound count complete lines (the first newline ends the line before them).
  while (start > 0 && newlines <= count) {
    const length = Math.min(chunkSize, start);
    start -= length;
    const buffer = Buffer.alloc(length);
    await readFully(handle, buffer, start);
    chunks.unshift(buffer);
    for (const byte of buffer) if (byte === 0x0a) newlines++;
  }
  const all = Buffer.concat(chunks);
  const lastNewline = all.lastIndexOf(0x0a);
  if (lastNewline === -1) return { lines: [], end: start };
  const text = all.subarray(0, lastNewline).toString("utf8");
  const pieces = text.split("\n");
  // The first piece may be the tail of a line cut by the chunk boundary; keep only whole lines.
  const whole = (start > 0 ? pieces.slice(1) : pieces).filter((line) => line.trim() !== "");
  return { lines: count === 0 ? [] : whole.slice(-count), end: start + lastNewline + 1 };
}

async function readRange(handle: FileHandle, from: number, to: number): Promise<string> {
  const buffer = Buffer.alloc(to - from);
  const read = await readFully(handle, buffer, from);
  return buffer.subarray(0, read).toString("utf8");
}

async function readFully(handle: FileHandle, buffer: Buffer, position: number): Promise<number> {
  let offset = 0;
  while (offset < buffer.length) {
    const { bytesRead } = await handle.read(buffer, offset, buffer.length - offset, position + offset);
    if (bytesRead === 0) break;
    offset += bytesRead;
  }
  return offset;
}

// ---------------------------------------------------------------------------------------------------
// PostgreSQL

const PAGE = 1_000;

async function searchTable(
  location: Extract<AuditLocation, { type: "postgres" }>,
  filter: AuditFilter,
  limit: number,
): Promise<AuditSearchResult> {
  const table = parseTableName(location.table ?? POSTGRES_SINK_CONFIG_DEFAULTS.table);
  let client: pg.Client | undefined;
  let query: (sql: string, params: unknown[]) => Promise<pg.QueryResult>;
  if (location.pool !== undefined) {
    const pool = location.pool;
    query = (sql, params) => pool.query(sql, params);
  } else if (location.url !== undefined) {
    // The driver is loaded when a search first needs it: most gateways never search PostgreSQL.
    const { Client } = (await import("pg")).default;
    const connected = new Client({ connectionString: location.url, connectionTimeoutMillis: 10_000 });
    connected.on("error", () => undefined);
    await connected.connect();
    client = connected;
    query = (sql, params) => connected.query(sql, params);
  } else {
    throw new Error("searchAudit: a postgres location needs a url or a pool");
  }

  try {
    const conditions: string[] = [];
    const params: unknown[] = [];
    const add = (sql: (placeholder: string) => string, value: unknown) => {
      params.push(value);
      conditions.push(sql(`$${params.length}`));
    };
    if (filter.principal !== undefined) add((p) => `principal = ${p}`, filter.principal);
    if (filter.server !== undefined) add((p) => `server = ${p}`, filter.server);
    if (filter.requestId !== undefined) add((p) => `request_id = ${p}`, filter.requestId);
    if (filter.outcome !== undefined) {
      add(
        (p) => `outcome = ANY(${p}::text[])`,
        typeof filter.outcome === "string" ? [filter.outcome] : [...filter.outcome],
      );
    }
    if (filter.since !== undefined) add((p) => `time >= ${p}`, filter.since);
    if (filter.until !== undefined) add((p) => `time < ${p}`, filter.until);
    const like = filter.tool === undefined ? undefined : globToLike(filter.tool);
    if (like !== undefined) add((p) => `tool LIKE ${p}`, like);

    // The SQL narrows; the glob, applied here as well, decides (it has syntax LIKE lacks).
    const matches = auditMatcher({ ...(filter.tool === undefined ? {} : { tool: filter.tool }) });
    const found: AuditRecord[] = [];
    let invalid = 0;
    let cursor: string | undefined;
    // Newest first, by insertion order, in pages: a glob LIKE cannot express may reject many rows.
    while (found.length <= limit) {
      const pageParams = [...params];
      const where = [...conditions];
      if (cursor !== undefined) {
        pageParams.push(cursor);
        where.push(`id < $${pageParams.length}`);
      }
      pageParams.push(Math.max(PAGE, limit + 1));
      const sql =
        `SELECT id::text AS id, record FROM ${table.sql}` +
        (where.length > 0 ? ` WHERE ${where.join(" AND ")}` : "") +
        ` ORDER BY id DESC LIMIT $${pageParams.length}`;
      const result = await query(sql, pageParams);
      for (const row of result.rows as { id: string; record: unknown }[]) {
        if (!isAuditRecord(row.record)) invalid++;
        else if (matches(row.record)) found.push(row.record);
        if (found.length > limit) break;
      }
      const last = result.rows.at(-1) as { id: string } | undefined;
      if (last === undefined || result.rows.length < Math.max(PAGE, limit + 1)) break;
      cursor = last.id;
    }
    const truncated = found.length > limit;
    return { records: found.slice(0, limit).reverse(), truncated, torn: 0, invalid };
  } catch (error) {
    if ((error as { code?: string }).code === "42P01") {
      throw new Error(
        `the audit table ${table.sql} does not exist: no record was written there yet, or the table name differs from audit.sinks[].table`,
        { cause: error },
      );
    }
    throw error;
  } finally {
    await client?.end().catch(() => undefined);
  }
}

/**
 * A LIKE pattern for globs made of plain name characters, `*` and `?`, else undefined (the glob is
 * then applied to every row read). Tool names are `[a-zA-Z0-9_-]`, so escaping `_` is all it takes.
 */
export function globToLike(glob: string): string | undefined {
  if (!/^[A-Za-z0-9_*?-]+$/.test(glob)) return undefined;
  return glob.replace(/_/g, "\\_").replace(/\*+/g, "%").replace(/\?/g, "_");
}
