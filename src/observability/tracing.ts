/**
 * OpenTelemetry spans for tool calls, with W3C trace context in and out.
 *
 * Each gateway has its own tracer provider, never registered as the global one: several gateways in
 * one process (tests, embeddings) must not take over each other's exporter, and an application
 * that embeds Switchboard keeps its own global setup. For the same reason nothing here relies on the
 * global context manager: the parent of a span is passed explicitly.
 *
 * With tracing off, `createTracing` returns one shared no-op whose spans are a single frozen object:
 * a call allocates nothing and touches no context.
 *
 * The policies of a call report their steps as events of the policy runtime, not to a span (they know
 * nothing of tracing). To put each step on the span of the call it belongs to, the gateway runs the
 * rest of a call's chain inside `withSpan`, which keeps the span in an AsyncLocalStorage of this
 * tracing's own (not OpenTelemetry's global context): an event raised anywhere in that call's async
 * flow lands on its span. Only recording spans are kept, so unsampled calls pay nothing for it.
 */
import { AsyncLocalStorage } from "node:async_hooks";
import { createRequire } from "node:module";
import type { Attributes, Span, TextMapGetter, Tracer } from "@opentelemetry/api";
import type { W3CTraceContextPropagator } from "@opentelemetry/core";
import type { BasicTracerProvider, SpanExporter, SpanProcessor } from "@opentelemetry/sdk-trace-base";
import { describeError, isGatewayError } from "../core/errors.ts";
import { NOTES } from "../policies/types.ts";
import { VERSION } from "../version.ts";
import { TRACING_DEFAULTS } from "./config.ts";
import { listenToPolicyEvents, type PolicyEventSource } from "./policy-events.ts";
import { policySpanEvent } from "./policy-spans.ts";

/** The W3C trace context to pass on to a backend (in its request `_meta` and HTTP headers). */
export interface TraceCarrier {
  readonly traceparent: string;
  readonly tracestate?: string;
}

/** HTTP request headers as node:http gives them (lower-case names). */
export type HeaderBag = Readonly<Record<string, string | readonly string[] | undefined>>;

export interface CallSpan {
  /**
   * False for the no-op span and for spans the sampler dropped: callers can skip building
   * attributes for `event` then.
   */
  readonly recording: boolean;
  /** A step of the call worth seeing on the trace: cache hit, rate limited, breaker open, retry… */
  event(name: string, attributes?: Attributes): void;
  setAttributes(attributes: Attributes): void;
  /** Copies what the policies noted about the call (cache, source, retries, queueing) onto the span. */
  recordNotes(notes: ReadonlyMap<string, unknown>): void;
  /**
   * Ends the span. `outcome` is the metrics outcome ("ok", "tool_error", "timeout", …): anything but
   * "ok" sets the span's status to error. Only the first call counts.
   */
  end(outcome: string, error?: unknown): void;
  /** This span's context as W3C headers, for the outbound request; undefined for the no-op span. */
  inject(): TraceCarrier | undefined;
  /** A CLIENT span under this one, e.g. "backend db" around the backend request. */
  startChild(name: string, attributes?: Attributes): CallSpan;
}

export interface Tracing {
  readonly enabled: boolean;
  /**
   * Starts the SERVER span of one request (a tools/call unless `attributes["mcp.method.name"]` names
   * another kind). Its parent is the trace context in the request's `_meta` (keys "traceparent",
   * "tracestate"), else in the HTTP `headers`, else none (a new trace). `attributes` adds to the
   * standard ones (e.g. jsonrpc.request.id, mcp.session.id).
   */
  startCallSpan(
    exposedName: string,
    server: string,
    tool: string,
    meta: Readonly<Record<string, unknown>>,
    headers?: HeaderBag,
    attributes?: Attributes,
  ): CallSpan;
  /**
   * Runs `run` with `span` as the active call span: policy events raised while it runs (in its whole
   * async flow) become events of `span`. A nested call's own `withSpan` takes over inside it.
   */
  withSpan<T>(span: CallSpan, run: () => T): T;
  /**
   * Adds every policy event of `source` to the call span active where it was raised (see `withSpan`);
   * events raised outside any call (a server's cache dropped when its lists change) are not traced.
   * Returns the function that stops listening.
   */
  subscribe(source: PolicyEventSource): () => void;
  /** Exports what is buffered. Never rejects: a collector that is down loses those spans. */
  forceFlush(): Promise<void>;
  /**
   * Exports what is buffered and stops; spans started afterwards are not exported. Waits at most
   * `timeoutMs` (default 5000), so that a collector that is down cannot hold up the gateway's
   * shutdown, and never rejects.
   */
  shutdown(timeoutMs?: number): Promise<void>;
}

/** What `createTracing` reads: the config's `observability.tracing`, any field left out at its default. */
export interface TracingSettings {
  readonly enabled?: boolean;
  readonly serviceName?: string;
  readonly otlp?: { readonly url: string; readonly headers?: Readonly<Record<string, string>> };
  readonly sampleRatio?: number;
}

export interface TracingOptions {
  /**
   * Where spans go instead of OTLP, each exported as it ends (tests pass an InMemorySpanExporter).
   * Default: an OTLP/HTTP exporter behind a batching processor.
   */
  readonly exporter?: SpanExporter;
  /**
   * How long one OTLP export may take, retries included, in ms. Default 10 000 (the exporter's own).
   * The exporter's retry timers keep the process alive meanwhile, even after `shutdown` gave up.
   */
  readonly exportTimeoutMs?: number;
  /** Told when spans could not be exported at flush or shutdown. Default: nothing is told. */
  readonly onError?: (error: unknown) => void;
}

const NOOP_SPAN: CallSpan = Object.freeze({
  recording: false,
  event() {},
  setAttributes() {},
  recordNotes() {},
  end() {},
  inject: () => undefined,
  startChild: () => NOOP_SPAN,
});

/** Tracing switched off: every method returns at once, every span is the same frozen no-op. */
export const NOOP_TRACING: Tracing = Object.freeze({
  enabled: false,
  startCallSpan: () => NOOP_SPAN,
  withSpan: <T>(_span: CallSpan, run: () => T): T => run(),
  subscribe: () => () => {},
  forceFlush: () => Promise.resolve(),
  shutdown: () => Promise.resolve(),
});

/**
 * The OpenTelemetry packages, loaded when a gateway first turns tracing on: they are some 10 MB of
 * memory and a noticeable part of start-up that a gateway with tracing off (the default) never uses.
 * `require` rather than `import()` because creating a tracing is synchronous (the gateway's
 * constructor builds it); the packages ship CommonJS builds.
 */
interface OpenTelemetry {
  readonly api: typeof import("@opentelemetry/api");
  readonly exporter: typeof import("@opentelemetry/exporter-trace-otlp-http");
  readonly resources: typeof import("@opentelemetry/resources");
  readonly sdk: typeof import("@opentelemetry/sdk-trace-base");
  /** Stateless; one serves every gateway. */
  readonly propagator: W3CTraceContextPropagator;
}

let openTelemetry: OpenTelemetry | undefined;
function loadOpenTelemetry(): OpenTelemetry {
  if (openTelemetry) return openTelemetry;
  const require = createRequire(import.meta.url);
  const core = require("@opentelemetry/core") as typeof import("@opentelemetry/core");
  openTelemetry = {
    api: require("@opentelemetry/api") as OpenTelemetry["api"],
    exporter: require("@opentelemetry/exporter-trace-otlp-http") as OpenTelemetry["exporter"],
    resources: require("@opentelemetry/resources") as OpenTelemetry["resources"],
    sdk: require("@opentelemetry/sdk-trace-base") as OpenTelemetry["sdk"],
    propagator: new core.W3CTraceContextPropagator(),
  };
  return openTelemetry;
}

const recordGetter: TextMapGetter<Readonly<Record<string, unknown>>> = {
  keys: (carrier) => Object.keys(carrier),
  get: (carrier, key) => {
    const value = carrier[key];
    if (typeof value === "string") return value;
    if (Array.isArray(value) && typeof value[0] === "string") return value[0];
    return undefined;
  },
};

const recordSetter = {
  set: (carrier: Record<string, string>, key: string, value: string) => {
    carrier[key] = value;
  },
};

export function createTracing(settings: TracingSettings, options: TracingOptions = {}): Tracing {
  if (settings.enabled !== true) return NOOP_TRACING;
  return new OtelTracing(settings, options);
}

class OtelTracing implements Tracing {
  readonly enabled = true;
  readonly #provider: BasicTracerProvider;
  readonly #tracer: Tracer;
  readonly #onError: (error: unknown) => void;
  readonly #active = new AsyncLocalStorage<CallSpan>();
  readonly #otel = loadOpenTelemetry();

  constructor(settings: TracingSettings, options: TracingOptions) {
    this.#onError = options.onError ?? (() => {});
    const { BasicTracerProvider, BatchSpanProcessor, ParentBasedSampler, SimpleSpanProcessor } =
      this.#otel.sdk;
    const { OTLPTraceExporter } = this.#otel.exporter;
    const { resourceFromAttributes } = this.#otel.resources;
    const processor: SpanProcessor = options.exporter
      ? new SimpleSpanProcessor(options.exporter)
      : new BatchSpanProcessor(
          new OTLPTraceExporter({
            ...(settings.otlp ? { url: settings.otlp.url, headers: { ...settings.otlp.headers } } : {}),
            ...(options.exportTimeoutMs === undefined ? {} : { timeoutMillis: options.exportTimeoutMs }),
          }),
        );
    this.#provider = new BasicTracerProvider({
      resource: resourceFromAttributes({
        "service.name": settings.serviceName ?? TRACING_DEFAULTS.serviceName,
        "service.version": VERSION,
      }),
      // A caller that sent a sampled trace context keeps its trace whole; the ratio is for new traces.
      sampler: new ParentBasedSampler({
        root: new this.#otel.sdk.TraceIdRatioBasedSampler(
          settings.sampleRatio ?? TRACING_DEFAULTS.sampleRatio,
        ),
      }),
      spanProcessors: [processor],
    });
    this.#tracer = this.#provider.getTracer("switchboard", VERSION);
  }

  // Typed by the interface, so that its parameter list is written once, there, with its documentation.
  readonly startCallSpan: Tracing["startCallSpan"] = (
    exposedName,
    server,
    tool,
    meta,
    headers,
    attributes,
  ) => {
    // Take traceparent and tracestate from the same place: mixing a _meta parent with a header
    // tracestate would attach vendor state to the wrong trace.
    const carrier: Readonly<Record<string, unknown>> | undefined =
      typeof meta.traceparent === "string" ? meta : headers;
    const { ROOT_CONTEXT, SpanKind } = this.#otel.api;
    const parent = carrier
      ? this.#otel.propagator.extract(ROOT_CONTEXT, carrier, recordGetter)
      : ROOT_CONTEXT;
    // A request of another kind names its method in the attributes; its span is named after it.
    const method =
      typeof attributes?.["mcp.method.name"] === "string" ? attributes["mcp.method.name"] : "tools/call";
    const span = this.#tracer.startSpan(
      `${method} ${exposedName}`,
      {
        kind: SpanKind.SERVER,
        attributes: {
          "mcp.method.name": method,
          ...(method === "tools/call"
            ? { "gen_ai.operation.name": "execute_tool", "gen_ai.tool.name": exposedName }
            : {}),
          "switchboard.server": server,
          "switchboard.tool": tool,
          ...attributes,
        },
      },
      parent,
    );
    return new OtelCallSpan(this.#otel, this.#tracer, span);
  };

  withSpan<T>(span: CallSpan, run: () => T): T {
    return span.recording ? this.#active.run(span, run) : run();
  }

  subscribe(source: PolicyEventSource): () => void {
    return listenToPolicyEvents(source, (e) => {
      const span = this.#active.getStore();
      if (!span) return;
      const { name, attributes } = policySpanEvent(e);
      span.event(name, attributes);
    });
  }

  forceFlush(): Promise<void> {
    return this.#provider.forceFlush().catch(this.#onError);
  }

  async shutdown(timeoutMs = 5000): Promise<void> {
    let timer: NodeJS.Timeout | undefined;
    const late = new Promise<void>((resolve) => {
      timer = setTimeout(() => {
        this.#onError(
          new Error(`exporting the last spans took more than ${timeoutMs} ms; they were dropped`),
        );
        resolve();
      }, timeoutMs);
      timer.unref();
    });
    try {
      await Promise.race([this.#provider.shutdown().catch(this.#onError), late]);
    } finally {
      clearTimeout(timer);
    }
  }
}

class OtelCallSpan implements CallSpan {
  readonly recording: boolean;
  readonly #otel: OpenTelemetry;
  readonly #tracer: Tracer;
  readonly #span: Span;
  #ended = false;

  constructor(otel: OpenTelemetry, tracer: Tracer, span: Span) {
    this.#otel = otel;
    this.#tracer = tracer;
    this.#span = span;
    this.recording = span.isRecording();
  }

  event(name: string, attributes?: Attributes): void {
    this.#span.addEvent(name, attributes);
  }

  setAttributes(attributes: Attributes): void {
    this.#span.setAttributes(attributes);
  }

  recordNotes(notes: ReadonlyMap<string, unknown>): void {
    if (!this.recording) return;
    const attributes: Attributes = {};
    const cache = notes.get(NOTES.cache);
    if (typeof cache === "string") attributes["switchboard.cache"] = cache;
    if (notes.get(NOTES.coalesced) === true) attributes["switchboard.coalesced"] = true;
    const source = notes.get(NOTES.source);
    if (typeof source === "string") attributes["switchboard.source"] = source;
    const retries = notes.get(NOTES.retries);
    if (typeof retries === "number") attributes["switchboard.retries"] = retries;
    const queuedMs = notes.get(NOTES.queuedMs);
    if (typeof queuedMs === "number") attributes["switchboard.queued_ms"] = queuedMs;
    // The fallback's reasons are on its `fallback.answered` event (policy-spans.ts).
    this.#span.setAttributes(attributes);
  }

  end(outcome: string, error?: unknown): void {
    if (this.#ended) return;
    this.#ended = true;
    const span = this.#span;
    span.setAttribute("switchboard.outcome", outcome);
    if (outcome !== "ok") {
      span.setAttribute("error.type", isGatewayError(error) ? error.code : outcome);
      span.setStatus({
        code: this.#otel.api.SpanStatusCode.ERROR,
        message: error === undefined ? outcome : describeError(error),
      });
      // Rejections by policies are expected and named by error.type; only the unexpected get a stack.
      if (outcome === "error" && error instanceof Error) span.recordException(error);
    }
    span.end();
  }

  inject(): TraceCarrier | undefined {
    const carrier: Record<string, string> = {};
    const { ROOT_CONTEXT, trace } = this.#otel.api;
    this.#otel.propagator.inject(trace.setSpan(ROOT_CONTEXT, this.#span), carrier, recordSetter);
    const { traceparent, tracestate } = carrier;
    if (traceparent === undefined) return undefined;
    return tracestate === undefined ? { traceparent } : { traceparent, tracestate };
  }

  startChild(name: string, attributes?: Attributes): CallSpan {
    const { ROOT_CONTEXT, SpanKind, trace } = this.#otel.api;
    const child = this.#tracer.startSpan(
      name,
      { kind: SpanKind.CLIENT, ...(attributes ? { attributes } : {}) },
      trace.setSpan(ROOT_CONTEXT, this.#span),
    );
    return new OtelCallSpan(this.#otel, this.#tracer, child);
  }
}
