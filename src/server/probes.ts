/**
 * Kubernetes-style probes. `/livez`: the process answers. `/readyz`: the gateway accepts calls (not
 * shutting down). `/healthz`: the state of every backend as JSON.
 */
import type { IncomingMessage, ServerResponse } from "node:http";
import type { Gateway } from "../gateway/gateway.ts";

export type ProbeHandler = (req: IncomingMessage, res: ServerResponse) => void;

export function healthReport(gateway: Gateway) {
  const servers = gateway.backends().map((backend) => ({
    name: backend.name,
    state: backend.state,
    tools: backend.catalog().tools.length,
  }));
  const up = servers.filter((s) => s.state === "up").length;
  const status =
    up === servers.length ? "healthy" : up > 0 ? "degraded" : servers.length === 0 ? "healthy" : "unhealthy";
  return { status, inFlight: gateway.inFlight, servers };
}

export function probeRoutes(gateway: Gateway): Record<string, ProbeHandler> {
  const send = (res: ServerResponse, status: number, body: unknown) => {
    res
      .writeHead(status, { "content-type": "application/json", "cache-control": "no-store" })
      .end(JSON.stringify(body));
  };
  return {
    "/livez": (_req, res) => send(res, 200, { status: "ok" }),
    "/readyz": (_req, res) =>
      gateway.closing
        ? send(res, 503, { status: "not ready", reason: "shutting down" })
        : send(res, 200, { status: "ready" }),
    "/healthz": (_req, res) => {
      const report = healthReport(gateway);
      send(res, report.status === "unhealthy" ? 503 : 200, report);
    },
  };
}
