/**
 * What an HTTP backend may ask for at all, by config and before any address is looked at: http(s)
 * only (plain http only with `allowHttp`), no credentials in URLs, and a URL under `baseUrl` or on a
 * host in `allowHosts`. Where the host then resolves to is ssrf.ts's question.
 */
import { GatewayError, InvalidArguments } from "../../core/errors.ts";
import type { HttpBackendConfig } from "./config.ts";
import { DetailedError } from "./network-errors.ts";
import { type HostPattern, matchesHostPattern, parseHostPattern } from "./ssrf.ts";

export class Scope {
  /** `baseUrl`, its last segment a folder: "/v1" and "/v1/" mean the same. */
  readonly base: URL | undefined;
  readonly #name: string;
  readonly #config: HttpBackendConfig;
  readonly #allowHosts: readonly HostPattern[];

  constructor(name: string, config: HttpBackendConfig) {
    this.#name = name;
    this.#config = config;
    if (config.baseUrl) {
      const base = new URL(config.baseUrl);
      if (!base.pathname.endsWith("/")) base.pathname = `${base.pathname}/`;
      this.base = base;
    }
    this.#allowHosts = config.allowHosts.map((p) => parseHostPattern(p) as HostPattern);
  }

  /** `path` under the base URL; a path that climbs out of it is refused when the scope is checked. */
  underBase(path: string): URL {
    const base = this.base as URL;
    // Leading slashes would make "//evil.example" a different host; paths are always relative here.
    const relative = path.replace(/^[/\\]+/, "");
    try {
      return new URL(relative, base);
    } catch {
      throw new InvalidArguments(`"${path}" is not a valid path under ${base.href}.`);
    }
  }

  /**
   * Throws `forbidden` unless config allows `url`'s scheme and host. Makes no network call. For a
   * redirect hop (`redirect` names it) the message never shows the target, which the server chose.
   */
  check(url: URL, redirect?: string): void {
    const name = this.#name;
    const refuse = (why: string, what: string): never => {
      if (redirect) {
        throw new DetailedError(
          "forbidden",
          `Refused to follow ${redirect} on backend "${name}": its target is out of scope (${why}). ` +
            "Request a URL in scope directly.",
          `${redirect} to ${url.href}: ${why}`,
          { data: { server: name, reason: "out_of_scope" } },
        );
      }
      throw new GatewayError("forbidden", `Refused ${url.href} on backend "${name}": ${why}. ${what}`, {
        data: { server: name, url: url.href },
      });
    };
    if (url.protocol !== "https:" && url.protocol !== "http:") {
      refuse(`the scheme ${url.protocol} is not HTTP`, "Use an https:// URL.");
    }
    if (url.protocol === "http:" && !this.#config.allowHttp) {
      refuse("plain http:// is not allowed", "Use https://, or set allowHttp: true in the backend config.");
    }
    if (url.username || url.password) {
      refuse(
        "URLs may not carry credentials",
        "Remove the user:password@ part; credentials go in config headers.",
      );
    }
    const base = this.base;
    if (base && url.origin === base.origin && `${url.pathname}/`.startsWith(base.pathname)) return;
    if (matchesHostPattern(url, this.#allowHosts)) return;
    refuse(
      base
        ? `it is outside the base URL ${base.href} and its host is not in allowHosts`
        : "its host is not in allowHosts",
      base ? "Use a path under the base URL, or add the host to allowHosts." : "Add the host to allowHosts.",
    );
  }
}
