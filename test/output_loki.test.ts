import { readFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { describe, expect, it } from 'vitest';
import { ConfigError, parseConfig } from '../agent/config/load.ts';
import type { Attributes, LogRecord } from '../agent/record.ts';
import { blockCompressor, loadCompressor, LokiOutput, lokiConfig } from '../outputs/loki.ts';
import { DEFAULT_LABELS, StreamLabeler, TimestampParser } from '../outputs/loki_streams.ts';
import { NdjsonEncoder } from '../outputs/ndjson.ts';
import { PermanentError, RetryableError } from '../outputs/output.ts';
import { createOutput } from '../outputs/registry.ts';
import { LokiReceiver, goTime, lokiRoot, parseLabels, type LokiReceiverOptions, type ReceivedEntry } from './fakes/loki_receiver.ts';
import { asJson, outputSuite, rejection, send } from './helpers/output_fixtures.ts';

const { pki, ctx, track } = outputSuite('kta-output-loki-', { name: 'loki', pki: true });

async function loki(opts: LokiReceiverOptions = {}): Promise<LokiReceiver> {
  return track.receiver(await LokiReceiver.start(opts));
}

function output(config: Record<string, unknown>): LokiOutput {
  return track.output(new LokiOutput(lokiConfig.parse({ type: 'loki', inputs: ['containers'], ...config }), ctx));
}

// --- fixtures -----------------------------------------------------------------------------------

const BASE_NS = BigInt(Date.UTC(2026, 10, 21, 10, 0, 0)) * 1_000_000n;

/** RFC 3339 with 9 fraction digits, as the agent's records carry times. */
function ts(ns: bigint): string {
  const ms = Number(ns / 1_000_000n);
  return new Date(ms).toISOString().slice(0, 19) + '.' + (ns % 1_000_000_000n).toString().padStart(9, '0') + 'Z';
}

type Workload = 'deployment' | 'statefulset' | 'daemonset' | 'cronjob' | 'none';

/** A pod's container: its shared resource and attributes, and the labels Loki must show for it. */
interface Container {
  resource: Attributes;
  attributes: Attributes;
  labels: Record<string, string>;
  /** Resource attributes that became labels, so are not in the line. */
  labelAttrs: string[];
}

function container(pod: number, name: string, workload: Workload = 'deployment', node = 'node-1'): Container {
  const namespace = ['default', 'payments', 'search'][pod % 3]!;
  const uid = `0f1e2d3c-4b5a-4697-8877-${String(pod).padStart(12, '0')}`;
  const resource: Record<string, string> = {
    'k8s.node.name': node,
    'k8s.namespace.name': namespace,
    'k8s.pod.name': `web-${pod}-7c9f`,
    'k8s.pod.uid': uid,
    'k8s.container.name': name,
    'k8s.container.restart_count': '0',
    'container.id': `${pod}`.padEnd(64, 'a'),
    'k8s.pod.label.app': `app-${pod % 4}`,
  };
  const labels: Record<string, string> = { namespace, container: name, node };
  const labelAttrs = ['k8s.namespace.name', 'k8s.container.name', 'k8s.node.name'];
  if (workload !== 'none') {
    resource[`k8s.${workload}.name`] = `wl-${pod % 4}`;
    labels.workload = `wl-${pod % 4}`;
    labelAttrs.push(`k8s.${workload}.name`);
  }
  if (workload === 'cronjob') resource['k8s.job.name'] = `wl-${pod % 4}-29000000`;
  const attributes = Object.freeze({ 'log.iostream': 'stdout', 'log.file.path': `/var/log/pods/${namespace}_web-${pod}_${uid}/${name}/0.log` });
  return { resource: Object.freeze(resource), attributes, labels, labelAttrs };
}

function record(c: Container, ns: bigint, body: LogRecord['body'], extra: Partial<LogRecord> = {}): LogRecord {
  return { timestamp: ts(ns), observedTimestamp: ts(ns + 7_000_000n), body, attributes: c.attributes, resource: c.resource, ...extra };
}

/** Deterministic pseudo-random numbers (a test must not depend on the run). */
function lcg(seed: number): () => number {
  let s = seed >>> 0;
  return () => (s = (Math.imul(s, 1664525) + 1013904223) >>> 0) / 2 ** 32;
}

/** design.md's record as JSON, without the resource attributes that became labels. */
function expectedJsonLine(r: LogRecord, labelAttrs: readonly string[]): Record<string, unknown> {
  const resource: Record<string, unknown> = {};
  for (const [k, v] of Object.entries(r.resource)) if (!labelAttrs.includes(k)) resource[k] = v;
  return { ...asJson(r), resource };
}

interface Comparable {
  labels: Record<string, string>;
  ns: string;
  line: unknown;
}

const key = (c: Comparable) => JSON.stringify([Object.entries(c.labels).sort(), c.ns, c.line]);
const sorted = (list: Comparable[]) => [...list].sort((a, b) => (key(a) < key(b) ? -1 : key(a) > key(b) ? 1 : 0));
const received = (e: ReceivedEntry): Comparable => ({ labels: e.labels, ns: e.timestampNs.toString(), line: JSON.parse(e.line) as unknown });

/** Within every stream Loki stored, entries are in time order (what an ordered-writes Loki demands). */
function expectOrderedStreams(fake: LokiReceiver): void {
  const newest = new Map<string, bigint>();
  for (const e of fake.entries) {
    const k = JSON.stringify(Object.entries(e.labels).sort());
    expect(e.timestampNs >= (newest.get(k) ?? 0n), `stream ${k} went back in time`).toBe(true);
    newest.set(k, e.timestampNs);
  }
}

// --- config -------------------------------------------------------------------------------------

function lokiYaml(extra: string): string {
  return `sources:
  containers:
    type: container_logs
outputs:
  loki:
    type: loki
    inputs: [containers]
    endpoint: http://loki:3100
${extra}`;
}

function problems(yaml: string): string[] {
  try {
    parseConfig(yaml, 'agent.yaml', {});
  } catch (err) {
    expect(err).toBeInstanceOf(ConfigError);
    return (err as ConfigError).problems;
  }
  throw new Error(`config was accepted:\n${yaml}`);
}

describe('loki config', () => {
  it('defaults to protobuf, json lines and the namespace/workload/container/node labels', () => {
    const cfg = parseConfig(lokiYaml(''), 'agent.yaml', {}).outputs.loki!;
    expect(cfg).toMatchObject({
      type: 'loki',
      encoding: 'protobuf',
      compression: 'gzip',
      line_format: 'json',
      max_line_size: 256_000,
      static_labels: {},
      labels: {
        namespace: 'k8s.namespace.name',
        workload: ['k8s.deployment.name', 'k8s.statefulset.name', 'k8s.daemonset.name', 'k8s.cronjob.name', 'k8s.job.name'],
        container: 'k8s.container.name',
        node: 'k8s.node.name',
      },
    });
    expect(createOutput(cfg, ctx)).toBeInstanceOf(LokiOutput);
  });

  it('refuses unbounded attributes as labels, naming the key and the reason', () => {
    expect(
      problems(
        lokiYaml(`    labels:
      uid: k8s.pod.uid
      cid: container.id
      file: log.file.path
      restarts: k8s.container.restart_count
      owner: [k8s.deployment.name, k8s.replicaset.uid]
`),
      ),
    ).toEqual([
      'outputs.loki.labels.uid: k8s.pod.uid cannot be a label: a new value for every object (uids are unique by design), so every value is a new Loki stream; it stays in the line (line_format json) or structured metadata (line_format body)',
      'outputs.loki.labels.cid: container.id cannot be a label: a new value every time a container starts, so every value is a new Loki stream; it stays in the line (line_format json) or structured metadata (line_format body)',
      'outputs.loki.labels.file: log.file.path cannot be a label: a new value per pod and container restart (the path holds the pod uid), so every value is a new Loki stream; it stays in the line (line_format json) or structured metadata (line_format body)',
      'outputs.loki.labels.restarts: k8s.container.restart_count cannot be a label: a counter: every restart would start a new stream, so every value is a new Loki stream; it stays in the line (line_format json) or structured metadata (line_format body)',
      'outputs.loki.labels.owner[1]: k8s.replicaset.uid cannot be a label: a new value for every object (uids are unique by design), so every value is a new Loki stream; it stays in the line (line_format json) or structured metadata (line_format body)',
    ]);
  });

  it('allows the pod name (high cardinality, discouraged in the README, but bounded by the pods that exist)', () => {
    const cfg = parseConfig(lokiYaml('    labels: { namespace: k8s.namespace.name, pod: k8s.pod.name }\n'), 'agent.yaml', {}).outputs.loki!;
    expect(cfg.type === 'loki' && cfg.labels).toEqual({ namespace: 'k8s.namespace.name', pod: 'k8s.pod.name' });
  });

  it('refuses label names Loki would not take, reserved names, and clashes with static_labels', () => {
    expect(
      problems(
        lokiYaml(`    labels:
      k8s-namespace: k8s.namespace.name
      1st: k8s.container.name
      __name__: k8s.node.name
      app: k8s.pod.label.app
    static_labels:
      cluster.name: prod
      app: web
`),
      ),
    ).toEqual([
      'outputs.loki.labels.k8s-namespace: "k8s-namespace" is not a Loki label name (letters, digits and _, not starting with a digit)',
      'outputs.loki.labels.1st: "1st" is not a Loki label name (letters, digits and _, not starting with a digit)',
      "outputs.loki.labels.__name__: \"__name__\": label names starting with __ are reserved for Loki's internal use",
      'outputs.loki.static_labels.cluster.name: "cluster.name" is not a Loki label name (letters, digits and _, not starting with a digit)',
      'outputs.loki.static_labels.app: app is also under labels; a stream has one value per label name',
    ]);
  });

  it('refuses more labels than Loki takes per stream, empty attribute lists and unknown keys', () => {
    const many = Array.from({ length: 14 }, (_, i) => `      l${i}: k8s.pod.label.l${i}\n`).join('');
    expect(problems(lokiYaml(`    labels:\n${many}    static_labels: { cluster: a, region: b }\n`))).toEqual([
      "outputs.loki.labels: 16 labels with static_labels; Loki refuses streams with more than 15 label names (max_label_names_per_series)",
    ]);
    expect(problems(lokiYaml('    labels: { workload: [] }\n'))).toEqual(['outputs.loki.labels.workload: Too small: expected array to have >=1 items']);
    expect(problems(lokiYaml('    line_format: text\n'))).toEqual(['outputs.loki.line_format: expected one of "json" | "body", got "text"']);
    expect(problems(lokiYaml('    tenant_ids: team-a\n'))[0]).toMatch(/^outputs\.loki\.tenant_ids: unknown key \(did you mean tenant_id\?\)$/);
  });
});

// --- labels and timestamps ------------------------------------------------------------------------

describe('stream labels (outputs/loki_streams.ts)', () => {
  const labeler = new StreamLabeler(DEFAULT_LABELS, { cluster: 'prod-eu-1' });

  it('takes the first workload attribute present; a CronJob wins over its Job; none: no workload label', () => {
    for (const [workload, expected] of [
      ['deployment', 'wl-1'],
      ['statefulset', 'wl-1'],
      ['daemonset', 'wl-1'],
      ['cronjob', 'wl-1'],
    ] as const) {
      expect(parseLabels(labeler.split(container(1, 'app', workload).resource).selector)).toEqual([
        ['cluster', 'prod-eu-1'],
        ['container', 'app'],
        ['namespace', 'payments'],
        ['node', 'node-1'],
        ['workload', expected],
      ]);
    }
    expect(labeler.split(container(1, 'app', 'none').resource).selector).toBe('{cluster="prod-eu-1", container="app", namespace="payments", node="node-1"}');
  });

  it('keeps the rest of the resource for the line, and computes it once per resource object', () => {
    const c = container(4, 'app');
    const split = labeler.split(c.resource);
    expect(labeler.split(c.resource)).toBe(split);
    expect(Object.keys(split.rest).sort()).toEqual(['container.id', 'k8s.container.restart_count', 'k8s.pod.label.app', 'k8s.pod.name', 'k8s.pod.uid']);
    expect(JSON.parse(split.json)).toEqual({ cluster: 'prod-eu-1', container: 'app', namespace: 'payments', node: 'node-1', workload: 'wl-0' });
    // A resource without any label attribute keeps its object: nothing was taken out.
    const bare = Object.freeze({ 'k8s.object.kind': 'Pod' });
    expect(new StreamLabeler(DEFAULT_LABELS, {}).split(bare).rest).toBe(bare);
  });

  it('names a stream service_name="unknown_service" when no label applies (Loki refuses streams without labels)', () => {
    expect(new StreamLabeler(DEFAULT_LABELS, {}).split(Object.freeze({ 'k8s.object.kind': 'Node' })).selector).toBe('{service_name="unknown_service"}');
  });

  it('skips empty values and joins list values', () => {
    const l = new StreamLabeler({ ns: ['k8s.namespace.name', 'fallback'], tags: 'tags' }, {});
    expect(l.split(Object.freeze({ 'k8s.namespace.name': '', fallback: 'fb', tags: ['a', 'b'] })).selector).toBe('{ns="fb", tags="a,b"}');
  });
});

describe('timestamps (outputs/loki_streams.ts)', () => {
  const p = new TimestampParser();

  it('keeps every nanosecond of the agent’s RFC 3339 times', () => {
    expect(p.parse('2026-11-21T10:00:00.123456789Z')).toEqual({ seconds: 1_795_255_200, nanos: 123_456_789 });
    expect(p.parse('2026-11-21T10:00:00.000000001Z')).toEqual({ seconds: 1_795_255_200, nanos: 1 });
    expect(p.parse('2026-11-21T10:00:01.999999999Z')).toEqual({ seconds: 1_795_255_201, nanos: 999_999_999 });
  });

  it('reads other RFC 3339 forms: fewer digits, no fraction, offsets, lower-case z', () => {
    expect(p.parse('2026-11-21T10:00:00.5Z')).toEqual({ seconds: 1_795_255_200, nanos: 500_000_000 });
    expect(p.parse('2026-11-21T10:00:00Z')).toEqual({ seconds: 1_795_255_200, nanos: 0 });
    expect(p.parse('2026-11-21T12:00:00.000123+02:00')).toEqual({ seconds: 1_795_255_200, nanos: 123_000 });
    expect(p.parse('2026-11-21T10:00:00.1234567891234z')).toEqual({ seconds: 1_795_255_200, nanos: 123_456_789 });
  });

  it('refuses what is not a time after 1970', () => {
    for (const bad of ['', 'yesterday', '2026-11-21 10:00:00Z', '2026-13-21T10:00:00.000000000Z', '1969-12-31T23:59:59.000000000Z', 'November 21, 2026  .123456789Z', '2026-11-21T10:00:00.12345678xZ']) {
      expect(p.parse(bad), bad).toBeUndefined();
    }
  });
});

// --- the fake itself ------------------------------------------------------------------------------

describe('the fake Loki', () => {
  it('reads labels as Loki does: Go string literals, escapes and raw strings; refuses broken ones', () => {
    expect(parseLabels('{a="\\x41\\101\\u00e9\\U0001F600\\"\\\\\\n", b=`raw\\n`}')).toEqual([
      ['a', 'AAé😀"\\\n'],
      ['b', 'raw\\n'],
    ]);
    expect(() => parseLabels('{a="x\ny"}')).toThrow(/literal not terminated/);
    expect(() => parseLabels('{a="\\q"}')).toThrow(/invalid syntax/);
    expect(() => parseLabels('{a="\\xff"}')).toThrow(/invalid UTF-8/);
    expect(() => parseLabels('{a=~"x"}')).toThrow(/only equality/);
    expect(() => parseLabels('a="x"')).toThrow(/expecting \{/);
  });

  it('prints times as Go does in its out-of-order answers', () => {
    expect(goTime(1_795_255_200_123_456_789n)).toBe('2026-11-21 10:00:00.123456789 +0000 UTC');
    expect(goTime(1_795_255_200_000_000_000n)).toBe('2026-11-21 10:00:00 +0000 UTC');
  });

  it('answers 404 off the push path, 422 without streams, 400 for a body that is not snappy', async () => {
    const fake = await loki();
    expect((await fetch(`${fake.url}/api/prom/push`, { method: 'POST', body: 'x' })).status).toBe(404);
    const noStreams = await fetch(fake.pushUrl, { method: 'POST', headers: { 'content-type': 'application/json' }, body: '{"streams":[]}' });
    expect([noStreams.status, await noStreams.text()]).toEqual([422, 'error at least one valid stream is required for ingestion\n']);
    const notSnappy = await fetch(fake.pushUrl, { method: 'POST', headers: { 'content-type': 'application/x-protobuf' }, body: 'plain text' });
    expect(notSnappy.status).toBe(400);
    expect(await notSnappy.text()).toMatch(/^snappy: corrupt input/);
  });

  it('with unordered writes, takes older entries back to half of max_chunk_age, and no further', async () => {
    const fake = await loki({ unorderedWrites: true, maxChunkAgeMs: 2 * 3_600_000 });
    const push = (ns: bigint) =>
      fetch(fake.pushUrl, {
        method: 'POST',
        headers: { 'content-type': 'application/json' },
        body: JSON.stringify({ streams: [{ stream: { app: 'a' }, values: [[ns.toString(), `at ${ns}`]] }] }),
      });
    expect((await push(BASE_NS)).status).toBe(204);
    expect((await push(BASE_NS - 3_599_000_000_000n)).status).toBe(204);
    const late = await push(BASE_NS - 3_601_000_000_000n);
    expect(late.status).toBe(400);
    expect(await late.text()).toBe(
      "entry with timestamp 2026-11-21 08:59:59 +0000 UTC ignored, reason: 'entry too far behind, entry timestamp is: 2026-11-21T08:59:59Z, oldest acceptable timestamp is: 2026-11-21T09:00:00Z',\n" +
        `user 'fake', total ignored: 1 out of 1 for stream: {app="a"}\n`,
    );
    expect(fake.entries.map((e) => e.timestampNs)).toEqual([BASE_NS, BASE_NS - 3_599_000_000_000n]);
  });
});

// --- sending --------------------------------------------------------------------------------------

/** 40 pods × 2 containers of 4 workload kinds in 3 namespaces, their records interleaved and each container's out of time order. */
function manyPods(count = 2400): { records: LogRecord[]; containers: Container[]; byRecord: Map<LogRecord, Container> } {
  const kinds: Workload[] = ['deployment', 'statefulset', 'daemonset', 'cronjob', 'none'];
  const containers: Container[] = [];
  for (let pod = 0; pod < 40; pod++) for (const name of ['app', 'sidecar']) containers.push(container(pod, name, kinds[pod % kinds.length]!));
  const rand = lcg(42);
  const records: LogRecord[] = [];
  const byRecord = new Map<LogRecord, Container>();
  for (let i = 0; i < count; i++) {
    const c = containers[Math.floor(rand() * containers.length)]!;
    // Up to a second back or forth, nanoseconds and all: within a stream the order is scrambled.
    const ns = BASE_NS + BigInt(Math.floor(rand() * 1e9)) * 1000n + BigInt(i % 1000);
    const r = record(c, ns, i % 7 === 0 ? { msg: `object body ${i}`, level: 'info', n: i } : `line ${i} of pod ${c.resource['k8s.pod.name']}`, i % 5 === 0 ? { severityText: 'WARN', severityNumber: 13 } : {});
    records.push(r);
    byRecord.set(r, c);
  }
  return { records, containers, byRecord };
}

function nsOf(r: LogRecord): string {
  return (BigInt(Date.parse(r.timestamp.slice(0, 19) + 'Z')) * 1_000_000n + BigInt(r.timestamp.slice(20, 29))).toString();
}

describe.each(['protobuf', 'json'] as const)('LokiOutput, encoding %s, line_format json', (encoding) => {
  it('delivers every record of many pods: labels, nanosecond timestamp and line compared field by field', async () => {
    const fake = await loki(); // ordered writes: an entry out of time order in its stream would be refused
    const out = output({ endpoint: fake.url, encoding });
    const { records, byRecord } = manyPods();
    const result = await send(out, records);
    expect(result.failed).toBeUndefined();
    expect(result.bytes).toBe(fake.server.requests[0]!.wireBytes);

    const expected = records.map((r) => ({ labels: byRecord.get(r)!.labels, ns: nsOf(r), line: expectedJsonLine(r, byRecord.get(r)!.labelAttrs) }));
    expect(fake.entries).toHaveLength(records.length);
    expect(sorted(fake.entries.map(received))).toEqual(sorted(expected));
    expectOrderedStreams(fake);

    // One stream per distinct label set: pods of one workload and container share it.
    const push = fake.pushes[0]!;
    const distinct = new Set(records.map((r) => JSON.stringify(Object.entries(byRecord.get(r)!.labels).sort())));
    expect(push.streams).toHaveLength(distinct.size);
    expect(new Set(push.streams.map((s) => s.selector)).size).toBe(distinct.size);
    expect(distinct.size).toBeLessThan(80);
    expect(push.encoding).toBe(encoding);
  });

  it('sends the wire format Loki expects: content type, compression, the push path, no tenant unless configured', async () => {
    const fake = await loki();
    const c = container(1, 'app');
    await send(output({ endpoint: fake.url, encoding }), [record(c, BASE_NS, 'hello')]);
    const req = fake.server.requests[0]!;
    expect(req.method).toBe('POST');
    expect(req.path).toBe('/loki/api/v1/push');
    expect(req.headers['content-type']).toBe(encoding === 'json' ? 'application/json' : 'application/x-protobuf');
    expect(req.headers['content-encoding']).toBe(encoding === 'json' ? 'gzip' : undefined);
    expect(req.headers['x-scope-orgid']).toBeUndefined();
    expect(fake.entries[0]!.tenant).toBe('fake');
  });

  it('sends X-Scope-OrgID from tenant_id, and says to set it when Loki wants one (401 no org id)', async () => {
    const fake = await loki({ requireTenant: true });
    const c = container(1, 'app');
    await send(output({ endpoint: fake.url, encoding, tenant_id: 'team-a' }), [record(c, BASE_NS, 'hello')]);
    expect(fake.entries.map((e) => [e.tenant, e.line])).toEqual([['team-a', expect.stringContaining('"body":"hello"')]]);

    const e = await rejection(send(output({ endpoint: fake.url, encoding, tenant_id: '' }), [record(c, BASE_NS + 1n, 'again')]));
    expect(e).toBeInstanceOf(PermanentError);
    expect(e.message).toBe('output loki: receiver answered 401 Unauthorized: no org id (a Loki with auth_enabled wants a tenant: set tenant_id)');
    expect(fake.entries).toHaveLength(1);
  });

  it('escapes label values so Loki reads back exactly what the resource said', async () => {
    const fake = await loki();
    const tricky = Object.freeze({
      'k8s.namespace.name': 'say "hi" \\ bye',
      'k8s.container.name': 'line\nbreak\ttab\u0001ctl\u007fdel',
      'k8s.node.name': 'ünïcødé ✓ 日本 😀 \u2028',
      'k8s.deployment.name': 'lone \ud800 surrogate',
    });
    await send(output({ endpoint: fake.url, encoding }), [{ ...record(container(1, 'app'), BASE_NS, 'x'), resource: tricky }]);
    expect(fake.entries[0]!.labels).toEqual({
      namespace: 'say "hi" \\ bye',
      container: 'line\nbreak\ttab\u0001ctl\u007fdel',
      node: 'ünïcødé ✓ 日本 😀 \u2028',
      workload: 'lone \ufffd surrogate',
    });
    if (encoding === 'protobuf') {
      expect(fake.entries[0]!.selector).toBe(
        '{container="line\\nbreak\\ttab\\u0001ctl\u007fdel", namespace="say \\"hi\\" \\\\ bye", node="ünïcødé ✓ 日本 😀 \u2028", workload="lone \ufffd surrogate"}',
      );
    }
  });

  it('adds static_labels to every stream and keeps label attributes out of the line', async () => {
    const fake = await loki();
    const c = container(2, 'app');
    await send(output({ endpoint: fake.url, encoding, static_labels: { cluster: 'prod-eu-1' } }), [record(c, BASE_NS, 'hi')]);
    const e = fake.entries[0]!;
    expect(e.labels).toEqual({ ...c.labels, cluster: 'prod-eu-1' });
    const line = JSON.parse(e.line) as { resource: Record<string, string> };
    expect(line.resource['k8s.pod.name']).toBe('web-2-7c9f');
    expect(line.resource['k8s.pod.uid']).toBe(c.resource['k8s.pod.uid']);
    expect(line.resource['k8s.namespace.name']).toBeUndefined();
    expect(line.resource['k8s.deployment.name']).toBeUndefined();
  });
});

describe.each(['protobuf', 'json'] as const)('LokiOutput, encoding %s, line_format body', (encoding) => {
  it('sends the body as the line and everything else as structured metadata', async () => {
    const fake = await loki();
    const c = container(3, 'app');
    const records = [
      record(c, BASE_NS + 5n, 'ERROR something broke', { severityText: 'ERROR', severityNumber: 17 }),
      record(c, BASE_NS + 1n, { msg: 'parsed', user: { id: 7 } }),
      record(c, BASE_NS + 3n, 'lone \udc00 surrogate'),
    ];
    const result = await send(output({ endpoint: fake.url, encoding, line_format: 'body' }), records);
    expect(result.failed).toBeUndefined();
    const common = [
      { name: 'log_iostream', value: 'stdout' },
      { name: 'log_file_path', value: c.attributes['log.file.path'] },
      { name: 'k8s_pod_name', value: 'web-3-7c9f' },
      { name: 'k8s_pod_uid', value: '0f1e2d3c-4b5a-4697-8877-000000000003' },
      { name: 'k8s_container_restart_count', value: '0' },
      { name: 'container_id', value: '3'.padEnd(64, 'a') },
      { name: 'k8s_pod_label_app', value: 'app-3' },
    ];
    const labels = { namespace: 'default', workload: 'wl-3', container: 'app', node: 'node-1' };
    const stored = fake.entries.map((e) => ({ labels: e.labels, ns: e.timestampNs, line: e.line, sm: e.structuredMetadata }));
    expect(stored).toEqual([
      { labels, ns: BASE_NS + 1n, line: '{"msg":"parsed","user":{"id":7}}', sm: [{ name: 'observed_timestamp', value: records[1]!.observedTimestamp }, ...common] },
      { labels, ns: BASE_NS + 3n, line: 'lone \ufffd surrogate', sm: [{ name: 'observed_timestamp', value: records[2]!.observedTimestamp }, ...common] },
      {
        labels,
        ns: BASE_NS + 5n,
        line: 'ERROR something broke',
        sm: [
          { name: 'severity_text', value: 'ERROR' },
          { name: 'severity_number', value: '17' },
          { name: 'observed_timestamp', value: records[0]!.observedTimestamp },
          ...common,
        ],
      },
    ]);
  });

  it('is refused (400, dead-lettered) by a Loki that does not allow structured metadata', async () => {
    const fake = await loki({ allowStructuredMetadata: false });
    const e = await rejection(send(output({ endpoint: fake.url, encoding, line_format: 'body' }), [record(container(1, 'app'), BASE_NS, 'x')]));
    expect(e).toBeInstanceOf(PermanentError);
    expect(e.message).toContain('includes structured metadata, but this feature is disallowed');
  });
});

describe('LokiOutput, what is refused and what is retried', () => {
  const one = (ns = BASE_NS, body: LogRecord['body'] = 'hello') => [record(container(1, 'app'), ns, body)];

  it('500: RetryableError, nothing stored', async () => {
    const fake = await loki();
    fake.server.inject({ status: 500, body: 'rpc error: code = Unavailable desc = ingester is shutting down' });
    const e = await rejection(send(output({ endpoint: fake.url }), one()));
    expect(e).toBeInstanceOf(RetryableError);
    expect(e.message).toBe('output loki: receiver answered 500 Internal Server Error: rpc error: code = Unavailable desc = ingester is shutting down');
    expect((e as RetryableError).retryAfterMs).toBeUndefined();
    expect(fake.entries).toEqual([]);
  });

  it('429 rate limited: RetryableError with Retry-After in seconds, or as an HTTP date', async () => {
    const fake = await loki();
    const out = output({ endpoint: fake.url });
    fake.rateLimit('7');
    const e = await rejection(send(out, one()));
    expect(e).toBeInstanceOf(RetryableError);
    expect(e.message).toMatch(/^output loki: receiver answered 429 Too Many Requests: Ingestion rate limit exceeded for user fake/);
    expect((e as RetryableError).retryAfterMs).toBe(7000);

    const at = new Date(Date.now() + 60_000);
    fake.rateLimit(at.toUTCString());
    const dated = (await rejection(send(out, one()))) as RetryableError;
    expect(dated).toBeInstanceOf(RetryableError);
    // An HTTP date has whole seconds: up to a second less than asked, never more.
    expect(dated.retryAfterMs).toBeGreaterThan(50_000);
    expect(dated.retryAfterMs).toBeLessThanOrEqual(60_000);
    expect(fake.entries).toEqual([]);

    expect((await send(out, one())).failed).toBeUndefined();
    expect(fake.entries).toHaveLength(1);
  });

  it('400 entry out of order: PermanentError with Loki’s text; the entries it did not name are stored', async () => {
    const fake = await loki();
    const out = output({ endpoint: fake.url });
    const a = container(1, 'app');
    const b = container(2, 'app');
    await send(out, [record(a, BASE_NS + 1_000_000_000n, 'newest of a')]);
    const e = await rejection(send(out, [record(a, BASE_NS, 'older than a stored entry'), record(b, BASE_NS, 'b is fine')]));
    expect(e).toBeInstanceOf(PermanentError);
    expect(e.message).toBe(
      "output loki: receiver answered 400 Bad Request: entry with timestamp 2026-11-21 10:00:00 +0000 UTC ignored, reason: 'entry out of order', " +
        `user 'fake', total ignored: 1 out of 1 for stream: {container="app", namespace="payments", node="node-1", workload="wl-1"} ` +
        '(Loki stores the entries this does not name; the whole batch goes to the dead-letter file)',
    );
    expect(fake.entries.map((x) => JSON.parse(x.line).body)).toEqual(['newest of a', 'b is fine']);
  });

  it('400 line too long from Loki: PermanentError; with max_line_size the line is refused alone and the rest delivered', async () => {
    const fake = await loki({ maxLineSize: 2000 });
    const records = [record(container(1, 'app'), BASE_NS, 'x'.repeat(3000)), record(container(1, 'app'), BASE_NS + 1n, 'short')];
    const e = await rejection(send(output({ endpoint: fake.url, max_line_size: 0, line_format: 'body' }), records));
    expect(e).toBeInstanceOf(PermanentError);
    expect(e.message).toBe(
      "output loki: receiver answered 400 Bad Request: Max entry size '2000' bytes exceeded for stream " +
        `'{container="app", namespace="payments", node="node-1", workload="wl-1"}' while adding an entry with length '3000' bytes ` +
        '(Loki stores the entries this does not name; the whole batch goes to the dead-letter file)',
    );
    expect(fake.entries.map((x) => x.line)).toEqual(['short']);

    const fresh = await loki({ maxLineSize: 2000 });
    const result = await send(output({ endpoint: fresh.url, max_line_size: 2000, line_format: 'body' }), [record(container(1, 'app'), BASE_NS, 'é'.repeat(1001)), ...records.slice(1)]);
    expect(result.failed).toEqual([{ index: 0, retryable: false, reason: 'line of 2002 bytes is longer than max_line_size 2000 (Loki refuses it: line too long)' }]);
    expect(fresh.entries.map((x) => x.line)).toEqual(['short']);
  });

  it('400 entry too old: PermanentError naming the stream and the oldest acceptable time', async () => {
    const now = Number(BASE_NS / 1_000_000n);
    const fake = await loki({ rejectOldSamplesMaxAgeMs: 7 * 24 * 3_600_000, now: () => now });
    const e = await rejection(send(output({ endpoint: fake.url }), one(BASE_NS - 8n * 24n * 3_600_000_000_000n)));
    expect(e).toBeInstanceOf(PermanentError);
    expect(e.message).toContain("has timestamp too old: 2026-11-13T10:00:00Z, oldest acceptable timestamp is: 2026-11-14T10:00:00Z");
  });

  it('a connection reset is retryable, and so is a receiver that is down', async () => {
    const fake = await loki();
    const out = output({ endpoint: fake.url });
    fake.server.inject({ reset: true });
    const reset = await rejection(send(out, one()));
    expect(reset).toBeInstanceOf(RetryableError);
    expect(reset.message).toMatch(/^output loki: request to http:\/\/127\.0\.0\.1:\d+\/loki\/api\/v1\/push failed: the receiver closed the connection/);
    await fake.server.down();
    const down = await rejection(send(out, one()));
    expect(down).toBeInstanceOf(RetryableError);
    expect(down.message).toContain('connection refused');
    expect(fake.entries).toEqual([]);
  });

  it('a receiver that does not answer: the pipeline’s abort ends the request, and so does timeout', async () => {
    const fake = await loki();
    const arrived = fake.stallNext();
    const ac = new AbortController();
    const pending = send(output({ endpoint: fake.url }), one(), ac.signal);
    await arrived;
    ac.abort(new Error('shutting down'));
    expect((await rejection(pending)).message).toBe('shutting down');

    void fake.stallNext();
    const e = await rejection(send(output({ endpoint: fake.url, timeout: '300ms' }), one()));
    expect(e).toBeInstanceOf(RetryableError);
    expect(e.message).toBe(`output loki: no complete answer from ${fake.pushUrl} within 300 ms (timeout)`);
    expect(fake.entries).toEqual([]);
  });

  it('TLS: an untrusted certificate is a clear RetryableError; with tls.ca_file it is delivered', async () => {
    const tls = { key: readFileSync(pki.serverKeyFile), cert: readFileSync(pki.serverCertFile) };
    const fake = await loki({ tls });
    const e = await rejection(send(output({ endpoint: fake.url }), one()));
    expect(e).toBeInstanceOf(RetryableError);
    expect(e.message).toMatch(/the receiver's TLS certificate is not trusted \(.+\); set tls.ca_file to the CA that signed it$/);
    await send(output({ endpoint: fake.url, tls: { ca_file: pki.caFile } }), one());
    expect(fake.entries.map((x) => JSON.parse(x.line).body)).toEqual(['hello']);
  });

  it('refuses a record whose time cannot be read, alone; the others go', async () => {
    const fake = await loki();
    const c = container(1, 'app');
    const records = [record(c, BASE_NS, 'good one'), { ...record(c, BASE_NS, 'bad time'), timestamp: 'not a time' }, record(c, BASE_NS + 1n, 'good two')];
    const result = await send(output({ endpoint: fake.url }), records);
    expect(result.failed).toEqual([{ index: 1, retryable: false, reason: 'timestamp "not a time" is not an RFC 3339 time after 1970' }]);
    expect(fake.entries.map((x) => JSON.parse(x.line).body)).toEqual(['good one', 'good two']);
  });

  it('a batch none of whose records can go sends nothing', async () => {
    const fake = await loki();
    const bad = { ...record(container(1, 'app'), BASE_NS, 'x'), timestamp: '' };
    expect(await send(output({ endpoint: fake.url }), [bad])).toEqual({ bytes: 0, failed: [expect.objectContaining({ index: 0, retryable: false })] });
    expect(await send(output({ endpoint: fake.url }), [])).toEqual({ bytes: 0 });
    expect(fake.server.requests).toEqual([]);
  });

  it('huge records, invalid UTF-8 and object bodies arrive intact (strings made valid UTF-8)', async () => {
    const fake = await loki(); // refuses proto strings that are not UTF-8, as Go's protobuf does
    const c = container(1, 'app');
    const huge = 'ab'.repeat(100_000);
    const records = [record(c, BASE_NS, huge), record(c, BASE_NS + 1n, 'bad \ud800 pair \udfff end'), record(c, BASE_NS + 2n, { nested: { list: [1, 'two', null] }, 'ünï': '✓' })];
    await send(output({ endpoint: fake.url }), records);
    expect(fake.entries.map((e) => (JSON.parse(e.line) as { body: unknown }).body)).toEqual([huge, 'bad \ud800 pair \udfff end', records[2]!.body]);
    await send(output({ endpoint: fake.url, line_format: 'body' }), records.map((r) => ({ ...r, timestamp: ts(BASE_NS + 10n) })));
    expect(fake.entries.slice(3).map((e) => e.line)).toEqual([huge, 'bad \ufffd pair \ufffd end', '{"nested":{"list":[1,"two",null]},"ünï":"✓"}']);
  });

  it('takes the full push URL as endpoint too, and sends uncompressed JSON with compression none', async () => {
    const fake = await loki();
    await send(output({ endpoint: fake.pushUrl, encoding: 'json', compression: 'none' }), one());
    const req = fake.server.requests[0]!;
    expect(req.path).toBe('/loki/api/v1/push');
    expect(req.headers['content-encoding']).toBeUndefined();
    const body = JSON.parse(req.body.toString('utf8')) as { streams: { stream: Record<string, string>; values: string[][] }[] };
    expect(body.streams).toEqual([{ stream: { container: 'app', namespace: 'payments', node: 'node-1', workload: 'wl-1' }, values: [[BASE_NS.toString(), expect.any(String)]] }]);
  });

  it('gzip JSON is what Loki gunzips: the wire body is smaller and decodes to the same push', async () => {
    const fake = await loki();
    const { records } = manyPods(300);
    await send(output({ endpoint: fake.url, encoding: 'json' }), records);
    const req = fake.server.requests[0]!;
    expect(req.wireBytes).toBeLessThan(req.body.length / 3);
    expect(fake.entries).toHaveLength(300);
  });
});

// --- the protobuf body, byte for byte ----------------------------------------------------------------

const snappyjs = createRequire(import.meta.url)('snappyjs') as { uncompress(b: Uint8Array): Uint8Array };
const PushRequestType = lokiRoot.lookupType('logproto.PushRequest');

/** What the output sent, raw: every body its client was given, snappy undone. */
function capture(o: LokiOutput): Buffer[] {
  const raws: Buffer[] = [];
  (o as unknown as { client: unknown }).client = {
    request(req: { body: Buffer }) {
      raws.push(Buffer.from(snappyjs.uncompress(req.body)));
      return Promise.resolve({ status: 204, headers: {}, body: Buffer.alloc(0) });
    },
    close: () => Promise.resolve(),
  };
  return raws;
}

/**
 * The PushRequest as message objects, encoded by protobufjs: how the output built its body before
 * it wrote the fields itself. Same grouping, order, lines and structured metadata.
 */
function referencePush(records: readonly LogRecord[], opts: { bodyLines?: boolean; maxLineSize?: number; staticLabels?: Record<string, string> } = {}): Uint8Array {
  const labeler = new StreamLabeler(DEFAULT_LABELS, opts.staticLabels ?? {});
  const times = new TimestampParser();
  const ndjson = new NdjsonEncoder();
  const metaName = (k: string) => {
    const n = k.replace(/[^A-Za-z0-9_]/g, '_');
    return /^[0-9]/.test(n) ? 'key_' + n : n.startsWith('_') && !n.startsWith('__') ? 'key' + n : n;
  };
  const metaValue = (v: unknown) => (typeof v === 'string' ? v : Array.isArray(v) ? JSON.stringify(v) : String(v)).toWellFormed();
  const pairs = (a: Attributes) => Object.entries(a).map(([k, v]) => ({ name: metaName(k), value: metaValue(v) }));
  const streams = new Map<string, { labels: string; entries: { t: [number, number]; entry: Record<string, unknown> }[] }>();
  for (const r of records) {
    const t = times.parse(r.timestamp);
    if (t === undefined) continue;
    const split = labeler.split(r.resource);
    const line = opts.bodyLines
      ? typeof r.body === 'string'
        ? r.body.toWellFormed()
        : JSON.stringify(r.body)
      : ndjson.encode({ ...r, resource: split.rest }).slice(0, -1);
    if ((opts.maxLineSize ?? 256_000) > 0 && Buffer.byteLength(line) > (opts.maxLineSize ?? 256_000)) continue;
    const entry: Record<string, unknown> = { timestamp: { seconds: t.seconds, nanos: t.nanos }, line };
    if (opts.bodyLines) {
      entry.structuredMetadata = [
        ...(r.severityText !== undefined ? [{ name: 'severity_text', value: r.severityText.toWellFormed() }] : []),
        ...(r.severityNumber !== undefined ? [{ name: 'severity_number', value: String(r.severityNumber) }] : []),
        { name: 'observed_timestamp', value: r.observedTimestamp },
        ...pairs(r.attributes),
        ...pairs(split.rest),
      ];
    }
    if (!streams.has(split.selector)) streams.set(split.selector, { labels: split.selector, entries: [] });
    streams.get(split.selector)!.entries.push({ t: [t.seconds, t.nanos], entry });
  }
  const message = {
    streams: [...streams.values()].map((s) => ({
      labels: s.labels,
      entries: s.entries.sort((a, b) => a.t[0] - b.t[0] || a.t[1] - b.t[1]).map((e) => e.entry),
    })),
  };
  return PushRequestType.encode(PushRequestType.fromObject(message)).finish();
}

describe('LokiOutput, the protobuf body', () => {
  /** Varied records: many pods, severities, unicode, lone surrogates, object bodies, a second-0 time, lines of every length class. */
  function varied(): LogRecord[] {
    const { records } = manyPods(600);
    const c = container(7, 'app');
    const lone = container(8, 'solo', 'none');
    return [
      ...records,
      record(c, BASE_NS + 3n, 'ünïcødé ✓ 日本 😀 \u2028 "quoted" \\ back\nslash\ttab\u0001ctl', { severityText: 'ERROR \ud800', severityNumber: 17 }),
      record(c, BASE_NS + 2n, 'lone \udc00 low and \ud83d high', { severityNumber: 9 }),
      record(c, BASE_NS + 4n, 'x'.repeat(200_000)), // a line needing a 3-byte length
      record(c, BASE_NS + 5n, 'y'.repeat(300_000)), // longer than max_line_size: refused alone
      { ...record(c, 0n, 'at the epoch'), timestamp: '1970-01-01T00:00:00Z' }, // seconds and nanos 0
      { ...record(c, 0n, 'half a second in'), timestamp: '1970-01-01T00:00:00.5Z' },
      { ...record(c, 0n, 'other form'), timestamp: '2026-11-21T12:00:00.000123+02:00' },
      record(lone, BASE_NS, ''), // a stream of one short entry
      { ...record(c, 0n, 'unreadable time'), timestamp: 'yesterday' },
    ];
  }

  it.each([
    ['json lines', {}],
    ['body lines', { line_format: 'body' }],
    ['static labels, no max_line_size', { static_labels: { cluster: 'prod-eu-1' }, max_line_size: 0 }],
  ] as const)('%s: exactly the bytes protobufjs encodes from the message objects', async (_name, config) => {
    const o = output({ endpoint: 'http://127.0.0.1:9', ...config });
    const raws = capture(o);
    const records = varied();
    await send(o, records);
    await send(o, records.slice(0, 50)); // the writer is reused: a smaller batch after a larger one
    const cfg = config as { line_format?: string; max_line_size?: number; static_labels?: Record<string, string> };
    const opts = { bodyLines: cfg.line_format === 'body', maxLineSize: cfg.max_line_size, staticLabels: cfg.static_labels };
    expect(raws).toHaveLength(2);
    expect(raws[0]!.equals(referencePush(records, opts))).toBe(true);
    expect(raws[1]!.equals(referencePush(records.slice(0, 50), opts))).toBe(true);
  });

  it('streams and entries of every length class (1 to 4 length bytes), and a stream all of whose entries are refused', async () => {
    const o = output({ endpoint: 'http://127.0.0.1:9', line_format: 'body', max_line_size: 0 });
    const raws = capture(o);
    const a = container(1, 'app');
    const b = container(2, 'app');
    const records = [
      record(a, BASE_NS, 'a'.repeat(1_100_000)),
      record(a, BASE_NS + 1n, 'a'.repeat(1_100_000)), // stream a: over 2 MiB, a 4-byte length
      record(b, BASE_NS, 'b'), // stream b: under 128 bytes
    ];
    await send(o, records);
    expect(raws[0]!.equals(referencePush(records, { bodyLines: true, maxLineSize: 0 }))).toBe(true);

    const limited = output({ endpoint: 'http://127.0.0.1:9', max_line_size: 1000 });
    const limitedRaws = capture(limited);
    const some = [record(a, BASE_NS, 'z'.repeat(2000)), record(b, BASE_NS, 'fits')];
    const result = await send(limited, some);
    expect(result.failed).toEqual([expect.objectContaining({ index: 0, retryable: false })]);
    expect(limitedRaws[0]!.equals(referencePush(some, { maxLineSize: 1000 }))).toBe(true);
  });

  it('compresses with the snappy package here; where it cannot load, snappyjs does the same job', () => {
    expect(blockCompressor().name).toBe('snappy');
    const require = createRequire(import.meta.url);
    const fallback = loadCompressor((id) => {
      if (id === 'snappy') throw new Error('Cannot find native binding\nmore text');
      return require(id) as unknown;
    });
    expect(fallback.name).toBe('snappyjs (snappy did not load: Cannot find native binding)');
    const raw = Buffer.from(readFileSync(new URL(import.meta.url)));
    for (const c of [blockCompressor(), fallback]) expect(Buffer.from(snappyjs.uncompress(c.compress(raw))).equals(raw)).toBe(true);
    // A view into a larger buffer, as the output passes its writer's bytes.
    const view = Buffer.concat([Buffer.from('junk'), raw, Buffer.from('more junk')]).subarray(4, 4 + raw.length);
    expect(Buffer.from(snappyjs.uncompress(blockCompressor().compress(view))).equals(raw)).toBe(true);
  });
});
