/**
 * Runs deploy/Dockerfile without Docker: every stage in a folder of its own under a temporary folder,
 * its WORKDIR, COPY, ENV and RUN steps as the image build would run them (RUN with `sh -c`, in the
 * stage's working folder), then the final stage's ENTRYPOINT and CMD as an unprivileged user, and its
 * HEALTHCHECK until it passes. Then SIGTERM, which must end the gateway with exit code 0.
 *
 * What differs from an image, on purpose: the base image is this machine (its Node and npm), a RUN
 * step's `--mount` is ignored (npm uses this machine's cache), the gateway listens on 127.0.0.1 and a
 * free port instead of 0.0.0.0:8931, and it sees, besides the image's ENV, only the variables a
 * `docker run -e` would give it: REDIS_URL, DATABASE_URL and SWITCHBOARD_*.
 *
 *   node --import tsx scripts/container-steps.ts
 *
 * Prints one JSON line with what it measured; exits 1 when a step fails.
 */
import { type ChildProcess, execFileSync, spawn, spawnSync } from "node:child_process";
import { chmodSync, cpSync, existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync } from "node:fs";
import { createServer } from "node:net";
import { tmpdir } from "node:os";
import { basename, join, posix } from "node:path";
import { ROOT } from "./pack.ts";

interface Stage {
  readonly name: string;
  readonly root: string;
  cwd: string;
  env: Record<string, string>;
  user: string;
  exposed: number | undefined;
  healthcheck: string[] | undefined;
  entrypoint: string[];
  cmd: string[];
}

/** Dockerfile instructions, continuation lines joined, comments dropped. */
function instructions(text: string): { keyword: string; args: string }[] {
  const joined = text.replace(/\\\n/g, " ");
  return joined
    .split("\n")
    .map((line) => line.trim())
    .filter((line) => line !== "" && !line.startsWith("#"))
    .map((line) => {
      const keyword = line.split(/\s/, 1)[0] ?? "";
      return { keyword: keyword.toUpperCase(), args: line.slice(keyword.length).trim() };
    });
}

/** `--flag=value` options at the start of an instruction's arguments, and what follows them. */
function flags(args: string): { flags: Map<string, string>; rest: string } {
  const found = new Map<string, string>();
  let rest = args;
  for (let m = /^--([a-z-]+)=(\S+)\s*/.exec(rest); m; m = /^--([a-z-]+)=(\S+)\s*/.exec(rest)) {
    found.set(m[1] as string, m[2] as string);
    rest = rest.slice(m[0].length);
  }
  return { flags: found, rest };
}

function execForm(text: string, what: string): string[] {
  const parsed = JSON.parse(text) as unknown;
  if (!Array.isArray(parsed) || !parsed.every((p) => typeof p === "string")) {
    throw new Error(`${what} must be in exec form (a JSON array of strings): ${text}`);
  }
  return parsed;
}

const at = (stage: Stage, path: string) => join(stage.root, posix.resolve(stage.cwd, path));

function build(dockerfile: string, work: string): Stage {
  const stages: Stage[] = [];
  const current = () => {
    const stage = stages.at(-1);
    if (!stage) throw new Error("an instruction before the first FROM");
    return stage;
  };
  for (const { keyword, args } of instructions(dockerfile)) {
    switch (keyword) {
      case "FROM": {
        const name = /\sAS\s+(\S+)$/i.exec(args)?.[1] ?? String(stages.length);
        const root = join(work, `stage-${name}`);
        mkdirSync(root, { recursive: true });
        stages.push({
          name,
          root,
          cwd: "/",
          env: {},
          user: "root",
          exposed: undefined,
          healthcheck: undefined,
          entrypoint: [],
          cmd: [],
        });
        break;
      }
      case "WORKDIR": {
        const stage = current();
        stage.cwd = posix.resolve(stage.cwd, args);
        mkdirSync(at(stage, "."), { recursive: true });
        break;
      }
      case "ENV": {
        const m = /^([A-Za-z_][A-Za-z0-9_]*)[= ](.*)$/.exec(args);
        if (!m) throw new Error(`ENV ${args}: expected NAME=value`);
        current().env[m[1] as string] = m[2] as string;
        break;
      }
      case "COPY": {
        const stage = current();
        const parsed = flags(args);
        const from = parsed.flags.get("from");
        const source = from === undefined ? undefined : stages.find((s) => s.name === from);
        if (from !== undefined && !source) throw new Error(`COPY --from=${from}: no such stage`);
        const paths = parsed.rest.split(/\s+/);
        const dest = paths.pop() as string;
        for (const path of paths) {
          const src = source ? join(source.root, path) : join(ROOT, path);
          const target =
            dest.endsWith("/") || paths.length > 1 ? join(at(stage, dest), basename(path)) : at(stage, dest);
          mkdirSync(join(target, ".."), { recursive: true });
          cpSync(src, target, { recursive: true });
        }
        break;
      }
      case "RUN": {
        const stage = current();
        const { rest } = flags(args); // --mount=type=cache: npm uses this machine's cache instead
        if (/(^|[\s'"=:])\/(?!dev\/null)/.test(rest)) {
          throw new Error(
            `RUN ${rest}: use relative paths, so that this script can run the step outside Docker`,
          );
        }
        const result = spawnSync("sh", ["-c", rest], {
          cwd: at(stage, "."),
          env: { ...process.env, ...stage.env, npm_config_loglevel: "error" },
          stdio: ["ignore", "inherit", "inherit"],
        });
        if (result.status !== 0) throw new Error(`RUN ${rest}: exit code ${result.status}`);
        break;
      }
      case "USER":
        current().user = args;
        break;
      case "EXPOSE":
        current().exposed = Number.parseInt(args, 10);
        break;
      case "HEALTHCHECK":
        current().healthcheck = execForm(args.slice(args.indexOf("CMD ") + 4), "HEALTHCHECK CMD");
        break;
      case "ENTRYPOINT":
        current().entrypoint = execForm(args, "ENTRYPOINT");
        break;
      case "CMD":
        current().cmd = execForm(args, "CMD");
        break;
      default:
        throw new Error(
          `${keyword}: not an instruction this script knows; teach it, or keep the Dockerfile simple`,
        );
    }
  }
  const final = stages.at(-1);
  if (!final) throw new Error("the Dockerfile has no FROM");
  return final;
}

function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const server = createServer().listen(0, "127.0.0.1", () => {
      const { port } = server.address() as { port: number };
      server.close(() => resolve(port));
    });
    server.once("error", reject);
  });
}

/** What the image's user would be: an unprivileged one, whoever runs this script. */
function unprivileged(stage: Stage): { uid?: number; gid?: number } {
  if (stage.user === "root" || stage.user === "0") throw new Error("the image runs as root: add a USER");
  if (process.getuid?.() !== 0) return {};
  // Root here: run as nobody, with the stage's files readable (as they are in the image).
  for (let dir = stage.root; dir !== tmpdir() && dir !== "/"; dir = join(dir, "..")) chmodSync(dir, 0o755);
  execFileSync("chmod", ["-R", "a+rX", stage.root]);
  return { uid: 65534, gid: 65534 };
}

async function waitFor(check: () => boolean, deadlineMs: number, what: string): Promise<number> {
  const started = Date.now();
  while (!check()) {
    if (Date.now() - started > deadlineMs) throw new Error(`${what} did not happen within ${deadlineMs} ms`);
    await new Promise((resolve) => setTimeout(resolve, 250));
  }
  return Date.now() - started;
}

async function main(): Promise<void> {
  const work = mkdtempSync(join(tmpdir(), "switchboard-container-"));
  let gateway: ChildProcess | undefined;
  try {
    const buildStarted = Date.now();
    const stage = build(readFileSync(join(ROOT, "deploy/Dockerfile"), "utf8"), work);
    const buildMs = Date.now() - buildStarted;
    const port = await freePort();
    const hostPath = (arg: string) =>
      arg.startsWith("/") && existsSync(join(stage.root, arg)) ? join(stage.root, arg) : arg;
    const argv = [...stage.entrypoint, ...stage.cmd].map(hostPath);
    const http = argv.indexOf("--http");
    if (http >= 0) argv[http + 1] = `127.0.0.1:${port}`;
    const passed = Object.fromEntries(
      Object.entries(process.env).filter(([name]) =>
        /^(REDIS_URL|DATABASE_URL|SWITCHBOARD_.+|PATH)$/.test(name),
      ),
    );
    const user = unprivileged(stage);
    const [command, ...args] = argv;
    gateway = spawn(command as string, args, {
      cwd: at(stage, "."),
      env: { ...passed, ...stage.env },
      stdio: ["ignore", "ignore", "inherit"],
      ...user,
    });
    const exited = new Promise<number | null>((resolve) => gateway?.once("exit", resolve));
    const healthcheck = (stage.healthcheck ?? []).map((part) =>
      part.replace(`:${stage.exposed ?? 8931}/`, `:${port}/`),
    );
    if (healthcheck.length === 0) throw new Error("the image has no HEALTHCHECK");
    const healthyAfterMs = await waitFor(
      () => {
        if (gateway?.exitCode !== null)
          throw new Error(`the gateway exited with ${gateway?.exitCode} before it was healthy`);
        return spawnSync(healthcheck[0] as string, healthcheck.slice(1), { ...user }).status === 0;
      },
      60_000,
      "a passing HEALTHCHECK",
    );
    const readyz = (await fetch(`http://127.0.0.1:${port}/readyz`)).status;
    gateway.kill("SIGTERM");
    const exitCode = await Promise.race([
      exited,
      new Promise<"hung">((r) => setTimeout(() => r("hung"), 40_000)),
    ]);
    const installedKB = Number(
      execFileSync("du", ["-sk", at(stage, "node_modules")], { encoding: "utf8" }).split("\t")[0],
    );
    const runAs = user.uid === undefined ? `uid ${process.getuid?.()}` : "nobody (uid 65534)";
    process.stdout.write(
      `${JSON.stringify({ buildMs, healthyAfterMs, readyz, exitCode, installedMB: Math.round(installedKB / 1024), runAs, imageUser: stage.user })}\n`,
    );
    if (exitCode !== 0) throw new Error(`SIGTERM ended the gateway with ${exitCode}, not 0`);
  } finally {
    if (gateway && gateway.exitCode === null) gateway.kill("SIGKILL");
    rmSync(work, { recursive: true, force: true });
  }
}

main().catch((error: unknown) => {
  process.stderr.write(`container-steps: ${error instanceof Error ? error.message : String(error)}\n`);
  process.exitCode = 1;
});
