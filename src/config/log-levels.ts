/**
 * The log levels `logging.level` and `--log-level` take, and the default. Kept apart from the zod
 * primitives (primitives.ts re-exports them) because the CLI reads them to describe its options,
 * and `--help` and `--version` answer without loading zod.
 */

/** pino's levels, most to least severe, and "silent" for none. */
export const LOG_LEVELS = ["fatal", "error", "warn", "info", "debug", "trace", "silent"] as const;

export type LogLevel = (typeof LOG_LEVELS)[number];

/** The default of `logging.level`, and of a logger made without a level. */
export const DEFAULT_LOG_LEVEL: LogLevel = "info";
