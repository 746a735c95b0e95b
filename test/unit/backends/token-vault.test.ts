/**
 * The OAuth token vault: logins are encrypted at rest, bound to their server, unreadable with another
 * key, written whole (mode 0600), and refreshed under one lock at a time; and a session that reads it
 * uses only a login made for its server's URL.
 */
import assert from "node:assert/strict";
import { mkdtemp, readFile, rm, stat } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, describe, test } from "node:test";
import { OAuthSession } from "../../../src/backends/mcp/oauth/session.ts";
import { FileTokenVault, StoreTokenVault } from "../../../src/backends/mcp/oauth/token-vault.ts";
import { GatewayError } from "../../../src/core/errors.ts";
import { createLogger } from "../../../src/observability/logger.ts";
import { createMemoryStore } from "../../../src/stores/memory.ts";

const KEY = "a-key-of-at-least-thirty-two-characters!";
const LOGIN = {
  url: "https://docs.example.com/mcp",
  tokens: {
    access_token: "secret-access-token",
    refresh_token: "secret-refresh-token",
    token_type: "Bearer",
  },
  obtainedAt: 1,
};

describe("token vault", async () => {
  const dir = await mkdtemp(join(tmpdir(), "switchboard-vault-"));
  after(() => rm(dir, { recursive: true, force: true }));

  test("a file vault keeps logins encrypted, mode 0600, and reads them back", async () => {
    const path = join(dir, "nested/tokens.json");
    const vault = new FileTokenVault(path, KEY);
    await vault.write("docs", LOGIN);
    const text = await readFile(path, "utf8");
    assert.doesNotMatch(text, /secret-access-token|secret-refresh-token|access_token/);
    assert.equal((await stat(path)).mode & 0o777, 0o600);
    assert.deepEqual(await vault.read("docs"), LOGIN);
    assert.equal(await vault.read("other"), undefined);
    await vault.delete("docs");
    assert.equal(await vault.read("docs"), undefined);
  });

  test("another key cannot read a login, and says to log in again", async () => {
    const path = join(dir, "keys.json");
    await new FileTokenVault(path, KEY).write("docs", LOGIN);
    await assert.rejects(new FileTokenVault(path, `${KEY}-rotated`).read("docs"), (error: unknown) => {
      assert.ok(error instanceof GatewayError);
      assert.match(error.message, /cannot be decrypted.*switchboard login docs/);
      return true;
    });
  });

  test("a login copied under another server's name is refused", async () => {
    const store = createMemoryStore();
    const vault = new StoreTokenVault(store, KEY);
    await vault.write("docs", LOGIN);
    const sealed = (await store.get("oauth:login:docs")) as string;
    assert.doesNotMatch(sealed, /secret-access-token/);
    await store.set("oauth:login:wiki", sealed);
    await assert.rejects(vault.read("wiki"), /belongs to another server/);
  });

  test("work under the lock runs one at a time per server", async () => {
    for (const vault of [
      new FileTokenVault(join(dir, "lock.json"), KEY),
      new StoreTokenVault(createMemoryStore(), KEY),
    ]) {
      let running = 0;
      let most = 0;
      const work = async () => {
        running++;
        most = Math.max(most, running);
        await new Promise((resolve) => setImmediate(resolve));
        running--;
      };
      await Promise.all([1, 2, 3, 4].map(() => vault.withLock("docs", work)));
      assert.equal(most, 1);
    }
  });
});

describe("an OAuth session reading the vault", () => {
  const session = (vault: StoreTokenVault, url: string) =>
    new OAuthSession({
      server: "docs",
      url,
      config: { type: "oauth", grant: "authorization_code", refreshBeforeExpiryMs: 60_000 },
      vault,
      clientName: "switchboard",
      log: createLogger({ level: "silent" }),
    });

  test("uses the stored token, and says to log in when there is none", async () => {
    const vault = new StoreTokenVault(createMemoryStore(), KEY);
    await assert.rejects(
      session(vault, LOGIN.url).token(),
      /needs a login: no login is stored.*switchboard login docs/,
    );
    await vault.write("docs", { ...LOGIN, obtainedAt: Date.now() });
    assert.equal(await session(vault, LOGIN.url).token(), "secret-access-token");
  });

  test("a login made for another URL of the server is not used", async () => {
    const vault = new StoreTokenVault(createMemoryStore(), KEY);
    await vault.write("docs", { ...LOGIN, obtainedAt: Date.now() });
    const lost: string[] = [];
    const moved = session(vault, "https://docs.example.org/mcp");
    moved.watch((reason) => lost.push(reason));
    await assert.rejects(moved.token(), /made for https:\/\/docs\.example\.com\/mcp/);
    assert.equal(lost.length, 1, "the connection is told the login is gone");
  });
});
