/**
 * IP addresses as the SSRF guard (ssrf.ts) sees them: every notation reduced to its numeric value,
 * then classified by the range it falls in.
 *
 * Notations: IPv4 in decimal, octal, hex and short forms (`2130706433`, `0177.0.0.1`, `0x7f.1`,
 * `127.1`), IPv6 in any compression, with zone ids, and IPv4 embedded in IPv6 (mapped, compatible,
 * NAT64, 6to4, Teredo), which is classified as the IPv4 address it carries.
 */
import { isIPv6 } from "node:net";

export type AddressFamily = 4 | 6;

export interface ResolvedAddress {
  readonly address: string;
  readonly family: AddressFamily;
}

/** Resolves a host name to all of its addresses. Injectable so tests never touch real DNS. */

export interface AddressVerdict {
  /** The address in canonical form (dotted quad, or RFC 5952 IPv6). */
  readonly address: string;
  readonly family: AddressFamily;
  /** True only for public unicast space. */
  readonly allowed: boolean;
  /** What the address is, for error messages: "loopback (127.0.0.0/8)". */
  readonly range: string;
  /**
   * Whether naming the host in `allowPrivateHosts` may let it through. Metadata services,
   * unspecified, multicast and broadcast addresses never are: no legitimate API lives there.
   */
  readonly overridable: boolean;
}

// ---------------------------------------------------------------------------------------------------
// Parsing

/**
 * An IPv4 address in any notation the WHATWG URL parser (and inet_aton) accepts: one to four parts,
 * each decimal, octal (leading 0) or hex (0x), the last part filling the remaining bytes, one
 * trailing dot allowed. Returns the 32-bit value, or undefined when `text` is not such an address.
 */
export function parseIPv4(text: string): number | undefined {
  const parts = text.split(".");
  if (parts.length > 1 && parts[parts.length - 1] === "") parts.pop();
  if (parts.length === 0 || parts.length > 4) return undefined;
  const numbers: number[] = [];
  for (const part of parts) {
    const n = parseIPv4Part(part);
    if (n === undefined) return undefined;
    numbers.push(n);
  }
  const last = numbers.pop() as number;
  if (numbers.some((n) => n > 255)) return undefined;
  if (last >= 256 ** (4 - numbers.length)) return undefined;
  let value = last;
  numbers.forEach((n, i) => {
    value += n * 256 ** (3 - i);
  });
  return value;
}

function parseIPv4Part(part: string): number | undefined {
  if (part === "") return undefined;
  let digits = part;
  let radix = 10;
  if (/^0x/i.test(part)) {
    digits = part.slice(2);
    radix = 16;
    // "0x" alone is zero for the URL parser.
    if (digits === "") return 0;
  } else if (part.length > 1 && part.startsWith("0")) {
    digits = part.slice(1);
    radix = 8;
  }
  const pattern = radix === 16 ? /^[0-9a-f]+$/i : radix === 8 ? /^[0-7]+$/ : /^[0-9]+$/;
  if (!pattern.test(digits)) return undefined;
  const n = Number.parseInt(digits, radix);
  return Number.isSafeInteger(n) ? n : undefined;
}

export function formatIPv4(value: number): string {
  return [value >>> 24, (value >>> 16) & 255, (value >>> 8) & 255, value & 255].join(".");
}

/** An IPv6 address (zone id allowed and ignored) as eight 16-bit words, or undefined. */
export function parseIPv6(text: string): number[] | undefined {
  const zone = text.indexOf("%");
  const bare = zone === -1 ? text : text.slice(0, zone);
  if (!isIPv6(bare)) return undefined;
  let head = bare;
  let tail: number[] = [];
  // A trailing dotted quad stands for the last two words.
  const lastColon = bare.lastIndexOf(":");
  const maybeV4 = bare.slice(lastColon + 1);
  if (maybeV4.includes(".")) {
    const v4 = parseStrictIPv4(maybeV4);
    if (v4 === undefined) return undefined;
    tail = [v4 >>> 16, v4 & 0xffff];
    head = bare.slice(0, lastColon + 1);
    if (head.endsWith(":") && !head.endsWith("::")) head = head.slice(0, -1);
  }
  const [left = "", right] = head.split("::");
  const toWords = (s: string) => (s === "" ? [] : s.split(":").map((w) => Number.parseInt(w, 16)));
  const leftWords = toWords(left);
  const rightWords = [...(right === undefined ? [] : toWords(right)), ...tail];
  const missing = 8 - leftWords.length - rightWords.length;
  // Without "::" nothing may be missing; with it, at least one word is.
  if (right === undefined ? missing !== 0 : missing < 1) return undefined;
  return [...leftWords, ...new Array<number>(missing).fill(0), ...rightWords];
}

/** Dotted decimal with exactly four parts, as inside IPv6 text and in resolver answers. */
function parseStrictIPv4(text: string): number | undefined {
  const parts = text.split(".");
  if (parts.length !== 4 || parts.some((p) => !/^(0|[1-9][0-9]{0,2})$/.test(p) || Number(p) > 255)) {
    return undefined;
  }
  return parts.reduce((acc, p) => acc * 256 + Number(p), 0);
}

/** RFC 5952 text: lowercase, leading zeros dropped, the longest run of two or more zero words as "::". */
export function formatIPv6(words: readonly number[]): string {
  let bestStart = -1;
  let bestLength = 1;
  for (let i = 0; i < 8; ) {
    if (words[i] !== 0) {
      i++;
      continue;
    }
    let j = i;
    while (j < 8 && words[j] === 0) j++;
    if (j - i > bestLength) {
      bestStart = i;
      bestLength = j - i;
    }
    i = j;
  }
  const hex = words.map((w) => w.toString(16));
  if (bestStart === -1) return hex.join(":");
  return `${hex.slice(0, bestStart).join(":")}::${hex.slice(bestStart + bestLength).join(":")}`;
}

export type NormalizedHost =
  | { readonly kind: "ipv4"; readonly address: string; readonly value: number }
  | { readonly kind: "ipv6"; readonly address: string; readonly words: readonly number[] }
  | { readonly kind: "name"; readonly name: string };

/**
 * A URL host (or a config entry naming one) in the one form checks compare: IP literals in
 * canonical notation whatever way they were written, names lowercased without a trailing dot.
 */
export function normalizeHost(host: string): NormalizedHost {
  let h = host.trim();
  if (h.startsWith("[") && h.endsWith("]")) h = h.slice(1, -1);
  const words = parseIPv6(h);
  if (words) return { kind: "ipv6", address: formatIPv6(words), words };
  // Like the URL parser: a host is an IPv4 address when its last label is numeric.
  const labels = h.replace(/\.$/, "").split(".");
  const last = labels[labels.length - 1] ?? "";
  if (/^(0x[0-9a-f]*|[0-9]+)$/i.test(last)) {
    const value = parseIPv4(h);
    if (value !== undefined) return { kind: "ipv4", address: formatIPv4(value), value };
  }
  return { kind: "name", name: h.toLowerCase().replace(/\.$/, "") };
}

// ---------------------------------------------------------------------------------------------------
// Classification

interface V4Range {
  readonly base: number;
  readonly bits: number;
  readonly label: string;
  readonly overridable: boolean;
}

function v4(cidr: string, label: string, overridable = true): V4Range {
  const [base = "", bits = "32"] = cidr.split("/");
  return {
    base: parseStrictIPv4(base) as number,
    bits: Number(bits),
    label: `${label} (${cidr})`,
    overridable,
  };
}

/** Most specific first: the first match names the address. */
const V4_RANGES: readonly V4Range[] = [
  v4("169.254.169.254/32", "cloud metadata service", false),
  v4("169.254.169.253/32", "cloud DNS/metadata service", false),
  v4("169.254.169.123/32", "cloud time service", false),
  v4("169.254.170.2/32", "container metadata service", false),
  v4("100.100.100.200/32", "cloud metadata service", false),
  v4("168.63.129.16/32", "cloud platform service", false),
  v4("192.0.0.192/32", "cloud metadata service", false),
  v4("0.0.0.0/8", '"this network" (unspecified)', false),
  v4("10.0.0.0/8", "private"),
  v4("100.64.0.0/10", "carrier-grade NAT shared space"),
  v4("127.0.0.0/8", "loopback"),
  v4("169.254.0.0/16", "link-local"),
  v4("172.16.0.0/12", "private"),
  v4("192.0.0.0/24", "IETF protocol assignments"),
  v4("192.0.2.0/24", "documentation (TEST-NET-1)"),
  v4("192.88.99.0/24", "6to4 relay anycast"),
  v4("192.168.0.0/16", "private"),
  v4("198.18.0.0/15", "benchmarking"),
  v4("198.51.100.0/24", "documentation (TEST-NET-2)"),
  v4("203.0.113.0/24", "documentation (TEST-NET-3)"),
  v4("224.0.0.0/4", "multicast", false),
  v4("255.255.255.255/32", "broadcast", false),
  v4("240.0.0.0/4", "reserved"),
];

function inV4(value: number, range: V4Range): boolean {
  if (range.bits === 0) return true;
  const shift = 32 - range.bits;
  return value >>> shift === range.base >>> shift;
}

function classifyIPv4(value: number): AddressVerdict {
  const address = formatIPv4(value);
  for (const range of V4_RANGES) {
    if (inV4(value, range))
      return { address, family: 4, allowed: false, range: range.label, overridable: range.overridable };
  }
  return { address, family: 4, allowed: true, range: "public", overridable: true };
}

interface V6Range {
  readonly base: bigint;
  readonly bits: number;
  readonly label: string;
  readonly overridable: boolean;
  /** Where an embedded IPv4 address sits, when the range carries one that decides the verdict. */
  readonly embedded?: (words: readonly number[]) => number;
  /** Refused whatever it embeds (the embedded address is still named in the message). */
  readonly alwaysRefused?: boolean;
}

function toBig(words: readonly number[]): bigint {
  return words.reduce((acc, w) => (acc << 16n) | BigInt(w), 0n);
}

function v6(cidr: string, label: string, extra: Partial<V6Range> = {}): V6Range {
  const [base = "", bits = "128"] = cidr.split("/");
  return {
    base: toBig(parseIPv6(base) as number[]),
    bits: Number(bits),
    label: `${label} (${cidr})`,
    overridable: true,
    ...extra,
  };
}

const lastTwoWords = (w: readonly number[]) => (((w[6] ?? 0) << 16) | (w[7] ?? 0)) >>> 0;

const V6_RANGES: readonly V6Range[] = [
  v6("::/128", "unspecified", { overridable: false }),
  v6("::1/128", "loopback"),
  v6("::ffff:0:0/96", "IPv4-mapped IPv6", { embedded: lastTwoWords }),
  v6("::ffff:0:0:0/96", "IPv4-translated IPv6", { embedded: lastTwoWords, alwaysRefused: true }),
  v6("::/96", "IPv4-compatible IPv6 (deprecated)", { embedded: lastTwoWords, alwaysRefused: true }),
  v6("64:ff9b::/96", "NAT64", { embedded: lastTwoWords }),
  v6("64:ff9b:1::/48", "local-use NAT64"),
  v6("100::/64", "discard-only"),
  // Teredo reaches hosts through relays and embeds the server and (inverted) client IPv4 addresses;
  // it is not globally routable space, so it is refused whatever it embeds.
  v6("2001::/32", "Teredo tunnel", {
    embedded: (w) => ~lastTwoWords(w) >>> 0,
    alwaysRefused: true,
  }),
  v6("2001:2::/48", "benchmarking"),
  v6("2001:10::/28", "ORCHID"),
  v6("2001:20::/28", "ORCHIDv2"),
  v6("2001:db8::/32", "documentation"),
  v6("2002::/16", "6to4", { embedded: (w) => (((w[1] ?? 0) << 16) | (w[2] ?? 0)) >>> 0 }),
  v6("3fff::/20", "documentation"),
  v6("fd00:ec2::254/128", "cloud metadata service", { overridable: false }),
  v6("fc00::/7", "unique-local"),
  v6("fe80::/10", "link-local"),
  v6("fec0::/10", "site-local (deprecated)"),
  v6("ff00::/8", "multicast", { overridable: false }),
];

const V6_MASK = (1n << 128n) - 1n;

function inV6(value: bigint, range: V6Range): boolean {
  const shift = BigInt(128 - range.bits);
  return ((value ^ range.base) & (V6_MASK << shift) & V6_MASK) === 0n;
}

function classifyIPv6(words: readonly number[]): AddressVerdict {
  const address = formatIPv6(words);
  const value = toBig(words);
  for (const range of V6_RANGES) {
    if (!inV6(value, range)) continue;
    if (!range.embedded)
      return { address, family: 6, allowed: false, range: range.label, overridable: range.overridable };
    const inner = classifyIPv4(range.embedded(words));
    if (inner.allowed && !range.alwaysRefused) {
      return {
        address,
        family: 6,
        allowed: true,
        range: `${range.label} of public ${inner.address}`,
        overridable: true,
      };
    }
    return {
      address,
      family: 6,
      allowed: false,
      range: `${range.label} embedding ${inner.address}, ${inner.range}`,
      overridable: inner.overridable,
    };
  }
  // Outside 2000::/3 nothing is assigned as global unicast.
  if ((words[0] ?? 0) >> 13 !== 1) {
    return { address, family: 6, allowed: false, range: "reserved (outside 2000::/3)", overridable: true };
  }
  return { address, family: 6, allowed: true, range: "public", overridable: true };
}

/** Classifies an address in any notation; text that is no address at all is refused. */
export function classifyAddress(text: string): AddressVerdict {
  const host = normalizeHost(text);
  if (host.kind === "ipv4") return classifyIPv4(host.value);
  if (host.kind === "ipv6") return classifyIPv6(host.words);
  return { address: text, family: 4, allowed: false, range: "not an IP address", overridable: false };
}
