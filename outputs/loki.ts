import { createRequire } from 'node:module';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import protobuf from 'protobufjs';
import { z } from 'zod';
import { size } from '../agent/config/types.ts';
import type { AttributeValue, Attributes, LogRecord } from '../agent/record.ts';
import { outputCommon } from './common_config.ts';
import { errorForStatus, gzipBody, checkClientKeys, httpClientKeys, outputClient, type HttpClient } from './http_client.ts';
import {
  DEFAULT_LABELS,
  groupStreams,
  labelConfigProblems,
  StreamLabeler,
  TimestampParser,
  type StreamEntry,
  type StreamGroup,
} from './loki_streams.ts';
import { NdjsonEncoder } from './ndjson.ts';
import { PermanentError, type Output, type OutputContext, type RecordFailure, type SendResult } from './output.ts';

/**
 * `type: loki`: the Loki push API (`POST /loki/api/v1/push`,
 * https://grafana.com/docs/loki/latest/reference/loki-http-api/#ingest-logs). The default body is a
 * `logproto.PushRequest` (outputs/proto/loki/push.proto) snappy-compressed in the block format, as
 * Promtail and Grafana Alloy send it; `encoding: json` sends the documented JSON body instead.
 * The protobuf body is written field by field into one reused buffer (like outputs/otlp_logs_encoder.ts),
 * not built as message objects for protobufjs' encoder.
 * Records are grouped into streams by a small label set (outputs/loki_streams.ts); what is not a
 * label goes into the line, or with `line_format: body` into structured metadata.
 */

const PUSH_PATH = '/loki/api/v1/push';

const attributeList = z.union([z.string().min(1), z.array(z.string().min(1)).min(1)]);

export const lokiConfig = z
  .strictObject({
    type: z.literal('loki'),
    ...outputCommon,
    ...httpClientKeys,
    /** X-Scope-OrgID: the tenant, for a Loki with auth_enabled (or a gateway that wants one). Empty: none. */
    tenant_id: z.string().nullish(),
    encoding: z.enum(['protobuf', 'json']).default('protobuf'),
    /** For `encoding: json` only; a protobuf body is always snappy-compressed. */
    compression: z.enum(['gzip', 'none']).default('gzip'),
    /** Label name → resource attribute, or a list of attributes of which the first one set wins. */
    labels: z.record(z.string(), attributeList).default({ ...DEFAULT_LABELS } as Record<string, string | string[]>),
    /** Fixed labels on every stream, e.g. `{ cluster: prod-eu-1 }`. */
    static_labels: z.record(z.string(), z.string().min(1)).default({}),
    line_format: z.enum(['json', 'body']).default('json'),
    /**
     * A label with the record's level (`trace` `debug` `info` `warn` `error` `fatal`, from
     * severity_number: every app's spelling gives the same six values), e.g. `level`; records
     * without a severity number get none. Default: no level label.
     */
    level_label: z.string().min(1).nullish(),
    /**
     * Loki's `max_line_size` (its default: 256KB, which is 250KiB): a longer line is refused here,
     * alone, instead of earning the whole request a 400. 0: no check.
     */
    max_line_size: size('250KiB').default(256_000),
  })
  .superRefine((cfg, ctx) => {
    for (const p of labelConfigProblems(cfg.labels, cfg.static_labels, cfg.level_label)) ctx.addIssue({ code: 'custom', path: p.path, message: p.message });
    checkClientKeys(cfg, ctx);
  });
export type LokiConfig = z.infer<typeof lokiConfig>;

/** The vendored schema, loaded once. gogoproto is options only; Timestamp is protobufjs' bundled copy. */
function loadPushRoot(): protobuf.Root {
  const dir = join(dirname(fileURLToPath(import.meta.url)), 'proto');
  const root = new protobuf.Root();
  root.resolvePath = (_origin, target) => (target.startsWith('gogoproto/') ? null : join(dir, target));
  root.loadSync('loki/push.proto');
  root.resolveAll();
  return root;
}
const pushRoot = loadPushRoot();

/**
 * The tag (field number and wire type) of a field, read from the loaded schema. Every field written
 * here has a number below 16, so every tag is one byte.
 */
function tagOf(typeName: string, field: string): number {
  const f = pushRoot.lookupType(typeName).fields[field];
  if (!f) throw new Error(`${typeName} has no field ${field} (vendored proto changed?)`);
  const wire = f.resolvedType instanceof protobuf.Type || f.type === 'string' ? 2 : 0;
  if (wire === 0 && !['int64', 'int32', 'uint64', 'uint32'].includes(f.type)) throw new Error(`${typeName}.${field} is ${f.type}, not written here`);
  const tag = (f.id << 3) | wire;
  if (tag > 0x7f) throw new Error(`${typeName}.${field}: field number ${f.id} takes a two-byte tag`);
  return tag;
}

const T = {
  streams: tagOf('logproto.PushRequest', 'streams'),
  labels: tagOf('logproto.StreamAdapter', 'labels'),
  entries: tagOf('logproto.StreamAdapter', 'entries'),
  timestamp: tagOf('logproto.EntryAdapter', 'timestamp'),
  line: tagOf('logproto.EntryAdapter', 'line'),
  structuredMetadata: tagOf('logproto.EntryAdapter', 'structuredMetadata'),
  seconds: tagOf('google.protobuf.Timestamp', 'seconds'),
  nanos: tagOf('google.protobuf.Timestamp', 'nanos'),
  pairName: tagOf('logproto.LabelPairAdapter', 'name'),
  pairValue: tagOf('logproto.LabelPairAdapter', 'value'),
};
// Fields are written in field-number order, as protobufjs' encoder writes them, so the bytes are its bytes.
if (!(T.labels >>> 3 < T.entries >>> 3 && T.timestamp >>> 3 < T.line >>> 3 && T.line >>> 3 < T.structuredMetadata >>> 3 && T.seconds >>> 3 < T.nanos >>> 3 && T.pairName >>> 3 < T.pairValue >>> 3)) {
  throw new Error('loki push.proto field numbers out of the expected order');
}

/**
 * The push body's compressor: Loki wants the snappy block format. snappyjs, pure JavaScript, was
 * most of this output's CPU (about 330 MiB/s on the bench machine); `snappy` (napi-rs: prebuilt
 * binaries in per-platform npm packages, optional dependencies, no install script) does the same
 * at 3-4x that. Where no binary of it loads (a platform it ships none for), snappyjs does the job.
 */
export interface BlockCompressor {
  /** `snappy`, or `snappyjs` and why snappy did not load. */
  readonly name: string;
  compress(raw: Buffer): Buffer;
}

export function loadCompressor(load: (id: string) => unknown = createRequire(import.meta.url)): BlockCompressor {
  try {
    const native = load('snappy') as { compressSync(input: Uint8Array, options?: { copyOutputData?: boolean }): Buffer };
    // copyOutputData: the result copied into a Buffer of Node's. Without it the Buffer wraps Rust's
    // allocation, and that path measured 3x slower per batch (external memory made and freed).
    const options = { copyOutputData: true };
    return { name: 'snappy', compress: (raw) => native.compressSync(raw, options) };
  } catch (err) {
    // snappyjs ships no types; the block format's compress is all that is used.
    const js = load('snappyjs') as { compress(input: Uint8Array): Uint8Array };
    return {
      name: `snappyjs (snappy did not load: ${(err as Error).message.split('\n', 1)[0]})`,
      compress(raw) {
        const c = js.compress(raw);
        return Buffer.from(c.buffer, c.byteOffset, c.byteLength);
      },
    };
  }
}
let shared: BlockCompressor | undefined;

/** The compressor every loki output shares, loaded by the first one: an agent without a loki output never maps the native library (3 MiB). */
export function blockCompressor(): BlockCompressor {
  return (shared ??= loadCompressor());
}

/** Bytes of the varint of a non-negative integer below 2^53. */
function varintSize(n: number): number {
  if (n < 0x80) return 1;
  if (n < 0x4000) return 2;
  if (n < 0x200000) return 3;
  let size = 4;
  for (let limit = 0x10000000; n >= limit; limit *= 0x80) size++;
  return size;
}

/** Writes the varint of a non-negative integer below 2^53 at `pos` (room checked by the caller); returns the end. */
function putVarint(buf: Buffer, pos: number, v: number): number {
  while (v > 0x7fffffff) {
    buf[pos++] = (v % 0x80) | 0x80;
    v = Math.floor(v / 0x80);
  }
  while (v > 0x7f) {
    buf[pos++] = (v & 0x7f) | 0x80;
    v >>>= 7;
  }
  buf[pos++] = v;
  return pos;
}

/**
 * Writes protobuf into one buffer that is kept between batches (snappy copies out of it at once).
 * A length-delimited field's length is not known before its content is written: `open` leaves room
 * for the varint the caller expects and `close` moves the content when the guess was wrong, so the
 * bytes come out canonical (shortest varints, as protobufjs writes them) in one pass.
 */
class ProtoWriter {
  buf: Buffer;
  pos = 0;

  constructor(size: number) {
    this.buf = Buffer.allocUnsafeSlow(size);
  }

  ensure(n: number): void {
    if (this.pos + n <= this.buf.length) return;
    const bigger = Buffer.allocUnsafeSlow(Math.max(this.buf.length * 2, this.pos + n));
    this.buf.copy(bigger, 0, 0, this.pos);
    this.buf = bigger;
  }

  bytes(b: Uint8Array): void {
    this.ensure(b.length);
    this.buf.set(b, this.pos);
    this.pos += b.length;
  }

  /** A string that is mostly ASCII (a time): short, so copied here rather than through Buffer.write. */
  ascii(s: string): void {
    const n = s.length;
    this.ensure(n * 3);
    const buf = this.buf;
    let pos = this.pos;
    for (let i = 0; i < n; i++) {
      const c = s.charCodeAt(i);
      if (c >= 0x80) {
        this.pos = pos;
        this.text(s.slice(i));
        return;
      }
      buf[pos++] = c;
    }
    this.pos = pos;
  }

  /** A string's UTF-8 (lone surrogates become U+FFFD, as Buffer writes them); returns the byte count. */
  text(s: string): number {
    this.ensure(s.length * 3);
    const n = this.buf.write(s, this.pos);
    this.pos += n;
    return n;
  }

  /** A string field, whole, none for '' (proto3's default, which protobufjs leaves out); returns the byte count. */
  string(tag: number, s: string): number {
    if (s.length === 0) return 0;
    // A UTF-16 unit takes at least one byte: the length's varint is at least this long.
    const room = varintSize(s.length);
    const at = this.open(room, tag);
    const n = this.text(s);
    this.close(at, room);
    return n;
  }

  /** Starts a length-delimited field's content after room for a `room`-byte length; returns where the content starts. */
  open(room: number, tag?: number): number {
    this.ensure(room + 1);
    if (tag !== undefined) this.buf[this.pos++] = tag;
    this.pos += room;
    return this.pos;
  }

  /** Ends the content started at `at` (after `room` bytes): writes its length there, moving it if needed. */
  close(at: number, room: number): void {
    const len = this.pos - at;
    const size = varintSize(len);
    if (size !== room) {
      this.ensure(size - room);
      this.buf.copyWithin(at - room + size, at, this.pos);
      this.pos += size - room;
    }
    putVarint(this.buf, at - room, len);
  }
}

/** The writer grows to what batches take (a 1 MiB batch of records makes ~1-3 MiB of protobuf) and keeps it. */
const INITIAL_WRITER_BYTES = 64 << 10;
const MAX_KEPT_WRITER_BYTES = 16 << 20;


/**
 * Structured metadata names as Loki itself rewrites OTLP attribute names (Prometheus' label
 * normalisation: `k8s.pod.name` → `k8s_pod_name`), so they are queryable as `| k8s_pod_name="web-1"`.
 */
function metadataName(key: string): string {
  let name = key.replace(/[^A-Za-z0-9_]/g, '_');
  if (name.charCodeAt(0) >= 48 && name.charCodeAt(0) <= 57) name = 'key_' + name;
  else if (name.startsWith('_') && !name.startsWith('__')) name = 'key' + name;
  return name;
}

function metadataValue(v: AttributeValue): string {
  const text = typeof v === 'string' ? v : Array.isArray(v) ? JSON.stringify(v) : String(v);
  return wellFormed(text);
}

/** A JavaScript string with lone surrogates is not UTF-8; they become U+FFFD, as Buffer.write would make them. */
function wellFormed(s: string): string {
  return s.isWellFormed() ? s : s.toWellFormed();
}

/** A LabelPairAdapter's name field, encoded once: the structured metadata every record has. */
function nameField(name: string): Buffer {
  const w = new ProtoWriter(64);
  w.string(T.pairName, name);
  return Buffer.from(w.buf.subarray(0, w.pos));
}
const HEAD_TIMESTAMP = Buffer.from('{"timestamp":"');
const HEAD_OBSERVED = Buffer.from('","observed_timestamp":"');
const HEAD_BODY = Buffer.from('","body":');
const SEVERITY_TEXT = nameField('severity_text');
const SEVERITY_NUMBER = nameField('severity_number');
const OBSERVED_TIMESTAMP = nameField('observed_timestamp');

/** One structured metadata pair as an EntryAdapter field (the name's field already encoded). */
function writePair(w: ProtoWriter, name: Uint8Array, value: string): void {
  const at = w.open(1, T.structuredMetadata);
  w.bytes(name);
  w.string(T.pairValue, value);
  w.close(at, 1);
}

function nanosText(e: StreamEntry): string {
  return e.seconds === 0 ? String(e.nanos) : String(e.seconds) + String(e.nanos).padStart(9, '0');
}

export class LokiOutput implements Output {
  readonly name: string;
  private readonly client: HttpClient;
  private readonly path: string;
  private readonly headers: Record<string, string>;
  private readonly hasTenant: boolean;
  private readonly json: boolean;
  private readonly gzip: boolean;
  private readonly bodyLines: boolean;
  private readonly maxLineBytes: number;
  private readonly labeler: StreamLabeler;
  private readonly times = new TimestampParser();
  private readonly ndjson = new NdjsonEncoder();
  private readonly metadataJsonParts = new WeakMap<Attributes, string>();
  private readonly metadataBytes = new WeakMap<Attributes, Buffer>();
  private readonly lineTails = new WeakMap<Attributes, WeakMap<Attributes, Buffer>>();
  private lastTail: { attrs: Attributes; rest: Attributes; bytes: Buffer } | undefined;
  /** The raw PushRequest of the batch being sent; reused, since snappy copies out of it at once. */
  private writer = new ProtoWriter(INITIAL_WRITER_BYTES);
  /** Protobuf bodies only (JSON ones are gzipped or sent as they are). */
  private readonly compressor: BlockCompressor | undefined;

  constructor(config: LokiConfig, ctx: OutputContext) {
    this.name = ctx.name;
    this.client = outputClient(ctx.name, config);
    // Both `http://loki:3100` and the full push URL people copy from Grafana Cloud work.
    this.path = new URL(config.endpoint).pathname.replace(/\/+$/, '').endsWith(PUSH_PATH) ? '' : PUSH_PATH;
    this.json = config.encoding === 'json';
    this.gzip = this.json && config.compression === 'gzip';
    this.bodyLines = config.line_format === 'body';
    this.maxLineBytes = config.max_line_size;
    this.labeler = new StreamLabeler(config.labels, config.static_labels, config.level_label);
    this.headers = { 'content-type': this.json ? 'application/json' : 'application/x-protobuf' };
    if (this.gzip) this.headers['content-encoding'] = 'gzip';
    if (config.tenant_id) this.headers['x-scope-orgid'] = config.tenant_id;
    this.hasTenant = !!config.tenant_id || Object.keys(config.headers).some((h) => h.toLowerCase() === 'x-scope-orgid');
    this.compressor = this.json ? undefined : blockCompressor();
    if (this.compressor && this.compressor.name !== 'snappy') ctx.log('warn', `push bodies are compressed with ${this.compressor.name}, several times slower`);
  }

  async send(records: readonly LogRecord[], signal: AbortSignal): Promise<SendResult> {
    const failed: RecordFailure[] = [];
    const groups = groupStreams(records, this.labeler, this.times, failed);
    const body = this.json ? await this.encodeJson(records, groups, failed) : this.encodeProtobuf(records, groups, failed);
    if (body === undefined) return failed.length ? { bytes: 0, failed: sortedFailures(failed) } : { bytes: 0 };
    const res = await this.client.request({ method: 'POST', path: this.path, headers: this.headers, body, signal });
    const err = errorForStatus(this.name, res);
    if (err === undefined) return failed.length ? { bytes: body.length, failed: sortedFailures(failed) } : { bytes: body.length };
    if (res.status === 400) {
      // Loki stores every entry its answer does not name and says which it refused only in prose
      // (pkg/distributor: validation errors; pkg/ingester/stream.go: "entry with timestamp … ignored"),
      // so the batch cannot be split: all of it is dead-lettered, the refused entries with it.
      throw new PermanentError(`${err.message} (Loki stores the entries this does not name; the whole batch goes to the dead-letter file)`);
    }
    if (res.status === 401 && !this.hasTenant) {
      throw new PermanentError(`${err.message} (a Loki with auth_enabled wants a tenant: set tenant_id)`);
    }
    if (res.status === 413) throw new PermanentError(`${err.message} (the request is larger than the receiver takes: lower batch.max_bytes)`);
    throw err;
  }

  /** The line of a record, or undefined (and a failure) when Loki would refuse it for its size. */
  private line(r: LogRecord, e: StreamEntry, failed: RecordFailure[]): string | undefined {
    let line: string;
    if (this.bodyLines) line = typeof r.body === 'string' ? wellFormed(r.body) : JSON.stringify(r.body);
    else {
      // design.md's record minus the label attributes; NdjsonEncoder caches the rest's JSON by identity.
      const text = this.ndjson.encode(e.rest === r.resource ? r : { ...r, resource: e.rest });
      line = text.slice(0, -1);
    }
    const max = this.maxLineBytes;
    // A UTF-16 unit takes 1 to 3 UTF-8 bytes: only count bytes when the length alone cannot tell.
    if (max > 0 && line.length * 3 > max) {
      const bytes = Buffer.byteLength(line);
      if (bytes > max) {
        failed.push({ index: e.index, retryable: false, reason: `line of ${bytes} bytes is longer than max_line_size ${max} (Loki refuses it: line too long)` });
        return undefined;
      }
    }
    return line;
  }

  /** `"name":"value",…` of an attributes object's structured metadata, for the JSON body; built once per object. */
  private metadataJsonOf(attrs: Attributes): string {
    let json = this.metadataJsonParts.get(attrs);
    if (json === undefined) {
      json = '';
      for (const key in attrs) json += (json ? ',' : '') + JSON.stringify(metadataName(key)) + ':' + JSON.stringify(metadataValue(attrs[key]!));
      this.metadataJsonParts.set(attrs, json);
    }
    return json;
  }

  /** The same structured metadata as encoded EntryAdapter fields, for the protobuf body; built once per object. */
  private metadataBytesOf(attrs: Attributes): Buffer {
    let bytes = this.metadataBytes.get(attrs);
    if (bytes === undefined) {
      const w = new ProtoWriter(256);
      for (const key in attrs) {
        const at = w.open(1, T.structuredMetadata);
        w.string(T.pairName, metadataName(key));
        w.string(T.pairValue, metadataValue(attrs[key]!));
        w.close(at, 1);
      }
      bytes = Buffer.from(w.buf.subarray(0, w.pos));
      this.metadataBytes.set(attrs, bytes);
    }
    return bytes;
  }

  /**
   * `,"attributes":{…},"resource":{…}}`: the end of a JSON line, the same for every record of a file
   * and stream, so encoded once per pair of objects (NdjsonEncoder's JSON of each object).
   */
  private lineTail(attrs: Attributes, rest: Attributes): Buffer {
    const last = this.lastTail;
    if (last !== undefined && last.attrs === attrs && last.rest === rest) return last.bytes;
    let byRest = this.lineTails.get(attrs);
    if (byRest === undefined) this.lineTails.set(attrs, (byRest = new WeakMap()));
    let bytes = byRest.get(rest);
    if (bytes === undefined) {
      bytes = Buffer.from(',"attributes":' + JSON.stringify(attrs) + ',"resource":' + JSON.stringify(rest) + '}');
      byRest.set(rest, bytes);
    }
    this.lastTail = { attrs, rest, bytes };
    return bytes;
  }

  private metadataJson(r: LogRecord, rest: Attributes): string {
    let json = '{';
    if (r.severityText !== undefined) json += '"severity_text":' + JSON.stringify(wellFormed(r.severityText)) + ',';
    if (r.severityNumber !== undefined) json += '"severity_number":"' + r.severityNumber + '",';
    json += '"observed_timestamp":' + JSON.stringify(r.observedTimestamp);
    const attrs = this.metadataJsonOf(r.attributes);
    const res = this.metadataJsonOf(rest);
    if (attrs) json += ',' + attrs;
    if (res) json += ',' + res;
    return json + '}';
  }

  /**
   * The PushRequest, written field by field (fields of outputs/proto/loki/push.proto, in the order
   * and shape protobufjs' encoder gives them, which a test holds it to), then snappy-compressed.
   * Per record only its time, the head of its line and its body are encoded; the rest of the line
   * and structured metadata from shared attribute objects are bytes cached by identity.
   */
  private encodeProtobuf(records: readonly LogRecord[], groups: readonly StreamGroup[], failed: RecordFailure[]): Buffer | undefined {
    const w = this.writer;
    w.pos = 0;
    for (const g of groups) {
      const start = w.pos;
      // A stream of a 1 MiB batch mostly takes a 3-byte length (up to 2 MiB); close() moves it otherwise.
      const at = w.open(3, T.streams);
      w.string(T.labels, g.split.selector);
      const first = w.pos;
      for (const e of g.entries) this.writeEntry(w, records[e.index]!, e, failed);
      if (w.pos === first) w.pos = start; // every entry refused: no stream
      else w.close(at, 3);
    }
    if (w.pos === 0) return undefined;
    const body = this.compressor!.compress(w.buf.subarray(0, w.pos));
    // A batch with a huge record leaves a large buffer behind: let it go rather than keep it forever.
    if (w.buf.length > MAX_KEPT_WRITER_BYTES) this.writer = new ProtoWriter(INITIAL_WRITER_BYTES);
    return body;
  }

  private writeEntry(w: ProtoWriter, r: LogRecord, e: StreamEntry, failed: RecordFailure[]): void {
    const start = w.pos;
    const at = w.open(2, T.entries);
    // google.protobuf.Timestamp; a 0 (before 1970-01-01T00:00:01Z, or a whole second) is left out, as protobufjs does.
    w.ensure(2 + 1 + 8 + 1 + 5);
    const buf = w.buf;
    let pos = w.pos;
    const { seconds, nanos } = e;
    buf[pos++] = T.timestamp;
    buf[pos++] = (seconds === 0 ? 0 : 1 + varintSize(seconds)) + (nanos === 0 ? 0 : 1 + varintSize(nanos));
    if (seconds !== 0) {
      buf[pos++] = T.seconds;
      pos = putVarint(buf, pos, seconds);
    }
    if (nanos !== 0) {
      buf[pos++] = T.nanos;
      pos = putVarint(buf, pos, nanos);
    }
    w.pos = pos;

    const bytes = this.bodyLines ? w.string(T.line, typeof r.body === 'string' ? r.body : JSON.stringify(r.body)) : this.writeJsonLine(w, r, e.rest);
    const max = this.maxLineBytes;
    if (max > 0 && bytes > max) {
      w.pos = start;
      failed.push({ index: e.index, retryable: false, reason: `line of ${bytes} bytes is longer than max_line_size ${max} (Loki refuses it: line too long)` });
      return;
    }
    if (this.bodyLines) {
      // Per-record fields first (severity, observed time), then attributes, then the resource's rest.
      if (r.severityText !== undefined) writePair(w, SEVERITY_TEXT, r.severityText);
      if (r.severityNumber !== undefined) writePair(w, SEVERITY_NUMBER, String(r.severityNumber));
      writePair(w, OBSERVED_TIMESTAMP, r.observedTimestamp);
      w.bytes(this.metadataBytesOf(r.attributes));
      w.bytes(this.metadataBytesOf(e.rest));
    }
    w.close(at, 2);
  }

  /**
   * design.md's NDJSON record (NdjsonEncoder's text without the newline) minus the label
   * attributes, as the line field; returns its byte count. Written in three pieces: the per-record
   * head, the body's JSON and the cached tail.
   */
  private writeJsonLine(w: ProtoWriter, r: LogRecord, rest: Attributes): number {
    const body = JSON.stringify(r.body);
    const tail = this.lineTail(r.attributes, rest);
    const ts = r.timestamp;
    const ots = r.observedTimestamp;
    const room = varintSize(HEAD_TIMESTAMP.length + ts.length + HEAD_OBSERVED.length + ots.length + 9 + body.length + tail.length);
    const at = w.open(room, T.line);
    w.bytes(HEAD_TIMESTAMP);
    w.ascii(ts);
    w.bytes(HEAD_OBSERVED);
    w.ascii(ots);
    if (r.severityText === undefined && r.severityNumber === undefined) w.bytes(HEAD_BODY);
    else {
      let head = '"';
      if (r.severityText !== undefined) head += ',"severity_text":' + JSON.stringify(r.severityText);
      if (r.severityNumber !== undefined) head += ',"severity_number":' + r.severityNumber;
      w.text(head + ',"body":');
    }
    w.text(body);
    w.bytes(tail);
    const bytes = w.pos - at;
    w.close(at, room);
    return bytes;
  }

  /** `{"streams":[{"stream":{…},"values":[["<unix ns>","<line>",{…metadata}]]}]}` */
  private async encodeJson(records: readonly LogRecord[], groups: readonly StreamGroup[], failed: RecordFailure[]): Promise<Buffer | undefined> {
    let out = '{"streams":[';
    let streams = 0;
    for (const g of groups) {
      let values = '';
      for (const e of g.entries) {
        const r = records[e.index]!;
        const line = this.line(r, e, failed);
        if (line === undefined) continue;
        values += (values ? ',["' : '["') + nanosText(e) + '",' + JSON.stringify(line);
        values += this.bodyLines ? ',' + this.metadataJson(r, e.rest) + ']' : ']';
      }
      if (!values) continue;
      out += (streams++ ? ',{"stream":' : '{"stream":') + g.split.json + ',"values":[' + values + ']}';
    }
    if (streams === 0) return undefined;
    const raw = Buffer.from(out + ']}');
    return this.gzip ? gzipBody(raw) : raw;
  }

  async flush(): Promise<void> {}

  close(): Promise<void> {
    return this.client.close();
  }
}

function sortedFailures(failed: RecordFailure[]): RecordFailure[] {
  return failed.sort((a, b) => a.index - b.index);
}

export function createLokiOutput(config: LokiConfig, ctx: OutputContext): Output {
  return new LokiOutput(config, ctx);
}
