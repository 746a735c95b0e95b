/**
 * Reviewing tool definition pins, as `switchboard pins` does: list them, show how a changed tool
 * differs from its pin (a unified diff of the two definitions as sorted, indented JSON), and approve
 * the new definition, which every gateway that shares the pins hears of and applies at once.
 */
import { createTwoFilesPatch } from "diff";
import { GatewayError } from "../core/errors.ts";
import { canonicalJson } from "../stores/canonical-json.ts";
import type { PinnedDefinition, PinStore, ToolPin } from "./pin-store.ts";
import { approve } from "./pinning.ts";

export interface PinEntry {
  readonly server: string;
  /** The server's own name for the tool. */
  readonly tool: string;
  readonly pin: ToolPin;
}

/** Every pin of these servers, by server then tool name. */
export async function listPins(store: PinStore, servers: readonly string[]): Promise<PinEntry[]> {
  const entries: PinEntry[] = [];
  for (const server of servers) {
    const pins = await store.read(server);
    for (const tool of Object.keys(pins).sort()) {
      entries.push({ server, tool, pin: pins[tool] as ToolPin });
    }
  }
  return entries;
}

/**
 * The pin `name` means: an exposed name (`fx__mutable`, as `switchboard tools` prints it), or
 * `<server>/<tool>` with the server's own tool name.
 */
export function findPin(entries: readonly PinEntry[], name: string, where: string): PinEntry {
  const slash = name.indexOf("/");
  const found = entries.filter((e) =>
    slash > 0
      ? e.server === name.slice(0, slash) && e.tool === name.slice(slash + 1)
      : e.pin.exposedName === name || e.pin.changed?.exposedName === name,
  );
  if (found.length === 1) return found[0] as PinEntry;
  if (found.length === 0) {
    throw new GatewayError(
      "unknown_tool",
      `No tool "${name}" is pinned in ${where}. Run \`switchboard pins list\` to see the pinned tools ` +
        "(an exposed name, or <server>/<tool>).",
      { data: { tool: name } },
    );
  }
  throw new GatewayError(
    "unknown_tool",
    `"${name}" names a pinned tool of several servers (${found.map((e) => e.server).join(", ")}); ` +
      "name it as <server>/<tool>.",
    { data: { tool: name } },
  );
}

/** How the definition seen differs from the pinned one, as a unified diff ("" when it does not). */
export async function pinDiff(store: PinStore, entry: PinEntry): Promise<string> {
  const changed = entry.pin.changed;
  if (!changed) return "";
  const [pinned, seen] = await Promise.all([
    store.definition(entry.pin.hash),
    store.definition(changed.hash),
  ]);
  return createTwoFilesPatch(
    `${entry.server}/${entry.tool} (pinned)`,
    `${entry.server}/${entry.tool} (seen)`,
    pretty(pinned),
    pretty(seen),
    entry.pin.at,
    changed.at,
  );
}

/**
 * Makes the definition seen the pinned one, and tells the gateways that share the pins. Throws when
 * the tool has no change to approve (another reviewer approved it meanwhile, say).
 */
export async function approvePin(store: PinStore, entry: PinEntry): Promise<ToolPin> {
  let approved: ToolPin | undefined;
  await store.update(entry.server, (pins) => {
    const next = approve(pins, entry.tool);
    approved = next?.[entry.tool];
    return next;
  });
  if (!approved) {
    throw new GatewayError(
      "unknown_tool",
      `Tool "${entry.pin.exposedName}" has no change to approve: its definition is the pinned one.`,
      { data: { server: entry.server, tool: entry.tool } },
    );
  }
  await store.announce(entry.server);
  return approved;
}

/** A definition as sorted, indented JSON, one property a line; a missing one says so. */
function pretty(definition: PinnedDefinition | undefined): string {
  if (definition === undefined) return "(definition not kept)\n";
  return `${JSON.stringify(JSON.parse(canonicalJson(definition)), null, 2)}\n`;
}
