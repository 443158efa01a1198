import { appendFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';

import type { LogRecord } from '../agent/record.ts';
import { BulkEncoder, elasticsearchConfig } from '../outputs/elasticsearch.ts';
import { lokiConfig } from '../outputs/loki.ts';
import { groupStreams, StreamLabeler, TimestampParser } from '../outputs/loki_streams.ts';
import { AgentHarness, criLine, criTime } from './helpers/agent_harness.ts';
import { podResource, recordBuilder } from './helpers/output_fixtures.ts';

/**
 * issue 13: severity_text as the source wrote it, severity_number on every record that has a level,
 * and the six-value level (trace…fatal, from the number) for receivers that key on one.
 */

const record = recordBuilder(podResource({ 'k8s.deployment.name': 'web' }));
const levelled = (text: string | undefined, n: number | undefined): LogRecord => record(`${text ?? 'plain'} line`, { severityText: text, severityNumber: n });

describe('the level for receivers that key on one', () => {
  it('loki level_label: one stream per level, every spelling of a level in the same one; records without a number get no level label', () => {
    const labeler = new StreamLabeler({ namespace: 'k8s.namespace.name' }, {}, 'level');
    const records = [levelled('warn', 13), levelled('WARNING', 13), levelled('W', 13), levelled('ERROR', 17), levelled('30', 9), levelled(undefined, undefined), levelled('warning', 13)];
    const groups = groupStreams(records, labeler, new TimestampParser(), []);
    const bySelector = Object.fromEntries(groups.map((g) => [g.split.selector, g.entries.map((e) => e.index)]));
    expect(bySelector).toEqual({
      '{level="warn", namespace="default"}': [0, 1, 2, 6],
      '{level="error", namespace="default"}': [3],
      '{level="info", namespace="default"}': [4],
      '{namespace="default"}': [5],
    });
    // Without level_label the stream is the resource's alone.
    const plain = groupStreams(records, new StreamLabeler({ namespace: 'k8s.namespace.name' }, {}), new TimestampParser(), []);
    expect(plain.map((g) => g.split.selector)).toEqual(['{namespace="default"}']);
  });

  it('loki level_label is checked like the other labels', () => {
    const problems = (extra: Record<string, unknown>) => {
      const r = lokiConfig.safeParse({ type: 'loki', inputs: ['c'], endpoint: 'http://loki:3100', ...extra });
      return r.success ? [] : r.error.issues.map((i) => `${i.path.join('.')}: ${i.message}`);
    };
    expect(problems({ level_label: 'level' })).toEqual([]);
    expect(problems({ level_label: 'level', static_labels: { level: 'x' } })).toEqual(['level_label: level is also under labels or static_labels; a stream has one value per label name']);
    expect(problems({ level_label: '1level' })[0]).toContain('is not a Loki label name');
  });

  it("elasticsearch: ECS log.level is the level, severity_text what the app wrote; log_level: false leaves it out", () => {
    const enc = new BulkEncoder(elasticsearchConfig.parse({ type: 'elasticsearch', inputs: ['c'], endpoint: 'http://es:9200' }));
    const doc = (r: LogRecord, e = enc) => JSON.parse(e.source(r)) as Record<string, unknown>;
    expect(doc(levelled('WARNING', 13))).toMatchObject({ severity_text: 'WARNING', severity_number: 13, log: { level: 'warn' } });
    expect(doc(levelled('50', 17))).toMatchObject({ severity_text: '50', log: { level: 'error' } });
    expect(doc(levelled(undefined, undefined))).not.toHaveProperty('log');
    const off = new BulkEncoder(elasticsearchConfig.parse({ type: 'elasticsearch', inputs: ['c'], endpoint: 'http://es:9200', log_level: false }));
    expect(doc(levelled('WARNING', 13), off)).not.toHaveProperty('log');
  });
});

describe('severity on every record that says its level', () => {
  it('text lines get severity_number from their level word (as written in severity_text), with or without a parser', async () => {
    for (const parser of ['none', 'json']) {
      const h = new AgentHarness({ source: { parser } });
      const file = h.tree.container({ namespace: 'shop', pod: 'web-1' }).logPath;
      await h.start();
      try {
        const lines = [
          '2026-11-21 10:00:02,377 ERROR worker.main: job 77 failed',
          '[warn] disk almost full',
          'E1121 10:00:00.123456    1234 file.go:123] failed to sync',
          'no level here',
          '{"level":40,"msg":"pino"}',
        ];
        appendFileSync(file, lines.map((l, i) => criLine(l, { time: criTime(i + 1) })).join(''));
        const out = await h.waitForLines(5);
        const got = out.map((r) => [(r as { severity_text?: string }).severity_text, (r as { severity_number?: number }).severity_number]);
        expect(got.slice(0, 4), parser).toEqual([
          ['ERROR', 17],
          ['warn', 13],
          ['E', 17],
          [undefined, undefined],
        ]);
        // A JSON body: with the json parser its level field, as written; without, no level word at its start.
        expect(got[4]).toEqual(parser === 'json' ? ['40', 13] : [undefined, undefined]);
      } finally {
        await h.stop();
      }
    }
  });
});
