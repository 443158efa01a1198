import { STATUS_CODES } from 'node:http';
import { z } from 'zod';
import type { TargetNeeds } from '../agent/config/target_check.ts';
import { redactUrl } from '../agent/redact.ts';
import type { AttributeValue, Attributes, LogRecord } from '../agent/record.ts';
import { outputCommon } from './common_config.ts';
import { bodyExcerpt, errorForStatus, FileSecret, gzipBody, httpClientKeys, outputClient, tlsFiles, type HttpClient, type HttpResponse } from './http_client.ts';
import { NdjsonEncoder } from './ndjson.ts';
import { PermanentError, RetryableError, type Output, type OutputContext, type RecordFailure, type SendResult } from './output.ts';

/**
 * `type: splunk_hec`: Splunk's HTTP Event Collector, JSON event protocol ("Format events for HTTP
 * Event Collector"): `POST /services/collector/event`, `Authorization: Splunk <token>`, a body of
 * JSON event objects one after another (no array), each
 * `{"time","host","source","sourcetype","index","fields","event"}`.
 *
 * Answers ("Troubleshoot HTTP Event Collector", status code table) are told apart by HTTP status
 * and HEC `code`; see `classify`. HEC reads a batch in order and stops at the first event it
 * cannot take, answering 400 with `invalid-event-number` (0-based): the events before it are
 * indexed, the rest are not (moby/moby#35862 shows it on a real HEC), which becomes `failed[]`.
 *
 * Indexer acknowledgement (useACK) is not used: /services/collector/ack is never polled. A 200
 * therefore means what Splunk's "About HTTP Event Collector Indexer Acknowledgment" says it means
 * without acks: the data "appears to be valid" and was queued, "before the event data enters the
 * processing pipeline"; a Splunk-side crash after that can still lose it.
 */

/**
 * Default indexed fields: who wrote the line, bounded per node (one value per pod and container).
 * The node is not among them: it is the event's `host`, which Splunk indexes anyway.
 */
export const DEFAULT_FIELDS = [
  'k8s.namespace.name',
  'k8s.pod.name',
  'k8s.container.name',
  'k8s.deployment.name',
  'k8s.statefulset.name',
  'k8s.daemonset.name',
  'k8s.job.name',
  'k8s.cronjob.name',
] as const;
/** Every indexed field costs index space on every event, so the list is capped. */
const MAX_FIELDS = 32;

const GUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i;

/** A token_file that cannot be read is told by the error's code (ENOENT). */
function fsErrorCode(e: unknown): string {
  return (e as NodeJS.ErrnoException).code ?? (e as Error).message;
}

export const splunkHecConfig = z
  .strictObject({
    type: z.literal('splunk_hec'),
    ...outputCommon,
    /** HEC base URL (https://splunk:8088); /services/collector/event is added unless the URL already ends in it. */
    endpoint: httpClientKeys.endpoint,
    tls: httpClientKeys.tls,
    headers: httpClientKeys.headers,
    timeout: httpClientKeys.timeout,
    token: z.string().min(1).optional(),
    /** Read at start and again at most every 60 s, so a rotated Secret is picked up. */
    token_file: z.string().min(1).optional(),
    /** Omitted: the token's default index. */
    index: z.string().min(1).optional(),
    sourcetype: z.string().min(1).default('kube:container'),
    /** Record attribute (then resource attribute) keys tried in order for `source`; none found: the token's default source. */
    source_keys: z.array(z.string().min(1)).max(8).default(['log.file.path', 'service.name']),
    /** Attribute keys sent as indexed fields, under the same names. */
    fields: z
      .array(z.string().min(1))
      .max(MAX_FIELDS, { message: `at most ${MAX_FIELDS} indexed fields: each one is stored with every event` })
      .default([...DEFAULT_FIELDS]),
    /** `body`: the record's body (string or object); `record`: design.md's whole record. */
    event_format: z.enum(['body', 'record']).default('body'),
    compression: z.enum(['none', 'gzip']).default('gzip'),
    /** X-Splunk-Request-Channel, a GUID; HEC requires one when the token has indexer acknowledgement on. */
    channel: z.string().regex(GUID, { message: 'expected a GUID like 0a1b2c3d-4e5f-4a6b-8c7d-9e0f1a2b3c4d' }).optional(),
  })
  .superRefine((c, ctx) => {
    if ((c.token === undefined) === (c.token_file === undefined))
      ctx.addIssue({ code: 'custom', path: [c.token === undefined ? 'token' : 'token_file'], message: 'set exactly one of token and token_file (the HEC token)' });
    for (const h of Object.keys(c.headers)) {
      if (h.toLowerCase() === 'authorization') ctx.addIssue({ code: 'custom', path: ['headers', h], message: 'the HEC token goes in token or token_file' });
    }
  });
export type SplunkHecConfig = z.infer<typeof splunkHecConfig>;

/** The token file, TLS files and the receiver (checked on the node: agent/config/target_check.ts). */
export function splunkHecNeeds(config: SplunkHecConfig): TargetNeeds {
  const files = tlsFiles(config.tls);
  if (config.token_file !== undefined) files.push({ key: 'token_file', path: config.token_file });
  return { files, endpoints: [{ key: 'endpoint', url: config.endpoint, tls: config.tls }] };
}

/** Scratch buffers above this (a batch with a huge record) are let go instead of kept. */
const KEEP_SCRATCH_BYTES = 8 * 1024 * 1024;
const HOST_KEYS = ['k8s.node.name', 'host.name'];

/** The HEC answer body: `{"text":"Success","code":0}`, on errors maybe `invalid-event-number`, with acks `ackId`. */
interface HecAnswer {
  text?: string;
  code?: number;
  'invalid-event-number'?: number;
  ackId?: number;
}

function parseAnswer(body: Buffer): HecAnswer {
  try {
    const v: unknown = JSON.parse(body.toString('utf8'));
    return v && typeof v === 'object' && !Array.isArray(v) ? (v as HecAnswer) : {};
  } catch {
    return {}; // a proxy's HTML page, say: only the status speaks
  }
}

/** Lone surrogates (from a JSON body parsed with `\ud800` escapes) replaced by U+FFFD, keys too. */
function wellFormed(v: unknown): unknown {
  if (typeof v === 'string') return v.toWellFormed();
  if (Array.isArray(v)) return v.map(wellFormed);
  if (v && typeof v === 'object') {
    const out: Record<string, unknown> = {};
    for (const [k, x] of Object.entries(v)) out[k.toWellFormed()] = wellFormed(x);
    return out;
  }
  return v;
}

/**
 * JSON.stringify keeps a lone surrogate as a `\udXXX` escape: valid JSON text, but not a character,
 * and strict JSON parsers refuse it, which would fail the event. Such an escape is rare, and
 * `includes` finds every one (plus the odd literal backslash-u-d, harmlessly redone).
 */
function toJson(v: unknown): string {
  const json = JSON.stringify(v);
  return json.includes('\\ud') ? JSON.stringify(wellFormed(v)) : json;
}

function lookup(keys: readonly string[], first: Attributes, second: Attributes): AttributeValue | undefined {
  for (const k of keys) {
    const v = first[k] ?? second[k];
    if (v !== undefined && v !== '') return v;
  }
  return undefined;
}

function fieldValue(v: AttributeValue): string | string[] {
  if (typeof v === 'string') return v.toWellFormed();
  if (Array.isArray(v)) return v.map((s) => String(s).toWellFormed());
  return String(v);
}

/** HEC refuses an event whose `event` is an empty string or object (code 13); Splunk could not index it anyway. */
function isBlank(body: LogRecord['body']): boolean {
  if (typeof body === 'string') return body === '';
  if (Array.isArray(body)) return body.length === 0;
  for (const _ in body) return false;
  return true;
}

/** The HEC token, from the config or from a file that may be replaced under us (a mounted Secret). */
interface Token {
  get(): string | Promise<string>;
}

function hecToken(token: string | undefined, file: string | undefined): Token {
  if (token !== undefined) return { get: () => token };
  return new FileSecret(file!, 'token_file', (s) => s.trim(), () => Date.now(), fsErrorCode);
}

/** A batch's body: events back to back, and which record each event is when blank records were left out. */
interface Encoded {
  buf: Buffer<ArrayBuffer>;
  length: number;
  events: number;
  /** Record index of each event; absent when every record became an event, in order. */
  map: number[] | undefined;
  blanks: number;
}

export class SplunkHecOutput implements Output {
  readonly name: string;
  private readonly config: SplunkHecConfig;
  private readonly ctx: OutputContext;
  private readonly client: HttpClient;
  private readonly token: Token;
  private readonly path: string;
  private readonly headers: Record<string, string>;
  private readonly ndjson = new NdjsonEncoder();
  /** `"sourcetype":…,"index":…,` once: the same for every event. */
  private readonly constantMeta: string;
  /** host, source and fields of an (attributes, resource) pair, both shared by identity across a file's records. */
  private readonly metaCache = new WeakMap<Attributes, WeakMap<Attributes, string>>();
  private lastAttrs: Attributes | undefined;
  private lastResource: Attributes | undefined;
  private lastMeta = '';
  /** Records of one batch mostly share their minute: its epoch is kept (the NUL start matches no timestamp). */
  private lastMinute = '\u0000';
  private lastMinuteEpoch = 0;
  private lastSecond = -1;
  private lastSecondText = '';
  private readonly scratch: Buffer<ArrayBuffer>[] = [];
  private warnedAck = false;

  constructor(config: SplunkHecConfig, ctx: OutputContext) {
    this.name = ctx.name;
    this.config = config;
    this.ctx = ctx;
    try {
      this.token = hecToken(config.token, config.token_file);
    } catch (e) {
      throw new Error(`output ${ctx.name}: ${(e as Error).message}`, { cause: e });
    }
    // The token goes in HEC's own Authorization header: no auth for the client.
    this.client = outputClient(ctx.name, { ...config, auth: {} });
    // /services/collector is the same endpoint as /services/collector/event, and /event/1.0 too.
    this.path = /\/services\/collector(\/event(\/1\.0)?)?\/?$/.test(new URL(config.endpoint).pathname) ? '' : 'services/collector/event';
    this.headers = { 'content-type': 'application/json' };
    if (config.compression === 'gzip') this.headers['content-encoding'] = 'gzip';
    if (config.channel !== undefined) this.headers['x-splunk-request-channel'] = config.channel;
    this.constantMeta =
      `"sourcetype":${JSON.stringify(config.sourcetype)},` + (config.index !== undefined ? `"index":${JSON.stringify(config.index)},` : '');
  }

  async send(records: readonly LogRecord[], signal: AbortSignal): Promise<SendResult> {
    if (records.length === 0) return { bytes: 0 };
    const enc = this.encode(records, this.scratch.pop() ?? Buffer.allocUnsafeSlow(256 * 1024));
    const rejected = enc.blanks > 0 ? { count: enc.blanks, reason: 'blank event: HEC refuses an empty event field (code 13, "Event field cannot be blank")' } : undefined;
    let held: Buffer<ArrayBuffer> | undefined = enc.buf;
    try {
      if (enc.events === 0) return { bytes: 0, rejected };
      let body: Buffer;
      if (this.config.compression === 'gzip') {
        body = await gzipBody(enc.buf.subarray(0, enc.length));
        this.release(enc.buf);
        held = undefined;
      } else body = enc.buf.subarray(0, enc.length);
      let token: string;
      try {
        token = await this.token.get();
      } catch (e) {
        // Kept retryable: the Secret may be in the middle of being replaced.
        throw new RetryableError(`output ${this.name}: ${(e as Error).message}`);
      }
      const res = await this.client.request({ headers: { ...this.headers, authorization: `Splunk ${token}` }, path: this.path, body, signal });
      const failed = this.classify(res, enc, body.length);
      return { bytes: body.length, ...(failed ? { failed } : {}), ...(rejected ? { rejected } : {}) };
    } finally {
      // Only after the request: undici writes the caller's buffer to the socket without copying it.
      if (held) this.release(held);
    }
  }

  private release(buf: Buffer<ArrayBuffer>): void {
    if (buf.length <= KEEP_SCRATCH_BYTES) this.scratch.push(buf);
  }

  private encode(records: readonly LogRecord[], buf: Buffer<ArrayBuffer>): Encoded {
    let off = 0;
    let events = 0;
    let map: number[] | undefined;
    for (let i = 0; i < records.length; i++) {
      const r = records[i]!;
      if (this.config.event_format === 'body' && isBlank(r.body)) {
        map ??= Array.from({ length: i }, (_, j) => j);
        continue;
      }
      map?.push(i);
      events++;
      const line = this.event(r);
      // A UTF-16 unit never takes more than 3 UTF-8 bytes.
      if (off + line.length * 3 > buf.length) {
        const bigger = Buffer.allocUnsafeSlow(Math.max(buf.length * 2, off + line.length * 3));
        buf.copy(bigger, 0, 0, off);
        buf = bigger;
      }
      off += buf.write(line, off);
    }
    return { buf, length: off, events, map, blanks: records.length - events };
  }

  /** One event object and its newline: per record only the time and the event are serialised. */
  private event(r: LogRecord): string {
    const time = this.epoch(r.timestamp);
    const event = this.config.event_format === 'body' ? toJson(r.body) : this.recordJson(r);
    return (time !== undefined ? '{"time":' + time + ',' : '{') + this.meta(r.attributes, r.resource) + this.constantMeta + '"event":' + event + '}\n';
  }

  private recordJson(r: LogRecord): string {
    const line = this.ndjson.encode(r);
    // The encoder caches attribute JSON by identity; the rare lone surrogate takes the slow path.
    return line.includes('\\ud') ? this.ndjson.encode(wellFormed(r) as LogRecord).slice(0, -1) : line.slice(0, -1);
  }

  private meta(attrs: Attributes, resource: Attributes): string {
    if (attrs === this.lastAttrs && resource === this.lastResource) return this.lastMeta;
    let byAttrs = this.metaCache.get(resource);
    if (!byAttrs) this.metaCache.set(resource, (byAttrs = new WeakMap()));
    let meta = byAttrs.get(attrs);
    if (meta === undefined) {
      meta = '';
      const host = lookup(HOST_KEYS, resource, attrs);
      if (host !== undefined) meta += `"host":${JSON.stringify(String(host).toWellFormed())},`;
      const source = lookup(this.config.source_keys, attrs, resource);
      if (source !== undefined) meta += `"source":${JSON.stringify(String(source).toWellFormed())},`;
      const fields: Record<string, string | string[]> = {};
      let any = false;
      for (const key of this.config.fields) {
        const v = attrs[key] ?? resource[key];
        if (v === undefined || v === '') continue;
        fields[key.toWellFormed()] = fieldValue(v);
        any = true;
      }
      if (any) meta += `"fields":${JSON.stringify(fields)},`;
      byAttrs.set(attrs, meta);
    }
    this.lastAttrs = attrs;
    this.lastResource = resource;
    this.lastMeta = meta;
    return meta;
  }

  /**
   * RFC 3339 nanoseconds → epoch seconds with six decimals, written from the digits, not through a
   * float: Splunk keeps `_time` to the microsecond, and a double at 1.8e9 s resolves ~0.24 µs,
   * so HEC's own parse of six digits lands on the right microsecond. Undefined (HEC stamps the
   * arrival time) when unreadable.
   */
  private epoch(ts: string): string | undefined {
    const end = ts.length - 1;
    // YYYY-MM-DDTHH:MM:SS.f…Z: the minute's epoch is kept, the second added, the digits copied.
    if (end < 20 || ts.charCodeAt(19) !== 0x2e || ts.charCodeAt(end) !== 0x5a /* Z */) return this.slowEpoch(ts);
    const s1 = ts.charCodeAt(17) - 0x30;
    const s2 = ts.charCodeAt(18) - 0x30;
    if (!(s1 >= 0 && s1 <= 5 && s2 >= 0 && s2 <= 9)) return this.slowEpoch(ts);
    if (!ts.startsWith(this.lastMinute)) {
      const minute = ts.slice(0, 17);
      const ms = Date.parse(minute + '00Z');
      if (!(ms >= 0)) return this.slowEpoch(ts);
      this.lastMinute = minute;
      this.lastMinuteEpoch = ms / 1000;
      this.lastSecond = -1;
    }
    const second = s1 * 10 + s2;
    if (second !== this.lastSecond) {
      this.lastSecond = second;
      this.lastSecondText = String(this.lastMinuteEpoch + second) + '.';
    }
    const digits = Math.min(end, 26);
    for (let i = 20; i < digits; i++) {
      const c = ts.charCodeAt(i);
      if (c < 0x30 || c > 0x39) return this.slowEpoch(ts);
    }
    const frac = ts.substring(20, digits);
    return this.lastSecondText + (frac.length === 6 ? frac : frac.padEnd(6, '0'));
  }

  private slowEpoch(ts: string): string | undefined {
    const ms = Date.parse(ts);
    return Number.isNaN(ms) ? undefined : (ms / 1000).toFixed(3);
  }

  /**
   * The answer, by HTTP status and HEC code (Splunk "Troubleshoot HTTP Event Collector"):
   * - 2xx (code 0 Success): accepted (with acks on, also an ackId, which is not polled);
   * - 400 with code 6 Invalid data format, 12 Event field is required, 13 Event field cannot be
   *   blank or 15 Error in handling indexed fields and an `invalid-event-number` N: events before
   *   N indexed, N refused for good, the rest not read (sent again);
   * - 400 code 7 Incorrect index: permanent, naming the index (every event carries the same one,
   *   so HEC refuses at the first);
   * - 400 code 10/11 Data channel is missing / Invalid data channel: permanent, naming `channel`;
   * - other 400 codes (5 No data, and the above without N): permanent;
   * - 401 code 2 Token is required / 3 Invalid authorization, 403 code 1 Token disabled / 4 Invalid
   *   token: permanent, a configuration error, said so;
   * - 404: permanent (no HEC at that URL); 413: permanent (over max_content_length);
   * - 408, 429, 5xx (500 code 8 Internal server error, 503 code 9 Server is busy and the health
   *   codes 18-20 of a full queue): retryable, Retry-After honoured.
   */
  private classify(res: HttpResponse, enc: Encoded, wireBytes: number): RecordFailure[] | undefined {
    const s = res.status;
    if (s >= 200 && s < 300) {
      if (!this.warnedAck && parseAnswer(res.body).ackId !== undefined) {
        this.warnedAck = true;
        this.ctx.log(
          'warn',
          `output ${this.name}: the HEC token has indexer acknowledgement (useACK) on; this output does not poll acknowledgements, so an answer 200 means received and queued by HEC, not indexed`,
        );
      }
      return undefined;
    }
    const a = parseAnswer(res.body);
    const said = a.text !== undefined ? `${a.text} (code ${a.code ?? '?'}, HTTP ${s})` : `HTTP ${s} ${STATUS_CODES[s] ?? ''}: ${bodyExcerpt(res.body)}`.trimEnd();
    const prefix = `output ${this.name}: HEC ${redactUrl(this.client.urlFor(this.path))} answered ${said}`;
    if (s === 401 || s === 403) {
      const what =
        a.code === 1
          ? 'the token is disabled in Splunk: enable it (Settings > Data inputs > HTTP Event Collector) or use another'
          : a.code === 3
            ? 'the Authorization header was not understood (is a proxy in between replacing it?)'
            : `the token was refused: check ${this.config.token_file !== undefined ? `token_file ${this.config.token_file}` : 'token'} against the HEC tokens in Splunk`;
      throw new PermanentError(`${prefix}; this is a configuration error, not a data error: ${what}`);
    }
    if (s === 404) throw new PermanentError(`${prefix}; no HEC event endpoint there: set endpoint to HEC's base URL (e.g. https://splunk:8088), the output adds /services/collector/event`);
    if (s === 413)
      throw new PermanentError(
        `${prefix}; the request (${wireBytes} bytes on the wire) is over HEC's max_content_length (limits.conf [http_input]) or a proxy's limit: lower batch.max_bytes (now ${this.config.batch.max_bytes})`,
      );
    if (s === 400) {
      const n = a['invalid-event-number'];
      const perEvent = a.code === 6 || a.code === 12 || a.code === 13 || a.code === 15;
      if (perEvent && Number.isInteger(n) && n! >= 0 && n! < enc.events) return this.partial(n!, a, enc);
      if (a.code === 7)
        throw new PermanentError(
          `${prefix}; ${this.config.index !== undefined ? `index ${JSON.stringify(this.config.index)}` : "the token's default index"} does not exist or is not among the token's allowed indexes: fix index, or the token's Allowed Indexes in Splunk`,
        );
      if (a.code === 10 || a.code === 11)
        throw new PermanentError(
          `${prefix}; the token has indexer acknowledgement (useACK) on, which needs channel set to a GUID (now ${this.config.channel ?? 'not set'}); this output does not poll acknowledgements, so turning useACK off for this token loses nothing it offers`,
        );
      throw new PermanentError(prefix);
    }
    // 408, 429, 5xx retryable with Retry-After; anything else permanent.
    const err = errorForStatus(this.name, res)!;
    if (a.text !== undefined) err.message = prefix;
    throw err;
  }

  private partial(n: number, a: HecAnswer, enc: Encoded): RecordFailure[] {
    const at = (i: number) => (enc.map ? enc.map[i]! : i);
    // Stable across batches: the pipeline groups refused records by reason.
    const failed: RecordFailure[] = [{ index: at(n), retryable: false, reason: `HEC refused the event: ${a.text ?? 'invalid'} (code ${a.code})` }];
    const later = `not read: HEC stops at the first event it refuses (${a.text ?? 'invalid'}, code ${a.code})`;
    for (let i = n + 1; i < enc.events; i++) failed.push({ index: at(i), retryable: true, reason: later });
    return failed;
  }

  async flush(): Promise<void> {}

  close(): Promise<void> {
    return this.client.close();
  }
}

export function createSplunkHecOutput(config: SplunkHecConfig, ctx: OutputContext): Output {
  return new SplunkHecOutput(config, ctx);
}
