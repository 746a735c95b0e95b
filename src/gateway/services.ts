/**
 * What the gateway keeps for its whole life, whatever plan it runs: the store (rate-limit buckets,
 * cached results, what replicas share), the audit log, and metrics, traces and health. A reload does
 * not replace them; a change to their config takes effect at the next start.
 */
import type { SpanExporter } from "@opentelemetry/sdk-trace-base";
import { type AuditLog, type AuditSink, createAuditLog } from "../audit/index.ts";
import type { Config } from "../config/schema.ts";
import type { Backend, Store } from "../core/types.ts";
import type { HealthCheck } from "../observability/health.ts";
import type { Logger } from "../observability/logger.ts";
import { failClosedUses, openStore } from "../stores/index.ts";
import { createObservability, type Observability } from "./observe.ts";

export interface ServicesOptions {
  readonly spanExporter?: SpanExporter | undefined;
  /** More checks for the health report. */
  readonly extraChecks?: readonly HealthCheck[] | undefined;
  readonly secretValues?: (() => readonly string[]) | undefined;
  readonly baseDir?: string | undefined;
  /** The store to use instead of the one config `store` describes; the gateway closes it. */
  readonly store?: Store | undefined;
  /** Audit sinks besides those of config `audit` (auditing is on when there are any); closed with it. */
  readonly auditSinks?: readonly AuditSink[] | undefined;
}

export interface Services {
  readonly store: Store;
  readonly audit: AuditLog;
  readonly observability: Observability;
}

/** `backends`: the backends whose health the checker reports (read at each check). */
export function openServices(
  config: Config,
  logger: Logger,
  backends: () => readonly Backend[],
  options: ServicesOptions,
): Services {
  // Opened here, connected at start: the policy runtime needs its store from the start.
  const store =
    options.store ??
    openStore(config.store, {
      onListenerError: ({ channel, error }) =>
        logger.error({ err: error, channel }, "a handler of a store message threw"),
    });
  const audit = createAuditLog(config.audit, {
    logger,
    ...(options.secretValues ? { secretValues: options.secretValues } : {}),
    ...(options.baseDir ? { baseDir: options.baseDir } : {}),
    ...(options.auditSinks ? { sinks: options.auditSinks } : {}),
  });
  const observability = createObservability(config.observability, {
    extraChecks: [
      ...(audit.enabled
        ? [{ name: "audit", kind: "store" as const, required: true, run: async () => audit.health() }]
        : []),
      ...(options.extraChecks ?? []),
    ],
    logger,
    store,
    backends,
    storeRequired: () => failClosedUses(store).length > 0,
    ...(options.spanExporter ? { spanExporter: options.spanExporter } : {}),
  });
  return { store, audit, observability };
}

/** Closes what `openServices` opened, telemetry and audit first (they may still write to the store). */
export async function closeServices(services: Services, logger: Logger): Promise<void> {
  await services.observability.close();
  await services.audit.close();
  try {
    await services.store.close();
  } catch (error) {
    logger.warn({ err: error }, "could not close the store cleanly");
  }
}
