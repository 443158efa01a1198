import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { PassThrough } from 'node:stream';
import { afterAll, describe, expect, it } from 'vitest';
import { SelfMetrics } from '../agent/metrics.ts';
import type { LogRecord } from '../agent/record.ts';
import { FileOutput, fileConfig } from '../outputs/file.ts';
import { NdjsonEncoder, encodeText } from '../outputs/ndjson.ts';
import type { Output, OutputContext } from '../outputs/output.ts';
import { StdoutOutput, stdoutConfig } from '../outputs/stdout.ts';
import { podResource, recordBuilder, stdoutAttrs, TRICKY_TEXT } from './helpers/output_fixtures.ts';

const ctx: OutputContext = { name: 'out', metrics: new SelfMetrics('test'), log: () => {}, dataDir: '/nonexistent' };
const write = (out: { send: Output['send'] }, records: LogRecord[]) => out.send(records, new AbortController().signal).then((r) => r.bytes);

const record = recordBuilder(podResource());

/** What design.md says a record looks like once JSON.parse'd from its NDJSON line. */
function asJson(r: LogRecord): Record<string, unknown> {
  return {
    timestamp: r.timestamp,
    observed_timestamp: r.observedTimestamp,
    ...(r.severityText !== undefined ? { severity_text: r.severityText } : {}),
    body: r.body,
    attributes: r.attributes,
    resource: r.resource,
  };
}

const TRICKY = [
  ...TRICKY_TEXT,
  '</script><!-- -->',
  '',
];

describe('NDJSON line (outputs/ndjson.ts)', () => {
  const enc = new NdjsonEncoder();

  it('writes design.md’s shape, byte for byte', () => {
    expect(enc.encode(record('the message', { severityText: 'ERROR' }))).toBe(
      '{"timestamp":"2026-11-21T10:00:00.123456789Z","observed_timestamp":"2026-11-21T10:00:00.130000000Z",' +
        '"severity_text":"ERROR","body":"the message",' +
        '"attributes":{"log.iostream":"stdout","log.file.path":"/var/log/pods/default_web-1_0f1e/app/0.log"},' +
        '"resource":{"k8s.node.name":"node-1","k8s.namespace.name":"default","k8s.pod.name":"web-1",' +
        '"k8s.pod.uid":"0f1e2d3c-4b5a-4697-8877-000000000001","k8s.container.name":"app","k8s.container.restart_count":"0",' +
        `"container.id":"${'3b5c'.padEnd(64, '0')}"}}\n`,
    );
  });

  it('orders keys timestamp, observed_timestamp, severity_text, body, attributes, resource', () => {
    const withSeverity = JSON.parse(enc.encode(record('x', { severityText: 'WARN' }))) as object;
    expect(Object.keys(withSeverity)).toEqual(['timestamp', 'observed_timestamp', 'severity_text', 'body', 'attributes', 'resource']);
  });

  it('leaves severity_text out when the record has none', () => {
    const line = enc.encode(record('x'));
    expect(line).not.toContain('severity_text');
    expect(Object.keys(JSON.parse(line) as object)).toEqual(['timestamp', 'observed_timestamp', 'body', 'attributes', 'resource']);
  });

  it('keeps object and array bodies as JSON values, not strings', () => {
    const body = { msg: 'done', status: 200, nested: { ok: true, list: [1, 'two', null] } };
    const parsed = JSON.parse(enc.encode(record(body))) as { body: unknown };
    expect(parsed.body).toEqual(body);
    expect(enc.encode(record(body))).toContain('"body":{"msg":"done","status":200,"nested":{"ok":true,"list":[1,"two",null]}}');
    expect((JSON.parse(enc.encode(record(['a', 1]))) as { body: unknown }).body).toEqual(['a', 1]);
  });

  it.each(TRICKY.map((s) => [JSON.stringify(s), s]))('round-trips body %s on one line', (_, body) => {
    const line = enc.encode(record(body, { attributes: { ...stdoutAttrs, 'note "q"': body } }));
    expect(line.endsWith('\n')).toBe(true);
    // One record, one line: no raw LF or CR inside it.
    expect(line.slice(0, -1)).not.toMatch(/[\n\r]/);
    expect(JSON.parse(line)).toEqual(asJson(record(body, { attributes: { ...stdoutAttrs, 'note "q"': body } })));
  });

  it('encodes attribute values of every type and a batch as consecutive lines', () => {
    const attrs = Object.freeze({ 'log.iostream': 'stderr', 'kta.log.truncated': true, 'http.status': 503 });
    const records = [record('a', { attributes: attrs }), record({ k: 'v' }, { severityText: 'INFO' }), record('c', { attributes: attrs })];
    const text = enc.encodeAll(records);
    const lines = text.split('\n');
    expect(lines.pop()).toBe('');
    expect(lines).toHaveLength(3);
    lines.forEach((l, i) => expect(JSON.parse(l)).toEqual(asJson(records[i]!)));
    expect(lines[0]).toContain('"attributes":{"log.iostream":"stderr","kta.log.truncated":true,"http.status":503}');
  });
});

describe('text encoding (outputs/ndjson.ts encodeText)', () => {
  it('writes time, namespace/pod/container, stream, severity and body', () => {
    expect(encodeText(record('hello world', { severityText: 'ERROR' }))).toBe(
      '2026-11-21T10:00:00.123456789Z default/web-1/app stdout ERROR hello world\n',
    );
    expect(encodeText(record({ a: 1 }))).toBe('2026-11-21T10:00:00.123456789Z default/web-1/app stdout {"a":1}\n');
  });

  it('falls back to the node name without pod identity', () => {
    expect(encodeText(record('boot', { resource: { 'k8s.node.name': 'node-1' }, attributes: {} }))).toBe(
      '2026-11-21T10:00:00.123456789Z node-1 boot\n',
    );
  });
});

/** Collects everything written to a stream. */
function collect(stream: PassThrough): () => string {
  const chunks: Buffer[] = [];
  stream.on('data', (c: Buffer) => chunks.push(c));
  return () => Buffer.concat(chunks).toString('utf8');
}

describe('stdout output (outputs/stdout.ts)', () => {
  it('json: writes NDJSON lines and resolves with their byte count', async () => {
    const stream = new PassThrough();
    const text = collect(stream);
    const out = new StdoutOutput(stdoutConfig.parse({ type: 'stdout', inputs: ['c'] }), ctx, stream);
    const records = [record('ünï ✓'), record({ k: 'v' }, { severityText: 'INFO' })];
    const bytes = await write(out, (records));
    const expected = new NdjsonEncoder().encodeAll(records);
    expect(text()).toBe(expected);
    expect(bytes).toBe(Buffer.byteLength(expected));
    expect(bytes).toBeGreaterThan(expected.length); // non-ASCII: bytes, not characters
    expect(out.name).toBe('out');
  });

  it('text: writes one readable line per record', async () => {
    const stream = new PassThrough();
    const text = collect(stream);
    const out = new StdoutOutput(stdoutConfig.parse({ type: 'stdout', inputs: ['c'], encoding: 'text' }), ctx, stream);
    const bytes = await write(out, ([record('first'), record('second', { severityText: 'WARN' })]));
    const expected =
      '2026-11-21T10:00:00.123456789Z default/web-1/app stdout first\n' + '2026-11-21T10:00:00.123456789Z default/web-1/app stdout WARN second\n';
    expect(text()).toBe(expected);
    expect(bytes).toBe(Buffer.byteLength(expected));
  });

  it('backpressure: write waits while the reader is paused and resolves once it reads again', async () => {
    const stream = new PassThrough({ highWaterMark: 16 });
    const out = new StdoutOutput(stdoutConfig.parse({ type: 'stdout', inputs: ['c'] }), ctx, stream);
    const records = Array.from({ length: 20 }, (_, i) => record(`record ${i} `.padEnd(200, '.')));
    let settled = false;
    const pending = write(out, (records)).finally(() => (settled = true));
    // Nobody reads: the stream stays over its highWaterMark, so the write must not be accepted.
    for (let i = 0; i < 20; i++) await new Promise((r) => setImmediate(r));
    await new Promise((r) => setTimeout(r, 100));
    expect(settled).toBe(false);
    expect(stream.writableNeedDrain).toBe(true);

    const text = collect(stream); // 'data' listener: the reader resumes
    const bytes = await pending;
    expect(settled).toBe(true);
    const expected = new NdjsonEncoder().encodeAll(records);
    expect(bytes).toBe(Buffer.byteLength(expected));
    await new Promise((r) => setImmediate(r));
    expect(text()).toBe(expected);
  });

  it('rejects when the stream fails, so the pipeline retries the batch', async () => {
    const stream = new PassThrough();
    stream.destroy();
    const out = new StdoutOutput(stdoutConfig.parse({ type: 'stdout', inputs: ['c'] }), ctx, stream);
    await expect(write(out, ([record('x')]))).rejects.toThrow();
  });
});

describe('file output (outputs/file.ts)', () => {
  const dir = mkdtempSync(join(tmpdir(), 'kta-out-'));
  afterAll(() => rmSync(dir, { recursive: true, force: true }));

  it('appends one NDJSON line per record, creating folders, and each line round-trips', async () => {
    const path = join(dir, 'a', 'b', 'records.ndjson');
    const out = new FileOutput(fileConfig.parse({ type: 'file', inputs: ['c'], path }), ctx);
    const first = [record('one', { severityText: 'ERROR' }), record({ msg: 'two', n: 2 })];
    const second = TRICKY.map((s) => record(s));
    const b1 = await write(out, (first));
    const b2 = await write(out, (second));
    await out.close();
    const text = readFileSync(path, 'utf8');
    expect(Buffer.byteLength(text)).toBe(b1 + b2);
    expect(text).toBe(new NdjsonEncoder().encodeAll([...first, ...second]));
    const lines = text.split('\n');
    expect(lines.pop()).toBe('');
    expect(lines).toHaveLength(first.length + second.length);
    lines.forEach((l, i) => expect(JSON.parse(l)).toEqual(asJson([...first, ...second][i]!)));
  });

  it('appends to what the file already holds', async () => {
    const path = join(dir, 'existing.ndjson');
    writeFileSync(path, '{"earlier":true}\n');
    const out = new FileOutput(fileConfig.parse({ type: 'file', inputs: ['c'], path, fsync: true }), ctx);
    await write(out, ([record('new')]));
    await out.close();
    const lines = readFileSync(path, 'utf8').split('\n');
    expect(lines[0]).toBe('{"earlier":true}');
    expect(JSON.parse(lines[1]!)).toEqual(asJson(record('new')));
    expect(lines).toHaveLength(3);
  });

  it('ends a torn last line left by a crash before appending', async () => {
    const path = join(dir, 'torn.ndjson');
    writeFileSync(path, '{"complete":1}\n{"torn":');
    const out = new FileOutput(fileConfig.parse({ type: 'file', inputs: ['c'], path }), ctx);
    await write(out, ([record('after crash')]));
    await out.close();
    const lines = readFileSync(path, 'utf8').split('\n');
    expect(lines).toEqual(['{"complete":1}', '{"torn":', new NdjsonEncoder().encode(record('after crash')).trimEnd(), '']);
  });

  it('rejects a write it cannot make', async () => {
    const blocker = join(dir, 'not-a-folder');
    writeFileSync(blocker, '');
    const out = new FileOutput(fileConfig.parse({ type: 'file', inputs: ['c'], path: join(blocker, 'x.ndjson') }), ctx);
    await expect(write(out, ([record('x')]))).rejects.toThrow(/ENOTDIR|EEXIST/);
  });
});
