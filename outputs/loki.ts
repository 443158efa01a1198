import { createRequire } from 'node:module';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import { constants as zlib, gzip } from 'node:zlib';
import protobuf from 'protobufjs';
import { z } from 'zod';
import { size } from '../agent/config/types.ts';
import type { AttributeValue, Attributes, LogRecord } from '../agent/record.ts';
import { outputCommon } from './common_config.ts';
import { errorForStatus, httpClientKeys, outputClient, type HttpClient } from './http_client.ts';
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
     * Loki's `max_line_size` (its default: 256KB, which is 250KiB): a longer line is refused here,
     * alone, instead of earning the whole request a 400. 0: no check.
     */
    max_line_size: size('250KiB').default(256_000),
  })
  .superRefine((cfg, ctx) => {
    for (const p of labelConfigProblems(cfg.labels, cfg.static_labels)) ctx.addIssue({ code: 'custom', path: p.path, message: p.message });
  });
export type LokiConfig = z.infer<typeof lokiConfig>;

/** The vendored schema, loaded once. gogoproto is options only; Timestamp is protobufjs' bundled copy. */
function loadPushRequest(): protobuf.Type {
  const dir = join(dirname(fileURLToPath(import.meta.url)), 'proto');
  const root = new protobuf.Root();
  root.resolvePath = (_origin, target) => (target.startsWith('gogoproto/') ? null : join(dir, target));
  root.loadSync('loki/push.proto');
  root.resolveAll();
  return root.lookupType('logproto.PushRequest');
}
const PushRequest = loadPushRequest();

// snappyjs ships no types; the block format's compress is all that is used.
const snappy = createRequire(import.meta.url)('snappyjs') as { compress(input: Uint8Array): Uint8Array };

const gzipAsync = promisify(gzip);
const GZIP_OPTIONS = { level: zlib.Z_BEST_SPEED };

interface LabelPair {
  name: string;
  value: string;
}

interface PushEntry {
  timestamp: { seconds: number; nanos: number };
  line: string;
  structuredMetadata?: LabelPair[];
}

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

/** Structured metadata of one attributes object, in both wire shapes; built once per object. */
interface MetadataPart {
  pairs: LabelPair[];
  /** `"name":"value",…` without braces: a piece of the JSON body's third value. */
  json: string;
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
  private readonly metadataParts = new WeakMap<Attributes, MetadataPart>();

  constructor(config: LokiConfig, ctx: OutputContext) {
    this.name = ctx.name;
    this.client = outputClient(ctx.name, config);
    // Both `http://loki:3100` and the full push URL people copy from Grafana Cloud work.
    this.path = new URL(config.endpoint).pathname.replace(/\/+$/, '').endsWith(PUSH_PATH) ? '' : PUSH_PATH;
    this.json = config.encoding === 'json';
    this.gzip = this.json && config.compression === 'gzip';
    this.bodyLines = config.line_format === 'body';
    this.maxLineBytes = config.max_line_size;
    this.labeler = new StreamLabeler(config.labels, config.static_labels);
    this.headers = { 'content-type': this.json ? 'application/json' : 'application/x-protobuf' };
    if (this.gzip) this.headers['content-encoding'] = 'gzip';
    if (config.tenant_id) this.headers['x-scope-orgid'] = config.tenant_id;
    this.hasTenant = !!config.tenant_id || Object.keys(config.headers).some((h) => h.toLowerCase() === 'x-scope-orgid');
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

  private metadataOf(attrs: Attributes): MetadataPart {
    let part = this.metadataParts.get(attrs);
    if (part === undefined) {
      const pairs: LabelPair[] = [];
      let json = '';
      for (const key in attrs) {
        const pair = { name: metadataName(key), value: metadataValue(attrs[key]!) };
        pairs.push(pair);
        json += (json ? ',' : '') + JSON.stringify(pair.name) + ':' + JSON.stringify(pair.value);
      }
      part = { pairs, json };
      this.metadataParts.set(attrs, part);
    }
    return part;
  }

  /** Per-record fields first (severity, observed time), then attributes, then the resource's rest. */
  private metadataPairs(r: LogRecord, rest: Attributes): LabelPair[] {
    const own: LabelPair[] = [];
    if (r.severityText !== undefined) own.push({ name: 'severity_text', value: wellFormed(r.severityText) });
    if (r.severityNumber !== undefined) own.push({ name: 'severity_number', value: String(r.severityNumber) });
    own.push({ name: 'observed_timestamp', value: r.observedTimestamp });
    return own.concat(this.metadataOf(r.attributes).pairs, this.metadataOf(rest).pairs);
  }

  private metadataJson(r: LogRecord, rest: Attributes): string {
    let json = '{';
    if (r.severityText !== undefined) json += '"severity_text":' + JSON.stringify(wellFormed(r.severityText)) + ',';
    if (r.severityNumber !== undefined) json += '"severity_number":"' + r.severityNumber + '",';
    json += '"observed_timestamp":' + JSON.stringify(r.observedTimestamp);
    const attrs = this.metadataOf(r.attributes).json;
    const res = this.metadataOf(rest).json;
    if (attrs) json += ',' + attrs;
    if (res) json += ',' + res;
    return json + '}';
  }

  private encodeProtobuf(records: readonly LogRecord[], groups: readonly StreamGroup[], failed: RecordFailure[]): Buffer | undefined {
    const streams: { labels: string; entries: PushEntry[] }[] = [];
    for (const g of groups) {
      const entries: PushEntry[] = [];
      for (const e of g.entries) {
        const r = records[e.index]!;
        const line = this.line(r, e, failed);
        if (line === undefined) continue;
        const entry: PushEntry = { timestamp: { seconds: e.seconds, nanos: e.nanos }, line };
        if (this.bodyLines) entry.structuredMetadata = this.metadataPairs(r, e.rest);
        entries.push(entry);
      }
      if (entries.length) streams.push({ labels: g.split.selector, entries });
    }
    if (streams.length === 0) return undefined;
    const raw = PushRequest.encode({ streams }).finish();
    const compressed = snappy.compress(raw);
    return Buffer.from(compressed.buffer, compressed.byteOffset, compressed.byteLength);
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
    return this.gzip ? gzipAsync(raw, GZIP_OPTIONS) : raw;
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
