/**
 * The audit log as the gateway uses it: one `record` per tool call, redacted once, fanned out to every
 * configured sink. `record` resolves when every sink holds the record as durably as it was configured
 * to (sync sinks: written and synced; batched sinks: accepted), so the gateway awaits it before it
 * answers the call.
 */
import { resolve as resolvePath } from "node:path";
import type { Environment } from "../config/interpolate.ts";
import { describeError, GatewayError } from "../core/errors.ts";
import type { HealthResult } from "../core/types.ts";
import type { Logger } from "../observability/logger.ts";
import type { AuditConfig, AuditSinkConfig } from "./config.ts";
import { createJsonlSink } from "./jsonl-sink.ts";
import { createPostgresSink } from "./postgres-sink.ts";
import type { AuditLocation } from "./reader.ts";
import type { AuditRecord, AuditSink, SinkHealth } from "./record.ts";
import { createRedactor } from "./redact.ts";

export {
  type AuditConfig,
  type AuditConfigInput,
  type AuditSinkConfig,
  auditConfigSchema,
  auditRedactRuleSchema,
  auditSinkSchema,
  type FileAuditSinkConfig,
  fileAuditSinkSchema,
  type PostgresAuditSinkConfig,
  postgresAuditSinkSchema,
} from "./config.ts";
export { createJsonlSink, type JsonlSinkOptions } from "./jsonl-sink.ts";
export { createPostgresSink, type PostgresSinkOptions } from "./postgres-sink.ts";
export {
  type AuditFilter,
  type AuditLocation,
  type AuditSearchResult,
  auditFiles,
  auditMatcher,
  searchAudit,
  type TailOptions,
  tailAudit,
} from "./reader.ts";
export {
  AUDIT_OUTCOMES,
  type AuditDurability,
  type AuditOutcome,
  type AuditRecord,
  type AuditSink,
  type AuditSource,
  isAuditRecord,
  type SinkHealth,
} from "./record.ts";
export { createRedactor, REDACTED, type Redactor, type RedactorOptions, type RedactRule } from "./redact.ts";

/** A record as the gateway hands it over: raw arguments (redacted here), and `time` defaults to now. */
export type AuditRecordInput = Omit<AuditRecord, "time"> & { readonly time?: string | Date };

export interface AuditLogOptions {
  readonly logger: Logger;
  /** Every secret value known (SecretResolver.values), redacted wherever it appears. Default none. */
  readonly secretValues?: () => readonly string[];
  /** Where relative file paths start: the config file's directory. Default process.cwd(). */
  readonly baseDir?: string;
  /** Where DATABASE_URL is read for a postgres sink without `url`. Default process.env. */
  readonly env?: Environment;
  /** Sinks a host program made, besides the configured ones; auditing is on when there are any. */
  readonly sinks?: readonly AuditSink[];
}

export interface AuditLog {
  /** False when the config turned auditing off: `record` then does nothing. */
  readonly enabled: boolean;
  readonly sinks: readonly AuditSink[];
  /**
   * Redacts the record and writes it to every sink. Rejects (a GatewayError, code audit_unavailable)
   * when a sync sink could not make it durable: the caller should then fail the call rather than
   * answer it unrecorded. Never rejects for batched sinks.
   */
  record(record: AuditRecordInput): Promise<void>;
  /** Writes everything buffered now; rejects when some of it could not be written. */
  flush(): Promise<void>;
  /** Flushes and closes every sink; records that cannot be written by then are reported lost. */
  close(): Promise<void>;
  /** Unhealthy while a sync sink fails (calls fail), degraded while a batched one does or drops. */
  health(): HealthResult;
  /** Where to search the records of each sink (for `searchAudit`). */
  locations(): AuditLocation[];
}

export function createAuditLog(config: AuditConfig, options: AuditLogOptions): AuditLog {
  const given = options.sinks ?? [];
  if (!config.enabled && given.length === 0) return disabledLog();
  const env = options.env ?? process.env;
  const baseDir = options.baseDir ?? process.cwd();
  const built = config.enabled
    ? config.sinks.map((sink, index) => buildSink(sink, index, { ...options, env, baseDir }))
    : [];
  const sinks = [...built.map((b) => b.sink), ...given];
  const redactor = createRedactor({
    rules: config.redact,
    omitArguments: config.omitArguments,
    ...(options.secretValues === undefined ? {} : { secretValues: options.secretValues }),
  });
  let closing: Promise<void> | undefined;

  return {
    enabled: true,
    sinks,
    async record(input) {
      const { time, ...rest } = input;
      const record = redactor.record({
        ...rest,
        time:
          time === undefined
            ? new Date().toISOString()
            : typeof time === "string"
              ? time
              : time.toISOString(),
      });
      const results = await Promise.allSettled(sinks.map((sink) => sink.write(record)));
      const failures = results.flatMap((result, index) =>
        result.status === "rejected" ? [`${sinks[index]?.name}: ${describeError(result.reason)}`] : [],
      );
      if (failures.length > 0) {
        throw new GatewayError(
          "audit_unavailable",
          `The call to "${record.tool}" could not be recorded in the audit log (${redactor.text(failures.join("; "))}). ` +
            `A sink with durability "sync" fails calls it cannot record: fix the sink, or set its durability to "batched".`,
          { data: { requestId: record.requestId, sinks: failures.length } },
        );
      }
    },
    async flush() {
      const results = await Promise.allSettled(sinks.map((sink) => sink.flush()));
      const failed = results.find((result) => result.status === "rejected");
      if (failed) throw failed.reason;
    },
    close() {
      closing ??= Promise.allSettled(sinks.map((sink) => sink.close())).then((results) => {
        for (const [index, result] of results.entries()) {
          if (result.status === "rejected") {
            options.logger.error(
              { sink: sinks[index]?.name, err: describeError(result.reason) },
              "closing an audit sink failed",
            );
          }
        }
      });
      return closing;
    },
    health() {
      const states = sinks.map((sink) => sink.health());
      const failingSync = states.filter((s) => s.durability === "sync" && s.consecutiveFailures > 0);
      const troubled = states.filter((s) => s.consecutiveFailures > 0 || s.dropped > 0);
      const status = failingSync.length > 0 ? "unhealthy" : troubled.length > 0 ? "degraded" : "healthy";
      const detail = troubled
        .map((s) =>
          [
            s.name,
            s.consecutiveFailures > 0 ? `failing (${s.lastError ?? "unknown error"})` : undefined,
            s.pending > 0 ? `${s.pending} pending` : undefined,
            s.dropped > 0 ? `${s.dropped} dropped` : undefined,
          ]
            .filter((part) => part !== undefined)
            .join(", "),
        )
        .join("; ");
      return {
        status,
        ...(detail === "" ? {} : { detail: `audit: ${detail}` }),
        data: { sinks: states as readonly SinkHealth[] },
      };
    },
    locations() {
      return built.map((b) => b.location);
    },
  };
}

function buildSink(
  config: AuditSinkConfig,
  index: number,
  options: AuditLogOptions & { readonly env: Environment; readonly baseDir: string },
): { sink: AuditSink; location: AuditLocation } {
  if (config.type === "file") {
    const path = resolvePath(options.baseDir, config.path);
    return {
      sink: createJsonlSink({
        path,
        durability: config.durability,
        maxBytes: config.maxBytes,
        maxFiles: config.maxFiles,
        flushIntervalMs: config.flushIntervalMs,
        maxPending: config.maxPending,
        logger: options.logger,
      }),
      location: { type: "file", path },
    };
  }
  const url = config.url ?? (options.env.DATABASE_URL || undefined);
  if (url === undefined) {
    throw new GatewayError(
      "config_invalid",
      `Config error: audit.sinks[${index}] (postgres) has no url, and DATABASE_URL is not set. ` +
        `Set audit.sinks[${index}].url to postgres://user:password@host:5432/database, or set DATABASE_URL.`,
      { data: { path: `audit.sinks[${index}].url` } },
    );
  }
  const sink = createPostgresSink({
    url,
    table: config.table,
    durability: config.durability,
    flushIntervalMs: config.flushIntervalMs,
    batchSize: config.batchSize,
    maxPending: config.maxPending,
    logger: options.logger,
  });
  return { sink, location: { type: "postgres", pool: sink.pool, table: config.table } };
}

function disabledLog(): AuditLog {
  return {
    enabled: false,
    sinks: [],
    record: async () => undefined,
    flush: async () => undefined,
    close: async () => undefined,
    health: () => ({ status: "healthy", detail: "audit: off" }),
    locations: () => [],
  };
}
