/**
 * `switchboard serve`: the gateway on stdio (the default: how MCP clients launch a local server),
 * Streamable HTTP, or both, with probes and metrics on a port of their own for --stdio. SIGTERM and
 * SIGINT drain the calls in flight (up to gateway.shutdownTimeoutMs), then stop everything and exit 0.
 */

import { resolve as resolvePath } from "node:path";
import { type Command, InvalidArgumentError } from "commander";
import type { LogLevel } from "../config/log-levels.ts";
import { describeError, errnoAdvice, GatewayError } from "../core/errors.ts";
import type { LogFormat } from "../observability/logger.ts";
import type { ProbeServing } from "../server/http/probes.ts";
import type { HttpServing } from "../server/http/serve.ts";
import type { StdioServing } from "../server/stdio/serve.ts";
import { fail } from "./exit.ts";
import { createGateway, loadConfig, loggerFor } from "./gateway-session.ts";
import {
  checkProfileOption,
  configOption,
  logFormatOption,
  logLevelOption,
  profileOption,
} from "./options.ts";
import type { ConfigReloads } from "./reload.ts";

export function addServeCommand(program: Command): void {
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
    .addOption(
      profileOption("serve one profile's view on stdio (config profiles); HTTP serves each at <path>/<name>"),
    )
    .addOption(logLevelOption())
    .addOption(logFormatOption())
    .action((opts: ServeOptions) => serve(opts).catch(fail));
}

interface ServeOptions {
  config: string;
  stdio?: boolean;
  http?: HostPort;
  probePort?: HostPort;
  profile?: string;
  logLevel?: LogLevel;
  logFormat?: LogFormat;
}

async function serve(options: ServeOptions): Promise<void> {
  const loaded = await loadConfig(options.config);
  const config = loaded.config;
  if (options.profile !== undefined) checkProfileOption(config, options.profile);
  let reloads: ConfigReloads | undefined;
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
    reloads?.close();
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

  const transports = Promise.all([
    options.http ? import("../server/http/serve.ts") : undefined,
    useStdio ? import("../server/stdio/serve.ts") : undefined,
    options.probePort ? import("../server/http/probes.ts") : undefined,
    import("./reload.ts"),
  ]);
  // The transports' code is loaded before the backends are spawned: a dozen server processes booting
  // at once would otherwise take the CPU the gateway needs to start serving. Clients are then served
  // at once: the backends start meanwhile, and a client's first list waits for them within
  // gateway.startupWaitMs of the process's start (performance.now()'s origin), loading the code
  // included; servers that come up later are announced with list_changed.
  const [httpModule, stdioModule, probesModule, reloadModule] = await transports;
  const started = gateway.start({ waitFrom: 0 });
  reloads = reloadModule?.startConfigReloads(options.config, loaded, gateway, logger);
  if (options.http && httpModule) {
    const httpConfig = config.server.http;
    const where = await withDefaultHost(options.http);
    try {
      const reload = reloads ? (trigger: string) => (reloads as ConfigReloads).reload(trigger) : undefined;
      http = await httpModule.serveGatewayOnHttp(gateway, {
        ...httpConfig,
        ...where,
        ...(reload ? { reload } : {}),
      });
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
    stdio = stdioModule.serveGatewayOnStdio(gateway, () => void shutdown("stdin closed"), {
      profile: options.profile,
    });
    logger.info("serving MCP on stdio");
  }
  await started;
}

/** Node's wording ("listen EADDRINUSE: address already in use") names the problem but not the way out. */
function listenFailure(error: unknown, where: { host: string; port: number }, flag = "--http"): Error {
  const at = `${where.host.includes(":") ? `[${where.host}]` : where.host}:${where.port}`;
  const advice: Record<string, string> = {
    EADDRINUSE: `the port is in use. Stop what holds it, or pick another port with ${flag}`,
    EACCES: `permission denied (ports below 1024 need privileges). Pick another port with ${flag}`,
    EADDRNOTAVAIL:
      "no network interface has that address. Use 127.0.0.1, 0.0.0.0 or an address of this machine",
    ENOTFOUND: "the host name does not resolve. Use an IP address or a known host name",
  };
  const reason = errnoAdvice(error, advice) ?? describeError(error);
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
  const [{ httpServerSchema }, { defaultOf }] = await Promise.all([
    import("../config/schema.ts"),
    import("../config/primitives.ts"),
  ]);
  return { host: defaultOf(httpServerSchema.shape.host), port: where.port };
}
