/** A backend restart that calls made meanwhile wait for (see backend.ts, "a restart is not an outage"). */
import type { GatewayError } from "../../core/errors.ts";

/** A restart underway, which calls wait for: settled when the server is up again or the restart failed. */
export interface Restart {
  readonly done: Promise<void>;
  readonly settle: (failure?: GatewayError) => void;
}

export function newRestart(): Restart {
  let settle!: (failure?: GatewayError) => void;
  const done = new Promise<void>((resolve, reject) => {
    settle = (failure) => (failure ? reject(failure) : resolve());
  });
  // Nobody may be waiting when it fails.
  done.catch(() => undefined);
  return { done, settle };
}
