import type { AttributeValue, Attributes, LogRecord } from '../../agent/record.ts';

/**
 * A record as one RFC 5424 SYSLOG-MSG, without framing (transport.ts adds RFC 6587 octet counting):
 *
 *   <PRI>1 TIMESTAMP HOSTNAME APP-NAME PROCID MSGID STRUCTURED-DATA [SP MSG]
 *
 * MSG keeps line feeds: octet counting delimits a message by its length, so a stack trace stays
 * one message (rsyslog stores it whole). This encoder must not be used with non-transparent (LF)
 * framing, which the transport does not offer: there a LF would end the message early.
 * MSG carries no BOM: the RFC makes it optional, and receivers keep it as part of the text
 * (rsyslog's %msg% then starts with U+FEFF). The text is UTF-8 either way: a lone surrogate (a
 * body cut inside an emoji) goes out as U+FFFD. Control characters are sent as they are (RFC
 * 5424 §6.4 allows them; rsyslog escapes them on receipt unless told not to, and always stores
 * NUL as `#000`).
 */

/** RFC 5424 §6.2.1 facility codes; several names for 4, 10, 13-15 circulate, the usual ones are here. */
export const FACILITIES: Readonly<Record<string, number>> = {
  kern: 0,
  user: 1,
  mail: 2,
  daemon: 3,
  auth: 4,
  syslog: 5,
  lpr: 6,
  news: 7,
  uucp: 8,
  cron: 9,
  authpriv: 10,
  ftp: 11,
  ntp: 12,
  security: 13,
  console: 14,
  'solaris-cron': 15,
  local0: 16,
  local1: 17,
  local2: 18,
  local3: 19,
  local4: 20,
  local5: 21,
  local6: 22,
  local7: 23,
};

export const NILVALUE = '-';

/**
 * The SD-ID of the element that carries the Kubernetes identity. An SD-ID of our own must be
 * `name@<private enterprise number>`; the project has no PEN, so the default uses 32473, which
 * RFC 5612 reserves for documentation. Sites with a PEN of their own set `sdId`.
 */
export const DEFAULT_SD_ID = 'k8s@32473';
/** Container logs: the container name; journal records: their SYSLOG_IDENTIFIER (service.name). */
export const DEFAULT_APP_NAME = '{k8s.container.name|service.name}';
/**
 * Container logs: the pod; journal records: the process id. Traditional syslog files show
 * `APP-NAME[PROCID]:` and drop STRUCTURED-DATA, so this keeps the pod visible there.
 */
export const DEFAULT_PROC_ID = '{k8s.pod.name|journald._PID}';
/** rsyslog's default maxMessageSize, and the size RFC 5425 says TLS receivers SHOULD accept. */
export const DEFAULT_MAX_MESSAGE_BYTES = 8192;

export interface Rfc5424Options {
  /** A name from FACILITIES or a code 0-23; default `user` (what container output is: user-level messages). */
  facility?: string | number;
  /** APP-NAME template (see compileTemplate); cut to 48 printable ASCII characters. */
  appName?: string;
  /** PROCID template; cut to 128. */
  procId?: string;
  /** MSGID template; cut to 32. Default `-`. */
  msgId?: string;
  /** HOSTNAME when the resource has neither `k8s.node.name` nor `host.name` (the agent's node name). */
  hostname?: string;
  /** SD-ID of the Kubernetes element; default DEFAULT_SD_ID. */
  sdId?: string;
  /**
   * Default true. False: STRUCTURED-DATA is always NILVALUE, for receivers that show it in the
   * text or mishandle it; namespace and pod then only appear where APP-NAME and PROCID put them.
   */
  structuredData?: boolean;
  /**
   * Longest SYSLOG-MSG in bytes; a longer body is cut at a character boundary (counted in
   * `truncated`). A receiver given more than its limit does worse: rsyslog cuts the frame and
   * turns the rest into junk messages. 0: no limit.
   */
  maxMessageBytes?: number;
}

// --- severity --------------------------------------------------------------------------------

/**
 * OpenTelemetry severity number (1-24, six ranges of four) -> syslog severity. Read back from the
 * mapping journald records get (notice -> INFO2, emerg/alert/crit -> FATAL): INFO2-4 are notice.
 * FATAL becomes crit, not emerg: emerg means "system is unusable", and syslog daemons commonly
 * broadcast it to every terminal, which one container's fatal error does not warrant.
 */
const BY_NUMBER: readonly number[] = [
  6, // 0: unspecified, never looked up (the text or the default decides)
  7, 7, 7, 7, // TRACE
  7, 7, 7, 7, // DEBUG
  6, 5, 5, 5, // INFO, INFO2-4
  4, 4, 4, 4, // WARN
  3, 3, 3, 3, // ERROR
  2, 2, 2, 2, // FATAL
];

/** First severity number of each OTel short name. */
const OTEL_SHORT_NAMES: ReadonlyMap<string, number> = new Map([
  ['trace', 1], ['debug', 5], ['info', 9], ['warn', 13], ['error', 17], ['fatal', 21],
]);

/** Severity texts as loggers write them, lower case. */
const BY_TEXT: ReadonlyMap<string, number> = new Map([
  ['trace', 7], ['debug', 7], ['dbg', 7],
  ['info', 6], ['information', 6], ['informational', 6],
  ['notice', 5],
  ['warn', 4], ['warning', 4],
  ['error', 3], ['err', 3],
  ['crit', 2], ['critical', 2], ['fatal', 2],
  ['alert', 1],
  ['emerg', 0], ['emergency', 0], ['panic', 0],
]);

export const DEFAULT_SEVERITY = 6;

/**
 * The syslog severity (0-7) of a record: a journal entry's own PRIORITY (exact: OTel folds
 * emerg, alert and crit into FATAL), else severity_number, else severity_text, else informational.
 */
export function syslogSeverity(r: LogRecord): number {
  const priority = r.attributes['journald.PRIORITY'];
  if (typeof priority === 'string' && priority.length === 1) {
    const p = priority.charCodeAt(0) - 48;
    if (p >= 0 && p <= 7) return p;
  }
  const n = r.severityNumber;
  if (n !== undefined && n >= 1 && n <= 24) return BY_NUMBER[n | 0]!;
  const text = r.severityText;
  if (text !== undefined && text !== '') {
    const key = text.toLowerCase();
    const s = BY_TEXT.get(key);
    if (s !== undefined) return s;
    // OTel short names with a digit (INFO2, WARN4) go by their number.
    const step = key.charCodeAt(key.length - 1) - 48;
    const base = step >= 1 && step <= 4 ? OTEL_SHORT_NAMES.get(key.slice(0, -1)) : undefined;
    if (base !== undefined) return BY_NUMBER[base + step - 1]!;
  }
  return DEFAULT_SEVERITY;
}

export function facilityCode(facility: string | number): number {
  const code = typeof facility === 'number' ? facility : FACILITIES[facility.toLowerCase()];
  if (code === undefined || !Number.isInteger(code) || code < 0 || code > 23) {
    throw new Error(`syslog facility: expected one of ${Object.keys(FACILITIES).join(', ')} or 0-23, got ${JSON.stringify(facility)}`);
  }
  return code;
}

// --- header fields ---------------------------------------------------------------------------

const RFC3339 = /^(\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2})(?:\.(\d+))?(Z|[+-]\d{2}:\d{2})$/i;

/**
 * RFC 3339 -> RFC 5424 TIMESTAMP: at most 6 fraction digits (nanoseconds cut, not rounded, so
 * a record never moves to the next microsecond or second), upper-case T and Z. The usual input,
 * 30 characters with nine digits and Z, takes the slice; anything unparseable is NILVALUE.
 */
export function syslogTimestamp(ts: string): string {
  if (ts.length === 30 && ts.charCodeAt(19) === 46 /* . */ && ts.charCodeAt(29) === 90 /* Z */ && ts.charCodeAt(10) === 84 /* T */) {
    return ts.slice(0, 26) + 'Z';
  }
  const m = RFC3339.exec(ts);
  if (m === null) return NILVALUE;
  const frac = m[2] === undefined ? '' : '.' + m[2].slice(0, 6);
  return (m[1]! + frac + m[3]!).toUpperCase();
}

const PRINTABLE = /^[\x21-\x7e]+$/;

/**
 * A header field (HOSTNAME, APP-NAME, PROCID, MSGID): 1 to `max` printable US-ASCII characters.
 * Others (space, control, non-ASCII) become `_`, one per UTF-16 unit, so the cut is predictable;
 * empty is NILVALUE.
 */
export function headerField(value: string, max: number): string {
  if (value.length === 0) return NILVALUE;
  if (value.length <= max && PRINTABLE.test(value)) return value;
  let out = '';
  const end = Math.min(value.length, max);
  for (let i = 0; i < end; i++) {
    const c = value.charCodeAt(i);
    out += c >= 0x21 && c <= 0x7e ? value[i] : '_';
  }
  return out;
}

/** SD-PARAM value: `"`, `\` and `]` escaped with a backslash (RFC 5424 §6.3.3); the rest is UTF-8 as is. */
export function escapeSdValue(value: string): string {
  return /["\\\]]/.test(value) ? value.replace(/["\\\]]/g, '\\$&') : value;
}

/** SD-NAME: 1-32 printable US-ASCII except `=`, space, `]` and `"`. */
const SD_NAME = /^[\x21-\x7e]{1,32}$/;
const SD_NAME_FORBIDDEN = /[= \]"]/;

export function validateSdId(id: string): string {
  const at = id.indexOf('@');
  const ok = SD_NAME.test(id) && !SD_NAME_FORBIDDEN.test(id) && at > 0 && /^[0-9]+(\.[0-9]+)*$/.test(id.slice(at + 1));
  if (!ok) throw new Error(`syslog sd_id: expected name@<enterprise number> (at most 32 characters, no space, =, ] or "), got ${JSON.stringify(id)}`);
  return id;
}

/** SD-PARAM name -> resource key; a missing key leaves its parameter out. */
const SD_PARAMS: readonly (readonly [string, string])[] = [
  ['namespace', 'k8s.namespace.name'],
  ['pod', 'k8s.pod.name'],
  ['container', 'k8s.container.name'],
  ['node', 'k8s.node.name'],
];

function text(v: AttributeValue | undefined): string | undefined {
  if (v === undefined) return undefined;
  if (typeof v === 'string') return v;
  if (typeof v === 'object') return v[0];
  return String(v);
}

// --- templates -------------------------------------------------------------------------------

/**
 * `{key}` is replaced by the record's attribute `key`, else its resource attribute `key`;
 * `{a|b}` takes the first of them that is present; other text is kept. Nothing present renders
 * empty (the field then is NILVALUE). Compiled once, so rendering is a few lookups.
 */
export function compileTemplate(template: string): (r: LogRecord) => string {
  const parts: (string | readonly string[])[] = [];
  let i = 0;
  while (i < template.length) {
    const open = template.indexOf('{', i);
    const close = template.indexOf('}', i);
    if (close >= 0 && (open < 0 || close < open)) throw new Error(`syslog template ${JSON.stringify(template)}: "}" without "{"`);
    if (open < 0) {
      parts.push(template.slice(i));
      break;
    }
    if (open > i) parts.push(template.slice(i, open));
    const end = template.indexOf('}', open);
    if (end < 0) throw new Error(`syslog template ${JSON.stringify(template)}: "{" without "}"`);
    const keys = template.slice(open + 1, end).split('|').map((k) => k.trim());
    if (keys.some((k) => k === '' || k.includes('{'))) throw new Error(`syslog template ${JSON.stringify(template)}: empty or nested key in "{...}"`);
    parts.push(keys);
    i = end + 1;
  }
  const lookup = (r: LogRecord, keys: readonly string[]): string => {
    for (const key of keys) {
      const v = text(r.attributes[key] ?? r.resource[key]);
      if (v !== undefined && v !== '') return v;
    }
    return '';
  };
  if (parts.length === 0) return () => '';
  if (parts.length === 1) {
    const only = parts[0]!;
    return typeof only === 'string' ? () => only : (r) => lookup(r, only);
  }
  return (r) => {
    let out = '';
    for (const p of parts) out += typeof p === 'string' ? p : lookup(r, p);
    return out;
  };
}

// --- the encoder -----------------------------------------------------------------------------

/** Cuts a string to at most `maxBytes` of UTF-8 without splitting a character. */
export function cutUtf8(s: string, maxBytes: number): string {
  if (maxBytes <= 0) return '';
  const buf = Buffer.from(s);
  if (buf.length <= maxBytes) return s;
  let end = maxBytes;
  // Step back over continuation bytes (10xxxxxx) to the start of the character that would be split.
  while (end > 0 && (buf[end]! & 0xc0) === 0x80) end--;
  return buf.toString('utf8', 0, end);
}

export class Rfc5424Encoder {
  /** Bodies cut to fit maxMessageBytes since construction, for a metric. */
  truncated = 0;
  /** `<PRI>1 ` for each severity. */
  private readonly pri: readonly string[];
  private readonly appName: (r: LogRecord) => string;
  private readonly procId: (r: LogRecord) => string;
  private readonly msgId: (r: LogRecord) => string;
  private readonly fallbackHost: string;
  private readonly sdId: string;
  private readonly structuredData: boolean;
  private readonly maxBytes: number;
  /** HOSTNAME and STRUCTURED-DATA come from the resource, shared by all records of a file: cached by identity. */
  private readonly byResource = new WeakMap<Attributes, { host: string; sd: string }>();

  constructor(opts: Rfc5424Options = {}) {
    const facility = facilityCode(opts.facility ?? 'user');
    this.pri = Array.from({ length: 8 }, (_, s) => `<${facility * 8 + s}>1 `);
    this.appName = compileTemplate(opts.appName ?? DEFAULT_APP_NAME);
    this.procId = compileTemplate(opts.procId ?? DEFAULT_PROC_ID);
    this.msgId = compileTemplate(opts.msgId ?? NILVALUE);
    this.fallbackHost = headerField(opts.hostname ?? '', 255);
    this.sdId = validateSdId(opts.sdId ?? DEFAULT_SD_ID);
    this.structuredData = opts.structuredData ?? true;
    this.maxBytes = opts.maxMessageBytes ?? DEFAULT_MAX_MESSAGE_BYTES;
  }

  private resourceParts(res: Attributes): { host: string; sd: string } {
    let parts = this.byResource.get(res);
    if (parts === undefined) {
      const node = text(res['k8s.node.name']) ?? text(res['host.name']);
      let params = '';
      if (this.structuredData) {
        for (const [name, key] of SD_PARAMS) {
          const v = text(res[key]);
          if (v !== undefined) params += ` ${name}="${escapeSdValue(v)}"`;
        }
      }
      parts = {
        host: node === undefined || node === '' ? this.fallbackHost : headerField(node, 255),
        sd: params === '' ? NILVALUE : `[${this.sdId}${params}]`,
      };
      this.byResource.set(res, parts);
    }
    return parts;
  }

  /** One SYSLOG-MSG. An empty body leaves MSG out, and the space before it. */
  encode(r: LogRecord): string {
    const { host, sd } = this.resourceParts(r.resource);
    const header =
      this.pri[syslogSeverity(r)]! +
      syslogTimestamp(r.timestamp) +
      ' ' +
      host +
      ' ' +
      headerField(this.appName(r), 48) +
      ' ' +
      headerField(this.procId(r), 128) +
      ' ' +
      headerField(this.msgId(r), 32) +
      ' ' +
      sd;
    let msg = typeof r.body === 'string' ? r.body : JSON.stringify(r.body);
    if (msg.length === 0) return header;
    // A UTF-16 unit never takes more than 3 UTF-8 bytes: most records skip the byte count.
    if (this.maxBytes > 0 && (header.length + 1 + msg.length) * 3 > this.maxBytes) {
      const room = this.maxBytes - Buffer.byteLength(header) - 1;
      if (Buffer.byteLength(msg) > room) {
        msg = cutUtf8(msg, room);
        this.truncated++;
        if (msg.length === 0) return header;
      }
    }
    return header + ' ' + msg;
  }
}
