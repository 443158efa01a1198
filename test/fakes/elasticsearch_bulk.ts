import { randomBytes } from 'node:crypto';
import { ReceiverFake, type Answer, type FakeServerOptions, type ReceivedRequest } from '../../agent/demo/fake_http_server.ts';

/**
 * A protocol-faithful Elasticsearch bulk endpoint (`POST /_bulk`, `POST /<index>/_bulk`), as the
 * bulk API reference documents it (https://www.elastic.co/docs/api/doc/elasticsearch/operation/operation-bulk)
 * and as 8.x behaves:
 * - The body is NDJSON: an action line (`{"index"|"create"|"update"|"delete":{…}}`) then, except for
 *   delete, a source line; it must end with a newline, else the whole request is a 400
 *   "The bulk request must be terminated by a newline [\n]". A malformed action line fails the
 *   whole request (400); a source line that is not a JSON object fails only its item (400
 *   mapper_parsing_exception), since sources are parsed by the shard that indexes them.
 * - `_type` in an action line is refused (8.x: "Action/metadata line [n] contains an unknown
 *   parameter [_type]"). Content-Type must be application/x-ndjson or application/json (else 406).
 * - Answers 200 `{"took","errors","items":[{"<op>":{"_index","_id","status","result"|"error"}}]}`
 *   in request order; `filter_path` is applied as Elasticsearch's response filtering does: only the
 *   named paths stay, `*` matches one key, and objects left empty are dropped, even from arrays.
 * - Index names are checked (lowercase, no \ / * ? " < > | space , # :, no leading - _ +);
 *   names matching a data stream template (`logs-*-*`, `metrics-*-*`, `traces-*-*`: the built-in
 *   templates of 8.x) are data streams: only `create` ("only write ops with an op_type of create are
 *   allowed in data streams"), `@timestamp` required and a date, documents go to a `.ds-` backing index.
 * - `create` of an `_id` that exists is 409 version_conflict_engine_exception; `index` overwrites (200).
 * - Dynamic mapping is tracked per index, only as far as "object or value": dotted keys expand into
 *   objects exactly as Elasticsearch expands them, and a field seen as one and then as the other is
 *   a 400 mapper_parsing_exception for that document (the mapping is left as it was).
 * - `?pipeline=` must name a known pipeline (else item 400 "pipeline with id [x] does not exist").
 * - `http.max_content_length` (default 100mb) over the decompressed body: 413 with an empty body.
 * - Optional security: without valid credentials 401 security_exception with WWW-Authenticate.
 * Injectable per-item failures for the next request (failNextItems); whole-request faults (status,
 * delay, reset) come from FakeHttpServer.inject.
 */

export interface StoredDocument {
  _id: string;
  _source: Record<string, unknown>;
  /** The ingest pipeline it went through. */
  pipeline?: string;
}

export interface ItemError {
  status: number;
  type: string;
  reason: string;
}

/** What a full write queue answers per item (thread_pool.write.queue_size exceeded). */
export const REJECTED_EXECUTION: ItemError = {
  status: 429,
  type: 'es_rejected_execution_exception',
  reason:
    'rejected execution of coordinating operation [coordinating_and_primary_bytes=0, replica_bytes=0, all_bytes=0, coordinating_operation_bytes=1024, max_coordinating_and_primary_bytes=107374182]',
};

export const mapperParsing = (field: string, type = 'long'): ItemError => ({
  status: 400,
  type: 'mapper_parsing_exception',
  reason: `failed to parse field [${field}] of type [${type}] in document with id 'x'. Preview of field's value: 'not a number'`,
});

export interface ElasticsearchBulkOptions extends FakeServerOptions {
  /** http.max_content_length; default 100mb as in Elasticsearch. */
  maxContentLength?: number;
  /** Glob patterns of index templates with `data_stream: {}`. */
  dataStreamTemplates?: string[];
  /** Ingest pipelines by id: each may change the source. */
  pipelines?: Record<string, (source: Record<string, unknown>) => void>;
  /** Turn security on: only these credentials are accepted. */
  security?: { users?: Record<string, string>; bearerTokens?: string[]; apiKeys?: { id: string; key: string }[] };
}

type Kind = 'object' | 'value';

interface IndexState {
  docs: Map<string, StoredDocument>;
  order: string[];
  mapping: Map<string, Kind>;
  dataStream: boolean;
  backingIndex: string;
}

export interface ResponseItem {
  _index: string;
  _id: string | null;
  status: number;
  result?: string;
  _version?: number;
  _seq_no?: number;
  _primary_term?: number;
  _shards?: { total: number; successful: number; failed: number };
  error?: { type: string; reason: string; caused_by?: { type: string; reason: string } };
}

const BAD_INDEX_CHARS = /[\\/*?"<>| ,#:]/;
const DATE = /^\d{4}-\d{2}-\d{2}(T\d{2}(:\d{2}(:\d{2}([.,]\d{1,9})?)?)?(Z|[+-]\d{2}(:?\d{2})?)?)?$/;

function globToRegExp(glob: string): RegExp {
  return new RegExp('^' + glob.split('*').map((s) => s.replace(/[.+?^${}()|[\]\\]/g, '\\$&')).join('.*') + '$');
}

function esError(status: number, type: string, reason: string): Answer {
  return {
    status,
    headers: { 'content-type': 'application/json' },
    body: JSON.stringify({ error: { root_cause: [{ type, reason }], type, reason }, status }),
  };
}

export class ElasticsearchBulk extends ReceiverFake {
  private readonly indices = new Map<string, IndexState>();
  private readonly maxContentLength: number;
  private readonly dataStreamTemplates: RegExp[];
  private readonly pipelines: Record<string, (source: Record<string, unknown>) => void>;
  private readonly security: ElasticsearchBulkOptions['security'];
  private pendingItemFaults = new Map<number, ItemError>();
  private seqNo = 0;
  private readonly day = new Date().toISOString().slice(0, 10).replaceAll('-', '.');
  /** Action lines of every bulk request, as parsed, in order (for tests of the action side). */
  readonly actions: { op: string; meta: Record<string, unknown> }[][] = [];
  /** Every bulk answer as built, before filter_path. */
  readonly answers: { errors: boolean; items: Record<string, ResponseItem>[] }[] = [];

  private constructor(opts: ElasticsearchBulkOptions) {
    super();
    this.maxContentLength = opts.maxContentLength ?? 100 * 1024 * 1024;
    this.dataStreamTemplates = (opts.dataStreamTemplates ?? ['logs-*-*', 'metrics-*-*', 'traces-*-*']).map(globToRegExp);
    this.pipelines = opts.pipelines ?? {};
    this.security = opts.security;
  }

  static start(opts: ElasticsearchBulkOptions = {}): Promise<ElasticsearchBulk> {
    return new ElasticsearchBulk(opts).listen(opts);
  }

  /** The next bulk request answers the items at these positions (0-based) with `error`, storing nothing for them. */
  failNextItems(positions: Iterable<number>, error: ItemError): void {
    for (const p of positions) this.pendingItemFaults.set(p, error);
  }

  /** Documents of an index or data stream, in the order they were first stored. */
  documents(name: string): StoredDocument[] {
    const ix = this.indices.get(name);
    return ix ? ix.order.map((id) => ix.docs.get(id)!) : [];
  }

  /** Every index and data stream that holds documents, sorted. */
  names(): string[] {
    return [...this.indices.keys()].sort();
  }

  isDataStream(name: string): boolean {
    return this.indices.get(name)?.dataStream ?? false;
  }

  /** "object" or "value" for a field path of an index's dynamic mapping. */
  mappingOf(name: string, field: string): Kind | undefined {
    return this.indices.get(name)?.mapping.get(field);
  }

  protected handle(req: ReceivedRequest): Answer {
    const url = new URL(req.path, 'http://x');
    const m = /^\/(?:([^/]+)\/)?_bulk\/?$/.exec(url.pathname);
    if (!m) return esError(404, 'no_handler_found', `no handler found for uri [${url.pathname}] and method [${req.method}]`);
    if (req.method !== 'POST' && req.method !== 'PUT')
      return { status: 405, body: JSON.stringify({ error: `Incorrect HTTP method for uri [${req.path}] and method [${req.method}], allowed: [POST, PUT]`, status: 405 }) };
    const denied = this.authenticate(req);
    if (denied) return denied;
    if (req.body.length > this.maxContentLength) return { status: 413, body: '' };
    const ct = String(req.headers['content-type'] ?? '').split(';')[0]!.trim().toLowerCase();
    if (ct !== 'application/x-ndjson' && ct !== 'application/json')
      return { status: 406, body: JSON.stringify({ error: `Content-Type header [${req.headers['content-type'] ?? ''}] is not supported`, status: 406 }) };
    const pipeline = url.searchParams.get('pipeline') ?? undefined;
    const defaultIndex = m[1] !== undefined ? decodeURIComponent(m[1]) : undefined;
    const faults = this.pendingItemFaults;
    this.pendingItemFaults = new Map();

    const text = req.body.toString('utf8');
    if (text.length === 0) return esError(400, 'action_request_validation_exception', 'Validation Failed: 1: no requests added;');
    if (!text.endsWith('\n')) return esError(400, 'illegal_argument_exception', 'The bulk request must be terminated by a newline [\\n]');
    const lines = text.split('\n');
    lines.pop(); // after the final newline

    // The whole body is parsed before anything is indexed: a bad action line anywhere refuses all.
    const ops: { op: string; meta: Record<string, unknown>; source?: string }[] = [];
    for (let i = 0; i < lines.length; i++) {
      const line = lines[i]!;
      if (line.trim() === '') continue; // Elasticsearch skips empty lines between actions
      let action: unknown;
      try {
        action = JSON.parse(line);
      } catch (e) {
        return esError(400, 'x_content_parse_exception', `[${i + 1}:1] Unexpected character in action/metadata line: ${(e as Error).message}`);
      }
      if (action === null || typeof action !== 'object' || Array.isArray(action))
        return esError(400, 'illegal_argument_exception', `Malformed action/metadata line [${i + 1}], expected START_OBJECT or END_OBJECT but found [VALUE_STRING]`);
      const keys = Object.keys(action);
      const op = keys[0];
      if (keys.length !== 1 || !['index', 'create', 'update', 'delete'].includes(op!))
        return esError(400, 'illegal_argument_exception', `Malformed action/metadata line [${i + 1}], expected one of [create, delete, index, update] but found [${op}]`);
      const meta = (action as Record<string, unknown>)[op!] as Record<string, unknown>;
      for (const k of Object.keys(meta ?? {}))
        if (!['_index', '_id', 'routing', 'pipeline', 'require_alias', 'dynamic_templates', 'if_seq_no', 'if_primary_term', 'version', 'version_type', 'op_type'].includes(k))
          return esError(400, 'illegal_argument_exception', `Action/metadata line [${i + 1}] contains an unknown parameter [${k}]`);
      if (meta._index === undefined && defaultIndex === undefined) return esError(400, 'action_request_validation_exception', 'Validation Failed: 1: index is missing;');
      if (op === 'delete') {
        ops.push({ op: op!, meta });
        continue;
      }
      if (i + 1 >= lines.length) return esError(400, 'illegal_argument_exception', `The bulk request must be terminated by a newline [\\n]`);
      ops.push({ op: op!, meta, source: lines[++i] });
    }
    if (ops.length === 0) return esError(400, 'action_request_validation_exception', 'Validation Failed: 1: no requests added;');
    this.actions.push(ops.map(({ op, meta }) => ({ op, meta })));

    const started = Date.now();
    const items: Record<string, ResponseItem>[] = [];
    for (let i = 0; i < ops.length; i++) {
      const { op, meta, source } = ops[i]!;
      const index = (meta._index as string | undefined) ?? defaultIndex!;
      items.push({ [op]: this.apply(op, index, meta, source, faults.get(i), (meta.pipeline as string | undefined) ?? pipeline) });
    }
    const errors = items.some((it) => Object.values(it)[0]!.error !== undefined);
    const answer = { took: Date.now() - started, errors, items };
    this.answers.push({ errors, items });
    const filter = url.searchParams.get('filter_path');
    const out = filter ? filterPath(answer, filter) : answer;
    return { status: 200, headers: { 'content-type': 'application/json' }, body: JSON.stringify(out ?? {}) };
  }

  private apply(op: string, index: string, meta: Record<string, unknown>, source: string | undefined, fault: ItemError | undefined, pipeline: string | undefined): ResponseItem {
    const id = typeof meta._id === 'string' ? meta._id : undefined;
    const fail = (status: number, type: string, reason: string, caused_by?: { type: string; reason: string }): ResponseItem => ({
      _index: index,
      _id: id ?? null,
      status,
      error: caused_by ? { type, reason, caused_by } : { type, reason },
    });
    if (fault) return fail(fault.status, fault.type, fault.reason);
    const badName = invalidIndexName(index);
    if (badName) return fail(400, 'invalid_index_name_exception', `Invalid index name [${index}], ${badName}`);
    if (op !== 'index' && op !== 'create') return fail(400, 'illegal_argument_exception', `the fake supports index and create only, not ${op}`);

    let doc: unknown;
    try {
      doc = JSON.parse(source!);
    } catch (e) {
      return fail(400, 'mapper_parsing_exception', 'failed to parse', { type: 'x_content_parse_exception', reason: (e as Error).message });
    }
    if (doc === null || typeof doc !== 'object' || Array.isArray(doc))
      return fail(400, 'mapper_parsing_exception', 'failed to parse', { type: 'not_x_content_exception', reason: 'Compressor detection can only be called on some xcontent bytes or compressed xcontent bytes' });
    const sourceObj = doc as Record<string, unknown>;

    if (pipeline !== undefined) {
      const p = this.pipelines[pipeline];
      if (!p) return fail(400, 'illegal_argument_exception', `pipeline with id [${pipeline}] does not exist`);
      p(sourceObj);
    }

    const existing = this.indices.get(index);
    const dataStream = existing ? existing.dataStream : this.dataStreamTemplates.some((re) => re.test(index));
    if (dataStream) {
      if (op !== 'create') return fail(400, 'illegal_argument_exception', `only write ops with an op_type of create are allowed in data streams`);
      const ts = sourceObj['@timestamp'];
      if (ts === undefined) return fail(400, 'mapper_parsing_exception', 'failed to parse: data stream timestamp field [@timestamp] is missing');
      if (typeof ts !== 'string' || !DATE.test(ts) || Number.isNaN(Date.parse(ts)))
        return fail(400, 'mapper_parsing_exception', `failed to parse field [@timestamp] of type [date] in document with id '${id ?? ''}'. Preview of field's value: '${String(ts)}'`);
    }

    const ix: IndexState = existing ?? {
      docs: new Map(),
      order: [],
      mapping: new Map(),
      dataStream,
      backingIndex: dataStream ? `.ds-${index}-${this.day}-000001` : index,
    };
    const storedIndex = ix.backingIndex;
    if (id !== undefined && ix.docs.has(id)) {
      if (op === 'create')
        return { ...fail(409, 'version_conflict_engine_exception', `[${id}]: version conflict, document already exists (current version [1])`), _index: storedIndex };
    }
    const conflict = mapDocument(ix.mapping, sourceObj);
    if (conflict) return { ...fail(400, 'mapper_parsing_exception', conflict), _index: storedIndex };
    if (!existing) this.indices.set(index, ix);

    const docId = id ?? randomBytes(15).toString('base64url');
    const updated = ix.docs.has(docId);
    ix.docs.set(docId, { _id: docId, _source: sourceObj, ...(pipeline !== undefined ? { pipeline } : {}) });
    if (!updated) ix.order.push(docId);
    return {
      _index: storedIndex,
      _id: docId,
      _version: 1,
      result: updated ? 'updated' : 'created',
      _shards: { total: 2, successful: 1, failed: 0 },
      _seq_no: this.seqNo++,
      _primary_term: 1,
      status: updated ? 200 : 201,
    };
  }

  private authenticate(req: ReceivedRequest): Answer | undefined {
    const sec = this.security;
    if (!sec) return undefined;
    const h = String(req.headers['authorization'] ?? '');
    const [scheme, value = ''] = h.split(/ (.*)/s);
    let ok = false;
    if (scheme === 'Basic') {
      const [user, pass] = Buffer.from(value, 'base64').toString('utf8').split(/:(.*)/s);
      ok = user !== undefined && sec.users?.[user] === pass;
    } else if (scheme === 'Bearer') ok = sec.bearerTokens?.includes(value) ?? false;
    else if (scheme === 'ApiKey') {
      const decoded = Buffer.from(value, 'base64').toString('utf8');
      ok = sec.apiKeys?.some((k) => `${k.id}:${k.key}` === decoded) ?? false;
    }
    if (ok) return undefined;
    const reason = h === '' ? `missing authentication credentials for REST request [${req.path}]` : `unable to authenticate with provided credentials and anonymous access is not allowed for this request`;
    const answer = esError(401, 'security_exception', reason);
    answer.headers!['www-authenticate'] = 'Basic realm="security", charset="UTF-8", Bearer realm="security", ApiKey';
    return answer;
  }
}

/** Index name rules of MetadataCreateIndexService.validateIndexOrAliasName, worded like Elasticsearch. */
function invalidIndexName(name: string): string | undefined {
  if (name !== name.toLowerCase()) return 'must be lowercase';
  if (BAD_INDEX_CHARS.test(name)) return 'must not contain the following characters [\\, /, *, ?, ", <, >, |, space, ,, #, :]';
  if (/^[-_+]/.test(name)) return "must not start with '_', '-', or '+'";
  if (name === '.' || name === '..') return "must not be '.' or '..'";
  if (Buffer.byteLength(name) > 255) return 'index name is too long';
  return undefined;
}

/**
 * Walks a document the way Elasticsearch's DocumentParser does for dynamic mapping: a key `a.b`
 * is the object `a` holding `b`; arrays hold values of their field; null maps nothing. Returns the
 * mapper_parsing_exception reason of the first object/value conflict (with the index's mapping or
 * within the document), or records the new fields and returns undefined.
 */
function mapDocument(mapping: Map<string, Kind>, doc: Record<string, unknown>): string | undefined {
  const added = new Map<string, Kind>();
  const kindOf = (path: string) => added.get(path) ?? mapping.get(path);
  const put = (path: string, name: string, kind: Kind): string | undefined => {
    const had = kindOf(path);
    if (had === 'object' && kind === 'value') return `object mapping for [${path}] tried to parse field [${name}] as object, but found a concrete value`;
    if (had === 'value' && kind === 'object')
      return `Could not dynamically add mapping for field [${path}]. Existing mapping for [${path}] must be of type object but found [keyword].`;
    if (!had) added.set(path, kind);
    return undefined;
  };
  const walk = (obj: Record<string, unknown>, prefix: string): string | undefined => {
    for (const [key, value] of Object.entries(obj)) {
      if (key.trim() === '') return `field name cannot be an empty string`;
      const parts = key.split('.');
      if (parts.some((p) => p === '')) return `Object field starting or ending with a [.] makes object resolution ambiguous: [${key}]`;
      let path = prefix;
      for (let i = 0; i < parts.length - 1; i++) {
        path = path ? `${path}.${parts[i]}` : parts[i]!;
        const e = put(path, parts[i]!, 'object');
        if (e) return e;
      }
      const last = parts[parts.length - 1]!;
      path = path ? `${path}.${last}` : last;
      const e = walkValue(value, path, last);
      if (e) return e;
    }
    return undefined;
  };
  const walkValue = (value: unknown, path: string, name: string): string | undefined => {
    if (value === null) return undefined;
    if (Array.isArray(value)) {
      for (const v of value) {
        const e = walkValue(v, path, name);
        if (e) return e;
      }
      return undefined;
    }
    if (typeof value === 'object') return put(path, name, 'object') ?? walk(value as Record<string, unknown>, path);
    return put(path, name, 'value');
  };
  const e = walk(doc, '');
  if (e) return e;
  for (const [k, v] of added) mapping.set(k, v);
  return undefined;
}

/**
 * Elasticsearch's response filtering (`filter_path`): comma-separated dotted paths, `*` for any one
 * key; arrays are filtered element by element; an object with nothing left is dropped, in arrays
 * too; an empty result is `{}`.
 */
export function filterPath(value: unknown, filter: string): unknown {
  const paths = filter.split(',').map((p) => p.trim().split('.')).filter((p) => p.length > 0 && p[0] !== '');
  const match = (seg: string, key: string) => seg === '*' || seg === key || (seg.includes('*') && globToRegExp(seg).test(key));
  const visit = (v: unknown, rest: string[][]): unknown => {
    if (rest.some((p) => p.length === 0)) return v; // a path ended here: keep all below
    if (Array.isArray(v)) {
      const out = v.map((x) => visit(x, rest)).filter((x) => x !== undefined);
      return out.length > 0 ? out : undefined;
    }
    if (v === null || typeof v !== 'object') return undefined;
    const out: Record<string, unknown> = {};
    for (const [k, x] of Object.entries(v)) {
      const next = rest.filter((p) => match(p[0]!, k)).map((p) => p.slice(1));
      if (next.length === 0) continue;
      const kept = visit(x, next);
      if (kept !== undefined) out[k] = kept;
    }
    return Object.keys(out).length > 0 ? out : undefined;
  };
  return visit(value, paths) ?? {};
}
