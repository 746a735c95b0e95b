// biome-ignore-all lint/suspicious/noTemplateCurlyInString: these tests are about ${secret:…} references in plain strings.
import assert from "node:assert/strict";
import { mkdtemp, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, before, describe, test } from "node:test";
import { pino } from "pino";
import { interpolate } from "../../src/config/interpolate.ts";
import { findSecretReferences, parseSecretReference } from "../../src/config/secrets/references.ts";
import {
  createSecretResolver,
  type SecretChange,
  type SecretResolver,
} from "../../src/config/secrets/resolver.ts";
import { GatewayError } from "../../src/core/errors.ts";
import { redactSecrets } from "../../src/core/redact.ts";

let dir: string;
before(async () => {
  dir = await mkdtemp(join(tmpdir(), "sb-secrets-"));
});
after(async () => {
  await rm(dir, { recursive: true, force: true });
});

/** A pino logger whose lines land in an array, to check what was logged (and what was not). */
function capturingLogger() {
  const lines: Record<string, unknown>[] = [];
  const raw: string[] = [];
  const logger = pino(
    { level: "trace" },
    {
      write(line: string) {
        raw.push(line);
        lines.push(JSON.parse(line) as Record<string, unknown>);
      },
    },
  );
  return { logger, lines, raw };
}

/**
 * The next change the resolver reports. The deadline timer also keeps the event loop alive: the
 * resolver's own refresh timer is unref'd, so without it the test process would simply end.
 */
function nextChange(resolver: SecretResolver, timeoutMs = 5_000): Promise<SecretChange> {
  return new Promise((resolve, reject) => {
    const deadline = setTimeout(
      () => reject(new Error(`no secret change within ${timeoutMs} ms`)),
      timeoutMs,
    );
    const off = resolver.onChange((change) => {
      clearTimeout(deadline);
      off();
      resolve(change);
    });
  });
}

describe("findSecretReferences", () => {
  test("finds each reference once with every path, skipping literals and keys", () => {
    const found = findSecretReferences({
      mcpServers: {
        db: { env: { PASSWORD: "${secret:env:DB_PASS}", URL: "postgres://u:${secret:env:DB_PASS}@h/db" } },
        api: { headers: { Authorization: "Bearer ${secret:file:./token}" } },
      },
      literal: "$${secret:env:NOT_A_REF}",
      "${secret:env:KEY}": "keys are not read",
      list: ["${secret:exec:echo hi}"],
      plain: "${HOME}",
    });
    assert.deepEqual(found, [
      { reference: "env:DB_PASS", paths: ["mcpServers.db.env.PASSWORD", "mcpServers.db.env.URL"] },
      { reference: "file:./token", paths: ["mcpServers.api.headers.Authorization"] },
      { reference: "exec:echo hi", paths: ["list[0]"] },
    ]);
  });

  test("searches a default only when it would be used", () => {
    const document = { a: "${TOKEN:-${secret:env:FALLBACK}}" };
    assert.deepEqual(findSecretReferences(document, { env: { TOKEN: "set" } }), []);
    assert.deepEqual(findSecretReferences(document, { env: { TOKEN: "" } }), [
      { reference: "env:FALLBACK", paths: ["a"] },
    ]);
  });
});

describe("parseSecretReference", () => {
  test("rejects unknown kinds and empty targets with what to write", () => {
    assert.throws(() => parseSecretReference("vault:x"), /\$\{secret:env:NAME\}, \$\{secret:file:PATH\}/);
    assert.throws(() => parseSecretReference("file:"), /names no file/);
    assert.throws(() => parseSecretReference("env:1BAD"), /not a variable name/);
  });
});

describe("createSecretResolver", () => {
  test("resolves env, file and exec references, and feeds interpolation", async () => {
    const file = join(dir, "db-password");
    await writeFile(file, "from-file-secret\n");
    const resolver = createSecretResolver({ env: { API_KEY: "env-secret-value" }, baseDir: dir });
    const document = {
      key: "${secret:env:API_KEY}",
      password: "${secret:file:db-password}",
      token: "x-${secret:exec:printf '  exec-secret  \\n'}",
    };
    await resolver.resolveAll(findSecretReferences(document));
    assert.equal(resolver.get("env:API_KEY"), "env-secret-value");
    assert.equal(resolver.get("file:db-password"), "from-file-secret");
    assert.deepEqual(interpolate(document, { resolvers: { secret: resolver.resolver } }), {
      key: "env-secret-value",
      password: "from-file-secret",
      token: "x-exec-secret",
    });
    assert.deepEqual(
      [...resolver.values()].sort(),
      ["env-secret-value", "exec-secret", "from-file-secret"].sort(),
    );
    resolver.close();
  });

  test("a file keeps everything but one trailing newline", async () => {
    await writeFile(join(dir, "two-newlines"), "value\n\n");
    await writeFile(join(dir, "crlf"), "value\r\n");
    const resolver = createSecretResolver({ baseDir: dir, ttlMs: 0 });
    await resolver.resolveAll(["file:two-newlines", "file:crlf"]);
    assert.equal(resolver.get("file:two-newlines"), "value\n");
    assert.equal(resolver.get("file:crlf"), "value");
  });

  test("reports every failure at once, naming the reference, its paths and what to do", async () => {
    const resolver = createSecretResolver({ env: {}, baseDir: dir, ttlMs: 0 });
    const error = await resolver
      .resolveAll([
        { reference: "env:MISSING_ONE", paths: ["mcpServers.db.env.PASSWORD"] },
        "file:does-not-exist",
        "exec:echo 'vault is sealed' >&2; exit 3",
      ])
      .then(
        () => assert.fail("resolveAll should have rejected"),
        (e: unknown) => e,
      );
    assert.ok(error instanceof GatewayError);
    assert.equal(error.code, "config_invalid");
    assert.match(error.message, /3 secrets could not be resolved/);
    assert.match(
      error.message,
      /\$\{secret:env:MISSING_ONE\}: environment variable MISSING_ONE is not set\. Set it .*\(used at mcpServers\.db\.env\.PASSWORD\)/,
    );
    assert.match(error.message, /does-not-exist: it does not exist\. Mount the secret there/);
    assert.match(
      error.message,
      /the command exited with code 3; it said: vault is sealed\. Run it in a shell/,
    );
  });

  test("a missing variable alone is config_variable_missing", async () => {
    const resolver = createSecretResolver({ env: {}, ttlMs: 0 });
    await assert.rejects(resolver.resolveAll(["env:NOPE"]), (error: unknown) => {
      assert.ok(error instanceof GatewayError);
      assert.equal(error.code, "config_variable_missing");
      return true;
    });
  });

  test("an exec that runs too long is killed, with its process group", async () => {
    const resolver = createSecretResolver({ execTimeoutMs: 200, ttlMs: 0 });
    const started = Date.now();
    await assert.rejects(
      resolver.resolveAll(["exec:sleep 30 | cat"]),
      /did not finish within 200 ms and was killed/,
    );
    // The pipeline's `cat` holds stdout; without the group kill we would wait for `sleep 30`.
    assert.ok(Date.now() - started < 10_000);
  });

  test("get before resolveAll is a clear bug report; the interpolation hook reports it as missing", () => {
    const resolver = createSecretResolver({ ttlMs: 0 });
    assert.throws(() => resolver.get("env:X"), /used before it was resolved: pass it to resolveAll/);
    assert.throws(
      () => interpolate({ a: "${secret:env:X}" }, { resolvers: { secret: resolver.resolver } }),
      /secret:env:X/,
    );
  });

  test("refresh on the TTL picks up a changed file and tells listeners", async () => {
    const file = join(dir, "rotating");
    await writeFile(file, "first-value\n");
    const resolver = createSecretResolver({ baseDir: dir, ttlMs: 30 });
    await resolver.resolveAll(["file:rotating"]);
    assert.equal(resolver.get("file:rotating"), "first-value");
    const changed = nextChange(resolver);
    await writeFile(file, "second-value\n");
    assert.deepEqual(await changed, { reference: "file:rotating" });
    assert.equal(resolver.get("file:rotating"), "second-value");
    // The old value may still be in use by connections opened before: it stays redacted.
    assert.deepEqual([...resolver.values()].sort(), ["first-value", "second-value"]);
    resolver.close();
  });

  test("a failing refresh keeps the last value and warns, naming the reference but not the value", async () => {
    const file = join(dir, "vanishing");
    await writeFile(file, "keep-this-value");
    const { logger, lines, raw } = capturingLogger();
    const resolver = createSecretResolver({ baseDir: dir, ttlMs: 0, logger });
    await resolver.resolveAll(["file:vanishing"]);
    await rm(file);
    assert.deepEqual(await resolver.refresh(), { changed: [], failed: ["file:vanishing"] });
    assert.equal(resolver.get("file:vanishing"), "keep-this-value");
    const warning = lines.find((line) => line.msg === "secret refresh failed; keeping the last value");
    assert.ok(warning, "a warning was logged");
    assert.equal(warning.secret, "${secret:file:vanishing}");
    assert.match(String(warning.err), /does not exist/);
    assert.ok(!raw.join("").includes("keep-this-value"));
  });

  test("an exec failure message never shows a known secret, even when the command prints it", async () => {
    const resolver = createSecretResolver({ env: { TOKEN: "super-secret-token" }, ttlMs: 0 });
    await resolver.resolveAll(["env:TOKEN"]);
    await assert.rejects(
      resolver.resolveAll(['exec:echo "bad token super-secret-token" >&2; exit 1']),
      (error: unknown) => {
        assert.ok(error instanceof GatewayError);
        assert.match(error.message, /bad token \[redacted\]/);
        assert.ok(!error.message.includes("super-secret-token"));
        return true;
      },
    );
  });
});

describe("redactSecrets", () => {
  test("replaces values of 4 characters or more, longest first", () => {
    assert.equal(
      redactSecrets("user=abc pass=hunter2hunter2 short=hunter2", ["abc", "hunter2", "hunter2hunter2"]),
      "user=abc pass=[redacted] short=[redacted]",
    );
    assert.equal(redactSecrets("nothing here", []), "nothing here");
  });
});
