import { createHash } from 'node:crypto';
import { z } from 'zod';
import type { Attributes, Body, LogRecord } from '../agent/record.ts';
import { formatBytes } from '../agent/config/units.ts';
import { severityLevel } from '../parsers/severity.ts';
import { outputCommon } from './common_config.ts';
import { bodyExcerpt, errorForStatus, gzipBody, checkClientKeys, httpClientKeys, outputClient, type HttpClient, type HttpResponse } from './http_client.ts';
import { PermanentError, RetryableError, type Output, type OutputContext, type RecordFailure, type SendResult } from './output.ts';

/**
 * `type: elasticsearch`: the bulk API of Elasticsearch (7.x, 8.x, 9.x) and OpenSearch (1.x, 2.x).
 * One batch is one `POST /_bulk` of NDJSON, an action line and a source line per record
 * (https://www.elastic.co/docs/api/doc/elasticsearch/operation/operation-bulk), without `_type`
 * (removed in 7.0, refused by 8.x). The answer is classified item by item, in request order.
 */

// ---------------------------------------------------------------------------------------------
// Config

/** Placeholders an index pattern may use; all are digits, so they never make a name invalid. */
const PLACEHOLDERS = new Set(['Y', 'y', 'm', 'd', 'H', '%']);
/** Characters Elasticsearch refuses in index names (MetadataCreateIndexService.validateIndexOrAliasName), plus `:`. */
const BAD_INDEX_CHARS = /[\\/*?"<>| ,#:]/;

/** Why Elasticsearch would refuse this index or data stream name, or undefined when it would not. */
export function invalidIndexName(name: string): string | undefined {
  if (name === '') return 'is empty';
  if (name !== name.toLowerCase()) return 'must be lowercase';
  const bad = BAD_INDEX_CHARS.exec(name);
  if (bad) return `must not contain ${JSON.stringify(bad[0])} (nor any of \\ / * ? " < > | space , # :)`;
  if (/^[-_+]/.test(name)) return 'must not start with -, _ or +';
  if (name === '.' || name === '..') return 'cannot be . or ..';
  if (name.startsWith('.')) return 'must not start with a dot (names starting with . are hidden and system indices)';
  if (Buffer.byteLength(name) > 255) return 'is longer than 255 bytes';
  return undefined;
}

/** A data stream name part (the naming scheme `<type>-<dataset>-<namespace>`): no `-`, at most 100 bytes. */
const streamPart = (fallback: string) =>
  z
    .string()
    .min(1)
    .max(100)
    .refine((s) => !s.includes('-'), { message: 'must not contain "-": it separates type, dataset and namespace in the data stream name' })
    .refine((s) => invalidIndexName(s) === undefined, { message: 'must be lowercase, without \\ / * ? " < > | space , # :' })
    .default(fallback);

export const DEFAULT_INDEX = 'kube-telemetry-agent-%Y.%m.%d';

export const elasticsearchConfig = z
  .strictObject({
    type: z.literal('elasticsearch'),
    ...outputCommon,
    ...httpClientKeys,
    /** `index`: a (date-patterned) index; `data_stream`: `<type>-<dataset>-<namespace>`, append-only. */
    mode: z.enum(['index', 'data_stream']).default('index'),
    /** mode index: the index name; %Y %y %m %d %H come from each record's timestamp, in UTC. */
    index: z.string().min(1).optional(),
    /** mode index: `index` (default) or `create`. Data streams take only `create`. */
    op_type: z.enum(['index', 'create']).optional(),
    data_stream: z
      .strictObject({ type: streamPart('logs'), dataset: streamPart('kubernetes'), namespace: streamPart('default') })
      .optional(),
    /** Ingest pipeline every document goes through (`?pipeline=`). */
    pipeline: z.string().min(1).optional(),
    compression: z.enum(['none', 'gzip']).default('none'),
    /** An Elasticsearch API key: the `encoded` value of the create API key answer, or `id:api_key`. */
    api_key: z.string().min(1).optional(),
    /** Dots in keys Elasticsearch would expand into objects: see replaceDots below. */
    replace_dots: z.enum(['labels', 'all', 'none']).default('labels'),
    /** `_id` = a hash of the document, so a batch sent again is recognised instead of stored twice. */
    generate_id: z.boolean().default(false),
    /**
     * ECS `log.level` on every document with a severity number: its level (`trace` `debug` `info`
     * `warn` `error` `fatal`), the same six values whatever each app wrote (that stays in severity_text).
     */
    log_level: z.boolean().default(true),
  })
  .superRefine((c, ctx) => {
    checkClientKeys(c, ctx);
    if (c.mode === 'data_stream') {
      if (c.index !== undefined)
        ctx.addIssue({ code: 'custom', path: ['index'], message: 'index is for mode: index; a data stream is named by data_stream.type, .dataset and .namespace' });
      if (c.op_type === 'index')
        ctx.addIssue({ code: 'custom', path: ['op_type'], message: 'data streams accept only op_type create (they are append-only)' });
    } else {
      if (c.data_stream !== undefined)
        ctx.addIssue({ code: 'custom', path: ['data_stream'], message: 'data_stream is for mode: data_stream; set mode: data_stream, or name an index with index' });
      const problem = checkIndexPattern(c.index ?? DEFAULT_INDEX);
      if (problem) ctx.addIssue({ code: 'custom', path: ['index'], message: problem });
    }
    if (c.api_key !== undefined) {
      const a = c.auth;
      if (a.username !== undefined || a.bearer_token !== undefined || a.bearer_token_file !== undefined)
        ctx.addIssue({ code: 'custom', path: ['api_key'], message: 'api_key and auth are both set; pick one' });
      if (Object.keys(c.headers).some((h) => h.toLowerCase() === 'authorization'))
        ctx.addIssue({ code: 'custom', path: ['api_key'], message: 'api_key and headers.Authorization are both set; pick one' });
    }
  });
export type ElasticsearchConfig = z.infer<typeof elasticsearchConfig>;

function checkIndexPattern(pattern: string): string | undefined {
  for (const m of pattern.matchAll(/%(.?)/g))
    if (!PLACEHOLDERS.has(m[1]!)) return `unknown placeholder %${m[1]} in ${JSON.stringify(pattern)}; use %Y %y %m %d %H (UTC, from the record's timestamp) or %% for a literal %`;
  const sample = new IndexPattern(pattern).name('2026-01-02T03');
  const why = invalidIndexName(sample);
  return why && `${JSON.stringify(pattern)} gives index names like ${JSON.stringify(sample)}, which Elasticsearch refuses: the name ${why}`;
}

// ---------------------------------------------------------------------------------------------
// Index names

/**
 * An index pattern with strftime placeholders. Names depend only on the hour or day, so a record
 * costs a prefix comparison of its timestamp and the name is formatted once per distinct day (or hour).
 */
export class IndexPattern {
  private readonly parts: string[];
  /** Length of the timestamp prefix the name depends on: 13 (YYYY-MM-DDTHH), 10 (YYYY-MM-DD), 0 (fixed). */
  readonly keyLength: number;

  constructor(pattern: string) {
    this.parts = pattern.split(/(%.)/).filter((p) => p !== '');
    const used = this.parts.filter((p) => p.length === 2 && p[0] === '%' && p !== '%%');
    this.keyLength = used.includes('%H') ? 13 : used.length > 0 ? 10 : 0;
  }

  /** The name for a `YYYY-MM-DDTHH` (or shorter) UTC prefix. */
  name(key: string): string {
    let out = '';
    for (const p of this.parts) {
      if (p.length !== 2 || p[0] !== '%') out += p;
      else if (p === '%Y') out += key.slice(0, 4);
      else if (p === '%y') out += key.slice(2, 4);
      else if (p === '%m') out += key.slice(5, 7);
      else if (p === '%d') out += key.slice(8, 10);
      else if (p === '%H') out += key.slice(11, 13);
      else if (p === '%%') out += '%';
      else out += p;
    }
    return out;
  }

  /**
   * The UTC prefix of a record's time. The record contract is RFC 3339 in UTC (`Z`), read as is;
   * anything else (an offset, a malformed time from a body) goes through Date, then the time the
   * agent read the line. Elasticsearch itself will judge `@timestamp`.
   */
  key(r: LogRecord): string {
    const n = this.keyLength;
    for (const ts of [r.timestamp, r.observedTimestamp]) {
      if (ts.length >= 20 && ts.charCodeAt(4) === 45 && ts.charCodeAt(7) === 45 && ts.charCodeAt(10) === 84 && ts.endsWith('Z')) return ts.slice(0, n);
      const ms = Date.parse(ts);
      if (!Number.isNaN(ms)) return new Date(ms).toISOString().slice(0, n);
    }
    return new Date().toISOString().slice(0, n);
  }
}

// ---------------------------------------------------------------------------------------------
// Documents

/**
 * Elasticsearch expands dotted field names into objects, and a field cannot be both a value and an
 * object: `k8s.pod.label.app: web` (pod A) and `k8s.pod.label.app.kubernetes.io/name: web` (pod B)
 * make the second document fail with mapper_parsing_exception, in the same daily index, for ever.
 * Nesting per document cannot fix that, because the conflict is between documents. So keys are
 * rewritten the same way in every document:
 * - `labels` (default): dots become `_` in the part of a key after `k8s.<kind>.label.` or
 *   `k8s.<kind>.annotation.` (Kubernetes label and annotation keys, which users choose), as
 *   Filebeat's add_kubernetes_metadata does by default (`labels.dedot`, `annotations.dedot`).
 *   The semantic-convention keys keep their dots and become objects (`resource.k8s.pod.name`):
 *   OpenTelemetry's naming rules forbid a name that is also a namespace, so they never collide.
 * - `all`: every key's dots become `_`, body keys included (Fluent Bit's `Replace_Dots On`).
 * - `none`: keys as they are, for indices mapped with `subobjects: false` or `flattened` fields.
 */
export type ReplaceDots = 'labels' | 'all' | 'none';

const USER_KEY = /^k8s\.[a-z]+\.(?:label|annotation)\./;

function rewriteKey(key: string, mode: ReplaceDots): string {
  if (mode === 'all') return key.includes('.') ? key.replaceAll('.', '_') : key;
  if (mode === 'none') return key;
  const m = USER_KEY.exec(key);
  if (!m) return key;
  const rest = key.slice(m[0].length);
  return rest.includes('.') ? m[0] + rest.replaceAll('.', '_') : key;
}

/** Body keys with dots replaced, at every depth; the same object back when nothing changes. */
function dedotDeep(v: unknown): unknown {
  if (Array.isArray(v)) {
    let out: unknown[] | undefined;
    for (let i = 0; i < v.length; i++) {
      const x = dedotDeep(v[i]);
      if (x !== v[i]) (out ??= v.slice())[i] = x;
    }
    return out ?? v;
  }
  if (v === null || typeof v !== 'object') return v;
  let changed = false;
  const out: Record<string, unknown> = {};
  for (const [k, x] of Object.entries(v)) {
    const nk = k.includes('.') ? k.replaceAll('.', '_') : k;
    const nx = dedotDeep(x);
    if (nk !== k || nx !== x) changed = true;
    out[nk] = nx;
  }
  return changed ? out : v;
}

/**
 * The bulk body of one batch. Attribute and resource objects are shared by all records of a file
 * and stream, so their JSON (keys rewritten) is cached by identity; action lines are cached per
 * index, so per record only timestamps, severity and body are serialised.
 */
export class BulkEncoder {
  private readonly fragments = new WeakMap<Attributes, string>();
  private readonly dots: ReplaceDots;
  private readonly op: 'index' | 'create';
  private readonly pattern: IndexPattern | undefined;
  private readonly fixedAction: Action | undefined;
  private readonly extra: string;
  private readonly generateId: boolean;
  private readonly logLevel: boolean;
  private lastKey = '\0';
  private lastAction: Action = { prefix: '', line: '' };
  private readonly actions = new Map<string, Action>();

  constructor(config: ElasticsearchConfig) {
    this.dots = config.replace_dots;
    this.generateId = config.generate_id;
    this.logLevel = config.log_level;
    if (config.mode === 'data_stream') {
      const ds = { type: 'logs', dataset: 'kubernetes', namespace: 'default', ...config.data_stream };
      this.op = 'create';
      this.fixedAction = this.actionFor(`${ds.type}-${ds.dataset}-${ds.namespace}`);
      // The data stream naming scheme's constant_keyword fields (logs@mappings); they must match the name.
      this.extra = `,"data_stream":${JSON.stringify({ type: ds.type, dataset: ds.dataset, namespace: ds.namespace })}`;
    } else {
      this.op = config.op_type ?? 'index';
      this.pattern = new IndexPattern(config.index ?? DEFAULT_INDEX);
      if (this.pattern.keyLength === 0) this.fixedAction = this.actionFor(this.pattern.name(''));
      this.extra = '';
    }
  }

  get opType(): 'index' | 'create' {
    return this.op;
  }

  private actionFor(index: string): Action {
    const prefix = `{"${this.op}":{"_index":${JSON.stringify(index)}`;
    return { prefix, line: prefix + '}}\n' };
  }

  private action(r: LogRecord): Action {
    if (this.fixedAction !== undefined) return this.fixedAction;
    const pattern = this.pattern!;
    const ts = r.timestamp;
    // Records of a batch are mostly of one day: one prefix test, no slicing.
    if (ts.startsWith(this.lastKey) && ts.charCodeAt(pattern.keyLength) === (pattern.keyLength === 13 ? 58 : 84) && ts.endsWith('Z')) return this.lastAction;
    const key = pattern.key(r);
    let action = this.actions.get(key);
    if (action === undefined) {
      if (this.actions.size >= 64) this.actions.clear();
      action = this.actionFor(pattern.name(key));
      this.actions.set(key, action);
    }
    this.lastKey = key;
    this.lastAction = action;
    return action;
  }

  private fragment(attrs: Attributes): string {
    let json = this.fragments.get(attrs);
    if (json === undefined) {
      let obj: Attributes = attrs;
      if (this.dots !== 'none') {
        let out: Record<string, Attributes[string]> | undefined;
        for (const k in attrs) {
          const nk = rewriteKey(k, this.dots);
          if (nk !== k && !out) {
            out = {};
            for (const k2 in attrs) {
              if (k2 === k) break;
              out[k2] = attrs[k2]!;
            }
          }
          if (out) out[nk] = attrs[k]!;
        }
        if (out) obj = out;
      }
      json = JSON.stringify(obj);
      this.fragments.set(attrs, json);
    }
    return json;
  }

  /**
   * A string body and a parsed one cannot share a field (text vs object: mapper_parsing_exception
   * for whichever comes second), and an index holds both kinds of logs. So, as the OpenTelemetry
   * Collector's Elasticsearch exporter does: text in `body.text`, objects in `body.structured`.
   * An array (no parser makes one; the body parsers keep arrays as text for this reason) goes to
   * `body.text` as its JSON: its elements could be values and objects at once, which no mapping holds.
   */
  private body(b: Body): string {
    if (typeof b === 'string') return '{"text":' + JSON.stringify(b) + '}';
    if (Array.isArray(b)) return '{"text":' + JSON.stringify(JSON.stringify(b)) + '}';
    return '{"structured":' + JSON.stringify(this.dots === 'all' ? dedotDeep(b) : b) + '}';
  }

  /** The source line (without its newline): `@timestamp` keeps the record's nanoseconds. */
  source(r: LogRecord): string {
    let s = '{"@timestamp":"' + r.timestamp + '","observed_timestamp":"' + r.observedTimestamp + '"';
    if (r.severityText !== undefined) s += ',"severity_text":' + JSON.stringify(r.severityText);
    if (r.severityNumber !== undefined) {
      s += ',"severity_number":' + r.severityNumber;
      const level = this.logLevel ? severityLevel(r.severityNumber) : undefined;
      if (level !== undefined) s += ',"log":{"level":"' + level + '"}';
    }
    return s + ',"body":' + this.body(r.body) + ',"attributes":' + this.fragment(r.attributes) + ',"resource":' + this.fragment(r.resource) + this.extra + '}';
  }

  /** Encodes into `buf` (grown when needed); returns it and the byte count. */
  encodeInto(records: readonly LogRecord[], buf: Buffer<ArrayBuffer>): { buf: Buffer<ArrayBuffer>; length: number } {
    let off = 0;
    for (let i = 0; i < records.length; i++) {
      const r = records[i]!;
      const source = this.source(r);
      const action = this.generateId ? this.action(r).prefix + ',"_id":"' + documentId(source) + '"}}\n' : this.action(r).line;
      // A UTF-16 unit never takes more than 3 UTF-8 bytes; +1 for the newline.
      const need = (action.length + source.length) * 3 + 1;
      if (off + need > buf.length) {
        const bigger = Buffer.allocUnsafeSlow(Math.max(buf.length * 2, off + need));
        buf.copy(bigger, 0, 0, off);
        buf = bigger;
      }
      off += buf.write(action, off);
      off += buf.write(source, off);
      buf[off++] = 0x0a;
    }
    return { buf, length: off };
  }
}

/** An action line for one index: `{"create":{"_index":"name"` (closed by `,"_id":…}}`), and the whole line without an id. */
interface Action {
  prefix: string;
  line: string;
}

/** 128 bits of SHA-256 of the source line, base64url (22 characters, like Elasticsearch's own ids in length). */
function documentId(source: string): string {
  return createHash('sha256').update(source).digest('base64url').slice(0, 22);
}

// ---------------------------------------------------------------------------------------------
// Answers

interface BulkItemError {
  type?: string;
  reason?: string;
  caused_by?: { type?: string; reason?: string };
}
interface BulkItem {
  status?: number;
  error?: BulkItemError | string;
}
interface BulkAnswer {
  errors?: boolean;
  items?: Record<string, BulkItem>[];
}

const MAX_REASON = 400;

function itemReason(status: number | undefined, error: BulkItem['error']): string {
  let text: string;
  if (typeof error === 'string') text = error;
  else if (error) {
    text = `${error.type ?? 'error'}: ${error.reason ?? ''}`;
    if (error.caused_by?.reason) text += ` (caused by ${error.caused_by.type ?? 'error'}: ${error.caused_by.reason})`;
  } else text = 'no error given';
  text = `${status ?? 'no status'} ${text}`;
  return text.length > MAX_REASON ? text.slice(0, MAX_REASON) + '…' : text;
}

/**
 * The 2xx answer of a bulk request: `{"errors":bool,"items":[{"<op>":{"status",…,"error"}}]}`,
 * items in request order. An answer without errors is the common case and can be megabytes for
 * 5000 items, so `"errors":false` is looked for at its head (the field precedes `items` in both
 * Elasticsearch and OpenSearch) and the rest is not parsed.
 * Per item: 2xx accepted; 409 on create is version_conflict_engine_exception, the document is
 * already there (a batch sent again), so accepted; 429 (es_rejected_execution_exception, a full
 * write queue) and 5xx retryable; any other 4xx (mapper_parsing_exception, …) never succeeds.
 */
export function classifyBulkAnswer(name: string, body: Buffer, count: number, op: 'index' | 'create'): RecordFailure[] {
  const head = body.toString('latin1', 0, Math.min(body.length, 256));
  const flag = /"errors"\s*:\s*(true|false)/.exec(head);
  if (flag?.[1] === 'false') return [];
  let answer: BulkAnswer;
  try {
    answer = JSON.parse(body.toString('utf8')) as BulkAnswer;
  } catch {
    throw new RetryableError(`output ${name}: the receiver answered 2xx, but not with a bulk response: ${bodyExcerpt(body)}`);
  }
  if (answer.errors === false) return [];
  const items = answer.items;
  if (!Array.isArray(items) || items.length !== count)
    throw new RetryableError(
      `output ${name}: the bulk response has ${Array.isArray(items) ? items.length : 'no'} items for ${count} documents, so which were stored is unknown; sending the batch again`,
    );
  const failed: RecordFailure[] = [];
  for (let i = 0; i < count; i++) {
    const entry = items[i];
    let item: BulkItem | undefined;
    for (const k in entry) {
      item = entry[k];
      break;
    }
    const status = item?.status;
    if (status !== undefined && status >= 200 && status < 300) continue;
    if (status === 409 && op === 'create') continue;
    const retryable = status === undefined || status === 429 || status >= 500;
    failed.push({ index: i, retryable, reason: itemReason(status, item?.error) });
  }
  return failed;
}

// ---------------------------------------------------------------------------------------------
// The output

const KEEP_SCRATCH_BYTES = 8 * 1024 * 1024;
/**
 * Only what classification reads: every item keeps its status (so positions stay: filter_path
 * drops objects left empty, and `items.*.error` alone would shift them), errors keep their
 * reason. Logstash's elasticsearch output sends the same filter by default.
 */
const FILTER_PATH = 'filter_path=errors,items.*.status,items.*.error';

export class ElasticsearchOutput implements Output {
  readonly name: string;
  private readonly client: HttpClient;
  private readonly encoder: BulkEncoder;
  private readonly gzip: boolean;
  private readonly path: string;
  private readonly headers: Record<string, string>;
  private readonly maxBytes: number;
  private readonly scratch: Buffer<ArrayBuffer>[] = [];

  constructor(config: ElasticsearchConfig, ctx: OutputContext) {
    this.name = ctx.name;
    this.encoder = new BulkEncoder(config);
    this.gzip = config.compression === 'gzip';
    this.maxBytes = config.batch.max_bytes;
    this.path = '_bulk?' + FILTER_PATH + (config.pipeline !== undefined ? '&pipeline=' + encodeURIComponent(config.pipeline) : '');
    const headers = { ...config.headers };
    if (config.api_key !== undefined) headers['authorization'] = 'ApiKey ' + encodeApiKey(config.api_key);
    this.client = outputClient(ctx.name, { ...config, headers });
    this.headers = { 'content-type': 'application/x-ndjson' };
    if (this.gzip) this.headers['content-encoding'] = 'gzip';
  }

  async send(records: readonly LogRecord[], signal: AbortSignal): Promise<SendResult> {
    if (records.length === 0) return { bytes: 0 };
    const { buf, length } = this.encoder.encodeInto(records, this.scratch.pop() ?? Buffer.allocUnsafeSlow(256 * 1024));
    let body: Buffer;
    try {
      // A copy, not the scratch itself: undici hands a Buffer body to socket.write and forgets it,
      // so an answer that comes before the body is written would free the scratch while still queued.
      body = this.gzip ? await gzipBody(buf.subarray(0, length)) : Buffer.from(buf.subarray(0, length));
    } finally {
      if (buf.length <= KEEP_SCRATCH_BYTES) this.scratch.push(buf);
    }
    const res = await this.client.request({ method: 'POST', path: this.path, headers: this.headers, body, signal });
    this.throwForStatus(res, length, body.length);
    const failed = classifyBulkAnswer(this.name, res.body, records.length, this.encoder.opType);
    return failed.length > 0 ? { bytes: body.length, failed } : { bytes: body.length };
  }

  private throwForStatus(res: HttpResponse, length: number, wire: number): void {
    const s = res.status;
    if (s === 413) {
      const size = this.gzip ? `${length} bytes (${wire} gzipped)` : `${length} bytes`;
      throw new PermanentError(
        `output ${this.name}: Elasticsearch refused a bulk request of ${size} as too large (413): ` +
          `its http.max_content_length (default 100mb) is below this output's batch.max_bytes (${formatBytes(this.maxBytes)}) ` +
          'or a single record is that large; lower batch.max_bytes or raise http.max_content_length',
      );
    }
    if (s === 401 || s === 403) {
      throw new PermanentError(
        `output ${this.name}: Elasticsearch ${s === 401 ? 'did not accept the credentials' : 'refused access'} (${s}) ` +
          `(check api_key, auth.username/password or auth.bearer_token, and the role's index privileges): ${bodyExcerpt(res.body)}`,
      );
    }
    const err = errorForStatus(this.name, res);
    if (err) throw err;
  }

  async flush(): Promise<void> {}

  close(): Promise<void> {
    return this.client.close();
  }
}

/** `id:api_key` is base64-encoded as Elasticsearch expects; an already encoded key (no `:`) is sent as is. */
export function encodeApiKey(key: string): string {
  return key.includes(':') ? Buffer.from(key).toString('base64') : key;
}

export function createElasticsearchOutput(config: ElasticsearchConfig, ctx: OutputContext): Output {
  return new ElasticsearchOutput(config, ctx);
}
