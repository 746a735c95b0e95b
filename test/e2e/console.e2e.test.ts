/**
 * The console over HTTP, against the built CLI: off unless enabled (and then it says how to turn it
 * on); who may (loopback only by default, admin roles with auth); the page's files and security
 * headers; a call made from it, its source (backend, then cache) and its refusals; the config with its
 * secrets redacted; and the live stream's first event and ticks.
 */
import assert from "node:assert/strict";
import { createHash } from "node:crypto";
import { writeFileSync } from "node:fs";
import { request } from "node:http";
import { networkInterfaces } from "node:os";
import { describe, test } from "node:test";
import {
  fixtureServer,
  type RunningGateway,
  startHttpGateway,
  writeConfigRemovedAfterSuite,
} from "../support/gateway-process.ts";

const sha256 = (value: string) => createHash("sha256").update(value).digest("hex");
const ADMIN_KEY = "console-http-admin-7e21c4";
const USER_KEY = "console-http-user-0d93fa";
const SECRET = "console-secret-value-4f8a2b19";

/** How the config names the secret: the gateway resolves it from the environment. */
const REFERENCE = "$" + "{secret:env:CONSOLE_TEST_SECRET}";

const writeConfig = writeConfigRemovedAfterSuite();

function consoleUrl(gateway: RunningGateway, path: string): string {
  return new URL(path, gateway.url).href;
}

/** A GET with the path sent exactly as written (fetch would resolve `..` first). */
function rawGet(gateway: RunningGateway, path: string): Promise<number> {
  const { hostname, port } = new URL(gateway.url);
  return new Promise((resolve, reject) => {
    request({ host: hostname, port, path, method: "GET" }, (res) => {
      res.resume();
      resolve(res.statusCode ?? 0);
    })
      .on("error", reject)
      .end();
  });
}

function nonLoopbackAddress(): string | undefined {
  for (const addresses of Object.values(networkInterfaces())) {
    for (const address of addresses ?? []) {
      if (address.family === "IPv4" && !address.internal) return address.address;
    }
  }
  return undefined;
}

/** Reads SSE events from a stream until `done` says so, or fails after `timeoutMs`. */
async function readEvents(
  url: string,
  headers: Record<string, string>,
  done: (events: { event: string; data: unknown }[]) => boolean,
  timeoutMs = 20_000,
): Promise<{ event: string; data: unknown }[]> {
  const controller = new AbortController();
  const timer = setTimeout(
    () => controller.abort(new Error(`no such events within ${timeoutMs} ms`)),
    timeoutMs,
  );
  const events: { event: string; data: unknown }[] = [];
  try {
    const response = await fetch(url, { headers, signal: controller.signal });
    assert.equal(response.status, 200);
    assert.match(response.headers.get("content-type") ?? "", /^text\/event-stream/);
    const decoder = new TextDecoder();
    let buffer = "";
    for await (const chunk of response.body as AsyncIterable<Uint8Array>) {
      buffer += decoder.decode(chunk, { stream: true });
      let end = buffer.indexOf("\n\n");
      while (end >= 0) {
        const block = buffer.slice(0, end);
        buffer = buffer.slice(end + 2);
        const event = /^event: (.*)$/m.exec(block)?.[1];
        const data = /^data: (.*)$/m.exec(block)?.[1];
        if (event !== undefined && data !== undefined) events.push({ event, data: JSON.parse(data) });
        end = buffer.indexOf("\n\n");
      }
      if (done(events)) return events;
    }
    throw new Error("the stream ended");
  } finally {
    clearTimeout(timer);
    controller.abort();
  }
}

describe("console over HTTP", () => {
  test("off by default: /console answers 404 and says how to turn it on", async () => {
    const gateway = await startHttpGateway(writeConfig({ mcpServers: { fixture: fixtureServer() } }));
    try {
      for (const path of ["/console", "/console/", "/console/api/session"]) {
        const response = await fetch(consoleUrl(gateway, path));
        assert.equal(response.status, 404);
        const body = (await response.json()) as { error: string };
        assert.match(body.error, /The console is off: set server\.http\.console\.enabled to true/);
      }
    } finally {
      await gateway.stop();
    }
  });

  test("without auth, from loopback: the page, its files, calls from it and its refusals", async () => {
    const gateway = await startHttpGateway(
      writeConfig({
        server: { http: { console: { enabled: true } } },
        toolPolicies: { fixture__echo: { cache: { ttlMs: 60_000 } } },
        mcpServers: { fixture: fixtureServer() },
      }),
    );
    try {
      const page = await fetch(consoleUrl(gateway, "/console"));
      assert.equal(page.status, 200);
      assert.equal(page.headers.get("content-type"), "text/html; charset=utf-8");
      const csp = page.headers.get("content-security-policy") ?? "";
      assert.match(csp, /script-src 'self'/);
      assert.match(csp, /frame-ancestors 'none'/);
      assert.equal(page.headers.get("x-content-type-options"), "nosniff");
      assert.match(await page.text(), /<script type="module" src="\/console\/app\.js">/);
      const script = await fetch(consoleUrl(gateway, "/console/app.js"));
      assert.equal(script.headers.get("content-type"), "text/javascript; charset=utf-8");
      assert.equal((await fetch(consoleUrl(gateway, "/console/missing.js"))).status, 404);
      // Files are named, never walked to.
      assert.equal(await rawGet(gateway, "/console/..%2F..%2Fpackage.json"), 404);
      assert.equal(await rawGet(gateway, "/console/static/app.js"), 404);

      const session = await fetch(consoleUrl(gateway, "/console/api/session"));
      assert.deepEqual(await session.json(), { principal: { id: "anonymous", roles: [] } });

      const call = (body: unknown, contentType = "application/json") =>
        fetch(consoleUrl(gateway, "/console/api/call"), {
          method: "POST",
          headers: { "content-type": contentType },
          body: JSON.stringify(body),
        });
      const first = (await (await call({ tool: "fixture__echo", arguments: { message: "hi" } })).json()) as {
        ok: boolean;
        source: string;
        result: { content: { text: string }[] };
      };
      assert.equal(first.ok, true);
      assert.equal(first.source, "backend");
      assert.equal(first.result.content[0]?.text, "hi");
      const again = (await (await call({ tool: "fixture__echo", arguments: { message: "hi" } })).json()) as {
        source: string;
      };
      assert.equal(again.source, "cache");
      const invalid = (await (await call({ tool: "fixture__echo", arguments: { message: 1 } })).json()) as {
        source: string;
        result: { isError: boolean };
      };
      assert.equal(invalid.source, "gateway");
      assert.equal(invalid.result.isError, true);
      const unknown = (await (await call({ tool: "nope", arguments: {} })).json()) as {
        ok: boolean;
        code: string;
      };
      assert.deepEqual([unknown.ok, unknown.code], [false, "unknown_tool"]);

      assert.equal((await call({ tool: "fixture__echo" }, "text/plain")).status, 415);
      assert.equal((await call({ arguments: {} })).status, 400);
      const get = await fetch(consoleUrl(gateway, "/console/api/call"));
      assert.equal(get.status, 405);
      assert.equal(get.headers.get("allow"), "POST");
      const audit = await fetch(consoleUrl(gateway, "/console/api/audit"));
      assert.equal(audit.status, 409);
      assert.match(
        ((await audit.json()) as { error_description: string }).error_description,
        /audit log is off/,
      );
    } finally {
      await gateway.stop();
    }
  });

  test("from another address: refused unless server.http.admin.allowRemote", async (t) => {
    const remote = nonLoopbackAddress();
    if (!remote) {
      t.skip("this machine has no non-loopback IPv4 address to call from");
      return;
    }
    const gateway = await startHttpGateway(
      writeConfig({
        server: { http: { allowedHosts: [remote], console: { enabled: true } } },
        mcpServers: { fixture: fixtureServer() },
      }),
      ["--http", "0.0.0.0:0"],
    );
    try {
      const port = new URL(gateway.url).port;
      for (const path of ["/console/", "/console/api/session"]) {
        const response = await fetch(`http://${remote}:${port}${path}`);
        assert.equal(response.status, 403);
        assert.match(
          ((await response.json()) as { error_description: string }).error_description,
          /loopback only \(server\.http\.admin\.allowRemote is false\)/,
        );
      }
    } finally {
      await gateway.stop();
    }
  });

  test("with auth: admin roles only; the config with its secrets redacted; the live stream", async () => {
    const file = writeConfig({
      gateway: { reload: { watch: false } },
      server: { http: { console: { enabled: true } } },
      auth: {
        apiKeys: [
          { id: "ops", sha256: sha256(ADMIN_KEY), roles: ["admin"] },
          { id: "dev", sha256: sha256(USER_KEY) },
        ],
      },
      toolPolicies: {
        fixture__fail: { fallback: { chain: [{ static: { text: REFERENCE } }] } },
      },
      mcpServers: {
        fixture: fixtureServer(
          { args: [...fixtureServer().args, "--token", REFERENCE] },
          { TOKEN: REFERENCE },
        ),
      },
    });
    const gateway = await startHttpGateway(file, [], { CONSOLE_TEST_SECRET: SECRET });
    const admin = { "x-api-key": ADMIN_KEY };
    try {
      const none = await fetch(consoleUrl(gateway, "/console/api/config"));
      assert.equal(none.status, 401);
      assert.match(none.headers.get("www-authenticate") ?? "", /^Bearer/);
      const user = await fetch(consoleUrl(gateway, "/console/api/config"), {
        headers: { "x-api-key": USER_KEY },
      });
      assert.equal(user.status, 403);
      // The page itself holds no data: it is served, and asks for credentials.
      assert.equal((await fetch(consoleUrl(gateway, "/console/"))).status, 200);

      const config = await fetch(consoleUrl(gateway, "/console/api/config"), { headers: admin });
      assert.equal(config.status, 200);
      const text = await config.text();
      assert.ok(!text.includes(SECRET), "no secret value in the config page");
      assert.match(text, /\[redacted\]/);
      const view = JSON.parse(text) as {
        summary: { servers: { args: string[]; envKeys: string[] }[] };
        reload: { appliedAt: string };
      };
      assert.deepEqual(view.summary.servers[0]?.args.slice(-2), ["--token", "***"]);
      assert.deepEqual(view.summary.servers[0]?.envKeys, ["TOKEN"]);
      assert.ok(Date.parse(view.reload.appliedAt) > 0);

      const events = await readEvents(consoleUrl(gateway, "/console/api/events"), admin, (seen) =>
        seen.some((e) => e.event === "tick"),
      );
      assert.equal(events[0]?.event, "snapshot");
      const snapshot = events[0]?.data as {
        principal: { id: string };
        servers: { name: string; state: string; tools: number; protocolVersion?: string }[];
        series: unknown[];
      };
      assert.equal(snapshot.principal.id, "ops");
      const fixture = snapshot.servers.find((s) => s.name === "fixture");
      assert.equal(fixture?.state, "up");
      assert.match(String(fixture?.protocolVersion), /^\d{4}-\d{2}-\d{2}$/, "the protocol version agreed");
      assert.ok((fixture?.tools ?? 0) > 5);
      assert.ok(Array.isArray(snapshot.series));
      const tick = events.find((e) => e.event === "tick")?.data as { point: { at: number; calls: number } };
      assert.equal(typeof tick.point.at, "number");

      // A reload the gateway refused shows, with why, on the config page.
      writeFileSync(file, '{ "mcpServers": { "fixture": { "command": 42 } } }');
      const reload = await fetch(consoleUrl(gateway, "/admin/reload"), { method: "POST", headers: admin });
      assert.equal(reload.status, 422);
      const after = (await (
        await fetch(consoleUrl(gateway, "/console/api/config"), { headers: admin })
      ).json()) as {
        reload: { stale?: { reason: string } };
      };
      assert.match(String(after.reload.stale?.reason), /mcpServers\.fixture\.command/);
    } finally {
      await gateway.stop();
    }
  });
});
