/**
 * Kubernetes-style probes. `/livez`: the process answers. `/readyz`: the gateway accepts calls (not
 * shutting down, every required backend up, and its store serves every use configured to fail
 * closed), and whether the config it runs is stale. `/healthz`: the health checker's full report.
 */
import { createServer, type IncomingMessage, type ServerResponse } from "node:http";
import type { Gateway } from "../../gateway/gateway.ts";
import { failClosedUses } from "../../stores/index.ts";
import { listenOn } from "./listen.ts";

export type ProbeHandler = (req: IncomingMessage, res: ServerResponse) => void | Promise<void>;

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

/**
 * The routes the HTTP server answers itself. `/readyz` and `/healthz` run the health checker (cached
 * for `observability.health.cacheMs`, so probes cannot overload backends); `/metrics` renders the
 * Prometheus registry when metrics are on.
 */
export function probeRoutes(gateway: Gateway): Record<string, ProbeHandler> {
  const send = (res: ServerResponse, status: number, body: unknown) => {
    res
      .writeHead(status, { "content-type": "application/json", "cache-control": "no-store" })
      .end(JSON.stringify(body));
  };
  const { health, metrics } = gateway.observability;
  const routes: Record<string, ProbeHandler> = {
    "/livez": (_req, res) => send(res, 200, { status: "ok" }),
    "/readyz": async (_req, res) => {
      const reasons = await readinessProblems(gateway);
      // A refused config file leaves the replica ready (it serves the config it had; a bad file rolled
      // out everywhere must not take every replica out of the load balancer), but says so.
      const stale = gateway.configStatus.state.stale;
      const config = stale ? { config: { stale: true, reason: stale.reason, refusedAt: stale.at } } : {};
      if (reasons.length === 0) send(res, 200, { status: "ready", ...config });
      else send(res, 503, { status: "not ready", reason: reasons.join("; "), reasons, ...config });
    },
    "/healthz": async (_req, res) => {
      const report = await health.report();
      send(res, report.status === "unhealthy" ? 503 : 200, { ...report, inFlight: gateway.inFlight });
    },
  };
  if (metrics) {
    routes[gateway.config.observability.metrics.path] = async (_req, res) => {
      const body = await metrics.render();
      res.writeHead(200, { "content-type": metrics.contentType, "cache-control": "no-store" }).end(body);
    };
  }
  return routes;
}

/**
 * Why the gateway should not get traffic now: shutting down, a required backend down, or the shared
 * store down while some use fails closed (said in the store's own words, see `unreadiness`).
 */
export async function readinessProblems(gateway: Gateway): Promise<string[]> {
  if (gateway.closing) return ["shutting down"];
  const report = await gateway.observability.health.report();
  const reasons = report.reasons.filter((reason) => !reason.startsWith("store: "));
  const store = unreadiness(gateway);
  if (store !== undefined) reasons.push(store);
  return reasons;
}

export interface ProbeServing {
  /** e.g. http://127.0.0.1:9090 */
  readonly url: string;
  close(): Promise<void>;
}

/**
 * The probe and metrics endpoints alone, for a gateway that serves MCP over stdio only
 * (`--probe-port`): a sidecar-less way for Kubernetes and Prometheus to see it.
 */
export async function serveProbes(
  gateway: Gateway,
  where: { readonly host: string; readonly port: number },
): Promise<ProbeServing> {
  const probes = probeRoutes(gateway);
  const server = createServer((req, res) => {
    const path = (req.url ?? "/").split("?", 1)[0] ?? "/";
    const probe = probes[path];
    if (!probe) {
      res.writeHead(404, { "content-type": "application/json" }).end(
        JSON.stringify({
          error: `Not found: ${path}. This port serves ${Object.keys(probes).join(", ")}.`,
        }),
      );
      return;
    }
    if (req.method !== "GET" && req.method !== "HEAD") {
      res
        .writeHead(405, { "content-type": "application/json", allow: "GET, HEAD" })
        .end(JSON.stringify({ error: `${req.method} is not allowed on ${path}; use GET.` }));
      return;
    }
    Promise.resolve(probe(req, res)).catch((error: unknown) => {
      gateway.logger.error({ err: error }, "unexpected error while serving a probe");
      if (!res.headersSent) res.writeHead(500).end();
      else res.destroy();
    });
  });
  const url = await listenOn(server, where.port, where.host);
  return {
    url,
    close: () =>
      new Promise<void>((resolve) => {
        server.closeAllConnections();
        server.close(() => resolve());
      }),
  };
}
