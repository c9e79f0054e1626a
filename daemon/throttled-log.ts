/**
 * A log line that may repeat as fast as clients can cause it, written at most once per interval.
 *
 * Responsibility: say whether an occurrence gets its line, and how many occurrences since the
 * last line got none, so the line that is written can count them.
 *
 * Invariants: at most one line per `intervalMs`; the first occurrence is always logged; none is
 * lost from the counts (each is either logged or counted in the next logged line).
 */

export class ThrottledLog {
  private lastAt = -Infinity;
  private unlogged = 0;

  constructor(private readonly intervalMs: number, private readonly now: () => number = Date.now) {}

  /** null if this occurrence gets no line (it is counted); otherwise the number of occurrences
   * since the last line that got none, for the line about to be written. */
  take(): number | null {
    const at = this.now();
    if (at - this.lastAt < this.intervalMs) {
      this.unlogged += 1;
      return null;
    }
    const unlogged = this.unlogged;
    this.unlogged = 0;
    this.lastAt = at;
    return unlogged;
  }
}
