/**
 * The config layer: the value primitives, schema and types, `${VAR}` interpolation, the config files
 * of MCP clients, loading and the `check` summary.
 */

export { CLIENT_ONLY_KEYS, type ConfigWarning } from "./client-formats.ts";
export { INPUT_VARIABLE_PREFIX, inputVariable } from "./client-variables.ts";
export {
  type Environment,
  formatPath,
  type InterpolateOptions,
  type InterpolationResult,
  type InvalidReference,
  interpolate,
  interpolateDocument,
  type MissingVariable,
  type PathSegment,
  type ReferenceResolver,
} from "./interpolate.ts";
export type { ConfigIssue } from "./issue-messages.ts";
export { type LoadConfigOptions, loadConfigFile, type ParseConfigOptions, parseConfig } from "./load.ts";
export type { ConfigFormat } from "./parse.ts";
export { LOG_LEVELS, type LogLevel, SERVER_NAME } from "./primitives.ts";
export {
  CLAUDE_DESKTOP_KEYS,
  type Config,
  type ConfigInput,
  configSchema,
  type GatewaySettings,
  type HttpServerConfig,
  type HttpServerSettings,
  type LoggingSettings,
  type LogLevelSetting,
  type RestartConfig,
  type ServerConfig,
  type StdioServerConfig,
  type ToolFilterConfig,
} from "./schema.ts";
export {
  type ConfigSummary,
  type RemoteServerSummary,
  type ServerSummary,
  type StdioServerSummary,
  summarizeConfig,
} from "./summary.ts";
export { type ValidateConfigOptions, validateConfig } from "./validate.ts";
