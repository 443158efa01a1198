import { describe, expect, it } from 'vitest';
import { createLogger, RateLimitedLog } from '../agent/log.ts';
import { SelfMetrics } from '../agent/metrics.ts';
import type { LogRecord } from '../agent/record.ts';
import { Throttle, throttleConfig } from '../agent/transforms/throttle.ts';
import { sampleValue } from './helpers/agent_harness.ts';
import { parseConfig } from '../agent/config/load.ts';

function throttle(config: Record<string, unknown>) {
  const metrics = new SelfMetrics('test');
  const log = createLogger('error');
  const t = new Throttle(throttleConfig.parse({ type: 'throttle', inputs: ['c'], ...config }), { name: 't', metrics, log, warnings: new RateLimitedLog(log), emit: () => {} });
  return { t, metrics };
}

const attributes = Object.freeze({});
const rec = (pod: string): LogRecord => ({ timestamp: 't', observedTimestamp: 'o', body: 'line', attributes, resource: Object.freeze({ 'k8s.pod.name': pod }) });

describe('throttle: bad input', () => {
  it('a key with 100,000 distinct values keeps at most max_keys budgets (memory bounded)', async () => {
    const { t, metrics } = throttle({ key: 'resource["k8s.pod.name"]', rate: '10/s', max_keys: 1000, when_exceeded: 'drop' });
    let passed = 0;
    for (let i = 0; i < 100_000; i += 500) {
      const batch = Array.from({ length: 500 }, (_, j) => rec(`pod-${i + j}`));
      t.process(batch, { bytes: 0, hold: () => () => {}, pause: () => {} }, (out) => (passed += out.length));
    }
    // Every key is new: each spends one of its fresh burst; memory holds at most 1000 buckets.
    expect(passed).toBe(100_000);
    expect(sampleValue(await metrics.registry.metrics(), 'telemetry_agent_throttle_keys', { transform: 't' })).toBeLessThanOrEqual(1000);
    expect((t as unknown as { buckets: Map<string, unknown> }).buckets.size).toBeLessThanOrEqual(1000);
  });

  it('pause asks the batch to wait for the debt to be repaid, and passes every record', () => {
    const { t } = throttle({ rate: '1KiB/s', burst: '1KiB', when_exceeded: 'pause' });
    const pauses: number[] = [];
    let passed = 0;
    const batch = Array.from({ length: 10 }, () => rec('a'));
    // 10 records from 4 KiB read: 3 KiB over a 1 KiB burst at 1 KiB/s is 3 s of debt.
    t.process(batch, { bytes: 4096, hold: () => () => {}, pause: (ms) => pauses.push(ms) }, (out) => (passed += out.length));
    expect(passed).toBe(10);
    expect(pauses).toHaveLength(1);
    expect(pauses[0]).toBeGreaterThanOrEqual(2990);
    expect(pauses[0]).toBeLessThanOrEqual(3000);
  });

  it('validate: a rate it cannot read, a burst in the other unit', () => {
    const cfg = (keys: string) => `sources:\n  c: { type: container_logs }\ntransforms:\n  t: { type: throttle, inputs: [c], ${keys} }\noutputs:\n  o: { type: stdout, inputs: [t] }\n`;
    expect(() => parseConfig(cfg('rate: lots'), 'a.yaml', {})).toThrow('transforms.t.rate: expected a rate like 2000/s (records) or 1MiB/s (bytes), got "lots"');
    expect(() => parseConfig(cfg('rate: 1MiB/s, burst: 100'), 'a.yaml', {})).toThrow('transforms.t.burst: rate is in bytes, so burst must be too (a size like 4MiB)');
  });
});
