import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { ConfigError, parseConfig } from '../agent/config/load.ts';
import { checkTarget } from '../agent/config/target_check.ts';
import type { Attributes, LogRecord } from '../agent/record.ts';
import { VERSION } from '../agent/version.ts';
import { OtlpOutput, otlpConfig, resolveOtlpSettings } from '../outputs/otlp.ts';
import { ExportLogsServiceRequest, MAX_BODY_DEPTH, OtlpLogsEncoder, deepJson, unixNanos } from '../outputs/otlp_logs_encoder.ts';
import { PermanentError, RetryableError } from '../outputs/output.ts';
import { createOutput, outputPlugins } from '../outputs/registry.ts';
import { OtlpReceiver, RpcStatus, type Plain, type ReceivedLog } from '../agent/demo/otlp_receiver.ts';
import { outputSuite, podResource, recordBuilder, rejection, send, stdoutAttrs } from './helpers/output_fixtures.ts';

// Every OTEL_* variable is cleared before each test and put back after it: the output reads them.
let savedEnv: Record<string, string | undefined> = {};
beforeEach(() => {
  savedEnv = {};
  for (const k of Object.keys(process.env)) {
    if (k.startsWith('OTEL_')) {
      savedEnv[k] = process.env[k];
      delete process.env[k];
    }
  }
});
afterEach(() => {
  for (const k of Object.keys(process.env)) if (k.startsWith('OTEL_')) delete process.env[k];
  Object.assign(process.env, savedEnv);
});

const warnings: string[] = [];
const { scratch, pki, ctx, track } = outputSuite('kta-output-otlp-', {
  name: 'otel',
  pki: true,
  log: (_level, msg) => warnings.push(msg),
  afterClose: () => {
    warnings.length = 0;
  },
});

async function receiver(opts: Parameters<typeof OtlpReceiver.start>[0] = {}): Promise<OtlpReceiver> {
  return track.receiver(await OtlpReceiver.start(opts));
}

function output(config: Record<string, unknown>): OtlpOutput {
  return track.output(new OtlpOutput(otlpConfig.parse({ type: 'otlp', inputs: ['containers'], ...config }), ctx));
}

// ---------------------------------------------------------------------------------------------
// Records, and what the receiver must see for each (computed here, independently of the encoder)

const podA = podResource();
const podB = Object.freeze({ 'k8s.node.name': 'node-1', 'k8s.namespace.name': 'kube-system', 'k8s.pod.name': 'dns-7', 'k8s.container.name': 'coredns' });
/** Equal to podB in content, another object (a file reopened): still one ResourceLogs. */
const podBAgain = Object.freeze({ ...podB });
const journal = Object.freeze({ 'k8s.node.name': 'node-1', 'service.name': 'kubelet' });

const stderrAttrs = Object.freeze({ 'log.iostream': 'stderr', 'log.file.path': '/var/log/pods/default_web-1_0f1e/app/0.log' });
const journalAttrs = Object.freeze({
  'systemd.unit': 'kubelet.service',
  'process.pid': 1234,
  'kta.log.truncated': true,
  'kta.ratio': 0.25,
  'journald.fields': Object.freeze(['a', 'b', 'ünï']) as readonly string[],
});

const record = recordBuilder(podA);

/** Records of three resources, interleaved, with every kind of body and attribute value. */
function variedRecords(): LogRecord[] {
  return [
    record('plain text line', { severityText: 'INFO', severityNumber: 9 }),
    record('ünïcødé ✓ 日本語 😀 "quoted" \\ back\nslash', { timestamp: '2026-11-21T10:00:00.000000001Z', attributes: stderrAttrs }),
    record({ level: 'error', msg: 'boom', count: 3, ratio: 1.5, neg: -42, ok: false, none: null, nested: { deep: { deeper: ['x', 1, 2.5, true, null, { k: 'v' }] } }, empty: {}, list: [] }, {
      severityText: 'error',
      severityNumber: 17,
      resource: podB,
      timestamp: '2026-11-21T23:59:59.999999999Z',
    }),
    record(['an', 'array', 'body', 7], { resource: journal, attributes: journalAttrs, timestamp: '1970-01-01T00:00:00.000000001Z', observedTimestamp: '2026-11-21T10:00:01Z' }),
    record('', { resource: podBAgain, severityText: 'WARN', severityNumber: 13, timestamp: '2262-04-11T23:47:16.854775807Z' }),
    record('after the others', { timestamp: '2026-11-21T10:00:00.5Z', observedTimestamp: '2026-11-21T10:00:00.123Z' }),
    record({ big: 2 ** 60, huge: 1e300, tiny: 5e-324, max: Number.MAX_SAFE_INTEGER, min: Number.MIN_SAFE_INTEGER }, { resource: podB, attributes: journalAttrs }),
  ];
}

/** RFC 3339 → ns since the epoch, with BigInt: the reference the encoder's arithmetic is checked against. */
function nanosRef(ts: string): string {
  const m = /^(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d)(?:\.(\d+))?(Z|[+-]\d\d:\d\d)$/.exec(ts);
  if (!m) throw new Error(`test timestamp ${ts}`);
  const ms = Date.parse(m[1]! + (m[3] === 'Z' ? 'Z' : m[3]!));
  return (BigInt(ms) * 1_000_000n + BigInt((m[2] ?? '').slice(0, 9).padEnd(9, '0'))).toString();
}

/** A body or attribute value as the fake flattens an AnyValue (kvlist → object, empty → null). */
function plain(v: unknown): Plain {
  if (v === null || v === undefined) return null;
  if (Array.isArray(v)) return v.map(plain);
  if (typeof v === 'object') return Object.fromEntries(Object.entries(v).filter(([, x]) => x !== undefined).map(([k, x]) => [k, plain(x)]));
  if (typeof v === 'number' && Number.isSafeInteger(v)) return v;
  return v as Plain;
}

function expectedLog(r: LogRecord): Omit<ReceivedLog, 'request' | 'resourceIndex'> {
  return {
    resource: plain(r.resource) as Record<string, Plain>,
    scope: { name: 'kube-telemetry-agent', version: VERSION },
    timeUnixNano: nanosRef(r.timestamp),
    observedTimeUnixNano: nanosRef(r.observedTimestamp),
    severityNumber: r.severityNumber ?? 0,
    severityText: r.severityText ?? '',
    body: plain(r.body),
    attributes: plain(r.attributes) as Record<string, Plain>,
  };
}

/** Records grouped by resource content, groups in order of first appearance: the order the receiver sees. */
function inResourceOrder(records: LogRecord[]): LogRecord[] {
  const groups = new Map<string, LogRecord[]>();
  for (const r of records) {
    const k = JSON.stringify(r.resource);
    groups.set(k, [...(groups.get(k) ?? []), r]);
  }
  return [...groups.values()].flat();
}

const withoutPlace = (logs: ReceivedLog[]) => logs.map(({ request: _request, resourceIndex: _resourceIndex, ...rest }) => rest);

// ---------------------------------------------------------------------------------------------

describe('otlp output: the ExportLogsServiceRequest, field by field', () => {
  for (const protocol of ['http/protobuf', 'http/json'] as const) {
    it(`${protocol}: every record, resource and scope as sent; one ResourceLogs per resource`, async () => {
      const r = await receiver();
      const records = variedRecords();
      const result = await send(output({ endpoint: r.url, protocol }), records);

      expect(r.server.requests).toHaveLength(1);
      const req = r.server.requests[0]!;
      expect(req.method).toBe('POST');
      expect(req.path).toBe('/v1/logs');
      expect(req.headers['content-type']).toBe(protocol === 'http/json' ? 'application/json' : 'application/x-protobuf');
      expect(req.headers['content-encoding']).toBeUndefined(); // the spec's default: no compression
      expect(req.headers['user-agent']).toBe(`kube-telemetry-agent/${VERSION}`);
      expect(result).toEqual({ bytes: req.wireBytes });

      expect(withoutPlace(r.logs)).toEqual(inResourceOrder(records).map(expectedLog));
      // podA, podB (+ podBAgain, equal content), journal: three ResourceLogs, one ScopeLogs each.
      const rls = r.logRequests[0]!.resourceLogs as { scopeLogs: unknown[] }[];
      expect(rls).toHaveLength(3);
      expect(rls.map((rl) => rl.scopeLogs.length)).toEqual([1, 1, 1]);
      expect(r.logs.map((l) => l.resourceIndex)).toEqual([0, 0, 0, 1, 1, 1, 2]);
    });
  }

  it('keeps the AnyValue kinds: integers as int_value, other numbers double_value, lists array_value', async () => {
    const r = await receiver();
    await send(output({ endpoint: r.url }), [record({ i: 3, d: 1.5, b: true, s: 'x', n: null, a: [1] }, { attributes: journalAttrs })]);
    const lr = (r.logRequests[0]!.resourceLogs as { scopeLogs: { logRecords: Record<string, unknown>[] }[] }[])[0]!.scopeLogs[0]!.logRecords[0]!;
    const kv = (list: unknown) => Object.fromEntries((list as { key: string; value: unknown }[]).map((e) => [e.key, e.value]));
    expect(kv((lr.body as { kvlistValue: { values: unknown } }).kvlistValue.values)).toEqual({
      i: { intValue: '3' },
      d: { doubleValue: 1.5 },
      b: { boolValue: true },
      s: { stringValue: 'x' },
      n: {},
      a: { arrayValue: { values: [{ intValue: '1' }] } },
    });
    expect(kv(lr.attributes)).toEqual({
      'systemd.unit': { stringValue: 'kubelet.service' },
      'process.pid': { intValue: '1234' },
      'kta.log.truncated': { boolValue: true },
      'kta.ratio': { doubleValue: 0.25 },
      'journald.fields': { arrayValue: { values: [{ stringValue: 'a' }, { stringValue: 'b' }, { stringValue: 'ünï' }] } },
    });
    // Nothing the record does not have: no trace context, flags, event name or dropped counts.
    expect(Object.keys(lr).sort()).toEqual(['attributes', 'body', 'observedTimeUnixNano', 'timeUnixNano']);
  });

  it('OTLP/JSON on the wire: lowerCamelCase keys, enums as integers, 64-bit integers as decimal strings', async () => {
    const r = await receiver();
    await send(output({ endpoint: r.url, protocol: 'http/json' }), [record({ n: 42 }, { severityNumber: 17, severityText: 'ERROR' })]);
    const text = r.server.requests[0]!.body.toString('utf8');
    const keys = [...text.matchAll(/"([^"]+)":/g)].map((m) => m[1]!);
    for (const k of keys) expect(k).toMatch(/^[a-z][a-zA-Z]*$|^k8s\.|^container\.|^log\./);
    expect(text).toContain('"timeUnixNano":"1795255200123456789"');
    expect(text).toContain('"observedTimeUnixNano":"1795255200130000000"');
    expect(text).toContain('"severityNumber":17,');
    expect(text).toContain('{"key":"n","value":{"intValue":"42"}}');
  });

  it('the protobuf bytes are exactly what protobufjs encodes from the expected message', () => {
    const records = variedRecords();
    const kvs = (o: Attributes | Record<string, unknown>): unknown[] => Object.entries(o).map(([key, v]) => ({ key, value: anyValue(v) }));
    const anyValue = (v: unknown): unknown => {
      if (v === null) return {};
      if (typeof v === 'string') return { stringValue: v };
      if (typeof v === 'boolean') return { boolValue: v };
      if (typeof v === 'number') return Number.isSafeInteger(v) ? { intValue: v } : { doubleValue: v };
      if (Array.isArray(v)) return { arrayValue: { values: v.map(anyValue) } };
      return { kvlistValue: { values: kvs(v as Record<string, unknown>) } };
    };
    const grouped = new Map<string, { resource: Attributes; records: LogRecord[] }>();
    for (const rec of records) {
      const k = JSON.stringify(rec.resource);
      if (!grouped.has(k)) grouped.set(k, { resource: rec.resource, records: [] });
      grouped.get(k)!.records.push(rec);
    }
    const message = {
      resourceLogs: [...grouped.values()].map((g) => ({
        resource: { attributes: kvs(g.resource) },
        scopeLogs: [
          {
            scope: { name: 'kube-telemetry-agent', version: VERSION },
            logRecords: g.records.map((rec) => ({
              timeUnixNano: nanosRef(rec.timestamp),
              ...(rec.severityNumber ? { severityNumber: rec.severityNumber } : {}),
              ...(rec.severityText ? { severityText: rec.severityText } : {}),
              body: anyValue(rec.body),
              attributes: kvs(rec.attributes),
              observedTimeUnixNano: nanosRef(rec.observedTimestamp),
            })),
          },
        ],
      })),
    };
    const reference = ExportLogsServiceRequest.encode(ExportLogsServiceRequest.fromObject(message)).finish();
    expect(Buffer.from(new OtlpLogsEncoder().encodeProtobuf(records)).equals(Buffer.from(reference))).toBe(true);
  });

  it('sends nothing for an empty batch (the spec lets an empty request succeed; there is no point)', async () => {
    const r = await receiver();
    expect(await send(output({ endpoint: r.url }), [])).toEqual({ bytes: 0 });
    expect(r.server.requests).toHaveLength(0);
  });

  it('overlapping sends (concurrency 2) each carry their own batch', async () => {
    const r = await receiver();
    const o = output({ endpoint: r.url, concurrency: 2 });
    r.server.inject({ delayMs: 200 });
    const a = Array.from({ length: 50 }, (_, i) => record(`a${i}`));
    const b = Array.from({ length: 3 }, (_, i) => record(`b${i}`, { resource: podB }));
    await Promise.all([send(o, a), send(o, b)]);
    await send(o, [record('c', { resource: journal })]); // a pooled writer, reused
    const bodies = r.logs.map((l) => l.body).sort();
    expect(bodies).toEqual([...a, ...b, record('c')].map((x) => x.body).sort());
    expect(r.logs.filter((l) => l.resource['service.name'] === 'kubelet').map((l) => l.body)).toEqual(['c']);
  });
});

// ---------------------------------------------------------------------------------------------

describe('otlp output: times exact to the nanosecond', () => {
  it('matches BigInt arithmetic for any time from 1970 to 2554, any fraction length and UTC offsets', () => {
    const cases = [
      '1970-01-01T00:00:00Z',
      '1970-01-01T00:00:00.000000001Z',
      '2026-11-21T10:00:00.123456789Z',
      '2026-11-21T10:00:00.1Z',
      '2026-11-21T10:00:00.12345Z',
      '2026-11-21T10:00:00.1234567891234Z', // past 9 digits: truncated
      '2026-11-21T12:00:00.5+02:00',
      '2026-11-21T05:30:00.000000007-04:30',
      '2262-04-11T23:47:16.854775807Z', // 2^63 ns
      '2554-07-21T23:34:32.999999999Z', // the last second that fits
    ];
    let seed = 7;
    const rnd = () => ((seed = (seed * 1103515245 + 12345) % 2 ** 31) / 2 ** 31);
    for (let i = 0; i < 2000; i++) {
      const ms = Math.floor(rnd() * Date.UTC(2550, 0, 1));
      const frac = String(Math.floor(rnd() * 1e9)).padStart(9, '0');
      cases.push(new Date(ms).toISOString().slice(0, 19) + '.' + frac + 'Z');
    }
    for (const ts of cases) expect(unixNanos(ts), ts).toBe(nanosRef(ts));
    // Protobuf too: one record per case, decoded back.
    const enc = new OtlpLogsEncoder();
    const decoded = ExportLogsServiceRequest.toObject(ExportLogsServiceRequest.decode(enc.encodeProtobuf(cases.map((ts) => record('x', { timestamp: ts })))), {
      longs: String,
    }) as { resourceLogs: { scopeLogs: { logRecords: { timeUnixNano: string }[] }[] }[] };
    // The epoch itself is 0, which the spec reads as "unknown": left out, as every zero field is.
    expect(decoded.resourceLogs[0]!.scopeLogs[0]!.logRecords.map((l) => l.timeUnixNano ?? '0')).toEqual(cases.map(nanosRef));
  });

  it('an unreadable or out-of-range time is sent as 0 (the spec: unknown); the other time is kept', async () => {
    const r = await receiver();
    const bad = ['yesterday', '2026-11-21 10:00', '1969-12-31T23:59:59Z', '2026-13-01T00:00:00Z', '2026-11-21T10:00:00.Z', '2600-01-01T00:00:00Z', '2026-11-21T10:00:00'];
    await send(output({ endpoint: r.url }), bad.map((ts) => record(ts, { timestamp: ts })));
    expect(r.logs.map((l) => [l.body, l.timeUnixNano, l.observedTimeUnixNano])).toEqual(bad.map((ts) => [ts, '0', nanosRef('2026-11-21T10:00:00.130000000Z')]));
  });
});

// ---------------------------------------------------------------------------------------------

describe('otlp output: bad input', () => {
  for (const protocol of ['http/protobuf', 'http/json'] as const) {
    it(`${protocol}: lone surrogates (from JSON-parsed bodies) arrive as U+FFFD, in bodies, keys, attributes and severity`, async () => {
      const r = await receiver();
      const attrs = Object.freeze({ 'bad\ud800key': 'v\udc00' });
      await send(output({ endpoint: r.url, protocol }), [
        record('lone \ud800 high, lone \udfff low, pair \ud83d\ude00 kept', { severityText: 'WARN\ud800' }),
        record({ 'k\udbff': ['\udc00'] }, { attributes: attrs, resource: Object.freeze({ 'service.name': 'x\ud800' }) }),
      ]);
      expect(r.logs.map((l) => [l.body, l.severityText, l.attributes, l.resource])).toEqual([
        ['lone \ufffd high, lone \ufffd low, pair 😀 kept', 'WARN\ufffd', plain(stdoutAttrs), plain(podA)],
        [{ 'k\ufffd': ['\ufffd'] }, '', { 'bad\ufffdkey': 'v\ufffd' }, { 'service.name': 'x\ufffd' }],
      ]);
    });
  }

  it('a huge record (4 MiB body) arrives whole, gzip or not', async () => {
    const r = await receiver();
    const big = 'x'.repeat(2 * 1024 * 1024) + 'ü'.repeat(1024 * 1024);
    await send(output({ endpoint: r.url }), [record(big)]);
    await send(output({ endpoint: r.url, compression: 'gzip' }), [record(big)]);
    expect(r.logs.map((l) => l.body === big)).toEqual([true, true]);
    expect(r.server.requests[1]!.wireBytes).toBeLessThan(100 * 1024);
  });

  for (const protocol of ['http/protobuf', 'http/json'] as const) {
    it(`${protocol}: a body nested deeper than ${MAX_BODY_DEPTH} levels carries the rest as JSON text (parsers stop at 100 messages)`, async () => {
      // 5000 levels, arrays and objects in turn: JSON.parse builds it; JSON.stringify could not write it back.
      const LEVELS = 5000;
      let deep: unknown = { leaf: 'bottom' };
      for (let i = 0; i < LEVELS; i++) deep = i % 2 ? { d: deep } : [deep];
      expect(() => JSON.stringify(deep)).toThrow(RangeError);
      const r = await receiver();
      await send(output({ endpoint: r.url, protocol }), [record(deep as LogRecord['body'])]);
      let v = r.logs[0]!.body as Plain;
      let levels = 0;
      while (typeof v === 'object' && v !== null) {
        v = (Array.isArray(v) ? v[0] : (v as Record<string, Plain>).d)!;
        levels++;
      }
      expect(levels).toBe(MAX_BODY_DEPTH);
      // The value built at step LEVELS - 1 - MAX_BODY_DEPTH, as text.
      const steps = Array.from({ length: LEVELS - MAX_BODY_DEPTH }, (_, i) => i).reverse();
      const text = steps.map((i) => (i % 2 ? '{"d":' : '[')).join('') + '{"leaf":"bottom"}' + [...steps].reverse().map((i) => (i % 2 ? '}' : ']')).join('');
      expect(v).toBe(text);
    });
  }

  it('the deep-nesting fallback writes JSON exactly as JSON.stringify does', () => {
    const values: unknown[] = [
      { a: 1, b: [1, 'two', null, true, { c: -1.5e-7 }], 'q"uote': 'line\nbreak \u2028 ü 😀', u: undefined, e: {}, l: [] },
      [undefined, NaN, Infinity, -0, 2 ** 70],
      'plain',
      42,
      null,
      { __proto__: null, x: 'no prototype' },
      JSON.parse('{"__proto__":{"own":true},"k":[[[]]]}'),
    ];
    for (const v of values) expect(deepJson(v)).toBe(JSON.stringify(v));
  });

  it(`${MAX_BODY_DEPTH} levels of objects fit the protobuf recursion limit of 100 nested messages`, async () => {
    let deep: unknown = 'leaf';
    for (let i = 0; i < MAX_BODY_DEPTH; i++) deep = { d: deep };
    const r = await receiver();
    await send(output({ endpoint: r.url }), [record(deep as LogRecord['body'])]);
    expect(r.logs[0]!.body).toEqual(deep);
  });

  it('non-finite doubles and integers past 2^53 are doubles, in JSON as proto3 spells them', async () => {
    const r = await receiver();
    await send(output({ endpoint: r.url, protocol: 'http/json' }), [record({ nan: NaN, inf: Infinity, ninf: -Infinity, big: 2 ** 70 })]);
    const text = r.server.requests[0]!.body.toString('utf8');
    expect(text).toContain('{"key":"nan","value":{"doubleValue":"NaN"}}');
    expect(text).toContain('{"key":"inf","value":{"doubleValue":"Infinity"}}');
    expect(text).toContain('{"key":"ninf","value":{"doubleValue":"-Infinity"}}');
    expect(r.logs[0]!.body).toEqual({ nan: NaN, inf: Infinity, ninf: -Infinity, big: 2 ** 70 });
  });
});

// ---------------------------------------------------------------------------------------------

describe('otlp output: compression', () => {
  for (const protocol of ['http/protobuf', 'http/json'] as const) {
    it(`${protocol} with gzip: Content-Encoding gzip, the bytes on the wire counted`, async () => {
      const r = await receiver();
      const records = Array.from({ length: 200 }, (_, i) => record(`line ${i} ${'repetitive '.repeat(10)}`));
      const result = await send(output({ endpoint: r.url, protocol, compression: 'gzip' }), records);
      const req = r.server.requests[0]!;
      expect(req.headers['content-encoding']).toBe('gzip');
      expect(result.bytes).toBe(req.wireBytes);
      expect(req.wireBytes).toBeLessThan(req.body.length / 5);
      expect(withoutPlace(r.logs)).toEqual(records.map(expectedLog));
    });
  }
});

// ---------------------------------------------------------------------------------------------

describe('otlp output: the receiver’s answers', () => {
  for (const protocol of ['http/protobuf', 'http/json'] as const) {
    it(`${protocol}: partial success with rejected records resolves with rejected {count, reason}, not retried`, async () => {
      const r = await receiver();
      r.partialSuccess({ rejected: 2, message: 'two records were too old' });
      const result = await send(output({ endpoint: r.url, protocol }), variedRecords());
      expect(result).toEqual({ bytes: r.server.requests[0]!.wireBytes, rejected: { count: 2, reason: 'two records were too old' } });
      expect(r.server.requests).toHaveLength(1);
      // A receiver claiming more than was sent, and one giving no message.
      r.partialSuccess({ rejected: 99, message: '' });
      expect((await send(output({ endpoint: r.url, protocol }), [record('x'), record('y')])).rejected).toEqual({ count: 2, reason: 'the receiver gave no reason' });
    });

    it(`${protocol}: partial success with 0 rejected and a message is a warning, and full success`, async () => {
      const r = await receiver();
      r.partialSuccess({ rejected: 0, message: 'attribute k8s.pod.label.x is deprecated' });
      expect(await send(output({ endpoint: r.url, protocol }), [record('x')])).toEqual({ bytes: r.server.requests[0]!.wireBytes });
      expect(warnings).toEqual(['output otel: the receiver accepted the batch with a warning: attribute k8s.pod.label.x is deprecated']);
    });

    it(`${protocol}: 400 is permanent, with the google.rpc.Status message decoded`, async () => {
      const r = await receiver();
      r.fail({ status: 400, message: 'log record 3: invalid attribute value' });
      const err = await rejection(send(output({ endpoint: r.url, protocol }), [record('x')]));
      expect(err).toBeInstanceOf(PermanentError);
      expect(err.message).toBe(`output otel: ${r.url}/v1/logs answered 400 Bad Request: log record 3: invalid attribute value`);
    });

    it(`${protocol}: 429 and 503 are retryable with Retry-After in seconds or as an HTTP date`, async () => {
      const r = await receiver();
      const o = output({ endpoint: r.url, protocol });
      r.fail({ status: 429, message: 'slow down', headers: { 'retry-after': '7' } });
      const e429 = await rejection(send(o, [record('x')]));
      expect(e429).toBeInstanceOf(RetryableError);
      expect((e429 as RetryableError).retryAfterMs).toBe(7000);
      expect(e429.message).toContain('answered 429 Too Many Requests: slow down');

      const at = new Date(Date.now() + 120_000).toUTCString();
      r.fail({ status: 503, message: 'overloaded', headers: { 'retry-after': at } });
      const e503 = await rejection(send(o, [record('x')]));
      expect(e503).toBeInstanceOf(RetryableError);
      expect((e503 as RetryableError).retryAfterMs).toBeGreaterThan(110_000);
      expect((e503 as RetryableError).retryAfterMs).toBeLessThanOrEqual(120_000);
      expect(r.logs).toEqual([]); // refused requests are not kept
    });
  }

  it('retries exactly the spec’s list (429, 502, 503, 504); 500, 408, 401, 404, 413 and the rest are permanent', async () => {
    const r = await receiver();
    const o = output({ endpoint: r.url });
    const kinds: Record<number, string> = {};
    for (const status of [429, 502, 503, 504, 500, 501, 408, 401, 403, 404, 409, 413, 415, 422, 301]) {
      r.fail({ status, message: `status ${status}` });
      const err = await rejection(send(o, [record('x')]));
      kinds[status] = err instanceof RetryableError ? 'retry' : err instanceof PermanentError ? 'permanent' : 'other';
      expect((err as RetryableError).retryAfterMs).toBeUndefined();
    }
    expect(kinds).toEqual({
      429: 'retry',
      502: 'retry',
      503: 'retry',
      504: 'retry',
      500: 'permanent',
      501: 'permanent',
      408: 'permanent',
      401: 'permanent',
      403: 'permanent',
      404: 'permanent',
      409: 'permanent',
      413: 'permanent',
      415: 'permanent',
      422: 'permanent',
      301: 'permanent',
    });
  });

  it('permanent errors say what to check', async () => {
    const r = await receiver();
    const e404 = await rejection(send(output({ endpoint: r.url + '/otlp' }), [record('x')]));
    expect(e404.message).toBe(
      `output otel: ${r.url}/otlp/v1/logs answered 404 Not Found: no such path /otlp/v1/logs (is the endpoint the receiver base URL? /v1/logs was appended to it)`,
    );
    const o = output({ endpoint: r.url });
    const msg = async (status: number) => {
      r.fail({ status, message: 'no' });
      return (await rejection(send(o, [record('x')]))).message;
    };
    expect(await msg(413)).toMatch(/lower batch\.max_bytes\)$/);
    expect(await msg(401)).toMatch(/\(check auth and headers\)$/);
    expect(await msg(415)).toMatch(/does not take http\/protobuf; try the other protocol\)$/);
  });

  it('a proxy’s HTML or text error page is quoted as text, not decoded as a Status', async () => {
    const r = await receiver();
    const o = output({ endpoint: r.url });
    r.server.inject({ status: 502, body: '<html><body><h1>502 Bad Gateway</h1>\n</body></html>', headers: { 'content-type': 'text/html' } });
    const e = await rejection(send(o, [record('x')]));
    expect(e).toBeInstanceOf(RetryableError);
    expect(e.message).toBe(`output otel: ${r.url}/v1/logs answered 502 Bad Gateway: <html><body><h1>502 Bad Gateway</h1> </body></html>`);
    r.server.inject({ status: 500, body: '' });
    expect((await rejection(send(o, [record('x')]))).message).toMatch(/answered 500 Internal Server Error: \(empty body\)$/);
  });

  it('a 200 whose body is not an ExportLogsServiceResponse is still success, said once', async () => {
    const r = await receiver();
    const o = output({ endpoint: r.url });
    r.server.inject({ status: 200, body: '\xff\xff\xff not protobuf', headers: { 'content-type': 'application/x-protobuf' } }, 2);
    expect(await send(o, [record('x')])).toEqual({ bytes: expect.any(Number) });
    expect(await send(o, [record('y')])).toEqual({ bytes: expect.any(Number) });
    expect(warnings).toHaveLength(1);
    expect(warnings[0]).toMatch(/cannot read the receiver's ExportLogsServiceResponse .*taking 200 as full success/);
  });

  it('the fake answers a body it cannot decode with 400 and a Status (as the collector does): permanent', async () => {
    const r = await receiver();
    const res = await fetch(r.url + '/v1/logs', { method: 'POST', headers: { 'content-type': 'application/x-protobuf' }, body: Buffer.from([0x0a, 0xff, 0xff]) });
    expect(res.status).toBe(400);
    expect((RpcStatus.toObject(RpcStatus.decode(Buffer.from(await res.arrayBuffer()))) as { message: string }).message).toMatch(/cannot decode the request/);
    const json = await fetch(r.url + '/v1/logs', { method: 'POST', headers: { 'content-type': 'application/json' }, body: '{"resource_logs":[]}' });
    expect(json.status).toBe(400);
    expect(((await json.json()) as { message: string }).message).toMatch(/lowerCamelCase/);
    const enumName = await fetch(r.url + '/v1/logs', {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: '{"resourceLogs":[{"scopeLogs":[{"logRecords":[{"severityNumber":"SEVERITY_NUMBER_INFO"}]}]}]}',
    });
    expect(((await enumName.json()) as { message: string }).message).toMatch(/enum values must be integers/);
  });
});

// ---------------------------------------------------------------------------------------------

describe('otlp output: network failures', () => {
  it('a connection reset is retryable', async () => {
    const r = await receiver();
    r.server.inject({ reset: true });
    const e = await rejection(send(output({ endpoint: r.url }), [record('x')]));
    expect(e).toBeInstanceOf(RetryableError);
    expect(e.message).toMatch(/closed the connection before answering/);
  });

  it('a receiver that is down is retryable, naming the URL', async () => {
    const r = await receiver();
    await r.server.down();
    const e = await rejection(send(output({ endpoint: r.url }), [record('x')]));
    expect(e).toBeInstanceOf(RetryableError);
    expect(e.message).toContain(`request to ${r.url}/v1/logs failed: connection refused`);
  });

  it('an untrusted certificate is retryable with a clear message; with the CA in tls.ca_file it works', async () => {
    const tls = { key: readFileSync(pki.serverKeyFile), cert: readFileSync(pki.serverCertFile) };
    const r = await receiver({ tls });
    const e = await rejection(send(output({ endpoint: r.url }), [record('x')]));
    expect(e).toBeInstanceOf(RetryableError);
    expect(e.message).toMatch(/TLS certificate is not trusted.*set tls\.ca_file/);
    expect(r.logs).toEqual([]);
    await send(output({ endpoint: r.url, tls: { ca_file: pki.caFile } }), [record('over tls')]);
    expect(r.logs.map((l) => l.body)).toEqual(['over tls']);
  });

  it('an abort cancels a request to a slow receiver at once, and the receiver keeps nothing', async () => {
    const r = await receiver();
    r.server.inject({ delayMs: 1500 });
    const ac = new AbortController();
    const pending = send(output({ endpoint: r.url }), [record('aborted')], ac.signal);
    setTimeout(() => ac.abort(new Error('shutting down')), 100);
    await expect(pending).rejects.toThrow('shutting down');
    await new Promise((done) => setTimeout(done, 1700)); // past the delay: the fake would have kept it by now
    expect(r.logs).toEqual([]);
  });

  it('a receiver slower than the timeout is retryable, saying so', async () => {
    const r = await receiver();
    r.server.inject({ delayMs: 2000 });
    const e = await rejection(send(output({ endpoint: r.url, timeout: '200ms' }), [record('x')]));
    expect(e).toBeInstanceOf(RetryableError);
    expect(e.message).toMatch(/within 200 ms \(timeout\)/);
  });
});

// ---------------------------------------------------------------------------------------------

describe('otlp output: OTEL_EXPORTER_OTLP_* environment variables (exporter spec), config winning', () => {
  const settings = (config: Record<string, unknown> = {}) => {
    const parsed = otlpConfig.parse({ type: 'otlp', inputs: ['containers'], ...config });
    return resolveOtlpSettings(parsed, process.env).settings!;
  };

  it('OTEL_EXPORTER_OTLP_ENDPOINT is a base URL: v1/logs is appended, slash-corrected, query kept', async () => {
    const r = await receiver({ logsPath: '/mycollector/v1/logs' });
    process.env.OTEL_EXPORTER_OTLP_ENDPOINT = `${r.url}/mycollector`;
    await send(output({}), [record('via generic endpoint')]);
    expect(r.server.requests[0]!.path).toBe('/mycollector/v1/logs');
    process.env.OTEL_EXPORTER_OTLP_ENDPOINT = `${r.url}/mycollector/`;
    expect(settings().url).toBe(`${r.url}/mycollector/v1/logs`);
    process.env.OTEL_EXPORTER_OTLP_ENDPOINT = `${r.url}`;
    expect(settings().url).toBe(`${r.url}/v1/logs`);
    process.env.OTEL_EXPORTER_OTLP_ENDPOINT = `${r.url}/base?tenant=a`;
    expect(settings().url).toBe(`${r.url}/base/v1/logs?tenant=a`);
    expect(r.logs.map((l) => l.body)).toEqual(['via generic endpoint']);
  });

  it('OTEL_EXPORTER_OTLP_LOGS_ENDPOINT is used as is and wins over OTEL_EXPORTER_OTLP_ENDPOINT; config endpoint wins over both', async () => {
    const r = await receiver({ logsPath: '/ingest/otlp-logs' });
    process.env.OTEL_EXPORTER_OTLP_ENDPOINT = 'http://127.0.0.1:9/unused';
    process.env.OTEL_EXPORTER_OTLP_LOGS_ENDPOINT = `${r.url}/ingest/otlp-logs`;
    await send(output({}), [record('via logs endpoint')]);
    expect(r.server.requests[0]!.path).toBe('/ingest/otlp-logs');
    expect(r.logs.map((l) => l.body)).toEqual(['via logs endpoint']);
    process.env.OTEL_EXPORTER_OTLP_LOGS_ENDPOINT = r.url; // no path: the root path, nothing appended
    expect(settings().url).toBe(`${r.url}/`);
    expect(settings({ endpoint: 'http://collector:4318' }).url).toBe('http://collector:4318/v1/logs');
  });

  it('OTEL_EXPORTER_OTLP_HEADERS and _LOGS_HEADERS: merged, the signal-specific winning per name, percent-decoded; config headers win', async () => {
    const r = await receiver();
    process.env.OTEL_EXPORTER_OTLP_ENDPOINT = r.url;
    process.env.OTEL_EXPORTER_OTLP_HEADERS = 'x-tenant=generic, x-scope-orgid = team%20a ,authorization=Bearer%20gen';
    process.env.OTEL_EXPORTER_OTLP_LOGS_HEADERS = 'X-Tenant=logs%2Cteam;meta=ignored,x-empty=';
    await send(output({ headers: { 'X-Scope-OrgID': 'from config' } }), [record('x')]);
    const h = r.server.requests[0]!.headers;
    expect([h['x-tenant'], h['x-scope-orgid'], h['authorization'], h['x-empty']]).toEqual(['logs,team', 'from config', 'Bearer gen', undefined]);
    // With auth in the config, the environment's Authorization gives way.
    await send(output({ auth: { bearer_token: 'from-config' } }), [record('y')]);
    expect(r.server.requests[1]!.headers['authorization']).toBe('Bearer from-config');
  });

  it('OTEL_EXPORTER_OTLP_COMPRESSION and _LOGS_COMPRESSION (any case); config wins', async () => {
    const r = await receiver();
    process.env.OTEL_EXPORTER_OTLP_ENDPOINT = r.url;
    process.env.OTEL_EXPORTER_OTLP_COMPRESSION = 'GZIP';
    await send(output({}), [record('gzip from generic')]);
    process.env.OTEL_EXPORTER_OTLP_LOGS_COMPRESSION = 'none';
    await send(output({}), [record('none from logs')]);
    await send(output({ compression: 'gzip' }), [record('gzip from config')]);
    expect(r.server.requests.map((q) => q.headers['content-encoding'] ?? 'none')).toEqual(['gzip', 'none', 'gzip']);
    expect(r.logs.map((l) => l.body)).toEqual(['gzip from generic', 'none from logs', 'gzip from config']);
  });

  it('OTEL_EXPORTER_OTLP_PROTOCOL and _LOGS_PROTOCOL (any case); config wins', async () => {
    const r = await receiver();
    process.env.OTEL_EXPORTER_OTLP_ENDPOINT = r.url;
    process.env.OTEL_EXPORTER_OTLP_PROTOCOL = 'HTTP/JSON';
    await send(output({}), [record('json from generic')]);
    process.env.OTEL_EXPORTER_OTLP_LOGS_PROTOCOL = 'http/protobuf';
    await send(output({}), [record('protobuf from logs')]);
    await send(output({ protocol: 'http/json' }), [record('json from config')]);
    expect(r.server.requests.map((q) => q.headers['content-type'])).toEqual(['application/json', 'application/x-protobuf', 'application/json']);
    expect(r.logs.map((l) => l.body)).toEqual(['json from generic', 'protobuf from logs', 'json from config']);
  });

  it('OTEL_EXPORTER_OTLP_TIMEOUT and _LOGS_TIMEOUT in milliseconds; config wins; 10 s by default', async () => {
    process.env.OTEL_EXPORTER_OTLP_ENDPOINT = 'http://collector:4318';
    expect(settings().timeoutMs).toBe(10_000);
    process.env.OTEL_EXPORTER_OTLP_TIMEOUT = '5000';
    expect(settings().timeoutMs).toBe(5000);
    process.env.OTEL_EXPORTER_OTLP_LOGS_TIMEOUT = '250';
    expect(settings().timeoutMs).toBe(250);
    expect(settings({ timeout: '3s' }).timeoutMs).toBe(3000);
    const r = await receiver();
    process.env.OTEL_EXPORTER_OTLP_ENDPOINT = r.url;
    r.server.inject({ delayMs: 2000 });
    expect((await rejection(send(output({}), [record('x')]))).message).toMatch(/within 250 ms \(timeout\)/);
  });

  it('OTEL_EXPORTER_OTLP_CERTIFICATE (and _LOGS_): the CA for https; tls.ca_file wins', async () => {
    const r = await receiver({ tls: { key: readFileSync(pki.serverKeyFile), cert: readFileSync(pki.serverCertFile) } });
    process.env.OTEL_EXPORTER_OTLP_ENDPOINT = r.url;
    process.env.OTEL_EXPORTER_OTLP_CERTIFICATE = pki.otherCaFile;
    expect((await rejection(send(output({}), [record('x')]))).message).toMatch(/TLS certificate is not trusted/);
    process.env.OTEL_EXPORTER_OTLP_LOGS_CERTIFICATE = pki.caFile;
    await send(output({}), [record('ca from logs variable')]);
    delete process.env.OTEL_EXPORTER_OTLP_LOGS_CERTIFICATE;
    await send(output({ tls: { ca_file: pki.caFile } }), [record('ca from config')]);
    expect(r.logs.map((l) => l.body)).toEqual(['ca from logs variable', 'ca from config']);
  });

  it('OTEL_EXPORTER_OTLP_CLIENT_CERTIFICATE and _CLIENT_KEY (and _LOGS_): mutual TLS', async () => {
    const r = await receiver({ tls: { key: readFileSync(pki.serverKeyFile), cert: readFileSync(pki.serverCertFile), ca: readFileSync(pki.caFile), requestCert: true } });
    process.env.OTEL_EXPORTER_OTLP_ENDPOINT = r.url;
    process.env.OTEL_EXPORTER_OTLP_CERTIFICATE = pki.caFile;
    expect(await rejection(send(output({}), [record('x')]))).toBeInstanceOf(RetryableError); // no client certificate
    process.env.OTEL_EXPORTER_OTLP_LOGS_CLIENT_CERTIFICATE = pki.clientCertFile;
    process.env.OTEL_EXPORTER_OTLP_CLIENT_KEY = pki.clientKeyFile;
    await send(output({}), [record('mutual tls')]);
    expect(r.logs.map((l) => l.body)).toEqual(['mutual tls']);
  });
});

// ---------------------------------------------------------------------------------------------

describe('otlp output: validate', () => {
  const yaml = (output: string) => `sources:
  containers:
    type: container_logs
outputs:
  otlp:
    type: otlp
    inputs: [containers]
${output}`;
  const problems = (text: string): string[] => {
    try {
      parseConfig(text, 'agent.yaml', process.env);
    } catch (err) {
      expect(err).toBeInstanceOf(ConfigError);
      return (err as ConfigError).problems;
    }
    throw new Error('config was accepted');
  };

  it('is registered as type otlp', () => {
    expect(outputPlugins.otlp.schema).toBe(otlpConfig);
    process.env.OTEL_EXPORTER_OTLP_ENDPOINT = 'http://collector:4318';
    const cfg = parseConfig(yaml(''), 'agent.yaml', process.env);
    const o = createOutput(cfg.outputs.otlp!, ctx);
    expect(o).toBeInstanceOf(OtlpOutput);
    expect((o as OtlpOutput).settings).toMatchObject({ url: 'http://collector:4318/v1/logs', protocol: 'http/protobuf', compression: 'none', timeoutMs: 10_000 });
    track.output(o);
  });

  it('with neither an endpoint nor an OTEL_EXPORTER_OTLP_*ENDPOINT, names the key and both variables', () => {
    expect(problems(yaml(''))).toEqual([
      'outputs.otlp.endpoint: no endpoint: set endpoint (the receiver base URL, /v1/logs is appended), or the environment variable OTEL_EXPORTER_OTLP_LOGS_ENDPOINT (the full URL) or OTEL_EXPORTER_OTLP_ENDPOINT (the base URL)',
    ]);
  });

  it('reports bad variables by name, at the key they stand for', () => {
    process.env.OTEL_EXPORTER_OTLP_ENDPOINT = 'collector:4318';
    process.env.OTEL_EXPORTER_OTLP_PROTOCOL = 'grpc';
    process.env.OTEL_EXPORTER_OTLP_LOGS_COMPRESSION = 'zstd';
    process.env.OTEL_EXPORTER_OTLP_TIMEOUT = '10s';
    process.env.OTEL_EXPORTER_OTLP_HEADERS = 'good=1,novalue,bad%zz=1,sp ace=x';
    process.env.OTEL_EXPORTER_OTLP_CERTIFICATE = join(scratch, 'missing.pem');
    expect(problems(yaml(''))).toEqual([
      'outputs.otlp.endpoint: OTEL_EXPORTER_OTLP_ENDPOINT is not an http:// or https:// URL',
      'outputs.otlp.protocol: OTEL_EXPORTER_OTLP_PROTOCOL="grpc": this output speaks OTLP over HTTP only (http/protobuf or http/json), not gRPC; set protocol to choose one',
      'outputs.otlp.compression: OTEL_EXPORTER_OTLP_LOGS_COMPRESSION="zstd": expected none or gzip',
      'outputs.otlp.timeout: OTEL_EXPORTER_OTLP_TIMEOUT="10s": expected a whole number of milliseconds above 0',
      'outputs.otlp.headers: OTEL_EXPORTER_OTLP_HEADERS: entry 2 "novalue" is not key=value',
      'outputs.otlp.headers: OTEL_EXPORTER_OTLP_HEADERS: entry 3 "bad%zz=1" has a bad percent-encoding',
      'outputs.otlp.headers: OTEL_EXPORTER_OTLP_HEADERS: "sp ace" is not a valid header name',
    ]);
  });

  it('a TLS file named by a variable is checked on the node, named with its variable', async () => {
    process.env.OTEL_EXPORTER_OTLP_ENDPOINT = 'https://collector:4318';
    process.env.OTEL_EXPORTER_OTLP_CERTIFICATE = join(scratch, 'missing.pem');
    const config = parseConfig(yaml(''), 'agent.yaml', process.env);
    expect((await checkTarget(config, { scope: 'reload' })).problems).toEqual([
      `outputs.otlp.tls.ca_file (OTEL_EXPORTER_OTLP_CERTIFICATE): cannot read ${join(scratch, 'missing.pem')}: no such file`,
    ]);
  });

  it('the config keys silence the variables they replace', () => {
    process.env.OTEL_EXPORTER_OTLP_PROTOCOL = 'grpc';
    process.env.OTEL_EXPORTER_OTLP_TIMEOUT = 'soon';
    expect(() => parseConfig(yaml('    endpoint: http://collector:4318\n    protocol: http/json\n    timeout: 5s\n'), 'agent.yaml', process.env)).not.toThrow();
  });

  it('refuses an endpoint that already ends in /v1/logs (it would be sent to /v1/logs/v1/logs)', () => {
    expect(problems(yaml('    endpoint: http://collector:4318/v1/logs\n'))).toEqual([
      "outputs.otlp.endpoint: endpoint is the receiver's base URL and /v1/logs is appended to it; drop /v1/logs from http://collector:4318/v1/logs",
    ]);
  });

  it('a client certificate from the environment without its key is a problem', () => {
    process.env.OTEL_EXPORTER_OTLP_ENDPOINT = 'https://collector:4318';
    process.env.OTEL_EXPORTER_OTLP_CLIENT_CERTIFICATE = pki.clientCertFile;
    expect(problems(yaml(''))).toEqual([
      'outputs.otlp.tls: a client certificate is set (OTEL_EXPORTER_OTLP_*CLIENT_CERTIFICATE) without its key (tls.key_file or OTEL_EXPORTER_OTLP_*CLIENT_KEY)',
    ]);
  });
});
