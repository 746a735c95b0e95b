/**
 * One connection attempt to an MCP server: one transport (for a stdio server, one process), the era
 * negotiated on that very connection, and the first listing, all within one bound. When the attempt
 * fails, times out or is aborted (the gateway stops), what it opened is closed and its process has
 * exited before the attempt settles: nothing is left running.
 *
 * The era: `server/discover` is sent first; a 2025-era server answers it with an error (or not at
 * all, within half the bound) and gets the `initialize` handshake on the same connection. A few stdio
 * servers exit on any request before `initialize`: when the process exits without having written a
 * single message, the attempt goes on at once with a new process and `initialize` straight away, and
 * tells the backend to start that server that way from then on (`era: "legacy"`).
 */
import type { Client, Root, Transport } from "@modelcontextprotocol/client";
import { describeError } from "../../core/errors.ts";
import type { BackendCatalog, BackendEvents, ListChanged } from "../../core/types.ts";
import type { Logger } from "../../observability/logger.ts";
import { listAll, newClient } from "./client.ts";
import { BackendStdioTransport } from "./stdio-client-transport.ts";
import { type McpTransportConfig, openTransport, StderrTail } from "./transport.ts";

export type EraHint = "negotiate" | "legacy";

export interface ConnectOptions {
  readonly server: string;
  readonly transport: McpTransportConfig;
  readonly clientInfo: { readonly name: string; readonly version: string };
  readonly roots: readonly Root[];
  /** The whole attempt's bound: spawn, handshake and first listing. */
  readonly timeoutMs: number;
  readonly log: Logger;
  readonly events: () => BackendEvents | undefined;
  readonly onChanged: (client: Client, changed: ListChanged) => void;
  /** The connection closed after the attempt succeeded; `stderr` explains why, when it can. */
  readonly onClosed: (client: Client, stderr: StderrTail) => void;
  readonly redact: (text: string) => string;
}

export interface Connection {
  readonly client: Client;
  readonly transport: Transport;
  readonly catalog: BackendCatalog;
  readonly stderr: StderrTail;
}

export type ConnectOutcome =
  | { readonly ok: true; readonly connection: Connection; readonly era: EraHint }
  | {
      readonly ok: false;
      /** Why, with what the server's stderr said about it. */
      readonly reason: string;
      /** The server's last stderr lines, for the log. */
      readonly stderr: readonly string[];
      readonly era: EraHint;
    };

/** Connects once, the era first negotiated or (`legacy`) not; `signal` aborts the attempt. */
export async function connect(
  options: ConnectOptions,
  era: EraHint,
  signal: AbortSignal,
): Promise<ConnectOutcome> {
  const deadline = AbortSignal.timeout(options.timeoutMs);
  const stop = AbortSignal.any([signal, deadline]);
  const first = await attempt(options, era, stop);
  if (first.ok) return { ...first, era };
  const exitedOnProbe =
    era === "negotiate" &&
    !stop.aborted &&
    first.transport instanceof BackendStdioTransport &&
    first.transport.exited &&
    first.transport.received === 0;
  if (exitedOnProbe) {
    options.log.info(
      { reason: first.stderr.explain(exitedEarly(first) ?? describeError(first.error)) },
      "the server exited before answering server/discover; starting it again with initialize only",
    );
    const second = await attempt(options, "legacy", stop);
    if (second.ok) return { ...second, era: "legacy" };
    return failed(options, second, stop, deadline, "legacy");
  }
  // A server started with initialize only that answered, yet failed, may have been upgraded: negotiate
  // again next time.
  const answered = !(first.transport instanceof BackendStdioTransport) || first.transport.received > 0;
  return failed(options, first, stop, deadline, era === "legacy" && answered ? "negotiate" : era);
}

type Attempt =
  | { readonly ok: true; readonly connection: Connection; readonly transport: Transport }
  | {
      readonly ok: false;
      readonly error: unknown;
      readonly stderr: StderrTail;
      readonly transport: Transport;
    };

async function attempt(options: ConnectOptions, era: EraHint, stop: AbortSignal): Promise<Attempt> {
  const stderr = new StderrTail();
  const client = newClient({
    server: options.server,
    clientInfo: options.clientInfo,
    log: options.log,
    events: options.events,
    onChanged: options.onChanged,
    roots: options.roots,
    era,
    probeTimeoutMs: probeTimeoutMs(options),
  });
  const transport = openTransport(options.transport, stderr, options.log, options.redact);
  let connected = false;
  client.onclose = () => {
    if (connected) options.onClosed(client, stderr);
  };
  const abandon = async () => {
    await closeTransport(transport);
    await client.close().catch(() => undefined);
  };
  // Closing the transport is what stops the SDK wherever it is: probing, in initialize, listing.
  const onStop = () => void closeTransport(transport);
  stop.addEventListener("abort", onStop, { once: true });
  try {
    if (stop.aborted) throw stop.reason;
    await client.connect(transport, { timeout: options.timeoutMs });
    const catalog = await listAll(client, options.log);
    if (stop.aborted) throw stop.reason;
    connected = true;
    return { ok: true, connection: { client, transport, catalog, stderr }, transport };
  } catch (error) {
    await abandon();
    return { ok: false, error, stderr, transport };
  } finally {
    stop.removeEventListener("abort", onStop);
  }
}

function failed(
  options: ConnectOptions,
  attempt: Extract<Attempt, { ok: false }>,
  stop: AbortSignal,
  deadline: AbortSignal,
  era: EraHint,
): ConnectOutcome {
  const why = deadline.aborted
    ? `did not finish its handshake within ${options.timeoutMs} ms`
    : stop.aborted
      ? "the gateway stopped while it was starting"
      : (exitedEarly(attempt) ?? describeError(attempt.error));
  return { ok: false, reason: attempt.stderr.explain(why), stderr: attempt.stderr.lines, era };
}

/**
 * A process that exited before its handshake was done is said so, with how it ended, rather than as
 * what the SDK saw of it (a closed connection, a probe cut off).
 */
function exitedEarly(attempt: Extract<Attempt, { ok: false }>): string | undefined {
  const transport = attempt.transport;
  if (!(transport instanceof BackendStdioTransport) || !transport.exited) return undefined;
  if (!/closed/i.test(describeError(attempt.error))) return undefined;
  return `the process exited (${transport.exitStatus}) before it finished its handshake`;
}

/**
 * How long `server/discover` may go unanswered before a stdio server is taken for a 2025-era one:
 * half the start window, so that `initialize` still has the other half. Over HTTP no answer is not
 * era evidence, so the whole window.
 */
function probeTimeoutMs(options: ConnectOptions): number {
  return options.transport.type === "stdio" ? Math.ceil(options.timeoutMs / 2) : options.timeoutMs;
}

/** Stops the process at once (it never served a session), or closes the HTTP transport. */
async function closeTransport(transport: Transport): Promise<void> {
  try {
    if (transport instanceof BackendStdioTransport) await transport.close({ graceful: false });
    else await transport.close();
  } catch {
    // Closing is best effort; a transport that fails to close has nothing left to close.
  }
}
