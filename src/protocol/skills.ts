/**
 * The skills extension (`io.modelcontextprotocol/skills`) through the gateway: declared to clients when a
 * server behind it offers skills, and answered from what the servers listed (backends/mcp/skills.ts):
 * `skills/list` gathers every skill the principal may read, `skills/get` finds one by URI, and
 * `resources/directory/read` lists a skill directory's children, when its server serves directory reads.
 * The skill files are resources: clients read them with `resources/read`, through their server's chain.
 *
 * One page holds every skill; a cursor is therefore never valid. A URI offered by two servers is the
 * first one's, in config order, as for resources.
 */
import {
  ProtocolError,
  ProtocolErrorCode,
  type Server,
  type ServerContext,
} from "@modelcontextprotocol/server";
import {
  RESOURCES_DIRECTORY_READ_METHOD,
  SKILLS_EXTENSION_ID,
  SKILLS_GET_METHOD,
  SKILLS_LIST_METHOD,
} from "@modelcontextprotocol/server/ext/skills";
import { z } from "zod";
import type { BackendSkills, Principal, SkillDirectoryEntry } from "../core/types.ts";
import type { Gateway } from "../gateway/gateway.ts";

type Skill = BackendSkills["skills"][number];

interface Offered {
  readonly skills: readonly Skill[];
  readonly directories: ReadonlyMap<string, readonly SkillDirectoryEntry[]>;
  readonly directoryRead: boolean;
  readonly ttlMs: number;
  readonly cacheScope: "public" | "private";
}

export interface SkillsSite {
  readonly principalOf: (ctx: ServerContext) => Principal;
  readonly profile: string | undefined;
  /** 2026-07-28 results carry how long a client may keep them (`ttlMs`, `cacheScope`). */
  readonly modern: boolean;
}

const CursorParams = z.looseObject({ cursor: z.string().optional() });
const UriParams = z.looseObject({ uri: z.string(), cursor: z.string().optional() });

/**
 * Declares the extension and answers its methods on `server`, when a server behind the gateway offers
 * skills now (instances are made per connection, or per request for 2026-07-28 clients).
 */
export function serveSkills(server: Server, gateway: Gateway, site: SkillsSite): void {
  const anywhere = offered(gateway, undefined, site.profile);
  if (!anywhere) return;
  server.registerCapabilities({
    extensions: { [SKILLS_EXTENSION_ID]: anywhere.directoryRead ? { directoryRead: true } : {} },
  });
  const cacheFields = (offer: Offered) =>
    site.modern ? { ttlMs: offer.ttlMs, cacheScope: offer.cacheScope } : {};
  const visible = (ctx: ServerContext) => offered(gateway, site.principalOf(ctx), site.profile) ?? EMPTY;

  server.setRequestHandler(SKILLS_LIST_METHOD, { params: CursorParams }, (params, ctx) => {
    refuseCursor(params.cursor);
    const offer = visible(ctx);
    return { skills: [...offer.skills], ...cacheFields(offer) };
  });
  server.setRequestHandler(SKILLS_GET_METHOD, { params: UriParams }, (params, ctx) => {
    const offer = visible(ctx);
    const skill = offer.skills.find((s) => s.uri === params.uri);
    if (!skill) {
      throw new ProtocolError(
        ProtocolErrorCode.InvalidParams,
        `No skill is served at ${params.uri}. List skills (skills/list) to see what is offered.`,
      );
    }
    return { skill, ...cacheFields(offer) };
  });
  if (anywhere.directoryRead) {
    server.setRequestHandler(RESOURCES_DIRECTORY_READ_METHOD, { params: UriParams }, (params, ctx) => {
      refuseCursor(params.cursor);
      const offer = visible(ctx);
      const children =
        offer.directories.get(params.uri) ?? offer.directories.get(params.uri.replace(/\/+$/, ""));
      if (!children) {
        throw new ProtocolError(
          ProtocolErrorCode.InvalidParams,
          `${params.uri} is not a directory resource of any skill. Read files with resources/read.`,
        );
      }
      return { resources: [...children], ...cacheFields(offer) };
    });
  }
}

const EMPTY: Offered = {
  skills: [],
  directories: new Map(),
  directoryRead: false,
  ttlMs: 0,
  cacheScope: "private",
};

/**
 * The skills of the servers that are up, in config order, that the principal may read (all of them
 * without one); undefined when no server offers skills. A listing may be kept as long as the shortest
 * `ttlMs` says, and shared only if every server allows it.
 */
function offered(gateway: Gateway, principal: Principal | undefined, profile: string | undefined) {
  let any = false;
  let directoryRead = false;
  let ttlMs = Number.POSITIVE_INFINITY;
  let cacheScope: "public" | "private" = "public";
  const seen = new Set<string>();
  const skills: Skill[] = [];
  const directories = new Map<string, readonly SkillDirectoryEntry[]>();
  const readable = (uri: string) =>
    principal === undefined || gateway.mayReadResource(principal, uri, profile);
  for (const backend of gateway.backends()) {
    if (backend.state !== "up") continue;
    const offer = backend.catalog().skills;
    if (!offer) continue;
    any = true;
    directoryRead ||= offer.directories !== undefined;
    ttlMs = Math.min(ttlMs, offer.ttlMs ?? 0);
    if (offer.cacheScope !== "public") cacheScope = "private";
    for (const skill of offer.skills) {
      if (seen.has(skill.uri) || !readable(skill.uri)) continue;
      seen.add(skill.uri);
      skills.push(skill);
    }
    for (const [uri, children] of offer.directories ?? []) {
      if (!directories.has(uri) && readable(uri)) directories.set(uri, children);
    }
  }
  if (!any) return undefined;
  return { skills, directories, directoryRead, ttlMs: Number.isFinite(ttlMs) ? ttlMs : 0, cacheScope };
}

function refuseCursor(cursor: string | undefined): void {
  if (cursor !== undefined) {
    throw new ProtocolError(
      ProtocolErrorCode.InvalidParams,
      "Invalid cursor: the gateway lists every skill on one page and gives no cursors.",
    );
  }
}
