/**
 * Tests against real services: PostgreSQL from DATABASE_URL, Redis from REDIS_URL. Without the
 * variable a suite is skipped with a message that says how to run it, except in CI (CI=true), where a
 * missing service is a failure: a green CI run must have run these tests.
 *
 * Suites share one server with other test files running in parallel, so each run names its own
 * schemas, tables and key prefixes with `uniqueName` and removes them when done.
 */
import assert from "node:assert/strict";
import { randomBytes } from "node:crypto";
import { describe, test } from "node:test";

export interface Service {
  /** The environment variable that holds the service's URL. */
  readonly variable: "DATABASE_URL" | "REDIS_URL";
  readonly what: string;
  readonly example: string;
}

export const POSTGRES: Service = {
  variable: "DATABASE_URL",
  what: "a PostgreSQL server",
  example: "postgres://postgres@127.0.0.1:5432/test",
};

export const REDIS: Service = {
  variable: "REDIS_URL",
  what: "a Redis server",
  example: "redis://127.0.0.1:6379",
};

/** The service's URL, or undefined when the variable is unset or empty. */
export function serviceUrl(service: Service): string | undefined {
  return process.env[service.variable] || undefined;
}

/**
 * Registers `body` as a suite when the service's URL is set. Otherwise: one failing test in CI, a
 * skipped suite elsewhere.
 */
export function describeWithService(service: Service, name: string, body: (url: string) => void): void {
  const url = serviceUrl(service);
  if (url) {
    describe(name, () => body(url));
    return;
  }
  if (process.env.CI === "true") {
    test(name, () => {
      assert.fail(
        `${service.variable} is not set, and CI=true: these tests need ${service.what}. Provide one ` +
          `(e.g. a service container) and set ${service.variable}=${service.example}.`,
      );
    });
    return;
  }
  describe(name, {
    skip: `${service.variable} is not set: start ${service.what} and run with ${service.variable}=${service.example} to include these tests`,
  });
}

/**
 * A name no other test run uses, safe as an unquoted SQL identifier and as a Redis key segment:
 * lower-case letters, digits and "_", at most 63 characters (PostgreSQL's identifier limit).
 */
export function uniqueName(label: string): string {
  const clean = label
    .toLowerCase()
    .replace(/[^a-z0-9_]/g, "_")
    .slice(0, 40);
  return `sb_${clean}_${randomBytes(6).toString("hex")}`;
}
