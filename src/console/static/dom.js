/**
 * Building the page: elements made with text nodes only (nothing a tool or a server returned is ever
 * parsed as HTML), and the formats every page shares.
 */

/** An element with attributes, listeners (`onclick`…) and children (strings become text). */
export function h(tag, props = {}, ...children) {
  const element = document.createElement(tag);
  for (const [key, value] of Object.entries(props)) {
    if (value === undefined || value === null || value === false) continue;
    if (key === "class") element.className = value;
    else if (key === "dataset") Object.assign(element.dataset, value);
    else if (key.startsWith("on")) element.addEventListener(key.slice(2), value);
    else if (key === "value") element.value = value;
    else if (key === "checked") element.checked = Boolean(value);
    else element.setAttribute(key, value === true ? "" : String(value));
  }
  append(element, children);
  return element;
}

function append(element, children) {
  for (const child of children) {
    if (child === undefined || child === null || child === false) continue;
    if (Array.isArray(child)) append(element, child);
    else element.append(child instanceof Node ? child : String(child));
  }
}

let ids = 0;
/** A fresh id for a label's `for`. */
export function uid(prefix = "f") {
  ids += 1;
  return `${prefix}-${ids}`;
}

/** A table with a caption, header cells scoped to their columns, and `rows` (arrays of cells). */
export function table(caption, headers, rows, props = {}) {
  return h(
    "table",
    props,
    h("caption", {}, caption),
    h(
      "thead",
      {},
      h(
        "tr",
        {},
        headers.map((header) => h("th", { scope: "col" }, header)),
      ),
    ),
    h("tbody", {}, rows),
  );
}

/** A state as a badge: the word is always there, the colour only repeats it. */
export function badge(text, kind = text) {
  return h("span", { class: `badge badge-${String(kind).replace(/[^a-z0-9-]/gi, "-")}` }, text);
}

export function ms(value) {
  if (value === null || value === undefined || Number.isNaN(value)) return "–";
  if (value >= 10_000) return `${(value / 1000).toFixed(1)} s`;
  if (value >= 100) return `${Math.round(value)} ms`;
  return `${Number(value).toFixed(value >= 10 ? 1 : 2)} ms`;
}

export function percent(value) {
  if (value === null || value === undefined || Number.isNaN(value)) return "–";
  return `${(value * 100).toFixed(value < 0.1 && value > 0 ? 2 : 1)} %`;
}

export function count(value) {
  if (value === null || value === undefined) return "–";
  return Number(value).toLocaleString("en-US");
}

/** "3 h 12 min", "45 s": how long since `since` (epoch ms). */
export function duration(fromMs, toMs = Date.now()) {
  let seconds = Math.max(0, Math.round((toMs - fromMs) / 1000));
  const days = Math.floor(seconds / 86_400);
  seconds -= days * 86_400;
  const hours = Math.floor(seconds / 3600);
  seconds -= hours * 3600;
  const minutes = Math.floor(seconds / 60);
  seconds -= minutes * 60;
  if (days > 0) return `${days} d ${hours} h`;
  if (hours > 0) return `${hours} h ${minutes} min`;
  if (minutes > 0) return `${minutes} min ${seconds} s`;
  return `${seconds} s`;
}

/** A local time, e.g. "14:03:27", with the date when it is not today. */
export function time(value) {
  const date = new Date(value);
  if (Number.isNaN(date.getTime())) return String(value);
  const today = new Date().toDateString() === date.toDateString();
  return today ? date.toLocaleTimeString("en-GB") : date.toLocaleString("en-GB");
}

/** A page's heading, focused when the page opens so that screen readers announce it. */
export function heading(text) {
  return h("h1", { tabindex: "-1", id: "page-title" }, text);
}

/** Pretty JSON in a pre block. */
export function json(value) {
  return h("pre", { class: "json" }, JSON.stringify(value, null, 2));
}

/** A message in the page: "info", "error" or "warning". */
export function notice(text, kind = "info") {
  return h("p", { class: `notice notice-${kind}`, role: kind === "error" ? "alert" : undefined }, text);
}
