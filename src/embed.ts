/**
 * Switchboard inside another program: make a gateway from a config object or file, start it, serve it
 * on the transport the program chooses (stdio, an HTTP server of its own, or a request handler in its
 * framework), give it backends, a store or audit sinks of its own, and close it. What the CLI does,
 * as functions; src/index.ts names what is public.
 */
import type { IncomingMessage, ServerResponse } from "node:http";
import { dirname, resolve as resolvePath } from "node:path";
import type { AuditSink } from "./audit/record.ts";
import { loadConfigFile } from "./config/load.ts";
import { type Config, type ConfigInput, GATEWAY_TOOLS_SERVER } from "./config/schema.ts";
import { createSecretResolver, type SecretResolver } from "./config/secrets/resolver.ts";
import { validateConfig } from "./config/validate.ts";
import { GatewayError } from "./core/errors.ts";
import type {
  Backend,
  CallToolResult,
  GetPromptResult,
  Principal,
  ReadResourceResult,
  Store,
  Tool,
} from "./core/types.ts";
import { Gateway as GatewayImpl, type GatewayOptions } from "./gateway/gateway.ts";
import type { RequestOptions } from "./gateway/running.ts";
import { createLogger, type Logger } from "./observability/logger.ts";
import { createGatewayHttpHandler, type HandlerOptions } from "./server/http/handler.ts";
import { serveProbes as serveProbesOf } from "./server/http/probes.ts";
import { serveGatewayOnHttp } from "./server/http/serve.ts";
import { serveGatewayOnStdio } from "./server/stdio/serve.ts";

/** What a program holds on a gateway made by `createGateway`. */
export interface Gateway {
  /** The validated, frozen config. */
  readonly config: Config;
  readonly logger: Logger;
  /** Calls in flight. */
  readonly inFlight: number;
  /** True once `drain` or `close` began: new requests are refused. */
  readonly closing: boolean;
  /**
   * Starts every backend in parallel; resolves when each is up or failed its first attempt, or when
   * `gateway.startupTimeoutMs` passed. Servers that are not up are retried in the background.
   */
  start(): Promise<void>;
  /**
   * One tool call through its full chain (policies, audit, access). A failing tool answers an
   * `isError` result; an unknown tool rejects with a GatewayError.
   */
  callTool(name: string, args?: Record<string, unknown>, options?: RequestOptions): Promise<CallToolResult>;
  readResource(uri: string, options?: RequestOptions): Promise<ReadResourceResult>;
  getPrompt(name: string, args?: Record<string, string>, options?: RequestOptions): Promise<GetPromptResult>;
  /** The tools a principal may see and call, under their exposed names (at a profile's endpoint). */
  toolsFor(principal: Principal, profile?: string): readonly Tool[];
  /** Refuses new requests and waits up to `deadlineMs` for those in flight; true when all finished. */
  drain(deadlineMs: number): Promise<boolean>;
  /** Stops the backends and closes the store, the audit sinks and the telemetry. */
  close(): Promise<void>;
}

export interface CreateGatewayOptions {
  /**
   * The config as an object, in the same shape as a config file (a Claude `mcpServers` object works):
   * validated like a file, `${VAR}` taken from the environment. Give this or `configPath`.
   */
  readonly config?: ConfigInput;
  /**
   * A config file (JSON or YAML). Its `${secret:…}` references are resolved, kept fresh and redacted
   * from logs, audit records and answers, and relative paths start at its folder.
   */
  readonly configPath?: string;
  /**
   * Backends of the program's own (implementations of `Backend`). One the config does not name is
   * served under its own name as prefix (`<name>__<tool>`), under the global policies and any
   * `toolPolicies` that match; one named like a configured server takes that server's place.
   */
  readonly backends?: readonly Backend[];
  /** A store (implementation of `Store`) to use instead of config `store`. The gateway closes it. */
  readonly store?: Store;
  /** Audit sinks besides config `audit`'s; auditing is on when there are any. The gateway closes them. */
  readonly auditSinks?: readonly AuditSink[];
  /**
   * Default: logs on stderr at `logging.level` (readable lines on a terminal, else JSON). Pass
   * `silentLogger()` for none, or a pino logger of the program's.
   */
  readonly logger?: Logger;
}

/** A gateway from a config object or file; not started yet (`start()`), not served yet (`serve…`). */
export async function createGateway(options: CreateGatewayOptions): Promise<Gateway> {
  if ((options.config === undefined) === (options.configPath === undefined)) {
    throw new GatewayError(
      "config_invalid",
      "createGateway needs exactly one of `config` (an object) and `configPath` (a file); " +
        `${options.config === undefined ? "neither was given" : "both were given"}.`,
    );
  }
  checkBackendNames(options.backends ?? []);
  let secrets: SecretResolver | undefined;
  let logger = options.logger;
  let config: Config;
  let baseDir: string | undefined;
  if (options.configPath !== undefined) {
    baseDir = dirname(resolvePath(options.configPath));
    secrets = createSecretResolver({ baseDir, logger: () => logger });
    try {
      config = await loadConfigFile(options.configPath, { secrets });
    } catch (error) {
      secrets.close();
      throw error;
    }
  } else {
    config = validateConfig(options.config, { source: "the config given to createGateway" });
  }
  const secretValues = secrets ? () => secrets.values() : undefined;
  logger ??= createLogger({
    level: config.logging.level,
    ...(secretValues ? { redactValues: secretValues } : {}),
  });
  const gatewayOptions: GatewayOptions = {
    ...(secretValues ? { secretValues } : {}),
    ...(baseDir ? { baseDir } : {}),
    ...(options.store ? { store: options.store } : {}),
    ...(options.auditSinks ? { auditSinks: options.auditSinks } : {}),
  };
  const gateway = new GatewayImpl(config, logger, options.backends, gatewayOptions);
  if (secrets) {
    // The resolver refreshes secrets for as long as the gateway runs, and no longer.
    const close = gateway.close.bind(gateway);
    const resolver = secrets;
    gateway.close = () => close().finally(() => resolver.close());
  }
  return gateway;
}

const SERVER_NAME = /^[a-zA-Z0-9_-]+$/;

function checkBackendNames(backends: readonly Backend[]): void {
  const seen = new Set<string>();
  for (const backend of backends) {
    const name = backend.name;
    const problem = !SERVER_NAME.test(name)
      ? "is not a valid server name: use letters, digits, _ and - (it becomes the tools' prefix)"
      : name === GATEWAY_TOOLS_SERVER
        ? `is the name of the gateway's own tools (${GATEWAY_TOOLS_SERVER}__health…); give the backend another name`
        : seen.has(name)
          ? "is the name of two backends; give each its own"
          : undefined;
    if (problem) {
      throw new GatewayError("config_invalid", `The backend "${name}" given to createGateway ${problem}.`);
    }
    seen.add(name);
  }
}

/** The gateway behind the public interface: the serve functions need its internals. */
function implementationOf(gateway: Gateway, caller: string): GatewayImpl {
  if (!(gateway instanceof GatewayImpl)) {
    throw new TypeError(`${caller} serves a gateway made by createGateway; it was given something else.`);
  }
  return gateway;
}

/** Settings of the MCP endpoint; each one not given comes from the config's `server.http`. */
export interface HttpHandlerOptions {
  /** Default: `server.http.path` ("/mcp"). */
  readonly path?: string;
  readonly maxBodyBytes?: number;
  /** Host headers accepted besides the localhost forms (DNS-rebinding guard); "*" for any. */
  readonly allowedHosts?: readonly string[];
  readonly allowedOrigins?: readonly string[];
  readonly sessionIdleTimeoutMs?: number;
}

export interface ServeHttpOptions extends HttpHandlerOptions {
  /** Default: `server.http.host` ("127.0.0.1"). */
  readonly host?: string;
  /** Default: `server.http.port` (8931); 0 for any free port. */
  readonly port?: number;
}

// The serving handles as the public API describes them, declared here so that the package's type
// declarations do not lead into the server modules (and the drivers' types they reach).

export interface HttpServing {
  /** The MCP endpoint, e.g. http://127.0.0.1:8931/mcp. */
  readonly url: string;
  readonly port: number;
  /** Stops accepting new connections; calls in flight go on (call before `gateway.drain`). */
  stopAccepting(): void;
  /** Closes the server and its sessions; call after `gateway.drain`, before `gateway.close`. */
  close(): Promise<void>;
}

export interface StdioServing {
  close(): Promise<void>;
}

export interface ProbeServing {
  /** e.g. http://127.0.0.1:9090 */
  readonly url: string;
  close(): Promise<void>;
}

/**
 * Serves the gateway on an HTTP server of its own: the MCP endpoint (Streamable HTTP, both protocol
 * eras) and /livez, /readyz, /healthz, /metrics. `close()` it after `gateway.drain`, before
 * `gateway.close`.
 */
export function serveHttp(gateway: Gateway, options: ServeHttpOptions = {}): Promise<HttpServing> {
  const impl = implementationOf(gateway, "serveHttp");
  return serveGatewayOnHttp(impl, { ...impl.config.server.http, ...defined(options) });
}

/**
 * A request handler for an HTTP server the program owns, or its framework: `(req, res, next?)`.
 * It answers the MCP endpoint and the probe paths; any other path goes to `next` when given (Express,
 * Connect), else gets 404. Put no body parser before it: it reads the body itself.
 */
export type HttpHandler = ((req: IncomingMessage, res: ServerResponse, next?: () => void) => void) & {
  /** Waits for answers still being written and closes the 2025-era sessions. */
  close(): Promise<void>;
};

export function httpHandler(gateway: Gateway, options: HttpHandlerOptions = {}): HttpHandler {
  const impl = implementationOf(gateway, "httpHandler");
  const { host: _host, port: _port, ...fromConfig } = impl.config.server.http;
  const handlerOptions: HandlerOptions = { ...fromConfig, ...defined(options) };
  const handler = createGatewayHttpHandler(impl, handlerOptions);
  return Object.assign(
    (req: IncomingMessage, res: ServerResponse, next?: () => void) => handler.handle(req, res, next),
    { close: () => handler.close() },
  );
}

export interface ServeStdioOptions {
  /** Called once when the client closes stdin: the program should drain, close and exit. */
  readonly onClientGone?: () => void;
}

/**
 * Serves the gateway over this process's stdin and stdout, as MCP clients launch local servers.
 * stdout then belongs to the protocol: the program must not write to it (logs go to stderr).
 */
export function serveStdio(gateway: Gateway, options: ServeStdioOptions = {}): StdioServing {
  const impl = implementationOf(gateway, "serveStdio");
  return serveGatewayOnStdio(impl, options.onClientGone ?? (() => undefined));
}

/** /livez, /readyz, /healthz and /metrics alone on a port, for a gateway served over stdio. */
export function serveProbes(
  gateway: Gateway,
  where: { readonly host?: string; readonly port: number },
): Promise<ProbeServing> {
  const impl = implementationOf(gateway, "serveProbes");
  return serveProbesOf(impl, { host: where.host ?? impl.config.server.http.host, port: where.port });
}

/** The options given, without keys set to undefined (which would hide the config's values). */
function defined<T extends object>(options: T): Partial<T> {
  return Object.fromEntries(Object.entries(options).filter(([, value]) => value !== undefined)) as Partial<T>;
}
