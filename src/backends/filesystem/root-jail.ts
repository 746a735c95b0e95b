/**
 * The security boundary of the filesystem backend: one containment rule, applied by every tool.
 *
 * The rule: a path is followed one name at a time from the root, each symbolic link replaced by
 * where it points (up to 40 links, as the kernel allows); after every name of the path the place
 * reached must be inside the root. A path that leads outside at any level, through any link, the
 * last name included, is refused with one error (`OutsideRoot`, "it leads outside the root through
 * a symbolic link"), whatever the tool and whatever is outside: existing or not, file or folder.
 * Links that stay inside work.
 *
 * Text checks only turn away forms that have no business in a relative path (absolute, "..", NUL,
 * backslashes, drive letters, URL encoding) with a clearer message than "outside the root" would give.
 *
 * A check is only as good as its use, so operations never go back to the path text after the
 * check: the checked folder is opened (O_DIRECTORY | O_NOFOLLOW) and verified through /proc/self/fd,
 * and the final name is reached through that open folder (`/proc/self/fd/<fd>/<name>`, openat in
 * effect) with O_NOFOLLOW; what was opened is verified again. A folder swapped for a link between
 * check and use then either fails to open or shows its real location, which is refused with the same
 * error. Where /proc is missing, the opened file's device and inode must match the checked path's,
 * and that path's realpath must still be inside.
 */
import { existsSync, constants as fsConstants } from "node:fs";
import { type FileHandle, lstat, open, readlink, realpath, stat } from "node:fs/promises";
import { basename, dirname, join, resolve, sep } from "node:path";
import { describeError, GatewayError, InvalidArguments } from "../../core/errors.ts";

const PROC_FD = "/proc/self/fd";
const O_NOFOLLOW = fsConstants.O_NOFOLLOW ?? 0;
const O_DIRECTORY = fsConstants.O_DIRECTORY ?? 0;

/** Links followed for one path before it is refused as a loop (the kernel's limit). */
const MAX_LINKS = 40;

/** Why a path that resolves outside the root is refused: one reason, whichever tool and however. */
export const LEADS_OUTSIDE = "it leads outside the root through a symbolic link";

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

export function notFound(path: string, owner: string): GatewayError {
  return new GatewayError(
    "backend_error",
    `"${path}" does not exist under the root of ${owner}; list its folder to see what is there.`,
    { data: { path, reason: "not_found" } },
  );
}

export function notAFile(given: string, what: string): GatewayError {
  return new GatewayError(
    "backend_error",
    `"${given}" is ${what}, not a file; use "list" to see what it holds.`,
    {
      data: { path: given, reason: "not_a_file" },
    },
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

/** Where a path leads under the one rule; every tool starts from this. */
export interface Located {
  readonly path: RelPath;
  /** The real path the whole path resolves to, links followed: inside the root. */
  readonly real: string;
  /** Whether something exists there. */
  readonly exists: boolean;
  /**
   * The real folder that holds the last name, undefined when a folder on the way does not exist.
   * Operations on the entry itself (stat of a link, move, delete) go through it.
   */
  readonly dir: string | undefined;
  /** The last name as the caller wrote it; undefined for the root itself. */
  readonly name: string | undefined;
}

/** A folder opened and verified to be inside the root; operations reach names through it. */
export interface OpenDir {
  readonly handle: FileHandle;
  readonly real: string;
  /** How to name an entry of this folder without going back to the path text. */
  entry(name: string): string;
}

interface Step {
  readonly path: string;
  readonly exists: boolean;
}

function errorCode(error: unknown): string | undefined {
  return (error as NodeJS.ErrnoException | undefined)?.code;
}

/**
 * The root of one filesystem backend and every check against it. Exported for tests, which drive
 * check and use separately to prove that a swap in between is caught.
 */
export class RootJail {
  readonly root: string;
  readonly owner: string;
  readonly #useProc: boolean;
  /** Told when a check refuses what an earlier check allowed (a swap mid-operation): for the log. */
  readonly #onRace: ((given: string, what: string) => void) | undefined;

  /** `root` must already be a real path (no symlinks), as `realpath` returns it. */
  constructor(
    root: string,
    owner: string,
    options: { useProcFd?: boolean; onRace?: (given: string, what: string) => void } = {},
  ) {
    this.root = root;
    this.owner = owner;
    this.#useProc = options.useProcFd ?? existsSync(PROC_FD);
    this.#onRace = options.onRace;
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

  /**
   * The containment rule (see the top of this file): where `path` leads, or OutsideRoot when it
   * leads outside at any level. Every tool calls this, and only this, to decide.
   */
  async locate(path: RelPath): Promise<Located> {
    const name = path.segments[path.segments.length - 1];
    let current: Step = { path: this.root, exists: true };
    let dir: string | undefined;
    const links = { followed: 0 };
    try {
      for (const segment of path.segments) {
        dir = current.exists ? current.path : undefined;
        current = current.exists
          ? await this.#follow(current.path, segment, links)
          : { path: join(current.path, segment), exists: false };
        if (!this.isInside(current.path)) throw new OutsideRoot(path.given, this.owner, LEADS_OUTSIDE);
      }
    } catch (error) {
      throw this.fsError(error, path.given);
    }
    return { path, real: current.path, exists: current.exists, dir, name };
  }

  /** `name` in the real folder `dir`, a link replaced by where it leads. */
  async #follow(dir: string, name: string, links: { followed: number }): Promise<Step> {
    const entry = join(dir, name);
    let isLink: boolean;
    try {
      isLink = (await lstat(entry)).isSymbolicLink();
    } catch (error) {
      if (errorCode(error) === "ENOENT") return { path: entry, exists: false };
      throw error;
    }
    if (!isLink) return { path: entry, exists: true };
    if (++links.followed > MAX_LINKS) {
      throw Object.assign(new Error("too many symbolic links"), { code: "ELOOP" });
    }
    const target = await readlink(entry);
    // A real folder's ".." is its real parent, so a target is walked name by name, like the kernel does.
    let current: Step = { path: target.startsWith("/") ? "/" : dir, exists: true };
    for (const part of target.split("/")) {
      if (part === "" || part === ".") continue;
      if (!current.exists) current = { path: resolve(current.path, part), exists: false };
      else if (part === "..") current = { path: dirname(current.path), exists: true };
      else current = await this.#follow(current.path, part, links);
    }
    return current;
  }

  /** Opens a checked real folder and verifies what was opened is still inside. */
  async openDir(real: string, given: string): Promise<OpenDir> {
    const handle = await this.#openVerified(
      real,
      fsConstants.O_RDONLY | O_DIRECTORY | O_NOFOLLOW,
      real,
      given,
    );
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
      const creating = create ? fsConstants.O_CREAT | fsConstants.O_EXCL : 0;
      return await this.#openVerified(dir.entry(basename(real)), flags | O_NOFOLLOW | creating, real, given);
    } finally {
      await dir.handle.close();
    }
  }

  /** Opens `path` (the checked `real`, or the way to it through a verified folder) and verifies it. */
  async #openVerified(path: string, flags: number, real: string, given: string): Promise<FileHandle> {
    let handle: FileHandle;
    try {
      handle = await open(path, flags, 0o644);
    } catch (error) {
      throw this.#openError(error, given, real);
    }
    try {
      await this.#verify(handle, real, given);
    } catch (error) {
      await handle.close();
      throw error;
    }
    return handle;
  }

  /** A checked path that is a link at open time was swapped after the check: the one refusal. */
  #openError(error: unknown, given: string, real: string): GatewayError {
    if (errorCode(error) === "ELOOP") {
      this.#onRace?.(given, `${real} became a symbolic link after it was checked`);
      return new OutsideRoot(given, this.owner, LEADS_OUTSIDE);
    }
    return this.fsError(error, given);
  }

  async #verify(handle: FileHandle, expected: string, given: string): Promise<void> {
    if (this.#useProc) {
      const actual = await readlink(`${PROC_FD}/${handle.fd}`);
      if (this.isInside(actual)) return;
      this.#onRace?.(given, `${expected} opened as ${actual}: a folder on its way became a link`);
      throw new OutsideRoot(given, this.owner, LEADS_OUTSIDE);
    }
    const [opened, checked] = await Promise.all([handle.stat(), stat(expected).catch(() => undefined)]);
    if (
      checked &&
      opened.dev === checked.dev &&
      opened.ino === checked.ino &&
      this.isInside(await realpath(expected))
    )
      return;
    this.#onRace?.(given, `${expected} changed while it was being opened`);
    throw new OutsideRoot(given, this.owner, LEADS_OUTSIDE);
  }

  /** A filesystem error as a message about the caller's path, never showing real paths. */
  fsError(error: unknown, given: string): GatewayError {
    const code = errorCode(error);
    if (error instanceof GatewayError) return error;
    if (code === "ENOENT") return notFound(given, this.owner);
    if (code === "ELOOP") {
      return new GatewayError(
        "backend_error",
        `"${given}" goes through more than ${MAX_LINKS} symbolic links (a loop) in ${this.owner}; check the links on its way.`,
        { data: { path: given, reason: "link_loop" } },
      );
    }
    if (code === "EISDIR") return notAFile(given, "a folder");
    if (code === "ENOTDIR") {
      return new GatewayError(
        "backend_error",
        `"${given}" is, or goes through, a file where a folder was expected in ${this.owner}; check the path.`,
        { data: { path: given, reason: "not_a_folder" } },
      );
    }
    if (code === "EACCES" || code === "EPERM") {
      return new GatewayError(
        "backend_error",
        `Permission denied for "${given}" in ${this.owner}; the gateway's user may not access it.`,
        { data: { path: given, reason: "permission" } },
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
