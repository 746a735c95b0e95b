/**
 * Carries the gateway's change and log notifications to every connected client, whatever the era:
 * long-lived connections (stdio, 2025-era HTTP sessions) get them on their own instance; 2026-07-28
 * HTTP clients get them through `subscriptions/listen` streams fed by the handler's notifier.
 */
import type { ServerNotifier } from "@modelcontextprotocol/server";
import type { Gateway } from "../gateway/gateway.ts";
import type { LiveServers } from "./mcp-server.ts";

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
  const onLog = (message: { server: string; level: string; logger?: string; data: unknown }) => {
    live.broadcast((server) =>
      server.sendLoggingMessage({
        level: message.level as "info",
        logger: message.logger ? `${message.server}/${message.logger}` : message.server,
        data: message.data,
      }),
    );
  };
  const onResourceUpdated = (uri: string) => {
    live.broadcast((server) => server.sendResourceUpdated({ uri }));
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
