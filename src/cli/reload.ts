/**
 * Reloading the config of a running `switchboard serve`: when its file changes (`gateway.reload.watch`),
 * on SIGHUP, or when `switchboard reload --url` asks the gateway's HTTP endpoint. Each reload loads
 * and validates the whole file anew (variables, secrets, schema): a file that does not load changes
 * nothing, is logged with where it is wrong, and counted; a file that loads is applied by difference
 * (see gateway/reload.ts).
 *
 * Editors save in several steps (write a temporary file, rename it over; or truncate, then write), and
 * Kubernetes swaps a mounted ConfigMap by a symbolic link: the folder is watched, not the file, and a
 * reload happens when the file's content differs from what was last loaded, once it has been quiet
 * for `debounceMs`.
 */
import { createHash } from "node:crypto";
import { type FSWatcher, watch } from "node:fs";
import { readFile } from "node:fs/promises";
import { dirname } from "node:path";
import type { Command } from "commander";
import { describeError } from "../core/errors.ts";
import type { Gateway, ReloadReport } from "../gateway/gateway.ts";
import type { Logger } from "../observability/logger.ts";
import { EXIT_FAILURE, fail, UsageError } from "./exit.ts";
import { type Loaded, loadConfig } from "./gateway-session.ts";

export type ReloadOutcome =
  | { readonly ok: true; readonly report: ReloadReport }
  | { readonly ok: false; readonly reason: string };

export interface ConfigReloads {
  /** Loads the file and applies it; never rejects. */
  reload(trigger: string): Promise<ReloadOutcome>;
  close(): void;
}

/** Secrets of configs replaced by a reload stay redacted for a while: draining servers may print them. */
const RETIRED_SECRETS = 4;

export function startConfigReloads(
  path: string,
  loaded: Loaded,
  gateway: Gateway,
  logger: Logger,
): ConfigReloads {
  let lastHash: string | undefined;
  const retired: Loaded["secrets"][] = [];
  void contentHash(path).then((hash) => {
    lastHash ??= hash;
  });

  const reload = async (trigger: string): Promise<ReloadOutcome> => {
    let next: Loaded;
    try {
      next = await loadConfig(path);
    } catch (error) {
      const reason = describeError(error);
      logger.error(
        { trigger, path, err: reason },
        `config reload refused: ${reason} The gateway keeps running the config it had.`,
      );
      gateway.reloadRefused(reason);
      return { ok: false, reason };
    }
    lastHash = await contentHash(path);
    try {
      const report = await gateway.reload(next.config);
      // The new config's secrets are the ones to refresh and redact; the old ones stay redacted.
      retired.unshift(loaded.secrets);
      for (const old of retired.splice(RETIRED_SECRETS)) old.close();
      loaded.secrets.close();
      loaded.adopt(next, retired);
      return { ok: true, report };
    } catch (error) {
      next.secrets.close();
      const reason = describeError(error);
      logger.error({ trigger, err: error }, `config reload failed while applying it: ${reason}`);
      gateway.reloadRefused(reason);
      return { ok: false, reason };
    }
  };

  let watcher: FSWatcher | undefined;
  let timer: NodeJS.Timeout | undefined;
  const settings = loaded.config.gateway.reload;
  if (settings.watch) {
    try {
      watcher = watch(dirname(path), { persistent: false }, () => {
        clearTimeout(timer);
        timer = setTimeout(async () => {
          const hash = await contentHash(path);
          if (hash === undefined || hash === lastHash) return;
          lastHash = hash;
          await reload("file changed");
        }, settings.debounceMs);
      });
      watcher.on("error", (error) =>
        logger.warn(
          { err: describeError(error), path },
          "stopped watching the config file; SIGHUP still reloads",
        ),
      );
    } catch (error) {
      logger.warn({ err: describeError(error), path }, "cannot watch the config file; SIGHUP still reloads");
    }
  }
  const onHangup = () => void reload("SIGHUP");
  process.on("SIGHUP", onHangup);
  return {
    reload,
    close() {
      clearTimeout(timer);
      watcher?.close();
      process.off("SIGHUP", onHangup);
      for (const old of retired) old.close();
    },
  };
}

/** The file's content as a hash, or undefined while it cannot be read (mid-rename, say). */
async function contentHash(path: string): Promise<string | undefined> {
  try {
    return createHash("sha256")
      .update(await readFile(path))
      .digest("hex");
  } catch {
    return undefined;
  }
}

export function addReloadCommand(program: Command): void {
  program
    .command("reload")
    .description("make a running gateway reload its config file (POST /admin/reload)")
    .requiredOption("--url <url>", "the gateway's MCP endpoint, e.g. http://127.0.0.1:8931/mcp")
    .option("--api-key <key>", "an API key of a principal with an admin role (also SWITCHBOARD_API_KEY)")
    .option("--token <jwt>", "a bearer token of a principal with an admin role (also SWITCHBOARD_TOKEN)")
    .action(async (opts: { url: string; apiKey?: string; token?: string }) => {
      let target: URL;
      try {
        target = new URL("/admin/reload", opts.url);
      } catch {
        fail(
          new UsageError(
            `--url must be the gateway's URL, e.g. http://127.0.0.1:8931/mcp; got "${opts.url}".`,
          ),
        );
      }
      const apiKey = opts.apiKey ?? process.env.SWITCHBOARD_API_KEY;
      const token = opts.token ?? process.env.SWITCHBOARD_TOKEN;
      try {
        const response = await fetch(target, {
          method: "POST",
          headers: {
            ...(apiKey ? { "x-api-key": apiKey } : {}),
            ...(token ? { authorization: `Bearer ${token}` } : {}),
          },
          signal: AbortSignal.timeout(120_000),
        });
        const text = await response.text();
        process.stdout.write(`${text.trim()}\n`);
        if (!response.ok) process.exitCode = EXIT_FAILURE;
      } catch (error) {
        fail(
          new Error(`cannot reach the gateway at ${target.origin}: ${describeError(error)}`, {
            cause: error,
          }),
        );
      }
    });
}
