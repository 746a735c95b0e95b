/**
 * Config: the config the gateway runs, as `switchboard check` shows it (no header or environment
 * values, secrets masked or redacted), its policies, and the last reload's result.
 */
import { badge, h, heading, json, notice, table, time } from "./dom.js";

function serverTarget(server) {
  if (server.type === "stdio") return [server.command, ...server.args].join(" ");
  if (server.url) return server.url;
  return server.target ?? "";
}

function reloadSection(reload) {
  if (!reload) return notice("Waiting for the gateway…");
  const last = reload.lastApplied;
  return h(
    "div",
    { id: "reload-status" },
    reload.stale
      ? notice(
          `The config file was refused at ${time(reload.stale.at)}: ${reload.stale.reason}. The gateway runs the config applied at ${time(reload.appliedAt)}.`,
          "warning",
        )
      : h("p", {}, badge("current", "ok"), ` Running the config applied at ${time(reload.appliedAt)}.`),
    last
      ? h(
          "dl",
          { class: "facts-list" },
          h("dt", {}, "Last reload"),
          h("dd", {}, `applied in ${last.durationMs ?? "?"} ms`),
          ...["added", "removed", "restarted", "needRestart"].flatMap((key) =>
            Array.isArray(last[key]) && last[key].length > 0
              ? [h("dt", {}, key), h("dd", {}, last[key].join(", "))]
              : [],
          ),
        )
      : h("p", { class: "hint" }, "No reload since the gateway started."),
  );
}

export function configPage(ctx) {
  const reload = h("div", {});
  const body = h("div", {}, notice("Loading…"));
  const element = h(
    "div",
    {},
    heading("Config"),
    h("section", { "aria-labelledby": "reload-title" }, h("h2", { id: "reload-title" }, "Reloads"), reload),
    body,
  );
  const load = async () => {
    try {
      const view = await ctx.getJson("config");
      const { summary } = view;
      body.replaceChildren(
        h(
          "section",
          { "aria-labelledby": "cfg-servers" },
          h("h2", { id: "cfg-servers" }, "Servers"),
          h(
            "div",
            { class: "table-wrap" },
            table(
              "Servers as configured (secret values left out)",
              ["Server", "Type", "Runs or reaches", "Prefix", "Timeout", "Policies", "Enabled"],
              summary.servers.map((server) =>
                h(
                  "tr",
                  {},
                  h("th", { scope: "row" }, server.name),
                  h("td", {}, server.type),
                  h("td", {}, h("code", {}, serverTarget(server))),
                  h("td", {}, server.prefix),
                  h("td", { class: "num" }, `${server.timeoutMs} ms`),
                  h("td", {}, server.policies.join(", ") || "–"),
                  h("td", {}, server.enabled ? "yes" : "no"),
                ),
              ),
              { id: "config-servers" },
            ),
          ),
        ),
        h(
          "section",
          { "aria-labelledby": "cfg-policies" },
          h("h2", { id: "cfg-policies" }, "Policies"),
          h("h3", {}, "Global"),
          json(view.policies),
          h("h3", {}, "Per tool"),
          json(view.toolPolicies),
        ),
        h(
          "section",
          { "aria-labelledby": "cfg-settings" },
          h("h2", { id: "cfg-settings" }, "Settings"),
          h("h3", {}, "gateway"),
          json(summary.gateway),
          h("h3", {}, "server"),
          json(summary.server),
          h("h3", {}, "logging"),
          json(summary.logging),
          h("h3", {}, "profiles"),
          h("p", {}, view.profiles.length ? view.profiles.join(", ") : "none"),
        ),
      );
    } catch (error) {
      body.replaceChildren(notice(error.message, "error"));
    }
  };
  const update = () => reload.replaceChildren(reloadSection(ctx.state.reload));
  update();
  load();
  return {
    element,
    update: (kind) => {
      update();
      if (kind === "reload") load();
    },
  };
}
