/**
 * Severity, for the record's `severity_text` and `severity_number`, from what apps write: a level
 * field of a parsed body, or the level word near the start of a text line.
 *
 * Numbers follow the OpenTelemetry log data model: TRACE 1-4, DEBUG 5-8, INFO 9-12, WARN 13-16,
 * ERROR 17-20, FATAL 21-24. `text` is the level as the source wrote it (`warning`, `WARN`, `Error`,
 * pino's `30`, klog's `E`), which is what the data model asks `SeverityText` to be. Outputs whose
 * receivers key on a level (a Loki label, Elasticsearch's `log.level`) use `severityLevel` of the
 * number instead: one of six names, whatever each app's own spelling.
 */

export interface Severity {
  text: string;
  number: number;
}

/**
 * Level words, lower case, and their numbers. From: syslog (RFC 5424 names and their abbreviations),
 * log4j/logback, java.util.logging (`severe`, `fine`, `finest`…), Python (`critical`), .NET and
 * Serilog (`Information`, `Verbose`, `Critical`), Go's zap (`dpanic`, `panic`) and logrus,
 * zerolog's console abbreviations (`TRC` `DBG` `INF` `WRN` `ERR` `FTL` `PNC`). `critical` is FATAL,
 * as the OpenTelemetry Python and .NET SDKs map it; syslog's alert and emergency rank above it.
 */
const WORDS: ReadonlyMap<string, number> = new Map([
  ['trace', 1],
  ['trc', 1],
  ['finest', 1],
  ['finer', 2],
  ['verbose', 1],
  ['vrb', 1],
  ['debug', 5],
  ['dbg', 5],
  ['fine', 5],
  ['config', 6],
  ['info', 9],
  ['inf', 9],
  ['information', 9],
  ['informational', 9],
  ['notice', 10],
  ['warn', 13],
  ['warning', 13],
  ['wrn', 13],
  ['error', 17],
  ['err', 17],
  ['severe', 17],
  ['dpanic', 17],
  ['critical', 21],
  ['crit', 21],
  ['fatal', 21],
  ['ftl', 21],
  ['panic', 21],
  ['pnc', 21],
  ['alert', 21],
  ['emerg', 21],
  ['emergency', 23],
]);

/** klog / glog letters, and what a one-letter level field holds (`"level":"W"`). */
function fromLetter(c: number): number {
  switch (c | 0x20 /* lower case */) {
    case 116 /* t */:
      return 1;
    case 100 /* d */:
      return 5;
    case 105 /* i */:
      return 9;
    case 119 /* w */:
      return 13;
    case 101 /* e */:
      return 17;
    case 102 /* f */:
      return 21;
    default:
      return 0;
  }
}

const SHORT_NAMES = ['TRACE', 'DEBUG', 'INFO', 'WARN', 'ERROR', 'FATAL'];

/** The six levels, in order: what `severityLevel` gives. */
export const LEVELS = ['trace', 'debug', 'info', 'warn', 'error', 'fatal'] as const;
export type Level = (typeof LEVELS)[number];

/**
 * The level of a severity number for receivers that key on a level: 1-4 `trace`, 5-8 `debug`,
 * 9-12 `info`, 13-16 `warn`, 17-20 `error`, 21-24 `fatal` (the data model's short names without
 * their 2-4 suffix, in lower case, as Loki's `detected_level` and ECS write them); undefined for
 * a record without a number. Six values at most: safe as a Loki label.
 */
export function severityLevel(n: number | undefined): Level | undefined {
  if (n === undefined || n < 1 || n > 24) return undefined;
  return LEVELS[(n - 1) >> 2];
}

/** The data model's short name of a severity number: `INFO`, `INFO2`… */
export function severityShortName(n: number): string {
  const base = SHORT_NAMES[(n - 1) >> 2]!;
  const step = (n - 1) & 3;
  return step === 0 ? base : base + (step + 1);
}

/**
 * syslog severity 0-7 (GELF's `level`, journald's PRIORITY) to OpenTelemetry, as log-formats.md
 * §4.3 fixes it: 0-2 FATAL, 3 ERROR, 4 WARN, 5 INFO2 (notice), 6 INFO, 7 DEBUG. One table for every
 * source, so a journal entry and a JSON `level: 2` get the same severity.
 */
const SYSLOG = [21, 21, 21, 17, 13, 10, 9, 5];

/** The severity of a syslog level 0-7; undefined for anything else. */
export function severityFromSyslog(level: number): Severity | undefined {
  const n = SYSLOG[level];
  return n === undefined ? undefined : { text: severityShortName(n), number: n };
}

/**
 * A numeric level: 0-7 is syslog (GELF, journald's PRIORITY), 10-60 bunyan and pino (10 trace, 20
 * debug, 30 info, 40 warn, 50 error, 60 fatal; custom levels in between take their band). Other
 * numbers are undefined: .NET's 0-6 and Python's 10-50 `levelno` also exist, but they come in
 * fields of their own names, which are not read.
 */
function fromNumber(v: number): Severity | undefined {
  if (!Number.isInteger(v)) return undefined;
  let n: number;
  if (v >= 0 && v <= 7) n = SYSLOG[v]!;
  else if (v >= 10 && v <= 60) n = v === 60 ? 21 : 1 + 4 * (Math.floor(v / 10) - 1);
  else return undefined;
  return { text: String(v), number: n };
}

/** Severity from one level value: a word in any case, a letter, or a number (also as a string). */
export function severityFromValue(value: unknown): Severity | undefined {
  if (typeof value === 'number') return fromNumber(value);
  if (typeof value !== 'string') return undefined;
  const len = value.length;
  if (len === 0 || len > 13) return undefined;
  const c0 = value.charCodeAt(0);
  if (c0 >= 48 && c0 <= 57) {
    for (let i = 1; i < len; i++) {
      const c = value.charCodeAt(i);
      if (c < 48 || c > 57) return undefined;
    }
    const s = fromNumber(Number(value));
    return s && { text: value, number: s.number };
  }
  if (len === 1) {
    const n = fromLetter(c0);
    return n === 0 ? undefined : { text: value, number: n };
  }
  const n = WORDS.get(value.toLowerCase());
  return n === undefined ? undefined : { text: value, number: n };
}

/**
 * The fields read, first present and recognised wins: the common names (`level` for pino, bunyan,
 * zap, logrus, slog; `severity` for Google Cloud; `levelname` for Python's JSON formatters;
 * `log.level` for ECS, flat or nested; `@l` for Serilog's compact JSON) and their capitalised .NET
 * forms. Serilog leaves `@l` out for Information; that is not guessed.
 */
export const SEVERITY_FIELDS: readonly string[] = [
  'level',
  'severity',
  'lvl',
  'loglevel',
  'log_level',
  'log.level',
  'levelname',
  '@l',
  'Level',
  'Severity',
  'LogLevel',
];

/** Severity from a parsed body's level field, or undefined when none is present and recognised. */
export function severityFromFields(body: Readonly<Record<string, unknown>>): Severity | undefined {
  for (const field of SEVERITY_FIELDS) {
    const v = body[field];
    if (v === undefined) continue;
    const s = severityFromValue(v);
    if (s !== undefined) return s;
  }
  const log = body['log'];
  if (typeof log === 'object' && log !== null && !Array.isArray(log)) {
    return severityFromValue((log as Record<string, unknown>)['level']);
  }
  return undefined;
}

function isDigit(c: number): boolean {
  return c >= 48 && c <= 57;
}

function isLetter(c: number): boolean {
  return (c >= 65 && c <= 90) || (c >= 97 && c <= 122);
}

/** End, space, tab, `:`, `,`, `|` or `]` after a level word in capitals. */
function endsBareWord(c: number): boolean {
  return c === -1 || c === 32 || c === 9 || c === 58 || c === 44 || c === 124 || c === 93;
}

function skipSpaces(s: string, i: number): number {
  while (s.charCodeAt(i) === 32 || s.charCodeAt(i) === 9) i++;
  return i;
}

/**
 * Severity from the start of a text line, by position rather than by searching: a word anywhere
 * (`…no error…`) says nothing, and a search would cost a scan per line. Recognised:
 * - klog/glog: `E1121 10:00:00.123456 …` (letter, four digits, space);
 * - after at most two leading tokens that start with a digit (timestamps: `2026-11-21T10:00:00Z`,
 *   `2026-11-21 10:00:00,123`, `10:00AM`; also inside `[`, as Rust's env_logger writes them), a
 *   level word in capitals followed by a space, `:`, `,`, `|`, `]` or the end (`ERROR`, Spring's
 *   `  INFO 1 ---`, Python's `WARNING:root:…`, zerolog's `INF`), or in any case in brackets
 *   (`[warn]`, nginx's `[error]`);
 * - one bracketed token before the level is skipped (log4j's `[main] ERROR`).
 * A lower-case word outside brackets is not taken: `error connecting to db` may well be an error,
 * but `debug mode on` is not a debug message.
 */
export function severityFromText(line: string): Severity | undefined {
  const n = line.length;
  let i = skipSpaces(line, 0);
  const c0 = line.charCodeAt(i);
  if (
    (c0 === 73 /* I */ || c0 === 87 /* W */ || c0 === 69 /* E */ || c0 === 70) /* F */ &&
    isDigit(line.charCodeAt(i + 1)) &&
    isDigit(line.charCodeAt(i + 2)) &&
    isDigit(line.charCodeAt(i + 3)) &&
    isDigit(line.charCodeAt(i + 4)) &&
    line.charCodeAt(i + 5) === 32
  ) {
    const num = fromLetter(c0);
    return { text: line[i]!, number: num };
  }
  for (let k = 0; k < 2; k++) {
    let j = i;
    if (line.charCodeAt(j) === 91 /* [ */) j++;
    if (!isDigit(line.charCodeAt(j))) break;
    const space = line.indexOf(' ', j);
    if (space < 0) return undefined;
    i = skipSpaces(line, space);
  }
  for (let k = 0; k < 2 && i < n; k++) {
    const bracket = line.charCodeAt(i) === 91; /* [ */
    const start = bracket ? i + 1 : i;
    let end = start;
    let upper = true;
    for (let c = line.charCodeAt(end); isLetter(c) && end - start <= 13; c = line.charCodeAt(++end)) {
      if (c >= 97) upper = false;
    }
    if (end > start && end - start <= 13) {
      const t = end === n ? -1 : line.charCodeAt(end);
      const ends = bracket ? t === 93 /* ] */ : upper && endsBareWord(t);
      if (ends) {
        const word = line.slice(start, end);
        const num = WORDS.get(word.toLowerCase());
        if (num !== undefined) return { text: word, number: num };
      }
    }
    if (!bracket) return undefined;
    const close = line.indexOf(']', i);
    if (close < 0) return undefined;
    i = skipSpaces(line, close + 1);
  }
  return undefined;
}
