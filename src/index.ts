/**
 * Switchboard as a library: what this file exports is the public API, and nothing else is. Programs
 * embed the gateway (create, start, serve, close; backends, stores and audit sinks of their own), and
 * clients of a gateway sign their calls. The README lists every export with an example.
 */

export type { AuditRecord, AuditSink, SinkHealth } from "./audit/record.ts";
export { loadConfigFile } from "./config/load.ts";
export type { Config, ConfigInput } from "./config/schema.ts";
export { validateConfig } from "./config/validate.ts";
export { GatewayError, type GatewayErrorCode } from "./core/errors.ts";
export {
  type Backend,
  type BackendCatalog,
  type BackendEvents,
  type BackendState,
  type CallContext,
  type CallToolResult,
  EMPTY_CATALOG,
  type GetPromptResult,
  type HealthResult,
  type Principal,
  type ReadResourceResult,
  type Store,
  type StoreLock,
  type StoreMessageHandler,
  type Tool,
  type ToolCall,
} from "./core/types.ts";
export {
  type CreateGatewayOptions,
  createGateway,
  type Gateway,
  type HttpHandler,
  type HttpHandlerOptions,
  type HttpServing,
  httpHandler,
  type ProbeServing,
  type ServeHttpOptions,
  type ServeStdioOptions,
  type StdioServing,
  serveHttp,
  serveProbes,
  serveStdio,
} from "./embed.ts";
export type { RequestOptions } from "./gateway/running.ts";
export { createLogger, type Logger, type LoggerOptions, silentLogger } from "./observability/logger.ts";
export {
  SIGNATURE_HEADERS,
  SIGNATURE_META_KEY,
  signatureHeaders,
  signOutbound,
  signToolCall,
} from "./security/signing.ts";
export { VERSION } from "./version.ts";
