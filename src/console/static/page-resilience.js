/**
 * Resilience: each server's circuit breaker and when an open one lets a trial call through, the
 * rate-limit buckets near empty, the result cache and the store.
 */
import { badge, count, duration, h, heading, json, notice, percent, table, time } from "./dom.js";

function breakerRows(breakers, now) {
  return breakers.map((breaker) =>
    h(
      "tr",
      { dataset: { server: breaker.server, state: breaker.state } },
      h("th", { scope: "row" }, breaker.server),
      h("td", {}, badge(breaker.state, `breaker-${breaker.state}`)),
      h(
        "td",
        {},
        breaker.retryAt === undefined
          ? "–"
          : breaker.retryAt > now
            ? `${time(breaker.retryAt)} (in ${duration(now, breaker.retryAt)})`
            : `${time(breaker.retryAt)} (due)`,
      ),
    ),
  );
}

function refill(perSecond) {
  const round = (value) => Math.round(value * 100) / 100;
  return perSecond >= 1 || perSecond === 0 ? `${round(perSecond)}/s` : `${round(perSecond * 60)}/min`;
}

function bucketRows(buckets) {
  return buckets.map((bucket) =>
    h(
      "tr",
      { dataset: { bucket: bucket.key } },
      h("th", { scope: "row" }, h("code", {}, bucket.key)),
      h("td", {}, bucket.tool),
      h("td", {}, bucket.scope),
      h(
        "td",
        { class: "num" },
        h("meter", {
          min: 0,
          max: bucket.capacity,
          low: bucket.capacity * 0.25,
          value: bucket.level,
          "aria-hidden": "true",
        }),
        ` ${bucket.level} of ${bucket.capacity}`,
      ),
      h("td", { class: "num" }, refill(bucket.refillPerSecond)),
      h("td", {}, bucket.rejected ? badge("refused a call", "error") : "–"),
      h("td", {}, time(bucket.seenAt)),
    ),
  );
}

export function resiliencePage(ctx) {
  const body = h("div", {});
  const element = h("div", {}, heading("Resilience"), body);
  const update = () => {
    const resilience = ctx.state.resilience;
    if (!resilience) {
      body.replaceChildren(notice("Waiting for the gateway…"));
      return;
    }
    const now = Date.now();
    const { cache, store } = resilience;
    const lookups = cache.hits + cache.misses;
    body.replaceChildren(
      h(
        "section",
        { "aria-labelledby": "breakers-title" },
        h("h2", { id: "breakers-title" }, "Circuit breakers"),
        resilience.breakers.length === 0
          ? notice("No circuit breaker is configured (policies.circuitBreaker).")
          : h(
              "div",
              { class: "table-wrap" },
              table(
                "Breaker state by server",
                ["Server", "State", "Next trial call"],
                breakerRows(resilience.breakers, now),
                { id: "breakers" },
              ),
            ),
      ),
      h(
        "section",
        { "aria-labelledby": "buckets-title" },
        h("h2", { id: "buckets-title" }, "Rate-limit buckets near empty"),
        h(
          "p",
          { class: "hint" },
          "Below a quarter of their size now, estimated from the last call that drew from each and its refill; learned while the console is open.",
        ),
        resilience.buckets.length === 0
          ? notice("No bucket is near empty.")
          : h(
              "div",
              { class: "table-wrap" },
              table(
                "Buckets near empty, emptiest first",
                ["Bucket", "Tool", "Scope", "Tokens now", "Refill", "Last call", "Seen"],
                bucketRows(resilience.buckets),
                {
                  id: "buckets",
                },
              ),
            ),
      ),
      h(
        "section",
        { "aria-labelledby": "cache-title" },
        h("h2", { id: "cache-title" }, "Result cache"),
        h(
          "dl",
          { class: "facts-list" },
          h("dt", {}, "Entries"),
          h(
            "dd",
            { id: "cache-entries" },
            cache.entries === undefined ? "not counted by a shared store" : count(cache.entries),
          ),
          h("dt", {}, "Hit ratio since start"),
          h(
            "dd",
            { id: "cache-ratio" },
            lookups === 0
              ? "no lookups yet"
              : `${percent(cache.hits / lookups)} (${count(cache.hits)} hits, ${count(cache.misses)} misses)`,
          ),
        ),
      ),
      h(
        "section",
        { "aria-labelledby": "store-title" },
        h("h2", { id: "store-title" }, "Store"),
        h(
          "dl",
          { class: "facts-list" },
          h("dt", {}, "State"),
          h("dd", { id: "store-state" }, badge(store.status), store.detail ? ` ${store.detail}` : ""),
          h("dt", {}, "Shared with other replicas"),
          h("dd", {}, store.shared ? "yes (Redis)" : "no (this process's memory)"),
        ),
        store.data ? h("details", {}, h("summary", {}, "Details"), json(store.data)) : null,
      ),
    );
  };
  update();
  return { element, update };
}
