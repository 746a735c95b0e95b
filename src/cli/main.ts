#!/usr/bin/env node
/**
 * The `switchboard` command. The only module that prints to stdout or calls process.exit.
 *
 * Exit codes: 0 success; 1 the work failed (a tool answered isError, an unknown tool, a server not
 * up, a port in use); 2 the input is wrong (usage, config, arguments) and retrying cannot help.
 * Errors are one line on stderr (plus one line per problem for config validation), never a stack.
 */

import { dirname, resolve as resolvePath } from "node:path";
import { Command, InvalidArgumentError, Option } from "commander";
import type { AuditLocation } from "../audit/reader.ts";
import { AUDIT_OUTCOMES, type AuditOutcome } from "../audit/record.ts";
import { LOG_LEVELS, type LogLevel } from "../config/log-levels.ts";
import type { Config } from "../config/schema.ts";
import type { SecretResolver } from "../config/secrets.ts";
import { describeError, GatewayError } from "../core/errors.ts";
import type { Gateway } from "../gateway/gateway.ts";
import type { LogFormat, Logger } from "../observability/logger.ts";
import type { ProbeServing } from "../server/http/probes.ts";
import type { HttpServing } from "../server/http/serve.ts";
import type { StdioServing } from "../server/stdio/serve.ts";
import { VERSION } from "../version.ts";
import { formatTable } from "./table.ts";

// The config layer, the gateway and the servers are loaded when a command needs them: --help,
// --version, usage errors and `check` answer without paying for what they do not use.
const load = {
  config: () => import("../config/load.ts"),
  schema: () => import("../config/schema.ts"),
  gateway: () => import("../gateway/gateway.ts"),
  logger: () => import("../observability/logger.ts"),
  http: () => import("../server/http/serve.ts"),
  probes: () => import("../server/http/probes.ts"),
  stdio: () => import("../server/stdio/serve.ts"),
  secrets: () => import("../config/secrets.ts"),
  redact: () => import("../core/redact.ts"),
  primitives: () => import("../config/primitives.ts"),
  health: () => import("../observability/health.ts"),
  audit: () => import("../audit/reader.ts"),
};

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
function listenFailure(error: unknown, where: { host: string; port: number }, flag = "--http"): Error {
  const at = `${where.host.includes(":") ? `[${where.host}]` : where.host}:${where.port}`;
  const reasons: Record<string, string> = {
    EADDRINUSE: `the port is in use. Stop what holds it, or pick another port with ${flag}`,
    EACCES: `permission denied (ports below 1024 need privileges). Pick another port with ${flag}`,
    EADDRNOTAVAIL:
      "no network interface has that address. Use 127.0.0.1, 0.0.0.0 or an address of this machine",
    ENOTFOUND: "the host name does not resolve. Use an IP address or a known host name",
  };
  const code = (error as NodeJS.ErrnoException | undefined)?.code ?? "";
  const reason = Object.hasOwn(reasons, code) ? reasons[code] : describeError(error);
  return new Error(`cannot listen on ${at}: ${reason}.`, { cause: error });
}

/** `[host:]port` as written; a host left out is filled in by `withDefaultHost` once the config is loaded. */
function parseHostPort(value: string): HostPort {
  const match = /^(?:(\[[^\]]+\]|[^:]+):)?(\d{1,5})$/.exec(value);
  const port = match ? Number(match[2]) : Number.NaN;
  if (!match || port > 65535) {
    throw new InvalidArgumentError(
      `Expected [host:]port with a port from 0 to 65535, e.g. 8931, 127.0.0.1:8931 or [::1]:8931.`,
    );
  }
  const host = match[1]?.replace(/^\[|\]$/g, "");
  return host === undefined ? { port } : { host, port };
}

interface HostPort {
  readonly host?: string;
  readonly port: number;
}

/** A listening address without a host takes the default of `server.http.host` (loopback). */
async function withDefaultHost(where: HostPort): Promise<{ host: string; port: number }> {
  if (where.host !== undefined) return { host: where.host, port: where.port };
  const [{ httpServerSchema }, { defaultOf }] = await Promise.all([load.schema(), load.primitives()]);
  return { host: defaultOf(httpServerSchema.shape.host), port: where.port };
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

/** A loaded config and the secrets it references, kept fresh and known for redaction. */
interface Loaded {
  readonly config: Config;
  readonly secrets: SecretResolver;
  readonly baseDir: string;
  /** Makes the logger the secrets resolver reports refresh failures to. */
  setLogger(logger: Logger): void;
}

async function loadConfig(path: string): Promise<Loaded> {
  const [{ loadConfigFile }, { createSecretResolver }] = await Promise.all([load.config(), load.secrets()]);
  const baseDir = dirname(resolvePath(path));
  let logger: Logger | undefined;
  const secrets = createSecretResolver({ baseDir, logger: () => logger });
  try {
    const config = await loadConfigFile(path, { secrets });
    return { config, secrets, baseDir, setLogger: (l) => (logger = l) };
  } catch (error) {
    secrets.close();
    throw error;
  }
}

async function loggerFor(
  loaded: Loaded,
  level: LogLevel | undefined,
  format?: LogFormat | undefined,
): Promise<Logger> {
  const { createLogger } = await load.logger();
  const logger = createLogger({
    level: level ?? loaded.config.logging.level,
    ...(format ? { format } : {}),
    redactValues: () => loaded.secrets.values(),
  });
  loaded.setLogger(logger);
  return logger;
}

async function createGateway(loaded: Loaded, logger: Logger): Promise<Gateway> {
  const { Gateway } = await load.gateway();
  return new Gateway(loaded.config, logger, undefined, {
    secretValues: () => loaded.secrets.values(),
    baseDir: loaded.baseDir,
  });
}

interface ServeOptions {
  config: string;
  stdio?: boolean;
  http?: HostPort;
  probePort?: HostPort;
  logLevel?: LogLevel;
  logFormat?: LogFormat;
}

async function serve(options: ServeOptions): Promise<void> {
  const loaded = await loadConfig(options.config);
  const config = loaded.config;
  const logger = await loggerFor(loaded, options.logLevel, options.logFormat);
  const gateway = await createGateway(loaded, logger);
  // Without a transport flag the gateway serves stdio: that is how MCP clients launch a local server.
  const useStdio = options.stdio === true || options.http === undefined;
  let http: HttpServing | undefined;
  let probes: ProbeServing | undefined;
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
      // Each call still running is answered with why it ends, rather than its connection being cut.
      gateway.abortInFlight(
        new GatewayError(
          "shutting_down",
          `The gateway is shutting down and stopped this call after waiting ${config.gateway.shutdownTimeoutMs} ms ` +
            "(gateway.shutdownTimeoutMs) for it to finish; retry it on another instance.",
        ),
      );
      await gateway.drain(1_000);
    }
    await http?.close();
    await stdio?.close();
    await gateway.close();
    await probes?.close();
    loaded.secrets.close();
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
    options.probePort ? load.probes() : undefined,
  ]);
  await gateway.start();
  const [httpModule, stdioModule, probesModule] = await transports;
  if (options.http && httpModule) {
    const httpConfig = config.server.http;
    const where = await withDefaultHost(options.http);
    try {
      http = await httpModule.serveGatewayOnHttp(gateway, { ...httpConfig, ...where });
    } catch (error) {
      // The backends are already running: stop them rather than leave them to notice a closed stdin.
      stopping = true;
      await gateway.close();
      logger.flush();
      throw listenFailure(error, where);
    }
    logger.info(
      {
        url: http.url,
        connect: {
          claudeCode: `claude mcp add --transport http switchboard ${http.url}`,
          claudeCodeStdio: `claude mcp add switchboard -- npx -y mcp-switchboard serve --config ${resolvePath(options.config)} --stdio`,
          anyClient: `Streamable HTTP endpoint: ${http.url}`,
        },
      },
      "listening",
    );
  }
  if (options.probePort && probesModule) {
    const where = await withDefaultHost(options.probePort);
    try {
      probes = await probesModule.serveProbes(gateway, where);
    } catch (error) {
      stopping = true;
      await http?.close();
      await gateway.close();
      logger.flush();
      throw listenFailure(error, where, "--probe-port");
    }
    logger.info({ url: probes.url }, "serving probes and metrics");
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
  const loaded = await loadConfig(configPath);
  const logger = await loggerFor(loaded, logLevel ?? "warn");
  const gateway = await createGateway(loaded, logger);
  try {
    await gateway.start();
    return await run(gateway);
  } finally {
    await gateway.close();
    loaded.secrets.close();
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
  const logFormatOption = () =>
    new Option(
      "--log-format <format>",
      "log lines on stderr: pretty (readable) or json (default: pretty on a terminal, else json)",
    ).choices(["pretty", "json"] satisfies LogFormat[]);

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
    .option(
      "--probe-port <[host:]port>",
      "also serve /livez, /readyz, /healthz and /metrics on this port (for --stdio; with --http they are there already)",
      parseHostPort,
    )
    .addOption(logLevelOption())
    .addOption(logFormatOption())
    .action((opts: ServeOptions) => serve(opts).catch(fail));

  program
    .command("check")
    .description("validate the config and print a summary of servers and settings (no secrets)")
    .addOption(configOption())
    .option("--json", "print JSON")
    .action(async (opts: { config: string; json?: boolean }) => {
      try {
        const loaded = await loadConfig(opts.config);
        loaded.secrets.close();
        const [{ summarizeConfig }, { redactSecrets }] = await Promise.all([load.config(), load.redact()]);
        const summary = summarizeConfig(loaded.config);
        const warnings = unsafeSettings(loaded.config);
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

  program
    .command("health")
    .description(
      "print the health report as a table: of a running gateway with --url, else of one started from the config",
    )
    .option("--url <url>", "a running gateway's base URL (or its MCP endpoint), e.g. http://127.0.0.1:8931")
    .addOption(configOption())
    .option("--json", "print the report as JSON")
    .addOption(logLevelOption())
    .action(async (opts: { url?: string; config: string; json?: boolean; logLevel?: LogLevel }) => {
      try {
        const report = opts.url
          ? await fetchHealth(opts.url)
          : await withGateway(opts.config, opts.logLevel, (gateway) => gateway.observability.health.report());
        if (opts.json) process.stdout.write(`${JSON.stringify(report, null, 2)}\n`);
        else {
          const { healthRows } = await load.health();
          const [head, ...rows] = healthRows(report);
          const objects = rows.map((row) =>
            Object.fromEntries((head ?? []).map((h, i) => [h, row[i] ?? ""])),
          );
          process.stdout.write(`status: ${report.status}${report.ready ? "" : " (not ready)"}\n\n`);
          process.stdout.write(`${formatTable(objects)}\n`);
        }
        if (report.status === "unhealthy") process.exitCode = EXIT_FAILURE;
      } catch (error) {
        fail(error);
      }
    });

  const audit = program
    .command("audit")
    .description("read the audit log (the file sink, or PostgreSQL with --database)");
  audit
    .command("tail")
    .description("print the last records of the audit file, and follow it with --follow")
    .addOption(configOption())
    .option("--file <path>", "the audit file (default: the config's file sink)")
    .option("-n, --lines <n>", "how many records", parseCount, 10)
    .option("-f, --follow", "keep printing records as they are written (across rotations)")
    .action(async (opts: { config: string; file?: string; lines: number; follow?: boolean }) => {
      try {
        const { tailAudit } = await load.audit();
        const file = opts.file ?? (await auditFile(opts.config));
        const controller = new AbortController();
        process.once("SIGINT", () => controller.abort());
        process.once("SIGTERM", () => controller.abort());
        for await (const record of tailAudit(file, {
          lines: opts.lines,
          follow: opts.follow === true,
          signal: controller.signal,
        })) {
          process.stdout.write(`${JSON.stringify(record)}\n`);
        }
      } catch (error) {
        if ((error as Error)?.name === "AbortError") return;
        fail(error);
      }
    });
  audit
    .command("search")
    .description("find audit records by tool, principal, outcome and time (oldest first)")
    .addOption(configOption())
    .option("--file <path>", "an audit file (default: the config's first sink)")
    .option("--database <url>", "search a PostgreSQL sink at this URL instead")
    .option("--table <name>", "the PostgreSQL table", "switchboard_audit")
    .option("--tool <glob>", 'exposed tool name or glob, e.g. "db__*"')
    .option("--principal <id>", "who called")
    .option("--outcome <outcome>", "ok, tool_error, error, denied, rate_limited or invalid")
    .option("--since <time>", "ISO time or a duration back from now: 15m, 2h, 7d")
    .option("--until <time>", "ISO time or a duration back from now")
    .option("--limit <n>", "most records printed (the newest)", parseCount, 100)
    .option("--json", "one JSON record per line instead of a table")
    .action(async (opts: AuditSearchOptions) => {
      try {
        const { searchAudit } = await load.audit();
        const location: AuditLocation = opts.database
          ? { type: "postgres", url: opts.database, table: opts.table }
          : { type: "file", path: opts.file ?? (await auditFile(opts.config)) };
        if (opts.outcome !== undefined && !(AUDIT_OUTCOMES as readonly string[]).includes(opts.outcome)) {
          throw new UsageError(`--outcome "${opts.outcome}" is not one of ${AUDIT_OUTCOMES.join(", ")}.`);
        }
        const found = await searchAudit(location, {
          ...(opts.tool ? { tool: opts.tool } : {}),
          ...(opts.principal ? { principal: opts.principal } : {}),
          ...(opts.outcome ? { outcome: opts.outcome as AuditOutcome } : {}),
          ...(opts.since ? { since: parseWhen(opts.since, "--since") } : {}),
          ...(opts.until ? { until: parseWhen(opts.until, "--until") } : {}),
          limit: opts.limit,
        });
        if (opts.json) {
          for (const record of found.records) process.stdout.write(`${JSON.stringify(record)}\n`);
        } else {
          const rows = found.records.map((r) => ({
            time: r.time,
            principal: r.principal,
            tool: r.tool,
            outcome: r.outcome,
            ms: String(r.durationMs),
            source: r.source,
            error: oneLine(r.error ?? "", 50),
          }));
          process.stdout.write(`${formatTable(rows)}\n`);
        }
        if (found.truncated) {
          process.stderr.write(
            `switchboard: more records match; showing the newest ${opts.limit} (raise --limit)\n`,
          );
        }
      } catch (error) {
        fail(error);
      }
    });

  return program;
}

interface AuditSearchOptions {
  config: string;
  file?: string;
  database?: string;
  table: string;
  tool?: string;
  principal?: string;
  outcome?: string;
  since?: string;
  until?: string;
  limit: number;
  json?: boolean;
}

function parseCount(value: string): number {
  const n = Number(value);
  if (!Number.isInteger(n) || n < 1) throw new InvalidArgumentError("Expected a whole number of at least 1.");
  return n;
}

/** "2026-11-24T10:00:00Z", or "15m" / "2h" / "7d" back from now. */
function parseWhen(value: string, flag: string): Date {
  const relative = /^(\d+)([smhd])$/.exec(value);
  if (relative) {
    const unit = { s: 1_000, m: 60_000, h: 3_600_000, d: 86_400_000 }[relative[2] as "s" | "m" | "h" | "d"];
    return new Date(Date.now() - Number(relative[1]) * unit);
  }
  const time = new Date(value);
  if (Number.isNaN(time.getTime())) {
    throw new UsageError(
      `${flag} "${value}" is not a time: use ISO 8601 (2026-11-24T10:00:00Z) or 15m, 2h, 7d.`,
    );
  }
  return time;
}

/** The path of the config's file sink, resolved like the gateway resolves it. */
async function auditFile(configPath: string): Promise<string> {
  const loaded = await loadConfig(configPath);
  loaded.secrets.close();
  const sink = loaded.config.audit.sinks.find((s) => s.type === "file");
  if (!loaded.config.audit.enabled || !sink || sink.type !== "file") {
    throw new UsageError(
      `${configPath} has no audit file sink; pass --file, or --database for a PostgreSQL sink.`,
    );
  }
  return resolvePath(loaded.baseDir, sink.path);
}

/** GET <base>/healthz of a running gateway. */
async function fetchHealth(url: string) {
  let base: URL;
  try {
    base = new URL(url);
  } catch {
    throw new UsageError(`--url "${url}" is not a URL; pass e.g. http://127.0.0.1:8931`);
  }
  const target = new URL("/healthz", base);
  let response: Response;
  try {
    response = await fetch(target, { signal: AbortSignal.timeout(10_000) });
  } catch (error) {
    throw new Error(`cannot reach ${target.href}: ${describeError(error)}. Is the gateway running there?`);
  }
  if (response.status !== 200 && response.status !== 503) {
    throw new Error(`${target.href} answered HTTP ${response.status}; is it a Switchboard gateway?`);
  }
  return (await response.json()) as import("../observability/health.ts").HealthReport;
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
