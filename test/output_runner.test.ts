import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';

import type { RecordBuffer } from '../agent/buffers/buffer.ts';
import { DiskBuffer } from '../agent/buffers/disk_buffer.ts';
import { MemoryBuffer } from '../agent/buffers/memory_buffer.ts';
import { DeadLetterFile } from '../agent/dead_letter.ts';
import { createLogger } from '../agent/log.ts';
import { SelfMetrics } from '../agent/metrics.ts';
import { OutputRunner, type BatchSettings } from '../agent/output_runner.ts';
import { BatchAck, type LogRecord } from '../agent/record.ts';
import { NdjsonEncoder } from '../outputs/ndjson.ts';
import { PermanentError, RetryableError, type Output, type SendResult } from '../outputs/output.ts';
import { id, recs } from './helpers/buffer_fixtures.ts';
import { sampleValue } from './helpers/agent_harness.ts';

/** A series' value; 0 when the series does not exist (a counter never incremented). */
const sample = async (m: SelfMetrics, name: string, labels: Record<string, string>) => sampleValue(await m.registry.metrics(), name, labels) ?? 0;

const root = mkdtempSync(join(tmpdir(), 'kta-runner-'));
afterAll(() => rmSync(root, { recursive: true, force: true }));
let dirs = 0;
const log = createLogger('error');

/** A receiver scripted per request: `answer` decides what the n-th request gets. */
class ScriptedOutput implements Output {
  readonly name = 'out';
  readonly requests: { ids: number[]; at: number }[] = [];
  readonly accepted: number[] = [];
  inFlight = 0;
  maxInFlight = 0;
  answer: (n: number, records: readonly LogRecord[]) => SendResult | Error | Promise<SendResult | Error> = (_n, r) => ({ bytes: r.length });

  async send(records: readonly LogRecord[], signal: AbortSignal): Promise<SendResult> {
    const n = this.requests.length;
    this.requests.push({ ids: records.map(id), at: Date.now() });
    this.inFlight++;
    this.maxInFlight = Math.max(this.maxInFlight, this.inFlight);
    try {
      const a = await this.answer(n, records);
      if (signal.aborted) throw new Error('aborted');
      if (a instanceof Error) throw a;
      const failed = new Set((a.failed ?? []).map((f) => f.index));
      records.forEach((r, i) => failed.has(i) || this.accepted.push(id(r)));
      return a;
    } finally {
      this.inFlight--;
    }
  }
  async flush(): Promise<void> {}
  async close(): Promise<void> {}
}

interface Setup {
  out: ScriptedOutput;
  runner: OutputRunner;
  metrics: SelfMetrics;
  deadLetter: DeadLetterFile;
  /** Pushes like the pipeline does; resolves when the buffer took them, `acked` lists what the source may checkpoint. */
  push: (records: LogRecord[]) => Promise<void>;
  acked: number[];
}

function setup(opts: { batch?: Partial<BatchSettings>; concurrency?: number; buffer?: (m: SelfMetrics) => RecordBuffer; out?: ScriptedOutput } = {}): Setup {
  const metrics = new SelfMetrics('test');
  const out = opts.out ?? new ScriptedOutput();
  const buffer = opts.buffer?.(metrics) ?? new MemoryBuffer({ output: 'out', maxBytes: 1 << 30, maxEvents: 1_000_000, whenFull: 'block', metrics });
  const deadLetter = new DeadLetterFile({ output: 'out', dataDir: join(root, `dl-${dirs++}`), maxBytes: 1 << 20, encoder: new NdjsonEncoder() });
  const runner = new OutputRunner(out, {
    buffer,
    batch: { maxBytes: 1 << 30, maxEvents: 100, timeoutMs: 0, ...opts.batch },
    retry: { initialMs: 5, maxMs: 20 },
    concurrency: opts.concurrency ?? 1,
    deadLetter,
    metrics,
    log,
  });
  metrics.trackBufferAge('out', buffer.type, () => buffer.stats().oldestMs);
  runner.start();
  const acked: number[] = [];
  const push = (records: LogRecord[]) => runner.push(records, records.length * 100, new BatchAck(1, () => acked.push(...records.map(id))));
  return { out, runner, metrics, deadLetter, push, acked };
}

async function until(what: string, cond: () => boolean, ms = 10_000): Promise<void> {
  const end = Date.now() + ms;
  while (!cond()) {
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 5));
  }
}

const range = (from: number, n: number) => Array.from({ length: n }, (_, i) => from + i);

describe('OutputRunner', () => {
  it('cuts batches at max_events and waits up to batch.timeout for a partly filled one', async () => {
    const s = setup({ batch: { maxEvents: 40, timeoutMs: 2_000 } });
    await s.push(recs(0, 100));
    await until('100 records', () => s.out.accepted.length === 100);
    expect(s.out.requests.map((r) => r.ids.length)).toEqual([40, 40, 20].slice(0, s.out.requests.length));
    // Ten small pushes arriving one after another within the timeout become one request.
    const before = s.out.requests.length;
    for (let i = 0; i < 10; i++) {
      await s.push(recs(100 + i * 3, 3));
      await new Promise((r) => setTimeout(r, 10));
    }
    await until('the small pushes', () => s.out.accepted.length === 130);
    expect(s.out.requests.slice(before).map((r) => r.ids)).toEqual([range(100, 30)]);
    expect(s.acked).toEqual(range(0, 130));
    await s.runner.close();
  });

  it('cuts batches at max_bytes (raw bytes pushed, 100 per record here)', async () => {
    const s = setup({ batch: { maxBytes: 1000, maxEvents: 10_000, timeoutMs: 1_000 } });
    await s.push(recs(0, 25));
    await until('25 records', () => s.out.accepted.length === 25);
    expect(s.out.requests.map((r) => r.ids.length)).toEqual([10, 10, 5]);
    await s.runner.close();
  });

  it('retries a retryable failure with backoff until accepted, counting retries; nothing lost or doubled', async () => {
    const s = setup();
    s.out.answer = (n, r) => (n < 4 ? new RetryableError('503 Service Unavailable') : { bytes: r.length });
    await s.push(recs(0, 50));
    await until('delivery', () => s.acked.length === 50);
    expect(s.out.requests).toHaveLength(5);
    expect(s.out.accepted).toEqual(range(0, 50));
    expect(await sample(s.metrics, 'telemetry_agent_output_retries_total', { output: 'out' })).toBe(4);
    expect(await sample(s.metrics, 'telemetry_agent_output_retried_records_total', { output: 'out' })).toBe(200);
    expect(await sample(s.metrics, 'telemetry_agent_output_records_total', { output: 'out', status: 'sent' })).toBe(50);
    expect(await sample(s.metrics, 'telemetry_agent_output_request_duration_seconds_count', { output: 'out' })).toBe(5);
    await s.runner.close();
  });

  it('waits out a Retry-After the receiver gave instead of its own backoff', async () => {
    const s = setup();
    s.out.answer = (n, r) => (n === 0 ? new RetryableError('429 Too Many Requests', 400) : { bytes: r.length });
    await s.push(recs(0, 5));
    await until('delivery', () => s.acked.length === 5);
    expect(s.out.requests).toHaveLength(2);
    expect(s.out.requests[1]!.at - s.out.requests[0]!.at).toBeGreaterThanOrEqual(395);
    await s.runner.close();
  });

  it('a Retry-After of 0 still waits retry.initial between attempts', async () => {
    const s = setup();
    s.out.answer = (n, r) => (n < 3 ? new RetryableError('429 Too Many Requests', 0) : { bytes: r.length });
    await s.push(recs(0, 5));
    await until('delivery', () => s.acked.length === 5);
    const gaps = s.out.requests.slice(1).map((q, i) => q.at - s.out.requests[i]!.at);
    expect(gaps).toHaveLength(3);
    for (const g of gaps) expect(g).toBeGreaterThanOrEqual(4); // retry.initial is 5 ms here; timers may fire a ms early
    await s.runner.close();
  });

  it('an unclassified error (a reset connection) is retried like a retryable one', async () => {
    const s = setup();
    s.out.answer = (n, r) => (n === 0 ? Object.assign(new Error('socket hang up'), { code: 'ECONNRESET' }) : { bytes: r.length });
    await s.push(recs(0, 5));
    await until('delivery', () => s.acked.length === 5);
    expect(s.out.accepted).toEqual(range(0, 5));
    await s.runner.close();
  });

  it('a batch whose encoding throws (a bug meeting an odd record) is dead-lettered after 3 attempts, not retried forever', async () => {
    const s = setup({ batch: { maxEvents: 10 } });
    s.out.answer = (_n, r) => (id(r[0]!) === 10 ? new RangeError('Maximum call stack size exceeded') : { bytes: r.length });
    await s.push(recs(0, 30));
    await until('all acknowledged', () => s.acked.length === 30);
    expect(s.out.accepted).toEqual([...range(0, 10), ...range(20, 10)]);
    expect(s.out.requests.filter((q) => q.ids[0] === 10)).toHaveLength(3);
    const dead = readFileSync(s.deadLetter.path, 'utf8').trim().split('\n').map((l) => JSON.parse(l));
    expect(dead.map((d) => id(d.record))).toEqual(range(10, 10));
    expect(dead[0].reason).toBe('could not be encoded: Maximum call stack size exceeded');
    // An I/O error (it has a code) is retried as long as it takes: the disk may have room again.
    const io = setup();
    io.out.answer = (n, r) => (n < 5 ? Object.assign(new TypeError('write failed'), { code: 'ENOSPC' }) : { bytes: r.length });
    await io.push(recs(0, 3));
    await until('delivered', () => io.acked.length === 3);
    expect(io.out.accepted).toEqual([0, 1, 2]);
    await s.runner.close();
    await io.runner.close();
  });

  it('a permanent error sends the batch to the dead-letter file, acknowledges it and goes on', async () => {
    const s = setup({ batch: { maxEvents: 10 } });
    s.out.answer = (n, r) => (n === 1 ? new PermanentError('400 Bad Request: entry too old') : { bytes: r.length });
    await s.push(recs(0, 30));
    await until('all acknowledged', () => s.acked.length === 30);
    expect(s.out.accepted).toEqual([...range(0, 10), ...range(20, 10)]);
    const lines = readFileSync(s.deadLetter.path, 'utf8').trim().split('\n').map((l) => JSON.parse(l));
    expect(lines.map((l) => l.reason)).toEqual(Array(10).fill('400 Bad Request: entry too old'));
    expect(lines.map((l) => l.output)).toEqual(Array(10).fill('out'));
    // The record is the design.md NDJSON shape, byte for byte what an ndjson output writes.
    const enc = new NdjsonEncoder();
    expect(lines.map((l) => JSON.stringify(l.record) + '\n')).toEqual(recs(10, 10).map((r) => JSON.stringify(JSON.parse(enc.encode(r))) + '\n'));
    expect(await sample(s.metrics, 'telemetry_agent_output_records_total', { output: 'out', status: 'failed' })).toBe(10);
    expect(await sample(s.metrics, 'telemetry_agent_output_dead_letter_records_total', { output: 'out' })).toBe(10);
    expect(await sample(s.metrics, 'telemetry_agent_output_retries_total', { output: 'out' })).toBe(0);
    await s.runner.close();
  });

  it('partial failures: retryable items go again alone, the others to the dead-letter file', async () => {
    const s = setup({ batch: { maxEvents: 1000 } });
    s.out.answer = (n, r) => {
      if (n === 0) {
        // A bulk answer: item 417 is refused for good, items 3..5 are throttled.
        return { bytes: r.length, failed: [{ index: 417, retryable: false, reason: 'mapper_parsing_exception' }, ...[3, 4, 5].map((index) => ({ index, retryable: true, reason: 'es_rejected_execution_exception' }))] };
      }
      return { bytes: r.length };
    };
    await s.push(recs(0, 1000));
    await until('all acknowledged', () => s.acked.length === 1000);
    expect(s.out.requests.map((q) => q.ids)).toEqual([range(0, 1000), [3, 4, 5]]);
    expect([...s.out.accepted].sort((a, b) => a - b)).toEqual(range(0, 1000).filter((i) => i !== 417));
    const dead = readFileSync(s.deadLetter.path, 'utf8').trim().split('\n').map((l) => JSON.parse(l));
    expect(dead.map((d) => [d.reason, d.record.body])).toEqual([['mapper_parsing_exception', recs(417, 1)[0]!.body]]);
    expect(await sample(s.metrics, 'telemetry_agent_output_records_total', { output: 'out', status: 'sent' })).toBe(999);
    expect(await sample(s.metrics, 'telemetry_agent_output_records_total', { output: 'out', status: 'failed' })).toBe(1);
    await s.runner.close();
  });

  it('records the receiver dropped without naming them (OTLP partial success) are counted, not retried', async () => {
    const s = setup();
    s.out.answer = (_n, r) => ({ bytes: r.length, rejected: { count: 2, reason: 'timestamp out of range' } });
    await s.push(recs(0, 10));
    await until('acknowledged', () => s.acked.length === 10);
    expect(s.out.requests).toHaveLength(1);
    expect(await sample(s.metrics, 'telemetry_agent_output_records_total', { output: 'out', status: 'sent' })).toBe(8);
    expect(await sample(s.metrics, 'telemetry_agent_dropped_records_total', { component: 'out', reason: 'rejected_by_receiver' })).toBe(2);
    await s.runner.close();
  });

  it('keeps `concurrency` requests in flight and acknowledges the source in order', async () => {
    const s = setup({ concurrency: 4, batch: { maxEvents: 10 } });
    const gates: (() => void)[] = [];
    s.out.answer = (_n, r) => new Promise((resolve) => gates.push(() => resolve({ bytes: r.length })));
    for (let i = 0; i < 8; i++) await s.push(recs(i * 10, 10));
    await until('4 in flight', () => s.out.inFlight === 4);
    expect(s.out.maxInFlight).toBe(4);
    // The later ones answer first: the source still only moves over an accepted prefix.
    gates[3]!();
    gates[2]!();
    await until('2 answered', () => s.out.accepted.length === 20);
    expect(s.acked).toEqual([]);
    gates[0]!();
    gates[1]!();
    await until('next four', () => gates.length === 8);
    for (const g of gates.slice(4)) g();
    await until('all', () => s.acked.length === 80);
    expect(s.acked).toEqual(range(0, 80));
    expect(s.out.maxInFlight).toBe(4);
    await s.runner.close();
  });

  it('output down: the memory buffer fills, the source is held (push pending), nothing is lost when it comes back', async () => {
    let up = false;
    const s = setup({ buffer: (metrics) => new MemoryBuffer({ output: 'out', maxBytes: 5_000, maxEvents: 1_000_000, whenFull: 'block', metrics }), batch: { maxEvents: 10 } });
    s.out.answer = (_n, r) => (up ? { bytes: r.length } : new RetryableError('connect ECONNREFUSED'));
    let pushed = 0;
    const source = (async () => {
      for (let i = 0; i < 20; i++) {
        await s.push(recs(i * 10, 10));
        pushed = i + 1;
      }
    })();
    await until('several attempts', () => s.out.requests.length >= 5);
    // 5,000 raw bytes at 100 per record: 50 records (5 pushes) fit, the 6th waits.
    expect(pushed).toBe(5);
    expect(s.acked).toEqual([]);
    expect(await sample(s.metrics, 'telemetry_agent_buffer_records', { output: 'out', type: 'memory' })).toBe(50);
    const age = await sample(s.metrics, 'telemetry_agent_buffer_oldest_record_age_seconds', { output: 'out', type: 'memory' });
    expect(age).toBeGreaterThan(0);
    up = true;
    await source;
    await until('everything', () => s.acked.length === 200);
    expect(s.acked).toEqual(range(0, 200));
    expect(await sample(s.metrics, 'telemetry_agent_buffer_oldest_record_age_seconds', { output: 'out', type: 'memory' })).toBe(0);
    expect(new Set(s.out.accepted).size).toBe(200);
    await s.runner.close();
  });

  it('when_full: drop_newest drops and counts what does not fit, and acknowledges it so the source moves on', async () => {
    const s = setup({ buffer: (metrics) => new MemoryBuffer({ output: 'out', maxBytes: 2_000, maxEvents: 1_000_000, whenFull: 'drop_newest', metrics }) });
    s.out.answer = () => new RetryableError('down');
    for (let i = 0; i < 5; i++) await s.push(recs(i * 10, 10));
    expect(s.acked).toEqual(range(20, 30));
    expect(await sample(s.metrics, 'telemetry_agent_dropped_records_total', { component: 'out', reason: 'buffer_full' })).toBe(30);
    expect(await sample(s.metrics, 'telemetry_agent_output_records_total', { output: 'out', status: 'dropped' })).toBe(30);
    await s.runner.close();
  });

  it('detach hands the undelivered batch to the successor on the same buffer: delivered once, in order', async () => {
    const first = setup({ batch: { maxEvents: 10 } });
    first.out.answer = () => new RetryableError('down');
    await first.push(recs(0, 30));
    await until('a failed attempt', () => first.out.requests.length >= 2);
    const unfinished = await first.runner.detach();
    expect(unfinished.flat().flatMap((c) => c.records.map(id))).toEqual(range(0, 10));
    const out2 = new ScriptedOutput();
    const second = new OutputRunner(out2, {
      buffer: first.runner.buffer,
      batch: { maxBytes: 1 << 30, maxEvents: 10, timeoutMs: 0 },
      retry: { initialMs: 5, maxMs: 20 },
      concurrency: 1,
      deadLetter: undefined,
      metrics: first.metrics,
      log,
    });
    second.start(unfinished);
    await until('all', () => first.acked.length === 30);
    expect(out2.accepted).toEqual(range(0, 30));
    expect(first.out.accepted).toEqual([]);
    await second.close();
  });

  it('disk buffer: the source is acknowledged once durable while the output is down; a new runner delivers the backlog after a restart', async () => {
    const dataDir = join(root, 'disk');
    const disk = (metrics: SelfMetrics) => DiskBuffer.open({ output: 'out', dataDir, maxSize: 64 << 20, whenFull: 'block', fsync: 'always', metrics, log });
    const s = setup({ buffer: disk, batch: { maxEvents: 100 } });
    s.out.answer = () => new RetryableError('connect ECONNREFUSED');
    for (let i = 0; i < 10; i++) await s.push(recs(i * 100, 100));
    await until('durable', () => s.acked.length === 1000);
    expect(s.out.accepted).toEqual([]);
    // Shutdown: drain gives up on the down output at once (its records are on disk), close persists.
    expect(await s.runner.drain(5_000)).toBe(true);
    await s.runner.close();

    const out = new ScriptedOutput();
    const again = setup({ buffer: disk, out, batch: { maxEvents: 250 } });
    await until('backlog delivered', () => out.accepted.length === 1000);
    expect(out.accepted).toEqual(range(0, 1000));
    expect(out.requests.map((r) => r.ids.length)).toEqual([250, 250, 250, 250]);
    await again.runner.drain(5_000);
    await again.runner.close();
    // Everything acknowledged: a third start finds nothing to send.
    const third = setup({ buffer: disk });
    await new Promise((r) => setTimeout(r, 100));
    expect(third.out.requests).toEqual([]);
    await third.runner.close();
  });

  it('without a dead-letter file (or when it cannot be written) refused records are dropped and counted', async () => {
    const metrics = new SelfMetrics('test');
    const out = new ScriptedOutput();
    out.answer = () => new PermanentError('401 Unauthorized');
    const broken = new DeadLetterFile({ output: 'out', dataDir: '/dev/null/nope', maxBytes: 1 << 20, encoder: new NdjsonEncoder() });
    const runner = new OutputRunner(out, {
      buffer: new MemoryBuffer({ output: 'out', maxBytes: 1 << 20, maxEvents: 1000, whenFull: 'block', metrics }),
      batch: { maxBytes: 1 << 20, maxEvents: 100, timeoutMs: 0 },
      retry: { initialMs: 5, maxMs: 20 },
      concurrency: 1,
      deadLetter: broken,
      metrics,
      log,
    });
    runner.start();
    const acked: number[] = [];
    await runner.push(recs(0, 7), 700, new BatchAck(1, () => acked.push(7)));
    await until('acknowledged', () => acked.length === 1);
    expect(await sample(metrics, 'telemetry_agent_dropped_records_total', { component: 'out', reason: 'undeliverable' })).toBe(7);
    expect(await sample(metrics, 'telemetry_agent_output_records_total', { output: 'out', status: 'failed' })).toBe(7);
    await runner.close();
  });

  it('the dead-letter file is rotated once past its max size', async () => {
    const dl = new DeadLetterFile({ output: 'o/ut', dataDir: join(root, 'rot'), maxBytes: 4_000, encoder: new NdjsonEncoder() });
    for (let i = 0; i < 10; i++) await dl.write(recs(i * 5, 5), 'bad');
    expect(dl.path.endsWith('dead_letter/o%2fut.ndjson')).toBe(true);
    const cur = readFileSync(dl.path, 'utf8').trim().split('\n');
    const old = readFileSync(`${dl.path}.1`, 'utf8').trim().split('\n');
    expect(Buffer.byteLength(readFileSync(dl.path))).toBeLessThanOrEqual(4_000);
    const ids = [...old, ...cur].map((l) => id(JSON.parse(l).record));
    // The newest records are all there, in order, ending with the last one written.
    expect(ids.at(-1)).toBe(49);
    expect(ids).toEqual(range(50 - ids.length, ids.length));
  });
});
