/**
 * How the `switchboard` command ends. Exit codes: 0 success; 1 the work failed (a tool answered
 * isError, an unknown tool, a server not up, a port in use); 2 the input is wrong (usage, config,
 * arguments) and retrying cannot help. Errors are one line on stderr (plus one line per problem for
 * config validation), never a stack.
 */
import { describeError, GatewayError } from "../core/errors.ts";

export const EXIT_FAILURE = 1;
export const EXIT_USAGE = 2;

/** Input the user has to change (as opposed to a failure of the work itself): exit code 2. */
export class UsageError extends Error {}

/** Prints what went wrong and exits: 2 for usage and config problems, 1 otherwise. */
export function fail(error: unknown): never {
  process.stderr.write(`switchboard: ${describeError(error)}\n`);
  const usage =
    error instanceof UsageError || (error instanceof GatewayError && error.code.startsWith("config_"));
  process.exit(usage ? EXIT_USAGE : EXIT_FAILURE);
}
