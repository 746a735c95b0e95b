/**
 * The container image's recipe, run where no container engine is: scripts/container-steps.ts runs
 * deploy/Dockerfile's build stage (npm ci, npm pack) and runtime stage (`npm ci --omit=dev` of the
 * packed tarball) in a temporary folder, starts the gateway as an unprivileged user with the image's
 * ENTRYPOINT and CMD against the real Redis and PostgreSQL, waits for its HEALTHCHECK (/livez), and
 * stops it with SIGTERM. The image itself is not built here.
 */
import assert from "node:assert/strict";
import { execFile } from "node:child_process";
import { createHash } from "node:crypto";
import { join } from "node:path";
import { after, test } from "node:test";
import { promisify } from "node:util";
import pg from "pg";
import { ROOT } from "../../scripts/pack.ts";
import { deleteByPrefix } from "../support/redis.ts";
import { POSTGRES, REDIS, serviceUrl, uniqueName } from "../support/services.ts";

const run = promisify(execFile);
const redisUrl = serviceUrl(REDIS);
const databaseUrl = serviceUrl(POSTGRES);
const prefix = `${uniqueName("container")}:`;
const table = uniqueName("container_audit");

after(async () => {
  if (redisUrl) await deleteByPrefix(redisUrl, prefix);
  if (databaseUrl) {
    const client = new pg.Client({ connectionString: databaseUrl });
    await client.connect();
    await client.query(`DROP TABLE IF EXISTS ${table}`);
    await client.end();
  }
});

test("the Dockerfile's steps build, install the tarball without dev dependencies, and start as non-root with /livez answering", {
  skip:
    redisUrl && databaseUrl ? false : process.env.CI === "true" ? false : "needs REDIS_URL and DATABASE_URL",
}, async () => {
  assert.ok(redisUrl && databaseUrl, "REDIS_URL and DATABASE_URL are set (CI=true)");
  const { stdout } = await run(
    process.execPath,
    ["--import", "tsx", join(ROOT, "scripts/container-steps.ts")],
    {
      cwd: ROOT,
      timeout: 540_000,
      maxBuffer: 64 * 1024 * 1024,
      env: {
        ...process.env,
        REDIS_URL: redisUrl,
        DATABASE_URL: databaseUrl,
        SWITCHBOARD_API_KEY_SHA256: createHash("sha256").update("container-test").digest("hex"),
        SWITCHBOARD_KEY_PREFIX: prefix,
        SWITCHBOARD_AUDIT_TABLE: table,
      },
    },
  ).catch((error: { stdout?: string; stderr?: string; message: string }) => {
    throw new Error(`${error.message}\n${error.stdout ?? ""}\n${error.stderr ?? ""}`);
  });
  const report = JSON.parse(stdout.trim().split("\n").at(-1) ?? "{}") as Record<string, unknown>;
  process.stderr.write(`container steps: ${JSON.stringify(report)}\n`);
  assert.equal(report.exitCode, 0, "SIGTERM exits 0");
  assert.equal(report.readyz, 200, "ready with Redis and PostgreSQL");
  assert.equal(report.imageUser, "node");
  assert.ok(Number(report.installedMB) < 100, `installed: ${report.installedMB} MB`);
});
