/**
 * A real headless Chromium for the console's browser tests: Debian's `chromium` (installed by
 * .ci/run when missing), driven by playwright-core. In CI (CI=true) a missing browser fails the
 * test; elsewhere the test is skipped and says how to get the browser.
 */
import { existsSync } from "node:fs";
import type { TestContext } from "node:test";
import { type Browser, chromium } from "playwright-core";

export const CHROMIUM = process.env.CHROMIUM_PATH ?? "/usr/bin/chromium";

/** The browser, or undefined after skipping `t` (outside CI) when it is not installed. */
export async function launchChromium(t: TestContext): Promise<Browser | undefined> {
  if (!existsSync(CHROMIUM)) {
    const message = `no Chromium at ${CHROMIUM}: install it with "apt-get install -y chromium" (or set CHROMIUM_PATH)`;
    if (process.env.CI === "true") throw new Error(message);
    t.skip(message);
    return undefined;
  }
  // As root (CI, containers) Chromium's sandbox cannot start; the pages it opens are the test's own.
  return chromium.launch({ executablePath: CHROMIUM, args: ["--no-sandbox", "--disable-dev-shm-usage"] });
}
