/**
 * Per-principal access to tools, prompts and resources (the `access` config block).
 *
 * Among the rules that apply to a principal (its id matches `principals`, or it has one of `roles`,
 * or the rule names neither), a matching deny wins over any allow; failing both, `default` decides.
 * Deny-wins makes the outcome independent of rule order, so adding a rule can only ever grant what
 * it allows and take away what it denies, never flip an unrelated decision.
 *
 * This runs on every call and on every list, for every item, so globs are compiled once and
 * decisions are cached per (principal, roles, server, name) in a bounded LRU.
 */
import { LRUCache } from "lru-cache";
import picomatch from "picomatch";
import { GLOB_OPTIONS } from "../config/primitives.ts";
import { GatewayError } from "../core/errors.ts";
import type { Policy, Principal } from "../core/types.ts";
import type { ToolBinding } from "../policies/types.ts";
import type { AccessConfig } from "./config.ts";

const SERVER_PREFIX = "server:";
const CACHE_SIZE = 10_000;

export type AccessKind = "tool" | "prompt" | "resource";

export interface AccessDecision {
  readonly allowed: boolean;
  /** Why, for people: which rule decided, or that the default did. */
  readonly reason: string;
  /** The index in `access.rules` of the rule that decided; absent when the default did. */
  readonly rule?: number;
  /** The allow or deny entry that matched. */
  readonly pattern?: string;
}

export interface AccessControl {
  /** Whether the principal may use the exposed name of `server` (a tool or a prompt). */
  canCall(principal: Principal, exposedName: string, server: string): boolean;
  /** Whether the principal may read the resources of `server` (judged by `server:` entries only). */
  canReadServer(principal: Principal, server: string): boolean;
  /** The decision with its reason, e.g. "rule 2 (access.rules[1]) denies 'db__drop*'". */
  decide(principal: Principal, exposedName: string | undefined, server: string): AccessDecision;
  /** The reason of `decide`, for error messages. */
  explain(principal: Principal, exposedName: string, server: string): string;
  /** Throws AccessDenied unless the principal may use the name. */
  check(principal: Principal, exposedName: string, server: string, kind?: AccessKind): void;
  /** The items (tools, prompts) the principal may use, in order. */
  filter<T>(
    principal: Principal,
    items: readonly T[],
    keyOf?: (item: T) => { name: string; server: string },
  ): T[];
  /** The resources (or templates) whose server the principal may read, in order. */
  filterResources<T>(principal: Principal, items: readonly T[], serverOf: (item: T) => string): T[];
}

export class AccessDenied extends GatewayError {
  constructor(
    principal: Principal,
    name: string,
    reason: string,
    kind: AccessKind = "tool",
    server?: string,
  ) {
    const verb = kind === "resource" ? "read resource" : kind === "prompt" ? "get prompt" : "call tool";
    super(
      "forbidden",
      `Access denied: principal '${principal.id}' may not ${verb} '${name}' (${reason}). ` +
        "Ask an administrator to grant access in the access rules.",
      { data: { principal: principal.id, [kind]: name, ...(server ? { server } : {}), reason } },
    );
    this.name = "AccessDenied";
  }
}

type Matcher = (value: string) => boolean;

interface CompiledEntry {
  readonly pattern: string;
  /** Matches an exposed name; absent for `server:` entries. */
  readonly name?: Matcher;
  /** Matches a server; absent for name entries. */
  readonly server?: Matcher;
}

interface CompiledRule {
  readonly index: number;
  readonly appliesTo: (principal: Principal) => boolean;
  readonly allow: readonly CompiledEntry[];
  readonly deny: readonly CompiledEntry[];
}

function compileEntry(pattern: string): CompiledEntry {
  return pattern.startsWith(SERVER_PREFIX)
    ? { pattern, server: picomatch(pattern.slice(SERVER_PREFIX.length), GLOB_OPTIONS) }
    : { pattern, name: picomatch(pattern, GLOB_OPTIONS) };
}

/** One matcher for a list of globs; an empty list matches nothing. */
export function compileGlobs(patterns: readonly string[]): (value: string) => boolean {
  return patterns.length > 0 ? picomatch([...patterns], GLOB_OPTIONS) : () => false;
}

/**
 * Who a rule (or `signing.require`) applies to: `principals` globs over the id, or any of `roles`;
 * everyone when both are absent, and an empty list matches no one.
 */
export function compileSubject(
  principals: readonly string[] | undefined,
  roles: readonly string[] | undefined,
): (principal: Principal) => boolean {
  if (principals === undefined && roles === undefined) return () => true;
  const idMatches = compileGlobs(principals ?? []);
  const roleSet = new Set(roles ?? []);
  return (principal) => idMatches(principal.id) || principal.roles.some((role) => roleSet.has(role));
}

function entryMatches(entry: CompiledEntry, name: string | undefined, server: string): boolean {
  if (entry.server) return entry.server(server);
  return name !== undefined && entry.name?.(name) === true;
}

function ruleName(index: number): string {
  return `rule ${index + 1} (access.rules[${index}])`;
}

/** The `default` in effect: as configured, else allow without rules and deny with them. */
export function effectiveDefault(config: AccessConfig): "allow" | "deny" {
  return config.default ?? (config.rules.length === 0 ? "allow" : "deny");
}

export function createAccessControl(config: AccessConfig): AccessControl {
  const rules: CompiledRule[] = config.rules.map((rule, index) => ({
    index,
    appliesTo: compileSubject(rule.principals, rule.roles),
    allow: rule.allow.map(compileEntry),
    deny: rule.deny.map(compileEntry),
  }));
  const fallback = effectiveDefault(config);
  const cache = new LRUCache<string, AccessDecision>({ max: CACHE_SIZE });

  function evaluate(principal: Principal, name: string | undefined, server: string): AccessDecision {
    const target = name === undefined ? `server '${server}'` : `'${name}'`;
    let granted: AccessDecision | undefined;
    for (const rule of rules) {
      if (!rule.appliesTo(principal)) continue;
      const denied = rule.deny.find((entry) => entryMatches(entry, name, server));
      if (denied) {
        return {
          allowed: false,
          reason: `${ruleName(rule.index)} denies '${denied.pattern}'`,
          rule: rule.index,
          pattern: denied.pattern,
        };
      }
      if (!granted) {
        const allowed = rule.allow.find((entry) => entryMatches(entry, name, server));
        if (allowed) {
          granted = {
            allowed: true,
            reason: `${ruleName(rule.index)} allows '${allowed.pattern}'`,
            rule: rule.index,
            pattern: allowed.pattern,
          };
        }
      }
    }
    if (granted) return granted;
    return fallback === "allow"
      ? { allowed: true, reason: "no rule matches and the default is allow" }
      : { allowed: false, reason: `no rule allows ${target} for this principal and the default is deny` };
  }

  function decide(principal: Principal, name: string | undefined, server: string): AccessDecision {
    if (rules.length === 0) return evaluate(principal, name, server);
    // \u0000 cannot occur in ids, roles or names from JSON config and MCP names, so keys cannot collide.
    const key = `${principal.id}\u0000${[...principal.roles].sort().join("\u0001")}\u0000${server}\u0000${name ?? "\u0002"}`;
    let decision = cache.get(key);
    if (decision === undefined) {
      decision = evaluate(principal, name, server);
      cache.set(key, decision);
    }
    return decision;
  }

  const defaultKey = (item: unknown) => {
    const { exposedName, server } = item as { exposedName: string; server: string };
    return { name: exposedName, server };
  };

  return {
    canCall: (principal, exposedName, server) => decide(principal, exposedName, server).allowed,
    canReadServer: (principal, server) => decide(principal, undefined, server).allowed,
    decide,
    explain: (principal, exposedName, server) => decide(principal, exposedName, server).reason,
    check(principal, exposedName, server, kind = "tool") {
      const decision = decide(principal, kind === "resource" ? undefined : exposedName, server);
      if (!decision.allowed) throw new AccessDenied(principal, exposedName, decision.reason, kind, server);
    },
    filter(principal, items, keyOf = defaultKey) {
      return items.filter((item) => {
        const { name, server } = keyOf(item);
        return decide(principal, name, server).allowed;
      });
    },
    filterResources(principal, items, serverOf) {
      return items.filter((item) => decide(principal, undefined, serverOf(item)).allowed);
    },
  };
}

/**
 * The access check as a policy in a chain: a tool or a prompt by its exposed name, a resource (whose
 * URI is the request's target) by its server.
 */
export function accessPolicy(access: AccessControl, binding: ToolBinding, kind: AccessKind = "tool"): Policy {
  return (next) => async (call, ctx) => {
    access.check(ctx.principal, kind === "resource" ? call.tool : binding.exposedName, binding.server, kind);
    return next(call, ctx);
  };
}
