/**
 * JSON logs on stderr, always: in stdio mode stdout carries the protocol's messages, so a log line
 * written there would corrupt the stream the client reads.
 */
import { type Logger, pino } from "pino";
import { DEFAULT_LOG_LEVEL, type LogLevel } from "../config/log-levels.ts";
import { redactSecrets } from "../core/redact.ts";

export type { Logger, LogLevel };

export interface LoggerOptions {
  readonly level?: LogLevel;
  /** Log values to replace with "[redacted]" wherever they appear (secrets). */
  readonly redactValues?: () => readonly string[];
}

export function createLogger(options: LoggerOptions = {}): Logger {
  const redactValues = options.redactValues;
  return pino(
    {
      level: options.level ?? DEFAULT_LOG_LEVEL,
      base: { name: "switchboard" },
      timestamp: pino.stdTimeFunctions.isoTime,
      formatters: { level: (label) => ({ level: label }) },
      hooks: redactValues
        ? {
            // Redact by value, not by key: a secret can end up in any field or message.
            streamWrite: (line) => redactSecrets(line, redactValues()),
          }
        : {},
    },
    pino.destination({ dest: 2, sync: false }),
  );
}

/** A logger that drops everything; for library use and tests that do not look at logs. */
export function silentLogger(): Logger {
  return pino({ level: "silent" });
}
