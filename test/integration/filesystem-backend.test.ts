/**
 * The filesystem backend through the Backend interface, on a temporary folder laid out with files,
 * binaries, and symlinks that stay inside or lead outside the root. Next to the root sits an
 * "outside" folder with a secret that no call may read, change or reveal.
 */
import assert from "node:assert/strict";
import {
  constants,
  existsSync,
  lstatSync,
  mkdirSync,
  mkdtempSync,
  readFileSync,
  renameSync,
  rmSync,
  symlinkSync,
  writeFileSync,
} from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, before, describe, test } from "node:test";
import { createFilesystemBackend, type FilesystemBackend } from "../../src/backends/filesystem/backend.ts";
import {
  type FilesystemBackendInput,
  filesystemBackendSchema,
} from "../../src/backends/filesystem/config.ts";
import { OutsideRoot, RootJail } from "../../src/backends/filesystem/root-jail.ts";
import { GatewayError } from "../../src/core/errors.ts";
import type { CallToolResult } from "../../src/core/types.ts";
import { silentLogger } from "../../src/observability/logger.ts";
import { context, errorCode, NO_EVENTS, textOrTypeOf } from "../support/backend-harness.ts";

const SECRET = "top secret, outside the root";
const PNG = Buffer.from([0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a, 0, 0, 0, 13]);
const BINARY = Buffer.from([0, 1, 2, 3, 254, 255, 0, 7]);

let base: string;
let root: string;
let outside: string;

function layout(): void {
  base = mkdtempSync(join(tmpdir(), "switchboard-fs-"));
  root = join(base, "root");
  outside = join(base, "outside");
  mkdirSync(join(outside, "b"), { recursive: true });
  writeFileSync(join(outside, "secret.txt"), `${SECRET}\nneedle\n`);
  writeFileSync(join(outside, "b", "file.txt"), SECRET);
  mkdirSync(join(root, "docs", "nested"), { recursive: true });
  mkdirSync(join(root, "node_modules", "pkg"), { recursive: true });
  mkdirSync(join(root, "empty"));
  writeFileSync(join(root, "docs", "readme.md"), "# Readme\nThe needle is here.\n");
  writeFileSync(join(root, "docs", "guide.md"), "# Guide\nNothing to see.\n");
  writeFileSync(join(root, "docs", "nested", "deep.txt"), "deep NEEDLE text\n");
  writeFileSync(join(root, "node_modules", "pkg", "index.md"), "needle in node_modules\n");
  writeFileSync(join(root, "data.bin"), BINARY);
  writeFileSync(join(root, "image.png"), PNG);
  writeFileSync(join(root, "big.txt"), "0123456789".repeat(300));
  writeFileSync(join(root, "odd %41 name.txt"), "percent signs are fine");
  symlinkSync(join("docs", "readme.md"), join(root, "link-inside"));
  symlinkSync(join("..", "outside", "secret.txt"), join(root, "link-out"));
  symlinkSync(join("..", "outside"), join(root, "dir-out"));
  symlinkSync(join(outside, "secret.txt"), join(root, "abs-link"));
  // Leads outside to nothing: refused all the same, so whether something is there never shows.
  symlinkSync(join("..", "outside", "no-such-file"), join(root, "dangling-out"));
  symlinkSync(join("..", "docs", "gone.md"), join(root, "docs", "dangling-in"));
  // A link to a folder inside: listed, never entered by a search.
  symlinkSync("docs", join(root, "docs-link"));
  // A link that stays inside, to a link that leads out: refused at the second hop.
  symlinkSync("dir-out", join(root, "via-inside"));
  // Leaves the root and comes back: it lands inside, so it works.
  symlinkSync(join("..", "root", "docs", "guide.md"), join(root, "round-trip"));
}

/** The one refusal for a path that leads outside through a link, whatever the tool ("PATH" for the path). */
const LINK_OUT = /: it leads outside the root through a symbolic link\. /;
const OUTSIDE_TEXT =
  'Path PATH is outside the root of backend "docs": it leads outside the root through a symbolic link. ' +
  'Use a path relative to the root (like "notes/todo.md") that stays inside it.';

async function backend(config: Omit<FilesystemBackendInput, "type" | "root"> & { root?: string } = {}) {
  const parsed = filesystemBackendSchema.parse({ type: "filesystem", root, maxReadBytes: 2_000, ...config });
  const b = createFilesystemBackend("docs", parsed, silentLogger());
  await b.start(NO_EVENTS);
  return b;
}

function call(b: FilesystemBackend, tool: string, args: Record<string, unknown>) {
  return b.callTool({ server: "docs", tool, args }, context());
}

function assertOutside(result: CallToolResult, path: string): void {
  assert.equal(
    result.isError,
    true,
    `expected a refusal for ${JSON.stringify(path)}, got: ${textOrTypeOf(result)}`,
  );
  assert.equal(errorCode(result), "forbidden");
  assert.ok(
    textOrTypeOf(result).includes(`Path ${JSON.stringify(path)} is outside the root of backend "docs"`),
    textOrTypeOf(result),
  );
  assert.ok(!textOrTypeOf(result).includes(SECRET));
}

before(layout);
after(() => rmSync(base, { recursive: true, force: true }));

describe("filesystem backend: containment", () => {
  const escapes: [string, RegExp][] = [
    ["../outside/secret.txt", /contains "\.\."/],
    ["docs/../../outside/secret.txt", /contains "\.\."/],
    ["docs/nested/../../..", /contains "\.\."/],
    ["..", /contains "\.\."/],
    ["/etc/passwd", /absolute/],
    ["%2e%2e/outside/secret.txt", /URL-encoded/],
    ["..%2foutside%2fsecret.txt", /URL-encoded/],
    ["docs%2F..%2F..%2Foutside", /URL-encoded/],
    ["docs/readme.md\u0000.png", /NUL byte/],
    ["..\\outside\\secret.txt", /backslash/],
    ["docs\\..\\..\\outside", /backslash/],
    ["C:/Windows/win.ini", /Windows drive/],
    ["c:secret.txt", /Windows drive/],
    ["file:///etc/passwd", /URL|absolute|Windows/],
    ["link-out", LINK_OUT],
    ["abs-link", LINK_OUT],
    ["dir-out/secret.txt", LINK_OUT],
    ["dir-out/b/file.txt", LINK_OUT],
    ["dangling-out", LINK_OUT],
    ["via-inside/secret.txt", LINK_OUT],
    ["./dir-out/../secret.txt", /contains "\.\."/],
  ];

  test("every escape is refused with an isError naming the path, for read, list, stat and search", async () => {
    const b = await backend();
    for (const [path, why] of escapes) {
      const read = await call(b, "read", { path });
      assertOutside(read, path);
      assert.match(textOrTypeOf(read), why, path);
    }
    for (const path of ["..", "dir-out", "/tmp", "%2e%2e"]) {
      assertOutside(await call(b, "list", { path }), path);
      assertOutside(await call(b, "search", { path, pattern: "*" }), path);
    }
    // An absolute path that happens to point inside the root is refused too: paths are relative.
    assertOutside(
      await call(b, "read", { path: join(root, "docs", "readme.md") }),
      join(root, "docs", "readme.md"),
    );
  });

  test("one rule, one error: every tool refuses a path through a link that leads out, at any level", async () => {
    const b = await backend({ readOnly: false });
    const calls: [string, (path: string) => Record<string, unknown>][] = [
      ["read", (path) => ({ path })],
      ["stat", (path) => ({ path })],
      ["list", (path) => ({ path })],
      ["search", (path) => ({ path, pattern: "*" })],
      ["write", (path) => ({ path, content: "pwned" })],
      ["write", (path) => ({ path: `${path}/new.txt`, content: "pwned", createDirs: true })],
      ["delete", (path) => ({ path, recursive: true })],
      ["move", (path) => ({ from: path, to: "moved" })],
      ["move", (path) => ({ from: "docs/guide.md", to: path, overwrite: true })],
    ];
    // Files and folders outside, links at the last name or on the way, existing targets or not.
    for (const path of [
      "link-out",
      "abs-link",
      "dir-out",
      "dir-out/secret.txt",
      "dangling-out",
      "via-inside",
    ]) {
      const texts = new Set<string>();
      for (const [tool, args] of calls) {
        const argv = args(path);
        const refused = String(argv.path ?? (argv.from === path ? argv.from : argv.to));
        const result = await call(b, tool, argv);
        assertOutside(result, refused);
        texts.add(textOrTypeOf(result).replace(JSON.stringify(refused), "PATH"));
      }
      assert.deepEqual([...texts], [OUTSIDE_TEXT], `${path}: one error for every tool`);
    }
    assert.equal(readFileSync(join(outside, "secret.txt"), "utf8"), `${SECRET}\nneedle\n`);
    assert.equal(lstatSync(join(root, "link-out")).isSymbolicLink(), true, "the link itself is left alone");
    assert.equal(existsSync(join(root, "moved")), false);
    assert.equal(existsSync(join(outside, "new.txt")), false);
    assert.equal(readFileSync(join(root, "docs", "guide.md"), "utf8"), "# Guide\nNothing to see.\n");
  });

  test("writes, moves and deletes that would escape are refused and change nothing outside", async () => {
    const b = await backend({ readOnly: false });
    assertOutside(await call(b, "write", { path: "link-out", content: "pwned" }), "link-out");
    assertOutside(await call(b, "write", { path: "abs-link", content: "pwned" }), "abs-link");
    assertOutside(await call(b, "write", { path: "dir-out/new.txt", content: "pwned" }), "dir-out/new.txt");
    assertOutside(
      await call(b, "write", { path: "dir-out/x/y.txt", content: "pwned", createDirs: true }),
      "dir-out/x/y.txt",
    );
    assertOutside(await call(b, "write", { path: "../escape.txt", content: "pwned" }), "../escape.txt");
    assertOutside(await call(b, "move", { from: "docs/guide.md", to: "../guide.md" }), "../guide.md");
    assertOutside(
      await call(b, "move", { from: "dir-out/secret.txt", to: "stolen.txt" }),
      "dir-out/secret.txt",
    );
    assertOutside(
      await call(b, "move", { from: "docs/guide.md", to: "dir-out/guide.md" }),
      "dir-out/guide.md",
    );
    assertOutside(await call(b, "delete", { path: "dir-out/secret.txt" }), "dir-out/secret.txt");
    assertOutside(await call(b, "delete", { path: "../outside", recursive: true }), "../outside");
    assert.equal(readFileSync(join(outside, "secret.txt"), "utf8"), `${SECRET}\nneedle\n`);
    assert.equal(existsSync(join(outside, "new.txt")), false);
    assert.equal(existsSync(join(outside, "x")), false);
    assert.equal(existsSync(join(base, "escape.txt")), false);
    assert.equal(existsSync(join(base, "guide.md")), false);
    assert.equal(existsSync(join(outside, "guide.md")), false);
    assert.equal(existsSync(join(root, "docs", "guide.md")), true);
  });

  for (const useProcFd of [true, false]) {
    const how = useProcFd ? "/proc/self/fd" : "fstat and realpath";
    test(`a folder swapped for a symlink between check and use is caught (${how})`, async () => {
      const area = join(root, `swap-${useProcFd}`);
      mkdirSync(join(area, "a", "b"), { recursive: true });
      writeFileSync(join(area, "a", "b", "file.txt"), "inside");
      const jail = new RootJail(root, 'backend "docs"', { useProcFd });
      const rel = `swap-${useProcFd}/a/b/file.txt`;
      const checked = (await jail.locate(jail.parse(rel))).real;
      assert.equal(checked, join(area, "a", "b", "file.txt"));
      // Between check and use, "a" becomes a link to a folder outside that has b/file.txt too.
      renameSync(join(area, "a"), join(area, "a-old"));
      symlinkSync(outside, join(area, "a"));
      await assert.rejects(jail.openFile(checked, rel, constants.O_RDONLY), (error: unknown) => {
        assert.ok(error instanceof OutsideRoot, String(error));
        // The same refusal as for a link found by the check itself.
        assert.equal(error.message, OUTSIDE_TEXT.replace("PATH", JSON.stringify(rel)));
        return true;
      });
    });
  }

  test("a file swapped for a symlink between check and use is caught (O_NOFOLLOW)", async () => {
    writeFileSync(join(root, "swap-file.txt"), "inside");
    const jail = new RootJail(root, 'backend "docs"');
    const checked = (await jail.locate(jail.parse("swap-file.txt"))).real;
    rmSync(checked);
    symlinkSync(join(outside, "secret.txt"), checked);
    await assert.rejects(jail.openFile(checked, "swap-file.txt", constants.O_RDONLY), (error: unknown) => {
      assert.ok(error instanceof OutsideRoot, String(error));
      assert.equal(error.message, OUTSIDE_TEXT.replace("PATH", '"swap-file.txt"'));
      return true;
    });
    // Creating a file where a link appeared does not write through it either.
    await assert.rejects(jail.openFile(checked, "swap-file.txt", constants.O_WRONLY, true), GatewayError);
    assert.equal(readFileSync(join(outside, "secret.txt"), "utf8"), `${SECRET}\nneedle\n`);
    rmSync(checked);
  });
});

describe("filesystem backend: reading", () => {
  test("read-only by default: list, read, stat, search; write tools are not offered", async () => {
    const b = await backend();
    assert.deepEqual(
      b.catalog().tools.map((t) => t.name),
      ["list", "read", "stat", "search"],
    );
    assert.ok(b.catalog().tools.every((t) => t.annotations?.readOnlyHint === true));
    await assert.rejects(call(b, "write", { path: "x.txt", content: "x" }), (error: unknown) => {
      assert.ok(error instanceof GatewayError);
      assert.equal(error.code, "unknown_tool");
      assert.match(error.message, /read-only.*readOnly: false/);
      return true;
    });
    assert.equal(b.state, "up");
    assert.equal((await b.health(new AbortController().signal)).status, "healthy");
  });

  test("reads text, binary as base64, images as image content, and through links that stay inside", async () => {
    const b = await backend();
    assert.equal(
      textOrTypeOf(await call(b, "read", { path: "docs/readme.md" })),
      "# Readme\nThe needle is here.\n",
    );
    assert.equal(
      textOrTypeOf(await call(b, "read", { path: "./docs//readme.md" })),
      "# Readme\nThe needle is here.\n",
    );
    assert.equal(
      textOrTypeOf(await call(b, "read", { path: "link-inside" })),
      "# Readme\nThe needle is here.\n",
    );
    assert.equal(textOrTypeOf(await call(b, "read", { path: "odd %41 name.txt" })), "percent signs are fine");

    const binary = await call(b, "read", { path: "data.bin" });
    assert.match(textOrTypeOf(binary), /is binary \(application\/octet-stream, 8 bytes\)/);
    const resource = binary.content[1] as { type: string; resource: { blob: string } };
    assert.equal(resource.type, "resource");
    assert.deepEqual(Buffer.from(resource.resource.blob, "base64"), BINARY);

    const image = await call(b, "read", { path: "image.png" });
    assert.deepEqual(image.content[1], {
      type: "image",
      data: PNG.toString("base64"),
      mimeType: "image/png",
    });

    const forced = await call(b, "read", { path: "docs/readme.md", encoding: "base64" });
    assert.equal(
      Buffer.from((forced.content[1] as { resource: { blob: string } }).resource.blob, "base64").toString(),
      "# Readme\nThe needle is here.\n",
    );
  });

  test("maxReadBytes: a larger file is refused with a hint, and read in ranges", async () => {
    const b = await backend();
    const whole = await call(b, "read", { path: "big.txt" });
    assert.equal(whole.isError, true);
    assert.match(
      textOrTypeOf(whole),
      /"big\.txt" has 3000 bytes, more than maxReadBytes \(2000\); read it in parts with offset and length/,
    );
    const part = await call(b, "read", { path: "big.txt", offset: 2995, length: 100 });
    assert.equal(part.content[0]?.type === "text" && part.content[0].text, "56789");
    assert.match(textOrTypeOf(part), /bytes 2995–3000 of 3000/);
    assert.equal(textOrTypeOf(await call(b, "read", { path: "big.txt", length: 4 })).split("\n")[0], "0123");
  });

  test("clear errors for folders, missing files and bad arguments", async () => {
    const b = await backend();
    const folder = await call(b, "read", { path: "docs" });
    assert.equal(folder.isError, true);
    assert.match(textOrTypeOf(folder), /"docs" is a folder, not a file; use "list"/);
    assert.match(textOrTypeOf(await call(b, "read", { path: "." })), /the root folder, not a file/);
    const missing = await call(b, "read", { path: "docs/nope.md" });
    assert.match(
      textOrTypeOf(missing),
      /"docs\/nope\.md" does not exist under the root of backend "docs"; list its folder/,
    );
    assert.match(
      textOrTypeOf(await call(b, "list", { path: "docs/readme.md" })),
      /a file where a folder was expected/,
    );
    await assert.rejects(
      call(b, "read", {}),
      (e: unknown) => e instanceof GatewayError && e.code === "invalid_arguments",
    );
    await assert.rejects(
      call(b, "read", { path: 42 }),
      (e: unknown) => e instanceof GatewayError && e.code === "invalid_arguments",
    );
    await assert.rejects(call(b, "search", {}), /pass "pattern", "contains" or both/);
  });

  test("list: folders first, sizes, links with their target inside; links out named, never described", async () => {
    const b = await backend();
    const result = await call(b, "list", {});
    const entries = (
      result.structuredContent as {
        entries: { name: string; kind: string; size?: number; target?: string }[];
      }
    ).entries;
    const byName = new Map(entries.map((e) => [e.name, e]));
    assert.deepEqual(
      entries.slice(0, 4).map((e) => e.kind),
      ["folder", "folder", "folder", "folder"],
    );
    assert.equal(byName.get("data.bin")?.size, 8);
    assert.equal(byName.get("link-inside")?.target, "docs/readme.md");
    assert.equal(byName.get("round-trip")?.target, "docs/guide.md");
    // A link out is an entry of a folder inside the root: listed by name, nothing said about its target.
    for (const name of ["link-out", "dir-out", "abs-link", "dangling-out", "via-inside"]) {
      assert.deepEqual(byName.get(name), { name, kind: "link", outside: true }, name);
    }
    assert.match(
      textOrTypeOf(result),
      /^link-out {2}\(link leading outside the root; no tool follows it\)$/m,
    );
    assert.ok(!textOrTypeOf(result).includes(base), "no absolute path is revealed");
    assert.ok(!textOrTypeOf(result).includes("secret"), "no target is revealed");
    const docs = await call(b, "list", { path: "docs" });
    const broken = (docs.structuredContent as { entries: Record<string, unknown>[] }).entries.find(
      (e) => e.name === "dangling-in",
    );
    assert.deepEqual(broken, { name: "dangling-in", kind: "link", target: "docs/gone.md", broken: true });
    const limited = await backend({ maxListEntries: 2 });
    const cut = await call(limited, "list", { path: "." });
    assert.equal((cut.structuredContent as { truncated: boolean }).truncated, true);
    assert.match(textOrTypeOf(cut), /more not shown \(maxListEntries 2\)/);
  });

  test("stat: kind, size, time, mode; a link inside described as a link, with its target", async () => {
    const b = await backend();
    const file = (await call(b, "stat", { path: "docs/readme.md" })).structuredContent as Record<
      string,
      unknown
    >;
    assert.equal(file.kind, "file");
    assert.equal(file.size, 29);
    assert.match(String(file.modified), /^\d{4}-\d\d-\d\dT/);
    assert.match(String(file.mode), /^0[0-7]{3}$/);
    const link = (await call(b, "stat", { path: "link-inside" })).structuredContent as Record<
      string,
      unknown
    >;
    assert.equal(link.kind, "link");
    assert.equal(link.target, "docs/readme.md");
    const broken = (await call(b, "stat", { path: "docs/dangling-in" })).structuredContent as Record<
      string,
      unknown
    >;
    assert.deepEqual([broken.kind, broken.target, broken.broken], ["link", "docs/gone.md", true]);
    assertOutside(await call(b, "stat", { path: "link-out" }), "link-out");
    assert.equal(
      ((await call(b, "stat", { path: "." })).structuredContent as Record<string, unknown>).kind,
      "folder",
    );
  });

  test("search by glob and by content: bounded, skips node_modules, never follows links out", async () => {
    const b = await backend();
    const md = (await call(b, "search", { pattern: "*.md" })).structuredContent as {
      matches: { path: string }[];
    };
    assert.deepEqual(
      md.matches.map((m) => m.path),
      ["docs/guide.md", "docs/readme.md"],
    );
    const deep = (await call(b, "search", { pattern: "docs/**/*.txt" })).structuredContent as {
      matches: { path: string }[];
    };
    assert.deepEqual(
      deep.matches.map((m) => m.path),
      ["docs/nested/deep.txt"],
    );
    const needle = await call(b, "search", { contains: "needle" });
    const found = (needle.structuredContent as { matches: { path: string; lines: { line: number }[] }[] })
      .matches;
    // link-inside is a link to docs/readme.md, so that file is found twice under two names; docs-link
    // is a link to the docs folder, which a search does not enter.
    assert.deepEqual(found.map((m) => m.path).sort(), [
      "docs/nested/deep.txt",
      "docs/readme.md",
      "link-inside",
    ]);
    assert.equal(found.find((m) => m.path === "docs/readme.md")?.lines[0]?.line, 2);
    assert.ok(!textOrTypeOf(needle).includes(SECRET));
    const exact = (await call(b, "search", { contains: "NEEDLE", caseSensitive: true }))
      .structuredContent as {
      matches: { path: string }[];
    };
    assert.deepEqual(
      exact.matches.map((m) => m.path),
      ["docs/nested/deep.txt"],
    );
    const one = await call(b, "search", { pattern: "*", maxResults: 1 });
    assert.equal((one.structuredContent as { truncated: boolean }).truncated, true);
    const capped = await backend({ search: { maxFiles: 2 } });
    assert.match(
      textOrTypeOf(await call(capped, "search", { pattern: "*" })),
      /stopped after looking at 2 files/,
    );
  });

  test("a missing root leaves the backend down with a clear reason; calls say how to fix it", async () => {
    const b = await backend({ root: join(base, "does-not-exist") });
    assert.equal(b.state, "down");
    await assert.rejects(call(b, "list", {}), (error: unknown) => {
      assert.ok(error instanceof GatewayError);
      assert.equal(error.code, "backend_unavailable");
      assert.match(
        error.message,
        /root folder of backend "docs" cannot be used \(ENOENT\)\. Create it or fix `root`/,
      );
      assert.ok(!error.message.includes(base), "the root's place on the host is not told to the caller");
      return true;
    });
    assert.equal((await b.health(new AbortController().signal)).status, "unhealthy");
  });
});

describe("filesystem backend: writing", () => {
  test("write, move and delete only in write mode, each inside the root", async () => {
    const b = await backend({ readOnly: false });
    assert.deepEqual(
      b.catalog().tools.map((t) => t.name),
      ["list", "read", "stat", "search", "write", "move", "delete"],
    );

    const created = await call(b, "write", { path: "notes/today.md", content: "hello" });
    assert.match(textOrTypeOf(created), /folder of "notes\/today\.md" does not exist .*createDirs: true/);
    const made = await call(b, "write", { path: "notes/today.md", content: "hello", createDirs: true });
    assert.equal(made.isError, undefined, textOrTypeOf(made));
    assert.match(textOrTypeOf(made), /Wrote 5 bytes to "notes\/today\.md" \(created\)/);
    assert.equal(readFileSync(join(root, "notes", "today.md"), "utf8"), "hello");

    const replaced = await call(b, "write", { path: "notes/today.md", content: "hi" });
    assert.match(textOrTypeOf(replaced), /Wrote 2 bytes .*\(replaced\)/);
    assert.equal(readFileSync(join(root, "notes", "today.md"), "utf8"), "hi");
    assert.match(
      textOrTypeOf(await call(b, "write", { path: "notes/today.md", content: "no", overwrite: false })),
      /already exists; pass overwrite: true/,
    );
    await call(b, "write", {
      path: "notes/bytes.bin",
      content: BINARY.toString("base64"),
      encoding: "base64",
    });
    assert.deepEqual(readFileSync(join(root, "notes", "bytes.bin")), BINARY);

    // Through a link that stays inside, even one whose target is missing yet: the target is written.
    const created2 = await call(b, "write", { path: "docs/dangling-in", content: "now here" });
    assert.match(textOrTypeOf(created2), /Wrote 8 bytes to "docs\/dangling-in" \(created\)/);
    assert.equal(readFileSync(join(root, "docs", "gone.md"), "utf8"), "now here");
    rmSync(join(root, "docs", "gone.md"));
    // Through a link that stays inside: the target is written.
    await call(b, "write", { path: "link-inside", content: "# Readme\nThe needle is here.\n" });
    assert.equal(lstatSync(join(root, "link-inside")).isSymbolicLink(), true);

    const moved = await call(b, "move", { from: "notes/today.md", to: "notes/yesterday.md" });
    assert.match(textOrTypeOf(moved), /Moved "notes\/today\.md" to "notes\/yesterday\.md"/);
    assert.equal(existsSync(join(root, "notes", "yesterday.md")), true);
    assert.match(
      textOrTypeOf(await call(b, "move", { from: "notes/bytes.bin", to: "notes/yesterday.md" })),
      /already exists; pass overwrite: true/,
    );
    assert.match(
      textOrTypeOf(await call(b, "move", { from: "notes", to: "notes/inner" })),
      /cannot be moved into itself/,
    );

    assert.match(textOrTypeOf(await call(b, "delete", { path: "notes" })), /not empty; pass recursive: true/);
    assert.match(
      textOrTypeOf(await call(b, "delete", { path: "notes", recursive: true })),
      /Deleted folder "notes"/,
    );
    assert.equal(existsSync(join(root, "notes")), false);
    assert.match(textOrTypeOf(await call(b, "delete", { path: "empty" })), /Deleted folder "empty"/);

    // Moving a link inside moves the link itself.
    assert.match(
      textOrTypeOf(await call(b, "move", { from: "link-inside", to: "link-moved" })),
      /Moved "link-inside" to "link-moved"/,
    );
    assert.equal(lstatSync(join(root, "link-moved")).isSymbolicLink(), true);
    assert.equal(existsSync(join(root, "docs", "readme.md")), true);
    await call(b, "move", { from: "link-moved", to: "link-inside" });

    // Deleting a link inside removes the link, never what it points to.
    symlinkSync(join("docs", "readme.md"), join(root, "link-to-delete"));
    assert.match(
      textOrTypeOf(await call(b, "delete", { path: "link-to-delete" })),
      /Deleted link "link-to-delete"/,
    );
    assert.equal(existsSync(join(root, "docs", "readme.md")), true);
    // A link that leads out is refused like any path that does, even to delete it.
    assertOutside(await call(b, "delete", { path: "link-out" }), "link-out");
    assert.equal(lstatSync(join(root, "link-out")).isSymbolicLink(), true);

    assert.match(textOrTypeOf(await call(b, "delete", { path: "." })), /cannot apply to the root/);
    const limited = await backend({ readOnly: false, maxWriteBytes: 3 });
    assert.match(
      textOrTypeOf(await call(limited, "write", { path: "x.txt", content: "abcd" })),
      /exceeds maxWriteBytes \(3\)/,
    );
  });
});
