/**
 * The console's page, scripts and styles: plain files in ./static next to this module (copied next to
 * the compiled one by the build), read once and served from memory. Only the files found there are
 * served, by exact name: a request names a file, never a path to walk.
 */
import { readdirSync, readFileSync } from "node:fs";
import type { ServerResponse } from "node:http";
import { extname } from "node:path";
import { fileURLToPath } from "node:url";

const STATIC_DIR = fileURLToPath(new URL("./static/", import.meta.url));

const TYPES: Readonly<Record<string, string>> = {
  ".html": "text/html; charset=utf-8",
  ".js": "text/javascript; charset=utf-8",
  ".css": "text/css; charset=utf-8",
  ".svg": "image/svg+xml",
};

/**
 * The page loads nothing from elsewhere and runs no inline script; results may show images and audio
 * a tool returned inline (data: URLs). No other site may frame it.
 */
export const SECURITY_HEADERS: Readonly<Record<string, string>> = {
  "content-security-policy":
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; media-src data:; " +
    "connect-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'",
  "x-content-type-options": "nosniff",
  "referrer-policy": "no-referrer",
  "x-frame-options": "DENY",
};

interface Asset {
  readonly type: string;
  readonly body: Buffer;
}

let assets: ReadonlyMap<string, Asset> | undefined;

function load(): ReadonlyMap<string, Asset> {
  const found = new Map<string, Asset>();
  for (const name of readdirSync(STATIC_DIR)) {
    const type = TYPES[extname(name)];
    if (type !== undefined) found.set(name, { type, body: readFileSync(`${STATIC_DIR}${name}`) });
  }
  if (!found.has("index.html")) {
    throw new Error(
      `the console's files are missing from ${STATIC_DIR}: rebuild the package (npm run build)`,
    );
  }
  return found;
}

/** The file `name` ("index.html", "app.js"…), or undefined when the console has no such file. */
export function asset(name: string): Asset | undefined {
  assets ??= load();
  return assets.get(name);
}

/** Writes one file (GET) or its headers (HEAD). */
export function sendAsset(res: ServerResponse, file: Asset, head: boolean): void {
  res.writeHead(200, {
    ...SECURITY_HEADERS,
    "content-type": file.type,
    "content-length": String(file.body.length),
    // Small files that change with the gateway's version: always revalidated, never stale.
    "cache-control": "no-cache",
  });
  res.end(head ? undefined : file.body);
}
