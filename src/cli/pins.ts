/**
 * `switchboard pins list | diff | approve`: the tool definition pins of a config (config `pinning`),
 * read from where the gateways keep them (the shared store, or the pins file), and the approval of a
 * changed definition, which every gateway that shares the pins applies at once.
 */
import type { Command } from "commander";
import type { Config } from "../config/schema.ts";
import { GatewayError } from "../core/errors.ts";
import type { Store } from "../core/types.ts";
import type { PinStore } from "../gateway/pin-store.ts";
import { EXIT_FAILURE, fail } from "./exit.ts";
import { loadConfig } from "./gateway-session.ts";
import { configOption } from "./options.ts";
import { formatTable } from "./table.ts";

export function addPinsCommands(program: Command): void {
  const pins = program
    .command("pins")
    .description("review tool definition pins (config pinning): list, diff, approve a changed tool");
  pins
    .command("list")
    .description("print every pinned tool, and whether a server changed it since")
    .addOption(configOption())
    .option("--json", "print JSON")
    .action(async (opts: { config: string; json?: boolean }) => {
      await withPins(opts.config, async (store, servers) => {
        const { listPins } = await import("../gateway/pin-review.ts");
        const entries = await listPins(store, servers);
        if (opts.json) {
          process.stdout.write(`${JSON.stringify(entries, null, 2)}\n`);
          return;
        }
        const rows = entries.map((e) => ({
          tool: e.pin.exposedName,
          server: e.server,
          state: e.pin.changed ? "changed" : "pinned",
          "pinned at": e.pin.at,
          "changed at": e.pin.changed?.at ?? "",
        }));
        process.stdout.write(
          `${rows.length > 0 ? formatTable(rows) : `no tool is pinned in ${store.where}`}\n`,
        );
      });
    });
  pins
    .command("diff")
    .description("print how a changed tool's definition differs from its pin (exit 1 if it does not)")
    .argument("<tool>", "an exposed tool name, or <server>/<tool>")
    .addOption(configOption())
    .action(async (tool: string, opts: { config: string }) => {
      await withPins(opts.config, async (store, servers) => {
        const { findPin, listPins, pinDiff } = await import("../gateway/pin-review.ts");
        const entry = findPin(await listPins(store, servers), tool, store.where);
        const diff = await pinDiff(store, entry);
        if (diff === "") {
          process.stdout.write(`${entry.pin.exposedName}: unchanged since it was pinned (${entry.pin.at})\n`);
          process.exitCode = EXIT_FAILURE;
          return;
        }
        process.stdout.write(diff);
      });
    });
  pins
    .command("approve")
    .description("print the diff of a changed tool and pin its new definition (every gateway lists it again)")
    .argument("<tool...>", "exposed tool names, or <server>/<tool>")
    .addOption(configOption())
    .action(async (tools: string[], opts: { config: string }) => {
      await withPins(opts.config, async (store, servers) => {
        const { approvePin, findPin, listPins, pinDiff } = await import("../gateway/pin-review.ts");
        const entries = await listPins(store, servers);
        for (const tool of tools) {
          const entry = findPin(entries, tool, store.where);
          process.stdout.write(await pinDiff(store, entry));
          const approved = await approvePin(store, entry);
          process.stdout.write(
            `approved ${approved.exposedName} (server ${entry.server}): its new definition is pinned\n`,
          );
        }
      });
    });
}

/** Opens the pins of a config (its shared store, connected, or its pins file), runs `work`, closes. */
async function withPins(
  configPath: string,
  work: (store: PinStore, servers: readonly string[]) => Promise<void>,
): Promise<void> {
  let store: Store | undefined;
  try {
    const loaded = await loadConfig(configPath);
    loaded.secrets.close();
    const config = loaded.config;
    store = await sharedStore(config);
    const { openPinStore } = await import("../gateway/pin-store.ts");
    const pins = openPinStore(config.pinning, store, loaded.baseDir);
    await work(pins, serversOf(config));
  } catch (error) {
    fail(error);
  } finally {
    await store?.close();
  }
}

/** The config's Redis store, connected, when the pins live there; a failure to connect is an error. */
async function sharedStore(config: Config): Promise<Store | undefined> {
  if (config.pinning.file !== undefined || config.store.type !== "redis") return undefined;
  const { createStore } = await import("../stores/index.ts");
  const store = await createStore(config.store);
  const health = store.health();
  if (health.status !== "healthy") {
    await store.close();
    throw new GatewayError(
      "store_unavailable",
      `The config keeps its pins in Redis, which does not answer (${health.detail ?? health.status}). ` +
        "Check store.url, or try again once Redis is up.",
    );
  }
  return store;
}

function serversOf(config: Config): string[] {
  return [...Object.keys(config.mcpServers), ...Object.keys(config.backends)];
}
