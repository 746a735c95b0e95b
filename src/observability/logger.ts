/**
 * Logs go to stderr, always: in stdio mode stdout carries the protocol's messages, so a log line
 * written there would corrupt the stream the client reads. JSON lines for machines; on a terminal,
 * readable lines (time, level, server, message), formatted by pino-pretty from the same JSON.
 */
import { createRequire } from "node:module";
import { type DestinationStream, type Logger, pino } from "pino";
import type { PrettyOptions } from "pino-pretty";
import { DEFAULT_LOG_LEVEL, type LogLevel } from "../config/log-levels.ts";
import { redactSecrets } from "../core/redact.ts";

export type { Logger, LogLevel };

export const LOG_FORMATS = ["json", "pretty"] as const;
export type LogFormat = (typeof LOG_FORMATS)[number];

export interface LoggerOptions {
  readonly level?: LogLevel;
  /** Log values to replace with "[redacted]" wherever they appear (secrets). */
  readonly redactValues?: () => readonly string[];
  /** Default: `defaultLogFormat()`, readable lines on a terminal and JSON otherwise. */
  readonly format?: LogFormat;
}

/** Readable lines when a person watches stderr (a terminal), JSON when a program reads it. */
export function defaultLogFormat(stderr: { readonly isTTY?: boolean } = process.stderr): LogFormat {
  return stderr.isTTY === true ? "pretty" : "json";
}

export function createLogger(options: LoggerOptions = {}): Logger {
  const redactValues = options.redactValues;
  const format = options.format ?? defaultLogFormat();
  return pino(
    {
      level: options.level ?? DEFAULT_LOG_LEVEL,
      base: { name: "switchboard" },
      timestamp: pino.stdTimeFunctions.isoTime,
      formatters: { level: (label) => ({ level: label }) },
      hooks: redactValues
        ? {
            // Redact by value, not by key: a secret can end up in any field or message. The pretty
            // format is made from the redacted line, so it is covered too.
            streamWrite: (line) => redactSecrets(line, redactValues()),
          }
        : {},
    },
    format === "pretty" ? prettyStderr() : pino.destination({ dest: 2, sync: false }),
  );
}

/** A logger that drops everything; for library use and tests that do not look at logs. */
export function silentLogger(): Logger {
  return pino({ level: "silent" });
}

/** pino-pretty in this process, writing to stderr; loaded only when the pretty format is used. */
function prettyStderr(): DestinationStream {
  const pretty = createRequire(import.meta.url)("pino-pretty") as (
    options: PrettyOptions,
  ) => DestinationStream;
  return pretty({
    destination: 2,
    sync: true,
    colorize: process.stderr.isTTY === true && !("NO_COLOR" in process.env),
    translateTime: "SYS:HH:MM:ss.l",
    ignore: "pid,hostname,name,server",
    messageFormat: "{if server}[{server}] {end}{msg}",
    // Fields besides the message stay on its line, as JSON; an error's details follow below it.
    singleLine: true,
  });
}
