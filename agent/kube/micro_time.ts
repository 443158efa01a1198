/**
 * Kubernetes times with their microseconds: metav1.MicroTime (events.k8s.io `eventTime`,
 * `series.lastObservedTime`, Lease times) carries 6 fraction digits, metav1.Time whole seconds.
 * `Date.parse` keeps milliseconds only; two Events 300 µs apart in one millisecond must still be
 * ordered, so times are epoch milliseconds with the microseconds as the fraction (exact: every epoch
 * µs of this century is an integer below 2^53 when multiplied by 1000).
 */

/** Epoch ms (with µs as the fraction) of an RFC 3339 time; undefined when absent, zero (year 1) or unreadable. */
export function parseKubeTime(v: unknown): number | undefined {
  if (typeof v !== 'string' || !v || v.startsWith('0001-01-01')) return undefined;
  const ms = Date.parse(v);
  if (!Number.isFinite(ms)) return undefined;
  const fraction = /T\d\d:\d\d:\d\d\.(\d+)/.exec(v)?.[1];
  if (!fraction || fraction.length <= 3) return ms;
  return (ms * 1000 + Number(fraction.slice(3, 6).padEnd(3, '0'))) / 1000;
}

/** RFC 3339 with 6 fraction digits (MicroTime) of epoch ms that may carry µs as the fraction. */
export function formatMicroTime(ms: number): string {
  const us = Math.round(ms * 1000);
  const whole = Math.floor(us / 1000);
  return new Date(whole).toISOString().replace(/Z$/, `${String(us - whole * 1000).padStart(3, '0')}Z`);
}
