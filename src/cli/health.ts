/**
 * `switchboard health`: the health report as a table (or JSON), of a running gateway (--url) or of
 * one started from the config for the purpose. Exit 1 when unhealthy.
 */
import type { Command } from "commander";
import type { LogLevel } from "../config/log-levels.ts";
import { describeError } from "../core/errors.ts";
import type { HealthReport } from "../observability/health.ts";
import { EXIT_FAILURE, fail, UsageError } from "./exit.ts";
import { withGateway } from "./gateway-session.ts";
import { configOption, logLevelOption } from "./options.ts";
import { formatTable } from "./table.ts";

export function addHealthCommand(program: Command): void {
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
          : await withGateway(opts, (gateway) => gateway.observability.health.report());
        if (opts.json) process.stdout.write(`${JSON.stringify(report, null, 2)}\n`);
        else {
          const { healthRows } = await import("../observability/health.ts");
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
}

/** GET <base>/healthz of a running gateway. */
async function fetchHealth(url: string): Promise<HealthReport> {
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
  return (await response.json()) as HealthReport;
}
