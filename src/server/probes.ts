/**
 * Kubernetes-style probes. `/livez`: the process answers. `/readyz`: the gateway accepts calls (not
 * shutting down, and its store serves every use configured to fail closed). `/healthz`: the state of
 * every backend and of the store as JSON.
 */
import type { IncomingMessage, ServerResponse } from "node:http";
import type { HealthResult } from "../core/types.ts";
import type { Gateway } from "../gateway/gateway.ts";
import { failClosedUses } from "../stores/index.ts";

export type ProbeHandler = (req: IncomingMessage, res: ServerResponse) => void;

/**
 * A store that is down but fails open only degrades the gateway: every call is still served, from
 * this replica's memory. It never makes the gateway unhealthy on its own.
 */
export function healthReport(gateway: Gateway) {
  const servers = gateway.backends().map((backend) => ({
    name: backend.name,
    state: backend.state,
    tools: backend.catalog().tools.length,
  }));
  const up = servers.filter((s) => s.state === "up").length;
  const store: HealthResult = gateway.store.health();
  const serversStatus =
    up === servers.length ? "healthy" : up > 0 ? "degraded" : servers.length === 0 ? "healthy" : "unhealthy";
  const status = serversStatus === "healthy" && store.status !== "healthy" ? "degraded" : serversStatus;
  return { status, inFlight: gateway.inFlight, servers, store };
}

/**
 * Why the gateway should not get traffic now, if it should not. With a shared store configured to
 * fail closed for some use, an outage fails those calls on every replica alike; saying so here lets
 * a load balancer and its operators see it, rather than only the clients.
 */
export function unreadiness(gateway: Gateway): string | undefined {
  if (gateway.closing) return "shutting down";
  const store = gateway.store.health();
  if (store.status === "healthy") return undefined;
  const closed = failClosedUses(gateway.store);
  if (closed.length === 0) return undefined;
  return `the shared store is unavailable and store.onStoreError is "fail-closed" for ${closed.join(", ")}: ${store.detail ?? store.status}`;
}

export function probeRoutes(gateway: Gateway): Record<string, ProbeHandler> {
  const send = (res: ServerResponse, status: number, body: unknown) => {
    res
      .writeHead(status, { "content-type": "application/json", "cache-control": "no-store" })
      .end(JSON.stringify(body));
  };
  return {
    "/livez": (_req, res) => send(res, 200, { status: "ok" }),
    "/readyz": (_req, res) => {
      const reason = unreadiness(gateway);
      if (reason === undefined) send(res, 200, { status: "ready" });
      else send(res, 503, { status: "not ready", reason });
    },
    "/healthz": (_req, res) => {
      const report = healthReport(gateway);
      send(res, report.status === "unhealthy" ? 503 : 200, report);
    },
  };
}
