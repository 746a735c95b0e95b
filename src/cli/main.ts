/**
 * The `switchboard` command. The only module that prints to stdout or calls process.exit.
 */
import { Command, InvalidArgumentError, Option } from "commander";
import { loadConfigFile, summarizeConfig } from "../config/load.ts";
import type { Config } from "../config/schema.ts";
import { describeError, GatewayError } from "../core/errors.ts";
import { Gateway } from "../gateway/gateway.ts";
import { createLogger, type Logger, type LogLevel } from "../observability/logger.ts";
import { type HttpServing, serveGatewayOnHttp } from "../server/http.ts";
import { type StdioServing, serveGatewayOnStdio } from "../server/stdio.ts";
import { VERSION } from "../version.ts";
import { formatTable } from "./table.ts";

const LOG_LEVELS: readonly LogLevel[] = ["fatal", "error", "warn", "info", "debug", "trace", "silent"];

/** A failure the user can fix: printed as one line, exit code 2 for config problems, 1 otherwise. */
function fail(error: unknown): never {
  const message = describeError(error);
  process.stderr.write(`switchboard: ${message}\n`);
  const configProblem = error instanceof GatewayError && error.code.startsWith("config_");
  process.exit(configProblem ? 2 : 1);
}

function parseHostPort(value: string): { host: string; port: number } {
  const match = /^(?:(\[[^\]]+\]|[^:]+):)?(\d{1,5})$/.exec(value);
  const port = match ? Number(match[2]) : Number.NaN;
  if (!match || port > 65535) {
    throw new InvalidArgumentError(`expected [host:]port, e.g. 8931 or 127.0.0.1:8931, got "${value}".`);
  }
  const host = match[1]?.replace(/^\[|\]$/g, "");
  return { host: host ?? "127.0.0.1", port };
}

async function loadConfig(path: string): Promise<Config> {
  return loadConfigFile(path);
}

function loggerFor(config: Config, level: LogLevel | undefined): Logger {
  return createLogger({ level: level ?? config.logging.level });
}

interface ServeOptions {
  config: string;
  stdio?: boolean;
  http?: { host: string; port: number };
  logLevel?: LogLevel;
}

async function serve(options: ServeOptions): Promise<void> {
  const config = await loadConfig(options.config);
  const logger = loggerFor(config, options.logLevel);
  const gateway = new Gateway(config, logger);
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

  await gateway.start();
  if (options.http) {
    const httpConfig = config.server.http;
    http = await serveGatewayOnHttp(gateway, {
      ...httpConfig,
      host: options.http.host,
      port: options.http.port,
    });
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
  if (useStdio) {
    stdio = serveGatewayOnStdio(gateway, () => void shutdown("stdin closed"));
    logger.info("serving MCP on stdio");
  }
}

async function withGateway<T>(
  configPath: string,
  logLevel: LogLevel | undefined,
  run: (g: Gateway) => Promise<T>,
) {
  const config = await loadConfig(configPath);
  const logger = loggerFor(config, logLevel ?? "warn");
  const gateway = new Gateway(config, logger);
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
    .showHelpAfterError()
    .configureOutput({ writeErr: (s) => process.stderr.write(s) });

  const configOption = () =>
    new Option("-c, --config <file>", "config file (JSON or YAML; a Claude mcpServers file works)").default(
      "switchboard.yaml",
    );
  const logLevelOption = () =>
    new Option("--log-level <level>", "log level (overrides the config)").choices(LOG_LEVELS);

  program
    .command("serve")
    .description("start the gateway (stdio when no --http is given)")
    .addOption(configOption())
    .option("--stdio", "serve MCP on stdin/stdout")
    .option("--http <[host:]port>", "serve Streamable HTTP (default host 127.0.0.1)", parseHostPort)
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
          target: s.type === "stdio" ? [s.command, ...(s.args ?? [])].join(" ") : (s.url ?? ""),
          timeoutMs: String(s.timeoutMs),
        }));
        process.stdout.write(`${formatTable(rows)}\n`);
      } catch (error) {
        fail(error);
      }
    });

  program
    .command("tools")
    .description("connect to the servers and print the aggregated catalog")
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
            process.stderr.write(`not up: ${down.map((b) => `${b.name} (${b.state})`).join(", ")}\n`);
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
      let args: Record<string, unknown>;
      try {
        const parsed: unknown = JSON.parse(jsonArgs);
        if (typeof parsed !== "object" || parsed === null || Array.isArray(parsed))
          throw new Error("not an object");
        args = parsed as Record<string, unknown>;
      } catch (error) {
        fail(
          new Error(`arguments must be a JSON object, e.g. '{"message":"hi"}' (${describeError(error)}).`),
        );
      }
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

function oneLine(text: string, max: number): string {
  const flat = text.replace(/\s+/g, " ").trim();
  return flat.length > max ? `${flat.slice(0, max - 1)}…` : flat;
}

await buildProgram().parseAsync(process.argv);
