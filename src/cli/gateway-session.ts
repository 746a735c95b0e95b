/**
 * What the commands that run a gateway share: the config loaded with its secrets (kept fresh and
 * known for redaction), a logger that redacts them, and a gateway started for one piece of work and
 * closed after it. The config layer, the gateway and the logger are imported here, when a command
 * runs, never when the program is built: --help and usage errors do not pay for them.
 */
import { dirname, resolve as resolvePath } from "node:path";
import type { ConfigWarning } from "../config/client-formats.ts";
import type { LogLevel } from "../config/log-levels.ts";
import type { Config } from "../config/schema.ts";
import type { SecretResolver } from "../config/secrets/resolver.ts";
import type { Gateway } from "../gateway/gateway.ts";
import type { LogFormat, Logger } from "../observability/logger.ts";
import { checkProfileOption } from "./options.ts";

/** A loaded config and the secrets it references, kept fresh and known for redaction. */
export interface Loaded {
  /** The config running now: a reload replaces it (see reload.ts). */
  config: Config;
  secrets: SecretResolver;
  readonly baseDir: string;
  /** Keys of the file only an MCP client reads (e.g. autoApprove): logged at warn, printed by `check`. */
  readonly warnings: readonly ConfigWarning[];
  /** Makes the logger the secrets resolver reports refresh failures to. */
  setLogger(logger: Logger): void;
  /** Every secret value to redact: this config's, and those of the configs a reload replaced. */
  secretValues(): readonly string[];
  /** Takes a reloaded config and its secrets; `retired` are the resolvers of the configs before. */
  adopt(next: Loaded, retired: readonly SecretResolver[]): void;
}

export async function loadConfig(path: string): Promise<Loaded> {
  const [{ loadConfigFile }, { createSecretResolver }] = await Promise.all([
    import("../config/load.ts"),
    import("../config/secrets/resolver.ts"),
  ]);
  const baseDir = dirname(resolvePath(path));
  let logger: Logger | undefined;
  const secrets = createSecretResolver({ baseDir, logger: () => logger });
  try {
    const warnings: ConfigWarning[] = [];
    const config = await loadConfigFile(path, { secrets, onWarning: (w) => warnings.push(w) });
    let retired: readonly SecretResolver[] = [];
    const loaded: Loaded = {
      config,
      secrets,
      baseDir,
      warnings,
      setLogger: (l) => (logger = l),
      secretValues: () => [...loaded.secrets.values(), ...retired.flatMap((r) => r.values())],
      adopt(next, before) {
        loaded.config = next.config;
        loaded.secrets = next.secrets;
        retired = before;
        if (logger) {
          next.setLogger(logger);
          logWarnings(logger, next.warnings);
        }
      },
    };
    return loaded;
  } catch (error) {
    secrets.close();
    throw error;
  }
}

export async function loggerFor(
  loaded: Loaded,
  level: LogLevel | undefined,
  format?: LogFormat | undefined,
): Promise<Logger> {
  const { createLogger } = await import("../observability/logger.ts");
  const logger = createLogger({
    level: level ?? loaded.config.logging.level,
    redactValues: () => loaded.secretValues(),
    ...(format ? { format } : {}),
  });
  loaded.setLogger(logger);
  logWarnings(logger, loaded.warnings);
  return logger;
}

function logWarnings(logger: Logger, warnings: readonly ConfigWarning[]): void {
  for (const warning of warnings) logger.warn({ key: warning.key, paths: warning.paths }, warning.message);
}

export async function createGateway(loaded: Loaded, logger: Logger): Promise<Gateway> {
  const { Gateway } = await import("../gateway/gateway.ts");
  return new Gateway(loaded.config, logger, undefined, {
    secretValues: () => loaded.secretValues(),
    baseDir: loaded.baseDir,
  });
}

export interface OneShotOptions {
  readonly config: string;
  readonly logLevel?: LogLevel | undefined;
  /** A profile of the config (`--profile`), checked before any server starts. */
  readonly profile?: string | undefined;
}

/** Starts a gateway from the config, runs `run` on it, and closes it whatever happens. */
export async function withGateway<T>(options: OneShotOptions, run: (g: Gateway) => Promise<T>) {
  const loaded = await loadConfig(options.config);
  if (options.profile !== undefined) checkProfileOption(loaded.config, options.profile);
  const logLevel = options.logLevel;
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
