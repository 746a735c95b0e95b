/**
 * Carries the gateway's change and log notifications to connected clients, whatever the era:
 * long-lived connections (stdio, 2025-era HTTP sessions) get them on their own instance; 2026-07-28
 * HTTP clients get them through `subscriptions/listen` streams fed by the handler's notifier, and log
 * messages on the streams whose listen request named a log level (see LogListeners).
 * Resource updates go only to connections subscribed to the URI (the notifier filters its streams
 * itself), and log messages only to connections that asked for them, at their level, and whose
 * principal may see the server that sent them. Log messages tied to a call do not pass here: they go
 * on that call's own response (see Gateway#onLog).
 */
import {
  LOG_LEVEL_META_KEY,
  type LoggingLevel,
  type ServerNotifier,
  SUBSCRIPTION_ID_META_KEY,
} from "@modelcontextprotocol/server";
import { type BackendLogMessage, MCP_LOG_LEVELS, type Principal } from "../core/types.ts";
import type { Gateway } from "../gateway/gateway.ts";
import { isSubscribed, type LiveServers, wantsBackgroundLog } from "./connection.ts";
import { passes } from "./leg.ts";

export function forwardNotifications(
  gateway: Gateway,
  live: LiveServers,
  notifiers: readonly ServerNotifier[] = [],
) {
  const onListChanged = (changed: { tools?: boolean; resources?: boolean; prompts?: boolean }) => {
    live.broadcast((server) => {
      const sent: Promise<void>[] = [];
      if (changed.tools) sent.push(server.sendToolListChanged());
      if (changed.resources) sent.push(server.sendResourceListChanged());
      if (changed.prompts) sent.push(server.sendPromptListChanged());
      return Promise.all(sent).then(() => undefined);
    });
    for (const notify of notifiers) {
      if (changed.tools) notify.toolsChanged();
      if (changed.resources) notify.resourcesChanged();
      if (changed.prompts) notify.promptsChanged();
    }
  };
  const onLog = backgroundLogsTo(gateway, live);
  const onResourceUpdated = resourceUpdatesTo(live, notifiers);
  gateway.on("listChanged", onListChanged);
  gateway.on("log", onLog);
  gateway.on("resourceUpdated", onResourceUpdated);
  return () => {
    gateway.off("listChanged", onListChanged);
    gateway.off("log", onLog);
    gateway.off("resourceUpdated", onResourceUpdated);
  };
}

/** A log message a server sent outside any call. */
export type BackgroundLog = { readonly server: string } & BackendLogMessage;

/**
 * Delivers a log message sent outside any call to the connections that asked for such messages: for
 * the gateway's own event, and for one another replica's server sent (a shared store's replicas tell
 * each other).
 */
export function backgroundLogsTo(gateway: Gateway, live: LiveServers) {
  return (message: BackgroundLog) => {
    live.broadcast((server) =>
      wantsBackgroundLog(gateway, server, message)
        ? server.sendLoggingMessage({
            level: message.level,
            logger: message.logger ? `${message.server}/${message.logger}` : message.server,
            data: message.data,
          })
        : undefined,
    );
  };
}

/**
 * Delivers a resource update to the connections subscribed to it: for the gateway's own event, and for
 * one another replica's backend reported (a shared store's replicas tell each other).
 */
export function resourceUpdatesTo(live: LiveServers, notifiers: readonly ServerNotifier[] = []) {
  return (uri: string) => {
    live.broadcast((server) => (isSubscribed(server, uri) ? server.sendResourceUpdated({ uri }) : undefined));
    for (const notify of notifiers) notify.resourceUpdated(uri);
  };
}

/** A `subscriptions/listen` request of a 2026-07-28 client, as far as log messages go. */
export interface LogListener {
  /** The listen request's id, which stamps every notification of its stream. */
  readonly subscriptionId: string | number;
  readonly level: LoggingLevel;
  readonly principal: Principal;
  readonly profile: string | undefined;
}

/**
 * The log level a `subscriptions/listen` request names in its `_meta`, if any. The SDK's listen streams
 * carry list and resource changes only; a 2026-07-28 client that wants the log messages servers send
 * outside any request (a 2025-era client's `logging/setLevel`) names a level on its listen request, as
 * it does on any request whose log messages it wants. One without a level gets none.
 */
export function listenLogLevel(body: unknown): LoggingLevel | undefined {
  const meta = (body as { params?: { _meta?: Record<string, unknown> } }).params?._meta;
  const level = meta?.[LOG_LEVEL_META_KEY];
  return (MCP_LOG_LEVELS as readonly unknown[]).includes(level) ? (level as LoggingLevel) : undefined;
}

type Notification = { jsonrpc: "2.0"; method: string; params: Record<string, unknown> };

/**
 * The listen streams that get the log messages no request carries, each at its level and only from
 * servers its principal may see. One gateway listener serves them all, however many are open.
 */
export class LogListeners {
  readonly #gateway: Gateway;
  readonly #listeners = new Map<LogListener, (notification: Notification) => void>();
  readonly #onLog = (message: BackgroundLog) => {
    for (const [listener, send] of this.#listeners) {
      if (!passes(message.level, listener.level)) continue;
      if (!this.#gateway.maySeeServer(listener.principal, message.server, listener.profile)) continue;
      send({
        jsonrpc: "2.0",
        method: "notifications/message",
        params: {
          level: message.level,
          logger: message.logger ? `${message.server}/${message.logger}` : message.server,
          data: message.data,
          _meta: { [SUBSCRIPTION_ID_META_KEY]: listener.subscriptionId },
        },
      });
    }
  };

  constructor(gateway: Gateway) {
    this.#gateway = gateway;
  }

  /** Sends the open streams a log message another replica's server sent. */
  deliver(message: BackgroundLog): void {
    this.#onLog(message);
  }

  /** Sends the stream its log messages until the returned function is called. */
  add(listener: LogListener, send: (notification: Notification) => void): () => void {
    if (this.#listeners.size === 0) this.#gateway.on("log", this.#onLog);
    this.#listeners.set(listener, send);
    return () => {
      if (!this.#listeners.delete(listener)) return;
      if (this.#listeners.size === 0) this.#gateway.off("log", this.#onLog);
    };
  }
}
