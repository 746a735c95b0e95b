/**
 * A 2025-era session as the replicas share it: a store entry written when the session opens and
 * rewritten when what it holds changes, that expires with the session's idle timeout. Any replica that
 * gets a request for the session rebuilds it from this record (sessions.ts), so the session does not
 * depend on the replica that opened it.
 *
 * What it holds is what a rebuilt session must know without asking the client again: who opened it,
 * the endpoint (profile) it belongs to, what the client said at initialize (protocol version,
 * capabilities, client info), the log level it set and the resources it subscribed to, the replica
 * that opened it, and the replicas that hold a copy of it (which a change must reach before the client
 * is answered).
 */
import { z } from "zod";
import { type LoggingLevel, MCP_LOG_LEVELS, type Store } from "../../core/types.ts";

const RECORD_VERSION = 1;

const recordSchema = z.object({
  v: z.literal(RECORD_VERSION),
  id: z.string().min(1),
  principal: z.string(),
  profile: z.string().nullable(),
  protocolVersion: z.string(),
  capabilities: z.record(z.string(), z.unknown()),
  clientInfo: z.looseObject({ name: z.string(), version: z.string() }),
  logLevel: z.enum(MCP_LOG_LEVELS as [LoggingLevel, ...LoggingLevel[]]).nullable(),
  subscriptions: z.array(z.string()),
  owner: z.string(),
  holders: z.array(z.string()),
});

export type SessionRecord = Omit<z.infer<typeof recordSchema>, "v">;

export function encodeSessionRecord(record: SessionRecord): string {
  return JSON.stringify({ v: RECORD_VERSION, ...record });
}

/** The record in `text`, or undefined when it is not one this version reads (the session is unknown). */
export function decodeSessionRecord(text: string | undefined): SessionRecord | undefined {
  if (text === undefined) return undefined;
  let value: unknown;
  try {
    value = JSON.parse(text);
  } catch {
    return undefined;
  }
  const parsed = recordSchema.safeParse(value);
  if (!parsed.success) return undefined;
  const { v: _version, ...record } = parsed.data;
  return record;
}

const keyOf = (id: string) => `mcp-session:${id}`;

/** The session records in a shared store. Failures are the caller's to log: a record is best effort. */
export class SessionRecords {
  readonly #store: Store;
  readonly #ttlMs: number;

  /**
   * Replicas renew a record at most every quarter of the idle timeout (shared-sessions.ts), so it lives
   * that much longer than the timeout from its last renewal: never less than the timeout after the
   * session's last request.
   */
  constructor(store: Store, idleTimeoutMs: number) {
    this.#store = store;
    this.#ttlMs = idleTimeoutMs + Math.ceil(idleTimeoutMs / 4);
  }

  async read(id: string): Promise<SessionRecord | undefined> {
    return decodeSessionRecord(await this.#store.get(keyOf(id)));
  }

  /** Writes the record, and so renews its expiry. */
  async write(record: SessionRecord): Promise<void> {
    await this.#store.set(keyOf(record.id), encodeSessionRecord(record), { ttlMs: this.#ttlMs });
  }

  async delete(id: string): Promise<void> {
    await this.#store.delete(keyOf(id));
  }
}
