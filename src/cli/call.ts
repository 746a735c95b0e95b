/** `switchboard call`: one tool call through a gateway started from the config, its result as JSON. */
import type { Command } from "commander";
import { describeError } from "../core/errors.ts";
import { EXIT_FAILURE, fail, UsageError } from "./exit.ts";
import { type OneShotOptions, withGateway } from "./gateway-session.ts";
import { configOption, logLevelOption, profileOption } from "./options.ts";

export function addCallCommand(program: Command): void {
  program
    .command("call")
    .description("make one tool call through the gateway and print the result as JSON")
    .argument("<tool>", "exposed tool name, e.g. everything__echo")
    .argument("[json-args]", "arguments as a JSON object", "{}")
    .addOption(configOption())
    .addOption(profileOption("call the tool as a client of this profile's endpoint (config profiles)"))
    .addOption(logLevelOption())
    .action(async (tool: string, jsonArgs: string, opts: OneShotOptions) => {
      const args = parseToolArguments(tool, jsonArgs);
      try {
        // A local call, so the principal of local (stdio) clients: auth.stdioPrincipal, else anonymous.
        const result = await withGateway(opts, (gateway) =>
          gateway.callTool(tool, args, {
            principal: gateway.stdioPrincipal,
            transport: "stdio",
            ...(opts.profile !== undefined ? { profile: opts.profile } : {}),
          }),
        );
        process.stdout.write(`${JSON.stringify(result, null, 2)}\n`);
        if (result.isError) process.exitCode = EXIT_FAILURE;
      } catch (error) {
        fail(error);
      }
    });
}

/** Checked before any server starts, so a typo costs nothing. */
function parseToolArguments(tool: string, jsonArgs: string): Record<string, unknown> {
  const example = `e.g. switchboard call ${tool} '{"message":"hi"}'`;
  let parsed: unknown;
  try {
    parsed = JSON.parse(jsonArgs);
  } catch (error) {
    fail(
      new UsageError(`the arguments for ${tool} are not valid JSON (${describeError(error)}); ${example}.`),
    );
  }
  if (typeof parsed !== "object" || parsed === null || Array.isArray(parsed)) {
    const got = parsed === null ? "null" : Array.isArray(parsed) ? "an array" : `a ${typeof parsed}`;
    fail(new UsageError(`the arguments for ${tool} must be a JSON object, got ${got}; ${example}.`));
  }
  return parsed as Record<string, unknown>;
}
