/**
 * Overview: the gateway's calls as live charts over the last 15 minutes, and every server with its
 * state, uptime, restarts, last error, protocol and tools.
 */
import { lineChart } from "./chart.js";
import { badge, count, duration, h, heading, ms, percent, table, time } from "./dom.js";

function protocolText(server) {
  if (server.protocolVersion) {
    const modern = server.protocolVersion >= "2026-07-28";
    return `${server.protocolVersion} (${modern ? "stateless era" : "2025 era"})`;
  }
  if (["stdio", "http", "sse"].includes(server.kind)) return server.state === "up" ? "–" : "not connected";
  return "built-in (no MCP)";
}

function stateCell(server) {
  const text = server.gaveUp ? "down (gave up)" : server.state;
  return h("td", { class: "state" }, badge(text, server.state));
}

function serverRow(server, now) {
  return h(
    "tr",
    { dataset: { server: server.name, state: server.state } },
    h("th", { scope: "row" }, server.name),
    h("td", {}, server.kind),
    stateCell(server),
    h("td", {}, server.upSince ? duration(server.upSince, now) : "–"),
    h("td", { class: "num" }, count(server.restarts)),
    h(
      "td",
      { class: "error-text" },
      server.lastError
        ? [
            server.lastError,
            server.lastErrorAt ? h("span", { class: "hint" }, ` (${time(server.lastErrorAt)})`) : "",
          ]
        : "–",
    ),
    h("td", {}, protocolText(server)),
    h("td", { class: "num tools" }, count(server.tools)),
  );
}

export function overviewPage(ctx) {
  const charts = [
    lineChart({
      title: "Tool calls per second",
      key: "callsPerSecond",
      format: (v) => `${v.toFixed(v < 10 ? 2 : 0)}/s`,
    }),
    lineChart({ title: "Error rate", key: "errorRate", format: percent }),
    lineChart({ title: "Latency p50", key: "p50Ms", format: ms }),
    lineChart({ title: "Latency p99", key: "p99Ms", format: ms }),
  ];
  const servers = h("div", { class: "table-wrap" });
  const facts = h("p", { class: "facts", "aria-live": "off" });
  const element = h(
    "div",
    {},
    heading("Overview"),
    h(
      "section",
      { "aria-labelledby": "charts-title" },
      h("h2", { id: "charts-title" }, "Gateway, last 15 minutes"),
      facts,
      h(
        "div",
        { class: "charts" },
        charts.map((c) => c.element),
      ),
    ),
    h(
      "section",
      { "aria-labelledby": "servers-title" },
      h("h2", { id: "servers-title" }, "Servers"),
      servers,
    ),
  );
  const update = () => {
    const { state } = ctx;
    const now = Date.now();
    for (const chart of charts) chart.update(state.series, now);
    const up = state.servers.filter((s) => s.state === "up").length;
    facts.textContent = `${up} of ${state.servers.length} servers up · ${count(state.inFlight)} calls in flight · config ${
      state.reload?.stale ? "stale (the file was refused; see Config)" : "current"
    }`;
    servers.replaceChildren(
      table(
        "Servers behind the gateway",
        ["Server", "Kind", "State", "Up for", "Restarts", "Last error", "Protocol", "Tools"],
        state.servers.map((server) => serverRow(server, now)),
        { id: "servers" },
      ),
    );
  };
  update();
  return { element, update };
}
