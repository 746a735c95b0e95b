/** The options several commands share, spelled and documented once. */
import { Option } from "commander";
import { LOG_LEVELS } from "../config/log-levels.ts";
import type { Config } from "../config/schema.ts";
import type { LogFormat } from "../observability/logger.ts";
import { UsageError } from "./exit.ts";

export function configOption(): Option {
  return new Option(
    "-c, --config <file>",
    "config file (JSON or YAML; a Claude mcpServers file works)",
  ).default("switchboard.yaml");
}

export function logLevelOption(): Option {
  return new Option("--log-level <level>", "log level (overrides the config)").choices(LOG_LEVELS);
}

export function profileOption(what: string): Option {
  return new Option("--profile <name>", what);
}

/** A `--profile` must name one of the config's profiles. */
export function checkProfileOption(config: Config, profile: string): void {
  if (Object.hasOwn(config.profiles, profile)) return;
  const names = Object.keys(config.profiles);
  throw new UsageError(
    `profile "${profile}" is not in the config; ` +
      (names.length > 0 ? `its profiles are ${names.join(", ")}.` : "it has no profiles (config profiles)."),
  );
}

export function logFormatOption(): Option {
  return new Option(
    "--log-format <format>",
    "log lines on stderr: pretty (readable) or json (default: pretty on a terminal, else json)",
  ).choices(["pretty", "json"] satisfies LogFormat[]);
}
