/**
 * Server-side request forgery guard for backends that make requests on behalf of a model.
 *
 * A host name says nothing about where a connection goes, so the check is on addresses: every
 * address a name resolves to is classified, and one address outside public unicast space refuses
 * the whole name (a record set that mixes a public and an internal address is an attack, not a
 * misconfiguration). The addresses that passed are then the only ones the connection may use
 * (`pinnedLookup`), so a second DNS answer cannot rebind the name to an internal address.
 *
 * Every notation of an address is reduced to its numeric value before it is classified: IPv4 in
 * decimal, octal, hex and short forms (`2130706433`, `0177.0.0.1`, `0x7f.1`, `127.1`), IPv6 in any
 * compression, with zone ids, and IPv4 embedded in IPv6 (mapped, compatible, NAT64, 6to4, Teredo).
 */
import { promises as dns, type LookupAddress, type LookupOptions } from "node:dns";
import { isIPv6 } from "node:net";
import { DetailedError, fullMessage, resolutionFailure } from "./network-errors.ts";

export type AddressFamily = 4 | 6;

export interface ResolvedAddress {
  readonly address: string;
  readonly family: AddressFamily;
}

/** Resolves a host name to all of its addresses. Injectable so tests never touch real DNS. */
export type Resolver = (hostname: string, signal: AbortSignal) => Promise<readonly ResolvedAddress[]>;

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

// ---------------------------------------------------------------------------------------------------
// Checking and pinning

/**
 * A request refused because of where it would connect. Thrown before any connection is attempted.
 * Its message gives the caller the class of the reason only; `detail` names the addresses.
 */
export class AddressRefused extends DetailedError {
  constructor(message: string, detail: string, data: Record<string, unknown>) {
    super("forbidden", message, detail, { data });
    this.name = "AddressRefused";
  }
}

export interface HostCheckOptions {
  readonly resolve: Resolver;
  /** Normalized host names and IP literals whose private (not metadata) addresses are allowed. */
  readonly allowPrivate: boolean;
  readonly signal: AbortSignal;
  /** Who is asking, for messages: `backend "api"`. */
  readonly owner: string;
  /**
   * Set when the host comes from a redirect, not from the caller: how messages name the hop
   * ("the redirect from https://api.example.com/x"). The caller is then never told the host, its
   * addresses or why they were refused beyond the class: a redirect target is the server's choice,
   * and could point anywhere inside the network.
   */
  readonly redirect?: string | undefined;
}

/** Names that mean this machine whatever DNS says (RFC 6761); refused without asking DNS. */
function isLocalName(name: string): boolean {
  return name === "localhost" || name.endsWith(".localhost");
}

/** What the caller is told about an address that was not allowed, whatever it is. */
const NOT_PUBLIC = "a private or special-purpose address";

/**
 * Resolves `host` (a URL hostname) and checks every address. Returns the addresses a connection may
 * use; throws AddressRefused when any is not allowed.
 *
 * What the caller learns is limited to what it already knew: for an IP literal it wrote, which range
 * the literal is in; for a name, only that it resolves to a private or special-purpose address,
 * never which address, which range, or what the resolver said. The detail goes to the gateway's log
 * and audit record (AddressRefused.detail).
 */
export async function checkHost(host: string, options: HostCheckOptions): Promise<ResolvedAddress[]> {
  const normalized = normalizeHost(host);
  const { owner, redirect } = options;
  const hint = options.allowPrivate
    ? "Cloud metadata, unspecified, multicast and broadcast addresses are refused even for hosts in allowPrivateHosts."
    : redirect
      ? `Request a public URL directly; if the redirect's host is meant to be reachable, an operator can list it in allowPrivateHosts of ${owner} (the gateway's log names it).`
      : `If this host is meant to be reachable, list it in allowPrivateHosts of ${owner}.`;
  const refused = (why: string, detail: string, reason: string): never => {
    const message = redirect
      ? `Refused to follow ${redirect}: it leads to ${NOT_PUBLIC}, and ${owner} only connects to public addresses. ${hint}`
      : `Refused to connect to "${host}": ${why}, and ${owner} only connects to public addresses. ${hint}`;
    throw new AddressRefused(message, `${redirect ? `${redirect} to ` : ""}"${host}": ${detail}`, {
      reason,
      ...(redirect ? {} : { host }),
    });
  };
  const admit = (verdict: AddressVerdict, why: string, detail: string) => {
    if (verdict.allowed) return;
    if (options.allowPrivate && verdict.overridable) return;
    refused(why, detail, "not_public");
  };

  if (normalized.kind !== "name") {
    const verdict = classifyAddress(normalized.address);
    // The caller wrote this address: naming its range tells it nothing it did not know.
    admit(
      verdict,
      `${verdict.address} is a ${verdict.range} address`,
      `${verdict.address} is a ${verdict.range} address`,
    );
    return [{ address: normalized.address, family: normalized.kind === "ipv4" ? 4 : 6 }];
  }
  if (isLocalName(normalized.name) && !options.allowPrivate) {
    refused("the name always means this machine (loopback)", "a localhost name (loopback)", "local_name");
  }
  let answers: readonly ResolvedAddress[];
  try {
    answers = await options.resolve(normalized.name, options.signal);
  } catch (error) {
    if (options.signal.aborted) throw error;
    throw new DetailedError(
      "backend_unavailable",
      `Could not resolve ${redirect ? `the host of ${redirect}` : `"${host}"`} for ${owner}: ` +
        `${resolutionFailure(error)}. ${redirect ? "Request another URL." : "Check the host name."}`,
      `resolving "${host}"${redirect ? ` (${redirect})` : ""}: ${fullMessage(error)}`,
      { data: redirect ? { reason: "unresolved" } : { host, reason: "unresolved" }, cause: error },
    );
  }
  if (answers.length === 0) {
    throw new DetailedError(
      "backend_unavailable",
      `${redirect ? `The host of ${redirect}` : `"${host}"`} resolved to no addresses for ${owner}; ` +
        `${redirect ? "request another URL" : "check the host name"}.`,
      `"${host}"${redirect ? ` (${redirect})` : ""} resolved to no addresses`,
      { data: redirect ? { reason: "unresolved" } : { host, reason: "unresolved" } },
    );
  }
  const checked: ResolvedAddress[] = [];
  const why = `it resolves to ${NOT_PUBLIC}`;
  for (const answer of answers) {
    const verdict = classifyAddress(answer.address);
    if (verdict.range === "not an IP address")
      refused(why, `the resolver answered "${answer.address}", which is not an IP address`, "not_public");
    admit(verdict, why, `resolves to ${verdict.address}, a ${verdict.range} address`);
    checked.push({ address: verdict.address, family: verdict.family });
  }
  return checked;
}

/** The system resolver (getaddrinfo: hosts file, then DNS), every address, in the system's order. */
export const systemResolver: Resolver = async (hostname, signal) => {
  signal.throwIfAborted();
  const lookup = dns.lookup(hostname, { all: true, verbatim: true });
  // getaddrinfo cannot be cancelled; the caller stops waiting instead.
  const aborted = new Promise<never>((_, reject) => {
    signal.addEventListener("abort", () => reject(signal.reason), { once: true });
  });
  const answers = await Promise.race([lookup, aborted]);
  return answers.map((a) => ({ address: a.address, family: a.family === 6 ? 6 : 4 }));
};

type LookupCallback = (
  error: NodeJS.ErrnoException | null,
  address: string | LookupAddress[],
  family?: number,
) => void;

/**
 * A `lookup` for net/tls connect that never asks DNS: it answers with the addresses `pinned`
 * returns for the host, which were checked just before. That closes the window in which a
 * second resolution could rebind the name to an internal address.
 */
export function pinnedLookup(
  pinned: (hostname: string) => readonly ResolvedAddress[] | undefined,
): (hostname: string, options: LookupOptions, callback: LookupCallback) => void {
  return (hostname, options, callback) => {
    const wanted =
      options.family === 6 || options.family === "IPv6"
        ? 6
        : options.family === 4 || options.family === "IPv4"
          ? 4
          : 0;
    const all = pinned(hostname) ?? [];
    const addresses = wanted === 0 ? all : all.filter((a) => a.family === wanted);
    const first = addresses[0];
    if (!first) {
      const error: NodeJS.ErrnoException = new Error(
        `No checked address for "${hostname}": connections only go to addresses the SSRF check passed.`,
      );
      error.code = "ENOTFOUND";
      process.nextTick(callback, error, "", 0);
      return;
    }
    if (options.all) {
      process.nextTick(
        callback,
        null,
        addresses.map((a) => ({ address: a.address, family: a.family })),
      );
    } else {
      process.nextTick(callback, null, first.address, first.family);
    }
  };
}

// ---------------------------------------------------------------------------------------------------
// Host patterns (allowHosts, allowPrivateHosts)

/**
 * `host`, `*.host` (subdomains only), an IP literal, or `*` (any host), with an optional port
 * (none: any port).
 */
export interface HostPattern {
  /** Undefined for `*`. */
  readonly host: NormalizedHost | undefined;
  /** `*.example.com`: subdomains of `host`, not `host` itself. */
  readonly wildcard: boolean;
  readonly port?: number;
}

/** Parses a config entry; undefined when it is not a host pattern (has a scheme, a path, …). */
export function parseHostPattern(text: string): HostPattern | undefined {
  const trimmed = text.trim();
  if (trimmed === "" || /[/?#@\s\\]/.test(trimmed)) return undefined;
  let host = trimmed;
  let portText: string | undefined;
  if (trimmed.startsWith("[")) {
    const match = /^\[([^\]]+)\](?::(\d{1,5}))?$/.exec(trimmed);
    if (!match) return undefined;
    host = match[1] as string;
    portText = match[2];
  } else if (trimmed.split(":").length === 2) {
    [host = "", portText] = trimmed.split(":");
    if (!/^\d{1,5}$/.test(portText ?? "")) return undefined;
  }
  // With more than one colon and no brackets it is an IPv6 literal, which cannot carry a port.
  const port = portText === undefined ? undefined : Number(portText);
  if (port !== undefined && (port < 1 || port > 65_535)) return undefined;
  if (host === "*") return { host: undefined, wildcard: true, ...(port === undefined ? {} : { port }) };
  const wildcard = host.startsWith("*.");
  if (wildcard) host = host.slice(2);
  if (host === "" || host.includes("*")) return undefined;
  let hostname: string;
  try {
    // The URL parser canonicalises the host as it will for requests: IDN to punycode, IPv4 notations.
    hostname = new URL(`http://${host.includes(":") ? `[${host}]` : host}/`).hostname;
  } catch {
    return undefined;
  }
  const normalized = normalizeHost(hostname);
  if (wildcard && normalized.kind !== "name") return undefined;
  return { host: normalized, wildcard, ...(port === undefined ? {} : { port }) };
}

function hostKey(host: NormalizedHost): string {
  return host.kind === "name" ? host.name : host.address;
}

/** Whether `url`'s host (in canonical form) and port match any of `patterns`. */
export function matchesHostPattern(url: URL, patterns: readonly HostPattern[]): boolean {
  const key = hostKey(normalizeHost(url.hostname));
  const port = effectivePort(url);
  return patterns.some((p) => {
    if (p.port !== undefined && p.port !== port) return false;
    if (p.host === undefined) return true;
    const want = hostKey(p.host);
    return p.wildcard ? key.endsWith(`.${want}`) : key === want;
  });
}

function effectivePort(url: URL): number {
  if (url.port) return Number(url.port);
  return url.protocol === "https:" ? 443 : 80;
}
