import { describe, expect, it } from 'vitest';

import { MemoryBuffer } from '../agent/buffers/memory_buffer.ts';
import type { WhenFull } from '../agent/buffers/buffer.ts';
import { SelfMetrics } from '../agent/metrics.ts';
import type { LogRecord } from '../agent/record.ts';
import { id, metricValue, rec, recs, tick } from './helpers/buffer_fixtures.ts';

function buffer(opts: { maxBytes?: number; maxEvents?: number; whenFull?: WhenFull } = {}) {
  const metrics = new SelfMetrics('test');
  const b = new MemoryBuffer({
    output: 'out',
    maxBytes: opts.maxBytes ?? 1 << 20,
    maxEvents: opts.maxEvents ?? 10_000,
    whenFull: opts.whenFull ?? 'block',
    metrics,
  });
  return { b, metrics };
}

const ids = (rs: readonly LogRecord[]) => rs.map(id);
const range = (from: number, n: number) => Array.from({ length: n }, (_, k) => from + k);

describe('memory buffer', () => {
  it('hands records out oldest first, across pushes, within max events and bytes, never splitting one', async () => {
    const { b } = buffer();
    await b.push(recs(0, 5), 500, () => {}); // 100 bytes a record
    await b.push(recs(5, 5), 50, () => {}); // 10 bytes a record
    const c1 = (await b.read(3, 10_000))!;
    expect(ids(c1.records)).toEqual([0, 1, 2]);
    expect(c1.bytes).toBe(300);
    const c2 = (await b.read(100, 250))!; // 3, 4 (200 bytes) and 5..9 (50 bytes): exactly 250
    expect(ids(c2.records)).toEqual([3, 4, 5, 6, 7, 8, 9]);
    expect(c2.bytes).toBe(250);
    const big = [rec(10), rec(11)];
    await b.push(big, 5000, () => {});
    const c3 = (await b.read(100, 1000))!; // one record larger than maxBytes: comes alone
    expect(ids(c3.records)).toEqual([10]);
    expect(c3.records[0]).toBe(big[0]); // the same objects, not copies
    expect(c1.records[0]).toEqual(rec(0));
  });

  it('acknowledges a push only when all of it was delivered, over the in-order prefix of chunks', async () => {
    const { b, metrics } = buffer();
    const accepted: string[] = [];
    await b.push(recs(0, 4), 40, () => accepted.push('A'));
    await b.push(recs(4, 4), 40, () => accepted.push('B'));
    const c1 = (await b.read(3, 1e9))!; // 0..2
    const c2 = (await b.read(3, 1e9))!; // 3..5
    const c3 = (await b.read(3, 1e9))!; // 6..7
    expect(ids(c3.records)).toEqual([6, 7]);
    b.ack(c3);
    b.ack(c2);
    expect(accepted).toEqual([]); // c1 not delivered: nothing moves
    expect(b.stats().records).toBe(8);
    b.ack(c1);
    expect(accepted).toEqual(['A', 'B']);
    expect(b.stats()).toEqual({ bytes: 0, records: 0, oldestMs: undefined });
    b.ack(c1); // repeated: ignored
    expect(accepted).toEqual(['A', 'B']);
    expect(await metricValue(metrics, 'telemetry_agent_buffer_records', { output: 'out', type: 'memory' })).toBe(0);
  });

  it('a push split over chunks is accepted once its last chunk is delivered', async () => {
    const { b } = buffer();
    let accepted = 0;
    await b.push(recs(0, 6), 60, () => accepted++);
    const c1 = (await b.read(4, 1e9))!;
    b.ack(c1);
    expect(accepted).toBe(0);
    expect(b.stats().records).toBe(2);
    const c2 = (await b.read(4, 1e9))!;
    expect(ids(c2.records)).toEqual([4, 5]);
    b.ack(c2);
    expect(accepted).toBe(1);
  });

  it('block: a push waits while full, in order, and resumes after acknowledgements; it never holds more than its bounds', async () => {
    const { b, metrics } = buffer({ maxBytes: 1000, maxEvents: 20 });
    const resolved: number[] = [];
    let peakRecords = 0;
    let peakBytes = 0;
    const watch = () => {
      peakRecords = Math.max(peakRecords, b.stats().records);
      peakBytes = Math.max(peakBytes, b.stats().bytes);
    };
    const pushes = range(0, 10).map((k) =>
      b.push(recs(k * 5, 5), 300, () => {}).then((r) => {
        resolved.push(k);
        watch();
        return r;
      }),
    );
    await tick();
    expect(resolved).toEqual([0, 1, 2]); // 900 bytes; a fourth would make 1200
    const got: number[] = [];
    while (got.length < 50) {
      const c = (await b.read(7, 1e9))!;
      got.push(...ids(c.records));
      b.ack(c);
      watch();
      await tick();
    }
    expect(got).toEqual(range(0, 50));
    expect(resolved).toEqual(range(0, 10));
    expect((await Promise.all(pushes)).every((r) => r.accepted === 5 && r.dropped === 0)).toBe(true);
    expect(peakBytes).toBeLessThanOrEqual(1000);
    expect(peakRecords).toBeLessThanOrEqual(20);
    expect(await metricValue(metrics, 'telemetry_agent_dropped_records_total', { component: 'out' })).toBe(0);
  });

  it('block: a push larger than the whole buffer goes in alone once it is empty', async () => {
    const { b } = buffer({ maxBytes: 100, maxEvents: 10 });
    await b.push(recs(0, 2), 20, () => {});
    let big = false;
    const p = b.push(recs(2, 30), 3000, () => {}).then(() => (big = true));
    await tick();
    expect(big).toBe(false);
    b.ack((await b.read(10, 1e9))!);
    await p;
    expect(ids((await b.read(100, 1e9))!.records)).toEqual(range(2, 30));
  });

  it('drop_newest: a push that does not fit is dropped at once, counted, and acknowledged', async () => {
    const { b, metrics } = buffer({ maxBytes: 1000, maxEvents: 8, whenFull: 'drop_newest' });
    let accepted = 0;
    expect(await b.push(recs(0, 5), 100, () => accepted++)).toEqual({ accepted: 5, dropped: 0 });
    expect(await b.push(recs(5, 5), 100, () => accepted++)).toEqual({ accepted: 0, dropped: 5 });
    expect(accepted).toBe(1); // dropped on purpose counts as accepted for the source
    expect(await b.push(recs(10, 3), 100, () => accepted++)).toEqual({ accepted: 3, dropped: 0 });
    expect(await metricValue(metrics, 'telemetry_agent_dropped_records_total', { component: 'out', reason: 'buffer_full' })).toBe(5);
    expect(ids((await b.read(100, 1e9))!.records)).toEqual([0, 1, 2, 3, 4, 10, 11, 12]);
  });

  it('read waits for records; abort and close end the wait; close releases blocked pushes', async () => {
    const { b } = buffer({ maxEvents: 2 });
    const waiting = b.read(10, 1e9);
    await tick();
    await b.push(recs(0, 2), 2, () => {});
    expect(ids((await waiting)!.records)).toEqual([0, 1]);

    const ac = new AbortController();
    const aborted = b.read(10, 1e9, ac.signal);
    ac.abort();
    expect(await aborted).toBeUndefined();

    let accepted = false;
    const blocked = b.push(recs(2, 2), 2, () => (accepted = true));
    const pendingRead = b.read(10, 1e9);
    const drained = b.drain(10_000);
    await b.close();
    expect(await blocked).toEqual({ accepted: 0, dropped: 0 });
    expect(accepted).toBe(false); // never taken: the source reads it again
    expect(await pendingRead).toBeUndefined();
    expect(await drained).toBe(false);
    expect(await b.push(recs(4, 1), 1, () => {})).toEqual({ accepted: 0, dropped: 0 });
  });

  it('drain resolves once everything is delivered; stats and gauges follow', async () => {
    const { b, metrics } = buffer();
    const before = Date.now();
    await b.push(recs(0, 3), 30, () => {});
    const s = b.stats();
    expect(s.records).toBe(3);
    expect(s.bytes).toBe(30);
    expect(s.oldestMs).toBeGreaterThanOrEqual(before);
    expect(await metricValue(metrics, 'telemetry_agent_buffer_bytes', { output: 'out', type: 'memory' })).toBe(30);
    expect(await b.drain(20)).toBe(false);
    const drained = b.drain(10_000);
    b.ack((await b.read(10, 1e9))!);
    expect(await drained).toBe(true);
    expect(await metricValue(metrics, 'telemetry_agent_buffer_bytes', { output: 'out', type: 'memory' })).toBe(0);
  });

  it('several readers: concurrent chunks are disjoint and together hold every record once', async () => {
    const { b } = buffer();
    const got: number[][] = [];
    const workers = range(0, 4).map(async () => {
      for (;;) {
        const c = await b.read(13, 1e9);
        if (!c) return;
        got.push(ids(c.records));
        await tick(Math.random() * 3);
        b.ack(c);
      }
    });
    let accepted = 0;
    for (let k = 0; k < 40; k++) await b.push(recs(k * 25, 25), 250, () => accepted++);
    expect(await b.drain(10_000)).toBe(true);
    await b.close();
    await Promise.all(workers);
    expect(got.flat().sort((x, y) => x - y)).toEqual(range(0, 1000));
    expect(accepted).toBe(40);
  });
});
