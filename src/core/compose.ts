import type { CallHandler, Policy } from "./types.ts";

/**
 * Wraps `terminal` in `policies`, first listed outermost: `compose([a, b], h)` is `a(b(h))`, so a call
 * passes through `a`, then `b`, then reaches `h`. The order is pinned by test/unit/compose.test.ts.
 */
export function compose(policies: readonly Policy[], terminal: CallHandler): CallHandler {
  let handler = terminal;
  for (let i = policies.length - 1; i >= 0; i--) {
    handler = (policies[i] as Policy)(handler);
  }
  return handler;
}
