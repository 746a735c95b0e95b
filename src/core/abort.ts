/**
 * Stops waiting for `promise` as soon as `signal` aborts, rejecting with `reasonOf(signal)` (the
 * signal's own reason by default). The work itself cannot always be cancelled (a Redis command, a
 * pooled connection being opened), so it runs on; `late` receives what it yields after the caller
 * gave up, so that it can be released instead of leaked.
 */
export function untilAborted<T>(
  promise: Promise<T>,
  signal: AbortSignal,
  options: { readonly reasonOf?: (signal: AbortSignal) => unknown; readonly late?: (value: T) => void } = {},
): Promise<T> {
  const reasonOf = options.reasonOf ?? ((s: AbortSignal) => s.reason);
  const late = options.late;
  if (signal.aborted) {
    // Still observed, so that its failure is never an unhandled rejection.
    promise.then(late ?? (() => undefined), () => undefined);
    return Promise.reject(reasonOf(signal));
  }
  return new Promise<T>((resolve, reject) => {
    let abandoned = false;
    const onAbort = () => {
      abandoned = true;
      reject(reasonOf(signal));
    };
    signal.addEventListener("abort", onAbort, { once: true });
    promise.then(
      (value) => {
        signal.removeEventListener("abort", onAbort);
        if (!abandoned) resolve(value);
        else late?.(value);
      },
      (error: unknown) => {
        signal.removeEventListener("abort", onAbort);
        if (!abandoned) reject(error);
      },
    );
  });
}
