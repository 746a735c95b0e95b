/**
 * The web console in a real headless Chromium, against the built CLI with auth on, as an operator uses
 * it: signing in with an admin's API key (and refused with another's), the overview's servers and their
 * states, a backend killed and its row turning down live, a call from "Try a tool" with a form generated
 * from a rich input schema, and the audit search finding that call. Each page is photographed into
 * docs/console/ (the README shows them), and checked for labelled controls and described images.
 */
import assert from "node:assert/strict";
import { createHash } from "node:crypto";
import { mkdirSync, mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { test } from "node:test";
import type { Locator, Page } from "playwright-core";
import { launchChromium } from "../support/browser.ts";
import { fixtureServer, ROOT, startHttpGateway, writeConfig } from "../support/gateway-process.ts";
import { connectHttpClient } from "../support/mcp-client.ts";

/** The little of the browser's DOM the page functions below use (the tests are compiled without DOM types). */
interface PageElement {
  readonly tagName: string;
  readonly id: string;
  readonly textContent: string | null;
  readonly labels?: { readonly length: number } | null;
  getAttribute(name: string): string | null;
  querySelector(selector: string): PageElement | null;
}
declare const document: {
  readonly activeElement: PageElement | null;
  querySelector(selector: string): PageElement | null;
  querySelectorAll(selector: string): Iterable<PageElement>;
};
declare const window: { stillTheSamePage?: boolean };
interface PageNode {
  readonly parentElement: PageNode | null;
}
declare function getComputedStyle(node: PageNode): {
  readonly color: string;
  readonly backgroundColor: string;
};

const sha256 = (value: string) => createHash("sha256").update(value).digest("hex");
const ADMIN_KEY = "console-admin-key-5c1f0e";
const USER_KEY = "console-user-key-a93d27";
const SHOTS = join(ROOT, "docs/console");
const SHOP = join(ROOT, "test/fixtures/shop-server.ts");

/** Every form control has a label, every image a text alternative, every table a caption. */
async function assertAccessible(page: Page, where: string): Promise<void> {
  const problems = await page.evaluate(() => {
    const found: string[] = [];
    for (const control of document.querySelectorAll("input, select, textarea")) {
      const labelled = (control.labels?.length ?? 0) > 0 || control.getAttribute("aria-label") !== null;
      if (!labelled)
        found.push(`unlabelled ${control.tagName.toLowerCase()} ${control.getAttribute("name")}`);
    }
    for (const image of document.querySelectorAll("img")) {
      if (!image.getAttribute("alt"))
        found.push(`image without alt: ${image.getAttribute("src")?.slice(0, 30)}`);
    }
    for (const table of document.querySelectorAll("table")) {
      if (!table.querySelector("caption")) found.push(`table without caption: ${table.id}`);
    }
    return found;
  });
  assert.deepEqual(problems, [], `accessibility problems on ${where}`);
}

/**
 * The WCAG contrast ratio of an element's text colour against the nearest background colour behind it.
 * Sent as source text: the test runner's transform would add helpers the page does not have.
 */
async function contrastOf(page: Page, selector: string): Promise<number> {
  return page.evaluate(`(() => {
    function rgb(value) { return (value.match(/[\\d.]+/g) || []).map(Number); }
    function channel(c) { const s = c / 255; return s <= 0.03928 ? s / 12.92 : ((s + 0.055) / 1.055) ** 2.4; }
    function luminance(c) { return 0.2126 * channel(c[0]) + 0.7152 * channel(c[1]) + 0.0722 * channel(c[2]); }
    const element = document.querySelector(${JSON.stringify(selector)});
    if (!element) throw new Error("nothing matches " + ${JSON.stringify(selector)});
    let node = element;
    let background = "rgba(0, 0, 0, 0)";
    while (node && (background === "rgba(0, 0, 0, 0)" || background === "transparent")) {
      background = getComputedStyle(node).backgroundColor;
      node = node.parentElement;
    }
    if (background === "rgba(0, 0, 0, 0)") background = "rgb(255, 255, 255)";
    const a = luminance(rgb(getComputedStyle(element).color));
    const b = luminance(rgb(background));
    return (Math.max(a, b) + 0.05) / (Math.min(a, b) + 0.05);
  })()`);
}

async function text(locator: Locator): Promise<string> {
  return (await locator.textContent()) ?? "";
}

async function open(page: Page, name: string, title: string): Promise<void> {
  await page.getByRole("link", { name: title, exact: true }).click();
  await page.waitForSelector(`h1:text-is("${title}")`);
  assert.equal(await page.locator(`nav a[href="#/${name}"]`).getAttribute("aria-current"), "page");
}

test("the console in a real browser", async (t) => {
  const browser = await launchChromium(t);
  if (!browser) return;
  const dir = mkdtempSync(join(tmpdir(), "switchboard-console-"));
  const shop = { command: process.execPath, args: ["--import", "tsx", SHOP], cwd: ROOT };
  const config = writeConfig({
    gateway: { reload: { watch: false } },
    server: { http: { console: { enabled: true } } },
    auth: {
      apiKeys: [
        { id: "ops", sha256: sha256(ADMIN_KEY), roles: ["admin"] },
        { id: "dev", sha256: sha256(USER_KEY), roles: ["reader"] },
      ],
    },
    audit: { sinks: [{ type: "file", path: join(dir, "audit.jsonl"), durability: "sync" }] },
    policies: { rateLimit: { capacity: 50, refillPerSecond: 20 } },
    toolPolicies: {
      fixture__echo: { cache: { ttlMs: 60_000 } },
      fixture__stats: { rateLimit: { capacity: 4, refillPerMinute: 1 } },
    },
    mcpServers: {
      fixture: fixtureServer(),
      shop,
      // Restarted only after a minute: once killed it stays down while the test looks.
      worker: fixtureServer({ restart: { initialDelayMs: 60_000, maxDelayMs: 60_000 } }),
      flaky: fixtureServer({
        policies: { timeout: 200, circuitBreaker: { consecutiveFailures: 2, openMs: 600_000 } },
      }),
    },
  });
  const gateway = await startHttpGateway(config);
  const consoleUrl = new URL("/console/", gateway.url).href;
  const context = await browser.newContext({ viewport: { width: 1280, height: 860 } });
  const page = await context.newPage();
  const pageErrors: string[] = [];
  page.on("pageerror", (error) => pageErrors.push(String(error)));
  mkdirSync(SHOTS, { recursive: true });
  try {
    await t.test("a principal without the admin role gets 403, in the API and in the page", async () => {
      const anonymous = await fetch(new URL("api/session", consoleUrl));
      assert.equal(anonymous.status, 401);
      const user = await fetch(new URL("api/session", consoleUrl), { headers: { "x-api-key": USER_KEY } });
      assert.equal(user.status, 403);
      const body = (await user.json()) as { error: string; error_description: string };
      assert.equal(body.error, "forbidden");
      assert.match(body.error_description, /principal 'dev' has none of the admin roles \(admin/);

      await page.goto(consoleUrl);
      await page.getByLabel("API key or token").fill(USER_KEY);
      await page.getByRole("button", { name: "Sign in" }).click();
      const alert = page.locator(".notice-error");
      await alert.waitFor();
      assert.match(await text(alert), /403: principal 'dev' has none of the admin roles/);
    });

    await t.test("the overview shows the configured servers with their states", async () => {
      await page.getByLabel("API key or token").fill(ADMIN_KEY);
      await page.getByRole("button", { name: "Sign in" }).click();
      await page.waitForSelector('h1:text-is("Overview")');
      for (const server of ["fixture", "shop", "worker", "flaky"]) {
        const row = page.locator(`#servers tr[data-server="${server}"]`);
        await page.waitForSelector(`#servers tr[data-server="${server}"][data-state="up"]`);
        assert.match(await text(row.locator(".state")), /^up$/);
        assert.match(await text(row), /stdio/);
      }
      assert.match(await text(page.locator("#who")), /Signed in as ops/);
      await page.waitForSelector(".live-on");
      // The credentials stay in this tab: another tab asks again.
      const other = await context.newPage();
      await other.goto(consoleUrl);
      await other.getByLabel("API key or token").waitFor();
      await other.close();
    });

    await t.test(
      "killing a backend turns its row down within seconds, without reloading the page",
      async () => {
        await page.evaluate(() => {
          window.stillTheSamePage = true;
        });
        const client = await connectHttpClient(gateway.url, {
          name: "console-test",
          headers: { "x-api-key": ADMIN_KEY },
        });
        try {
          const started = Date.now();
          await client.callTool({ name: "worker__crash", arguments: {} });
          await page.waitForSelector('#servers tr[data-server="worker"][data-state="down"]', {
            timeout: 10_000,
          });
          assert.ok(Date.now() - started < 10_000);
          const row = page.locator('#servers tr[data-server="worker"]');
          assert.match(await text(row.locator(".state")), /down/);
          assert.notEqual((await text(row.locator(".error-text"))).trim(), "–", "the last error is shown");
          await page.waitForSelector('#servers tr[data-server="worker"] td.tools:text-is("0")');
          const same = await page.evaluate(() => window.stillTheSamePage);
          assert.equal(same, true, "the page was not reloaded");

          // Some traffic for the charts, the tools' figures and the resilience page (a nearly empty
          // bucket, an open breaker).
          for (let i = 0; i < 6; i++)
            await client.callTool({ name: "fixture__echo", arguments: { message: "hi" } });
          for (let i = 0; i < 4; i++) await client.callTool({ name: "fixture__stats", arguments: {} });
          for (let i = 0; i < 2; i++)
            await client.callTool({ name: "flaky__slow", arguments: { ms: 1_000 } });
          await client.callTool({ name: "fixture__fail", arguments: {} });
        } finally {
          await client.close();
        }
        // The next point of the charts has those calls.
        await page.waitForFunction(() => {
          const values = [...document.querySelectorAll(".chart-value")].map((v) => v.textContent);
          return values.length === 4 && !values.includes("no calls yet");
        });
        await assertAccessible(page, "overview");
        await page.screenshot({ path: join(SHOTS, "overview.png") });
      },
    );

    let requestId = "";
    await t.test("a call from Try a tool, with a generated form, returns the backend's result", async () => {
      await open(page, "try", "Try a tool");
      await page.locator("#try-tool").selectOption("shop__order");
      await page.getByLabel("item (required)", { exact: true }).fill("lamp");
      await page.getByLabel("quantity (required)", { exact: true }).fill("2");
      await page.getByLabel("size (required)", { exact: true }).selectOption({ label: "M" });
      await page.getByRole("button", { name: "Add tags item" }).click();
      await page.getByRole("button", { name: "Add tags item" }).click();
      await page.getByLabel("tags item 1 (required)", { exact: true }).fill("red");
      await page.getByLabel("tags item 2 (required)", { exact: true }).fill("blue");
      await page.getByRole("button", { name: "Add lines item" }).click();
      await page.getByLabel("note (required)", { exact: true }).fill("gift wrap");
      await page.getByLabel("city (required)", { exact: true }).fill("Oslo");
      await page.getByLabel("express", { exact: true }).selectOption("true");
      await page.getByRole("button", { name: "Call", exact: true }).click();

      const source = page.locator("#try-result .result-source");
      await source.waitFor();
      assert.equal(await source.getAttribute("data-source"), "backend");
      const answered = await text(page.locator("#try-result .block-text pre"));
      assert.equal(answered, "ordered 2 × lamp (M) to Oslo, express, tags red, blue");
      const structured = JSON.parse(await text(page.locator("#try-result .json").first())) as unknown;
      assert.deepEqual(structured, {
        received: {
          item: "lamp",
          quantity: 2,
          size: "M",
          tags: ["red", "blue"],
          lines: [{ note: "gift wrap" }],
          ship: { city: "Oslo", express: true },
        },
      });
      requestId = await text(page.locator("#try-result .result-request"));
      assert.match(requestId, /^[0-9a-f-]{36}$/);
      await assertAccessible(page, "try");
      await page.screenshot({ path: join(SHOTS, "try.png"), fullPage: true });

      // Every kind of content shows as a client would see it.
      await page.locator("#try-tool").selectOption("fixture__all_content");
      await page.getByRole("button", { name: "Call", exact: true }).click();
      await page.waitForSelector("#try-result .block-audio");
      assert.equal(
        await page.locator("#try-result .block-image img").getAttribute("alt"),
        "Image returned by the tool (image/png)",
      );
      assert.match(await text(page.locator("#try-result .block-resource")), /fixture:\/\/doc[\s\S]*embedded/);
      assert.match(await text(page.locator("#try-result .block-link")), /fixture:\/\/doc — doc/);
      assert.match(await text(page.locator("#try-result")), /"ok": true/);
      await assertAccessible(page, "try, every content type");
    });

    await t.test("an audit search finds that call", async () => {
      await open(page, "audit", "Audit");
      await page.getByLabel("Tool (name or glob)").fill("shop__*");
      await page.getByLabel("Principal").fill("ops");
      await page.getByLabel("Outcome").selectOption("ok");
      await page.getByRole("button", { name: "Search" }).click();
      const found = page.locator(`#audit-found tr[data-request="${requestId}"]`);
      await found.waitFor();
      assert.match(await text(found), /shop__order/);
      // The latest records, live, have it too.
      await page.waitForSelector(`#audit-live tr[data-request="${requestId}"]`);
      // A search that matches nothing says so.
      await page.getByLabel("Principal").fill("nobody");
      await page.getByRole("button", { name: "Search" }).click();
      await page.waitForSelector('#audit-results [role="status"]:text("0 records found")');
      await page.getByLabel("Principal").fill("ops");
      await page.getByLabel("From (local time)").fill("2999-01-01T00:00:00");
      await page.getByRole("button", { name: "Search" }).click();
      await page.waitForSelector('#audit-results [role="status"]:text("0 records found")');
      await page.getByLabel("From (local time)").fill("2000-01-01T00:00:00");
      await page.getByRole("button", { name: "Search" }).click();
      await found.waitFor();
      await assertAccessible(page, "audit");
      await page.screenshot({ path: join(SHOTS, "audit.png") });
    });

    await t.test("tools, resilience and config pages show what the gateway resolved", async () => {
      await open(page, "tools", "Tools");
      const echo = page.locator('#tools tr[data-tool="fixture__echo"]');
      await echo.waitFor();
      assert.match(await text(echo), /rateLimit[\s\S]*cache[\s\S]*timeout/);
      await page.waitForFunction(() =>
        /\d+(\.\d+)? %/.test(
          document.querySelector('#tools tr[data-tool="fixture__echo"] td:last-child')?.textContent ?? "",
        ),
      );
      await page.getByLabel("Filter tools").fill("fixture__");
      await page.getByRole("button", { name: /^Calls/ }).click();
      assert.equal(await text(page.locator("#tools thead th[aria-sort=descending]")), "Calls ▼");
      assert.equal(await page.locator("#tools tbody tr").first().getAttribute("data-tool"), "fixture__echo");
      assert.equal(await page.locator('#tools tr[data-tool^="shop__"]').count(), 0);
      await page.getByRole("button", { name: "fixture__echo", exact: true }).click();
      assert.match(
        await text(page.locator("#tool-detail")),
        /Which rules apply to fixture__echo[\s\S]*Set by: policiesfixture__echo/,
      );
      await assertAccessible(page, "tools");
      await page.screenshot({ path: join(SHOTS, "tools.png") });

      await open(page, "resilience", "Resilience");
      await page.waitForSelector('#breakers tr[data-server="flaky"][data-state="open"]');
      assert.match(
        await text(page.locator('#breakers tr[data-server="flaky"] td').last()),
        /^\d\d:\d\d:\d\d \(in \d+ min \d+ s\)$/,
        "when the open breaker lets a trial call through",
      );
      await page.waitForSelector("#buckets tr");
      assert.match(await text(page.locator("#buckets")), /fixture__stats/);
      assert.match(await text(page.locator("#cache-ratio")), /^\d+(\.\d+)? % \(\d+ hits, 1 misses\)$/);
      await assertAccessible(page, "resilience");
      await page.screenshot({ path: join(SHOTS, "resilience.png") });

      await open(page, "config", "Config");
      await page.waitForSelector('#config-servers th:text-is("shop")');
      await assertAccessible(page, "config");
      await page.screenshot({ path: join(SHOTS, "config.png") });
    });

    await t.test("the pages are reached and used with the keyboard alone", async () => {
      await page.goto(new URL("#/overview", consoleUrl).href);
      await page.waitForSelector('h1:text-is("Overview")');
      const reached: string[] = [];
      for (let i = 0; i < 12 && !reached.includes("Config"); i++) {
        await page.keyboard.press("Tab");
        reached.push(await page.evaluate(() => document.activeElement?.textContent?.trim() ?? ""));
      }
      for (const name of ["Overview", "Tools", "Try a tool", "Resilience", "Audit", "Config"]) {
        assert.ok(reached.includes(name), `Tab reaches ${name}: ${reached.join(" | ")}`);
      }
      await page.keyboard.press("Enter");
      await page.waitForSelector('h1:text-is("Config")');
      assert.equal(await page.evaluate(() => document.activeElement?.id), "page-title");
    });

    await t.test("text has a contrast of at least 4.5:1 (WCAG AA)", async () => {
      await open(page, "overview", "Overview");
      await page.waitForSelector('#servers tr[data-state="down"]');
      for (const selector of [
        "h1",
        ".hint",
        'nav a[aria-current="page"]',
        "nav a:not([aria-current])",
        "#servers tbody td",
        "#servers thead th",
        ".badge-up",
        ".badge-down",
        ".chart-title",
        ".live",
      ]) {
        const ratio = await contrastOf(page, selector);
        assert.ok(ratio >= 4.5, `${selector}: contrast ${ratio.toFixed(2)}`);
      }
    });
    assert.deepEqual(pageErrors, [], "no script error in the page");
  } finally {
    await browser.close();
    await gateway.stop();
    rmSync(dir, { recursive: true, force: true });
  }
});
