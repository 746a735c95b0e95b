/**
 * The audit log in the console: the latest records, live, and a search by tool, principal, outcome and
 * time range. Both read what the sinks wrote (the records as redacted and kept), through the same
 * reader as `switchboard audit tail` and `audit search`: the first sink's location, like the CLI.
 *
 * Records are followed only while someone watches: a JSONL file is tailed (across rotations), a
 * PostgreSQL table asked every two seconds for what is newer than the last record seen.
 */
import { setTimeout as sleep } from "node:timers/promises";
import type { AuditLog } from "../audit/index.ts";
import { type AuditFilter, type AuditLocation, searchAudit, tailAudit } from "../audit/reader.ts";
import { AUDIT_OUTCOMES, type AuditOutcome, type AuditRecord } from "../audit/record.ts";
import { describeError } from "../core/errors.ts";
import type { Logger } from "../observability/logger.ts";

/** Records kept for a console that connects while the log is followed. */
const KEPT = 50;
const POLL_MS = 2_000;
/** How long to wait before trying again when the log cannot be read (a file not written yet). */
const RETRY_MS = 1_000;

export interface AuditSearchAnswer {
  readonly records: readonly AuditRecord[];
  readonly truncated: boolean;
}

/** Why a search cannot be made, or the filter it asks for. */
export type ParsedQuery =
  | { readonly ok: true; readonly filter: AuditFilter }
  | { readonly ok: false; readonly error: string };

/** The search form's query string as a filter; times are ISO 8601 (a browser's local time is converted there). */
export function parseAuditQuery(query: URLSearchParams): ParsedQuery {
  const filter: { -readonly [K in keyof AuditFilter]: AuditFilter[K] } = {};
  const text = (name: string) => {
    const value = query.get(name)?.trim();
    return value === undefined || value === "" ? undefined : value;
  };
  const tool = text("tool");
  if (tool !== undefined) filter.tool = tool;
  const principal = text("principal");
  if (principal !== undefined) filter.principal = principal;
  const outcome = text("outcome");
  if (outcome !== undefined) {
    if (!(AUDIT_OUTCOMES as readonly string[]).includes(outcome)) {
      return { ok: false, error: `outcome "${outcome}" is not one of ${AUDIT_OUTCOMES.join(", ")}` };
    }
    filter.outcome = outcome as AuditOutcome;
  }
  for (const bound of ["since", "until"] as const) {
    const value = text(bound);
    if (value === undefined) continue;
    const time = new Date(value);
    if (Number.isNaN(time.getTime())) {
      return { ok: false, error: `${bound} "${value}" is not a time; give an ISO 8601 time` };
    }
    filter[bound] = time;
  }
  const limit = text("limit");
  if (limit !== undefined) {
    const n = Number(limit);
    if (!Number.isInteger(n) || n < 1 || n > 1_000) {
      return { ok: false, error: `limit "${limit}" must be a whole number from 1 to 1000` };
    }
    filter.limit = n;
  }
  return { ok: true, filter };
}

export class AuditFeed {
  readonly #audit: AuditLog;
  readonly #logger: Logger;
  readonly #onRecords: (records: readonly AuditRecord[]) => void;
  #latest: AuditRecord[] = [];
  #following: AbortController | undefined;

  /** `onRecords` hears the records written while the feed follows the log. */
  constructor(audit: AuditLog, logger: Logger, onRecords: (records: readonly AuditRecord[]) => void) {
    this.#audit = audit;
    this.#logger = logger;
    this.#onRecords = onRecords;
  }

  /** Where the records are, or why there are none to read. */
  get location(): AuditLocation | undefined {
    return this.#audit.locations()[0];
  }

  /** Why the console has no audit log to show, or undefined when it has one. */
  get unavailable(): string | undefined {
    if (!this.#audit.enabled) return "the audit log is off: configure audit.sinks to record calls";
    if (!this.location)
      return "the audit log has no sink the console can read (only sinks a host program gave)";
    return undefined;
  }

  /** The latest records seen, oldest first. */
  latest(): readonly AuditRecord[] {
    return this.#latest;
  }

  async search(filter: AuditFilter): Promise<AuditSearchAnswer> {
    const location = this.location;
    if (!location) return { records: [], truncated: false };
    const found = await searchAudit(location, filter);
    return { records: found.records, truncated: found.truncated };
  }

  /** Starts following the log (while someone watches). */
  follow(): void {
    const location = this.location;
    if (this.#following || !location) return;
    const controller = new AbortController();
    this.#following = controller;
    const run =
      location.type === "file"
        ? this.#tail(location.path, controller.signal)
        : this.#poll(location, controller.signal);
    run.catch((error: unknown) => {
      if (!controller.signal.aborted)
        this.#logger.warn({ err: describeError(error) }, "the console stopped following the audit log");
    });
  }

  /** Stops following (nobody watches any more). */
  stop(): void {
    this.#following?.abort();
    this.#following = undefined;
  }

  #add(records: readonly AuditRecord[]): void {
    if (records.length === 0) return;
    this.#latest = [...this.#latest, ...records].slice(-KEPT);
    this.#onRecords(records);
  }

  async #tail(path: string, signal: AbortSignal): Promise<void> {
    this.#latest = [];
    while (!signal.aborted) {
      try {
        // The first lines read are the latest records; those after them are new.
        for await (const record of tailAudit(path, { lines: KEPT, follow: true, signal }))
          this.#add([record]);
        return;
      } catch (error) {
        // The sink may not have written its file yet: try again while someone watches.
        this.#logger.debug({ err: describeError(error) }, "the console could not read the audit file yet");
        await sleep(RETRY_MS, undefined, { signal }).catch(() => undefined);
      }
    }
  }

  async #poll(location: AuditLocation, signal: AbortSignal): Promise<void> {
    let since: Date | undefined;
    let seen = new Set<string>();
    while (!signal.aborted) {
      try {
        const { records } = await searchAudit(location, { ...(since ? { since } : {}), limit: KEPT });
        // Records at the same instant as the last one seen come again: only the unseen are new.
        const fresh = records.filter((r) => !seen.has(keyOf(r)));
        this.#add(fresh);
        const last = records.at(-1);
        if (last) {
          since = new Date(last.time);
          seen = new Set(records.filter((r) => r.time === last.time).map(keyOf));
        }
      } catch (error) {
        this.#logger.debug({ err: describeError(error) }, "the console could not read the audit table");
      }
      await sleep(POLL_MS, undefined, { signal }).catch(() => undefined);
    }
  }
}

function keyOf(record: AuditRecord): string {
  return `${record.time}\u0000${record.requestId}\u0000${record.tool}`;
}
