/**
 * The SSRF guard on its own: notations, classification, resolution and pinning. Nothing here opens
 * a socket or asks real DNS: every resolver is a function of the test, and one that must not be
 * called fails the test when it is.
 */
import assert from "node:assert/strict";
import type { LookupAddress } from "node:dns";
import { describe, test } from "node:test";
import {
  classifyAddress,
  formatIPv6,
  normalizeHost,
  parseIPv4,
  parseIPv6,
} from "../../../src/backends/http/addresses.ts";
import { DetailedError } from "../../../src/backends/http/network-errors.ts";
import { AddressRefused, checkHost, pinnedLookup, type Resolver } from "../../../src/backends/http/ssrf.ts";

const NEVER_ABORTED = new AbortController().signal;

/** A resolver for hosts that are IP literals: being called at all is a failure. */
const mustNotResolve: Resolver = async (hostname) => {
  throw new Error(`the resolver was asked for "${hostname}", but IP literals must never be resolved`);
};

function fixedResolver(answers: Record<string, string[]>): Resolver & { calls: string[] } {
  const calls: string[] = [];
  const resolve = async (hostname: string) => {
    calls.push(hostname);
    const addresses = answers[hostname];
    if (!addresses) throw new Error(`unexpected lookup of "${hostname}"`);
    return addresses.map((address) => ({
      address,
      family: address.includes(":") ? (6 as const) : (4 as const),
    }));
  };
  return Object.assign(resolve, { calls });
}

function check(host: string, resolve: Resolver = mustNotResolve, allowPrivate = false) {
  return checkHost(host, { resolve, allowPrivate, signal: NEVER_ABORTED, owner: 'backend "api"' });
}

/** What the URL parser makes of a host as written in a URL, exactly as requests see it. */
function urlHost(written: string): string {
  return new URL(`http://${written}/`).hostname;
}

describe("address notations", () => {
  test("IPv4 in every notation the URL parser and inet_aton accept reduces to one value", () => {
    const loopback = 0x7f000001;
    for (const written of [
      "127.0.0.1",
      "2130706433",
      "0177.0.0.1",
      "0x7f.1",
      "0x7F.0.0.1",
      "127.1",
      "127.0.1",
      "0x7f000001",
      "017700000001",
      "127.0.0.1.",
    ]) {
      assert.equal(parseIPv4(written), loopback, written);
      assert.equal(urlHost(written), "127.0.0.1", `URL parser on ${written}`);
      const host = normalizeHost(written);
      assert.equal(host.kind === "ipv4" && host.address, "127.0.0.1", `normalizeHost(${written})`);
    }
    for (const notAddress of [
      "1.2.3.4.5",
      "256.0.0.1",
      "08.0.0.1",
      "1..2",
      "example.com",
      "1.2.3.a",
      "4294967296",
    ]) {
      assert.equal(parseIPv4(notAddress), undefined, notAddress);
    }
  });

  test("IPv6 in any compression, with embedded IPv4 or a zone id, parses to the same words", () => {
    const loopback = [0, 0, 0, 0, 0, 0, 0, 1];
    for (const written of ["::1", "0:0:0:0:0:0:0:1", "0000::0001", "::0:1", "::1%lo"]) {
      assert.deepEqual(parseIPv6(written), loopback, written);
    }
    assert.deepEqual(parseIPv6("::ffff:127.0.0.1"), [0, 0, 0, 0, 0, 0xffff, 0x7f00, 1]);
    assert.deepEqual(parseIPv6("1:2:3:4:5:6:1.2.3.4"), [1, 2, 3, 4, 5, 6, 0x102, 0x304]);
    assert.equal(parseIPv6("1::2::3"), undefined);
    assert.equal(parseIPv6("12345::"), undefined);
    assert.equal(
      formatIPv6(parseIPv6("2001:0db8:0000:0000:0000:0000:0002:0001") as number[]),
      "2001:db8::2:1",
    );
    assert.equal(formatIPv6(parseIPv6("fe80:0:0:1:0:0:0:1") as number[]), "fe80:0:0:1::1");
    assert.equal(normalizeHost("[::FFFF:7F00:1]").kind, "ipv6");
    assert.deepEqual(normalizeHost("LocalHost."), { kind: "name", name: "localhost" });
  });

  test("the URL parser refuses IPv6 zone ids, so they never reach a request", () => {
    assert.throws(() => new URL("http://[fe80::1%25eth0]/"));
    assert.throws(() => new URL("http://[fe80::1%eth0]/"));
    // A resolver may still answer with one; the zone does not hide the address.
    assert.equal(classifyAddress("fe80::1%eth0").allowed, false);
  });
});

describe("classification", () => {
  const refused: [written: string, range: RegExp][] = [
    ["127.0.0.1", /loopback/],
    ["2130706433", /loopback/],
    ["0177.0.0.1", /loopback/],
    ["0x7f.1", /loopback/],
    ["127.1", /loopback/],
    ["127.255.255.254", /loopback/],
    ["[::1]", /loopback/],
    ["[0:0:0:0:0:0:0:1]", /loopback/],
    ["[::ffff:127.0.0.1]", /IPv4-mapped.*127\.0\.0\.1.*loopback/],
    ["[::ffff:7f00:1]", /IPv4-mapped.*loopback/],
    ["[::127.0.0.1]", /IPv4-compatible/],
    ["[::8.8.8.8]", /IPv4-compatible/],
    ["[::ffff:0:10.0.0.1]", /IPv4-translated/],
    ["[64:ff9b::7f00:1]", /NAT64.*loopback/],
    ["[64:ff9b::169.254.169.254]", /NAT64.*metadata/],
    ["[64:ff9b:1::1]", /local-use NAT64/],
    ["[2002:7f00:1::]", /6to4.*loopback/],
    ["[2002:a00:1::1]", /6to4.*10\.0\.0\.1.*private/],
    ["[2002:a9fe:a9fe::]", /6to4.*metadata/],
    // Teredo: server 65.54.227.120, client ~0xf5fffffe = 10.0.0.1.
    ["[2001:0:4136:e378:8000:63bf:f5ff:fffe]", /Teredo.*10\.0\.0\.1/],
    ["10.0.0.1", /private/],
    ["10.255.255.255", /private/],
    ["172.16.0.1", /private/],
    ["172.31.255.255", /private/],
    ["192.168.1.1", /private/],
    ["169.254.169.254", /metadata/],
    ["0251.0376.0251.0376", /metadata/],
    ["0xa9fea9fe", /metadata/],
    ["2852039166", /metadata/],
    ["169.254.170.2", /metadata/],
    ["100.100.100.200", /metadata/],
    ["[fd00:ec2::254]", /metadata/],
    ["169.254.1.1", /link-local/],
    ["[fe80::1]", /link-local/],
    ["[febf:ffff::1]", /link-local/],
    ["[fec0::1]", /site-local/],
    ["[fc00::1]", /unique-local/],
    ["[fdff:ffff::1]", /unique-local/],
    ["100.64.0.1", /carrier-grade NAT/],
    ["100.127.255.254", /carrier-grade NAT/],
    ["0.0.0.0", /this network/],
    ["0", /this network/],
    ["0.1.2.3", /this network/],
    ["[::]", /unspecified/],
    ["224.0.0.1", /multicast/],
    ["239.255.255.250", /multicast/],
    ["[ff02::1]", /multicast/],
    ["255.255.255.255", /broadcast/],
    ["240.0.0.1", /reserved/],
    ["192.0.0.170", /IETF protocol/],
    ["192.0.2.1", /documentation/],
    ["198.51.100.7", /documentation/],
    ["203.0.113.9", /documentation/],
    ["198.18.0.1", /benchmarking/],
    ["192.88.99.1", /6to4 relay/],
    ["[2001:db8::1]", /documentation/],
    ["[3fff::1]", /documentation/],
    ["[2001:2::1]", /benchmarking/],
    ["[100::1]", /discard/],
    ["[4000::1]", /reserved/],
    ["[::2]", /IPv4-compatible/],
  ];

  for (const [written, range] of refused) {
    test(`refuses ${written} before any resolution or connection`, async () => {
      const host = urlHost(written);
      const verdict = classifyAddress(host);
      assert.equal(verdict.allowed, false, `${written} (${host}) must not be allowed`);
      assert.match(verdict.range, range);
      await assert.rejects(check(host), (error: unknown) => {
        assert.ok(error instanceof AddressRefused);
        assert.equal(error.code, "forbidden");
        assert.match(error.message, /Refused to connect/);
        assert.match(error.message, /backend "api"/);
        return true;
      });
    });
  }

  test("public unicast is allowed, including public IPv4 inside mapped, NAT64 and 6to4 forms", async () => {
    for (const written of [
      "8.8.8.8",
      "1.1.1.1",
      "93.184.215.14",
      "172.32.0.1",
      "100.128.0.1",
      "[2606:4700:4700::1111]",
      "[::ffff:8.8.8.8]",
      "[64:ff9b::808:808]",
      "[2002:808:808::1]",
    ]) {
      const host = urlHost(written);
      assert.equal(classifyAddress(host).allowed, true, written);
      assert.deepEqual((await check(host)).length, 1, written);
    }
  });

  test("allowPrivate admits private and loopback space, never metadata or multicast", async () => {
    assert.equal((await check("127.0.0.1", mustNotResolve, true))[0]?.address, "127.0.0.1");
    assert.equal((await check("10.1.2.3", mustNotResolve, true))[0]?.address, "10.1.2.3");
    assert.equal((await check(urlHost("[::1]"), mustNotResolve, true))[0]?.address, "::1");
    for (const written of [
      "169.254.169.254",
      "[fd00:ec2::254]",
      "[64:ff9b::a9fe:a9fe]",
      "0.0.0.0",
      "224.0.0.1",
    ]) {
      await assert.rejects(check(urlHost(written), mustNotResolve, true), AddressRefused, written);
    }
  });
});

/** Asserts a refusal tells the caller the class only, and keeps what it hides in its detail. */
function assertClassOnly(error: unknown, hidden: readonly string[], detail: RegExp): true {
  assert.ok(error instanceof DetailedError, String(error));
  for (const text of hidden) {
    assert.ok(!error.message.includes(text), `the message names ${text}: ${error.message}`);
    assert.ok(!JSON.stringify(error.data).includes(text), `the data names ${text}`);
  }
  assert.match(error.detail, detail);
  return true;
}

describe("resolution", () => {
  test("a name that resolves to loopback is refused with the class only; the detail names the address", async () => {
    const resolve = fixedResolver({ "evil.example": ["127.0.0.1"] });
    await assert.rejects(check("evil.example", resolve), (error: unknown) => {
      assert.ok(error instanceof AddressRefused);
      assert.match(
        error.message,
        /^Refused to connect to "evil\.example": it resolves to a private or special-purpose address, /,
      );
      assert.match(error.message, /allowPrivateHosts/);
      return assertClassOnly(error, ["127.0.0.1", "loopback"], /evil\.example.*127\.0\.0\.1.*loopback/);
    });
    assert.deepEqual(resolve.calls, ["evil.example"]);
  });

  test("one internal address among public ones refuses the whole name, naming none of them", async () => {
    const resolve = fixedResolver({
      "mixed.example": ["93.184.215.14", "10.0.0.5"],
      "mapped.example": ["2606:4700::1", "::ffff:169.254.169.254"],
    });
    await assert.rejects(check("mixed.example", resolve), (error: unknown) =>
      assertClassOnly(error, ["10.0.0.5", "93.184.215.14", "private (10"], /10\.0\.0\.5.*private/),
    );
    await assert.rejects(check("mapped.example", resolve), (error: unknown) =>
      assertClassOnly(error, ["169.254", "metadata", "2606:4700"], /metadata/),
    );
    // Even for a host in allowPrivateHosts, where the hint differs, no address is named.
    await assert.rejects(check("mapped.example", resolve, true), (error: unknown) =>
      assertClassOnly(error, ["169.254", "2606:4700"], /metadata/),
    );
  });

  test("an IP literal the caller wrote is named with its range: that tells it nothing new", async () => {
    await assert.rejects(check(urlHost("0x7f.1")), /"127\.0\.0\.1": 127\.0\.0\.1 is a loopback/);
  });

  test("a redirect's target is never named: not its host, nor its addresses, nor its range", async () => {
    const resolve = fixedResolver({ "internal.corp": ["10.20.30.40"] });
    const redirect = "the redirect from https://api.example/start";
    for (const host of ["internal.corp", "10.20.30.40", "localhost"]) {
      await assert.rejects(
        checkHost(host, { resolve, allowPrivate: false, signal: NEVER_ABORTED, owner: "x", redirect }),
        (error: unknown) => {
          assert.match(
            error instanceof Error ? error.message : "",
            /^Refused to follow the redirect from https:\/\/api\.example\/start: it leads to a private or special-purpose address/,
          );
          return assertClassOnly(error, [host, "10.20", "private (", "loopback"], new RegExp(host));
        },
      );
    }
  });

  test("DNS failures say the class, never the resolver's own words", async () => {
    const failing =
      (code: string, message: string): Resolver =>
      async () => {
        throw Object.assign(new Error(message), { code });
      };
    const cases: [string, string, RegExp][] = [
      ["ENOTFOUND", "getaddrinfo ENOTFOUND nope.example via 10.53.0.2", /the name does not exist/],
      ["ESERVFAIL", "queryA ESERVFAIL nope.example (resolver 10.53.0.2)", /DNS did not answer/],
    ];
    for (const [code, message, reason] of cases) {
      await assert.rejects(check("nope.example", failing(code, message)), (error: unknown) => {
        assert.ok(error instanceof DetailedError);
        assert.equal(error.code, "backend_unavailable");
        assert.match(error.message, /^Could not resolve "nope\.example" for backend "api": /);
        assert.match(error.message, reason);
        return assertClassOnly(error, ["10.53.0.2", "getaddrinfo", "queryA"], /10\.53\.0\.2/);
      });
    }
  });

  test("public answers come back canonical, as the addresses to pin", async () => {
    const resolve = fixedResolver({ "api.example": ["93.184.215.14", "2606:4700:0:0:0:0:0:1"] });
    assert.deepEqual(await check("API.Example.", resolve), [
      { address: "93.184.215.14", family: 4 },
      { address: "2606:4700::1", family: 6 },
    ]);
  });

  test("localhost names are refused without asking DNS, unless allowed by name", async () => {
    for (const name of ["localhost", "LOCALHOST.", "api.localhost"]) {
      await assert.rejects(check(name), /always means this machine/, name);
    }
    const resolve = fixedResolver({ localhost: ["127.0.0.1", "::1"] });
    assert.equal((await check("localhost", resolve, true)).length, 2);
  });

  test("a resolver answer that is not an address, or no answer, is refused without repeating it", async () => {
    const resolve = fixedResolver({ "odd.example": ["db-7.internal"], "empty.example": [] });
    await assert.rejects(check("odd.example", resolve), (error: unknown) =>
      assertClassOnly(error, ["db-7.internal"], /"db-7\.internal", which is not an IP address/),
    );
    await assert.rejects(check("empty.example", resolve), /resolved to no addresses/);
  });
});

describe("pinned lookup", () => {
  const pinned = [
    { address: "127.0.0.1", family: 4 as const },
    { address: "::1", family: 6 as const },
  ];
  const lookup = pinnedLookup(() => pinned);

  function ask(options: Parameters<typeof lookup>[1]) {
    return new Promise<{ error: Error | null; address: string | LookupAddress[]; family?: number }>(
      (resolve) => {
        lookup("anything.example", options, (error, address, family) => resolve({ error, address, family }));
      },
    );
  }

  test("answers with the checked addresses only, honouring family and all", async () => {
    assert.deepEqual(await ask({ all: true }), {
      error: null,
      address: [
        { address: "127.0.0.1", family: 4 },
        { address: "::1", family: 6 },
      ],
      family: undefined,
    });
    assert.deepEqual(await ask({ family: 6 }), { error: null, address: "::1", family: 6 });
    assert.deepEqual(await ask({}), { error: null, address: "127.0.0.1", family: 4 });
  });

  test("with nothing checked it fails instead of falling back to DNS", async () => {
    const empty = pinnedLookup(() => []);
    const error = await new Promise<Error | null>((resolve) => empty("x.example", {}, (e) => resolve(e)));
    assert.match(String(error?.message), /No checked address/);
  });
});
