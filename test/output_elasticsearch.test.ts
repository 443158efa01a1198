import { execFileSync } from 'node:child_process';
import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { gzipSync } from 'node:zlib';
import { beforeAll, describe, expect, it, vi } from 'vitest';
import type { Attributes, LogRecord } from '../agent/record.ts';
import { classifyBulkAnswer, ElasticsearchOutput, elasticsearchConfig, encodeApiKey, IndexPattern, type ElasticsearchConfig } from '../outputs/elasticsearch.ts';
import { PermanentError, RetryableError } from '../outputs/output.ts';
import { outputPlugins } from '../outputs/registry.ts';
import { severityLevel } from '../parsers/severity.ts';
import { ElasticsearchBulk, filterPath, mapperParsing, REJECTED_EXECUTION, type ElasticsearchBulkOptions } from './fakes/elasticsearch_bulk.ts';
import { outputSuite, podResource, recordBuilder, send, stderrAttrs, stdoutAttrs, TRICKY_TEXT } from './helpers/output_fixtures.ts';

const { scratch: dir, ctx, track } = outputSuite('kta-es-', { name: 'es' });

async function fake(opts: ElasticsearchBulkOptions = {}): Promise<ElasticsearchBulk> {
  return track.receiver(await ElasticsearchBulk.start(opts));
}

function config(endpoint: string, extra: Record<string, unknown> = {}): ElasticsearchConfig {
  return elasticsearchConfig.parse({ type: 'elasticsearch', inputs: ['containers'], endpoint, ...extra });
}

function output(endpoint: string, extra: Record<string, unknown> = {}): ElasticsearchOutput {
  return track.output(new ElasticsearchOutput(config(endpoint, extra), ctx));
}

const resource = podResource({ 'k8s.deployment.name': 'web' });
const record = recordBuilder(resource);

/** The document Elasticsearch should hold for a record whose keys need no rewriting. */
function expectedDoc(r: LogRecord, attributes: Attributes = r.attributes, res: Attributes = r.resource): Record<string, unknown> {
  return {
    '@timestamp': r.timestamp,
    observed_timestamp: r.observedTimestamp,
    ...(r.severityText !== undefined ? { severity_text: r.severityText } : {}),
    ...(r.severityNumber !== undefined ? { severity_number: r.severityNumber, log: { level: severityLevel(r.severityNumber) } } : {}),
    body: typeof r.body === 'string' ? { text: r.body } : Array.isArray(r.body) ? { text: JSON.stringify(r.body) } : { structured: r.body },
    attributes,
    resource: res,
  };
}

const TRICKY = [
  ...TRICKY_TEXT,
  // What the tailer makes of invalid UTF-8 on disk: replacement characters.
  Buffer.from([0x62, 0x61, 0x64, 0x20, 0xc3, 0x28, 0x20, 0xff, 0xfe]).toString('utf8'),
  '{"looks":"like json but is a string"}',
  '',
];

function variedRecords(n: number): LogRecord[] {
  const out: LogRecord[] = [];
  for (let i = 0; i < n; i++) {
    const ns = String(i).padStart(9, '0');
    const ts = `2026-11-21T10:00:${String(i % 60).padStart(2, '0')}.${ns}Z`;
    const kind = i % 4;
    const body: LogRecord['body'] =
      kind === 0 ? TRICKY[i % TRICKY.length]! : kind === 1 ? { msg: `request ${i}`, status: 200 + (i % 3), nested: { path: `/x/${i}`, tags: ['a', 'b'] } } : kind === 2 ? [`item ${i}`, 'two'] : `plain line ${i}`;
    out.push(
      record(body, {
        timestamp: ts,
        observedTimestamp: `2026-11-21T10:01:00.${ns}Z`,
        attributes: i % 3 === 0 ? stderrAttrs : stdoutAttrs,
        ...(i % 5 === 0 ? { severityText: 'ERROR', severityNumber: 17 } : i % 5 === 1 ? { severityText: 'INFO' } : {}),
      }),
    );
  }
  return out;
}

const sources = (f: ElasticsearchBulk, index: string) => f.documents(index).map((d) => d._source);

// ---------------------------------------------------------------------------------------------

describe('elasticsearch config', () => {
  const parse = (extra: Record<string, unknown>) => elasticsearchConfig.safeParse({ type: 'elasticsearch', inputs: ['c'], endpoint: 'http://es:9200', ...extra });
  const messages = (extra: Record<string, unknown>) => {
    const r = parse(extra);
    return r.success ? [] : r.error.issues.map((i) => `${i.path.join('.')}: ${i.message}`);
  };

  it('is registered as type elasticsearch', () => {
    expect(outputPlugins.elasticsearch.schema).toBe(elasticsearchConfig);
  });

  it('defaults to a daily index, op index, labels dedotted, no compression', () => {
    const c = config('http://es:9200');
    expect(c).toMatchObject({ mode: 'index', replace_dots: 'labels', compression: 'none', generate_id: false });
    expect([c.index, c.op_type, c.data_stream, c.pipeline, c.api_key]).toEqual([undefined, undefined, undefined, undefined, undefined]);
  });

  it('refuses index patterns Elasticsearch would refuse, naming the key', () => {
    expect(messages({ index: 'logs-%Q' })).toEqual([expect.stringMatching(/^index: unknown placeholder %Q/)]);
    expect(messages({ index: 'Logs-%Y' })).toEqual([expect.stringMatching(/^index: .*"Logs-2026".*must be lowercase/)]);
    expect(messages({ index: 'my logs' })).toEqual([expect.stringMatching(/^index: .*must not contain " "/)]);
    expect(messages({ index: '_logs' })).toEqual([expect.stringMatching(/^index: .*must not start with -, _ or \+/)]);
    expect(messages({ index: 'logs-%' })).toEqual([expect.stringMatching(/^index: unknown placeholder %/)]);
    expect(messages({ index: 'k8s-%y.%m.%d-%H' })).toEqual([]);
  });

  it('keeps data stream rules: create only, no index, a dataset without "-"', () => {
    expect(messages({ mode: 'data_stream', op_type: 'index' })).toEqual([expect.stringMatching(/^op_type: data streams accept only op_type create/)]);
    expect(messages({ mode: 'data_stream', index: 'x' })).toEqual([expect.stringMatching(/^index: index is for mode: index/)]);
    expect(messages({ mode: 'data_stream', data_stream: { dataset: 'k8s-logs' } })).toEqual([expect.stringMatching(/^data_stream.dataset: must not contain "-"/)]);
    expect(messages({ mode: 'data_stream', data_stream: { namespace: 'Prod' } })).toEqual([expect.stringMatching(/^data_stream.namespace: must be lowercase/)]);
    expect(messages({ data_stream: { dataset: 'x' } })).toEqual([expect.stringMatching(/^data_stream: data_stream is for mode: data_stream/)]);
  });

  it('takes one kind of credentials', () => {
    expect(messages({ api_key: 'abc', auth: { username: 'u', password: 'p' } })).toEqual(['api_key: api_key and auth are both set; pick one']);
    expect(messages({ api_key: 'abc', headers: { Authorization: 'x' } })).toEqual(['api_key: api_key and headers.Authorization are both set; pick one']);
  });
});

// ---------------------------------------------------------------------------------------------

describe('elasticsearch output against a bulk endpoint', () => {
  it('stores every document as sent, field by field, with index actions and no _type or _id', async () => {
    const f = await fake();
    const o = output(f.url);
    const records = variedRecords(120);
    const res = await send(o, records);
    expect(res.failed).toBeUndefined();
    expect(res.bytes).toBe(f.server.requests[0]!.wireBytes);
    expect(f.names()).toEqual(['kube-telemetry-agent-2026.11.21']);
    expect(sources(f, 'kube-telemetry-agent-2026.11.21')).toEqual(records.map((r) => expectedDoc(r)));
    expect(f.actions[0]).toEqual(records.map(() => ({ op: 'index', meta: { _index: 'kube-telemetry-agent-2026.11.21' } })));
    const req = f.server.requests[0]!;
    expect(req.path).toBe('/_bulk?filter_path=errors,items.*.status,items.*.error');
    expect(req.headers['content-type']).toBe('application/x-ndjson');
    expect(req.headers['content-encoding']).toBeUndefined();
    // Action line, source line, ..., final newline.
    const lines = req.body.toString('utf8').split('\n');
    expect(lines).toHaveLength(records.length * 2 + 1);
    expect(lines.at(-1)).toBe('');
  });

  it('puts @timestamp first and keeps its nanoseconds as the record has them', async () => {
    const f = await fake();
    await send(output(f.url), [record('x', { timestamp: '2026-11-21T10:00:00.000000001Z' })]);
    const line = f.server.requests[0]!.body.toString('utf8').split('\n')[1]!;
    expect(line.startsWith('{"@timestamp":"2026-11-21T10:00:00.000000001Z","observed_timestamp":')).toBe(true);
  });

  it('names indices by each record’s UTC day, across midnight and from offsets', async () => {
    const f = await fake();
    const o = output(f.url, { index: 'logs-%Y.%m.%d' });
    const records = [
      record('before midnight', { timestamp: '2026-12-31T23:59:59.999999999Z' }),
      record('after midnight', { timestamp: '2027-01-01T00:00:00.000000001Z' }),
      record('before again', { timestamp: '2026-12-31T23:59:59.500000000Z' }),
      // 01:30 at +02:00 is 23:30 UTC the day before.
      record('an offset', { timestamp: '2027-01-01T01:30:00.000000000+02:00' }),
      // Not a time at all: the day the agent read it.
      record('no time', { timestamp: 'yesterday', observedTimestamp: '2027-01-01T00:00:05.000000000Z' }),
    ];
    const res = await send(o, records);
    expect(res.failed).toBeUndefined();
    expect(f.names()).toEqual(['logs-2026.12.31', 'logs-2027.01.01']);
    expect(sources(f, 'logs-2026.12.31')).toEqual([records[0], records[2], records[3]].map((r) => expectedDoc(r!)));
    expect(sources(f, 'logs-2027.01.01')).toEqual([records[1], records[4]].map((r) => expectedDoc(r!)));
    expect(f.actions[0]!.map((a) => a.meta._index)).toEqual(['logs-2026.12.31', 'logs-2027.01.01', 'logs-2026.12.31', 'logs-2026.12.31', 'logs-2027.01.01']);
  });

  it('formats an index name once per distinct day, not per record', async () => {
    const f = await fake();
    const o = output(f.url, { index: 'logs-%Y.%m.%d' });
    const spy = vi.spyOn(IndexPattern.prototype, 'name');
    try {
      const records = Array.from({ length: 1000 }, (_, i) =>
        record(`r${i}`, { timestamp: i % 2 ? `2026-11-21T23:59:${String(i % 60).padStart(2, '0')}.000000000Z` : `2026-11-22T00:00:${String(i % 60).padStart(2, '0')}.000000000Z` }),
      );
      await send(o, records);
      expect(spy).toHaveBeenCalledTimes(2);
      await send(o, records);
      expect(spy).toHaveBeenCalledTimes(2);
    } finally {
      spy.mockRestore();
    }
    expect(f.documents('logs-2026.11.21')).toHaveLength(1000);
    expect(f.documents('logs-2026.11.22')).toHaveLength(1000);
  });

  it('fills %y %H and %% too, and a fixed name is taken as is', async () => {
    const f = await fake();
    await send(output(f.url, { index: 'k8s-%y%m%d-%H' }), [
      record('a', { timestamp: '2026-11-21T09:59:59.999999999Z' }),
      record('b', { timestamp: '2026-11-21T10:00:00.000000000Z' }),
    ]);
    expect(f.names()).toEqual(['k8s-261121-09', 'k8s-261121-10']);
    const g = await fake();
    await send(output(g.url, { index: 'all-logs' }), [record('a'), record('b', { timestamp: '2030-01-01T00:00:00.000000000Z' })]);
    expect(g.names()).toEqual(['all-logs']);
    expect(sources(g, 'all-logs')).toHaveLength(2);
  });

  it('writes a data stream with create, @timestamp and the data_stream fields', async () => {
    const f = await fake();
    const o = output(f.url, { mode: 'data_stream', data_stream: { dataset: 'kubernetes.containers', namespace: 'prod' } });
    const records = variedRecords(20);
    const res = await send(o, records);
    expect(res.failed).toBeUndefined();
    const name = 'logs-kubernetes.containers-prod';
    expect(f.names()).toEqual([name]);
    expect(f.isDataStream(name)).toBe(true);
    expect(f.actions[0]!.every((a) => a.op === 'create' && a.meta._index === name)).toBe(true);
    expect(sources(f, name)).toEqual(records.map((r) => ({ ...expectedDoc(r), data_stream: { type: 'logs', dataset: 'kubernetes.containers', namespace: 'prod' } })));
  });

  it('defaults the data stream to logs-kubernetes-default', async () => {
    const f = await fake();
    await send(output(f.url, { mode: 'data_stream' }), [record('x')]);
    expect(f.names()).toEqual(['logs-kubernetes-default']);
  });

  it('a 400 for one item of 1000: exactly that index fails, not retryable; the other 999 are stored', async () => {
    const f = await fake();
    const o = output(f.url);
    const records = variedRecords(1000);
    f.failNextItems([417], mapperParsing('body.structured.status'));
    const res = await send(o, records);
    expect(res.failed).toEqual([
      { index: 417, retryable: false, reason: "400 mapper_parsing_exception: failed to parse field [body.structured.status] of type [long] in document with id 'x'. Preview of field's value: 'not a number'" },
    ]);
    expect(sources(f, 'kube-telemetry-agent-2026.11.21')).toEqual(records.filter((_, i) => i !== 417).map((r) => expectedDoc(r)));
  });

  it('429 items are retryable, and sent again they are stored', async () => {
    const f = await fake();
    const o = output(f.url);
    const records = variedRecords(10);
    f.failNextItems([3, 4, 5], REJECTED_EXECUTION);
    const res = await send(o, records);
    expect(res.failed).toEqual([3, 4, 5].map((index) => ({ index, retryable: true, reason: `429 es_rejected_execution_exception: ${REJECTED_EXECUTION.reason}` })));
    expect(f.documents('kube-telemetry-agent-2026.11.21')).toHaveLength(7);
    expect((await send(o, records.slice(3, 6))).failed).toBeUndefined();
    const stored = sources(f, 'kube-telemetry-agent-2026.11.21');
    expect(stored).toHaveLength(10);
    expect(new Set(stored.map((d) => JSON.stringify(d)))).toEqual(new Set(records.map((r) => JSON.stringify(expectedDoc(r)))));
  });

  it('5xx items are retryable; other 4xx items (404, 403 on the index) are not', async () => {
    const f = await fake();
    const o = output(f.url);
    f.failNextItems([0], { status: 503, type: 'unavailable_shards_exception', reason: '[logs][0] primary shard is not active' });
    f.failNextItems([1], { status: 404, type: 'index_not_found_exception', reason: 'no such index [logs] and [action.auto_create_index] is [false]' });
    f.failNextItems([2], { status: 403, type: 'security_exception', reason: 'action [indices:data/write/bulk[s]] is unauthorized for user [agent]' });
    const res = await send(o, variedRecords(4));
    expect(res.failed?.map((x) => [x.index, x.retryable, x.reason.slice(0, 3)])).toEqual([
      [0, true, '503'],
      [1, false, '404'],
      [2, false, '403'],
    ]);
  });

  it('a 409 on create (the document is already there: a batch sent again) counts as accepted', async () => {
    const f = await fake();
    const o = output(f.url, { op_type: 'create', generate_id: true });
    const records = variedRecords(50);
    expect((await send(o, records)).failed).toBeUndefined();
    const res = await send(o, records);
    expect(res.failed).toBeUndefined();
    // The second answer really was 50 version conflicts, and nothing was stored twice.
    const second = f.answers[1]!;
    expect(second.errors).toBe(true);
    expect(second.items.map((it) => [it.create!.status, it.create!.error?.type])).toEqual(records.map(() => [409, 'version_conflict_engine_exception']));
    expect(sources(f, 'kube-telemetry-agent-2026.11.21')).toEqual(records.map((r) => expectedDoc(r)));
    // Ids are stable: the same record gives the same id, different records different ids.
    const ids = f.actions[0]!.map((a) => a.meta._id);
    expect(f.actions[1]!.map((a) => a.meta._id)).toEqual(ids);
    expect(new Set(ids).size).toBe(50);
  });

  it('a 409 on index (a version conflict we did not ask for) is not accepted', async () => {
    const f = await fake();
    const o = output(f.url);
    f.failNextItems([1], { status: 409, type: 'version_conflict_engine_exception', reason: '[a]: version conflict' });
    expect((await send(o, variedRecords(2))).failed).toEqual([{ index: 1, retryable: false, reason: '409 version_conflict_engine_exception: [a]: version conflict' }]);
  });

  it('a data stream refuses what is not create, and what has no @timestamp (the fake keeps the rules)', async () => {
    const f = await fake();
    const body =
      '{"index":{"_index":"logs-app-default"}}\n{"@timestamp":"2026-11-21T10:00:00.123456789Z","a":1}\n' +
      '{"create":{"_index":"logs-app-default"}}\n{"a":1}\n' +
      '{"create":{"_index":"logs-app-default"}}\n{"@timestamp":"half past ten"}\n' +
      '{"create":{"_index":"logs-app-default"}}\n{"@timestamp":"2026-11-21T10:00:00.123456789Z","a":2}\n';
    const res = await bulk(f, body);
    expect(res.status).toBe(200);
    const items = (res.json as { items: { [op: string]: { status: number; error?: { type: string; reason: string }; _index: string } }[] }).items;
    expect(items.map((i) => Object.values(i)[0]!.status)).toEqual([400, 400, 400, 201]);
    expect(items[0]!.index!.error!.reason).toBe('only write ops with an op_type of create are allowed in data streams');
    expect(items[1]!.create!.error!.reason).toMatch(/data stream timestamp field \[@timestamp\] is missing/);
    expect(items[2]!.create!.error!.reason).toMatch(/failed to parse field \[@timestamp\] of type \[date\]/);
    expect(items[3]!.create!._index).toMatch(/^\.ds-logs-app-default-\d{4}\.\d{2}\.\d{2}-000001$/);
    expect(sources(f, 'logs-app-default')).toEqual([{ '@timestamp': '2026-11-21T10:00:00.123456789Z', a: 2 }]);
  });

  it('index mode into a name a data stream template matches: every item says why', async () => {
    const f = await fake();
    const res = await send(output(f.url, { index: 'logs-k8s-%Y' }), variedRecords(3));
    expect(res.failed?.map((x) => x.reason)).toEqual(Array(3).fill('400 illegal_argument_exception: only write ops with an op_type of create are allowed in data streams'));
    expect(res.failed?.every((x) => !x.retryable)).toBe(true);
  });

  it('goes through an ingest pipeline when one is named; an unknown one fails every item for good', async () => {
    const f = await fake({ pipelines: { 'add-cluster': (doc) => (doc['cluster'] = 'blue') } });
    const records = variedRecords(3);
    await send(output(f.url, { pipeline: 'add-cluster' }), records);
    expect(f.server.requests[0]!.path).toBe('/_bulk?filter_path=errors,items.*.status,items.*.error&pipeline=add-cluster');
    expect(f.documents('kube-telemetry-agent-2026.11.21')).toEqual(
      records.map((r) => ({ _id: expect.any(String) as unknown, _source: { ...expectedDoc(r), cluster: 'blue' }, pipeline: 'add-cluster' })),
    );
    const res = await send(output(f.url, { pipeline: 'nope' }), records);
    expect(res.failed).toEqual(records.map((_, index) => ({ index, retryable: false, reason: '400 illegal_argument_exception: pipeline with id [nope] does not exist' })));
  });

  it('gzip: the body is compressed on the wire and bytes count what was sent', async () => {
    const f = await fake();
    const records = variedRecords(200);
    const res = await send(output(f.url, { compression: 'gzip' }), records);
    const req = f.server.requests[0]!;
    expect(req.headers['content-encoding']).toBe('gzip');
    expect(res.bytes).toBe(req.wireBytes);
    expect(req.wireBytes).toBeLessThan(req.body.length / 3);
    expect(sources(f, 'kube-telemetry-agent-2026.11.21')).toEqual(records.map((r) => expectedDoc(r)));
  });

  it('requests in flight at once (concurrency, gzip) each carry their own batch', async () => {
    const f = await fake();
    const o = output(f.url, { compression: 'gzip', concurrency: 3 });
    const batches = [0, 1, 2].map((b) => variedRecords(300).map((r) => ({ ...r, body: typeof r.body === 'string' ? `batch ${b}: ${r.body}` : r.body })));
    const results = await Promise.all(batches.map((b) => send(o, b)));
    expect(results.every((r) => r.failed === undefined)).toBe(true);
    const stored = sources(f, 'kube-telemetry-agent-2026.11.21');
    expect(stored).toHaveLength(900);
    expect(new Set(stored.map((d) => JSON.stringify(d)))).toEqual(new Set(batches.flat().map((r) => JSON.stringify(expectedDoc(r)))));
  });

  it('a huge record and a parsed body of many fields go through whole', async () => {
    const f = await fake();
    const big = 'x'.repeat(3 * 1024 * 1024);
    const wide = Object.fromEntries(Array.from({ length: 500 }, (_, i) => [`field_${i}`, i % 2 ? `v${i}` : i]));
    const records = [record(big), record(wide), record(['nested', { deep: { deeper: [1, 2, 3] } }])];
    expect((await send(output(f.url), records)).failed).toBeUndefined();
    expect(sources(f, 'kube-telemetry-agent-2026.11.21')).toEqual(records.map((r) => expectedDoc(r)));
  });

  it('text and parsed bodies share one index without a mapping conflict', async () => {
    const f = await fake();
    const o = output(f.url);
    const res = await send(o, [record('plain text'), record({ message: 'parsed', level: 'info' }), record(['an', 'array']), record('text again')]);
    expect(res.failed).toBeUndefined();
    expect(f.mappingOf('kube-telemetry-agent-2026.11.21', 'body.text')).toBe('value');
    expect(f.mappingOf('kube-telemetry-agent-2026.11.21', 'body.structured')).toBe('object');
  });
});

// ---------------------------------------------------------------------------------------------

describe('elasticsearch output: Kubernetes label keys', () => {
  const podA = Object.freeze({ ...resource, 'k8s.pod.name': 'a', 'k8s.pod.label.app': 'web', 'k8s.pod.annotation.kubectl.kubernetes.io/restartedAt': '2026-11-20T10:00:00Z' });
  const podB = Object.freeze({
    ...resource,
    'k8s.pod.name': 'b',
    'k8s.pod.label.app.kubernetes.io/name': 'web',
    'k8s.pod.label.app.kubernetes.io/instance': 'web-prod',
    'k8s.namespace.label.kubernetes.io/metadata.name': 'default',
  });
  const podC = Object.freeze({ ...podA, ...podB, 'k8s.pod.name': 'c' });
  const records = [record('a', { resource: podA }), record('b', { resource: podB }), record('c', { resource: podC })];

  it('default (labels): dots inside label and annotation keys become _, so pods with app and app.kubernetes.io/name coexist', async () => {
    const f = await fake();
    const res = await send(output(f.url), records);
    expect(res.failed).toBeUndefined();
    const a = { ...resource, 'k8s.pod.name': 'a', 'k8s.pod.label.app': 'web', 'k8s.pod.annotation.kubectl_kubernetes_io/restartedAt': '2026-11-20T10:00:00Z' };
    const b = {
      ...resource,
      'k8s.pod.name': 'b',
      'k8s.pod.label.app_kubernetes_io/name': 'web',
      'k8s.pod.label.app_kubernetes_io/instance': 'web-prod',
      'k8s.namespace.label.kubernetes_io/metadata_name': 'default',
    };
    expect(sources(f, 'kube-telemetry-agent-2026.11.21')).toEqual([
      expectedDoc(records[0]!, stdoutAttrs, a),
      expectedDoc(records[1]!, stdoutAttrs, b),
      expectedDoc(records[2]!, stdoutAttrs, { ...a, ...b, 'k8s.pod.name': 'c' }),
    ]);
    // Semantic-convention keys still become objects, so resource.k8s.pod.name is queryable.
    expect(f.mappingOf('kube-telemetry-agent-2026.11.21', 'resource.k8s.pod')).toBe('object');
    expect(f.mappingOf('kube-telemetry-agent-2026.11.21', 'resource.k8s.pod.label.app')).toBe('value');
  });

  it('none: the same records collide the way Elasticsearch says (why the default rewrites them)', async () => {
    const f = await fake();
    const res = await send(output(f.url, { replace_dots: 'none' }), records);
    expect(res.failed).toEqual([
      { index: 1, retryable: false, reason: expect.stringMatching(/^400 mapper_parsing_exception: Could not dynamically add mapping for field \[resource.k8s.pod.label.app\]/) as unknown },
      { index: 2, retryable: false, reason: expect.stringMatching(/^400 mapper_parsing_exception: /) as unknown },
    ]);
  });

  it('all: every dot in every key becomes _, body keys included', async () => {
    const f = await fake();
    const r = record({ 'http.status': 200, user: { 'first.name': 'x' }, list: [{ 'a.b': 1 }] }, { resource: podA });
    await send(output(f.url, { replace_dots: 'all' }), [r]);
    const [doc] = sources(f, 'kube-telemetry-agent-2026.11.21');
    expect(doc).toEqual({
      '@timestamp': r.timestamp,
      observed_timestamp: r.observedTimestamp,
      body: { structured: { http_status: 200, user: { first_name: 'x' }, list: [{ a_b: 1 }] } },
      attributes: { 'log_iostream': 'stdout', 'log_file_path': stdoutAttrs['log.file.path'] },
      resource: Object.fromEntries(Object.entries(podA).map(([k, v]) => [k.replaceAll('.', '_'), v])),
    });
    // The record's own objects are untouched: they are shared with other outputs.
    expect(Object.keys(r.body as object)).toEqual(['http.status', 'user', 'list']);
  });
});

// ---------------------------------------------------------------------------------------------

describe('elasticsearch output: whole-request answers', () => {
  it('413: permanent, saying batch.max_bytes and http.max_content_length', async () => {
    const f = await fake({ maxContentLength: 4096 });
    const err = await send(output(f.url, { batch: { max_bytes: '2MiB' } }), variedRecords(100)).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(PermanentError);
    expect((err as Error).message).toMatch(/^output es: Elasticsearch refused a bulk request of \d+ bytes as too large \(413\): its http.max_content_length \(default 100mb\) is below this output's batch.max_bytes \(2MiB\)/);
  });

  it('500 and 503 are retryable; 429 carries Retry-After in seconds or as an HTTP-date', async () => {
    const f = await fake();
    const o = output(f.url);
    f.server.inject({ status: 500, body: '{"error":"boom"}' });
    await expect(send(o, [record('x')])).rejects.toBeInstanceOf(RetryableError);
    f.server.inject({ status: 429, headers: { 'retry-after': '7' }, body: '{"error":{"type":"es_rejected_execution_exception"},"status":429}' });
    const e1 = (await send(o, [record('x')]).catch((e: unknown) => e)) as RetryableError;
    expect(e1).toBeInstanceOf(RetryableError);
    expect(e1.retryAfterMs).toBe(7000);
    f.server.inject({ status: 503, headers: { 'retry-after': new Date(Date.now() + 60_000).toUTCString() } });
    const e2 = (await send(o, [record('x')]).catch((e: unknown) => e)) as RetryableError;
    expect(e2).toBeInstanceOf(RetryableError);
    expect(e2.retryAfterMs).toBeGreaterThan(50_000);
    expect(e2.retryAfterMs).toBeLessThanOrEqual(60_000);
    expect(f.names()).toEqual([]);
  });

  it('a whole-request 400 (a malformed body for Elasticsearch) is permanent, with its reason', async () => {
    const f = await fake();
    f.server.inject({ status: 400, body: '{"error":{"type":"illegal_argument_exception","reason":"The bulk request must be terminated by a newline [\\\\n]"},"status":400}' });
    await expect(send(output(f.url), [record('x')])).rejects.toThrow(PermanentError);
  });

  it('a reset connection is retryable, and the next request goes through', async () => {
    const f = await fake();
    const o = output(f.url);
    f.server.inject({ reset: true });
    await expect(send(o, [record('x')])).rejects.toThrow(/connection/);
    expect((await send(o, [record('y')])).failed).toBeUndefined();
    expect(sources(f, 'kube-telemetry-agent-2026.11.21')).toEqual([expectedDoc(record('y'))]);
  });

  it('an answer that is not a bulk response, or has the wrong number of items, is retried', () => {
    expect(() => classifyBulkAnswer('es', Buffer.from('<html>gateway</html>'), 2, 'index')).toThrow(RetryableError);
    expect(() => classifyBulkAnswer('es', Buffer.from('{"errors":true,"items":[{"index":{"status":201}}]}'), 2, 'index')).toThrow(
      /the bulk response has 1 items for 2 documents/,
    );
  });

  it('reads errors wherever the answer puts it, and only parses items when there are errors', () => {
    const late = Buffer.from(JSON.stringify({ took: 3, padding: 'x'.repeat(400), errors: false, items: 'not even an array' }));
    expect(classifyBulkAnswer('es', late, 2, 'index')).toEqual([]);
    // "errors":false at the head: the rest is never looked at (here it is not even JSON).
    expect(classifyBulkAnswer('es', Buffer.from('{"errors":false,"items":[{"index":{"status":201}},' + '{'.repeat(10)), 2, 'index')).toEqual([]);
    const pretty = Buffer.from(JSON.stringify({ took: 1, errors: true, items: [{ create: { status: 201 } }, { create: {} }] }, null, 2));
    expect(classifyBulkAnswer('es', pretty, 2, 'create')).toEqual([{ index: 1, retryable: true, reason: 'no status no error given' }]);
  });

  it('401 without or with wrong credentials, and 403, are permanent and say what to check', async () => {
    const f = await fake({ security: { users: { agent: 's3cret' } } });
    const none = await send(output(f.url), [record('x')]).catch((e: unknown) => e);
    expect(none).toBeInstanceOf(PermanentError);
    expect((none as Error).message).toMatch(/^output es: Elasticsearch did not accept the credentials \(401\) \(check api_key, auth.username\/password or auth.bearer_token.*missing authentication credentials/);
    await expect(send(output(f.url, { auth: { username: 'agent', password: 'wrong' } }), [record('x')])).rejects.toThrow(/401.*unable to authenticate/);
    f.server.inject({ status: 403, body: '{"error":{"type":"security_exception"}}' });
    await expect(send(output(f.url, { auth: { username: 'agent', password: 's3cret' } }), [record('x')])).rejects.toThrow(/refused access \(403\)/);
    expect(f.names()).toEqual([]);
  });

  it('authenticates with basic, bearer and API keys (encoded, or id:api_key)', async () => {
    const f = await fake({ security: { users: { agent: 's3cret' }, bearerTokens: ['tok-1'], apiKeys: [{ id: 'VuaCfGcBCdbkQm-e5aOx', key: 'ui2lp2axTNmsyakw9tvNnw' }] } });
    const encoded = Buffer.from('VuaCfGcBCdbkQm-e5aOx:ui2lp2axTNmsyakw9tvNnw').toString('base64');
    expect(encodeApiKey('VuaCfGcBCdbkQm-e5aOx:ui2lp2axTNmsyakw9tvNnw')).toBe(encoded);
    for (const extra of [{ auth: { username: 'agent', password: 's3cret' } }, { auth: { bearer_token: 'tok-1' } }, { api_key: encoded }, { api_key: 'VuaCfGcBCdbkQm-e5aOx:ui2lp2axTNmsyakw9tvNnw' }])
      expect((await send(output(f.url, extra), [record(JSON.stringify(extra))])).failed).toBeUndefined();
    expect(f.server.requests.map((r) => String(r.headers.authorization).split(' ')[0])).toEqual(['Basic', 'Bearer', 'ApiKey', 'ApiKey']);
    expect(f.server.requests[2]!.headers.authorization).toBe(`ApiKey ${encoded}`);
    expect(f.server.requests[3]!.headers.authorization).toBe(`ApiKey ${encoded}`);
    expect(sources(f, 'kube-telemetry-agent-2026.11.21')).toHaveLength(4);
  });

  it('a slow receiver: the timeout is retryable; an abort stops the request and nothing is stored', async () => {
    const f = await fake();
    f.server.inject({ delayMs: 800 });
    await expect(send(output(f.url, { timeout: '200ms' }), [record('slow')])).rejects.toThrow(/no complete answer .* within 200 ms \(timeout\)/);
    f.server.inject({ delayMs: 500 });
    const ac = new AbortController();
    const pending = send(output(f.url), [record('aborted')], ac.signal);
    setTimeout(() => ac.abort(new Error('shutting down')), 100);
    await expect(pending).rejects.toThrow('shutting down');
    await new Promise((r) => setTimeout(r, 1000)); // past both delays: the fake would have stored them by now
    expect(f.names()).toEqual([]);
  });
});

// ---------------------------------------------------------------------------------------------

describe('elasticsearch output over TLS', () => {
  let pki: { ca: string; cert: string; key: string };
  beforeAll(() => {
    const f = (n: string) => join(dir, n);
    const openssl = (args: string[]) => execFileSync('openssl', args, { stdio: 'pipe' });
    const ec = ['-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:prime256v1', '-nodes'];
    openssl(['req', '-x509', ...ec, '-keyout', f('ca.key'), '-out', f('ca.crt'), '-days', '2', '-subj', '/CN=fake-es-ca']);
    writeFileSync(f('server.ext'), 'subjectAltName=DNS:localhost,IP:127.0.0.1\nextendedKeyUsage=serverAuth\n');
    openssl(['req', ...ec, '-keyout', f('server.key'), '-out', f('server.csr'), '-subj', '/CN=elasticsearch']);
    openssl(['x509', '-req', '-in', f('server.csr'), '-CA', f('ca.crt'), '-CAkey', f('ca.key'), '-CAcreateserial', '-out', f('server.crt'), '-days', '2', '-extfile', f('server.ext')]);
    pki = { ca: f('ca.crt'), cert: f('server.crt'), key: f('server.key') };
  });

  it('refuses a certificate no trusted CA signed, saying to set tls.ca_file', async () => {
    const f = await fake({ tls: { key: readFileSync(pki.key), cert: readFileSync(pki.cert) } });
    const err = await send(output(f.url), [record('x')]).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(RetryableError);
    expect((err as Error).message).toMatch(/TLS certificate is not trusted.*set tls.ca_file/);
    expect(f.names()).toEqual([]);
  });

  it('sends over TLS with the CA in tls.ca_file', async () => {
    const f = await fake({ tls: { key: readFileSync(pki.key), cert: readFileSync(pki.cert) } });
    const records = variedRecords(5);
    expect((await send(output(f.url, { tls: { ca_file: pki.ca }, compression: 'gzip' }), records)).failed).toBeUndefined();
    expect(sources(f, 'kube-telemetry-agent-2026.11.21')).toEqual(records.map((r) => expectedDoc(r)));
  });
});

// ---------------------------------------------------------------------------------------------

/** A raw bulk request, for tests of the fake's own rules. */
async function bulk(f: ElasticsearchBulk, body: string | Buffer, headers: Record<string, string> = { 'content-type': 'application/x-ndjson' }, path = '/_bulk') {
  const res = await fetch(f.url + path, { method: 'POST', headers, body });
  const text = await res.text();
  let json: unknown;
  try {
    json = JSON.parse(text);
  } catch {
    json = undefined;
  }
  return { status: res.status, text, json };
}

describe('the fake bulk endpoint follows Elasticsearch', () => {
  it('refuses a body without its trailing newline', async () => {
    const f = await fake();
    const res = await bulk(f, '{"index":{"_index":"a"}}\n{"x":1}');
    expect(res.status).toBe(400);
    expect(res.json).toMatchObject({ error: { type: 'illegal_argument_exception', reason: 'The bulk request must be terminated by a newline [\\n]' }, status: 400 });
    expect(f.names()).toEqual([]);
  });

  it('a source that is not JSON fails its item only; a bad action line fails the request', async () => {
    const f = await fake();
    const res = await bulk(f, '{"index":{"_index":"a"}}\n{"x":1}\n{"index":{"_index":"a"}}\n{not json\n{"index":{"_index":"a"}}\n{"x":2}\n');
    const items = (res.json as { items: { index: { status: number; error?: { type: string } } }[] }).items;
    expect(items.map((i) => i.index.status)).toEqual([201, 400, 201]);
    expect(items[1]!.index.error!.type).toBe('mapper_parsing_exception');
    expect(sources(f, 'a')).toEqual([{ x: 1 }, { x: 2 }]);
    expect((await bulk(f, '{"index":{"_index":"a"}}\n{"x":1}\nnot an action\n{"x":2}\n')).status).toBe(400);
    expect((await bulk(f, '{"upsert":{"_index":"a"}}\n{"x":1}\n')).json).toMatchObject({ error: { reason: 'Malformed action/metadata line [1], expected one of [create, delete, index, update] but found [upsert]' } });
    expect(sources(f, 'a')).toHaveLength(2);
  });

  it('refuses _type (8.x), a missing index, invalid index names and other content types', async () => {
    const f = await fake();
    expect((await bulk(f, '{"index":{"_index":"a","_type":"_doc"}}\n{"x":1}\n')).json).toMatchObject({ error: { reason: 'Action/metadata line [1] contains an unknown parameter [_type]' } });
    expect((await bulk(f, '{"index":{}}\n{"x":1}\n')).json).toMatchObject({ error: { reason: 'Validation Failed: 1: index is missing;' } });
    expect((await bulk(f, '{"index":{}}\n{"x":1}\n', undefined, '/dflt/_bulk')).status).toBe(200);
    expect(sources(f, 'dflt')).toEqual([{ x: 1 }]);
    const bad = (await bulk(f, '{"index":{"_index":"Upper"}}\n{"x":1}\n')).json as { items: { index: { status: number; error: { type: string } } }[] };
    expect(bad.items[0]!.index).toMatchObject({ status: 400, error: { type: 'invalid_index_name_exception' } });
    expect((await bulk(f, '{"index":{"_index":"a"}}\n{"x":1}\n', { 'content-type': 'text/plain' })).status).toBe(406);
  });

  it('tracks object versus value per index, dotted keys expanded, and refuses conflicts', async () => {
    const f = await fake();
    const res = await bulk(
      f,
      '{"index":{"_index":"m"}}\n{"a.b":"x"}\n' + // a: object, a.b: value
        '{"index":{"_index":"m"}}\n{"a":{"b":{"c":1}}}\n' + // a.b as object: conflict
        '{"index":{"_index":"m"}}\n{"a":"flat"}\n' + // a as value: conflict
        '{"index":{"_index":"m"}}\n{"k":"v","k.x":"w"}\n' + // both in one document
        '{"index":{"_index":"m"}}\n{"bad.":1}\n' +
        '{"index":{"_index":"other"}}\n{"a":"flat"}\n', // another index has its own mapping
    );
    const items = (res.json as { items: { index: { status: number; error?: { reason: string } } }[] }).items;
    expect(items.map((i) => i.index.status)).toEqual([201, 400, 400, 400, 400, 201]);
    expect(items[1]!.index.error!.reason).toBe('Could not dynamically add mapping for field [a.b]. Existing mapping for [a.b] must be of type object but found [keyword].');
    expect(items[2]!.index.error!.reason).toBe('object mapping for [a] tried to parse field [a] as object, but found a concrete value');
    expect(items[4]!.index.error!.reason).toMatch(/makes object resolution ambiguous/);
    // A refused document leaves no mapping behind.
    expect(f.mappingOf('m', 'k')).toBeUndefined();
  });

  it('applies filter_path as Elasticsearch does: objects left empty disappear, even from items', () => {
    const answer = { took: 5, errors: true, items: [{ index: { _index: 'a', status: 201 } }, { index: { _index: 'a', status: 400, error: { type: 't', reason: 'r' } } }] };
    expect(filterPath(answer, 'errors,items.*.status,items.*.error')).toEqual({
      errors: true,
      items: [{ index: { status: 201 } }, { index: { status: 400, error: { type: 't', reason: 'r' } } }],
    });
    // Why the output asks for items.*.status too: without it, positions shift.
    expect(filterPath(answer, 'items.*.error')).toEqual({ items: [{ index: { error: { type: 't', reason: 'r' } } }] });
    expect(filterPath({ took: 1 }, 'errors')).toEqual({});
  });

  it('stores gzip bodies like plain ones and answers 413 over http.max_content_length', async () => {
    const f = await fake({ maxContentLength: 100 });
    const small = '{"index":{"_index":"g"}}\n{"x":1}\n';
    expect((await bulk(f, gzipSync(small), { 'content-type': 'application/x-ndjson', 'content-encoding': 'gzip' })).status).toBe(200);
    expect(sources(f, 'g')).toEqual([{ x: 1 }]);
    expect((await bulk(f, small.repeat(5))).status).toBe(413);
  });
});
