/**
 * RFC 3339 timestamps as container runtimes write them, normalised to the one form every record
 * carries: UTC with exactly nine fraction digits (`2026-11-21T10:00:00.123456789Z`). Runs once per
 * log line, so parsing is charCodeAt arithmetic and the common UTC shapes never touch Date.
 */

/** ZEROS[n] is n zeros: pads a trimmed fraction (containerd writes Go's RFC3339Nano) to 9 digits. */
const ZEROS = ['', '0', '00', '000', '0000', '00000', '000000', '0000000', '00000000', '000000000'];

/** Date.UTC maps years 0-99 to 1900-1999; shifting by one 400-year Gregorian cycle avoids that. */
const CYCLE_YEARS = 400;
const CYCLE_MS = 146_097 * 86_400_000;

const DAYS_IN_MONTH = [0, 31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31];

// A bad digit poisons any 2- or 4-digit sum so that it comes out negative: one check per field.
function digit(s: string, i: number): number {
  const c = s.charCodeAt(i) - 48;
  return c >= 0 && c <= 9 ? c : -10_000;
}

function d2(s: string, i: number): number {
  return digit(s, i) * 10 + digit(s, i + 1);
}

function d4(s: string, i: number): number {
  return digit(s, i) * 1000 + digit(s, i + 1) * 100 + digit(s, i + 2) * 10 + digit(s, i + 3);
}

function daysInMonth(year: number, month: number): number {
  if (month !== 2) return DAYS_IN_MONTH[month]!;
  return (year % 4 === 0 && year % 100 !== 0) || year % 400 === 0 ? 29 : 28;
}

function utcMillis(year: number, month: number, day: number, hour: number, minute: number, second: number): number {
  return Date.UTC(year + CYCLE_YEARS, month - 1, day, hour, minute, second) - CYCLE_MS;
}

// Nodes whose runtime is not in UTC put the same offset on every line, and a busy container writes
// many lines per second: one remembered conversion skips the Date work for all but the first.
let lastOffsetPrefix = ''; // input up to the seconds
let lastOffsetZone = ''; // input's `±hh:mm`
let lastOffsetSeconds = ''; // output up to the seconds

/**
 * Parses kubelet's lenient layout `2006-01-02T15:04:05.999999999Z07:00`: 0-9 fraction digits, `Z` or
 * `±hh:mm`. Returns `YYYY-MM-DDTHH:MM:SS.nnnnnnnnnZ`, or undefined for anything else, including out of
 * range fields (month 13, Feb 30, hour 24, second 60: Go's parser rejects leap seconds too) and
 * offsets that move the date out of years 0000-9999. The fraction is copied as text, never through
 * a float, so nanoseconds survive exactly.
 */
export function normalizeRfc3339(text: string): string | undefined {
  const n = text.length;
  // Shortest: `2006-01-02T15:04:05Z` (20); longest: 9 fraction digits and `+hh:mm` (35).
  if (n < 20 || n > 35) return undefined;
  if (
    text.charCodeAt(4) !== 45 /* - */ ||
    text.charCodeAt(7) !== 45 ||
    text.charCodeAt(10) !== 84 /* T */ ||
    text.charCodeAt(13) !== 58 /* : */ ||
    text.charCodeAt(16) !== 58
  ) {
    return undefined;
  }
  const year = d4(text, 0);
  const month = d2(text, 5);
  const day = d2(text, 8);
  const hour = d2(text, 11);
  const minute = d2(text, 14);
  const second = d2(text, 17);
  if (year < 0 || month < 1 || month > 12 || day < 1 || hour < 0 || hour > 23) return undefined;
  if (minute < 0 || minute > 59 || second < 0 || second > 59 || day > daysInMonth(year, month)) return undefined;

  let zoneAt = 19;
  let digits = 0;
  if (text.charCodeAt(19) === 46 /* . */) {
    zoneAt = 20;
    for (let c = text.charCodeAt(zoneAt); c >= 48 && c <= 57; c = text.charCodeAt(zoneAt)) zoneAt++;
    digits = zoneAt - 20;
    // Go's parser treats a bare `.` as no fraction and then fails on the `.`; so do we.
    if (digits === 0 || digits > 9) return undefined;
  }

  const zone = text.charCodeAt(zoneAt);
  if (zone === 90 /* Z */) {
    if (zoneAt + 1 !== n) return undefined;
    if (digits === 9) return text;
  } else if (zone === 43 /* + */ || zone === 45 /* - */) {
    if (zoneAt + 6 !== n || text.charCodeAt(zoneAt + 3) !== 58) return undefined;
    const offsetHours = d2(text, zoneAt + 1);
    const offsetMinutes = d2(text, zoneAt + 4);
    if (offsetHours < 0 || offsetHours > 23 || offsetMinutes < 0 || offsetMinutes > 59) return undefined;
    // CRI-O writes `+00:00` on every line of a UTC node: that needs no date math.
    if (offsetHours !== 0 || offsetMinutes !== 0) {
      if (lastOffsetPrefix === '' || !text.startsWith(lastOffsetPrefix) || !text.endsWith(lastOffsetZone)) {
        const sign = zone === 43 ? 1 : -1;
        const ms =
          utcMillis(year, month, day, hour, minute, second) - sign * (offsetHours * 60 + offsetMinutes) * 60_000;
        const iso = new Date(ms).toISOString();
        // Years outside 0000-9999 come out as `±YYYYYY-...`, which the normalised form cannot hold.
        if (iso.length !== 24) return undefined;
        lastOffsetPrefix = text.slice(0, 19);
        lastOffsetZone = text.slice(zoneAt);
        lastOffsetSeconds = iso.slice(0, 19);
      }
      if (digits === 0) return lastOffsetSeconds + '.000000000Z';
      return lastOffsetSeconds + text.slice(19, zoneAt) + ZEROS[9 - digits]! + 'Z';
    }
  } else {
    return undefined;
  }
  // UTC with a short (or no) fraction: keep the text up to the zone and pad.
  if (digits === 0) return text.slice(0, 19) + '.000000000Z';
  return text.slice(0, zoneAt) + ZEROS[9 - digits]! + 'Z';
}

/**
 * Unix time in nanoseconds of a timestamp, for outputs that want integers (OTLP). Accepts anything
 * normalizeRfc3339 accepts and throws a RangeError otherwise: callers pass record timestamps, which
 * were validated when the line was parsed, so a failure here is a bug, not bad input.
 */
export function timestampToUnixNanos(ts: string): bigint {
  const t = normalizeRfc3339(ts);
  if (t === undefined) throw new RangeError(`invalid timestamp ${JSON.stringify(ts)}`);
  const ms = utcMillis(d4(t, 0), d2(t, 5), d2(t, 8), d2(t, 11), d2(t, 14), d2(t, 17));
  const nanos = d4(t, 20) * 100_000 + d4(t, 24) * 10 + digit(t, 28);
  return BigInt(ms / 1000) * 1_000_000_000n + BigInt(nanos);
}

// Observed timestamps are taken per record, and many records share a millisecond.
let lastMillis = Number.NaN;
let lastMillisText = '';

/**
 * Normalised form of a Unix time in milliseconds (sub-millisecond parts are dropped, as Date does).
 * Throws a RangeError for NaN and for times outside years 0000-9999.
 */
export function formatUnixMillis(ms: number): string {
  if (ms === lastMillis) return lastMillisText;
  const iso = new Date(ms).toISOString();
  if (iso.length !== 24) throw new RangeError(`time out of range: ${ms}`);
  lastMillis = ms;
  lastMillisText = iso.slice(0, 23) + '000000Z';
  return lastMillisText;
}
