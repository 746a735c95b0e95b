/**
 * The gateway's administration endpoints on its HTTP listener (`/admin/…`): `POST /admin/reload` makes
 * the gateway load its config file again. Who may: with `auth` configured, a principal that has one of
 * `server.http.admin.roles`; and, unless `admin.allowRemote`, only from loopback. Without `auth`, only
 * loopback. A refusal says which of the two was missing.
 */
import type { IncomingMessage, ServerResponse } from "node:http";
import type { Principal } from "../../core/types.ts";
import type { Logger } from "../../observability/logger.ts";

export const ADMIN_PREFIX = "/admin/";

export interface AdminOptions {
  readonly roles: readonly string[];
  readonly allowRemote: boolean;
}

/** What a reload answers (see cli/reload.ts). */
export type AdminReload = (
  trigger: string,
) => Promise<
  { readonly ok: true; readonly report: unknown } | { readonly ok: false; readonly reason: string }
>;

export interface AdminDeps {
  readonly options: AdminOptions;
  /** Whether the listener authenticates callers (config `auth`). */
  readonly authenticated: boolean;
  readonly logger: Logger;
  readonly reload: AdminReload | undefined;
}

/** Whether the request came from this host. */
export function fromLoopback(req: IncomingMessage): boolean {
  const address = req.socket.remoteAddress ?? "";
  return address === "127.0.0.1" || address === "::1" || address.startsWith("::ffff:127.");
}

function send(res: ServerResponse, status: number, body: unknown): void {
  res
    .writeHead(status, { "content-type": "application/json", "cache-control": "no-store" })
    .end(JSON.stringify(body));
}

/** Why this caller may not administer the gateway, or undefined when it may. */
export function adminRefusal(
  req: IncomingMessage,
  principal: Principal,
  deps: AdminDeps,
): string | undefined {
  if (!deps.options.allowRemote && !fromLoopback(req)) {
    return "administration is accepted from loopback only (server.http.admin.allowRemote is false)";
  }
  if (!deps.authenticated) {
    return deps.options.allowRemote
      ? "administration from other hosts needs auth: configure auth.apiKeys or auth.jwt"
      : undefined;
  }
  if (!principal.roles.some((role) => deps.options.roles.includes(role))) {
    return `principal '${principal.id}' has none of the admin roles (${deps.options.roles.join(", ")}; server.http.admin.roles)`;
  }
  return undefined;
}

/** Serves one request under /admin/ from a caller already authenticated (when auth is on). */
export async function serveAdmin(
  req: IncomingMessage,
  res: ServerResponse,
  path: string,
  principal: Principal,
  deps: AdminDeps,
): Promise<void> {
  if (path !== `${ADMIN_PREFIX}reload`) {
    send(res, 404, {
      error: `Not found: ${path}. The administration endpoint is POST ${ADMIN_PREFIX}reload.`,
    });
    return;
  }
  if (req.method !== "POST") {
    res.setHeader("allow", "POST");
    send(res, 405, { error: `${req.method} is not allowed on ${path}; use POST.` });
    return;
  }
  const refusal = adminRefusal(req, principal, deps);
  if (refusal) {
    deps.logger.warn({ principal: principal.id, path }, `administration refused: ${refusal}`);
    send(res, 403, { error: "forbidden", error_description: refusal });
    return;
  }
  if (!deps.reload) {
    send(res, 409, {
      error: "unavailable",
      error_description:
        "this gateway was not started from a config file (embedded), so it has none to reload",
    });
    return;
  }
  // The body is not used; it is read so that the connection can be reused.
  req.resume();
  const outcome = await deps.reload(`POST ${path} by ${principal.id}`);
  if (outcome.ok) send(res, 200, { applied: outcome.report });
  else send(res, 422, { error: "config_invalid", error_description: outcome.reason });
}
