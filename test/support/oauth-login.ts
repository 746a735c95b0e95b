/**
 * `switchboard login <server>` as a person runs it: the real CLI in a child process prints the
 * authorization URL, and the test plays the browser: it follows the authorization server's redirects
 * (keeping its cookies), posts the sign-in and consent form as `account`, and follows the last
 * redirect to the CLI's loopback port, which ends the login.
 */
import assert from "node:assert/strict";
import { spawn } from "node:child_process";
import { createInterface } from "node:readline";
import { CLI_ARGS, ROOT } from "./gateway-process.ts";

export interface LoginRun {
  /** The authorization URL the CLI printed. */
  readonly authorizationUrl: URL;
  readonly code: number | null;
  readonly stderr: string;
}

export async function loginAs(
  configPath: string,
  server: string,
  account: string,
  env: Record<string, string>,
  /** Runs with the printed URL before the browser opens it. */
  beforeBrowser?: (authorizationUrl: URL) => Promise<void>,
): Promise<LoginRun> {
  const child = spawn(
    process.execPath,
    [...CLI_ARGS, "login", server, "--config", configPath, "--timeout", "60"],
    {
      cwd: ROOT,
      env: { ...process.env, ...env },
      stdio: ["ignore", "pipe", "pipe"],
    },
  );
  let stderr = "";
  child.stderr.setEncoding("utf8").on("data", (chunk: string) => {
    stderr += chunk;
  });
  const exited = new Promise<number | null>((resolve) => child.once("exit", (code) => resolve(code)));
  const killer = setTimeout(() => child.kill("SIGKILL"), 90_000);
  try {
    const printed = await Promise.race([
      new Promise<string>((resolve) =>
        createInterface({ input: child.stdout }).once("line", (line) => resolve(line)),
      ),
      exited.then((code) => {
        throw new Error(`switchboard login exited (${code}) before printing a URL:\n${stderr}`);
      }),
    ]);
    const authorizationUrl = new URL(printed);
    await beforeBrowser?.(authorizationUrl);
    await playBrowser(authorizationUrl, account);
    const code = await exited;
    return { authorizationUrl, code, stderr };
  } finally {
    clearTimeout(killer);
    child.kill();
  }
}

/** Follows redirects from `start`, submitting the consent form on the way, until the loopback callback. */
export async function playBrowser(start: URL, account: string): Promise<void> {
  const cookies = new Map<string, string>();
  const keep = (response: Response) => {
    for (const cookie of response.headers.getSetCookie()) {
      const [pair = ""] = cookie.split(";");
      const at = pair.indexOf("=");
      cookies.set(pair.slice(0, at), pair.slice(at + 1));
    }
  };
  const cookie = () => [...cookies].map(([name, value]) => `${name}=${value}`).join("; ");
  let next = start.href;
  for (let hop = 0; hop < 20; hop++) {
    const url = new URL(next);
    const toCallback = url.pathname === "/callback";
    let response = await fetch(url, {
      redirect: "manual",
      headers: toCallback ? {} : { cookie: cookie() },
    });
    keep(response);
    if (toCallback) {
      assert.equal(
        response.status,
        200,
        `the login callback answered ${response.status}: ${await response.text()}`,
      );
      return;
    }
    if (response.status === 200) {
      const form = /action="([^"]+)"/.exec(await response.text());
      assert.ok(form?.[1], `expected the sign-in form at ${url.href}`);
      response = await fetch(new URL(form[1], url), {
        method: "POST",
        redirect: "manual",
        headers: { cookie: cookie(), "content-type": "application/x-www-form-urlencoded" },
        body: new URLSearchParams({ account }).toString(),
      });
      keep(response);
    }
    const location = response.headers.get("location");
    assert.ok(location, `expected a redirect from ${url.href}, got ${response.status}`);
    next = new URL(location, url).href;
  }
  assert.fail("too many redirects before the login callback");
}
