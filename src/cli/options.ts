/** The options several commands share, spelled and documented once. */
import { Option } from "commander";
import { LOG_LEVELS } from "../config/log-levels.ts";

export function configOption(): Option {
  return new Option(
    "-c, --config <file>",
    "config file (JSON or YAML; a Claude mcpServers file works)",
  ).default("switchboard.yaml");
}

export function logLevelOption(): Option {
  return new Option("--log-level <level>", "log level (overrides the config)").choices(LOG_LEVELS);
}
