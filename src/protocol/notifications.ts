/**
 * Carries the gateway's change and log notifications to connected clients, whatever the era:
 * long-lived connections (stdio, 2025-era HTTP sessions) get them on their own instance; 2026-07-28
 * HTTP clients get them through `subscriptions/listen` streams fed by the handler's notifier.
 * Resource updates go only to connections subscribed to the URI (the notifier filters its streams
 * itself), and log messages only to connections that asked for them, at their level, and whose
 * principal may see the server that sent them. Log messages tied to a call do not pass here: they go
 * on that call's own response (see Gateway#onLog).
 */
import type { ServerNotifier } from "@modelcontextprotocol/server";
import type { BackendLogMessage } from "../core/types.ts";
import type { Gateway } from "../gateway/gateway.ts";
import { isSubscribed, type LiveServers, wantsBackgroundLog } from "./connection.ts";

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
  const onLog = (message: { server: string } & BackendLogMessage) => {
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
  const onResourceUpdated = (uri: string) => {
    live.broadcast((server) => (isSubscribed(server, uri) ? server.sendResourceUpdated({ uri }) : undefined));
    for (const notify of notifiers) notify.resourceUpdated(uri);
  };
  gateway.on("listChanged", onListChanged);
  gateway.on("log", onLog);
  gateway.on("resourceUpdated", onResourceUpdated);
  return () => {
    gateway.off("listChanged", onListChanged);
    gateway.off("log", onLog);
    gateway.off("resourceUpdated", onResourceUpdated);
  };
}
