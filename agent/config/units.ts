/**
 * Sizes and durations (`250ms`, `1s`, `5m`, `1h`).
 *
 * Sizes: plain bytes, binary units `KiB` `MiB` `GiB` (also `Ki` `Mi` `Gi`: powers of 1024) and
 * decimal units `KB` `MB` `GB` (also `K` `M` `G`: powers of 1000), in any case: `64kb`, `1MB`,
 * `1G`, `512Mi`. Decimal as the SI and Kubernetes quantities define them, so `1MB` here is the `1M`
 * of a pod's memory limit; Fluent Bit and Vector users who meant MiB get 4.9% less, never more.
 */

const KB = 1000;
const KIB = 1024;
const SIZE_UNITS: Record<string, number> = {
  '': 1,
  b: 1,
  kib: KIB,
  mib: KIB ** 2,
  gib: KIB ** 3,
  ki: KIB,
  mi: KIB ** 2,
  gi: KIB ** 3,
  kb: KB,
  mb: KB ** 2,
  gb: KB ** 3,
  k: KB,
  m: KB ** 2,
  g: KB ** 3,
};
const DURATION_UNITS: Record<string, number> = { ms: 1, s: 1000, m: 60_000, h: 3_600_000 };

/** Bytes, or undefined when the text is not a size. */
export function parseSize(value: string | number): number | undefined {
  if (typeof value === 'number') return Number.isSafeInteger(value) && value >= 0 ? value : undefined;
  const m = /^\s*(\d+(?:\.\d+)?)\s*([a-zA-Z]*)\s*$/.exec(value);
  if (!m) return undefined;
  const unit = SIZE_UNITS[m[2]!.toLowerCase()];
  if (unit === undefined) return undefined;
  const bytes = Math.round(Number(m[1]) * unit);
  return Number.isSafeInteger(bytes) ? bytes : undefined;
}

/** Milliseconds, or undefined when the text is not a duration. A bare number is not accepted: say the unit. */
export function parseDuration(value: string | number): number | undefined {
  if (typeof value === 'number') return value === 0 ? 0 : undefined;
  const m = /^\s*(\d+(?:\.\d+)?)\s*(ms|s|m|h)\s*$/.exec(value);
  if (!m) return undefined;
  return Math.round(Number(m[1]) * DURATION_UNITS[m[2]!]!);
}

/** A duration in the largest whole unit (`90s` stays `90s`, `120000` ms is `2m`). */
export function formatDuration(ms: number): string {
  if (ms === 0) return '0s';
  if (ms % 3_600_000 === 0) return `${ms / 3_600_000}h`;
  if (ms % 60_000 === 0) return `${ms / 60_000}m`;
  if (ms % 1000 === 0) return `${ms / 1000}s`;
  return `${ms}ms`;
}

/** A size in the largest whole unit, binary first (`1GiB`, `64KiB`), else decimal (`1GB`), else bytes. */
export function formatBytes(bytes: number): string {
  if (bytes >= 1024 ** 3 && bytes % 1024 ** 3 === 0) return `${bytes / 1024 ** 3}GiB`;
  if (bytes >= 1024 ** 2 && bytes % 1024 ** 2 === 0) return `${bytes / 1024 ** 2}MiB`;
  if (bytes >= 1024 && bytes % 1024 === 0) return `${bytes / 1024}KiB`;
  if (bytes >= KB ** 3 && bytes % KB ** 3 === 0) return `${bytes / KB ** 3}GB`;
  if (bytes >= KB ** 2 && bytes % KB ** 2 === 0) return `${bytes / KB ** 2}MB`;
  if (bytes >= KB && bytes % KB === 0) return `${bytes / KB}KB`;
  return `${bytes}`;
}

/** A size for people reading a log line, rounded: `512 B`, `7.9 KiB`, `1.0 MiB`. */
export function formatApproxBytes(bytes: number): string {
  if (bytes < 1024) return `${bytes} B`;
  if (bytes < 1024 ** 2) return `${(bytes / 1024).toFixed(1)} KiB`;
  if (bytes < 1024 ** 3) return `${(bytes / 1024 ** 2).toFixed(1)} MiB`;
  return `${(bytes / 1024 ** 3).toFixed(1)} GiB`;
}
