import { spawnSync } from 'node:child_process';
import { describe, expect, it } from 'vitest';
import { ConfigError, parseConfig } from '../agent/config/load.ts';
import { createLogger, RateLimitedLog } from '../agent/log.ts';
import { SelfMetrics } from '../agent/metrics.ts';
import type { LogRecord } from '../agent/record.ts';
import { LogToMetric, logToMetricConfig } from '../agent/transforms/log_to_metric.ts';
import { sampleValue } from './helpers/agent_harness.ts';
import { onPath } from './helpers/tools.ts';

function transform(metrics: SelfMetrics, config: Record<string, unknown>, name = 'm') {
  const log = createLogger('error');
  return new LogToMetric(logToMetricConfig.parse({ type: 'log_to_metric', inputs: ['c'], ...config }), {
    name,
    metrics,
    log,
    warnings: new RateLimitedLog(log),
    emit: () => {},
  });
}

const resource = Object.freeze({ 'k8s.namespace.name': 'shop' });
const attributes = Object.freeze({});
const rec = (body: Record<string, unknown>): LogRecord => ({ timestamp: '2026-11-21T10:00:00.000000000Z', observedTimestamp: '', body, attributes, resource });

describe('log_to_metric: a label with 100,000 distinct values', () => {
  it('keeps max_series label sets, counts the rest in the `other` series and says how many', async () => {
    const metrics = new SelfMetrics('test');
    const t = transform(metrics, {
      metrics: [{ name: 'app_requests_total', type: 'counter', labels: { path: 'body.path', namespace: 'resource["k8s.namespace.name"]' }, max_series: 500 }],
    });
    const records: LogRecord[] = [];
    for (let i = 0; i < 100_000; i++) records.push(rec({ path: `/orders/${i}` }));
    let passed: LogRecord[] = [];
    for (let i = 0; i < records.length; i += 1000) t.process(records.slice(i, i + 1000), {} as never, (out) => (passed = passed.concat(out)));
    expect(passed.length).toBe(100_000);
    const text = await metrics.registry.metrics();
    const series = text.split('\n').filter((l) => l.startsWith('app_requests_total{'));
    expect(series.length).toBe(501);
    expect(sampleValue(text, 'app_requests_total', { path: 'other', namespace: 'other' })).toBe(99_500);
    expect(sampleValue(text, 'app_requests_total', { path: '/orders/0', namespace: 'shop' })).toBe(1);
    expect(sampleValue(text, 'telemetry_agent_log_metric_overflow_records_total', { transform: 'm', metric: 'app_requests_total' })).toBe(99_500);
    const promtool = onPath('promtool');
    if (promtool) {
      const r = spawnSync(promtool, ['check', 'metrics'], { input: text, encoding: 'utf8' });
      expect(r.status, r.stdout + r.stderr).toBe(0);
    }
  });

  it('a failing label or value skips that metric for the record, counted; drop_after drops the records (counted)', async () => {
    const metrics = new SelfMetrics('test');
    const t = transform(metrics, {
      drop_after: true,
      metrics: [
        { name: 'app_bytes_total', type: 'counter', value: 'body.bytes', labels: { code: 'string(int(body.code))' } },
        { name: 'app_seen_total', type: 'counter' },
      ],
    });
    let passed: LogRecord[] | undefined;
    t.process([rec({ bytes: 10, code: 200 }), rec({ bytes: 5 }), rec({ bytes: -1, code: 200 })], {} as never, (out) => (passed = out));
    expect(passed).toBeUndefined();
    const text = await metrics.registry.metrics();
    expect(sampleValue(text, 'app_bytes_total', { code: '200' })).toBe(10);
    expect(sampleValue(text, 'app_seen_total')).toBe(3);
    expect(sampleValue(text, 'telemetry_agent_transform_errors_total', { transform: 'm', expression: 'metrics[0].labels.code' })).toBe(1);
    expect(sampleValue(text, 'telemetry_agent_transform_errors_total', { transform: 'm', expression: 'metrics[0].value' })).toBe(1);
    expect(sampleValue(text, 'telemetry_agent_dropped_records_total', { component: 'm', reason: 'metric_only' })).toBe(3);
  });

  it('a replacement defining a metric alike keeps its values (reload); closing the last owner removes it', async () => {
    const metrics = new SelfMetrics('test');
    const def = { metrics: [{ name: 'app_seen_total', type: 'counter' }] };
    const a = transform(metrics, def);
    a.process([rec({}), rec({})], {} as never, () => {});
    const b = transform(metrics, { ...def, drop_after: true });
    a.close();
    b.process([rec({})], {} as never, () => {});
    expect(sampleValue(await metrics.registry.metrics(), 'app_seen_total')).toBe(3);
    b.close();
    expect(sampleValue(await metrics.registry.metrics(), 'app_seen_total')).toBeUndefined();
  });
});

describe('log_to_metric: validate', () => {
  const problems = (metricYaml: string, extra = '') => {
    try {
      parseConfig(
        `sources:\n  c: { type: container_logs }\ntransforms:\n  m:\n    type: log_to_metric\n    inputs: [c]\n    drop_after: true\n    metrics:\n${metricYaml}${extra}outputs:\n  o: { type: stdout, inputs: [c] }\n`,
        'a.yaml',
        {},
      );
    } catch (err) {
      return (err as ConfigError).problems;
    }
    return [];
  };

  it('names what Prometheus or promtool would refuse, with the key path', () => {
    expect(problems('      - { name: app_requests, type: counter }\n')).toEqual([
      'transforms.m.metrics[0].name: a counter\'s name ends in _total (Prometheus naming; promtool check metrics requires it)',
    ]);
    expect(problems('      - { name: telemetry_agent_x_total, type: counter }\n')).toEqual([
      "transforms.m.metrics[0].name: telemetry_agent_* names belong to the agent's own metrics",
    ]);
    expect(problems('      - { name: app_depth, type: gauge }\n')).toEqual(['transforms.m.metrics[0].value: a gauge needs a value']);
    expect(problems("      - { name: app_latency, type: histogram, value: '1.0', labels: { le: '\"x\"' } }\n")).toEqual([
      'transforms.m.metrics[0].labels: le is the bucket label of a histogram',
    ]);
    expect(problems("      - { name: app_seconds, type: histogram, value: '1.0', buckets: [1, 0.5] }\n")).toEqual([
      'transforms.m.metrics[0].buckets: bucket bounds must increase',
    ]);
    expect(problems("      - { name: app_x_total, type: counter, labels: { code: 'body.status +' } }\n")).toEqual([
      'transforms.m.metrics[0].labels.code: CEL syntax error: line 1, column 13: found + but expecting end of input',
    ]);
    expect(problems("      - { name: app_x_total, type: counter, value: '\"one\"' }\n")).toEqual([
      'transforms.m.metrics[0].value: CEL: the value must be a number, its type is string',
    ]);
    expect(
      problems(
        '      - { name: app_x_total, type: counter }\n',
        '  n:\n    type: log_to_metric\n    inputs: [c]\n    drop_after: true\n    metrics: [{ name: app_x_total, type: counter }]\n',
      ),
    ).toEqual(['transforms.n.metrics[0].name: app_x_total is also defined by transforms.m.metrics[0]']);
  });
});
