/**
 * The skills a server offers (the `io.modelcontextprotocol/skills` extension): read with the SDK's
 * `SkillsClient` when the server declares the extension, as part of its lists, and again when its
 * resource list changes. The gateway answers `skills/list`, `skills/get` and `resources/directory/read`
 * from what is read here, as it answers the other lists from the catalog: the entries are metadata, and
 * the skill files themselves are resources, read through the server's chain.
 */
import type { Client } from "@modelcontextprotocol/client";
import { DIRECTORY_MIME_TYPE, SkillsClient } from "@modelcontextprotocol/client/ext/skills";
import { describeError } from "../../core/errors.ts";
import type { BackendSkills, SkillDirectoryEntry } from "../../core/types.ts";
import type { Logger } from "../../observability/logger.ts";

/** The most directories read from one server: a bound on the requests one connection makes. */
const MAX_DIRECTORIES = 256;

/** The server's skills, or undefined when it does not offer the extension (or cannot list them). */
export async function readSkills(client: Client, log: Logger): Promise<BackendSkills | undefined> {
  const skillsClient = new SkillsClient(client, { skipInvalid: true });
  if (!skillsClient.supported) return undefined;
  try {
    const listing = await skillsClient.list();
    for (const invalid of listing.invalid) {
      log.warn(
        { skill: invalid.uri, reason: invalid.reason },
        "the server listed an invalid skill; left out",
      );
    }
    const directories = skillsClient.directoryRead
      ? await readDirectories(skillsClient, listing.skills, log)
      : undefined;
    return {
      skills: listing.skills,
      ...(directories ? { directories } : {}),
      ...(listing.ttlMs !== undefined ? { ttlMs: listing.ttlMs } : {}),
      ...(listing.cacheScope !== undefined ? { cacheScope: listing.cacheScope } : {}),
    };
  } catch (error) {
    log.warn({ err: describeError(error) }, "could not read the server's skills; none are offered");
    return undefined;
  }
}

/**
 * The directories of the skills, each with its direct children: the folder of each skill, the folders
 * its files are in, and the subfolders the server lists, up to MAX_DIRECTORIES.
 */
async function readDirectories(
  skillsClient: SkillsClient,
  skills: readonly BackendSkills["skills"][number][],
  log: Logger,
): Promise<ReadonlyMap<string, readonly SkillDirectoryEntry[]>> {
  const pending: string[] = [];
  const seen = new Set<string>();
  const add = (uri: string) => {
    if (seen.has(uri) || seen.size >= MAX_DIRECTORIES) return;
    seen.add(uri);
    pending.push(uri);
  };
  for (const skill of skills) {
    const root = parentOf(skill.uri);
    if (root === undefined) continue;
    add(root);
    if (!Array.isArray(skill.resources)) continue;
    for (const file of skill.resources) {
      let dir = parentOf(file.uri);
      while (dir?.startsWith(`${root}/`)) {
        add(dir);
        dir = parentOf(dir);
      }
    }
  }
  const directories = new Map<string, readonly SkillDirectoryEntry[]>();
  for (let uri = pending.shift(); uri !== undefined; uri = pending.shift()) {
    try {
      const { resources } = await skillsClient.readDirectory(uri);
      directories.set(uri, resources);
      for (const child of resources) if (child.mimeType === DIRECTORY_MIME_TYPE) add(child.uri);
    } catch (error) {
      log.debug({ uri, err: describeError(error) }, "could not read a skill directory");
    }
  }
  return directories;
}

/** `skill://a/b/SKILL.md` → `skill://a/b`; undefined at the authority. */
function parentOf(uri: string): string | undefined {
  const slash = uri.lastIndexOf("/");
  const authority = uri.indexOf("://");
  return slash > authority + 2 && authority >= 0 ? uri.slice(0, slash) : undefined;
}
