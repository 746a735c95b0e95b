/**
 * A built-in backend that exposes one folder as MCP tools: list, read, stat and search, plus write,
 * move and delete when `readOnly: false`.
 *
 * Every tool decides containment the same way, with `RootJail.locate` (root-jail.ts): a path that
 * leads outside the root at any level, through any link, is refused with one error, and what is
 * opened is verified to be what was checked. Listings and searches follow no link out either: a
 * listing names a link that leads outside (kind "link") without its target, size or anything else
 * about it, and a search skips it.
 */
import type { Stats } from "node:fs";
import { realpath, stat } from "node:fs/promises";
import { resolve } from "node:path";
import { GatewayError } from "../../core/errors.ts";
import {
  type BackendCatalog,
  type CallContext,
  type CallToolResult,
  EMPTY_CATALOG,
  type HealthResult,
  type ToolCall,
} from "../../core/types.ts";
import type { Logger } from "../../observability/logger.ts";
import { callSignals, callTimeoutOf, failureResult, ToolsOnlyBackend } from "../base.ts";
import type { FilesystemBackendConfig } from "./config.ts";
import type { FsCall } from "./files.ts";
import { RootJail } from "./root-jail.ts";
import { filesystemTools, WRITE_TOOLS } from "./tools.ts";

export type { FilesystemBackendConfig } from "./config.ts";

type Config = FilesystemBackendConfig & { readonly timeoutMs?: number };

export class FilesystemBackend extends ToolsOnlyBackend<CallToolResult, FsCall> {
  readonly #config: FilesystemBackendConfig;
  readonly #rootPath: string;
  readonly #timeoutMs: number;
  readonly #catalog: BackendCatalog;
  readonly #owner: string;
  #jail: RootJail | undefined;

  constructor(name: string, config: Config, logger: Logger) {
    super(name, logger, { kind: "filesystem" });
    this.#config = config;
    this.#rootPath = resolve(config.root);
    this.#timeoutMs = callTimeoutOf(config);
    this.#owner = `backend "${name}"`;
    this.offer(filesystemTools(config));
    this.#catalog = { ...EMPTY_CATALOG, tools: this.tools };
  }

  catalog(): BackendCatalog {
    return this.#catalog;
  }

  protected async open(): Promise<void> {
    try {
      await this.#root();
      this.setState("up");
    } catch (error) {
      const reason = this.reasonOf(error);
      this.log.error({ root: this.#rootPath, err: reason }, "filesystem root is not usable");
      this.setState("down", reason);
    }
  }

  async callTool(call: ToolCall, ctx: CallContext): Promise<CallToolResult> {
    const signals = callSignals(ctx.signal, this.#timeoutMs);
    try {
      const jail = await this.#root();
      const { spec, args } = this.prepare(call);
      return await spec.run(args, { jail, config: this.#config, signal: signals.any });
    } catch (error) {
      const cancelled = this.stoppedByCaller(
        ctx.signal,
        `"${call.tool}" on backend "${this.name}" was cancelled by the client.`,
        { cause: error },
      );
      if (cancelled) throw cancelled;
      if (signals.timeout.aborted) {
        throw new GatewayError(
          "timeout",
          `"${call.tool}" on backend "${this.name}" did not finish within ${this.#timeoutMs} ms; narrow the path or pattern.`,
          { cause: error },
        );
      }
      return failureResult(call.tool, error);
    }
  }

  protected override whyNoTool(tool: string): string | undefined {
    if (!this.#config.readOnly || !WRITE_TOOLS.includes(tool)) return undefined;
    return `It changes files, and this backend is read-only; set readOnly: false to allow changes.`;
  }

  async health(_signal?: AbortSignal): Promise<HealthResult> {
    return this.probe(
      async () => {
        await this.#root(true);
        this.setState("up");
      },
      // For operators: unlike a caller, they may see where the root is.
      (reason) => `${reason} (root: ${this.#rootPath})`,
    );
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
      // Callers are not told where the root is on the host; the log at start and health say it.
      const code = (error as NodeJS.ErrnoException).code;
      throw new GatewayError(
        "backend_unavailable",
        `The root folder of backend "${this.name}" cannot be used${code ? ` (${code})` : ""}. ` +
          "Create it or fix `root` in the config.",
        { data: { server: this.name }, cause: error },
      );
    }
    if (!info.isDirectory()) {
      throw new GatewayError(
        "backend_unavailable",
        `The root of backend "${this.name}" is not a folder; point \`root\` at a folder.`,
        { data: { server: this.name } },
      );
    }
    if (this.#jail?.root !== real) {
      this.#jail = new RootJail(real, this.#owner, {
        onRace: (path, what) => this.log.warn({ path, what }, "refused a path that changed after its check"),
      });
    }
    if (this.state === "down") this.setState("up");
    return this.#jail;
  }
}

export function createFilesystemBackend(name: string, config: Config, logger: Logger): FilesystemBackend {
  return new FilesystemBackend(name, config, logger);
}
