/**
 * Switchboard as a library: the gateway and its config loader for programs that embed it, and the
 * client-side helpers (request signing) for programs that call it. Named exports only.
 */

export { loadConfigFile, parseConfig } from "./config/load.ts";
export type { Config, ConfigInput } from "./config/schema.ts";
export { validateConfig } from "./config/validate.ts";
export { GatewayError, type GatewayErrorCode } from "./core/errors.ts";
export type { Backend, CallContext, Principal, Store, ToolCall } from "./core/types.ts";
export { Gateway, type GatewayOptions, type RequestOptions } from "./gateway/gateway.ts";
export { createLogger, silentLogger } from "./observability/logger.ts";
export {
  SIGNATURE_HEADERS,
  SIGNATURE_META_KEY,
  signatureHeaders,
  signOutbound,
  signToolCall,
} from "./security/signing.ts";
export { serveProbes } from "./server/http/probes.ts";
export { serveGatewayOnHttp } from "./server/http/serve.ts";
export { serveGatewayOnStdio } from "./server/stdio/serve.ts";
export { VERSION } from "./version.ts";
