/**
 * Server-side request forgery guard for backends that make requests on behalf of a model.
 *
 * A host name says nothing about where a connection goes, so the check is on addresses: every
 * address a name resolves to is classified, and one address outside public unicast space refuses
 * the whole name (a record set that mixes a public and an internal address is an attack, not a
 * misconfiguration). The addresses that passed are then the only ones the connection may use
 * (`pinnedLookup`), so a second DNS answer cannot rebind the name to an internal address. Every
 * notation of an address is reduced to its numeric value before it is classified (addresses.ts).
 *
 * Which hosts a backend may reach at all is config (`allowHosts`, `allowPrivateHosts`): the host
 * patterns at the end of this file.
 */
import { promises as dns, type LookupAddress, type LookupOptions } from "node:dns";
import {
  type AddressVerdict,
  classifyAddress,
  type NormalizedHost,
  normalizeHost,
  type ResolvedAddress,
} from "./addresses.ts";
import { DetailedError, fullMessage, resolutionFailure } from "./network-errors.ts";

export type { ResolvedAddress } from "./addresses.ts";

/** Resolves a host name to all of its addresses. Injectable so tests never touch real DNS. */
export type Resolver = (hostname: string, signal: AbortSignal) => Promise<readonly ResolvedAddress[]>;

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
