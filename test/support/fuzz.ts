/**
 * fast-check settings shared by the fuzz and property tests: a fixed seed (fast-check prints it with a
 * failure; FUZZ_SEED=<it> replays the inputs), a fixed number of runs times FUZZ_SCALE (default 1, for
 * a longer soak), and failures reported as found, unshrunk, so that a failing run is as quick as a
 * passing one (FUZZ_SHRINK=1 shrinks first).
 */
export const SEED = seedFromEnv();
export const SCALE = Math.max(1, Number.parseInt(process.env.FUZZ_SCALE ?? "1", 10) || 1);

function seedFromEnv(): number {
  const raw = process.env.FUZZ_SEED;
  const parsed = raw === undefined ? Number.NaN : Number.parseInt(raw, 10);
  return Number.isSafeInteger(parsed) ? parsed : 20_261_124;
}

export const params = (numRuns: number) => ({
  numRuns: numRuns * SCALE,
  seed: SEED,
  endOnFailure: process.env.FUZZ_SHRINK !== "1",
  includeErrorInReport: true,
});
