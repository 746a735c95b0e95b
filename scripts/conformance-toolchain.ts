/**
 * The newest conformance suite needs Node 22, and the project runs on Node 20. Rather than change the
 * system or the project's dependencies, this installs what the suite needs into a cache folder outside
 * the repository, from the npm registry only, and reuses it on the next run:
 *
 *   <cache>/node22/node_modules/node-<platform>-<arch>/bin/node   Node 22 (the `node-<platform>-<arch>`
 *                                                                  packages carry the official binaries)
 *   <cache>/conformance-<version>/node_modules/@modelcontextprotocol/conformance
 *
 * The cache is $CONFORMANCE_CACHE, else $XDG_CACHE_HOME/switchboard/conformance, else
 * ~/.cache/switchboard/conformance. $CONFORMANCE_NODE names a Node 22+ binary to use instead of
 * installing one. Each install goes to a temporary folder renamed into place when complete, so an
 * interrupted or concurrent install never leaves a half-made toolchain behind.
 */
import { execFile } from "node:child_process";
import { existsSync } from "node:fs";
import { mkdir, readFile, rename, rm } from "node:fs/promises";
import { homedir } from "node:os";
import { join } from "node:path";
import { promisify } from "node:util";
import { runToEnd } from "./conformance-common.ts";

const run = promisify(execFile);

/** The suite this script runs: the newest pre-release of @modelcontextprotocol/conformance. */
export const NEXT_SUITE_VERSION = "0.2.0-alpha.12";
/** The Node major the suite needs: it calls `fs.globSync`, and a dependency declares `node >=22`. */
export const NEXT_NODE_MAJOR = 22;

export interface Toolchain {
  readonly node: string;
  readonly nodeVersion: string;
  /** The suite's CLI entry (dist/index.js), run with `node`. */
  readonly suite: string;
  readonly suiteVersion: string;
}

export function defaultCacheDir(): string {
  const fromEnv = process.env.CONFORMANCE_CACHE;
  if (fromEnv) return fromEnv;
  return join(process.env.XDG_CACHE_HOME || join(homedir(), ".cache"), "switchboard", "conformance");
}

async function versionOf(node: string): Promise<string | undefined> {
  try {
    return (await run(node, ["--version"])).stdout.trim();
  } catch {
    return undefined;
  }
}

function majorOf(version: string | undefined): number {
  return Number(/^v(\d+)\./.exec(version ?? "")?.[1] ?? 0);
}

/** Installs `spec` with npm into `dir`, through a temporary folder renamed into place. */
async function npmInstall(dir: string, spec: string, deadline: AbortSignal, verbose: boolean): Promise<void> {
  const staging = `${dir}.partial-${process.pid}`;
  await rm(staging, { recursive: true, force: true });
  await mkdir(staging, { recursive: true });
  process.stderr.write(`conformance: installing ${spec} into ${dir}\n`);
  const npm = process.platform === "win32" ? "npm.cmd" : "npm";
  const result = await runToEnd(
    npm,
    [
      "install",
      "--prefix",
      staging,
      "--no-audit",
      "--no-fund",
      "--no-package-lock",
      "--ignore-scripts",
      "--loglevel=error",
      spec,
    ],
    deadline,
    verbose,
  );
  if (result.code !== 0) {
    await rm(staging, { recursive: true, force: true });
    throw new Error(
      `npm could not install ${spec} (exit ${result.code}); check the network and the npm registry:\n` +
        result.output.slice(-2_000),
    );
  }
  try {
    await rename(staging, dir);
  } catch (error) {
    // Another run installed it meanwhile: theirs is as good as ours.
    await rm(staging, { recursive: true, force: true });
    if (!existsSync(dir)) throw error;
  }
}

/** A Node 22+ binary: $CONFORMANCE_NODE, this process's own Node if new enough, else one from the cache. */
async function ensureNode(cache: string, deadline: AbortSignal, verbose: boolean): Promise<[string, string]> {
  const candidates = [process.env.CONFORMANCE_NODE, process.execPath].filter((p): p is string => !!p);
  for (const candidate of candidates) {
    const version = await versionOf(candidate);
    if (majorOf(version) >= NEXT_NODE_MAJOR) return [candidate, version as string];
  }
  if (process.platform === "win32") {
    throw new Error(`the conformance suite needs Node ${NEXT_NODE_MAJOR}+; set CONFORMANCE_NODE to one`);
  }
  const pkg = `node-${process.platform}-${process.arch}`;
  const dir = join(cache, `node${NEXT_NODE_MAJOR}`);
  const binary = join(dir, "node_modules", pkg, "bin", "node");
  if (majorOf(await versionOf(binary)) !== NEXT_NODE_MAJOR) {
    await rm(dir, { recursive: true, force: true });
    await npmInstall(dir, `${pkg}@${NEXT_NODE_MAJOR}`, deadline, verbose);
  }
  const version = await versionOf(binary);
  if (majorOf(version) !== NEXT_NODE_MAJOR) {
    throw new Error(`${binary} is not a working Node ${NEXT_NODE_MAJOR} (it says ${version ?? "nothing"})`);
  }
  return [binary, version as string];
}

async function ensureSuite(cache: string, deadline: AbortSignal, verbose: boolean): Promise<string> {
  const dir = join(cache, `conformance-${NEXT_SUITE_VERSION}`);
  const home = join(dir, "node_modules", "@modelcontextprotocol", "conformance");
  const installed = await readFile(join(home, "package.json"), "utf8")
    .then((text) => (JSON.parse(text) as { version?: string }).version)
    .catch(() => undefined);
  if (installed !== NEXT_SUITE_VERSION || !existsSync(join(home, "dist", "index.js"))) {
    await rm(dir, { recursive: true, force: true });
    await npmInstall(dir, `@modelcontextprotocol/conformance@${NEXT_SUITE_VERSION}`, deadline, verbose);
  }
  return join(home, "dist", "index.js");
}

/** Makes sure Node 22 and the suite are there (installing what is missing) and says where they are. */
export async function ensureToolchain(
  cache: string,
  deadline: AbortSignal,
  verbose: boolean,
): Promise<Toolchain> {
  await mkdir(cache, { recursive: true });
  const [node, nodeVersion] = await ensureNode(cache, deadline, verbose);
  const suite = await ensureSuite(cache, deadline, verbose);
  return { node, nodeVersion, suite, suiteVersion: NEXT_SUITE_VERSION };
}
