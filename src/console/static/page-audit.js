/**
 * Audit: the latest records as they are written, and a search by tool (a glob), principal, outcome and
 * time range, over what the audit log's first sink holds.
 */
import { badge, h, heading, ms, notice, table, time } from "./dom.js";

const OUTCOMES = ["ok", "tool_error", "error", "denied", "rate_limited", "invalid"];

function recordRows(records) {
  return [...records]
    .reverse()
    .map((record) =>
      h(
        "tr",
        { dataset: { request: record.requestId } },
        h("td", {}, time(record.time)),
        h("td", {}, record.principal),
        h("th", { scope: "row" }, record.tool),
        h("td", {}, badge(record.outcome)),
        h("td", { class: "num" }, ms(record.durationMs)),
        h("td", {}, record.source),
        h("td", {}, h("code", {}, record.requestId)),
        h("td", { class: "error-text" }, record.error ?? ""),
      ),
    );
}

const HEADERS = ["Time", "Principal", "Tool", "Outcome", "Duration", "Source", "Request", "Error"];

function input(id, label, props = {}) {
  return h(
    "div",
    { class: "field" },
    h("label", { for: id }, label),
    h("input", { id, name: id.replace("audit-", ""), autocomplete: "off", ...props }),
  );
}

/** A datetime-local value (the browser's local time) as ISO 8601, or "" when empty. */
function iso(value) {
  if (!value) return "";
  const date = new Date(value);
  return Number.isNaN(date.getTime()) ? value : date.toISOString();
}

export function auditPage(ctx) {
  const latest = h("div", { class: "table-wrap", id: "audit-latest" });
  const results = h("div", { id: "audit-results", "aria-live": "polite" });
  const outcome = h(
    "select",
    { id: "audit-outcome", name: "outcome" },
    h("option", { value: "" }, "any"),
    OUTCOMES.map((o) => h("option", { value: o }, o)),
  );
  const form = h(
    "form",
    {
      id: "audit-search",
      class: "search-form",
      onsubmit: (event) => {
        event.preventDefault();
        search();
      },
    },
    input("audit-tool", "Tool (name or glob)", { type: "text", placeholder: "db__*" }),
    input("audit-principal", "Principal", { type: "text" }),
    h("div", { class: "field" }, h("label", { for: "audit-outcome" }, "Outcome"), outcome),
    input("audit-since", "From (local time)", { type: "datetime-local", step: "1" }),
    input("audit-until", "Until (local time)", { type: "datetime-local", step: "1" }),
    h("div", { class: "field actions" }, h("button", { type: "submit" }, "Search")),
  );
  const element = h(
    "div",
    {},
    heading("Audit"),
    h(
      "section",
      { "aria-labelledby": "search-title" },
      h("h2", { id: "search-title" }, "Search"),
      form,
      results,
    ),
    h(
      "section",
      { "aria-labelledby": "latest-title" },
      h("h2", { id: "latest-title" }, "Latest records, live"),
      latest,
    ),
  );

  const search = async () => {
    const query = new URLSearchParams();
    for (const name of ["tool", "principal", "outcome"]) {
      const value = form.elements[name].value.trim();
      if (value) query.set(name, value);
    }
    for (const name of ["since", "until"]) {
      const value = iso(form.elements[name].value);
      if (value) query.set(name, value);
    }
    query.set("limit", "200");
    results.replaceChildren(h("p", { class: "hint" }, "Searching…"));
    try {
      const answer = await ctx.getJson(`audit?${query}`);
      results.replaceChildren(
        h(
          "p",
          { role: "status" },
          `${answer.records.length} record${answer.records.length === 1 ? "" : "s"} found${answer.truncated ? " (the newest 200; narrow the search for older ones)" : ""}.`,
        ),
        answer.records.length
          ? h(
              "div",
              { class: "table-wrap" },
              table("Records found, newest first", HEADERS, recordRows(answer.records), {
                id: "audit-found",
              }),
            )
          : null,
      );
    } catch (error) {
      results.replaceChildren(notice(error.message, "error"));
    }
  };

  const update = () => {
    const audit = ctx.state.audit;
    if (audit.unavailable) {
      latest.replaceChildren(notice(`No audit log to show: ${audit.unavailable}.`, "warning"));
      return;
    }
    latest.replaceChildren(
      audit.latest.length === 0
        ? notice("No record yet.")
        : table("Latest records, newest first", HEADERS, recordRows(audit.latest.slice(-25)), {
            id: "audit-live",
          }),
    );
  };
  update();
  return {
    element,
    update: (kind) => {
      if (kind === "audit" || kind === "snapshot") update();
    },
  };
}
