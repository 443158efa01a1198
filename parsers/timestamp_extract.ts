/**
 * The time an app wrote into its own record (`"ts":1763719204.512`, `"@timestamp":"2026-…"`),
 * optionally used as the record's timestamp instead of the runtime's. The runtime's time is when
 * the line reached the log file, usually within a millisecond of the app's; the app's can be
 * better (buffered writers, a replayed backlog) or worse (a wrong container clock), which is why
 * it is opt-in.
 */
import { normalizeRfc3339 } from './timestamp.ts';

/** Read in this order; the first that holds a usable time wins. */
export const TIMESTAMP_FIELDS: readonly string[] = ['time', 'ts', 'timestamp', '@timestamp'];

function isDigit(c: number): boolean {
  return c >= 48 && c <= 57;
}

const ZEROS = '000000000';

/**
 * Unix time as decimal text, `<digits>[.<digits>]`, unit by magnitude: 9-11 integer digits are
 * seconds, 12-14 milliseconds, 15-17 microseconds, 18-19 nanoseconds (for times from 1973 to 2286).
 * Shorter numbers are refused rather than read as 1970: a field named `time` holding `35` is a
 * duration far more often than a timestamp. Digits are moved as text, so nanoseconds survive.
 */
function fromEpochText(text: string): string | undefined {
  const dot = text.indexOf('.');
  const intEnd = dot < 0 ? text.length : dot;
  if (intEnd === 0 || (dot >= 0 && dot === text.length - 1)) return undefined;
  for (let i = 0; i < text.length; i++) {
    if (i !== dot && !isDigit(text.charCodeAt(i))) return undefined;
  }
  let unit: number;
  if (intEnd >= 9 && intEnd <= 11) unit = 0;
  else if (intEnd >= 12 && intEnd <= 14) unit = 3;
  else if (intEnd >= 15 && intEnd <= 17) unit = 6;
  else if (intEnd >= 18 && intEnd <= 19) unit = 9;
  else return undefined;
  const secondsEnd = intEnd - unit;
  const subsecond = text.slice(secondsEnd, intEnd) + (dot < 0 ? '' : text.slice(dot + 1));
  const fraction = subsecond.length >= 9 ? subsecond.slice(0, 9) : subsecond + ZEROS.slice(subsecond.length);
  const iso = new Date(Number(text.slice(0, secondsEnd)) * 1000).toISOString();
  if (iso.length !== 24) return undefined;
  return iso.slice(0, 19) + '.' + fraction + 'Z';
}

/**
 * RFC 3339 as timestamp.ts parses it, plus the near misses apps write: a space or `t` for `T`, a
 * lower-case `z`, a `+hhmm` offset. A time without a zone is refused, not guessed: the container's
 * zone is unknown here, and the runtime's own timestamp is then the better value.
 */
function fromDateText(text: string): string | undefined {
  let s = text;
  const sep = s.charCodeAt(10);
  if (sep === 32 || sep === 116 /* t */) s = s.slice(0, 10) + 'T' + s.slice(11);
  const n = s.length;
  const last = s.charCodeAt(n - 1);
  if (last === 122 /* z */) {
    s = s.slice(0, n - 1) + 'Z';
  } else if (isDigit(last) && (s.charCodeAt(n - 5) === 43 || s.charCodeAt(n - 5) === 45) && isDigit(s.charCodeAt(n - 4))) {
    s = s.slice(0, n - 2) + ':' + s.slice(n - 2);
  }
  return normalizeRfc3339(s);
}

/** A time value in any of the forms above, normalised (`2026-11-21T10:00:00.123456789Z`), or undefined. */
export function timestampFromValue(value: unknown): string | undefined {
  if (typeof value === 'string') {
    if (value.length < 9 || value.length > 40 || !isDigit(value.charCodeAt(0))) return undefined;
    return value.charCodeAt(4) === 45 /* - */ ? fromDateText(value) : fromEpochText(value);
  }
  if (typeof value === 'number') {
    // The shortest text that reads back as this number: what the app wrote, up to the float's
    // precision (nanoseconds as a JSON number are already rounded to ~256 ns by JSON.parse).
    if (!Number.isFinite(value) || value < 0) return undefined;
    const text = String(value);
    return text.includes('e') ? undefined : fromEpochText(text);
  }
  return undefined;
}

/**
 * The first of `fields` in a parsed body that holds a usable time, with the field's name (so the
 * caller can drop it from the body if so configured), or undefined.
 */
export function extractTimestamp(
  body: Readonly<Record<string, unknown>>,
  fields: readonly string[] = TIMESTAMP_FIELDS,
): { field: string; timestamp: string } | undefined {
  for (const field of fields) {
    const v = body[field];
    if (v === undefined) continue;
    const timestamp = timestampFromValue(v);
    if (timestamp !== undefined) return { field, timestamp };
  }
  return undefined;
}
