/**
 * The console's config page: the config the gateway runs, as `switchboard check` shows it (servers and
 * settings with header and environment values left out, passwords in URLs and secret-looking arguments
 * masked; config/summary.ts), with the policies as resolved, every secret value of the config redacted
 * wherever it still turns up, and the last reload's result.
 */
import type { Config } from "../config/schema.ts";
import { type ConfigSummary, summarizeConfig } from "../config/summary.ts";
import type { ConfigReloadState } from "../gateway/config-status.ts";

export interface ConfigView {
  readonly summary: ConfigSummary;
  /** The policies as written: global, per tool rule, per profile (names only for profiles' rules). */
  readonly policies: Config["policies"];
  readonly toolPolicies: Config["toolPolicies"];
  readonly profiles: readonly string[];
  readonly reload: ConfigReloadState;
}

/** `redact` takes the secret values out (the gateway's own redaction, as for everything sent out). */
export function configView(
  config: Config,
  reload: ConfigReloadState,
  redact: <T>(value: T) => T,
): ConfigView {
  return redact({
    summary: summarizeConfig(config),
    policies: config.policies,
    toolPolicies: config.toolPolicies,
    profiles: Object.keys(config.profiles),
    reload,
  });
}
