/**
 * Seeded randomness for tests that must be replayable from a printed seed (fuzzers, crash and
 * corruption loops).
 *
 * mulberry32: small, fast, and good enough to drive tests reproducibly; not for cryptography.
 */

/** A () => [0, 1) generator; the same seed always gives the same sequence. */
export function mulberry32(seed: number): () => number {
  let state = seed >>> 0;
  return () => {
    state = (state + 0x6d2b79f5) >>> 0;
    let t = state;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 2 ** 32;
  };
}

/** A seed from the environment variable `name`, else a fresh one (print it with the run). */
export function seedFrom(name: string): number {
  const fromEnv = Number(process.env[name]);
  return Number.isInteger(fromEnv) && fromEnv >= 0 ? fromEnv : Math.floor(Math.random() * 1_000_000);
}
