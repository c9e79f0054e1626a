/**
 * Request latency histogram with fixed, logarithmic buckets.
 *
 * Responsibility: record one sample per request in O(1) with no allocation, and answer
 * percentile queries for `stats`. Memory is a fixed array whatever the request rate.
 *
 * Invariants: buckets grow by a factor of 2^(1/8) (about 9%) from 1 µs, so a reported percentile
 * is within ~9% of the true value; samples above the last bucket land in it and `maxMs` keeps
 * the exact maximum.
 */

const BUCKETS_PER_DOUBLING = 8;
const BUCKET_COUNT = BUCKETS_PER_DOUBLING * 40; // 1 µs .. ~2^40 µs: beyond any real latency
const MIN_US = 1;

export interface LatencySnapshot {
  p50Ms: number;
  p90Ms: number;
  p99Ms: number;
  maxMs: number;
  samples: number;
}

export class LatencyHistogram {
  private readonly counts = new Float64Array(BUCKET_COUNT);
  private samples = 0;
  private maxUs = 0;

  record(latencyMs: number): void {
    const us = Math.max(MIN_US, latencyMs * 1000);
    const index = Math.min(BUCKET_COUNT - 1, Math.floor(Math.log2(us / MIN_US) * BUCKETS_PER_DOUBLING));
    this.counts[index] += 1;
    this.samples += 1;
    if (us > this.maxUs) this.maxUs = us;
  }

  /** Upper edge of the bucket holding quantile q, in milliseconds. */
  private quantileMs(q: number): number {
    if (this.samples === 0) return 0;
    const rank = Math.ceil(q * this.samples);
    let seen = 0;
    for (let i = 0; i < BUCKET_COUNT; i++) {
      seen += this.counts[i];
      if (seen >= rank) return Math.min(this.maxUs, MIN_US * 2 ** ((i + 1) / BUCKETS_PER_DOUBLING)) / 1000;
    }
    return this.maxUs / 1000;
  }

  snapshot(): LatencySnapshot {
    return {
      p50Ms: round3(this.quantileMs(0.5)),
      p90Ms: round3(this.quantileMs(0.9)),
      p99Ms: round3(this.quantileMs(0.99)),
      maxMs: round3(this.maxUs / 1000),
      samples: this.samples,
    };
  }
}

function round3(value: number): number {
  return Math.round(value * 1000) / 1000;
}
