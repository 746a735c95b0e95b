/**
 * Operability end to end: the probes (/livez, /readyz, /healthz) as a load balancer and Kubernetes
 * see them while a required backend crashes, restarts, hangs or refuses connections; the same
 * probes on `--probe-port` next to MCP over stdio; the health and metrics tools; /metrics read as
 * Prometheus reads it, checked against a known mix of calls; spans exported over OTLP with the
 * caller's trace context, and that context handed on to the backends; and `switchboard health`.
 *
 * Real gateway processes throughout; the backends are the stdio fixture, the HTTP fixture, and a
 * Streamable HTTP MCP server in this process whose health pings can be made to hang or fail.
 */
import assert from "node:assert/strict";
import { randomBytes } from "node:crypto";
import { createServer, type IncomingMessage, type Server } from "node:http";
import type { AddressInfo } from "node:net";
import { after, before, describe, test } from "node:test";
import { Client } from "@modelcontextprotocol/sdk/client/index.js";
import { StdioClientTransport } from "@modelcontextprotocol/sdk/client/stdio.js";
import { McpServer } from "@modelcontextprotocol/sdk/server/mcp.js";
import { StreamableHTTPServerTransport } from "@modelcontextprotocol/sdk/server/streamableHttp.js";
import { z } from "zod";
import { type OtlpCollector, startOtlpCollector } from "../fixtures/otlp-collector.ts";
import { runCli } from "../support/cli.ts";
import {
  eventually,
  fixtureServer,
  type HttpFixture,
  type LogLine,
  LogWatcher,
  type RunningGateway,
  startHttpFixture,
  startHttpGateway,
  stdioGatewayCommand,
  writeConfig,
} from "../support/gateway-process.ts";
import { connectHttpClient, firstTextOf, type ToolResult } from "../support/mcp-client.ts";

// ---------------------------------------------------------------------------------------------------
// Helpers
// ---------------------------------------------------------------------------------------------------

interface CheckReport {
  kind: string;
  required: boolean;
  status: string;
  detail?: string;
  latencyMs: number;
}

interface HealthReport {
  status: string;
  ready: boolean;
  reasons: string[];
  checks: Record<string, CheckReport>;
  inFlight?: number;
}

const connectHttp = (url: string, headers?: Record<string, string>) =>
  connectHttpClient(url, { name: "operability-e2e", ...(headers ? { headers } : {}) });

/**
 * What most suites here start with: a gateway on `config` (over HTTP, with `env`), one client, and the
 * base URL of its probes. `stopGatewayWithClient` takes them down.
 */
async function startGatewayWithClient(config: string, env: Record<string, string> = {}) {
  const gateway = await startHttpGateway(config, [], env);
  try {
    return { gateway, base: gateway.url.replace(/\/mcp$/, ""), client: await connectHttp(gateway.url) };
  } catch (error) {
    await gateway.stop();
    throw error;
  }
}

/** Closes the client, then stops the gateway; either may be missing when `before` failed early. */
async function stopGatewayWithClient(client: Client | undefined, gateway: RunningGateway | undefined) {
  await client?.close().catch(() => undefined);
  await gateway?.stop();
}

/** GET on a probe port: status, parsed body, and how long the answer took. */
async function probe(base: string, path: string) {
  const started = performance.now();
  const response = await fetch(new URL(path, base), { signal: AbortSignal.timeout(15_000) });
  const text = await response.text();
  const ms = performance.now() - started;
  let json: unknown;
  try {
    json = JSON.parse(text);
  } catch {
    json = undefined;
  }
  return { status: response.status, text, json, ms, contentType: response.headers.get("content-type") ?? "" };
}

/** Check name -> status, the part of two reports taken at different moments that must agree. */
function statusesOf(report: HealthReport): Record<string, string> {
  return Object.fromEntries(Object.entries(report.checks).map(([name, check]) => [name, check.status]));
}

/** A matcher for log lines written after this moment (LogWatcher.waitFor also sees older lines). */
function fromNow(logs: LogWatcher, match: (l: LogLine) => boolean): (l: LogLine) => boolean {
  const start = logs.lines.length;
  return (l) => logs.lines.indexOf(l) >= start && match(l);
}

/** Splits `switchboard health`'s table into rows of cells (columns are separated by 2+ spaces). */
function tableRows(stdout: string): string[][] {
  return stdout
    .split("\n")
    .filter((line) => line.trim() !== "" && !line.startsWith("status:") && !/^[-\s]+$/.test(line))
    .map((line) => line.trim().split(/\s{2,}/));
}

/**
 * A Streamable HTTP MCP server (stateless) in this process whose behaviour the tests switch:
 * "ok" answers everything; "hang" accepts health pings and never answers them (everything else is
 * served); "down" resets every connection, as a crashed host behind a live address would.
 */
class SwitchableBackend {
  mode: "ok" | "hang" | "down" = "ok";
  /** Pings received while hanging (each left unanswered). */
  hungPings = 0;
  #server: Server | undefined;
  url = "";

  async start(): Promise<void> {
    this.#server = createServer((req, res) => {
      void (async () => {
        if (this.mode === "down") {
          req.socket.destroy();
          return;
        }
        if (new URL(req.url ?? "/", "http://x").pathname !== "/mcp") {
          res.writeHead(404).end();
          return;
        }
        const body = req.method === "POST" ? await readJson(req) : undefined;
        if (this.mode === "hang" && isPing(body)) {
          this.hungPings++;
          return; // accepted, never answered
        }
        const transport = new StreamableHTTPServerTransport({ sessionIdGenerator: undefined });
        const server = new McpServer({ name: "switchable", version: "1.0.0" });
        server.registerTool(
          "echo",
          { description: "Returns its message", inputSchema: { message: z.string() } },
          async ({ message }) => ({ content: [{ type: "text", text: message }] }),
        );
        res.on("close", () => {
          void transport.close();
          void server.close();
        });
        await server.connect(transport);
        await transport.handleRequest(req, res, body);
      })().catch(() => {
        if (!res.headersSent) res.writeHead(500).end();
      });
    });
    await new Promise<void>((resolve) => this.#server?.listen(0, "127.0.0.1", resolve));
    const { port } = this.#server.address() as AddressInfo;
    this.url = `http://127.0.0.1:${port}/mcp`;
  }

  close(): Promise<void> {
    return new Promise((resolve) => {
      if (!this.#server) return resolve();
      this.#server.closeAllConnections();
      this.#server.close(() => resolve());
    });
  }
}

async function readJson(req: IncomingMessage): Promise<unknown> {
  const chunks: Buffer[] = [];
  for await (const chunk of req) chunks.push(chunk as Buffer);
  const text = Buffer.concat(chunks).toString("utf8");
  return text ? JSON.parse(text) : undefined;
}

function isPing(body: unknown): boolean {
  const messages = Array.isArray(body) ? body : [body];
  return messages.some(
    (m) => typeof m === "object" && m !== null && (m as { method?: unknown }).method === "ping",
  );
}

// ---------------------------------------------------------------------------------------------------
// A strict parser of the Prometheus text exposition format (0.0.4)
// ---------------------------------------------------------------------------------------------------

type MetricType = "counter" | "gauge" | "histogram" | "summary" | "untyped";

interface Sample {
  readonly name: string;
  readonly labels: Readonly<Record<string, string>>;
  readonly value: number;
}

interface Family {
  readonly name: string;
  help?: string;
  type?: MetricType;
  readonly samples: Sample[];
}

const METRIC_NAME = /^[a-zA-Z_:][a-zA-Z0-9_:]*$/;
const LABEL_NAME = /^[a-zA-Z_][a-zA-Z0-9_]*$/;
const TYPES = new Set<MetricType>(["counter", "gauge", "histogram", "summary", "untyped"]);

/** A float as Go's strconv.ParseFloat reads it (what Prometheus uses): Inf and NaN in any case. */
function parseValue(text: string, where: string): number {
  const special = /^([+-]?)(inf|infinity|nan)$/i.exec(text);
  if (special) {
    if (special[2]?.toLowerCase() === "nan") return Number.NaN;
    return special[1] === "-" ? Number.NEGATIVE_INFINITY : Number.POSITIVE_INFINITY;
  }
  if (!/^[-+]?(\d+\.?\d*|\.\d+)([eE][-+]?\d+)?$/.test(text)) throw new Error(`${where}: bad value "${text}"`);
  return Number(text);
}

/** Parses `{a="x",b="y\"z"}` starting at `text[0] === "{"`; returns the labels and the rest. */
function parseLabels(text: string, where: string): { labels: Record<string, string>; rest: string } {
  const labels: Record<string, string> = {};
  let i = 1;
  for (;;) {
    if (text[i] === "}") return { labels, rest: text.slice(i + 1) };
    const eq = text.indexOf("=", i);
    if (eq < 0) throw new Error(`${where}: unterminated label set`);
    const name = text.slice(i, eq);
    if (!LABEL_NAME.test(name)) throw new Error(`${where}: bad label name "${name}"`);
    if (name in labels) throw new Error(`${where}: label "${name}" twice`);
    if (text[eq + 1] !== '"') throw new Error(`${where}: label value of "${name}" is not quoted`);
    let value = "";
    let j = eq + 2;
    for (;;) {
      const c = text[j];
      if (c === undefined) throw new Error(`${where}: unterminated label value`);
      if (c === "\\") {
        const e = text[j + 1];
        if (e === "\\") value += "\\";
        else if (e === '"') value += '"';
        else if (e === "n") value += "\n";
        else throw new Error(`${where}: bad escape "\\${e}" in a label value`);
        j += 2;
        continue;
      }
      if (c === '"') break;
      if (c === "\n") throw new Error(`${where}: raw newline in a label value`);
      value += c;
      j++;
    }
    labels[name] = value;
    i = j + 1;
    if (text[i] === ",") i++;
    else if (text[i] !== "}") throw new Error(`${where}: expected "," or "}" after label "${name}"`);
  }
}

/** The family a sample name belongs to, given its declared type (histogram/summary suffixes). */
function familyOf(name: string, families: ReadonlyMap<string, Family>): Family | undefined {
  const exact = families.get(name);
  if (exact && exact.type !== "histogram") return exact;
  for (const suffix of ["_bucket", "_sum", "_count"]) {
    if (!name.endsWith(suffix)) continue;
    const family = families.get(name.slice(0, -suffix.length));
    if (!family) continue;
    if (family.type === "histogram") return family;
    if (family.type === "summary" && suffix !== "_bucket") return family;
  }
  return undefined;
}

/**
 * Every line is a HELP, a TYPE, a blank line or a sample; a family is declared (HELP then TYPE)
 * before its samples, once, and its samples are contiguous; every sample's name belongs to a
 * declared family; no series appears twice; histograms are cumulative and end in le="+Inf" = _count.
 */
function parsePrometheus(text: string): Map<string, Family> {
  assert.ok(text.endsWith("\n"), "the exposition ends with a newline");
  const families = new Map<string, Family>();
  const finished = new Set<string>();
  let current: Family | undefined;
  const seen = new Set<string>();
  const switchTo = (family: Family, where: string) => {
    if (current === family) return;
    if (finished.has(family.name)) throw new Error(`${where}: family ${family.name} is not contiguous`);
    if (current) finished.add(current.name);
    current = family;
  };
  text.split("\n").forEach((line, index) => {
    const where = `line ${index + 1} (${JSON.stringify(line.slice(0, 120))})`;
    if (line === "") return;
    if (line.startsWith("#")) {
      const match = /^# (HELP|TYPE) (\S+) ?(.*)$/.exec(line);
      if (!match) throw new Error(`${where}: a comment that is neither HELP nor TYPE`);
      const [, keyword, name = "", rest = ""] = match;
      if (!METRIC_NAME.test(name)) throw new Error(`${where}: bad metric name`);
      let family = families.get(name);
      if (!family) {
        family = { name, samples: [] };
        families.set(name, family);
      }
      switchTo(family, where);
      if (family.samples.length > 0) throw new Error(`${where}: ${keyword} after samples`);
      if (keyword === "HELP") {
        if (family.help !== undefined) throw new Error(`${where}: HELP twice`);
        if (/\\[^\\n]/.test(rest.replace(/\\\\/g, ""))) throw new Error(`${where}: bad escape in HELP`);
        family.help = rest;
      } else {
        if (family.type !== undefined) throw new Error(`${where}: TYPE twice`);
        if (!TYPES.has(rest as MetricType)) throw new Error(`${where}: unknown type "${rest}"`);
        family.type = rest as MetricType;
      }
      return;
    }
    const nameMatch = /^[a-zA-Z_:][a-zA-Z0-9_:]*/.exec(line);
    if (!nameMatch) throw new Error(`${where}: not a sample`);
    const name = nameMatch[0];
    let rest = line.slice(name.length);
    let labels: Record<string, string> = {};
    if (rest.startsWith("{")) ({ labels, rest } = parseLabels(rest, where));
    const parts = rest.split(" ");
    if (parts[0] !== "" || parts.length < 2 || parts.length > 3)
      throw new Error(`${where}: bad sample syntax`);
    const value = parseValue(parts[1] ?? "", where);
    if (parts[2] !== undefined && !/^-?\d+$/.test(parts[2])) throw new Error(`${where}: bad timestamp`);
    const family = familyOf(name, families);
    if (!family?.type) throw new Error(`${where}: sample of an undeclared family`);
    switchTo(family, where);
    if (family.type === "histogram" && name.endsWith("_bucket") && labels.le === undefined)
      throw new Error(`${where}: a bucket without le`);
    const key = `${name}${JSON.stringify(Object.entries(labels).sort())}`;
    if (seen.has(key)) throw new Error(`${where}: series twice`);
    seen.add(key);
    family.samples.push({ name, labels, value });
  });
  for (const family of families.values()) {
    if (family.help === undefined || family.type === undefined)
      throw new Error(`family ${family.name} lacks HELP or TYPE`);
    if (family.type === "histogram") checkHistogram(family);
  }
  return families;
}

function withoutLe(labels: Readonly<Record<string, string>>): string {
  const { le: _le, ...rest } = labels;
  return JSON.stringify(Object.entries(rest).sort());
}

function checkHistogram(family: Family): void {
  const series = new Map<string, { buckets: [number, number][]; count?: number; sum?: number }>();
  for (const sample of family.samples) {
    const key = withoutLe(sample.labels);
    let entry = series.get(key);
    if (!entry) {
      entry = { buckets: [] };
      series.set(key, entry);
    }
    if (sample.name.endsWith("_bucket"))
      entry.buckets.push([parseValue(sample.labels.le ?? "", family.name), sample.value]);
    else if (sample.name.endsWith("_count")) entry.count = sample.value;
    else entry.sum = sample.value;
  }
  for (const [key, entry] of series) {
    const what = `${family.name}${key}`;
    assert.ok(entry.count !== undefined && entry.sum !== undefined, `${what} has _count and _sum`);
    const sorted = [...entry.buckets].sort((a, b) => a[0] - b[0]);
    assert.equal(sorted.at(-1)?.[0], Number.POSITIVE_INFINITY, `${what} ends with le="+Inf"`);
    assert.equal(sorted.at(-1)?.[1], entry.count, `${what}: the +Inf bucket equals _count`);
    for (let i = 1; i < sorted.length; i++) {
      assert.ok((sorted[i]?.[1] ?? 0) >= (sorted[i - 1]?.[1] ?? 0), `${what} buckets are cumulative`);
    }
  }
}

/** The samples named `name` whose labels include `match`. */
function samples(families: Map<string, Family>, name: string, match: Record<string, string> = {}): Sample[] {
  const family = familyOf(name, families);
  assert.ok(family, `${name} is exposed`);
  return family.samples.filter(
    (s) => s.name === name && Object.entries(match).every(([k, v]) => s.labels[k] === v),
  );
}

/** label values joined by "|" -> value, for exact comparisons of a whole family's series. */
function table(list: readonly Sample[], labels: readonly string[]): Record<string, number> {
  return Object.fromEntries(list.map((s) => [labels.map((l) => s.labels[l]).join("|"), s.value]));
}

// Self-check of the parser: it must refuse what Prometheus would refuse, or the tests prove little.
test("the Prometheus parser used below refuses malformed expositions", () => {
  const ok = '# HELP a_total A.\n# TYPE a_total counter\na_total{x="1"} 2\n';
  assert.equal(samples(parsePrometheus(ok), "a_total", { x: "1" })[0]?.value, 2);
  for (const bad of [
    'b_total{x="1"} 2\n', // undeclared family
    "# HELP a A.\n# TYPE a counter\na 1\na 1\n", // duplicate series
    "# HELP a A.\n# TYPE a counter\na{x=1} 1\n", // unquoted label value
    "# HELP a A.\n# TYPE a counter\na one\n", // bad value
    "# HELP a A.\n# TYPE a gauge\na 1\n# HELP b B.\n# TYPE b gauge\nb 1\na 2\n", // not contiguous
    '# HELP h H.\n# TYPE h histogram\nh_bucket{le="1"} 1\nh_bucket{le="+Inf"} 2\nh_sum 1\nh_count 3\n',
    "# HELP a A.\n# TYPE a counter\na 1", // no final newline
  ]) {
    assert.throws(() => parsePrometheus(bad), Error, JSON.stringify(bad));
  }
});

// ---------------------------------------------------------------------------------------------------
// 1 and 4: probes, the health tool and `switchboard health` over HTTP
// ---------------------------------------------------------------------------------------------------

/** observability.health.timeoutMs of the gateway below: a hung check is cut off after this. */
const CHECK_TIMEOUT_MS = 500;
/**
 * How long a probe may take while a check hangs: well above the check timeout, far below the 5 s
 * the backend's ping would take to give up by itself (so only the checker's timeout can meet it).
 */
const PROBE_BOUND_MS = 3_000;

describe("probes and the health tool, with required backends that crash, hang and refuse", () => {
  const remote = new SwitchableBackend();
  let gateway: RunningGateway;
  let client: Client;
  let base: string;

  before(async () => {
    await remote.start();
    const config = writeConfig({
      mcpServers: {
        // Restarts after 0.5–1 s: long enough for the probes to see it down, deterministically.
        fx: fixtureServer({ restart: { initialDelayMs: 1000, maxDelayMs: 2000 } }),
        remote: { type: "http", url: remote.url, restart: { initialDelayMs: 100, maxDelayMs: 300 } },
      },
      observability: {
        health: {
          timeoutMs: CHECK_TIMEOUT_MS,
          cacheMs: 0,
          required: ["fx", "remote"],
          // The process checks must not flip between two reports taken a moment apart.
          eventLoopLagMs: 60_000,
          heapUsedRatio: 1,
        },
      },
    });
    ({ gateway, base, client } = await startGatewayWithClient(config));
  });

  after(async () => {
    await stopGatewayWithClient(client, gateway);
    await remote.close();
  });

  const ready = async () => (await probe(base, "/readyz")).status === 200;

  test("a required backend crash turns /readyz to 503 with the reason, and back to 200 after its restart; /livez stays 200", async () => {
    await eventually(ready, 15_000, "the gateway to be ready");
    const healthy = await probe(base, "/healthz");
    assert.equal(healthy.status, 200);
    assert.equal((healthy.json as HealthReport).status, "healthy");

    const livez: number[] = [];
    const wentDown = fromNow(gateway.logs, (l) => l.server === "fx" && l.msg === "server went down");
    const cameUp = fromNow(gateway.logs, (l) => l.server === "fx" && l.msg === "server up");
    assert.equal(firstTextOf(await client.callTool({ name: "fx__crash", arguments: {} })), "crashing");
    await gateway.logs.waitFor(wentDown, 10_000, "fx to go down");

    const down = await probe(base, "/readyz");
    livez.push((await probe(base, "/livez")).status);
    assert.equal(down.status, 503, down.text);
    const body = down.json as { status: string; reason: string; reasons: string[] };
    assert.equal(body.status, "not ready");
    assert.equal(body.reasons.length, 1, down.text);
    assert.match(body.reasons[0] ?? "", /^fx: not connected: /);
    assert.match(body.reason, /^fx: not connected/);

    const report = await probe(base, "/healthz");
    assert.equal(report.status, 503, "/healthz answers 503 while unhealthy");
    const downReport = report.json as HealthReport;
    assert.equal(downReport.status, "unhealthy");
    assert.equal(downReport.ready, false);
    assert.equal(downReport.checks.fx?.status, "unhealthy");
    assert.equal(downReport.checks.fx?.required, true);
    assert.equal(downReport.checks.remote?.status, "healthy", "the other backend is not affected");

    await gateway.logs.waitFor(cameUp, 15_000, "fx to restart");
    await eventually(
      async () => {
        livez.push((await probe(base, "/livez")).status);
        return ready();
      },
      10_000,
      "/readyz to answer 200 again",
    );
    livez.push((await probe(base, "/livez")).status);
    assert.ok(livez.length >= 3);
    assert.deepEqual(new Set(livez), new Set([200]), "/livez answered 200 throughout");
    const back = await probe(base, "/healthz");
    assert.equal(back.status, 200);
    assert.equal((back.json as HealthReport).status, "healthy");
    // And the restarted backend serves calls again.
    assert.equal(
      firstTextOf(await client.callTool({ name: "fx__echo", arguments: { message: "back" } })),
      "back",
    );
  });

  test("a hung health check times out at timeoutMs without holding up the probe, and names the timeout", async () => {
    await eventually(ready, 15_000, "the gateway to be ready");
    const pingsBefore = remote.hungPings;
    remote.mode = "hang";
    try {
      const readyz = await probe(base, "/readyz");
      assert.equal(readyz.status, 503, readyz.text);
      assert.deepEqual((readyz.json as { reasons: string[] }).reasons, [
        `remote: timed out after ${CHECK_TIMEOUT_MS} ms`,
      ]);
      // Far below the 5 s of the ping's own timeout: the checker's timeout answered, not the ping's.
      assert.ok(readyz.ms < PROBE_BOUND_MS, `/readyz took ${Math.round(readyz.ms)} ms`);
      assert.ok(remote.hungPings > pingsBefore, "the ping reached the backend and was left unanswered");

      const healthz = await probe(base, "/healthz");
      assert.equal(healthz.status, 503);
      assert.ok(healthz.ms < PROBE_BOUND_MS, `/healthz took ${Math.round(healthz.ms)} ms`);
      const report = healthz.json as HealthReport;
      assert.equal(report.checks.remote?.status, "unhealthy");
      assert.equal(report.checks.remote?.detail, `timed out after ${CHECK_TIMEOUT_MS} ms`);
      assert.equal(report.checks.fx?.status, "healthy", "checks run in parallel: fx is still reported");

      const livez = await probe(base, "/livez");
      assert.equal(livez.status, 200);
    } finally {
      remote.mode = "ok";
    }
    await eventually(ready, 10_000, "/readyz to answer 200 once pings are answered again");
  });

  test("the switchboard__health tool reports what /healthz reports, healthy and not", async () => {
    await eventually(ready, 15_000, "the gateway to be ready");
    const { tools } = await client.listTools();
    assert.ok(tools.some((t) => t.name === "switchboard__health"));

    const compare = async () => {
      const http = (await probe(base, "/healthz")).json as HealthReport;
      const result = (await client.callTool({ name: "switchboard__health", arguments: {} })) as ToolResult;
      assert.notEqual(result.isError, true, firstTextOf(result));
      const tool = result.structuredContent as unknown as HealthReport;
      assert.deepEqual(JSON.parse(firstTextOf(result)), tool, "the text and structured content agree");
      assert.deepEqual(statusesOf(tool), statusesOf(http));
      assert.equal(tool.status, http.status);
      assert.equal(tool.ready, http.ready);
      assert.deepEqual(tool.reasons, http.reasons);
      return tool;
    };

    const healthy = await compare();
    assert.equal(healthy.status, "healthy");
    assert.deepEqual(Object.keys(healthy.checks).sort(), [
      "config",
      "eventLoop",
      "fx",
      "heap",
      "remote",
      "store",
    ]);

    remote.mode = "hang";
    try {
      const hung = await compare();
      assert.equal(hung.status, "unhealthy");
      assert.equal(hung.checks.remote?.status, "unhealthy");
      assert.equal(hung.checks.remote?.detail, `timed out after ${CHECK_TIMEOUT_MS} ms`);
    } finally {
      remote.mode = "ok";
    }
    await eventually(ready, 10_000, "the gateway to be ready again");
  });

  test("`switchboard health --url` prints the checks and exits 0 when healthy, 1 when a required backend is down", async () => {
    await eventually(ready, 15_000, "the gateway to be ready");
    const healthy = await runCli(["health", "--url", base]);
    assert.equal(healthy.code, 0, healthy.stderr);
    assert.match(healthy.stdout, /^status: healthy\n/);
    const rows = tableRows(healthy.stdout);
    assert.deepEqual(rows[0], ["check", "kind", "required", "status", "latency", "detail"]);
    const byName = new Map(rows.slice(1).map((r) => [r[0], r]));
    assert.deepEqual([...byName.keys()].sort(), ["config", "eventLoop", "fx", "heap", "remote", "store"]);
    assert.deepEqual(byName.get("fx")?.slice(0, 4), ["fx", "backend", "yes", "healthy"]);
    assert.deepEqual(byName.get("remote")?.slice(0, 4), ["remote", "backend", "yes", "healthy"]);
    assert.deepEqual(byName.get("store")?.slice(0, 4), ["store", "store", "no", "healthy"]);
    assert.deepEqual(
      rows
        .slice(1, 3)
        .map((r) => r[0])
        .sort(),
      ["fx", "remote"],
      "required checks first",
    );

    remote.mode = "down";
    try {
      const unhealthy = await runCli(["health", "--url", gateway.url]);
      assert.equal(unhealthy.code, 1, unhealthy.stdout + unhealthy.stderr);
      assert.match(unhealthy.stdout, /^status: unhealthy \(not ready\)\n/);
      const row = tableRows(unhealthy.stdout).find((r) => r[0] === "remote");
      assert.deepEqual(row?.slice(0, 4), ["remote", "backend", "yes", "unhealthy"]);
      assert.match(row?.[5] ?? "", /ping failed|not connected/);
      assert.deepEqual(tableRows(unhealthy.stdout).find((r) => r[0] === "fx")?.[3], "healthy");

      const json = await runCli(["health", "--url", base, "--json"]);
      assert.equal(json.code, 1);
      const report = JSON.parse(json.stdout) as HealthReport;
      assert.equal(report.status, "unhealthy");
      assert.equal(report.checks.remote?.status, "unhealthy");
    } finally {
      remote.mode = "ok";
    }
    await eventually(ready, 10_000, "the gateway to be ready once the backend answers again");
    assert.equal((await runCli(["health", "--url", base])).code, 0);
  });
});

// ---------------------------------------------------------------------------------------------------
// 1: the same probes on --probe-port, next to MCP over stdio
// ---------------------------------------------------------------------------------------------------

describe("probes on --probe-port while serving MCP over stdio", () => {
  let client: Client;
  let transport: StdioClientTransport;
  let logs: LogWatcher;
  let base: string;

  before(async () => {
    const config = writeConfig({
      mcpServers: { fx: fixtureServer({ restart: { initialDelayMs: 1000, maxDelayMs: 2000 } }) },
      observability: { health: { cacheMs: 0, required: ["fx"], eventLoopLagMs: 60_000, heapUsedRatio: 1 } },
    });
    const { command, args, cwd } = stdioGatewayCommand(config);
    const env = Object.fromEntries(
      Object.entries(process.env).filter((e): e is [string, string] => e[1] !== undefined),
    );
    transport = new StdioClientTransport({
      command,
      args: [...args, "--probe-port", "127.0.0.1:0"],
      cwd,
      env,
      stderr: "pipe",
    });
    logs = new LogWatcher(transport.stderr as unknown as NodeJS.ReadableStream);
    client = new Client({ name: "operability-e2e-stdio", version: "1" });
    await client.connect(transport);
    const line = await logs.waitFor((l) => l.msg === "serving probes and metrics", 30_000, "the probe port");
    base = String(line.url);
    assert.match(base, /^http:\/\/127\.0\.0\.1:\d+$/);
  });

  after(async () => {
    await client?.close().catch(() => undefined);
  });

  const ready = async () => (await probe(base, "/readyz")).status === 200;

  test("/livez, /readyz, /healthz and /metrics answer on the probe port; the MCP endpoint is not there", async () => {
    await eventually(ready, 15_000, "the gateway to be ready");
    assert.equal((await probe(base, "/livez")).status, 200);
    const healthz = await probe(base, "/healthz");
    assert.equal(healthz.status, 200);
    assert.equal((healthz.json as HealthReport).checks.fx?.status, "healthy");
    const metrics = await probe(base, "/metrics");
    assert.equal(metrics.status, 200);
    assert.match(metrics.contentType, /^text\/plain/);
    assert.ok(familyOf("switchboard_calls_total", parsePrometheus(metrics.text)));
    assert.equal((await probe(base, "/mcp")).status, 404);
  });

  test("a required backend crash shows on the probe port's /readyz and clears after the restart; the health tool agrees", async () => {
    await eventually(ready, 15_000, "the gateway to be ready");
    const wentDown = fromNow(logs, (l) => l.server === "fx" && l.msg === "server went down");
    const cameUp = fromNow(logs, (l) => l.server === "fx" && l.msg === "server up");
    assert.equal(firstTextOf(await client.callTool({ name: "fx__crash", arguments: {} })), "crashing");
    await logs.waitFor(wentDown, 10_000, "fx to go down");

    const down = await probe(base, "/readyz");
    assert.equal(down.status, 503, down.text);
    assert.match((down.json as { reason: string }).reason, /^fx: not connected/);
    assert.equal((await probe(base, "/livez")).status, 200);

    await logs.waitFor(cameUp, 15_000, "fx to restart");
    await eventually(ready, 10_000, "/readyz to answer 200 again");
    assert.equal((await probe(base, "/livez")).status, 200);

    const http = (await probe(base, "/healthz")).json as HealthReport;
    const tool = (await client.callTool({ name: "switchboard__health", arguments: {} })) as ToolResult;
    const report = tool.structuredContent as unknown as HealthReport;
    assert.deepEqual(statusesOf(report), statusesOf(http));
    assert.equal(report.status, "healthy");
  });

  test("`switchboard health --url` reads the probe port", async () => {
    await eventually(ready, 15_000, "the gateway to be ready");
    const result = await runCli(["health", "--url", base]);
    assert.equal(result.code, 0, result.stderr);
    assert.match(result.stdout, /^status: healthy\n/);
    assert.deepEqual(tableRows(result.stdout)[1]?.slice(0, 4), ["fx", "backend", "yes", "healthy"]);
  });

  // Last in this suite: it stops the gateway.
  test("while draining after SIGTERM, the probe port's /readyz says 'shutting down' and /livez stays 200", async () => {
    await eventually(ready, 15_000, "the gateway to be ready");
    const slow = client.callTool({ name: "fx__slow", arguments: { ms: 1_500 } });
    await eventually(
      async () => ((await probe(base, "/healthz")).json as HealthReport).inFlight === 1,
      10_000,
      "the slow call to be in flight",
    );
    const draining = fromNow(logs, (l) => l.msg === "shutting down");
    assert.ok(transport.pid);
    process.kill(transport.pid, "SIGTERM");
    await logs.waitFor(draining, 10_000, "the gateway to start draining");
    const readyz = await probe(base, "/readyz");
    assert.equal(readyz.status, 503, readyz.text);
    assert.deepEqual((readyz.json as { reasons: string[] }).reasons, ["shutting down"]);
    assert.equal((await probe(base, "/livez")).status, 200);
    assert.equal(firstTextOf(await slow), "waited 1500 ms", "the call in flight still finishes");
  });
});

// ---------------------------------------------------------------------------------------------------
// 2: /metrics and the metrics tool against a known mix of calls
// ---------------------------------------------------------------------------------------------------

describe("metrics after a known mix of calls", () => {
  let gateway: RunningGateway;
  let client: Client;
  let base: string;

  before(async () => {
    const config = writeConfig({
      mcpServers: { fx: fixtureServer() },
      toolPolicies: {
        // echo is readOnlyHint, so it is cacheable.
        fx__echo: { cache: { ttlMs: 600_000 } },
        // Two calls, then every call is refused: the bucket never refills.
        fx__stats: { rateLimit: { capacity: 2, refillPerSecond: 0 } },
      },
    });
    ({ gateway, base, client } = await startGatewayWithClient(config));
  });

  after(async () => {
    await stopGatewayWithClient(client, gateway);
  });

  test("/metrics parses as Prometheus text and its counters equal the calls made", async () => {
    const call = (name: string, args: Record<string, unknown> = {}) =>
      client.callTool({ name, arguments: args }) as Promise<ToolResult>;
    // 4 echo calls: "a" misses then hits twice, "b" misses.
    for (const message of ["a", "a", "a", "b"])
      assert.equal(firstTextOf(await call("fx__echo", { message })), message);
    // 2 tool errors.
    for (let i = 0; i < 2; i++) assert.equal((await call("fx__fail", { reason: `r${i}` })).isError, true);
    // 5 stats calls: 2 allowed, 3 rate limited.
    const stats: boolean[] = [];
    for (let i = 0; i < 5; i++) stats.push((await call("fx__stats")).isError === true);
    assert.deepEqual(stats, [false, false, true, true, true]);
    // A tool that does not exist: refused before the chain, so it must create no series.
    await assert.rejects(call("fx__nope"));

    const scraped = await probe(base, "/metrics");
    assert.equal(scraped.status, 200);
    assert.match(scraped.contentType, /^text\/plain; version=0\.0\.4/);
    const families = parsePrometheus(scraped.text);
    assert.equal(familyOf("switchboard_calls_total", families)?.type, "counter");
    assert.equal(familyOf("switchboard_call_duration_seconds_count", families)?.type, "histogram");
    assert.ok(familyOf("process_cpu_seconds_total", families), "the process metrics are served too");

    const calls = samples(families, "switchboard_calls_total");
    assert.ok(calls.every((s) => s.labels.server === "fx"));
    assert.deepEqual(table(calls, ["tool", "outcome"]), {
      "fx__echo|ok": 4,
      "fx__fail|tool_error": 2,
      "fx__stats|ok": 2,
      "fx__stats|rate_limited": 3,
    });

    // Per-tool cache events: only echo has a cache. (Series with tool "" are the server-wide
    // invalidations made when a server comes up, which are not calls.)
    const perTool = samples(families, "switchboard_cache_events_total").filter((s) => s.labels.tool !== "");
    assert.deepEqual(table(perTool, ["server", "tool", "outcome"]), {
      "fx|fx__echo|hit": 2,
      "fx|fx__echo|miss": 2,
      "fx|fx__echo|stored": 2,
    });

    assert.deepEqual(
      table(samples(families, "switchboard_rate_limit_rejections_total"), ["server", "tool", "scope"]),
      {
        "fx|fx__stats|tool": 3,
      },
    );
    assert.deepEqual(samples(families, "switchboard_rate_limit_waits_total"), []);

    assert.deepEqual(table(samples(families, "switchboard_calls_served_total"), ["tool", "source"]), {
      "fx__echo|backend": 2,
      "fx__echo|cache": 2,
      "fx__fail|backend": 2,
      "fx__stats|backend": 2,
    });

    // One duration observation per call, in the same series as the counter.
    const counts = samples(families, "switchboard_call_duration_seconds_count");
    assert.deepEqual(table(counts, ["tool", "outcome"]), table(calls, ["tool", "outcome"]));
    assert.equal(
      counts.reduce((n, s) => n + s.value, 0),
      11,
    );
    for (const s of samples(families, "switchboard_call_duration_seconds_sum")) assert.ok(s.value > 0);

    assert.equal(samples(families, "switchboard_calls_in_flight", { server: "fx" })[0]?.value, 0);
    assert.equal(samples(families, "switchboard_backend_up", { server: "fx" })[0]?.value, 1);
    assert.ok(!scraped.text.includes("fx__nope"), "no series for a tool that does not exist");
  });

  test("the switchboard__metrics tool counts the same calls and errors per tool", async () => {
    const result = (await client.callTool({
      name: "switchboard__metrics",
      arguments: { tool: "fx__*" },
    })) as ToolResult;
    assert.notEqual(result.isError, true, firstTextOf(result));
    const { tools } = result.structuredContent as {
      tools: Record<
        string,
        { count: number; errors: number; sampled: number; p50: number; p95: number; p99: number }
      >;
    };
    assert.deepEqual(JSON.parse(firstTextOf(result)), { tools });
    assert.deepEqual(Object.keys(tools).sort(), ["fx__echo", "fx__fail", "fx__stats"]);
    const counts = Object.fromEntries(Object.entries(tools).map(([name, t]) => [name, [t.count, t.errors]]));
    assert.deepEqual(counts, { fx__echo: [4, 0], fx__fail: [2, 2], fx__stats: [5, 3] });
    for (const [name, t] of Object.entries(tools)) {
      assert.equal(t.sampled, t.count, name);
      assert.ok(t.p50 > 0 && t.p50 <= t.p95 && t.p95 <= t.p99, `${name}: ${JSON.stringify(t)}`);
    }

    // The gateway's own tools are measured like the others, in the tool and on /metrics.
    const all = (await client.callTool({ name: "switchboard__metrics", arguments: {} })) as ToolResult;
    const allTools = (all.structuredContent as { tools: Record<string, { count: number }> }).tools;
    assert.equal(allTools.switchboard__metrics?.count, 1);
    const families = parsePrometheus((await probe(base, "/metrics")).text);
    assert.equal(
      samples(families, "switchboard_calls_total", { tool: "switchboard__metrics", outcome: "ok" })[0]?.value,
      2,
    );
  });
});

// ---------------------------------------------------------------------------------------------------
// 3: trace context in, spans out over OTLP, context on to the backends
// ---------------------------------------------------------------------------------------------------

const hex = (bytes: number) => randomBytes(bytes).toString("hex");
const TRACEPARENT = /^00-([0-9a-f]{32})-([0-9a-f]{16})-([0-9a-f]{2})$/;

describe("tracing: spans with the caller's trace context, exported over OTLP/HTTP", () => {
  let collector: OtlpCollector;
  let httpFixture: HttpFixture;
  let gateway: RunningGateway;
  let client: Client;

  before(async () => {
    collector = await startOtlpCollector();
    httpFixture = await startHttpFixture();
    const config = writeConfig({
      mcpServers: { fx: fixtureServer(), remote: { type: "http", url: `${httpFixture.url}/mcp` } },
      observability: { tracing: { enabled: true, otlp: { url: collector.url } } },
    });
    // Export batches every 50 ms instead of every 5 s, so spans arrive while the test waits.
    ({ gateway, client } = await startGatewayWithClient(config, { OTEL_BSP_SCHEDULE_DELAY: "50" }));
  });

  after(async () => {
    await stopGatewayWithClient(client, gateway);
    httpFixture?.stop();
    await collector?.close();
  });

  async function spanOf(traceId: string, name: string) {
    await eventually(
      () => collector.spans.some((s) => s.traceId === traceId && s.name === name),
      10_000,
      `a span "${name}" in trace ${traceId}`,
    );
    const span = collector.spans.find((s) => s.traceId === traceId && s.name === name);
    assert.ok(span);
    return span;
  }

  /**
   * Asserts that the span the backend was told is its parent (`backendParent`) is `span` itself or a
   * descendant of it (a CLIENT span around the backend request, say): the backend's work hangs under
   * the gateway's span in the trace.
   */
  async function assertUnder(span: { traceId: string; spanId: string }, backendParent: string) {
    let id = backendParent;
    for (let depth = 0; depth < 5; depth++) {
      if (id === span.spanId) return;
      const current = id;
      await eventually(
        () => collector.spans.some((s) => s.traceId === span.traceId && s.spanId === current),
        10_000,
        `span ${current} of trace ${span.traceId}`,
      );
      id =
        collector.spans.find((s) => s.traceId === span.traceId && s.spanId === current)?.parentSpanId ?? "";
    }
    assert.fail(`the backend's parent span ${backendParent} is not under the call's span ${span.spanId}`);
  }

  /** The traceparent the backend's `meta` tool saw, split up. */
  function received(result: ToolResult) {
    const meta = (result.structuredContent as { meta: Record<string, unknown> }).meta;
    const match = TRACEPARENT.exec(String(meta.traceparent));
    assert.ok(match, `the backend received a traceparent: ${JSON.stringify(meta)}`);
    return { traceId: match[1], parentId: match[2], flags: match[3] };
  }

  test("a traceparent in _meta parents the call's span, and the HTTP backend continues the trace under it", async () => {
    const traceId = hex(16);
    const parentId = hex(8);
    const result = (await client.callTool({
      name: "remote__meta",
      arguments: {},
      _meta: { traceparent: `00-${traceId}-${parentId}-01` },
    })) as ToolResult;
    const seen = received(result);
    assert.equal(seen.traceId, traceId, "the backend is in the caller's trace");
    assert.notEqual(seen.parentId, parentId, "the backend's parent is the gateway's span, not the caller's");
    assert.equal(seen.flags, "01");

    const span = await spanOf(traceId, "tools/call remote__meta");
    assert.equal(span.parentSpanId, parentId);
    await assertUnder(span, seen.parentId ?? "");
    assert.equal(span.kind, 2, "a SERVER span");
    assert.equal(span.attributes["switchboard.server"], "remote");
    assert.equal(span.attributes["switchboard.tool"], "meta");
    assert.equal(span.attributes["switchboard.outcome"], "ok");
    assert.equal(span.resource["service.name"], "switchboard");
    assert.ok(collector.contentTypes.length > 0);
    assert.ok(
      collector.contentTypes.every((t) => t.startsWith("application/json")),
      `${collector.contentTypes}`,
    );
  });

  test("a traceparent HTTP header is used when _meta has none", async () => {
    const traceId = hex(16);
    const parentId = hex(8);
    const headed = await connectHttp(gateway.url, { traceparent: `00-${traceId}-${parentId}-01` });
    try {
      const seen = received((await headed.callTool({ name: "remote__meta", arguments: {} })) as ToolResult);
      assert.equal(seen.traceId, traceId);
      assert.notEqual(seen.parentId, parentId);
      const span = await spanOf(traceId, "tools/call remote__meta");
      assert.equal(span.parentSpanId, parentId);
      await assertUnder(span, seen.parentId ?? "");

      // _meta wins over the header when both are sent.
      const metaTrace = hex(16);
      const metaParent = hex(8);
      const both = (await headed.callTool({
        name: "fx__meta",
        arguments: {},
        _meta: { traceparent: `00-${metaTrace}-${metaParent}-01` },
      })) as ToolResult;
      assert.equal(received(both).traceId, metaTrace, "the stdio backend gets the _meta trace");
      const metaSpan = await spanOf(metaTrace, "tools/call fx__meta");
      assert.equal(metaSpan.parentSpanId, metaParent);
      assert.ok(
        !collector.spans.some((s) => s.traceId === traceId && s.name === "tools/call fx__meta"),
        "no span of that call in the header's trace",
      );
    } finally {
      await headed.close();
    }
  });

  test("a failing call's span carries its outcome and an error status, in the caller's trace", async () => {
    const traceId = hex(16);
    const parentId = hex(8);
    const result = (await client.callTool({
      name: "fx__fail",
      arguments: {},
      _meta: { traceparent: `00-${traceId}-${parentId}-01` },
    })) as ToolResult;
    assert.equal(result.isError, true);
    const span = await spanOf(traceId, "tools/call fx__fail");
    assert.equal(span.parentSpanId, parentId);
    assert.equal(span.attributes["switchboard.outcome"], "tool_error");
    assert.equal(span.status.code, 2, "STATUS_CODE_ERROR");
  });

  test("a call without trace context starts a new trace", async () => {
    const before = new Set(collector.spans.map((s) => s.traceId));
    const seen = received((await client.callTool({ name: "fx__meta", arguments: {} })) as ToolResult);
    assert.ok(!before.has(seen.traceId ?? ""), "a fresh trace id");
    const span = await spanOf(seen.traceId ?? "", "tools/call fx__meta");
    assert.equal(span.parentSpanId, "");
    await assertUnder(span, seen.parentId ?? "");
  });
});
