/**
 * A remote server that takes each caller's own credentials: one MCP session per user (per principal,
 * and per client session too with `isolation: "session"`), made by the same IsolatedBackend as
 * per-session servers, so that a connection only ever carries one user's credentials and one user's
 * requests. The server's own MCP session (the primary: its tool list, health, resource subscriptions)
 * sends the server's configured `headers`, the gateway's own credential; a user's session sends none
 * of them, only that user's credential.
 *
 * Each request is routed after its caller's credential is worked out (security/upstream/): a caller
 * without one is refused there, before any connection is made. The audit record names who the call
 * went upstream as (`NOTE_UPSTREAM_AS`).
 */
import type { AuthProvider } from "@modelcontextprotocol/client";
import { GatewayError } from "../../core/errors.ts";
import { type Backend, NOTE_UPSTREAM_AS, type Principal } from "../../core/types.ts";
import type { PerUserCredentials, UpstreamCredential } from "../../security/upstream/credentials.ts";
import type { Partitioning } from "../isolated.ts";
import type { UpstreamAuth } from "./transport.ts";

/** What a user's instance sends: a bearer the transport asks for, or fixed headers. */
export interface UserAccess {
  readonly auth?: UpstreamAuth;
  readonly headers?: Readonly<Record<string, string>>;
}

export interface PerUserOptions {
  readonly server: string;
  readonly credentials: PerUserCredentials;
  /** An instance; `access` undefined: the server's own (primary) session, with its configured headers. */
  readonly make: (access: UserAccess | undefined) => Backend;
  /** `isolation: "session"` too: an instance per user and client session. */
  readonly perSession: boolean;
}

interface Slot {
  /** The principal of the user's latest request: its token is the one sent. */
  principal: Principal;
  credential: UpstreamCredential;
}

export function perUserPartitioning(options: PerUserOptions): Partitioning {
  const { credentials, server } = options;
  const slots = new Map<string, Slot>();
  return {
    unit: options.perSession ? "user session" : "user",
    endsWithSession: options.perSession,
    async route(ctx) {
      const credential = await credentials.forCaller(ctx.principal);
      ctx.notes.set(NOTE_UPSTREAM_AS, credential.as);
      // A fixed credential is part of the key, so that a principal whose roles now map to another
      // credential gets a session with that one.
      const parts = [ctx.principal.id];
      if (credentials.type === "per-principal") parts.push(credential.fingerprint);
      if (options.perSession) parts.push(ctx.session ?? "");
      const partition = parts.join("\u0000");
      const slot = slots.get(partition);
      if (slot) {
        slot.principal = ctx.principal;
        slot.credential = credential;
      } else {
        slots.set(partition, { principal: ctx.principal, credential });
      }
      return partition;
    },
    make(partition) {
      if (partition === undefined) return options.make(undefined);
      const slot = slots.get(partition);
      if (!slot)
        throw new GatewayError("internal", `No credential for a user session of server "${server}".`);
      if (slot.credential.bearer === undefined) {
        return options.make({ headers: { [slot.credential.header]: slot.credential.value } });
      }
      const provider: AuthProvider = {
        token: async () => {
          slot.credential = await credentials.forCaller(slot.principal);
          return slot.credential.bearer;
        },
        onUnauthorized: async () => {
          if (credentials.refused(slot.principal, slot.credential)) return;
          throw new GatewayError(
            "forbidden",
            `Server "${server}" refused the caller's own credential (401): the caller needs a credential ` +
              "that server accepts.",
            { data: { server } },
          );
        },
      };
      return options.make({ auth: { provider } });
    },
    stopped(partition) {
      slots.delete(partition);
    },
  };
}
