/**
 * JSON logs on stderr, always: in stdio mode stdout belongs to the protocol (DESIGN rule 7).
 */
import { type Logger, pino } from "pino";
import { redactSecrets } from "../core/redact.ts";

export type { Logger };

export type LogLevel = "fatal" | "error" | "warn" | "info" | "debug" | "trace" | "silent";

export interface LoggerOptions {
  readonly level?: LogLevel;
  /** Log values to replace with "[redacted]" wherever they appear (secrets). */
  readonly redactValues?: () => readonly string[];
}

export function createLogger(options: LoggerOptions = {}): Logger {
  const redactValues = options.redactValues;
  return pino(
    {
      level: options.level ?? "info",
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
