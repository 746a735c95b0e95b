/**
 * Switchboard embedded in a program of its own: an HTTP server the program owns serves the gateway's
 * MCP endpoint next to its own routes, with a backend written here (a weather service), a policy
 * from the config (a cache), and an audit sink that keeps records in memory.
 *
 *   npm run build && npx tsx examples/embedding/weather-gateway.ts   # from a clone
 *   PORT=8940 node weather-gateway.js                                # compiled, in your own project
 *
 * It prints one JSON line on stdout when it listens ({"url": …}) and stops cleanly on SIGTERM.
 */
import { createServer } from "node:http";
import {
  type AuditRecord,
  type AuditSink,
  type Backend,
  type BackendEvents,
  type BackendState,
  type CallToolResult,
  createGateway,
  EMPTY_CATALOG,
  GatewayError,
  httpHandler,
  type Tool,
  type ToolCall,
} from "mcp-switchboard";

/** A backend is one interface: what it offers (`catalog`) and how it answers (`callTool`). */
class WeatherBackend implements Backend {
  readonly name = "weather";
  state: BackendState = "stopped";
  calls = 0;
  readonly #tools: Tool[] = [
    {
      name: "forecast",
      description: "Tomorrow's forecast for a city",
      inputSchema: {
        type: "object",
        properties: { city: { type: "string", minLength: 1 } },
        required: ["city"],
      },
      annotations: { readOnlyHint: true },
    },
  ];

  async start(events: BackendEvents): Promise<void> {
    this.state = "up";
    events.state("up");
  }

  catalog() {
    return { ...EMPTY_CATALOG, tools: this.#tools };
  }

  async callTool(call: ToolCall): Promise<CallToolResult> {
    this.calls++;
    const city = String(call.args.city);
    const forecast = { city, sky: city.length % 2 === 0 ? "sunny" : "cloudy", highC: 12 + (city.length % 9) };
    return {
      content: [{ type: "text", text: `${city}: ${forecast.sky}, ${forecast.highC} °C` }],
      structuredContent: { ...forecast, backendCalls: this.calls },
    };
  }

  async readResource(uri: string): Promise<never> {
    throw new GatewayError("unknown_resource", `The weather backend has no resource ${uri}.`);
  }

  async getPrompt(name: string): Promise<never> {
    throw new GatewayError("unknown_prompt", `The weather backend has no prompt ${name}.`);
  }

  async health() {
    return { status: "healthy" as const };
  }

  async close(): Promise<void> {
    this.state = "stopped";
  }
}

/** An audit sink is one interface too; this one keeps the records in memory. */
class MemoryAuditSink implements AuditSink {
  readonly name = "memory";
  readonly records: AuditRecord[] = [];

  async write(record: AuditRecord): Promise<void> {
    this.records.push(record);
  }

  async flush(): Promise<void> {}

  async close(): Promise<void> {}

  health() {
    const committed = this.records.length;
    return {
      name: this.name,
      durability: "sync" as const,
      pending: 0,
      committed,
      dropped: 0,
      consecutiveFailures: 0,
    };
  }
}

const audit = new MemoryAuditSink();
const gateway = await createGateway({
  // The same shape as a config file; a configPath works too.
  config: {
    mcpServers: {},
    toolPolicies: { weather__forecast: { cache: { ttlMs: 60_000 } } },
    logging: { level: "warn" },
  },
  backends: [new WeatherBackend()],
  auditSinks: [audit],
});
await gateway.start();

// The program's own server: the gateway answers /mcp and the probes, the rest is the program's.
const mcp = httpHandler(gateway);
const server = createServer((req, res) =>
  mcp(req, res, () => {
    if (req.url === "/audit") {
      res.writeHead(200, { "content-type": "application/json" }).end(JSON.stringify(audit.records));
      return;
    }
    res.writeHead(404, { "content-type": "text/plain" }).end("not found\n");
  }),
);
server.listen(Number(process.env.PORT ?? 0), "127.0.0.1", () => {
  const address = server.address();
  const port = typeof address === "object" && address ? address.port : 0;
  process.stdout.write(`${JSON.stringify({ url: `http://127.0.0.1:${port}/mcp` })}\n`);
});

process.once("SIGTERM", async () => {
  server.close();
  await gateway.drain(5_000);
  await mcp.close();
  await gateway.close();
  server.closeAllConnections();
  process.stdout.write(`${JSON.stringify({ stopped: true, audited: audit.records.length })}\n`);
});
