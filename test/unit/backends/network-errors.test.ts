/**
 * What a network failure may say to the caller: its class and error code, never the addresses,
 * ports, names or certificate details in the underlying message, which stay in the full message
 * kept for the log and the audit record.
 */
import assert from "node:assert/strict";
import { describe, test } from "node:test";
import {
  connectionFailure,
  fullMessage,
  resolutionFailure,
} from "../../../src/backends/http/network-errors.ts";

describe("network failures", () => {
  test("connection failures are told by class and code, never by address, port or certificate names", () => {
    const cases: [Error, RegExp, string[]][] = [
      [
        Object.assign(new Error("connect ECONNREFUSED 10.0.0.5:8080"), { code: "ECONNREFUSED" }),
        /^the connection was refused \(ECONNREFUSED\)$/,
        ["10.0.0.5", "8080"],
      ],
      [
        new AggregateError(
          [Object.assign(new Error("connect ETIMEDOUT 10.0.0.6:443"), { code: "ETIMEDOUT" })],
          "all attempts failed",
        ),
        /^the connection timed out \(ETIMEDOUT\)$/,
        ["10.0.0.6"],
      ],
      [
        Object.assign(
          new Error(
            "Hostname/IP does not match certificate's altnames: Host: api.example. is not in the cert's altnames: DNS:db.internal.corp",
          ),
          { code: "ERR_TLS_CERT_ALTNAME_INVALID" },
        ),
        /^the server's TLS certificate is not valid for this host \(ERR_TLS_CERT_ALTNAME_INVALID\)$/,
        ["db.internal.corp"],
      ],
      [
        Object.assign(new Error("self-signed certificate"), { code: "DEPTH_ZERO_SELF_SIGNED_CERT" }),
        /^the server's TLS certificate is not trusted/,
        [],
      ],
      [
        Object.assign(new Error("Connect Timeout Error (attempted address: 10.0.0.7:443, timeout: 10ms)"), {
          code: "UND_ERR_CONNECT_TIMEOUT",
        }),
        /^the connection timed out/,
        ["10.0.0.7"],
      ],
      [new Error("something about 10.0.0.8"), /^a network error$/, ["10.0.0.8"]],
    ];
    for (const [error, reason, hidden] of cases) {
      const text = connectionFailure(error);
      assert.match(text, reason);
      for (const h of hidden) assert.ok(!text.includes(h), `${text} names ${h}`);
      for (const h of hidden) assert.ok(fullMessage(error).includes(h), "the detail keeps it");
    }
  });

  test("DNS failures are told by class", () => {
    assert.equal(
      resolutionFailure(Object.assign(new Error("x"), { code: "ENOTFOUND" })),
      "the name does not exist",
    );
    assert.equal(resolutionFailure(new Error("resolver 10.53.0.2 said no")), "the lookup failed");
  });
});
