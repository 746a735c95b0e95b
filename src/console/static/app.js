/**
 * The console's page: signs in (when the gateway wants credentials), keeps one live stream open, holds
 * what it told, and shows one page at a time (the part after # in the address).
 */
import { ApiError, credentials, getJson, openStream, postJson, setCredentials } from "./api.js";
import { h, notice } from "./dom.js";
import { auditPage } from "./page-audit.js";
import { configPage } from "./page-config.js";
import { overviewPage } from "./page-overview.js";
import { resiliencePage } from "./page-resilience.js";
import { toolsPage } from "./page-tools.js";
import { tryPage } from "./page-try.js";

const PAGES = {
  overview: { title: "Overview", make: overviewPage },
  tools: { title: "Tools", make: toolsPage },
  try: { title: "Try a tool", make: tryPage },
  resilience: { title: "Resilience", make: resiliencePage },
  audit: { title: "Audit", make: auditPage },
  config: { title: "Config", make: configPage },
};

const SPAN_MS = 15 * 60_000;
const AUDIT_KEPT = 200;

const state = {
  principal: undefined,
  series: [],
  servers: [],
  tools: {},
  resilience: undefined,
  reload: undefined,
  inFlight: 0,
  audit: { unavailable: undefined, latest: [] },
};

const main = document.getElementById("main");
const live = document.getElementById("live");
const who = document.getElementById("who");
let page;
let closeStream;

const ctx = { state, getJson, postJson };

function auditKey(record) {
  return `${record.time}|${record.requestId}|${record.tool}`;
}

function addAudit(records) {
  const seen = new Set(state.audit.latest.map(auditKey));
  const fresh = records.filter((record) => !seen.has(auditKey(record)));
  state.audit.latest = [...state.audit.latest, ...fresh].slice(-AUDIT_KEPT);
}

function applyLive(data) {
  state.servers = data.servers;
  state.tools = data.tools;
  state.resilience = data.resilience;
  state.inFlight = data.inFlight;
  const reloaded = state.reload !== undefined && state.reload.appliedAt !== data.reload.appliedAt;
  state.reload = data.reload;
  return reloaded;
}

function onEvent(name, data) {
  let kind = name;
  switch (name) {
    case "snapshot":
      state.principal = data.principal;
      state.series = data.series;
      state.audit = { unavailable: data.audit.unavailable, latest: [] };
      addAudit(data.audit.latest);
      applyLive(data);
      break;
    case "tick": {
      if (data.point) {
        state.series.push(data.point);
        const oldest = data.point.at - SPAN_MS;
        while (state.series.length > 0 && state.series[0].at < oldest) state.series.shift();
      }
      if (applyLive(data)) kind = "reload";
      break;
    }
    case "servers":
      state.servers = data;
      break;
    case "breakers":
      if (state.resilience) state.resilience = { ...state.resilience, breakers: data };
      break;
    case "audit":
      addAudit(data);
      break;
    default:
      break;
  }
  page?.update?.(kind);
}

function setStatus(text, ok) {
  live.textContent = text;
  live.className = `live ${ok ? "live-on" : "live-off"}`;
}

function currentName() {
  const name = location.hash.replace(/^#\/?/, "").split("?")[0];
  return Object.hasOwn(PAGES, name) ? name : "overview";
}

function show() {
  const name = currentName();
  const { title, make } = PAGES[name];
  for (const link of document.querySelectorAll("nav a")) {
    if (link.getAttribute("href") === `#/${name}`) link.setAttribute("aria-current", "page");
    else link.removeAttribute("aria-current");
  }
  document.title = `${title} · Switchboard console`;
  page = make(ctx);
  main.replaceChildren(page.element);
  document.getElementById("page-title")?.focus();
}

function signInForm(reason) {
  const field = h("input", {
    id: "credentials",
    name: "credentials",
    type: "password",
    autocomplete: "current-password",
    required: true,
  });
  const form = h(
    "form",
    {
      id: "sign-in",
      onsubmit: (event) => {
        event.preventDefault();
        setCredentials(field.value.trim());
        start();
      },
    },
    h("div", { class: "field" }, h("label", { for: "credentials" }, "API key or token"), field),
    h("button", { type: "submit" }, "Sign in"),
  );
  main.replaceChildren(
    h(
      "div",
      { class: "sign-in" },
      h("h1", { tabindex: "-1", id: "page-title" }, "Sign in"),
      reason ? notice(reason, "error") : null,
      h(
        "p",
        {},
        "The console needs the credentials the gateway's MCP endpoint takes, of a principal with an admin role. They are kept in this tab only.",
      ),
      form,
    ),
  );
  field.focus();
}

function refused(error) {
  closeStream?.();
  closeStream = undefined;
  page = undefined;
  who.replaceChildren();
  setStatus("signed out", false);
  if (error.status === 401) signInForm(credentials() ? `${error.message}` : undefined);
  else signInForm(error.message);
}

async function start() {
  try {
    const session = await getJson("session");
    state.principal = session.principal;
  } catch (error) {
    if (error instanceof ApiError && (error.status === 401 || error.status === 403)) return refused(error);
    main.replaceChildren(notice(`The gateway could not be reached: ${error.message}`, "error"));
    return;
  }
  who.replaceChildren(h("span", {}, `Signed in as ${state.principal.id}`));
  if (credentials()) {
    who.append(
      h(
        "button",
        {
          type: "button",
          class: "secondary small",
          onclick: () => {
            setCredentials("");
            refused(new ApiError(401, ""));
          },
        },
        "Sign out",
      ),
    );
  }
  closeStream?.();
  closeStream = openStream({ onEvent, onStatus: setStatus, onRefused: refused });
  show();
}

window.addEventListener("hashchange", () => {
  if (location.hash.startsWith("#/") && state.principal && closeStream) show();
});
// The skip link moves the keyboard to the page without changing the address (which names the page).
document.querySelector(".skip")?.addEventListener("click", (event) => {
  event.preventDefault();
  (document.getElementById("page-title") ?? main).focus();
});
start();
