/**
 * `switchboard audit tail` and `switchboard audit search`: the audit log as written by the file sink
 * (followed across rotations), or searched in a file or a PostgreSQL sink.
 */
import { resolve as resolvePath } from "node:path";
import { type Command, InvalidArgumentError } from "commander";
import type { AuditLocation } from "../audit/reader.ts";
import { AUDIT_OUTCOMES, type AuditOutcome } from "../audit/record.ts";
import { fail, UsageError } from "./exit.ts";
import { loadConfig } from "./gateway-session.ts";
import { configOption } from "./options.ts";
import { formatTable, oneLine } from "./table.ts";

export function addAuditCommands(program: Command): void {
  const audit = program
    .command("audit")
    .description("read the audit log (the file sink, or PostgreSQL with --database)");
  audit
    .command("tail")
    .description("print the last records of the audit file, and follow it with --follow")
    .addOption(configOption())
    .option("--file <path>", "the audit file (default: the config's file sink)")
    .option("-n, --lines <n>", "how many records", parseCount, 10)
    .option("-f, --follow", "keep printing records as they are written (across rotations)")
    .action(async (opts: { config: string; file?: string; lines: number; follow?: boolean }) => {
      try {
        const { tailAudit } = await import("../audit/reader.ts");
        const file = opts.file ?? (await auditFile(opts.config));
        const controller = new AbortController();
        process.once("SIGINT", () => controller.abort());
        process.once("SIGTERM", () => controller.abort());
        for await (const record of tailAudit(file, {
          lines: opts.lines,
          follow: opts.follow === true,
          signal: controller.signal,
        })) {
          process.stdout.write(`${JSON.stringify(record)}\n`);
        }
      } catch (error) {
        if ((error as Error)?.name === "AbortError") return;
        fail(error);
      }
    });
  audit
    .command("search")
    .description("find audit records by tool, principal, outcome and time (oldest first)")
    .addOption(configOption())
    .option("--file <path>", "an audit file (default: the config's first sink)")
    .option("--database <url>", "search a PostgreSQL sink at this URL instead")
    .option("--table <name>", "the PostgreSQL table", "switchboard_audit")
    .option("--tool <glob>", 'exposed tool name or glob, e.g. "db__*"')
    .option("--principal <id>", "who called")
    .option("--outcome <outcome>", "ok, tool_error, error, denied, rate_limited or invalid")
    .option("--since <time>", "ISO time or a duration back from now: 15m, 2h, 7d")
    .option("--until <time>", "ISO time or a duration back from now")
    .option("--limit <n>", "most records printed (the newest)", parseCount, 100)
    .option("--json", "one JSON record per line instead of a table")
    .action(async (opts: AuditSearchOptions) => {
      try {
        const { searchAudit } = await import("../audit/reader.ts");
        const location: AuditLocation = opts.database
          ? { type: "postgres", url: opts.database, table: opts.table }
          : { type: "file", path: opts.file ?? (await auditFile(opts.config)) };
        if (opts.outcome !== undefined && !(AUDIT_OUTCOMES as readonly string[]).includes(opts.outcome)) {
          throw new UsageError(`--outcome "${opts.outcome}" is not one of ${AUDIT_OUTCOMES.join(", ")}.`);
        }
        const found = await searchAudit(location, {
          ...(opts.tool ? { tool: opts.tool } : {}),
          ...(opts.principal ? { principal: opts.principal } : {}),
          ...(opts.outcome ? { outcome: opts.outcome as AuditOutcome } : {}),
          ...(opts.since ? { since: parseWhen(opts.since, "--since") } : {}),
          ...(opts.until ? { until: parseWhen(opts.until, "--until") } : {}),
          limit: opts.limit,
        });
        if (opts.json) {
          for (const record of found.records) process.stdout.write(`${JSON.stringify(record)}\n`);
        } else {
          const rows = found.records.map((r) => ({
            time: r.time,
            principal: r.principal,
            tool: r.tool,
            outcome: r.outcome,
            ms: String(r.durationMs),
            source: r.source,
            error: oneLine(r.error ?? "", 50),
          }));
          process.stdout.write(`${formatTable(rows)}\n`);
        }
        if (found.truncated) {
          process.stderr.write(
            `switchboard: more records match; showing the newest ${opts.limit} (raise --limit)\n`,
          );
        }
      } catch (error) {
        fail(error);
      }
    });
}

interface AuditSearchOptions {
  config: string;
  file?: string;
  database?: string;
  table: string;
  tool?: string;
  principal?: string;
  outcome?: string;
  since?: string;
  until?: string;
  limit: number;
  json?: boolean;
}

function parseCount(value: string): number {
  const n = Number(value);
  if (!Number.isInteger(n) || n < 1) throw new InvalidArgumentError("Expected a whole number of at least 1.");
  return n;
}

/** "2026-11-24T10:00:00Z", or "15m" / "2h" / "7d" back from now. */
function parseWhen(value: string, flag: string): Date {
  const relative = /^(\d+)([smhd])$/.exec(value);
  if (relative) {
    const unit = { s: 1_000, m: 60_000, h: 3_600_000, d: 86_400_000 }[relative[2] as "s" | "m" | "h" | "d"];
    return new Date(Date.now() - Number(relative[1]) * unit);
  }
  const time = new Date(value);
  if (Number.isNaN(time.getTime())) {
    throw new UsageError(
      `${flag} "${value}" is not a time: use ISO 8601 (2026-11-24T10:00:00Z) or 15m, 2h, 7d.`,
    );
  }
  return time;
}

/** The path of the config's file sink, resolved like the gateway resolves it. */
async function auditFile(configPath: string): Promise<string> {
  const loaded = await loadConfig(configPath);
  loaded.secrets.close();
  const sink = loaded.config.audit.sinks.find((s) => s.type === "file");
  if (!loaded.config.audit.enabled || !sink || sink.type !== "file") {
    throw new UsageError(
      `${configPath} has no audit file sink; pass --file, or --database for a PostgreSQL sink.`,
    );
  }
  return resolvePath(loaded.baseDir, sink.path);
}
