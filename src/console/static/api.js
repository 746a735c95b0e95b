/**
 * Talking to the gateway: JSON requests with the signed-in credentials, and the one live stream
 * (Server-Sent Events read with fetch, so that it carries the same Authorization header; it reconnects
 * by itself until it is stopped or refused).
 */

const TOKEN_KEY = "switchboard-console-credentials";

export function credentials() {
  return sessionStorage.getItem(TOKEN_KEY) ?? "";
}

export function setCredentials(value) {
  if (value) sessionStorage.setItem(TOKEN_KEY, value);
  else sessionStorage.removeItem(TOKEN_KEY);
}

function headers(extra = {}) {
  const token = credentials();
  return token ? { ...extra, authorization: `Bearer ${token}` } : extra;
}

export class ApiError extends Error {
  constructor(status, message) {
    super(message);
    this.status = status;
  }
}

async function failure(response) {
  let message = `${response.status} ${response.statusText}`;
  try {
    const body = await response.json();
    const said = body.error_description ?? body.error ?? body.message;
    if (said) message = `${response.status}: ${said}`;
  } catch {
    // not JSON: the status says it
  }
  return new ApiError(response.status, message);
}

export async function getJson(path) {
  const response = await fetch(`/console/api/${path}`, { headers: headers(), cache: "no-store" });
  if (!response.ok) throw await failure(response);
  return response.json();
}

export async function postJson(path, body) {
  const response = await fetch(`/console/api/${path}`, {
    method: "POST",
    headers: headers({ "content-type": "application/json" }),
    body: JSON.stringify(body),
  });
  if (!response.ok) throw await failure(response);
  return response.json();
}

/**
 * Opens the live stream and calls `onEvent(name, data)` for each event, `onStatus(text, ok)` as the
 * connection comes and goes, and `onRefused(error)` when the gateway refuses it (then it stops).
 * Returns the function that closes it.
 */
export function openStream({ onEvent, onStatus, onRefused }) {
  const controller = new AbortController();
  let retryMs = 2000;
  const run = async () => {
    while (!controller.signal.aborted) {
      try {
        const response = await fetch("/console/api/events", {
          headers: headers({ accept: "text/event-stream" }),
          signal: controller.signal,
          cache: "no-store",
        });
        if (response.status === 401 || response.status === 403) {
          onRefused(await failure(response));
          return;
        }
        if (!response.ok || !response.body) throw await failure(response);
        onStatus("live", true);
        await readEvents(response.body, onEvent, (retry) => {
          retryMs = retry;
        });
        onStatus("reconnecting…", false);
      } catch (error) {
        if (controller.signal.aborted) return;
        onStatus(`reconnecting… (${error.message})`, false);
      }
      await new Promise((resolve) => setTimeout(resolve, retryMs));
    }
  };
  run();
  return () => controller.abort();
}

async function readEvents(body, onEvent, onRetry) {
  const reader = body.pipeThrough(new TextDecoderStream()).getReader();
  let buffer = "";
  for (;;) {
    const { value, done } = await reader.read();
    if (done) return;
    buffer += value;
    let end = buffer.indexOf("\n\n");
    while (end >= 0) {
      const block = buffer.slice(0, end);
      buffer = buffer.slice(end + 2);
      dispatch(block, onEvent, onRetry);
      end = buffer.indexOf("\n\n");
    }
  }
}

function dispatch(block, onEvent, onRetry) {
  let name = "message";
  const data = [];
  for (const line of block.split("\n")) {
    if (line.startsWith(":")) continue;
    const colon = line.indexOf(":");
    const field = colon < 0 ? line : line.slice(0, colon);
    const value = colon < 0 ? "" : line.slice(colon + 1).replace(/^ /, "");
    if (field === "event") name = value;
    else if (field === "data") data.push(value);
    else if (field === "retry" && /^\d+$/.test(value)) onRetry(Number(value));
  }
  if (data.length === 0) return;
  onEvent(name, JSON.parse(data.join("\n")));
}
