/**
 * The checks of a server's `auth` that need the rest of the config, run when the config is validated
 * (config/schema.ts), each issue at the path of the field to change:
 *
 * - a server that logs in with OAuth needs the top-level `oauth` block (the key its tokens are
 *   encrypted with);
 * - `passthrough` and `exchange` need callers authenticated by JWT (`auth.jwt`): without their token
 *   there is nothing to forward or exchange; a passthrough audience must be one the gateway accepts,
 *   and must not be the gateway's own (a token meant for the gateway is never forwarded);
 * - no cache may share one result between the callers of a per-user server (`cache.shared: true`),
 *   at any level that can apply to its tools: one user's answer must never reach another.
 */
import picomatch from "picomatch";
import type { z } from "zod";
import type { PolicySet } from "../../policies/config.ts";
import type { AuthConfig } from "../config.ts";
import { isPerUser, type TokenVaultConfig, type UpstreamAuthConfig } from "./config.ts";

interface CheckedServer {
  readonly type: string;
  readonly url?: string;
  readonly prefix?: string | undefined;
  readonly auth?: UpstreamAuthConfig | undefined;
  readonly policies: PolicySet;
}

/** The parts of the config the checks read. */
export interface UpstreamAuthCheckInput {
  readonly mcpServers: Readonly<Record<string, CheckedServer>>;
  readonly policies: PolicySet;
  readonly toolPolicies: Readonly<Record<string, PolicySet>>;
  readonly profiles: Readonly<
    Record<
      string,
      { readonly policies: PolicySet; readonly toolPolicies: Readonly<Record<string, PolicySet>> }
    >
  >;
  readonly gateway: { readonly separator: string };
  readonly auth?: AuthConfig | undefined;
  readonly oauth?: TokenVaultConfig | undefined;
}

export function checkUpstreamAuth(config: UpstreamAuthCheckInput, ctx: z.RefinementCtx): void {
  const oauthServers: string[] = [];
  for (const [name, server] of Object.entries(config.mcpServers)) {
    const auth = server.auth;
    if (auth === undefined) continue;
    const at = ["mcpServers", name, "auth"];
    if (auth.type === "oauth") {
      oauthServers.push(name);
      continue;
    }
    if (auth.type !== "per-principal" && config.auth?.jwt === undefined) {
      ctx.addIssue({
        code: "custom",
        path: [...at, "type"],
        message:
          `"${auth.type}" sends each caller's own token upstream, and only callers authenticated by JWT ` +
          "have one: configure auth.jwt (or use per-principal credentials)",
      });
    }
    if (auth.type === "passthrough") checkPassthroughAudience(name, auth.audience ?? server.url, config, ctx);
    if (isPerUser(auth)) checkNoSharedCache(name, server, config, ctx);
  }
  if (oauthServers.length > 0 && config.oauth === undefined) {
    ctx.addIssue({
      code: "custom",
      path: ["oauth"],
      message:
        `${oauthServers.map((n) => `"${n}"`).join(", ")} log in with OAuth, and their tokens are kept ` +
        `encrypted: set oauth: { encryptionKey: "\${secret:env:SWITCHBOARD_TOKEN_KEY}" } (at least 32 characters)`,
    });
  }
}

function checkPassthroughAudience(
  name: string,
  audience: string | undefined,
  config: UpstreamAuthCheckInput,
  ctx: z.RefinementCtx,
): void {
  if (audience === undefined) return;
  const path = ["mcpServers", name, "auth", "audience"];
  const own = config.auth?.resourceMetadata?.resource;
  if (own !== undefined && own === audience) {
    ctx.addIssue({
      code: "custom",
      path,
      message:
        `"${audience}" is the gateway's own resource (auth.resourceMetadata.resource): a token meant for the ` +
        "gateway is never forwarded. Give the server's own audience",
    });
  }
  const accepted = config.auth?.jwt?.audience;
  const list = accepted === undefined ? undefined : typeof accepted === "string" ? [accepted] : accepted;
  if (list !== undefined && !list.includes(audience)) {
    ctx.addIssue({
      code: "custom",
      path,
      message:
        `tokens for "${audience}" never get past the gateway, whose auth.jwt.audience does not accept them: ` +
        `add "${audience}" to auth.jwt.audience`,
    });
  }
}

/**
 * `cache.shared: true` wherever it could apply to this server's tools: the global policies, each
 * profile's, the server's own, and every tool rule that may match one of its exposed names. A glob's
 * reach is judged by the literal text before its first wildcard, so a rule is refused whenever it
 * could match; narrow the glob to other servers' prefixes to keep it.
 */
function checkNoSharedCache(
  name: string,
  server: CheckedServer,
  config: UpstreamAuthCheckInput,
  ctx: z.RefinementCtx,
): void {
  const prefix = server.prefix ?? name;
  const namePrefix = prefix === "" ? "" : `${prefix}${config.gateway.separator}`;
  const why =
    `server "${name}" sends each caller's own credentials, so its answers differ by caller: a cache ` +
    "shared between callers would hand one user's answer to another. Remove shared: true here";
  const refuse = (path: (string | number)[]) => ctx.addIssue({ code: "custom", path, message: why });
  if (sharesCache(server.policies)) refuse(["mcpServers", name, "policies", "cache", "shared"]);
  if (sharesCache(config.policies)) refuse(["policies", "cache", "shared"]);
  const rules = (toolPolicies: Readonly<Record<string, PolicySet>>, at: string[]) => {
    for (const [pattern, policies] of Object.entries(toolPolicies)) {
      if (sharesCache(policies) && mayMatchPrefix(pattern, namePrefix)) {
        refuse([...at, pattern, "cache", "shared"]);
      }
    }
  };
  rules(config.toolPolicies, ["toolPolicies"]);
  for (const [profile, settings] of Object.entries(config.profiles)) {
    if (sharesCache(settings.policies)) refuse(["profiles", profile, "policies", "cache", "shared"]);
    rules(settings.toolPolicies, ["profiles", profile, "toolPolicies"]);
  }
}

function sharesCache(policies: PolicySet): boolean {
  return policies.cache !== undefined && policies.cache !== false && policies.cache.shared === true;
}

/** Whether a name or glob may match a name that starts with `namePrefix`. */
function mayMatchPrefix(pattern: string, namePrefix: string): boolean {
  if (!picomatch.scan(pattern).isGlob) return pattern.startsWith(namePrefix);
  const wildcard = pattern.search(/[*?[\]{}()!+@\\]/);
  const literal = wildcard === -1 ? pattern : pattern.slice(0, wildcard);
  return literal.startsWith(namePrefix) || namePrefix.startsWith(literal);
}
