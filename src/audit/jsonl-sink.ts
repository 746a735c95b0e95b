/**
 * The audit log as a JSON Lines file: one record per line, appended, rotated by size.
 *
 * `durability: "sync"` makes `write` resolve only after the line is written and fdatasync'd, so a
 * gateway that awaits it before answering never answers a call the log does not hold, whatever
 * happens to the process (kill -9) or the machine right after. Concurrent writes share fsyncs (group
 * commit, see CommitQueue). `durability: "batched"` buffers lines and writes them (and fsyncs) every
 * `flushIntervalMs`; a crash loses at most that interval.
 *
 * One file belongs to one process: replicas on one host need their own paths, since rotation by two
 * writers would race.
 */
import { type FileHandle, mkdir, open, rename, unlink } from "node:fs/promises";
import { dirname, resolve as resolvePath } from "node:path";
import { describeError, errnoAdvice } from "../core/errors.ts";
import type { Logger } from "../observability/logger.ts";
import { FILE_SINK_DEFAULTS } from "./config.ts";
import { type AuditDurability, type AuditRecord, type AuditSink, QueuedSink } from "./record.ts";

export interface JsonlSinkOptions {
  /** The file; relative paths resolve against the process's working directory. */
  readonly path: string;
  // Defaults of the options below: the config's file sink (FILE_SINK_DEFAULTS, audit/config.ts).
  readonly durability?: AuditDurability;
  /** Size at which the file is rotated. */
  readonly maxBytes?: number;
  /** Rotated files kept (`.1` newest … `.N` oldest); 0 keeps none. */
  readonly maxFiles?: number;
  /** Batched mode: how often buffered lines are written, in ms. */
  readonly flushIntervalMs?: number;
  /** Most records held while the file cannot be written; the oldest go first. */
  readonly maxPending?: number;
  readonly logger: Logger;
}

/** Options left out take the config's defaults for a file sink. */
const JSONL_DEFAULTS = FILE_SINK_DEFAULTS;

/** Most lines per write: bounds the memory of one round, not how many records wait. */
const MAX_BATCH = 1_000;

export function createJsonlSink(options: JsonlSinkOptions): AuditSink {
  return new JsonlSink(options);
}

class JsonlSink extends QueuedSink<string> {
  readonly #file: AppendOnlyFile;
  readonly #logger: Logger;

  constructor(options: JsonlSinkOptions) {
    const path = resolvePath(options.path);
    super({
      name: `file:${path}`,
      durability: options.durability ?? JSONL_DEFAULTS.durability,
      flushIntervalMs: options.flushIntervalMs ?? JSONL_DEFAULTS.flushIntervalMs,
      maxBatch: MAX_BATCH,
      maxPending: options.maxPending ?? JSONL_DEFAULTS.maxPending,
      logger: options.logger,
    });
    this.#logger = options.logger;
    this.#file = new AppendOnlyFile(
      path,
      options.maxBytes ?? JSONL_DEFAULTS.maxBytes,
      options.maxFiles ?? JSONL_DEFAULTS.maxFiles,
    );
  }

  protected override queued(record: AuditRecord): string {
    // Serialized now: the caller may reuse its objects, and the line must be what was true then.
    return `${serialize(record, this.#logger)}\n`;
  }

  protected override commit(lines: readonly string[]): Promise<void> {
    return this.#file.append(lines);
  }

  protected override release(): Promise<void> {
    return this.#file.close();
  }
}

/**
 * JSON.stringify, except that a record whose arguments cannot be serialized (a bigint, a cycle) is
 * still recorded, with a note in place of the arguments: losing the whole record would be worse.
 */
export function serialize(record: AuditRecord, logger: Logger): string {
  try {
    return JSON.stringify(record);
  } catch (error) {
    logger.warn(
      { requestId: record.requestId, tool: record.tool, err: describeError(error) },
      "audit record arguments are not serializable; recorded without them",
    );
    return JSON.stringify({ ...record, arguments: { "[unserializable]": describeError(error) } });
  }
}

/**
 * The file itself: O_APPEND, created 0600 (arguments are sensitive) in a directory created if missing,
 * rotated before a write would take it past `maxBytes`.
 */
class AppendOnlyFile {
  readonly #path: string;
  readonly #maxBytes: number;
  readonly #maxFiles: number;
  #handle: FileHandle | undefined;
  #size = 0;
  /** The file does not end with a newline (a torn line from a crash or a failed write). */
  #torn = false;

  constructor(path: string, maxBytes: number, maxFiles: number) {
    this.#path = path;
    this.#maxBytes = maxBytes;
    this.#maxFiles = maxFiles;
  }

  async append(lines: readonly string[]): Promise<void> {
    try {
      let handle = this.#handle ?? (await this.#open());
      let chunk = "";
      let chunkBytes = 0;
      for (const line of lines) {
        const bytes = Buffer.byteLength(line);
        if (this.#size + chunkBytes + bytes > this.#maxBytes && this.#size + chunkBytes > 0) {
          await this.#write(handle, chunk);
          handle = await this.#rotate(handle);
          chunk = "";
          chunkBytes = 0;
        }
        chunk += line;
        chunkBytes += bytes;
      }
      await this.#write(handle, chunk);
      await handle.datasync();
    } catch (error) {
      // Reopened on the next attempt, which checks again how the file ends.
      await this.#discardHandle();
      throw new Error(`cannot append to ${this.#path}: ${fileProblem(error)}`, { cause: error });
    }
  }

  async close(): Promise<void> {
    const handle = this.#handle;
    this.#handle = undefined;
    await handle?.close();
  }

  async #open(): Promise<FileHandle> {
    await mkdir(dirname(this.#path), { recursive: true, mode: 0o700 });
    // "a+": O_APPEND, so every write lands at the end whatever else appends; readable, to check the
    // last byte. The mode applies when the file is created; an existing file keeps its own.
    const handle = await open(this.#path, "a+", 0o600);
    try {
      const { size } = await handle.stat();
      this.#size = size;
      this.#torn = false;
      if (size > 0) {
        const last = Buffer.alloc(1);
        await handle.read(last, 0, 1, size - 1);
        this.#torn = last[0] !== 0x0a;
      }
      // A new file's directory entry must reach the disk too, or a power cut could lose the file.
      await syncDirectory(dirname(this.#path));
    } catch (error) {
      await handle.close().catch(() => undefined);
      throw error;
    }
    this.#handle = handle;
    return handle;
  }

  async #write(handle: FileHandle, text: string): Promise<void> {
    if (text === "") return;
    // Ends a torn line, so that the first new record is a line of its own that readers can parse.
    const buffer = Buffer.from(this.#torn ? `\n${text}` : text);
    let offset = 0;
    while (offset < buffer.length) {
      const { bytesWritten } = await handle.write(buffer, offset, buffer.length - offset, null);
      offset += bytesWritten;
      this.#size += bytesWritten;
      this.#torn = buffer[offset - 1] !== 0x0a;
    }
  }

  async #rotate(handle: FileHandle): Promise<FileHandle> {
    await handle.datasync();
    this.#handle = undefined;
    await handle.close();
    if (this.#maxFiles === 0) {
      await unlink(this.#path).catch(ignoreMissing);
    } else {
      for (let index = this.#maxFiles - 1; index >= 1; index--) {
        await rename(`${this.#path}.${index}`, `${this.#path}.${index + 1}`).catch(ignoreMissing);
      }
      await rename(this.#path, `${this.#path}.1`);
    }
    return await this.#open();
  }

  async #discardHandle(): Promise<void> {
    const handle = this.#handle;
    this.#handle = undefined;
    await handle?.close().catch(() => undefined);
  }
}

async function syncDirectory(directory: string): Promise<void> {
  const handle = await open(directory, "r");
  try {
    await handle.sync();
  } catch (error) {
    // Some file systems cannot fsync a directory; the data itself is still synced.
    if ((error as NodeJS.ErrnoException).code !== "EINVAL") throw error;
  } finally {
    await handle.close();
  }
}

function ignoreMissing(error: unknown): void {
  if ((error as NodeJS.ErrnoException).code !== "ENOENT") throw error;
}

const FILE_ADVICE: Readonly<Record<string, string>> = {
  ENOSPC: "the disk is full; free space or point audit at another disk",
  EACCES: "permission denied; make the file and its directory writable by the user running Switchboard",
  EPERM: "permission denied; make the file and its directory writable by the user running Switchboard",
  EROFS: "the file system is read-only; choose a writable path for the audit file",
};

function fileProblem(error: unknown): string {
  return errnoAdvice(error, FILE_ADVICE) ?? describeError(error);
}
