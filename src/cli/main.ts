/**
 * The `switchboard` command. The only module that prints to stdout or calls process.exit.
 *
 * Exit codes: 0 success; 1 the work failed (a tool answered isError, an unknown tool, a server not
 * up, a port in use); 2 the input is wrong (usage, config, arguments) and retrying cannot help.
 * Errors are one line on stderr (plus one line per problem for config validation), never a stack.
 */
import { Command, InvalidArgumentError, Option } from "commander";
import type { Config } from "../config/schema.ts";
import { describeError, GatewayError } from "../core/errors.ts";
import type { Gateway } from "../gateway/gateway.ts";
import type { Logger, LogLevel } from "../observability/logger.ts";
import type { HttpServing } from "../server/http.ts";
import type { StdioServing } from "../server/stdio.ts";
import { VERSION } from "../version.ts";
import { formatTable } from "./table.ts";

// The config layer, the gateway and the servers are loaded when a command needs them: --help,
// --version, usage errors and `check` answer without paying for what they do not use.
const load = {
  config: () => import("../config/load.ts"),
  gateway: () => import("../gateway/gateway.ts"),
  logger: () => import("../observability/logger.ts"),
  http: () => import("../server/http.ts"),
  stdio: () => import("../server/stdio.ts"),
};

const LOG_LEVELS: readonly LogLevel[] = ["fatal", "error", "warn", "info", "debug", "trace", "silent"];

const EXIT_FAILURE = 1;
const EXIT_USAGE = 2;

/** Input the user has to change (as opposed to a failure of the work itself): exit code 2. */
class UsageError extends Error {}

/** Prints what went wrong and exits: 2 for usage and config problems, 1 otherwise. */
function fail(error: unknown): never {
  process.stderr.write(`switchboard: ${describeError(error)}\n`);
  const usage =
    error instanceof UsageError || (error instanceof GatewayError && error.code.startsWith("config_"));
  process.exit(usage ? EXIT_USAGE : EXIT_FAILURE);
}

/** Node's wording ("listen EADDRINUSE: address already in use") names the problem but not the way out. */
function listenFailure(error: unknown, where: { host: string; port: number }): Error {
  const at = `${where.host.includes(":") ? `[${where.host}]` : where.host}:${where.port}`;
  const reasons: Record<string, string> = {
    EADDRINUSE: "the port is in use. Stop what holds it, or pick another port with --http",
    EACCES: "permission denied (ports below 1024 need privileges). Pick another port with --http",
    EADDRNOTAVAIL:
      "no network interface has that address. Use 127.0.0.1, 0.0.0.0 or an address of this machine",
    ENOTFOUND: "the host name does not resolve. Use an IP address or a known host name",
  };
  const code = (error as NodeJS.ErrnoException | undefined)?.code ?? "";
  const reason = Object.hasOwn(reasons, code) ? reasons[code] : describeError(error);
  return new Error(`cannot listen on ${at}: ${reason}.`, { cause: error });
}

function parseHostPort(value: string): { host: string; port: number } {
  const match = /^(?:(\[[^\]]+\]|[^:]+):)?(\d{1,5})$/.exec(value);
  const port = match ? Number(match[2]) : Number.NaN;
  if (!match || port > 65535) {
    throw new InvalidArgumentError(
      `Expected [host:]port with a port from 0 to 65535, e.g. 8931, 127.0.0.1:8931 or [::1]:8931.`,
    );
  }
  const host = match[1]?.replace(/^\[|\]$/g, "");
  return { host: host ?? "127.0.0.1", port };
}

async function loadConfig(path: string): Promise<Config> {
  const { loadConfigFile } = await load.config();
  return loadConfigFile(path);
}

async function loggerFor(config: Config, level: LogLevel | undefined): Promise<Logger> {
  const { createLogger } = await load.logger();
  return createLogger({ level: level ?? config.logging.level });
}

async function createGateway(config: Config, logger: Logger): Promise<Gateway> {
  const { Gateway } = await load.gateway();
  return new Gateway(config, logger);
}

interface ServeOptions {
  config: string;
  stdio?: boolean;
  http?: { host: string; port: number };
  logLevel?: LogLevel;
}

async function serve(options: ServeOptions): Promise<void> {
  const config = await loadConfig(options.config);
  const logger = await loggerFor(config, options.logLevel);
  const gateway = await createGateway(config, logger);
  // Without a transport flag the gateway serves stdio: that is how MCP clients launch a local server.
  const useStdio = options.stdio === true || options.http === undefined;
  let http: HttpServing | undefined;
  let stdio: StdioServing | undefined;
  let stopping = false;

  const shutdown = async (reason: string) => {
    if (stopping) return;
    stopping = true;
    logger.info({ reason, inFlight: gateway.inFlight }, "shutting down");
    http?.stopAccepting();
    const drained = await gateway.drain(config.gateway.shutdownTimeoutMs);
    if (!drained) {
      logger.warn(
        { inFlight: gateway.inFlight },
        "shutdown deadline passed with calls still running; closing",
      );
    }
    await http?.close();
    await stdio?.close();
    await gateway.close();
    logger.info("stopped");
    logger.flush();
    setTimeout(() => process.exit(0), 50).unref();
  };
  process.once("SIGTERM", () => void shutdown("SIGTERM"));
  process.once("SIGINT", () => void shutdown("SIGINT"));

  // Loaded while the backends start, not after.
  const transports = Promise.all([
    options.http ? load.http() : undefined,
    useStdio ? load.stdio() : undefined,
  ]);
  await gateway.start();
  const [httpModule, stdioModule] = await transports;
  if (options.http && httpModule) {
    const httpConfig = config.server.http;
    try {
      http = await httpModule.serveGatewayOnHttp(gateway, {
        ...httpConfig,
        host: options.http.host,
        port: options.http.port,
      });
    } catch (error) {
      // The backends are already running: stop them rather than leave them to notice a closed stdin.
      stopping = true;
      await gateway.close();
      logger.flush();
      throw listenFailure(error, options.http);
    }
    logger.info(
      {
        url: http.url,
        connect: {
          claudeCode: `claude mcp add --transport http switchboard ${http.url}`,
          anyClient: `Streamable HTTP endpoint: ${http.url}`,
        },
      },
      "listening",
    );
  }
  if (stdioModule) {
    stdio = stdioModule.serveGatewayOnStdio(gateway, () => void shutdown("stdin closed"));
    logger.info("serving MCP on stdio");
  }
}

async function withGateway<T>(
  configPath: string,
  logLevel: LogLevel | undefined,
  run: (g: Gateway) => Promise<T>,
) {
  const config = await loadConfig(configPath);
  const logger = await loggerFor(config, logLevel ?? "warn");
  const gateway = await createGateway(config, logger);
  try {
    await gateway.start();
    return await run(gateway);
  } finally {
    await gateway.close();
    logger.flush();
  }
}

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

  const configOption = () =>
    new Option("-c, --config <file>", "config file (JSON or YAML; a Claude mcpServers file works)").default(
      "switchboard.yaml",
    );
  const logLevelOption = () =>
    new Option("--log-level <level>", "log level (overrides the config)").choices(LOG_LEVELS);

  program
    .command("serve")
    .description("start the gateway; serves stdio when neither --stdio nor --http is given")
    .addOption(configOption())
    .option("--stdio", "serve MCP on stdin/stdout (the default without --http; give both to serve both)")
    .option(
      "--http <[host:]port>",
      "serve Streamable HTTP on this port (0 for any free one; default host 127.0.0.1)",
      parseHostPort,
    )
    .addOption(logLevelOption())
    .action((opts: ServeOptions) => serve(opts).catch(fail));

  program
    .command("check")
    .description("validate the config and print a summary of servers and settings (no secrets)")
    .addOption(configOption())
    .option("--json", "print JSON")
    .action(async (opts: { config: string; json?: boolean }) => {
      try {
        const config = await loadConfig(opts.config);
        const { summarizeConfig } = await load.config();
        const summary = summarizeConfig(config);
        if (opts.json) {
          process.stdout.write(`${JSON.stringify(summary, null, 2)}\n`);
          return;
        }
        process.stdout.write(`${opts.config}: valid\n\n`);
        const rows = summary.servers.map((s) => ({
          server: s.name,
          type: s.type,
          enabled: String(s.enabled),
          prefix: s.prefix === "" ? "(none)" : s.prefix,
          target: "target" in s ? s.target : s.type === "stdio" ? [s.command, ...s.args].join(" ") : s.url,
          timeoutMs: String(s.timeoutMs),
        }));
        process.stdout.write(`${formatTable(rows)}\n`);
      } catch (error) {
        fail(error);
      }
    });

  program
    .command("tools")
    .description("connect to the servers and print the aggregated catalog (exit 1 if a server is not up)")
    .addOption(configOption())
    .option("--json", "print JSON (tools, resources, resource templates, prompts)")
    .addOption(logLevelOption())
    .action(async (opts: { config: string; json?: boolean; logLevel?: LogLevel }) => {
      try {
        await withGateway(opts.config, opts.logLevel, async (gateway) => {
          const catalog = gateway.catalog;
          if (opts.json) {
            const out = {
              tools: catalog.tools(),
              resources: catalog.resources(),
              resourceTemplates: catalog.resourceTemplates(),
              prompts: catalog.prompts(),
            };
            process.stdout.write(`${JSON.stringify(out, null, 2)}\n`);
            return;
          }
          const rows = catalog.toolRoutes().map((r) => ({
            tool: r.exposedName,
            server: r.server,
            description: oneLine(r.definition.description ?? "", 70),
          }));
          process.stdout.write(`${formatTable(rows)}\n`);
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

  program
    .command("call")
    .description("make one tool call through the gateway and print the result as JSON")
    .argument("<tool>", "exposed tool name, e.g. everything__echo")
    .argument("[json-args]", "arguments as a JSON object", "{}")
    .addOption(configOption())
    .addOption(logLevelOption())
    .action(async (tool: string, jsonArgs: string, opts: { config: string; logLevel?: LogLevel }) => {
      const args = parseToolArguments(tool, jsonArgs);
      try {
        const result = await withGateway(opts.config, opts.logLevel, (gateway) =>
          gateway.callTool(tool, args),
        );
        process.stdout.write(`${JSON.stringify(result, null, 2)}\n`);
        if (result.isError) process.exitCode = 1;
      } catch (error) {
        fail(error);
      }
    });

  return program;
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

function oneLine(text: string, max: number): string {
  const flat = text.replace(/\s+/g, " ").trim();
  return flat.length > max ? `${flat.slice(0, max - 1)}…` : flat;
}

await buildProgram().parseAsync(process.argv);
