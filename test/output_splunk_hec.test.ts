import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { beforeAll, describe, expect, it, vi } from 'vitest';
import type { LogRecord } from '../agent/record.ts';
import { NdjsonEncoder } from '../outputs/ndjson.ts';
import { PermanentError, RetryableError } from '../outputs/output.ts';
import { fileProblem } from '../agent/config/target_check.ts';
import { DEFAULT_FIELDS, SplunkHecOutput, splunkHecConfig, splunkHecNeeds } from '../outputs/splunk_hec.ts';
import { HEC_TOKEN, SplunkHecReceiver, type HecEvent, type SplunkHecOptions } from './fakes/splunk_hec.ts';
import { outputSuite, podResource, recordBuilder, send, stdoutAttrs as webStdout } from './helpers/output_fixtures.ts';
import { makeTestPki, type TestPki } from './helpers/rsyslog.ts';

/**
 * The splunk_hec output against a fake HEC (test/fakes/splunk_hec.ts) that reads the wire format
 * the way HEC does: every event received is compared with the record it came from, and each of
 * HEC's answers is mapped to what the pipeline is told (accepted, failed[] with retryable flags,
 * RetryableError with Retry-After, PermanentError).
 */

const logs: { level: string; msg: string }[] = [];
const { scratch: dir, ctx, track } = outputSuite('kta-hec-', {
  name: 'splunk',
  log: (level, msg) => logs.push({ level, msg }),
  afterClose: () => {
    logs.length = 0;
    vi.useRealTimers();
  },
});

async function hec(opts: SplunkHecOptions = {}): Promise<SplunkHecReceiver> {
  return track.receiver(await SplunkHecReceiver.start(opts));
}
function output(fake: SplunkHecReceiver | string, keys: Record<string, unknown> = {}): SplunkHecOutput {
  const endpoint = typeof fake === 'string' ? fake : fake.url;
  return track.output(new SplunkHecOutput(splunkHecConfig.parse({ type: 'splunk_hec', inputs: ['containers'], endpoint, token: HEC_TOKEN, ...keys }), ctx));
}

const webResource = podResource({ 'k8s.deployment.name': 'web', 'k8s.replicaset.name': 'web-7d9f', 'k8s.pod.label.app': 'web' });
const dbResource = Object.freeze({
  'k8s.node.name': 'node-1',
  'k8s.namespace.name': 'data',
  'k8s.pod.name': 'db-0',
  'k8s.container.name': 'postgres',
  'k8s.statefulset.name': 'db',
});
const dbStderr = Object.freeze({ 'log.iostream': 'stderr', 'log.file.path': '/var/log/pods/data_db-0_77aa/postgres/3.log' });
/** A journald record: no file, the unit as service.name, the journal's own host name. */
const journalResource = Object.freeze({ 'k8s.node.name': 'node-1', 'host.name': 'ip-10-0-0-7', 'service.name': 'kubelet.service' });
const journalAttrs = Object.freeze({ 'journald._SYSTEMD_UNIT': 'kubelet.service' });

const record = recordBuilder(webResource, webStdout);

/** What HEC must have kept for a record with the default config (2026-11-21T10:00:00Z is 1795255200). */
const webFields = { 'k8s.namespace.name': 'default', 'k8s.pod.name': 'web-1', 'k8s.container.name': 'app', 'k8s.deployment.name': 'web' };
const dbFields = { 'k8s.namespace.name': 'data', 'k8s.pod.name': 'db-0', 'k8s.container.name': 'postgres', 'k8s.statefulset.name': 'db' };

/** The part of a kept event the output decides, for field-by-field comparison. */
function kept(e: HecEvent): Partial<HecEvent> {
  const { request: _r, position: _p, raw: _raw, token: _t, channel: _c, ...rest } = e;
  return rest;
}

describe('splunk_hec config', () => {
  const base = { type: 'splunk_hec', inputs: ['c'], endpoint: 'https://splunk:8088' };
  const issues = (keys: Record<string, unknown>) => {
    const r = splunkHecConfig.safeParse({ ...base, ...keys });
    return r.success ? [] : r.error.issues.map((i) => `${i.path.join('.')}: ${i.message}`);
  };

  it('defaults: sourcetype kube:container, gzip, body events, the Kubernetes identity as indexed fields', () => {
    const c = splunkHecConfig.parse({ ...base, token: 't' });
    expect(c).toMatchObject({ sourcetype: 'kube:container', compression: 'gzip', event_format: 'body', source_keys: ['log.file.path', 'service.name'], timeout: 30_000 });
    expect(c.fields).toEqual([...DEFAULT_FIELDS]);
    expect(c.index).toBeUndefined();
    expect(c.channel).toBeUndefined();
  });

  it('needs exactly one of token and token_file, and a readable token_file (checked on the node)', () => {
    expect(issues({})).toEqual(['token: set exactly one of token and token_file (the HEC token)']);
    const file = join(dir, 'both.token');
    writeFileSync(file, 'x');
    expect(issues({ token: 't', token_file: file })).toEqual(['token_file: set exactly one of token and token_file (the HEC token)']);
    const absent = join(dir, 'absent.token');
    expect(issues({ token_file: absent })).toEqual([]);
    expect(splunkHecNeeds(splunkHecConfig.parse({ ...base, token_file: absent })).files).toEqual([{ key: 'token_file', path: absent }]);
    expect(fileProblem(absent)).toBe('no such file');
  });

  it('refuses an Authorization header, a channel that is not a GUID, too many fields and unknown keys', () => {
    expect(issues({ token: 't', headers: { Authorization: 'Splunk x' } })).toEqual(['headers.Authorization: the HEC token goes in token or token_file']);
    expect(issues({ token: 't', channel: 'chan-1' })).toEqual(['channel: expected a GUID like 0a1b2c3d-4e5f-4a6b-8c7d-9e0f1a2b3c4d']);
    expect(issues({ token: 't', fields: Array.from({ length: 33 }, (_, i) => `f${i}`) })).toEqual(['fields: at most 32 indexed fields: each one is stored with every event']);
    expect(issues({ token: 't', compression: 'zstd' })).toHaveLength(1);
    expect(issues({ token: 't', sourcetypes: 'x' })).toHaveLength(1);
  });
});

describe('splunk_hec events on the wire', () => {
  it('sends one event per record, every field as HEC keeps it, gzip with the Splunk token', async () => {
    const fake = await hec();
    const out = output(fake, { index: 'k8s_logs' });
    const records = [
      record('GET /healthz 200'),
      record({ msg: 'slow query', ms: 1234, tags: ['db', 'slow'], nested: { ok: false, none: null } }, { attributes: dbStderr, resource: dbResource, timestamp: '2026-11-21T10:00:01.000001000Z' }),
      record('Started kubelet.', { attributes: journalAttrs, resource: journalResource, timestamp: '2026-11-21T09:59:59.999999999Z' }),
      record('second line of web', { timestamp: '2026-11-21T10:00:00.500000000Z' }),
    ];
    const result = await send(out, records);

    expect(fake.events.map(kept)).toEqual([
      { time: '1795255200.123456', host: 'node-1', source: webStdout['log.file.path'], sourcetype: 'kube:container', index: 'k8s_logs', event: 'GET /healthz 200', fields: webFields },
      {
        time: '1795255201.000001',
        host: 'node-1',
        source: dbStderr['log.file.path'],
        sourcetype: 'kube:container',
        index: 'k8s_logs',
        event: { msg: 'slow query', ms: 1234, tags: ['db', 'slow'], nested: { ok: false, none: null } },
        fields: dbFields,
      },
      // No indexed field applies to a journal record: none are sent.
      { time: '1795255199.999999', host: 'node-1', source: 'kubelet.service', sourcetype: 'kube:container', index: 'k8s_logs', event: 'Started kubelet.' },
      { time: '1795255200.500000', host: 'node-1', source: webStdout['log.file.path'], sourcetype: 'kube:container', index: 'k8s_logs', event: 'second line of web', fields: webFields },
    ]);
    expect(fake.events.map((e) => e.token)).toEqual([HEC_TOKEN, HEC_TOKEN, HEC_TOKEN, HEC_TOKEN]);

    const [req] = fake.server.requests;
    expect(fake.server.requests).toHaveLength(1);
    expect(req!.path).toBe('/services/collector/event');
    expect(req!.headers['authorization']).toBe(`Splunk ${HEC_TOKEN}`);
    expect(req!.headers['content-encoding']).toBe('gzip');
    expect(req!.headers['content-type']).toBe('application/json');
    expect(req!.headers['x-splunk-request-channel']).toBeUndefined();
    expect(result).toEqual({ bytes: req!.wireBytes });
    expect(req!.wireBytes).toBeLessThan(req!.body.length);
    // Concatenated objects, one a line, no array around them.
    expect(req!.body.toString('utf8').split('\n').slice(0, -1).map((l) => JSON.parse(l) as unknown)).toHaveLength(4);
  });

  it('without compression the body goes as it is, and bytes counts it', async () => {
    const fake = await hec();
    const out = output(fake, { compression: 'none', sourcetype: '_json', fields: ['k8s.pod.name', 'log.iostream', 'k8s.pod.label.app'] });
    const result = await send(out, [record({ level: 'info' }), record('x', { attributes: dbStderr, resource: dbResource })]);
    const [req] = fake.server.requests;
    expect(req!.headers['content-encoding']).toBeUndefined();
    expect(result.bytes).toBe(req!.body.length);
    expect(fake.events.map(kept)).toEqual([
      { time: '1795255200.123456', host: 'node-1', source: webStdout['log.file.path'], sourcetype: '_json', event: { level: 'info' }, fields: { 'k8s.pod.name': 'web-1', 'log.iostream': 'stdout', 'k8s.pod.label.app': 'web' } },
      { time: '1795255200.123456', host: 'node-1', source: dbStderr['log.file.path'], sourcetype: '_json', event: 'x', fields: { 'k8s.pod.name': 'db-0', 'log.iostream': 'stderr' } },
    ]);
  });

  it('indexed fields: numbers and booleans as strings, lists as lists; no fields and no source when the record has none', async () => {
    const fake = await hec();
    const out = output(fake, { fields: ['http.status', 'kta.log.truncated', 'journald.TAG', 'absent'] });
    const attrs = Object.freeze({ 'http.status': 503, 'kta.log.truncated': true, 'journald.TAG': ['a', 'b'] });
    await send(out, [record('m', { attributes: attrs, resource: { 'k8s.node.name': 'node-2' } }), record('bare', { attributes: {}, resource: {} })]);
    expect(fake.events.map(kept)).toEqual([
      { time: '1795255200.123456', host: 'node-2', sourcetype: 'kube:container', event: 'm', fields: { 'http.status': '503', 'kta.log.truncated': 'true', 'journald.TAG': ['a', 'b'] } },
      { time: '1795255200.123456', sourcetype: 'kube:container', event: 'bare' },
    ]);
  });

  it.each([
    ['2026-11-21T10:00:00.000001999Z', '1795255200.000001', 1795255200_000001],
    ['2026-11-21T10:00:59.999999999Z', '1795255259.999999', 1795255259_999999],
    ['2026-11-21T10:00:00.5Z', '1795255200.500000', 1795255200_500000],
    ['2026-11-21T10:00:00Z', '1795255200.000', 1795255200_000000],
    ['2026-11-21T12:00:00.250+02:00', '1795255200.250', 1795255200_250000],
    ['1970-01-01T00:00:00.000000001Z', '0.000000', 0],
  ])('time %s is sent as %s (digits, not a float), which a double parse keeps to the microsecond', async (timestamp, wire, micros) => {
    const fake = await hec();
    await send(output(fake), [record('t', { timestamp })]);
    expect(fake.events[0]!.time).toBe(wire);
    expect(Math.round(Number(wire) * 1e6)).toBe(micros);
  });

  it('times across minute, day and back within one batch', async () => {
    const fake = await hec();
    const stamps = ['2026-11-21T10:00:59.999999Z', '2026-11-21T10:01:00.000000Z', '2026-11-21T23:59:59.5Z', '2026-11-22T00:00:00.123456789Z', '2026-11-21T10:00:59.100000000Z'];
    await send(output(fake), stamps.map((timestamp) => record('t', { timestamp })));
    expect(fake.events.map((e) => e.time)).toEqual(['1795255259.999999', '1795255260.000000', '1795305599.500000', '1795305600.123456', '1795255259.100000']);
  });

  it('leaves time out when the timestamp cannot be read, so HEC stamps the arrival', async () => {
    const fake = await hec();
    await send(output(fake), [record('t', { timestamp: 'yesterday' })]);
    expect(fake.events[0]!.time).toBeUndefined();
    expect(fake.events[0]!.event).toBe('t');
  });

  it('event_format record: the event is design.md’s record', async () => {
    const fake = await hec();
    const records = [record('plain', { severityText: 'WARN', severityNumber: 13 }), record({ k: 'v' }, { attributes: dbStderr, resource: dbResource })];
    await send(output(fake, { event_format: 'record' }), records);
    const enc = new NdjsonEncoder();
    expect(fake.events.map((e) => e.event)).toEqual(records.map((r) => JSON.parse(enc.encode(r)) as unknown));
    expect(fake.events[0]!.event).toMatchObject({ timestamp: '2026-11-21T10:00:00.123456789Z', severity_text: 'WARN', body: 'plain', resource: webResource });
  });

  it('bodies that are hard to carry arrive as sent; invalid UTF-8 as U+FFFD, lone surrogates as U+FFFD, never as broken JSON', async () => {
    const fake = await hec();
    const invalidUtf8 = Buffer.from([0x61, 0xff, 0xfe, 0x62, 0xc3, 0x28, 0xe2, 0x82]).toString('utf8');
    const bodies: LogRecord['body'][] = [
      'say "hi" and \\ leave',
      'line one\nline two\r\nline three',
      'tab\there, nul \u0000, bell \u0007, del \u007f',
      'ünïcødé ✓ 日本語 😀',
      'line separators \u2028 and \u2029',
      invalidUtf8,
      'lone surrogates \ud800 and \udfff',
      { 'key \ud83d': 'value \udc00 ok', list: ['\ud800x'] },
      'C:\\udp\\path',
      '</script><!-- -->',
    ];
    const records = bodies.map((b) => record(b));
    const result = await send(output(fake), records);
    expect(result.failed).toBeUndefined();
    expect(fake.events.map((e) => e.event)).toEqual([
      'say "hi" and \\ leave',
      'line one\nline two\r\nline three',
      'tab\there, nul \u0000, bell \u0007, del \u007f',
      'ünïcødé ✓ 日本語 😀',
      'line separators \u2028 and \u2029',
      'a\ufffd\ufffdb\ufffd(\ufffd',
      'lone surrogates \ufffd and \ufffd',
      { 'key \ufffd': 'value \ufffd ok', list: ['\ufffdx'] },
      'C:\\udp\\path',
      '</script><!-- -->',
    ]);
    for (const e of fake.events) expect(e.raw.isWellFormed() && !/(^|[^\\])(\\\\)*\\ud[89a-f]/i.test(e.raw)).toBe(true);
  });

  it('a huge record goes out whole', async () => {
    const fake = await hec({ maxEventBytes: 8 * 1024 * 1024 });
    const big = 'x'.repeat(3 * 1024 * 1024) + 'ü';
    await send(output(fake), [record('before'), record(big), record('after')]);
    expect(fake.events.map((e) => e.event)).toEqual(['before', big, 'after']);
  });

  it('blank bodies are not sent (HEC would refuse them, code 13) and are reported as rejected', async () => {
    const fake = await hec();
    const out = output(fake);
    const result = await send(out, [record('a'), record(''), record({}), record('b'), record([])]);
    expect(fake.events.map((e) => e.event)).toEqual(['a', 'b']);
    expect(result.rejected).toEqual({ count: 3, reason: 'blank event: HEC refuses an empty event field (code 13, "Event field cannot be blank")' });
    expect(result.failed).toBeUndefined();

    const onlyBlank = await send(out, [record(''), record({})]);
    expect(onlyBlank).toEqual({ bytes: 0, rejected: { count: 2, reason: expect.stringContaining('blank event') } });
    expect(fake.server.requests).toHaveLength(1);
    // A whole record is never blank.
    await send(output(fake, { event_format: 'record' }), [record('')]);
    expect((fake.events[2]!.event as { body: string }).body).toBe('');
  });

  it('concurrent batches do not share a buffer', async () => {
    const fake = await hec();
    const out = output(fake, { compression: 'none', concurrency: 4 });
    const batches = Array.from({ length: 4 }, (_, b) => Array.from({ length: 200 }, (_, i) => record(`batch ${b} line ${i} ${'y'.repeat(b * 50)}`)));
    await Promise.all(batches.map((records) => send(out, records)));
    const byRequest = new Map<number, string[]>();
    for (const e of fake.events) byRequest.set(e.request, [...(byRequest.get(e.request) ?? []), e.event as string]);
    expect([...byRequest.values()].sort((a, b) => a[0]!.localeCompare(b[0]!))).toEqual(batches.map((rs) => rs.map((r) => r.body)));
  });

  it('takes an endpoint that already names the event path', async () => {
    const fake = await hec();
    await send(output(`${fake.url}/services/collector/event`), [record('a')]);
    await send(output(`${fake.url}/services/collector`), [record('b')]);
    expect(fake.server.requests.map((r) => r.path)).toEqual(['/services/collector/event', '/services/collector']);
    expect(fake.events.map((e) => e.event)).toEqual(['a', 'b']);
  });
});

describe('splunk_hec answers', () => {
  it('an event HEC refuses in the middle of 1,000: the ones before accepted, it failed for good, the rest retryable', async () => {
    const fake = await hec({ maxEventBytes: 64 * 1024 });
    const out = output(fake);
    const records = Array.from({ length: 1000 }, (_, i) => record(i === 500 ? 'z'.repeat(100 * 1024) : `line ${i}`));
    const result = await send(out, records);

    expect(fake.answers.at(-1)).toEqual({ status: 400, body: '{"text":"Invalid data format","code":6,"invalid-event-number":500}' });
    expect(fake.events.map((e) => e.event)).toEqual(records.slice(0, 500).map((r) => r.body));
    expect(result.failed).toHaveLength(500);
    expect(result.failed![0]).toEqual({ index: 500, retryable: false, reason: 'HEC refused the event: Invalid data format (code 6)' });
    result.failed!.slice(1).forEach((f, i) => {
      expect(f.index).toBe(501 + i);
      expect(f.retryable).toBe(true);
      expect(f.reason).toBe('not read: HEC stops at the first event it refuses (Invalid data format, code 6)');
    });

    // What the pipeline does next: send the retryable ones again.
    const again = result.failed!.filter((f) => f.retryable).map((f) => records[f.index]!);
    expect(await send(out, again)).toEqual({ bytes: expect.any(Number) });
    expect(fake.events.map((e) => e.event)).toEqual([...records.slice(0, 500), ...records.slice(501)].map((r) => r.body));
  });

  it('failed[] indices are the records’, also when blank records were left out before the refused one', async () => {
    const fake = await hec({ maxEventBytes: 1024 });
    const records = [record('a'), record(''), record('b'), record('c'.repeat(2000)), record(''), record('d')];
    const result = await send(output(fake), records);
    // HEC counted the events it got: the big one is its event 2.
    expect(fake.answers[0]!.body).toBe('{"text":"Invalid data format","code":6,"invalid-event-number":2}');
    expect(result.failed).toEqual([
      { index: 3, retryable: false, reason: 'HEC refused the event: Invalid data format (code 6)' },
      { index: 5, retryable: true, reason: expect.stringContaining('not read') },
    ]);
    expect(result.rejected).toEqual({ count: 2, reason: expect.stringContaining('blank') });
    expect(fake.events.map((e) => e.event)).toEqual(['a', 'b']);
  });

  it('an invalid token and a disabled token are configuration errors, said so', async () => {
    const fake = await hec({ tokens: { [HEC_TOKEN]: 'enabled', 'old-token': 'disabled' } });
    const err = (p: Promise<unknown>) => p.then(() => undefined, (e: unknown) => e as Error);

    const invalid = await err(send(output(fake, { token: 'not-a-token' }), [record('a')]));
    expect(invalid).toBeInstanceOf(PermanentError);
    expect(invalid!.message).toBe(
      `output splunk: HEC ${fake.url}/services/collector/event answered Invalid token (code 4, HTTP 403); this is a configuration error, not a data error: the token was refused: check token against the HEC tokens in Splunk`,
    );
    const disabled = await err(send(output(fake, { token: 'old-token' }), [record('a')]));
    expect(disabled).toBeInstanceOf(PermanentError);
    expect(disabled!.message).toContain('answered Token disabled (code 1, HTTP 403); this is a configuration error, not a data error: the token is disabled in Splunk');
    expect(fake.events).toEqual([]);
  });

  it('token_file: read at start (trimmed), again at most every 60 s', async () => {
    const fake = await hec({ tokens: { 'token-a': 'enabled', 'token-b': 'enabled' } });
    const file = join(dir, 'hec.token');
    writeFileSync(file, 'token-a\n');
    vi.useFakeTimers({ toFake: ['Date'] });
    const out = output(fake, { token: undefined, token_file: file });
    await send(out, [record('1')]);
    writeFileSync(file, 'token-b\n');
    await send(out, [record('2')]);
    vi.setSystemTime(Date.now() + 61_000);
    await send(out, [record('3')]);
    expect(fake.events.map((e) => [e.event, e.token])).toEqual([
      ['1', 'token-a'],
      ['2', 'token-a'],
      ['3', 'token-b'],
    ]);
    writeFileSync(file, '  \n');
    expect(() => output(fake, { token: undefined, token_file: file })).toThrow(`output splunk: token_file ${file} is empty`);
  });

  it.each([
    ['seconds', '7', 7000, 7000],
    ['an HTTP-date', 'date+30', 25_000, 30_000],
  ])('503 Server is busy (code 9) with Retry-After as %s: retryable, waiting as told; nothing kept', async (_, retryAfter, min, max) => {
    const fake = await hec();
    const out = output(fake);
    fake.busy(1, retryAfter === 'date+30' ? new Date(Date.now() + 30_000).toUTCString() : retryAfter);
    const e = await send(out, [record('a')]).then(() => undefined, (x: unknown) => x as RetryableError);
    expect(e).toBeInstanceOf(RetryableError);
    expect(e!.retryAfterMs).toBeGreaterThanOrEqual(min);
    expect(e!.retryAfterMs).toBeLessThanOrEqual(max);
    expect(e!.message).toBe(`output splunk: HEC ${fake.url}/services/collector/event answered Server is busy (code 9, HTTP 503)`);
    expect(fake.events).toEqual([]);
    await send(out, [record('b')]);
    expect(fake.events.map((x) => x.event)).toEqual(['b']);
  });

  it('429 with Retry-After and 500 Internal server error are retryable', async () => {
    const fake = await hec();
    const out = output(fake);
    fake.throttle(1, '3');
    const throttled = await send(out, [record('a')]).then(() => undefined, (x: unknown) => x as RetryableError);
    expect(throttled).toBeInstanceOf(RetryableError);
    expect(throttled!.retryAfterMs).toBe(3000);
    fake.server.inject({ status: 500, body: '{"text":"Internal server error","code":8}' });
    const internal = await send(out, [record('a')]).then(() => undefined, (x: unknown) => x as RetryableError);
    expect(internal).toBeInstanceOf(RetryableError);
    expect(internal!.retryAfterMs).toBeUndefined();
    expect(internal!.message).toContain('answered Internal server error (code 8, HTTP 500)');
    expect(fake.events).toEqual([]);
  });

  it('413: permanent, naming batch.max_bytes and HEC’s max_content_length', async () => {
    const fake = await hec({ maxContentLength: 2000 });
    const out = output(fake, { compression: 'none', batch: { max_bytes: '4KiB' } });
    const e = await send(out, Array.from({ length: 30 }, (_, i) => record(`line ${i} ${'p'.repeat(100)}`))).then(() => undefined, (x: unknown) => x as Error);
    expect(e).toBeInstanceOf(PermanentError);
    expect(e!.message).toMatch(/answered HTTP 413 Payload Too Large: Content-Length of \d+ too large \(maximum is 2000\); the request \(\d+ bytes on the wire\) is over HEC's max_content_length \(limits.conf \[http_input\]\) or a proxy's limit: lower batch.max_bytes \(now 4096\)/);
    expect(fake.events).toEqual([]);
  });

  it('404: permanent, pointing at the endpoint', async () => {
    const fake = await hec();
    const e = await send(output(`${fake.url}/splunk`), [record('a')]).then(() => undefined, (x: unknown) => x as Error);
    expect(e).toBeInstanceOf(PermanentError);
    expect(e!.message).toContain(`HEC ${fake.url}/splunk/services/collector/event answered The requested URL was not found on this server. (code 404, HTTP 404); no HEC event endpoint there`);
  });

  it('400 Incorrect index (code 7): permanent, naming the index', async () => {
    const fake = await hec({ indexes: ['main', 'k8s'] });
    const e = await send(output(fake, { index: 'k8z' }), [record('a'), record('b')]).then(() => undefined, (x: unknown) => x as Error);
    expect(fake.answers[0]!.body).toBe('{"text":"Incorrect index","code":7,"invalid-event-number":0}');
    expect(e).toBeInstanceOf(PermanentError);
    expect(e!.message).toContain('answered Incorrect index (code 7, HTTP 400); index "k8z" does not exist or is not among the token\'s allowed indexes');
    await send(output(fake, { index: 'k8s' }), [record('c')]);
    expect(fake.events.map((x) => [x.index, x.event])).toEqual([['k8s', 'c']]);
  });

  it('indexer acknowledgement on: without channel a permanent error saying so; with one accepted, and a warning that acks are not polled', async () => {
    const fake = await hec({ ack: true });
    const e = await send(output(fake), [record('a')]).then(() => undefined, (x: unknown) => x as Error);
    expect(e).toBeInstanceOf(PermanentError);
    expect(e!.message).toContain('answered Data channel is missing (code 10, HTTP 400); the token has indexer acknowledgement (useACK) on, which needs channel set to a GUID (now not set)');

    const channel = '0a1b2c3d-4e5f-4a6b-8c7d-9e0f1a2b3c4d';
    const out = output(fake, { channel });
    await send(out, [record('b')]);
    await send(out, [record('c')]);
    expect(fake.events.map((x) => [x.event, x.channel])).toEqual([
      ['b', channel],
      ['c', channel],
    ]);
    expect(fake.answers.slice(1).map((a) => a.body)).toEqual(['{"text":"Success","code":0,"ackId":0}', '{"text":"Success","code":0,"ackId":1}']);
    expect(logs).toEqual([
      {
        level: 'warn',
        msg: 'output splunk: the HEC token has indexer acknowledgement (useACK) on; this output does not poll acknowledgements, so an answer 200 means received and queued by HEC, not indexed',
      },
    ]);
  });

  it('a connection reset is retryable and nothing is kept', async () => {
    const fake = await hec();
    const out = output(fake);
    fake.server.inject({ reset: true });
    const e = await send(out, [record('a')]).then(() => undefined, (x: unknown) => x as Error);
    expect(e).toBeInstanceOf(RetryableError);
    expect(e!.message).toMatch(/output splunk: request to .*\/services\/collector\/event failed: the receiver closed the connection before answering/);
    expect(fake.events).toEqual([]);
    await send(out, [record('b')]);
    expect(fake.events.map((x) => x.event)).toEqual(['b']);
  });

  it('a slow receiver: abort cancels the request with the signal’s reason', async () => {
    const fake = await hec();
    const out = output(fake);
    fake.server.inject({ delayMs: 3000 });
    const ac = new AbortController();
    const pending = send(out, [record('a')], ac.signal);
    setTimeout(() => ac.abort(new Error('pipeline stopping')), 100);
    await expect(pending).rejects.toThrow('pipeline stopping');
    expect(fake.events).toEqual([]);
  });

  it('a timeout is retryable', async () => {
    const fake = await hec();
    fake.server.inject({ delayMs: 3000 });
    const e = await send(output(fake, { timeout: '200ms' }), [record('a')]).then(() => undefined, (x: unknown) => x as Error);
    expect(e).toBeInstanceOf(RetryableError);
    expect(e!.message).toContain('within 200 ms (timeout)');
  });
});

describe('splunk_hec over TLS', () => {
  let pki: TestPki;
  beforeAll(() => {
    pki = makeTestPki(join(dir, 'pki'));
  });
  const tlsFake = async () => {
    const { readFileSync } = await import('node:fs');
    return hec({ tls: { key: readFileSync(pki.serverKeyFile), cert: readFileSync(pki.serverCertFile) } });
  };

  it('verifies HEC’s certificate with tls.ca_file', async () => {
    const fake = await tlsFake();
    await send(output(fake, { tls: { ca_file: pki.caFile } }), [record('over tls')]);
    expect(fake.events.map((e) => e.event)).toEqual(['over tls']);
  });

  it('an untrusted certificate is a clear, retryable error and nothing is sent', async () => {
    const fake = await tlsFake();
    const e = await send(output(fake, { tls: { ca_file: pki.otherCaFile } }), [record('a')]).then(() => undefined, (x: unknown) => x as Error);
    expect(e).toBeInstanceOf(RetryableError);
    expect(e!.message).toContain(`output splunk: request to ${fake.url}/services/collector/event failed: the receiver's TLS certificate is not trusted`);
    expect(e!.message).toContain(`it is not signed by the CA in tls.ca_file ${pki.otherCaFile}`);
    expect(fake.server.requests).toEqual([]);
  });
});

describe('the fake HEC reads bodies as HEC does', () => {
  const post = async (fake: SplunkHecReceiver, body: string, headers: Record<string, string> = { authorization: `Splunk ${HEC_TOKEN}` }, path = '/services/collector/event') => {
    const res = await fetch(fake.url + path, { method: 'POST', headers, body });
    return { status: res.status, body: await res.text() };
  };

  it.each([
    // moby/moby#35862: the second object is broken; the first is indexed, the third never read.
    ['a broken object after a good one', '{"sourcetype": "testing", "event": {"hi":"meme12345"}}\n\n{"sourcetype": "testing", "event": "}\n\n{"event": "hi67890"}', 400, '{"text":"Invalid data format","code":6,"invalid-event-number":1}', 1],
    ['objects back to back', '{"event":"a"}{"event":"b"} \r\n\t{"event":"c"}', 200, '{"text":"Success","code":0}', 3],
    ['an array', '[{"event":"a"}]', 400, '{"text":"Invalid data format","code":6,"invalid-event-number":0}', 0],
    ['a missing event', '{"event":"a"}{"host":"h"}', 400, '{"text":"Event field is required","code":12,"invalid-event-number":1}', 1],
    ['a blank event', '{"event":"a"}{"event":"b"}{"event":""}', 400, '{"text":"Event field cannot be blank","code":13,"invalid-event-number":2}', 2],
    ['a time that is not a number', '{"event":"a","time":"noon"}', 400, '{"text":"Invalid data format","code":6,"invalid-event-number":0}', 0],
    ['nested indexed fields', '{"event":"a","fields":{"k":{"n":1}}}', 400, '{"text":"Error in handling indexed fields","code":15,"invalid-event-number":0}', 0],
    ['an unterminated object', '{"event":"a"}{"event":"b"', 400, '{"text":"Invalid data format","code":6,"invalid-event-number":1}', 1],
    ['no data', ' \n', 400, '{"text":"No data","code":5}', 0],
  ])('%s', async (_, body, status, answer, keptCount) => {
    const fake = await hec();
    expect(await post(fake, body)).toEqual({ status, body: answer });
    expect(fake.events).toHaveLength(keptCount);
  });

  it('keeps the time digits as written and a string time as it is', async () => {
    const fake = await hec();
    await post(fake, '{"time":1795255200.123456789,"event":{"time":5}}{"time":"1795255200.5","event":"s"}');
    expect(fake.events.map((e) => [e.time, e.event])).toEqual([
      ['1795255200.123456789', { time: 5 }],
      ['1795255200.5', 's'],
    ]);
  });

  it('answers authorization problems with HEC’s codes', async () => {
    const fake = await hec();
    expect(await post(fake, '{"event":"a"}', {})).toEqual({ status: 401, body: '{"text":"Token is required","code":2}' });
    expect(await post(fake, '{"event":"a"}', { authorization: `Bearer ${HEC_TOKEN}` })).toEqual({ status: 401, body: '{"text":"Invalid authorization","code":3}' });
    expect(await post(fake, '{"event":"a"}', { authorization: `Basic ${Buffer.from(`x:${HEC_TOKEN}`).toString('base64')}` })).toEqual({ status: 200, body: '{"text":"Success","code":0}' });
    expect(await post(fake, '{"event":"a"}', {}, '/services/collector/raw')).toEqual({ status: 404, body: '{"text":"The requested URL was not found on this server.","code":404}' });
  });
});
