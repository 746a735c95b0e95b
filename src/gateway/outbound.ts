/**
 * Everything a client is sent that is not a tool's own successful result — errors, `isError` results,
 * progress and log messages — passes here on its way out, so that no secret value of the config
 * reaches a client, whatever path or era answers. A successful result is the tool's business.
 */
import { ProtocolError } from "@modelcontextprotocol/server";
import { GatewayError } from "../core/errors.ts";
import { redactDeep, redactSecrets } from "../core/redact.ts";

export class Outbound {
  readonly #secretValues: () => readonly string[];

  constructor(secretValues: () => readonly string[]) {
    this.#secretValues = secretValues;
  }

  redact<T>(value: T): T {
    return redactDeep(value, this.#secretValues());
  }

  /** The same failure with every secret value taken out of its message and data. */
  redactError(error: unknown): unknown {
    const secrets = this.#secretValues();
    if (secrets.length === 0) return error;
    if (error instanceof GatewayError) {
      return new GatewayError(error.code, redactSecrets(error.message, secrets), {
        data: redactDeep(error.data, secrets),
      });
    }
    if (error instanceof Error && typeof (error as { code?: unknown }).code === "number") {
      const { code, data } = error as Error & { code: number; data?: unknown };
      return new ProtocolError(code, redactSecrets(error.message, secrets), redactDeep(data, secrets));
    }
    return error;
  }

  /** Runs `run`, its failure redacted. */
  async redacting<T>(run: () => Promise<T>): Promise<T> {
    try {
      return await run();
    } catch (error) {
      throw this.redactError(error);
    }
  }
}
