/**
 * Tools: every exposed tool with its server, the policies in force as the gateway resolved them (and
 * the config layers they came from), its calls, errors, latency percentiles and cache hit ratio.
 * Sortable by any column, filtered by a text that matches the name, the server or a policy.
 */
import { badge, count, h, heading, ms, notice, percent } from "./dom.js";

const COLUMNS = [
  { key: "name", label: "Tool", value: (t) => t.name },
  { key: "server", label: "Server", value: (t) => t.server },
  { key: "policies", label: "Policies in force", value: (t) => t.policies.map((p) => p.name).join(" ") },
  { key: "calls", label: "Calls", value: (t) => t.live?.calls ?? 0, numeric: true },
  { key: "errors", label: "Errors", value: (t) => t.live?.errors ?? 0, numeric: true },
  { key: "p50", label: "p50", value: (t) => t.live?.p50Ms ?? -1, numeric: true },
  { key: "p95", label: "p95", value: (t) => t.live?.p95Ms ?? -1, numeric: true },
  { key: "p99", label: "p99", value: (t) => t.live?.p99Ms ?? -1, numeric: true },
  { key: "cache", label: "Cache hits", value: (t) => hitRatio(t.live) ?? -1, numeric: true },
];

function hitRatio(live) {
  if (!live || live.cacheHits === undefined) return undefined;
  const total = live.cacheHits + live.cacheMisses;
  return total === 0 ? undefined : live.cacheHits / total;
}

function describeOptions(options) {
  if (options === undefined || options === null) return "";
  return JSON.stringify(options);
}

function policyList(tool) {
  return h(
    "ul",
    { class: "policies" },
    tool.policies.map((policy) =>
      h(
        "li",
        {},
        h("span", { class: "policy", title: describeOptions(policy.options) }, policy.name),
        h("span", { class: "visually-hidden" }, ` ${describeOptions(policy.options)}`),
      ),
    ),
  );
}

export function toolsPage(ctx) {
  let tools = [];
  let sortKey = "name";
  let ascending = true;
  const filter = h("input", {
    id: "tool-filter",
    type: "search",
    placeholder: "name, server or policy",
    autocomplete: "off",
  });
  const status = h("p", { class: "hint", role: "status" });
  const head = h("tr", {});
  const body = h("tbody", {});
  const detail = h("div", { id: "tool-detail" });
  const element = h(
    "div",
    {},
    heading("Tools"),
    h("div", { class: "toolbar" }, h("label", { for: "tool-filter" }, "Filter tools"), filter, status),
    h(
      "div",
      { class: "table-wrap" },
      h(
        "table",
        { id: "tools" },
        h("caption", {}, "Exposed tools, policies in force and live figures"),
        h("thead", {}, head),
        body,
      ),
    ),
    detail,
  );

  const renderHead = () => {
    head.replaceChildren(
      ...COLUMNS.map((column) =>
        h(
          "th",
          {
            scope: "col",
            "aria-sort": column.key === sortKey ? (ascending ? "ascending" : "descending") : "none",
          },
          h(
            "button",
            {
              type: "button",
              class: "sort",
              onclick: () => {
                ascending = column.key === sortKey ? !ascending : !column.numeric;
                sortKey = column.key;
                renderHead();
                renderBody();
              },
            },
            column.label,
            h("span", { "aria-hidden": "true" }, column.key === sortKey ? (ascending ? " ▲" : " ▼") : ""),
          ),
        ),
      ),
    );
  };

  const renderBody = () => {
    const needle = filter.value.trim().toLowerCase();
    const column = COLUMNS.find((c) => c.key === sortKey) ?? COLUMNS[0];
    const rows = tools
      .map((tool) => ({ ...tool, live: ctx.state.tools[tool.name] }))
      .filter(
        (tool) =>
          needle === "" ||
          tool.name.toLowerCase().includes(needle) ||
          tool.server.toLowerCase().includes(needle) ||
          tool.policies.some((p) => p.name.toLowerCase().includes(needle)),
      )
      .sort((a, b) => {
        const x = column.value(a);
        const y = column.value(b);
        const order = column.numeric ? x - y : String(x).localeCompare(String(y));
        return ascending ? order : -order;
      });
    status.textContent = `${rows.length} of ${tools.length} tools`;
    // Live updates redraw the rows: keep the keyboard where it was.
    const focused = body.contains(document.activeElement)
      ? document.activeElement.closest("tr")?.dataset.tool
      : undefined;
    body.replaceChildren(
      ...rows.map((tool) =>
        h(
          "tr",
          { dataset: { tool: tool.name } },
          h(
            "th",
            { scope: "row" },
            h("button", { type: "button", class: "link", onclick: () => showDetail(tool) }, tool.name),
          ),
          h("td", {}, tool.server),
          h("td", {}, policyList(tool)),
          h("td", { class: "num" }, count(tool.live?.calls ?? 0)),
          h("td", { class: "num" }, count(tool.live?.errors ?? 0)),
          h("td", { class: "num" }, tool.live ? ms(tool.live.p50Ms) : "–"),
          h("td", { class: "num" }, tool.live ? ms(tool.live.p95Ms) : "–"),
          h("td", { class: "num" }, tool.live ? ms(tool.live.p99Ms) : "–"),
          h("td", { class: "num" }, hitRatio(tool.live) === undefined ? "–" : percent(hitRatio(tool.live))),
        ),
      ),
    );
    if (focused !== undefined) body.querySelector(`tr[data-tool="${CSS.escape(focused)}"] button`)?.focus();
  };

  const showDetail = (tool) => {
    detail.replaceChildren(
      h(
        "section",
        { "aria-labelledby": "detail-title", class: "detail" },
        h("h2", { id: "detail-title", tabindex: "-1" }, `Which rules apply to ${tool.name}`),
        tool.description ? h("p", {}, tool.description) : null,
        h("p", {}, "Set by: ", tool.from.length ? tool.from.map((f) => badge(f, "layer")) : "defaults only"),
        h(
          "dl",
          { class: "policy-detail" },
          tool.policies.flatMap((policy) => [
            h("dt", {}, policy.name),
            h("dd", {}, h("code", {}, describeOptions(policy.options))),
          ]),
        ),
      ),
    );
    detail.querySelector("h2")?.focus();
  };

  const load = async () => {
    try {
      const answer = await ctx.getJson("tools");
      tools = answer.tools;
      renderBody();
    } catch (error) {
      body.replaceChildren();
      detail.replaceChildren(notice(error.message, "error"));
    }
  };

  filter.addEventListener("input", renderBody);
  renderHead();
  load();
  return {
    element,
    update: (kind) => {
      if (kind === "catalog") load();
      else if (kind === "tick" || kind === "snapshot") renderBody();
    },
  };
}
