/**
 * Key choosers for the YCSB-style mixes: a seeded PRNG, uniform, and zipfian.
 *
 * Responsibility: the standard YCSB zipfian generator (Gray et al., "Quickly generating
 * billion-record synthetic databases", as in YCSB's ZipfianGenerator), scrambled like YCSB's
 * default `requestdistribution=zipfian` so the hot items are spread over the keyspace instead of
 * all sitting at its start.
 *
 * Invariants:
 * - `next()` returns an integer in [0, n); rank 0 is the most popular item before scrambling.
 * - zeta(n) is computed once per (n, theta) and cached: O(n) once, O(1) per draw.
 * - Everything is seeded, so two runs draw the same key sequence.
 */

/** YCSB's default skew. */
export const ZIPF_THETA = 0.99;

/** mulberry32: small, fast, good enough to pick keys; returns a () => [0, 1) function. */
export function makeRng(seed) {
  let state = seed >>> 0;
  return () => {
    state = (state + 0x6d2b79f5) >>> 0;
    let t = state;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

const zetaCache = new Map();

function zeta(n, theta) {
  const cacheKey = `${n}:${theta}`;
  let sum = zetaCache.get(cacheKey);
  if (sum === undefined) {
    sum = 0;
    for (let i = 1; i <= n; i++) sum += 1 / i ** theta;
    zetaCache.set(cacheKey, sum);
  }
  return sum;
}

/** FNV-1a over the 4 bytes of a 32-bit integer: YCSB scrambles ranks with an FNV hash too. */
function fnv32(value) {
  let hash = 0x811c9dc5;
  for (let i = 0; i < 4; i++) {
    hash ^= (value >>> (i * 8)) & 0xff;
    hash = Math.imul(hash, 0x01000193) >>> 0;
  }
  return hash;
}

export class Zipfian {
  constructor(n, rng, { theta = ZIPF_THETA, scrambled = true } = {}) {
    if (!(n >= 2) || !(theta > 0 && theta < 1)) throw new Error(`zipfian needs n >= 2 and 0 < theta < 1 (n=${n}, theta=${theta})`);
    this.n = n;
    this.rng = rng;
    this.theta = theta;
    this.scrambled = scrambled;
    this.zetan = zeta(n, theta);
    this.alpha = 1 / (1 - theta);
    this.halfPowTheta = 1 + 0.5 ** theta;
    this.eta = (1 - (2 / n) ** (1 - theta)) / (1 - zeta(2, theta) / this.zetan);
  }

  /** The next rank, in [0, n). */
  rank() {
    const u = this.rng();
    const uz = u * this.zetan;
    if (uz < 1) return 0;
    if (uz < this.halfPowTheta) return 1;
    return Math.min(this.n - 1, Math.floor(this.n * (this.eta * u - this.eta + 1) ** this.alpha));
  }

  next() {
    const rank = this.rank();
    return this.scrambled ? fnv32(rank) % this.n : rank;
  }
}
