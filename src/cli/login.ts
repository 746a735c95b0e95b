/**
 * `switchboard login <server>`: logs the gateway in to a remote server whose `auth` is
 * `{ type: "oauth" }`, and stores the tokens, encrypted, where the gateways of this config read them
 * (the token file, or the shared store). Prints the authorization URL to open on stdout, on a line of
 * its own; what happens on stderr. A running gateway picks the login up at its next connection
 * attempt: no restart needed.
 */
import { Command, type Command as CommandType, Option } from "commander";
import { GatewayError } from "../core/errors.ts";
import { fail, UsageError } from "./exit.ts";
import { configOption } from "./options.ts";

interface LoginCommandOptions {
  readonly config: string;
  readonly timeout: number;
}

export function addLoginCommand(program: CommandType): void {
  program.addCommand(
    new Command("login")
      .description("log the gateway in to a remote server that needs OAuth, and store its tokens")
      .argument("<server>", "the server's name under mcpServers")
      .addOption(configOption())
      .addOption(
        new Option("--timeout <seconds>", "how long to wait for the browser's redirect")
          .default(300)
          .argParser((value) => {
            const seconds = Number(value);
            if (!Number.isInteger(seconds) || seconds <= 0) {
              throw new UsageError(`--timeout takes a whole number of seconds, got "${value}"`);
            }
            return seconds;
          }),
      )
      .action(async (server: string, opts: LoginCommandOptions) => {
        try {
          await run(server, opts);
        } catch (error) {
          fail(error);
        }
      }),
  );
}

async function run(server: string, opts: LoginCommandOptions): Promise<void> {
  const [{ loadConfig }, { login }, { openTokenVault }, { createStore }] = await Promise.all([
    import("./gateway-session.ts"),
    import("../backends/mcp/oauth/login.ts"),
    import("../backends/mcp/oauth/token-vault.ts"),
    import("../stores/index.ts"),
  ]);
  const loaded = await loadConfig(opts.config);
  try {
    const config = loaded.config;
    const entry = config.mcpServers[server];
    if (!entry) {
      const names = Object.keys(config.mcpServers);
      throw new UsageError(
        `server "${server}" is not under mcpServers in ${opts.config}` +
          (names.length > 0 ? `; its servers are ${names.join(", ")}.` : "."),
      );
    }
    if (entry.type === "stdio" || entry.auth?.type !== "oauth") {
      throw new UsageError(
        `server "${server}" does not log in with OAuth: give it auth: { type: "oauth" } ` +
          "(a remote server, type http or sse) to use switchboard login.",
      );
    }
    if (!config.oauth) {
      throw new GatewayError("config_invalid", "Set oauth.encryptionKey: the tokens are stored encrypted.");
    }
    const store = await createStore(config.store);
    try {
      const vault = openTokenVault(config.oauth, store, loaded.baseDir);
      process.stderr.write(`Logging in to server "${server}" (${entry.url})…\n`);
      const outcome = await login({
        server,
        url: entry.url,
        headers: entry.headers,
        config: entry.auth,
        vault,
        clientName: config.gateway.name,
        timeoutMs: opts.timeout * 1000,
        onAuthorizationUrl: (url, redirectUri) => {
          process.stderr.write(
            `Open this URL in a browser and sign in; the browser comes back to ${redirectUri}:\n`,
          );
          process.stdout.write(`${url.href}\n`);
        },
      });
      const lifetime =
        outcome.expiresInSec === undefined ? "" : `, access token valid for ${outcome.expiresInSec} s`;
      process.stderr.write(
        `Logged in to server "${server}" (${outcome.grant}${outcome.scope ? `, scope "${outcome.scope}"` : ""}${lifetime}` +
          `${outcome.refreshable ? ", refreshed by the gateway from now on" : ""}). ` +
          `The tokens are stored encrypted in ${vault.where}.\n`,
      );
    } finally {
      await store.close();
    }
  } finally {
    loaded.secrets.close();
  }
}
