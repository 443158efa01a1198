import { afterEach, describe, expect, it, vi } from 'vitest';
import { createLogger } from '../agent/log.ts';
import { SelfMetrics } from '../agent/metrics.ts';
import type { ReadPace, Reader } from '../agent/pipeline.ts';
import { BatchAck, type Acknowledger, type LogRecord } from '../agent/record.ts';
import { compileCel, CelProgram } from '../agent/transforms/cel.ts';
import { parseConfig } from '../agent/config/load.ts';
import { TransformNode } from '../agent/transforms/transform_node.ts';
import type { TransformConfig } from '../agent/transforms/registry.ts';

/** A reader that keeps what it is handed and accepts when told. */
class HeldReader implements Reader {
  readonly batches: { records: LogRecord[]; ack: Acknowledger }[] = [];
  push(records: LogRecord[], _bytes: number, ack: Acknowledger): Promise<void> {
    this.batches.push({ records, ack });
    return Promise.resolve();
  }
  acceptAll(): void {
    for (const b of this.batches.splice(0)) b.ack.accept();
  }
}

function transformConfig(yaml: string): TransformConfig {
  const inputs = yaml.includes('type: route') ? '[t.shop, t.loud]' : '[t]';
  const cfg = parseConfig(`sources:\n  c: { type: container_logs }\ntransforms:\n  t:\n${yaml}outputs:\n  o: { type: stdout, inputs: ${inputs} }\n`, 'a.yaml', {});
  return cfg.transforms.t!;
}

function node(yaml: string, readers: Record<string, Reader[]>) {
  return new TransformNode('t', transformConfig(yaml), { metrics: new SelfMetrics('test'), log: createLogger('error'), readers: (port) => readers[port] ?? [] });
}

const resource = Object.freeze({ 'k8s.namespace.name': 'shop' });
const rec = (body: string, ns = 'shop'): LogRecord => ({
  timestamp: '2026-11-21T10:00:00.000000000Z',
  observedTimestamp: '',
  body,
  attributes: Object.freeze({}),
  resource: ns === 'shop' ? resource : Object.freeze({ 'k8s.namespace.name': ns }),
});

afterEach(() => vi.useRealTimers());

describe('a transform in the graph: acknowledgements', () => {
  it('a batch that fans out to two routes and three readers is acknowledged once all of them accepted', async () => {
    const a = new HeldReader();
    const b = new HeldReader();
    const c = new HeldReader();
    const t = node(`    type: route\n    inputs: [c]\n    routes: { shop: 'resource["k8s.namespace.name"] == "shop"', loud: 'body.startsWith("!")' }\n`, {
      't.shop': [a, b],
      't.loud': [c],
    });
    let acked = 0;
    await t.push([rec('one'), rec('!two', 'pay'), rec('three', 'ops')], 0, new BatchAck(1, () => acked++));
    // `three` matched nothing and _unmatched has no reader: dropped, counted, not waited for.
    expect(a.batches[0]!.records.map((r) => r.body)).toEqual(['one']);
    expect(c.batches[0]!.records.map((r) => r.body)).toEqual(['!two']);
    a.acceptAll();
    c.acceptAll();
    expect(acked).toBe(0);
    b.acceptAll();
    expect(acked).toBe(1);
  });

  it('a batch whose records are all dropped is acknowledged at once', async () => {
    const out = new HeldReader();
    const t = node(`    type: filter\n    inputs: [c]\n    drop: 'true'\n`, { t: [out] });
    let acked = 0;
    await t.push([rec('a'), rec('b')], 10, new BatchAck(1, () => acked++));
    expect(out.batches).toHaveLength(0);
    expect(acked).toBe(1);
  });

  it('dedupe holds the batch of a run until the collapsed record is accepted downstream', async () => {
    const out = new HeldReader();
    const t = node(`    type: dedupe\n    inputs: [c]\n    window: 1h\n`, { t: [out] });
    const acks = [0, 0];
    await t.push([rec('x'), rec('x')], 0, new BatchAck(1, () => acks[0]!++));
    await t.push([rec('x'), rec('y')], 0, new BatchAck(1, () => acks[1]!++));
    // The run of x (three records over two batches) left when y came; y is held.
    expect(out.batches.map((b) => b.records.map((r) => [r.body, r.attributes['kta.repeat.count']]))).toEqual([[['x', 3]]]);
    out.acceptAll();
    expect(acks).toEqual([1, 0]);
    t.flush();
    expect(out.batches[0]!.records.map((r) => r.body)).toEqual(['y']);
    out.acceptAll();
    expect(acks).toEqual([1, 1]);
    t.close();
  });
});

describe('throttle pause: the signal back to the source', () => {
  const yaml = `    type: throttle\n    inputs: [c]\n    rate: 10/s\n    burst: 10\n    when_exceeded: pause\n`;

  it('travels with the batch to a source that paces per file, and the records go on at once', async () => {
    const out = new HeldReader();
    const t = node(yaml, { t: [out] });
    const asked: number[] = [];
    const pace: ReadPace = { holdFor: (ms) => asked.push(ms) };
    await t.push(Array.from({ length: 30 }, (_, i) => rec(`r${i}`)), 0, new BatchAck(1, () => {}), pace);
    expect(out.batches[0]!.records).toHaveLength(30);
    // 20 records over a burst of 10 at 10/s: two seconds of debt.
    expect(asked).toEqual([2000]);
  });

  it('holds the emit of a source that cannot pace per file (journald) for that long instead', async () => {
    vi.useFakeTimers();
    const out = new HeldReader();
    const t = node(yaml, { t: [out] });
    let resolved = false;
    const p = t.push(Array.from({ length: 15 }, (_, i) => rec(`r${i}`)), 0, new BatchAck(1, () => {})).then(() => (resolved = true));
    expect(out.batches[0]!.records).toHaveLength(15);
    await vi.advanceTimersByTimeAsync(400);
    expect(resolved).toBe(false);
    await vi.advanceTimersByTimeAsync(200);
    await p;
    expect(resolved).toBe(true);
  });
});

describe('CEL over shared objects', () => {
  it('an expression on resource only is evaluated once per resource object, not per record', () => {
    const p = compileCel('resource["k8s.namespace.name"].startsWith("sh")', 'bool') as CelProgram;
    expect(p.sharedObjectsOnly).toBe(true);
    const inner = p as unknown as { evaluateNow: (r: LogRecord) => unknown };
    const evaluateNow = inner.evaluateNow.bind(p);
    let calls = 0;
    inner.evaluateNow = (r) => {
      calls++;
      return evaluateNow(r);
    };
    const other = Object.freeze({ 'k8s.namespace.name': 'ops' });
    const records = Array.from({ length: 1000 }, (_, i) => ({ ...rec(`r${i}`), resource: i % 2 ? resource : other }));
    const results = records.map((r) => p.evaluate(r));
    expect(results.filter((r) => r === true)).toHaveLength(500);
    expect(calls).toBe(2);
    const body = compileCel('body.startsWith("r1")', 'bool') as CelProgram;
    expect(body.sharedObjectsOnly).toBe(false);
  });
});
