// biome-ignore-all lint/suspicious/noTemplateCurlyInString: configs here hold ${secret:…} references.
/**
 * Secrets never reach a client in what the gateway sends that is not a tool's own successful result:
 * a backend's JSON-RPC error that quotes a secret it was given, its log and progress messages, its log
 * messages outside any call, and the gateway's own error results. Each of the three secret providers
 * (env, file, exec), over every request path (HTTP and stdio, both eras, the SDK's path and the
 * gateway's own). A tool's successful result is the tool's business and passes unchanged.
 */
import assert from "node:assert/strict";
import { randomBytes } from "node:crypto";
import { rmSync, writeFileSync } from "node:fs";
import { dirname, join } from "node:path";
import { after, before, describe, test } from "node:test";
import {
  fixtureServer,
  type RunningGateway,
  startHttpGateway,
  writeConfig,
} from "../support/gateway-process.ts";
import { type JsonRpcMessage, type PathSession, requestPaths } from "../support/request-paths.ts";

const REDACTED = "[redacted]";
const random = (label: string) => `${label}-${randomBytes(8).toString("hex")}`;
const ENV_VAR = `SB_E2E_REDACT_${randomBytes(4).toString("hex").toUpperCase()}`;
const secrets = { env: random("envsecret"), file: random("filesecret"), exec: random("execsecret") };
/** The fixture's environment variable that holds each kind of secret. */
const VARIABLE = { env: "S1", file: "S2", exec: "S3" } as const;

const configPath = writeConfig({
  mcpServers: {
    fx: fixtureServer(
      {},
      {
        S1: `\${secret:env:${ENV_VAR}}`,
        S2: "${secret:file:secret.txt}",
        S3: "${secret:exec:cat exec-source.txt}",
      },
    ),
  },
});
const dir = dirname(configPath);
writeFileSync(join(dir, "secret.txt"), `${secrets.file}\n`);
writeFileSync(join(dir, "exec-source.txt"), `${secrets.exec}\n`);

function assertNoSecret(value: unknown, where: string): void {
  const text = JSON.stringify(value);
  for (const [kind, secret] of Object.entries(secrets)) {
    assert.ok(!text.includes(secret), `${where} leaks the ${kind} secret: ${text}`);
  }
}

let gateway: RunningGateway;

before(async () => {
  gateway = await startHttpGateway(configPath, [], { [ENV_VAR]: secrets.env });
});

after(async () => {
  await gateway?.stop();
  rmSync(dir, { recursive: true, force: true });
});

for (const path of requestPaths(configPath, () => gateway.url, { env: { [ENV_VAR]: secrets.env } })) {
  describe(`secrets are redacted from what a client is sent: ${path.name}`, () => {
    let session: PathSession;
    before(async () => {
      session = await path.open();
    });
    after(async () => {
      await session?.close();
    });

    for (const kind of ["env", "file", "exec"] as const) {
      test(`a backend's JSON-RPC error that quotes the ${kind} secret`, async () => {
        const { response } = await session.request("tools/call", {
          name: "fx__leak",
          arguments: { env: VARIABLE[kind], via: "rpc_error" },
        });
        assert.ok(response.error, `a JSON-RPC error: ${JSON.stringify(response)}`);
        // (An SDK v1 server puts "MCP error -32000: " before its own message.)
        assert.match(response.error.message, /cannot authenticate with \[redacted\]$/);
        assert.deepEqual(response.error.data, { token: REDACTED });
        assertNoSecret(response, "the error");
      });

      test(`log and progress messages of a call that hold the ${kind} secret`, async () => {
        const exchange = await session.request(
          "tools/call",
          { name: "fx__leak", arguments: { env: VARIABLE[kind], via: "notifications" } },
          { progress: true },
        );
        assert.equal((exchange.response.result as { isError?: boolean }).isError, undefined);
        const progress = exchange.notifications.find((n) => n.method === "notifications/progress");
        assert.ok(progress, `a progress notification: ${JSON.stringify(exchange.notifications)}`);
        assert.equal(progress.params?.message, `progress: ${REDACTED}`);
        assertNoSecret(exchange, "the call's notifications");
        assertNoSecret(session.background, "the notifications received so far");
      });
    }

    test("an isError result quoting a secret is redacted; a successful result is not altered", async () => {
      const failed = await session.request("tools/call", {
        name: "fx__fail",
        arguments: { reason: `rejected ${secrets.file}` },
      });
      assert.deepEqual(failed.response.result?.content, [{ type: "text", text: `rejected ${REDACTED}` }]);
      const echoed = await session.request("tools/call", {
        name: "fx__echo",
        arguments: { message: `mine: ${secrets.file}` },
      });
      assert.deepEqual(echoed.response.result?.content, [{ type: "text", text: `mine: ${secrets.file}` }]);
    });

    if (path.era === "2025") {
      test("a log message outside any call, to a client that asked for logs", async () => {
        await session.request("logging/setLevel", { level: "debug" });
        await session.request("tools/call", {
          name: "fx__leak",
          arguments: { env: VARIABLE.exec, via: "background_log" },
        });
        const later = await session.waitForBackground(
          (m: JsonRpcMessage) =>
            m.method === "notifications/message" && String(m.params?.data).startsWith("later:"),
        );
        assert.equal(later.params?.data, `later: ${REDACTED}`);
        assertNoSecret(session.background, "the background notifications");
      });
    }
  });
}
