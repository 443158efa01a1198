import { isUtf8 } from 'node:buffer';
import { createRequire } from 'node:module';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import protobuf from 'protobufjs';
import { ReceiverFake, type Answer, type FakeServerOptions, type ReceivedRequest } from '../../agent/demo/fake_http_server.ts';

/**
 * A protocol-faithful Loki distributor + ingester for the push API (`POST /loki/api/v1/push`).
 *
 * Decoding (grafana/loki pkg/loghttp/push/push.go ParseLokiRequest): `Content-Type:
 * application/json` is the JSON body `{"streams":[{"stream":{…},"values":[["<ns>","line",{…}]]}]}`;
 * anything else is a snappy block-compressed `logproto.PushRequest` (the vendored official
 * outputs/proto/loki/push.proto, decoded with protobufjs). Content-Encoding gzip is undone first
 * (FakeHttpServer), `snappy` is accepted as a no-op, other encodings are refused.
 *
 * Answers, as Loki gives them:
 * - 204 No Content on success (pkg/distributor/http.go).
 * - 401 "no org id" without X-Scope-OrgID when `requireTenant` (auth_enabled; dskit's auth middleware).
 * - 400 with the validation errors as text (pkg/distributor/distributor.go Push, messages from
 *   pkg/validation/validate.go): unparseable labels, no labels, too many label names, duplicate
 *   names, line too long, timestamp too old, structured metadata disallowed / too large / too many.
 *   Loki validates entry by entry and still stores the valid ones: so does the fake.
 * - 400 "entry out of order" (pkg/ingester/stream.go): with `unorderedWrites: false` (Loki before
 *   2.4, or configured so) an entry older than its stream's newest is refused, also across
 *   requests; with unordered writes an entry older than the newest minus max_chunk_age/2 is "too
 *   far behind". An entry equal to the stream's last one in time and line is a duplicate and
 *   dropped silently. The ingester's error wins over validation errors, as in Loki.
 * - 422 for a request without streams.
 * - 429 with Retry-After, 5xx, slow answers and resets are injected (`rateLimit`, `server.inject`),
 *   and so is a push that is never answered (`stallNext`).
 *
 * Every stored entry is kept, with its tenant and parsed labels, for field-by-field comparison.
 */

const PROTO_ROOT = join(dirname(fileURLToPath(import.meta.url)), '..', '..', 'outputs', 'proto');

function loadRoot(): protobuf.Root {
  const root = new protobuf.Root();
  // gogoproto/gogo.proto only adds Go code-generation options; google/protobuf/timestamp.proto is bundled.
  root.resolvePath = (_origin, target) => (target.startsWith('gogoproto/') ? null : join(PROTO_ROOT, target));
  root.loadSync('loki/push.proto');
  root.resolveAll();
  return root;
}

export const lokiRoot = loadRoot();
const PushRequest = lokiRoot.lookupType('logproto.PushRequest');

const snappy = createRequire(import.meta.url)('snappyjs') as { uncompress(input: Uint8Array): Uint8Array };

export interface LabelPair {
  name: string;
  value: string;
}

/** One entry Loki stored. */
export interface ReceivedEntry {
  /** X-Scope-OrgID, or "fake" (Loki's tenant when auth is disabled). */
  tenant: string;
  /** The stream's labels, parsed. */
  labels: Record<string, string>;
  /** The labels string as sent (JSON: made from the `stream` object, names sorted). */
  selector: string;
  /** Unix nanoseconds. */
  timestampNs: bigint;
  line: string;
  structuredMetadata: LabelPair[];
  /** Index into `server.requests` of the push that carried it. */
  request: number;
  encoding: 'protobuf' | 'json';
}

/** One decoded push, as sent (before validation): its streams and how many entries each had. */
export interface ReceivedPush {
  tenant: string;
  encoding: ReceivedEntry['encoding'];
  streams: { selector: string; entries: number }[];
}

export interface LokiReceiverOptions extends FakeServerOptions {
  /** auth_enabled: a push without X-Scope-OrgID is refused 401 "no org id". */
  requireTenant?: boolean;
  /** Loki ≥ 2.4 defaults to true; false is the strict per-stream order of older Lokis. Default false. */
  unorderedWrites?: boolean;
  /** ingester max_chunk_age (default 2h): unordered writes accept entries back to newest − half of it. */
  maxChunkAgeMs?: number;
  /** limits_config.max_line_size in bytes; 0 (default here): no limit. */
  maxLineSize?: number;
  /** limits_config.reject_old_samples_max_age; undefined: old samples accepted. */
  rejectOldSamplesMaxAgeMs?: number;
  /** limits_config.allow_structured_metadata (default true since Loki 3.0). */
  allowStructuredMetadata?: boolean;
  /** limits_config.max_structured_metadata_entries_count (default 128). */
  maxStructuredMetadataEntries?: number;
  /** limits_config.max_structured_metadata_size (default 64KB = 64000 bytes). */
  maxStructuredMetadataSize?: number;
  /** limits_config.max_label_names_per_series (default 15). */
  maxLabelNamesPerSeries?: number;
  now?: () => number;
}

interface DecodedEntry {
  ns: bigint;
  line: string;
  sm: LabelPair[];
}

interface DecodedStream {
  selector: string;
  entries: DecodedEntry[];
}

interface StreamState {
  newest: bigint;
  lastNs: bigint;
  lastLine: string;
}

const MAX_LABEL_NAME_LENGTH = 1024;
const MAX_LABEL_VALUE_LENGTH = 2048;
/** ingester max_returned_stream_errors. */
const MAX_RETURNED_ERRORS = 10;

export class LokiReceiver extends ReceiverFake {
  readonly entries: ReceivedEntry[] = [];
  readonly pushes: ReceivedPush[] = [];
  private readonly opts: LokiReceiverOptions;
  private readonly streams = new Map<string, StreamState>();
  private readonly stalls: (() => void)[] = [];

  private constructor(opts: LokiReceiverOptions) {
    super();
    this.opts = opts;
  }

  static start(opts: LokiReceiverOptions = {}): Promise<LokiReceiver> {
    return new LokiReceiver(opts).listen(opts);
  }

  get pushUrl(): string {
    return `${this.url}/loki/api/v1/push`;
  }

  /** The next `times` pushes get the distributor's ingestion rate limit answer: 429 with Retry-After. */
  rateLimit(retryAfter: string, times = 1): void {
    const body =
      "Ingestion rate limit exceeded for user fake (limit: 4194304 bytes/sec) while attempting to ingest '1' lines totaling '1' bytes, " +
      'reduce log volume or contact your Loki administrator to see if the limit can be increased';
    this.server.inject({ status: 429, body, headers: { 'retry-after': retryAfter } }, times);
  }

  /**
   * The next push is read and then never answered (an overloaded distributor). Resolves when it
   * has arrived, so a test can abort or time out a request that is certainly in flight.
   */
  stallNext(): Promise<void> {
    return new Promise((resolve) => this.stalls.push(resolve));
  }

  /** Stored entries of one stream (by parsed labels), in the order Loki stored them. */
  entriesOf(labels: Record<string, string>): ReceivedEntry[] {
    const key = canonical(Object.entries(labels));
    return this.entries.filter((e) => canonical(Object.entries(e.labels)) === key);
  }

  protected handle(req: ReceivedRequest): Answer | Promise<Answer> {
    const stall = this.stalls.shift();
    if (stall) {
      stall();
      return new Promise<Answer>(() => {});
    }
    if (req.path.split('?')[0] !== '/loki/api/v1/push') return { status: 404, body: '404 page not found\n' };
    if (req.method !== 'POST') return { status: 405, body: 'method not allowed\n' };
    const header = req.headers['x-scope-orgid'];
    const tenantHeader = Array.isArray(header) ? header[0] : header;
    if (this.opts.requireTenant && !tenantHeader) return { status: 401, body: 'no org id\n' };
    const tenant = tenantHeader || 'fake';

    const encoding = String(req.headers['content-encoding'] ?? '');
    if (encoding !== '' && encoding !== 'gzip' && encoding !== 'snappy') return text(400, `Content-Encoding "${encoding}" not supported`);
    const json = String(req.headers['content-type'] ?? '').split(';')[0]!.trim() === 'application/json';
    let streams: DecodedStream[];
    try {
      streams = json ? decodeJson(req.body) : decodeProtobuf(req.body);
    } catch (e) {
      return text(400, (e as Error).message);
    }
    this.pushes.push({ tenant, encoding: json ? 'json' : 'protobuf', streams: streams.map((s) => ({ selector: s.selector, entries: s.entries.length })) });
    if (streams.length === 0) return text(422, 'error at least one valid stream is required for ingestion');
    return this.push(tenant, streams, this.server.requests.length - 1, json ? 'json' : 'protobuf');
  }

  private push(tenant: string, streams: DecodedStream[], request: number, encoding: ReceivedEntry['encoding']): Answer {
    const validationErrors: string[] = [];
    const valid: { labels: [string, string][]; stream: DecodedStream; entries: DecodedEntry[] }[] = [];
    const now = BigInt((this.opts.now ?? Date.now)()) * 1_000_000n;
    for (const stream of streams) {
      if (stream.entries.length === 0) continue;
      let labels: [string, string][];
      try {
        labels = parseLabels(stream.selector);
      } catch (e) {
        validationErrors.push(`Error parsing labels '${stream.selector}' with error: ${(e as Error).message}`);
        continue;
      }
      const problem = this.labelsProblem(labels, stream.selector);
      if (problem) {
        validationErrors.push(problem);
        continue;
      }
      const selector = canonical(labels);
      const ok: DecodedEntry[] = [];
      for (const e of stream.entries) {
        const bad = this.entryProblem(e, selector, now);
        if (bad) validationErrors.push(bad);
        else ok.push(e);
      }
      if (ok.length) valid.push({ labels, stream, entries: ok });
    }

    // The ingester: per-stream order, duplicates, storage. Its error is the request's answer.
    let ingesterError: string | undefined;
    for (const { labels, stream, entries } of valid) {
      const selector = canonical(labels);
      const key = `${tenant}\u0000${selector}`;
      let state = this.streams.get(key);
      const refused: { ns: bigint; reason: string }[] = [];
      for (const e of entries) {
        if (state && e.ns === state.lastNs && e.line === state.lastLine) continue;
        if (state && e.ns < state.newest) {
          if (!this.opts.unorderedWrites) {
            refused.push({ ns: e.ns, reason: 'entry out of order' });
            continue;
          }
          const cutoff = state.newest - BigInt(this.opts.maxChunkAgeMs ?? 2 * 3_600_000) * 500_000n;
          if (e.ns < cutoff) {
            refused.push({ ns: e.ns, reason: `entry too far behind, entry timestamp is: ${rfc3339(e.ns)}, oldest acceptable timestamp is: ${rfc3339(cutoff)}` });
            continue;
          }
        }
        state ??= { newest: e.ns, lastNs: e.ns, lastLine: e.line };
        if (e.ns > state.newest) state.newest = e.ns;
        state.lastNs = e.ns;
        state.lastLine = e.line;
        this.streams.set(key, state);
        this.entries.push({
          tenant,
          labels: Object.fromEntries(labels),
          selector: stream.selector,
          timestampNs: e.ns,
          line: e.line,
          structuredMetadata: e.sm,
          request,
          encoding,
        });
      }
      if (refused.length && ingesterError === undefined) {
        let msg = '';
        for (const r of refused.slice(0, MAX_RETURNED_ERRORS)) msg += `entry with timestamp ${goTime(r.ns)} ignored, reason: '${r.reason}',\n`;
        ingesterError = msg + `user '${tenant}', total ignored: ${refused.length} out of ${entries.length} for stream: ${selector}`;
      }
    }
    if (ingesterError !== undefined) return text(400, ingesterError);
    if (validationErrors.length) return text(400, validationErrors.join('\n'));
    return { status: 204 };
  }

  private labelsProblem(labels: [string, string][], selector: string): string | undefined {
    if (labels.length === 0) return 'error at least one label pair is required per stream';
    const max = this.opts.maxLabelNamesPerSeries ?? 15;
    if (labels.length > max) return `entry for stream '${selector}' has ${labels.length} label names; limit ${max}`;
    const seen = new Set<string>();
    for (const [name, value] of labels) {
      if (name.length > MAX_LABEL_NAME_LENGTH) return `stream '${selector}' has label name too long: '${name}'`;
      if (Buffer.byteLength(value) > MAX_LABEL_VALUE_LENGTH) return `stream '${selector}' has label value too long: '${value}'`;
      if (seen.has(name)) return `stream '${selector}' has duplicate label name: '${name}'`;
      seen.add(name);
    }
    return undefined;
  }

  private entryProblem(e: DecodedEntry, selector: string, nowNs: bigint): string | undefined {
    const o = this.opts;
    if (o.rejectOldSamplesMaxAgeMs !== undefined) {
      const oldest = nowNs - BigInt(o.rejectOldSamplesMaxAgeMs) * 1_000_000n;
      if (e.ns < oldest) return `entry for stream '${selector}' has timestamp too old: ${rfc3339(e.ns)}, oldest acceptable timestamp is: ${rfc3339(oldest)}`;
    }
    const lineBytes = Buffer.byteLength(e.line);
    if (o.maxLineSize && lineBytes > o.maxLineSize) {
      return `Max entry size '${o.maxLineSize}' bytes exceeded for stream '${selector}' while adding an entry with length '${lineBytes}' bytes`;
    }
    if (e.sm.length > 0) {
      if (o.allowStructuredMetadata === false) {
        return `stream '${selector}' includes structured metadata, but this feature is disallowed. Please see \`limits_config.allow_structured_metadata\` or contact your Loki administrator to enable it.`;
      }
      let size = 0;
      for (const p of e.sm) size += Buffer.byteLength(p.name) + Buffer.byteLength(p.value);
      const maxSize = o.maxStructuredMetadataSize ?? 64_000;
      if (size > maxSize) return `stream '${selector}' has structured metadata too large: '${size}' bytes, limit: '${maxSize}' bytes. Please see \`limits_config.max_structured_metadata_size\` or contact your Loki administrator to increase it.`;
      const maxCount = o.maxStructuredMetadataEntries ?? 128;
      if (e.sm.length > maxCount) return `stream '${selector}' has too many structured metadata labels: '${e.sm.length}', limit: '${maxCount}'. Please see \`limits_config.max_structured_metadata_entries_count\` or contact your Loki administrator to increase it.`;
    }
    return undefined;
  }
}

function text(status: number, body: string): Answer {
  return { status, headers: { 'content-type': 'text/plain; charset=utf-8' }, body: body + '\n' };
}

// --- decoding ---------------------------------------------------------------------------------

function decodeProtobuf(body: Buffer): DecodedStream[] {
  let raw: Uint8Array;
  try {
    raw = snappy.uncompress(body);
  } catch (e) {
    throw new Error(`snappy: corrupt input (${(e as Error).message})`, { cause: e });
  }
  // proto3 strings must be UTF-8 (language guide, scalar types) and Go's protobuf runtime refuses
  // others on unmarshal; protobufjs would quietly turn them into U+FFFD, hiding an encoder bug.
  checkUtf8(PushRequest, raw);
  const msg = PushRequest.toObject(PushRequest.decode(raw), { longs: String, defaults: true, arrays: true }) as {
    streams: { labels: string; entries: { timestamp?: { seconds: string; nanos: number }; line: string; structuredMetadata: LabelPair[] }[] }[];
  };
  return msg.streams.map((s) => ({
    selector: s.labels,
    entries: s.entries.map((e) => {
      if (!e.timestamp) throw new Error('entry without timestamp');
      if (e.timestamp.nanos < 0 || e.timestamp.nanos > 999_999_999) throw new Error(`timestamp nanos ${e.timestamp.nanos} out of range`);
      return {
        ns: BigInt(e.timestamp.seconds) * 1_000_000_000n + BigInt(e.timestamp.nanos),
        line: e.line,
        sm: e.structuredMetadata.map((p) => ({ name: p.name, value: p.value })),
      };
    }),
  }));
}

function checkUtf8(type: protobuf.Type, buf: Uint8Array): void {
  const r = protobuf.Reader.create(buf);
  while (r.pos < r.len) {
    const tag = r.uint32();
    const field = type.fieldsById[tag >>> 3];
    const wireType = tag & 7;
    if (field && wireType === 2 && (field.type === 'string' || field.resolvedType instanceof protobuf.Type)) {
      const bytes = r.bytes();
      if (field.type === 'string') {
        if (!isUtf8(bytes)) throw new Error(`proto: field ${type.fullName.slice(1)}.${field.name} contains invalid UTF-8`);
      } else checkUtf8(field.resolvedType as protobuf.Type, bytes);
    } else r.skipType(wireType);
  }
}

/** Loki's JSON push body (pkg/loghttp/entry.go, push.go): values are [ns string, line, optional metadata object]. */
function decodeJson(body: Buffer): DecodedStream[] {
  if (!isUtf8(body)) throw new Error('JSON body is not valid UTF-8');
  const doc = JSON.parse(body.toString('utf8')) as { streams?: unknown };
  if (!Array.isArray(doc.streams)) throw new Error('JSON body has no "streams" array');
  return doc.streams.map((s: { stream?: unknown; values?: unknown }) => {
    if (typeof s.stream !== 'object' || s.stream === null) throw new Error('stream without a "stream" object');
    const pairs = Object.entries(s.stream as Record<string, unknown>).map(([k, v]) => {
      if (typeof v !== 'string') throw new Error(`label ${k}: value is not a string`);
      return [k, v] as [string, string];
    });
    if (!Array.isArray(s.values)) throw new Error('stream without a "values" array');
    return {
      selector: canonical(pairs),
      entries: s.values.map((v: unknown) => {
        if (!Array.isArray(v) || v.length < 2 || v.length > 3) throw new Error(`a value is ["<ns>", "<line>", {metadata}], got ${JSON.stringify(v)}`);
        const [ts, line, meta] = v as [unknown, unknown, unknown];
        if (typeof ts !== 'string' || !/^\d+$/.test(ts)) throw new Error(`timestamp ${JSON.stringify(ts)} is not a string of unix nanoseconds`);
        if (typeof line !== 'string') throw new Error('line is not a string');
        const sm: LabelPair[] = [];
        if (meta !== undefined) {
          if (typeof meta !== 'object' || meta === null || Array.isArray(meta)) throw new Error('structured metadata is not an object');
          for (const [name, value] of Object.entries(meta)) {
            if (typeof value !== 'string') throw new Error(`structured metadata ${name}: value is not a string`);
            sm.push({ name, value });
          }
        }
        return { ns: BigInt(ts), line, sm };
      }),
    };
  });
}

// --- labels -----------------------------------------------------------------------------------

/**
 * A stream's labels string as Loki's syntax.ParseLabels reads it: `{name="value", …}`, equality
 * matchers only, values as Go string literals (double-quoted with Go's escapes, or raw in backquotes).
 */
export function parseLabels(s: string): [string, string][] {
  let i = 0;
  const fail = (msg: string): never => {
    throw new Error(`parse error at line 1, col ${i + 1}: ${msg}`);
  };
  const ws = () => {
    while (i < s.length && /\s/.test(s[i]!)) i++;
  };
  const out: [string, string][] = [];
  ws();
  if (s[i] !== '{') fail('syntax error: unexpected input, expecting {');
  i++;
  ws();
  if (s[i] === '}') fail('syntax error: unexpected }, expecting IDENTIFIER');
  while (true) {
    ws();
    const m = /^[a-zA-Z_][a-zA-Z0-9_]*/.exec(s.slice(i));
    if (!m) fail('syntax error: unexpected input, expecting IDENTIFIER');
    const name = m![0];
    i += name.length;
    ws();
    if (s[i] !== '=' || s[i + 1] === '~') fail(`syntax error: label ${name}: only equality (=) is allowed`);
    i++;
    ws();
    const [value, end] = goString(s, i, fail);
    i = end;
    out.push([name, value]);
    ws();
    if (s[i] === ',') {
      i++;
      continue;
    }
    if (s[i] === '}') {
      i++;
      break;
    }
    fail('syntax error: unexpected input, expecting , or }');
  }
  ws();
  if (i !== s.length) fail('syntax error: unexpected input after }');
  return out;
}

const SIMPLE_ESCAPES: Record<string, number> = { a: 7, b: 8, f: 12, n: 10, r: 13, t: 9, v: 11, '\\': 92, '"': 34 };

/** A Go string literal starting at s[i]: its value, and the index after it. */
function goString(s: string, i: number, fail: (msg: string) => never): [string, number] {
  const quote = s[i];
  if (quote === '`') {
    const end = s.indexOf('`', i + 1);
    if (end < 0) fail('literal not terminated');
    return [s.slice(i + 1, end), end + 1];
  }
  if (quote !== '"') fail('syntax error: unexpected input, expecting STRING');
  const bytes: number[] = [];
  const pushChar = (c: string) => bytes.push(...Buffer.from(c, 'utf8'));
  i++;
  while (true) {
    if (i >= s.length) fail('literal not terminated');
    const c = s[i]!;
    if (c === '"') return [decodeUtf8(bytes, fail), i + 1];
    if (c === '\n') fail('literal not terminated');
    if (c !== '\\') {
      const cp = s.codePointAt(i)!;
      pushChar(String.fromCodePoint(cp));
      i += cp > 0xffff ? 2 : 1;
      continue;
    }
    const e = s[i + 1] ?? '';
    if (e in SIMPLE_ESCAPES) {
      bytes.push(SIMPLE_ESCAPES[e]!);
      i += 2;
    } else if (e === 'x' || e === 'u' || e === 'U') {
      const n = e === 'x' ? 2 : e === 'u' ? 4 : 8;
      const hex = s.slice(i + 2, i + 2 + n);
      if (!new RegExp(`^[0-9a-fA-F]{${n}}$`).test(hex)) fail('invalid syntax');
      const v = parseInt(hex, 16);
      if (e === 'x') bytes.push(v);
      else if ((v >= 0xd800 && v <= 0xdfff) || v > 0x10ffff) fail('invalid syntax');
      else pushChar(String.fromCodePoint(v));
      i += 2 + n;
    } else if (/[0-7]/.test(e)) {
      const oct = s.slice(i + 1, i + 4);
      if (!/^[0-7]{3}$/.test(oct) || parseInt(oct, 8) > 255) fail('invalid syntax');
      bytes.push(parseInt(oct, 8));
      i += 4;
    } else fail('invalid syntax');
  }
}

function decodeUtf8(bytes: number[], fail: (msg: string) => never): string {
  const buf = Buffer.from(bytes);
  if (!isUtf8(buf)) fail('invalid UTF-8 rune');
  return buf.toString('utf8');
}

/** Loki's canonical text of a label set: names sorted (quoting as JSON, which differs from Go's only for unprintables). */
function canonical(labels: [string, string][]): string {
  const sorted = [...labels].sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0));
  return '{' + sorted.map(([n, v]) => `${n}=${JSON.stringify(v)}`).join(', ') + '}';
}

// --- times as Loki prints them ------------------------------------------------------------------

function split(ns: bigint): { date: Date; frac: string } {
  const ms = Number(ns / 1_000_000n);
  const frac = (ns % 1_000_000_000n).toString().padStart(9, '0').replace(/0+$/, '');
  return { date: new Date(ms), frac };
}

/** Go's time.Time.String() in UTC: `2026-11-21 10:00:00.123456789 +0000 UTC`. */
export function goTime(ns: bigint): string {
  const { date, frac } = split(ns);
  return date.toISOString().slice(0, 19).replace('T', ' ') + (frac ? '.' + frac : '') + ' +0000 UTC';
}

/** RFC 3339 with nanoseconds, trailing zeros trimmed (Go's time.RFC3339Nano). */
function rfc3339(ns: bigint): string {
  const { date, frac } = split(ns);
  return date.toISOString().slice(0, 19) + (frac ? '.' + frac : '') + 'Z';
}
