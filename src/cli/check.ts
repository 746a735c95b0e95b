/**
 * `switchboard check` and `switchboard tools`: what a config declares (validated, summarized, with no
 * secret in it) and what its servers offer once connected (the aggregated catalog).
 */
import type { Command } from "commander";
import type { Config } from "../config/schema.ts";
import { EXIT_FAILURE, fail } from "./exit.ts";
import { loadConfig, type OneShotOptions, withGateway } from "./gateway-session.ts";
import { configOption, logLevelOption, profileOption } from "./options.ts";
import { formatTable, oneLine } from "./table.ts";

export function addCheckCommand(program: Command): void {
  program
    .command("check")
    .description("validate the config and print a summary of servers and settings (no secrets)")
    .addOption(configOption())
    .option("--json", "print JSON")
    .action(async (opts: { config: string; json?: boolean }) => {
      try {
        const loaded = await loadConfig(opts.config);
        loaded.secrets.close();
        const [{ summarizeConfig }, { redactSecrets }] = await Promise.all([
          import("../config/summary.ts"),
          import("../core/redact.ts"),
        ]);
        const summary = summarizeConfig(loaded.config);
        const warnings = [...loaded.warnings.map((w) => w.message), ...unsafeSettings(loaded.config)];
        // The summary names no secret on purpose; redacting by value catches one pasted in a plain field.
        const print = (text: string) => process.stdout.write(redactSecrets(text, loaded.secrets.values()));
        if (opts.json) {
          print(`${JSON.stringify({ ...summary, warnings }, null, 2)}\n`);
          return;
        }
        print(`${opts.config}: valid\n\n`);
        const rows = summary.servers.map((s) => ({
          server: s.name,
          type: s.type,
          enabled: String(s.enabled),
          prefix: s.prefix === "" ? "(none)" : s.prefix,
          target: "target" in s ? s.target : s.type === "stdio" ? [s.command, ...s.args].join(" ") : s.url,
          timeoutMs: String(s.timeoutMs),
        }));
        print(`${formatTable(rows)}\n`);
        for (const warning of warnings) print(`\nwarning: ${warning}\n`);
      } catch (error) {
        fail(error);
      }
    });
}

export function addToolsCommand(program: Command): void {
  program
    .command("tools")
    .description("connect to the servers and print the aggregated catalog (exit 1 if a server is not up)")
    .addOption(configOption())
    .option("--json", "print JSON (tools, resources, resource templates, prompts)")
    .addOption(profileOption("print what this profile's endpoint offers (config profiles)"))
    .addOption(logLevelOption())
    .action(async (opts: OneShotOptions & { json?: boolean }) => {
      try {
        await withGateway(opts, async (gateway) => {
          // What the endpoint offers, before anyone's access rules: the whole catalog, or a profile's.
          const visibility = gateway.visibilityFor(opts.profile);
          if (opts.json) {
            process.stdout.write(`${JSON.stringify(visibility.offered(), null, 2)}\n`);
            return;
          }
          const offered = gateway.catalog
            .toolRoutes()
            .filter((r) => visibility.offers(r.server, r.exposedName));
          // Tools whose definition changed since it was pinned (config pinning) are marked; blocked
          // ones are listed too, though no client sees them until they are approved.
          const changes = gateway.pins.changes().filter((c) => visibility.offers(c.server, c.exposedName));
          const changed = new Map(changes.map((c) => [c.exposedName, c]));
          const rows = [
            ...offered.map((r) => ({
              tool: r.exposedName,
              server: r.server,
              ...(changes.length > 0 ? { pin: changed.has(r.exposedName) ? "changed" : "" } : {}),
              description: oneLine(r.definition.description ?? "", 70),
            })),
            ...changes
              .filter((c) => c.blocked)
              .map((c) => ({
                tool: c.exposedName,
                server: c.server,
                pin: "blocked",
                description: oneLine(c.definition.description ?? "", 70),
              })),
          ];
          process.stdout.write(`${formatTable(rows)}\n`);
          if (changes.length > 0) {
            process.stderr.write(
              `switchboard: ${changes.length} tool definition(s) changed since pinned: review with ` +
                "`switchboard pins diff <tool>`, approve with `switchboard pins approve <tool>`\n",
            );
          }
          const down = gateway.backends().filter((b) => b.state !== "up");
          if (down.length > 0) {
            process.stderr.write(
              `switchboard: not up, so their tools are missing: ${down.map((b) => `${b.name} (${b.state})`).join(", ")}\n`,
            );
            process.exitCode = EXIT_FAILURE;
          }
        });
      } catch (error) {
        fail(error);
      }
    });
}

/** Safeguards the config turns off on purpose, for `check` to show so that nobody runs one unawares. */
function unsafeSettings(config: Config): string[] {
  return Object.entries(config.backends).flatMap(([name, backend]) =>
    backend.type === "postgres" && backend.allowPrivilegedRole
      ? [
          `backend "${name}" has allowPrivilegedRole: true (unsafe): it serves even if its database role ` +
            "can run programs or read files on the database host, which read-only mode does not prevent",
        ]
      : [],
  );
}
