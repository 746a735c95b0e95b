/**
 * Sending one request for a tool call: through the origin's breaker, to addresses checked and pinned
 * first (origins.ts, ssrf.ts), following redirects here, one hop at a time, each hop checked again
 * before anything is sent to it. Credentials never follow a redirect to another origin.
 *
 * Errors name the caller's request and how far its redirects went, never a hop's own URL: a redirect
 * target is the server's choice and may point inside the network. The hop goes to the error's detail
 * (network-errors.ts), which only the log and the audit record see.
 */
import type { Pool } from "undici";
import { describeError, GatewayError } from "../../core/errors.ts";
import type { Logger } from "../../observability/logger.ts";
import { signOutbound } from "../../security/signing.ts";
import { type CallSignals, callSignals } from "../base.ts";
import {
  type Answer,
  discard,
  headerValue,
  type ResponseHeaders,
  readLimited,
  statusText,
} from "./answers.ts";
import type { HttpBackendConfig, HttpMethod } from "./config.ts";
import { connectionFailure, DetailedError, detailOf, fullMessage } from "./network-errors.ts";
import type { Origins } from "./origins.ts";
import type { OutgoingRequest } from "./requests.ts";
import type { Scope } from "./scope.ts";

/** Headers that carry credentials for one origin; dropped when a redirect leaves it. */
const CREDENTIAL_HEADERS = new Set(["authorization", "cookie", "proxy-authorization"]);

const REDIRECTS = new Set([301, 302, 303, 307, 308]);

export interface ExchangeOptions {
  readonly name: string;
  readonly config: HttpBackendConfig;
  readonly timeoutMs: number;
  readonly log: Logger;
  readonly scope: Scope;
  readonly origins: Origins;
}

interface Hop {
  readonly method: HttpMethod;
  readonly url: URL;
  readonly headers: Record<string, string>;
  readonly body: string | undefined;
  /** Set for a redirect hop: how messages name it. */
  readonly redirect: string | undefined;
  /** How errors name the request to the caller. */
  readonly subject: string;
}

export class Exchange {
  readonly #o: ExchangeOptions;
  /** Config headers: credentials for the first origin, dropped with the caller's when a redirect leaves it. */
  readonly #configHeaderNames: ReadonlySet<string>;

  constructor(options: ExchangeOptions) {
    this.#o = options;
    this.#configHeaderNames = new Set(Object.keys(options.config.headers).map((h) => h.toLowerCase()));
  }

  /** Sends `request`, following redirects one checked hop at a time. */
  async send(request: OutgoingRequest, tool: string, callerSignal: AbortSignal): Promise<Answer> {
    const { name, config } = this.#o;
    const signals = callSignals(callerSignal, this.#o.timeoutMs);
    let { method, url, headers, body } = request;
    let redirects = 0;
    const asked = `${request.method} ${request.url.href}`;
    const subject = () => (redirects === 0 ? asked : `${asked} (after ${redirects} redirect(s))`);
    try {
      for (; ; redirects++) {
        const hop = redirects === 0 ? undefined : redirectName(request, redirects);
        this.#o.scope.check(url, hop);
        const sign = config.signRequests;
        const sent =
          sign && url.origin === request.url.origin
            ? {
                ...headers,
                ...signOutbound({ method, url: url.href, body, keyId: sign.keyId, secret: sign.secret }),
              }
            : headers;
        const answer = await this.#hop(
          { method, url, headers: sent, body, redirect: hop, subject: subject() },
          tool,
          signals,
        );
        const location = headerValue(answer.headers.location);
        if (!REDIRECTS.has(answer.status) || config.maxRedirects === 0 || location === undefined) {
          return { ...answer, method, url, redirects };
        }
        if (redirects >= config.maxRedirects) {
          throw new DetailedError(
            "backend_error",
            `${asked} on backend "${name}" redirected more than maxRedirects ` +
              `(${config.maxRedirects}) times; request the final URL directly or raise maxRedirects.`,
            `${method} ${url.href} redirected again, to ${location}`,
            { data: { server: name, url: request.url.href } },
          );
        }
        let next: URL;
        try {
          next = new URL(location, url);
        } catch {
          throw new DetailedError(
            "backend_error",
            `${subject()} on backend "${name}" redirected to something that is not a valid URL; ` +
              "request another URL.",
            `${method} ${url.href} redirected to "${location}"`,
            { data: { server: name, url: request.url.href } },
          );
        }
        next.hash = "";
        if (next.origin !== url.origin) {
          // Credentials were meant for the origin that was asked, not for wherever it points to.
          headers = Object.fromEntries(
            Object.entries(headers).filter(
              ([header]) => !CREDENTIAL_HEADERS.has(header) && !this.#configHeaderNames.has(header),
            ),
          );
        }
        // As browsers do: 303 always, and 301/302 after POST, continue as a GET without body.
        if (
          answer.status === 303 ||
          ((answer.status === 301 || answer.status === 302) && method === "POST")
        ) {
          if (method !== "HEAD") method = "GET";
          body = undefined;
          const { "content-type": _type, ...rest } = headers;
          headers = rest;
        }
        url = next;
      }
    } catch (error) {
      const failure = this.#stopped(error, signals, subject(), `${method} ${url.href}`);
      const detail = detailOf(failure);
      if (detail !== undefined) {
        const level = failure instanceof GatewayError && failure.code === "cancelled" ? "debug" : "warn";
        this.#o.log[level]({ tool, code: (failure as GatewayError).code, detail }, describeError(failure));
      }
      throw failure;
    }
  }

  /** A cancel or a timeout as the caller's error; any other failure as it is. */
  #stopped(error: unknown, signals: CallSignals, subject: string, hop: string): unknown {
    const { name, timeoutMs } = this.#o;
    if (signals.caller.aborted) {
      return new DetailedError(
        "cancelled",
        `The request ${subject} on backend "${name}" was cancelled by the client.`,
        `cancelled during ${hop}`,
        { data: { server: name }, cause: error },
      );
    }
    if (signals.timeout.aborted) {
      return new DetailedError(
        "timeout",
        `${subject} on backend "${name}" got no complete answer within ${timeoutMs} ms; ` +
          "try again later, ask for less data, or raise timeoutMs.",
        `timed out during ${hop}`,
        { data: { server: name, timeoutMs }, cause: error },
      );
    }
    return error;
  }

  /** One request to one origin (scope already checked): addresses are checked and pinned first. */
  async #hop(
    hop: Hop,
    tool: string,
    signals: CallSignals,
  ): Promise<{ status: number; headers: ResponseHeaders; body: Buffer }> {
    const { name, config, origins } = this.#o;
    const { method, url, headers, body, subject } = hop;
    const origin = origins.of(url);
    const ticket = origins.enter(origin, tool, hop.redirect);
    // "ignore" until the origin has said something: refusals and cancels tell nothing about its health.
    let outcome = "ignore";
    try {
      await origins.pin(origin, url, hop.redirect, signals.any);
      let response: Awaited<ReturnType<Pool["request"]>>;
      try {
        response = await origin.pool.request({
          path: `${url.pathname}${url.search}`,
          method,
          headers,
          body: body ?? null,
          signal: signals.any,
        });
      } catch (error) {
        if (signals.any.aborted) throw error;
        // The class only: undici's message names the address and port it tried.
        outcome = connectionFailure(error);
        throw new DetailedError(
          "backend_unavailable",
          `${subject} on backend "${name}" failed before an answer: ${outcome}. ` +
            "Check that the host is up and reachable, then try again.",
          `${method} ${url.href}: ${fullMessage(error)}`,
          { data: { server: name, reason: "connection" }, cause: error },
        );
      }
      const status = response.statusCode;
      outcome = status >= 500 ? statusText(status) : "success";
      if (REDIRECTS.has(status) && response.headers.location !== undefined) {
        await response.body.dump({ limit: 64 * 1024 }).catch(() => undefined);
        return { status, headers: response.headers, body: Buffer.alloc(0) };
      }
      const limit = config.maxResponseBytes;
      const declared = method === "HEAD" ? 0 : Number(headerValue(response.headers["content-length"]) ?? 0);
      let data: Buffer | undefined;
      if (declared > limit) {
        discard(response.body);
      } else {
        try {
          data = await readLimited(response.body, limit);
        } catch (error) {
          if (signals.any.aborted) throw error;
          outcome = connectionFailure(error);
          throw new DetailedError(
            "backend_unavailable",
            `The answer to ${subject} on backend "${name}" broke off: ${outcome}. Try again.`,
            `${method} ${url.href}: ${fullMessage(error)}`,
            { data: { server: name, reason: "connection" }, cause: error },
          );
        }
      }
      if (data === undefined) {
        throw new GatewayError(
          "backend_error",
          `The answer to ${subject} (HTTP ${status}) on backend "${name}" is larger than ` +
            `maxResponseBytes (${limit} bytes), so it was not read to the end; ask for less (a filter, a page, ` +
            "a range) or raise maxResponseBytes.",
          { data: { server: name, maxResponseBytes: limit } },
        );
      }
      return { status, headers: response.headers, body: data };
    } catch (error) {
      if (signals.timeout.aborted && !signals.caller.aborted) outcome = "timeout";
      throw error;
    } finally {
      if (ticket && origin.breaker) {
        if (outcome === "success") origin.breaker.success(ticket);
        else if (outcome === "ignore") origin.breaker.ignore(ticket);
        else origin.breaker.failure(ticket, outcome);
      }
    }
  }
}

/**
 * How messages name a redirect hop: by the caller's request, which the caller knows, never by the
 * target, which the server chose.
 */
function redirectName(request: OutgoingRequest, hop: number): string {
  return hop === 1
    ? `the redirect from ${request.url.href}`
    : `redirect ${hop} of the chain from ${request.url.href}`;
}
