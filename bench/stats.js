/**
 * Latency histogram and summary statistics for the bench.
 *
 * Responsibility: record per-op latencies cheaply (no allocation per sample), merge histograms
 * from several processes, and answer percentiles; plus the median used to combine rounds.
 *
 * Invariants:
 * - Buckets are log-linear: exact below 2^SUB_BITS ns, then 2^SUB_BITS sub-buckets per power of
 *   two, so any reported percentile is within 1/2^SUB_BITS (~3%) of a recorded value.
 * - `counts` is a plain array of numbers so a histogram crosses process boundaries as JSON and
 *   two histograms merge by adding bucket counts.
 * - Values above the last bucket (~2^POW_MAX ns, about 18 minutes) are clamped into it.
 */

/** Sub-buckets per power of two, as a bit count: 5 → 32 buckets, ~3 % resolution. */
const SUB_BITS = 5;
const SUB_COUNT = 1 << SUB_BITS;
/** Largest power of two tracked, in ns (2^40 ns ≈ 18 min: far beyond any trial). */
const POW_MAX = 40;
const BUCKETS = SUB_COUNT + (POW_MAX - SUB_BITS + 1) * SUB_COUNT;

function bucketOf(ns) {
  if (ns < SUB_COUNT) return ns < 0 ? 0 : Math.floor(ns);
  const exp = Math.min(Math.floor(Math.log2(ns)), POW_MAX);
  const shift = exp - SUB_BITS;
  const sub = Math.min(Math.floor(ns / 2 ** shift) - SUB_COUNT, SUB_COUNT - 1);
  return SUB_COUNT + shift * SUB_COUNT + sub;
}

/** Midpoint (ns) of the values that fall into bucket `index`. */
function valueOf(index) {
  if (index < SUB_COUNT) return index;
  const shift = Math.floor((index - SUB_COUNT) / SUB_COUNT);
  const sub = (index - SUB_COUNT) % SUB_COUNT;
  return (SUB_COUNT + sub + 0.5) * 2 ** shift;
}

export class Histogram {
  constructor(counts) {
    this.counts = counts ? Float64Array.from(counts) : new Float64Array(BUCKETS);
    this.total = this.counts.reduce((a, b) => a + b, 0);
  }

  record(ns) {
    this.counts[bucketOf(ns)]++;
    this.total++;
  }

  reset() {
    this.counts.fill(0);
    this.total = 0;
  }

  merge(other) {
    for (let i = 0; i < BUCKETS; i++) this.counts[i] += other.counts[i];
    this.total += other.total;
    return this;
  }

  /** The latency (ns) at quantile q in 0..1, or NaN without samples. */
  quantileNs(q) {
    if (this.total === 0) return NaN;
    const rank = Math.max(1, Math.ceil(q * this.total));
    let seen = 0;
    for (let i = 0; i < BUCKETS; i++) {
      seen += this.counts[i];
      if (seen >= rank) return valueOf(i);
    }
    return valueOf(BUCKETS - 1);
  }

  toJSON() {
    return Array.from(this.counts);
  }
}

/** Median of the finite numbers in `values` (NaN if none). */
export function median(values) {
  const sorted = values.filter(Number.isFinite).sort((a, b) => a - b);
  if (sorted.length === 0) return NaN;
  const mid = sorted.length >> 1;
  return sorted.length % 2 ? sorted[mid] : (sorted[mid - 1] + sorted[mid]) / 2;
}
