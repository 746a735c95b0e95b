#!/usr/bin/env node
/**
 * The `switchboard` command. The cli/ folder is the only code that prints to stdout or calls
 * process.exit; exit codes and error lines are in exit.ts, each command (group) in a file of its own.
 *
 * The command files import only what building the program needs (commander, types, small leaf
 * modules); the config layer, the gateway and the servers are imported inside the actions, so --help,
 * --version and usage errors answer without paying for what they do not use.
 */
import { Command } from "commander";
import { VERSION } from "../version.ts";
import { addAuditCommands } from "./audit.ts";
import { addCallCommand } from "./call.ts";
import { addCheckCommand, addToolsCommand } from "./check.ts";
import { EXIT_USAGE } from "./exit.ts";
import { addHealthCommand } from "./health.ts";
import { addLoginCommand } from "./login.ts";
import { addPinsCommands } from "./pins.ts";
import { addReloadCommand } from "./reload.ts";
import { addServeCommand } from "./serve.ts";

export function buildProgram(): Command {
  const program = new Command()
    .name("switchboard")
    .description("A production gateway for MCP servers: one endpoint in front of many.")
    .version(VERSION, "-v, --version")
    // One line that says what is wrong, then where to look, instead of the whole help under it.
    .showHelpAfterError("(add --help for usage)")
    .configureOutput({
      writeErr: (s) => process.stderr.write(s),
      outputError: (s, write) =>
        write(
          `switchboard: ${s.replace(/^error: /, "").replace(/\n\(Did you mean (.+)\?\)/, " (did you mean $1?)")}`,
        ),
    })
    .exitOverride((error) => {
      process.exit(error.exitCode === 0 ? 0 : EXIT_USAGE);
    })
    .addHelpText(
      "after",
      "\nExit codes: 0 success, 1 failure (tool error, unknown tool, server not up), 2 bad usage or config.",
    );

  addServeCommand(program);
  addCheckCommand(program);
  addToolsCommand(program);
  addCallCommand(program);
  addHealthCommand(program);
  addReloadCommand(program);
  addLoginCommand(program);
  addAuditCommands(program);
  addPinsCommands(program);
  return program;
}

await buildProgram().parseAsync(process.argv);
