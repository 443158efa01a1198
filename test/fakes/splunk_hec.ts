import { ReceiverFake, type Answer, type FakeServerOptions, type ReceivedRequest } from '../../agent/demo/fake_http_server.ts';

/**
 * A protocol-faithful Splunk HTTP Event Collector, JSON event endpoint. What it does, and where
 * Splunk says so:
 * - `POST /services/collector/event` (also `/services/collector` and `/services/collector/event/1.0`,
 *   "HTTP Event Collector REST API endpoints"); other paths 404.
 * - Token in `Authorization: Splunk <token>`, or Basic with the token as password ("Format events
 *   for HTTP Event Collector"); missing → 401 code 2, another scheme → 401 code 3, unknown → 403
 *   code 4, disabled → 403 code 1 (status code table of "Troubleshoot HTTP Event Collector").
 * - With indexer acknowledgement (useACK) on: `X-Splunk-Request-Channel` (or `?channel=`) required,
 *   missing → 400 code 10, not a GUID → 400 code 11; a 200 carries an `ackId`.
 * - Body over `maxContentLength` (limits.conf [http_input] max_content_length; counted on the wire,
 *   as sent) → 413. Empty body → 400 code 5. gzip bodies (Content-Encoding) undone by FakeHttpServer.
 * - The body is JSON objects one after another, whitespace between them optional, no array. They
 *   are read in order; the first one that is not a JSON object, lacks `event` (code 12), has a blank
 *   `event` (code 13: "", {}, [] or null), a non-numeric `time` or a non-string host/source/
 *   sourcetype/index (code 6), an index outside the token's allowed list (code 7), a `fields` that
 *   is not flat strings (code 15), or more than `maxEventBytes` of JSON (Splunk's per-event limit,
 *   code 6: signalfx/splunk-otel-collector-chart#696) ends the request with 400 and
 *   `invalid-event-number` = its 0-based position. The events before it are kept (indexed), the
 *   ones after are not read (moby/moby#35862 observed both on a real HEC).
 * - Stricter than Splunk is known to be: an event's bytes must be valid UTF-8 (else code 6).
 * Faults (busy, throttled, reset, slow, down) come from FakeHttpServer.
 */

export const HEC_TOKEN = '8f6b1a2c-3d4e-4f50-8a61-7b8c9d0e1f2a';

/** One event as HEC kept it. */
export interface HecEvent {
  /** `time` exactly as written on the wire (a JSON number's digits, or a string's content); absent: none sent. */
  time?: string;
  host?: string;
  source?: string;
  sourcetype?: string;
  index?: string;
  event: unknown;
  fields?: Record<string, string | string[]>;
  /** Which request (0-based, counting requests that reached the handler) and position in it. */
  request: number;
  position: number;
  /** The event's JSON text as sent. */
  raw: string;
  /** The token and channel it came with. */
  token: string;
  channel?: string;
}

export interface SplunkHecOptions extends FakeServerOptions {
  /** Known tokens and whether they are enabled; default: HEC_TOKEN enabled. */
  tokens?: Record<string, 'enabled' | 'disabled'>;
  /** The token's allowed indexes (an event naming another gets code 7); absent: any index. */
  indexes?: string[];
  /** useACK on for every token: a channel is required and a 200 carries an ackId. */
  ack?: boolean;
  /** limits.conf [http_input] max_content_length; Splunk's default is 838860800 (800 MB). */
  maxContentLength?: number;
  /** Bytes of JSON one event may have; Splunk refuses bigger ones with code 6. */
  maxEventBytes?: number;
}

const GUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i;
const utf8 = new TextDecoder('utf-8', { fatal: true });

/** HEC's answer body for a status code of the table. */
export function hecBody(text: string, code: number, invalidEvent?: number, ackId?: number): string {
  return JSON.stringify({ text, code, ...(invalidEvent !== undefined ? { 'invalid-event-number': invalidEvent } : {}), ...(ackId !== undefined ? { ackId } : {}) });
}

function json(status: number, body: string): Answer {
  return { status, headers: { 'content-type': 'application/json; charset=UTF-8' }, body };
}

/** Why one event is refused: the HEC code and its text. */
type Refusal = { code: number; text: string };
const INVALID: Refusal = { code: 6, text: 'Invalid data format' };

/**
 * The end (exclusive) of the JSON object starting at `start`, found by brackets outside strings;
 * -1 when the body ends first. JSON's structural bytes are ASCII, so UTF-8 never confuses it.
 */
function objectEnd(buf: Buffer, start: number): number {
  let depth = 0;
  let inString = false;
  for (let i = start; i < buf.length; i++) {
    const c = buf[i]!;
    if (inString) {
      if (c === 0x5c) i++;
      else if (c === 0x22) inString = false;
    } else if (c === 0x22) inString = true;
    else if (c === 0x7b || c === 0x5b) depth++;
    else if (c === 0x7d || c === 0x5d) {
      if (--depth === 0) return i + 1;
    }
  }
  return -1;
}

const isWhitespace = (c: number) => c === 0x20 || c === 0x09 || c === 0x0a || c === 0x0d;

export class SplunkHecReceiver extends ReceiverFake {
  /** Every event kept, in arrival order. */
  readonly events: HecEvent[] = [];
  /** Every answer given by the handler (not the injected faults), in order. */
  readonly answers: { status: number; body: string }[] = [];
  private readonly opts: SplunkHecOptions;
  private handled = 0;
  private nextAck = 0;

  private constructor(opts: SplunkHecOptions) {
    super();
    this.opts = opts;
  }

  static start(opts: SplunkHecOptions = {}): Promise<SplunkHecReceiver> {
    return new SplunkHecReceiver(opts).listen(opts);
  }

  /** The next `times` requests get 503 code 9 "Server is busy", with Retry-After when given. */
  busy(times = 1, retryAfter?: string): void {
    this.server.inject({ status: 503, body: hecBody('Server is busy', 9), headers: { 'content-type': 'application/json', ...(retryAfter ? { 'retry-after': retryAfter } : {}) } }, times);
  }

  /** The next `times` requests get 429, as a rate-limiting proxy in front of HEC answers. */
  throttle(times = 1, retryAfter?: string): void {
    this.server.inject({ status: 429, body: 'Too Many Requests', headers: retryAfter ? { 'retry-after': retryAfter } : {} }, times);
  }

  protected handle(req: ReceivedRequest): Answer {
    const answer = this.answer(req);
    this.answers.push({ status: answer.status, body: String(answer.body ?? '') });
    return answer;
  }

  private answer(req: ReceivedRequest): Answer {
    const request = this.handled++;
    const url = new URL(req.path, 'http://hec');
    if (!/^\/services\/collector(\/event(\/1\.0)?)?\/?$/.test(url.pathname)) return json(404, JSON.stringify({ text: 'The requested URL was not found on this server.', code: 404 }));
    if (req.method !== 'POST') return json(405, JSON.stringify({ text: 'Method Not Allowed', code: 405 }));

    const tokens = this.opts.tokens ?? { [HEC_TOKEN]: 'enabled' };
    const auth = req.headers['authorization'];
    if (auth === undefined) return json(401, hecBody('Token is required', 2));
    let token: string | undefined;
    const m = /^(\S+)\s+(.+)$/.exec(auth);
    if (m && m[1]!.toLowerCase() === 'splunk') token = m[2]!.trim();
    else if (m && m[1]!.toLowerCase() === 'basic') token = Buffer.from(m[2]!, 'base64').toString('utf8').split(':').slice(1).join(':');
    if (token === undefined) return json(401, hecBody('Invalid authorization', 3));
    if (tokens[token] === undefined) return json(403, hecBody('Invalid token', 4));
    if (tokens[token] === 'disabled') return json(403, hecBody('Token disabled', 1));

    const channelHeader = req.headers['x-splunk-request-channel'];
    const channel = (Array.isArray(channelHeader) ? channelHeader[0] : channelHeader) ?? url.searchParams.get('channel') ?? undefined;
    if (this.opts.ack) {
      if (channel === undefined) return json(400, hecBody('Data channel is missing', 10));
      if (!GUID.test(channel)) return json(400, hecBody('Invalid data channel', 11));
    }
    const max = this.opts.maxContentLength ?? 838_860_800;
    if (req.wireBytes > max) return { status: 413, headers: { 'content-type': 'text/plain' }, body: `Content-Length of ${req.wireBytes} too large (maximum is ${max})` };

    const buf = req.body;
    let pos = 0;
    let position = 0;
    let seen = false;
    for (;;) {
      while (pos < buf.length && isWhitespace(buf[pos]!)) pos++;
      if (pos >= buf.length) break;
      seen = true;
      const end = buf[pos] === 0x7b ? objectEnd(buf, pos) : -1;
      const refusal = end < 0 ? INVALID : this.take(buf.subarray(pos, end), { request, position, token, channel });
      if (refusal) return json(400, hecBody(refusal.text, refusal.code, position));
      pos = end;
      position++;
    }
    if (!seen) return json(400, hecBody('No data', 5));
    return json(200, hecBody('Success', 0, undefined, this.opts.ack ? this.nextAck++ : undefined));
  }

  /** Validates one event as HEC does and keeps it; the refusal when it is not acceptable. */
  private take(bytes: Buffer, at: { request: number; position: number; token: string; channel: string | undefined }): Refusal | undefined {
    if (bytes.length > (this.opts.maxEventBytes ?? Infinity)) return INVALID;
    let raw: string;
    let e: Record<string, unknown>;
    // The reviver sees every `time` key at every depth; only the top-level object's is the envelope's.
    const timeSource = new Map<object, string>();
    try {
      raw = utf8.decode(bytes);
      e = JSON.parse(raw, function (this: object, key: string, value: unknown, ctx?: { source?: string }) {
        if (key === 'time' && ctx?.source !== undefined) timeSource.set(this, ctx.source);
        return value;
      } as (key: string, value: unknown) => unknown) as Record<string, unknown>;
    } catch {
      return INVALID;
    }
    if (!('event' in e)) return { code: 12, text: 'Event field is required' };
    const ev = e.event;
    if (ev === null || ev === '' || (Array.isArray(ev) && ev.length === 0) || (typeof ev === 'object' && !Array.isArray(ev) && Object.keys(ev).length === 0))
      return { code: 13, text: 'Event field cannot be blank' };
    let time: string | undefined;
    if (e.time !== undefined) {
      if (typeof e.time === 'number') time = timeSource.get(e);
      else if (typeof e.time === 'string' && /^\d+(\.\d+)?$/.test(e.time)) time = e.time;
      else return INVALID;
    }
    for (const k of ['host', 'source', 'sourcetype', 'index'] as const) if (e[k] !== undefined && typeof e[k] !== 'string') return INVALID;
    const index = e.index as string | undefined;
    // No index: the token's default index, which is always one it may write to.
    if (index !== undefined && this.opts.indexes && !this.opts.indexes.includes(index)) return { code: 7, text: 'Incorrect index' };
    let fields: Record<string, string | string[]> | undefined;
    if (e.fields !== undefined) {
      const f = e.fields;
      const flat = (v: unknown) => typeof v === 'string' || typeof v === 'number';
      if (!f || typeof f !== 'object' || Array.isArray(f) || !Object.values(f).every((v) => flat(v) || (Array.isArray(v) && v.every(flat))))
        return { code: 15, text: 'Error in handling indexed fields' };
      fields = f as Record<string, string | string[]>;
    }
    this.events.push({
      ...(time !== undefined ? { time } : {}),
      ...(e.host !== undefined ? { host: e.host as string } : {}),
      ...(e.source !== undefined ? { source: e.source as string } : {}),
      ...(e.sourcetype !== undefined ? { sourcetype: e.sourcetype as string } : {}),
      ...(index !== undefined ? { index } : {}),
      event: ev,
      ...(fields ? { fields } : {}),
      request: at.request,
      position: at.position,
      raw,
      token: at.token,
      ...(at.channel !== undefined ? { channel: at.channel } : {}),
    });
    return undefined;
  }
}
