import { readFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import type { LogRecord } from '../agent/record.ts';
import { HttpOutput, httpConfig } from '../outputs/http.ts';
import { PermanentError, RetryableError } from '../outputs/output.ts';
import { createOutput, outputPlugins } from '../outputs/registry.ts';
import { NdjsonReceiver, type NdjsonReceiverOptions } from './fakes/ndjson_receiver.ts';
import { asJson, outputSuite, podResource, rejection, send, stderrAttrs, stdoutAttrs, TRICKY_TEXT } from './helpers/output_fixtures.ts';

const { pki, ctx, track } = outputSuite('kta-output-http-', { name: 'ship', pki: true });

async function receiver(opts: NdjsonReceiverOptions = {}): Promise<NdjsonReceiver> {
  return track.receiver(await NdjsonReceiver.start(opts));
}

function output(config: Record<string, unknown>): HttpOutput {
  return track.output(new HttpOutput(httpConfig.parse({ type: 'http', inputs: ['containers'], ...config }), ctx));
}

const resource = podResource({ 'k8s.deployment.name': 'web', 'k8s.pod.label.app': 'web' });

const TRICKY = [
  ...TRICKY_TEXT,
  'replacement char from invalid UTF-8 \ufffd',
  '',
];

function record(i: number, body: LogRecord['body'] = `message ${i}`, extra: Partial<LogRecord> = {}): LogRecord {
  const ns = String(i % 1_000_000_000).padStart(9, '0');
  return {
    timestamp: `2026-11-21T10:00:00.${ns}Z`,
    observedTimestamp: `2026-11-21T10:00:01.${ns}Z`,
    body,
    attributes: i % 2 ? stderrAttrs : stdoutAttrs,
    resource,
    ...extra,
  };
}

function mixedBatch(): LogRecord[] {
  return [
    ...TRICKY.map((b, i) => record(i, b, { severityText: 'ERROR', severityNumber: 17 })),
    record(100, { level: 'info', msg: 'parsed', nested: { n: 1, list: [1, 'two', null, true] } }),
    record(101, ['array', 'body']),
    record(102, 'plain', { severityText: 'WARN' }),
  ];
}

describe('http output config', () => {
  it('defaults to POST, no compression, 30 s timeout, and is registered as type http', () => {
    const c = httpConfig.parse({ type: 'http', inputs: ['c'], endpoint: 'http://127.0.0.1:9000/ingest' });
    expect(c).toMatchObject({ method: 'POST', compression: 'none', timeout: 30_000, headers: {}, auth: {}, tls: { insecure_skip_verify: false }, concurrency: 1 });
    expect(outputPlugins.http.schema).toBe(httpConfig);
  });

  it('refuses unknown methods and compressions', () => {
    const r = httpConfig.safeParse({ type: 'http', inputs: ['c'], endpoint: 'http://x', method: 'PATCH', compression: 'zstd' });
    expect(r.success).toBe(false);
    expect(r.error!.issues.map((i) => i.path.join('.'))).toEqual(['method', 'compression']);
  });
});

describe('http output: what the receiver gets', () => {
  it('sends one NDJSON request per batch, every record field by field as design.md shapes it', async () => {
    const r = await receiver();
    const o = output({ endpoint: `${r.url}/ingest` });
    const first = mixedBatch();
    const second = Array.from({ length: 500 }, (_, i) => record(1000 + i));
    const sent1 = await send(o, first);
    const sent2 = await send(o, second);

    expect(r.accepted.map((q) => [q.method, q.path, q.headers['content-type'], q.headers['content-encoding']])).toEqual([
      ['POST', '/ingest', 'application/x-ndjson', undefined],
      ['POST', '/ingest', 'application/x-ndjson', undefined],
    ]);
    expect(r.lines.map((l) => [l.request, l.line])).toEqual([...first.map((_, i) => [0, i]), ...second.map((_, i) => [1, i])]);
    expect(r.records).toEqual([...first, ...second].map(asJson));
    expect(sent1).toEqual({ bytes: r.accepted[0]!.wireBytes });
    expect(sent2).toEqual({ bytes: r.accepted[1]!.wireBytes });
  });

  it('gzip: Content-Encoding gzip, the fake undoes it, every record equal, bytes counted after compression', async () => {
    const r = await receiver();
    const o = output({ endpoint: r.url, compression: 'gzip' });
    const batch = [...mixedBatch(), ...Array.from({ length: 2000 }, (_, i) => record(i))];
    const { bytes } = await send(o, batch);
    const req = r.accepted[0]!;
    expect(req.headers['content-encoding']).toBe('gzip');
    expect(r.records).toEqual(batch.map(asJson));
    expect(bytes).toBe(req.wireBytes);
    expect(req.wireBytes).toBeLessThan(req.body.length / 5);
  });

  it('PUT when method says so', async () => {
    const r = await receiver({ methods: ['PUT'] });
    await send(output({ endpoint: r.url, method: 'PUT' }), [record(1)]);
    expect(r.accepted.map((q) => q.method)).toEqual(['PUT']);
    expect(r.records).toEqual([asJson(record(1))]);
  });

  it('sends configured headers; a configured Content-Type replaces application/x-ndjson', async () => {
    const r = await receiver();
    await send(output({ endpoint: r.url, headers: { 'X-Scope-OrgID': 'team-a' } }), [record(1)]);
    expect(r.accepted[0]!.headers['x-scope-orgid']).toBe('team-a');

    const strict = await receiver();
    const e = await rejection(send(output({ endpoint: strict.url, headers: { 'Content-Type': 'application/json' } }), [record(1)]));
    // The NDJSON fake insists on its content type: the configured one really went out instead.
    expect(e).toBeInstanceOf(PermanentError);
    expect(e.message).toBe('output ship: receiver answered 415 Unsupported Media Type: unsupported content type "application/json", expected application/x-ndjson');
  });

  it('bearer token and basic auth reach the receiver', async () => {
    const bearer = await receiver({ authorization: 'Bearer abc' });
    await send(output({ endpoint: bearer.url, auth: { bearer_token: 'abc' } }), [record(1)]);
    expect(bearer.records).toEqual([asJson(record(1))]);

    const basic = await receiver({ authorization: 'Basic ' + Buffer.from('u:p').toString('base64') });
    await send(output({ endpoint: basic.url, auth: { username: 'u', password: 'p' } }), [record(2)]);
    expect(basic.records).toEqual([asJson(record(2))]);
  });

  it('a 10 MiB record goes through intact, plain and gzip', async () => {
    const r = await receiver();
    // Not one repeated character: a shifting pattern, so a dropped or doubled chunk shows.
    const huge = Array.from({ length: 10 * 1024 * 1024 / 16 }, (_, i) => (i % 65536).toString(16).padStart(16, '.')).join('');
    const batch = [record(1), record(2, huge), record(3)];
    await send(output({ endpoint: r.url }), batch);
    await send(output({ endpoint: r.url, compression: 'gzip' }), batch);
    expect(r.accepted.map((q) => q.body.length > 10 * 1024 * 1024)).toEqual([true, true]);
    expect(r.records).toEqual([...batch, ...batch].map(asJson));
  });

  it('concurrent sends keep their bodies apart (scratch buffers are not shared between requests in flight)', async () => {
    const r = await receiver();
    const o = output({ endpoint: r.url, concurrency: 4 });
    r.server.inject({ delayMs: 100 }, 4);
    const batches = Array.from({ length: 4 }, (_, b) => Array.from({ length: 300 }, (_, i) => record(b * 1000 + i, `batch ${b} record ${i}`)));
    await Promise.all(batches.map((b) => send(o, b)));
    // Then again, reusing the buffers the first round returned.
    await Promise.all(batches.map((b) => send(o, b)));
    expect(r.accepted).toHaveLength(8);
    const byRequest = r.accepted.map((_, q) => r.lines.filter((l) => l.request === q).map((l) => l.value));
    const expected = batches.map((b) => b.map(asJson));
    for (const got of byRequest) expect(expected).toContainEqual(got);
    expect(byRequest.map((got) => expected.findIndex((e) => JSON.stringify(e) === JSON.stringify(got))).sort()).toEqual([0, 0, 1, 1, 2, 2, 3, 3]);
    expect(r.connections).toBe(4);
  });

  it('an empty batch sends nothing', async () => {
    const r = await receiver();
    expect(await send(output({ endpoint: r.url }), [])).toEqual({ bytes: 0 });
    expect(r.connections).toBe(0);
  });

  it('through the registry, from config as written, over HTTPS with the test CA', async () => {
    const r = await receiver({ tls: { key: readFileSync(pki.serverKeyFile), cert: readFileSync(pki.serverCertFile) } });
    const config = outputPlugins.http.schema.parse({ type: 'http', inputs: ['c'], endpoint: r.url, tls: { ca_file: pki.caFile }, compression: 'gzip' });
    const o = createOutput(config, ctx);
    try {
      await o.send([record(7)], new AbortController().signal);
    } finally {
      await o.close();
    }
    expect(r.records).toEqual([asJson(record(7))]);
  });
});

describe('http output: the receiver’s answers and failures', () => {
  it('500 and 503 are retryable, nothing counted as accepted by the fake', async () => {
    const r = await receiver();
    const o = output({ endpoint: r.url });
    r.server.inject({ status: 500, body: 'internal error' });
    r.server.inject({ status: 503, body: 'unavailable' });
    const e500 = await rejection(send(o, [record(1)]));
    const e503 = await rejection(send(o, [record(1)]));
    expect(e500).toBeInstanceOf(RetryableError);
    expect(e500.message).toBe('output ship: receiver answered 500 Internal Server Error: internal error');
    expect((e500 as RetryableError).retryAfterMs).toBeUndefined();
    expect(e503).toBeInstanceOf(RetryableError);
    expect(e503.message).toBe('output ship: receiver answered 503 Service Unavailable: unavailable');
    expect(r.lines).toHaveLength(0);
    // And the batch goes through once the receiver is well again.
    await send(o, [record(1)]);
    expect(r.records).toEqual([asJson(record(1))]);
  });

  it('429 with Retry-After in seconds → retryAfterMs', async () => {
    const r = await receiver();
    r.server.inject({ status: 429, headers: { 'Retry-After': '7' }, body: 'slow down' });
    const e = await rejection(send(output({ endpoint: r.url }), [record(1)]));
    expect(e).toBeInstanceOf(RetryableError);
    expect((e as RetryableError).retryAfterMs).toBe(7000);
    expect(e.message).toBe('output ship: receiver answered 429 Too Many Requests: slow down');
  });

  it('429 with Retry-After as an HTTP-date → the time until then', async () => {
    const r = await receiver();
    const at = new Date(Date.now() + 120_000);
    r.server.inject({ status: 429, headers: { 'Retry-After': at.toUTCString() } });
    const before = Date.now();
    const e = await rejection(send(output({ endpoint: r.url }), [record(1)]));
    const after = Date.now();
    expect(e).toBeInstanceOf(RetryableError);
    // The header has whole seconds: the date is up to 1 s before `at`.
    const whole = Math.floor(at.getTime() / 1000) * 1000;
    expect((e as RetryableError).retryAfterMs).toBeGreaterThanOrEqual(whole - after);
    expect((e as RetryableError).retryAfterMs).toBeLessThanOrEqual(whole - before);
  });

  it('503 with Retry-After is retryable after that delay', async () => {
    const r = await receiver();
    r.server.inject({ status: 503, headers: { 'Retry-After': '30' } });
    const e = await rejection(send(output({ endpoint: r.url }), [record(1)]));
    expect(e).toBeInstanceOf(RetryableError);
    expect((e as RetryableError).retryAfterMs).toBe(30_000);
  });

  it('400 is permanent, with the receiver’s words', async () => {
    const r = await receiver();
    r.server.inject({ status: 400, body: '{"error":"line 3: failed to decode JSON"}' });
    const e = await rejection(send(output({ endpoint: r.url }), [record(1)]));
    expect(e).toBeInstanceOf(PermanentError);
    expect(e.message).toBe('output ship: receiver answered 400 Bad Request: {"error":"line 3: failed to decode JSON"}');
  });

  it('413 from a receiver with a body limit is permanent, with an excerpt of its page', async () => {
    const r = await receiver({ maxBodyBytes: 64 * 1024 });
    const o = output({ endpoint: r.url });
    await send(o, [record(1)]);
    const e = await rejection(send(o, [record(2, 'x'.repeat(100 * 1024))]));
    expect(e).toBeInstanceOf(PermanentError);
    expect(e.message).toBe(
      'output ship: receiver answered 413 Payload Too Large: <html><head><title>413 Request Entity Too Large</title></head><body><center><h1>413 Request Entity Too Large</h1></center></body></html>',
    );
    expect(r.records).toEqual([asJson(record(1))]);
  });

  it('401 for a wrong token is permanent', async () => {
    const r = await receiver({ authorization: 'Bearer right' });
    const e = await rejection(send(output({ endpoint: r.url, auth: { bearer_token: 'wrong' } }), [record(1)]));
    expect(e).toBeInstanceOf(PermanentError);
    expect(e.message).toBe('output ship: receiver answered 401 Unauthorized: invalid or missing credentials');
  });

  it('a connection reset is retryable', async () => {
    const r = await receiver();
    r.server.inject({ reset: true });
    const e = await rejection(send(output({ endpoint: r.url }), [record(1)]));
    expect(e).toBeInstanceOf(RetryableError);
    expect(e.message).toContain(`output ship: request to ${r.url}/ failed: the receiver closed the connection before answering`);
  });

  it('a receiver that is down is retryable', async () => {
    const r = await receiver();
    const url = r.url;
    await r.close();
    const e = await rejection(send(output({ endpoint: url }), [record(1)]));
    expect(e).toBeInstanceOf(RetryableError);
    expect(e.message).toContain('connection refused');
  });

  it('a slow receiver and an aborted signal: the send rejects at once and nothing is accepted', async () => {
    const r = await receiver();
    r.server.inject({ delayMs: 10_000 });
    const ac = new AbortController();
    const pending = send(output({ endpoint: r.url, compression: 'gzip' }), [record(1)], ac.signal);
    while (r.connections === 0) await new Promise((resolve) => setTimeout(resolve, 5));
    ac.abort();
    const e = await rejection(pending);
    expect(e.name).toBe('AbortError');
    expect(r.lines).toHaveLength(0);
  }, 5000);

  it('a receiver slower than timeout is retryable', async () => {
    const r = await receiver();
    r.server.inject({ delayMs: 10_000 });
    const e = await rejection(send(output({ endpoint: r.url, timeout: '250ms' }), [record(1)]));
    expect(e).toBeInstanceOf(RetryableError);
    expect(e.message).toBe(`output ship: no complete answer from ${r.url}/ within 250 ms (timeout)`);
  }, 5000);

  it('an untrusted certificate is retryable and says what to set', async () => {
    const r = await receiver({ tls: { key: readFileSync(pki.serverKeyFile), cert: readFileSync(pki.serverCertFile) } });
    const e = await rejection(send(output({ endpoint: r.url }), [record(1)]));
    expect(e).toBeInstanceOf(RetryableError);
    expect(e.message).toContain("the receiver's TLS certificate is not trusted");
    expect(e.message).toContain('set tls.ca_file to the CA that signed it');
  });

  it('keeps one connection for many batches', async () => {
    const r = await receiver();
    const o = output({ endpoint: r.url, compression: 'gzip' });
    for (let i = 0; i < 10; i++) await send(o, [record(i)]);
    expect(r.connections).toBe(1);
    expect(r.records).toEqual(Array.from({ length: 10 }, (_, i) => asJson(record(i))));
  });
});

describe('the NDJSON fake itself', () => {
  it('refuses a body that is not NDJSON objects, as Vector’s decoder does (400)', async () => {
    const r = await receiver();
    const post = (body: string | Buffer) =>
      fetch(r.url, { method: 'POST', headers: { 'content-type': 'application/x-ndjson' }, body }).then(async (res) => [res.status, await res.text()]);
    expect(await post('{"a":1}\nnot json\n')).toEqual([400, expect.stringMatching(/^line 2: failed to decode JSON/)]);
    expect(await post('[1]\n')).toEqual([400, 'line 1: expected a JSON object']);
    expect(await post('{"a":1}')).toEqual([400, 'the last line is not terminated by a newline']);
    expect(await post(Buffer.from([0x7b, 0x22, 0x61, 0x22, 0x3a, 0x22, 0xff, 0x22, 0x7d, 0x0a]))).toEqual([400, 'body is not valid UTF-8']);
    expect(r.lines).toHaveLength(0);
  });
});
