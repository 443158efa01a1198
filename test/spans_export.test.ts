import { InMemorySpanExporter, SimpleSpanProcessor } from '@opentelemetry/sdk-trace-base';
import { afterEach, describe, expect, it } from 'vitest';
import { SpanExport, spansWanted, truncateUtf8 } from '../agent/cluster/span_export.ts';
import { spanIdFor, traceIdFor } from '../agent/cluster/span_ids.ts';
import { pullSeconds } from '../agent/cluster/image_pull_tracker.ts';

const saved = { ...process.env };
afterEach(() => {
  for (const k of ['OTEL_SDK_DISABLED', 'OTEL_EXPORTER_OTLP_ENDPOINT', 'OTEL_EXPORTER_OTLP_TRACES_ENDPOINT']) {
    if (saved[k] === undefined) delete process.env[k];
    else process.env[k] = saved[k];
  }
});

describe('span ids from object uids', () => {
  it('are the documented SHA-256 prefixes: equal for equal keys in any process, different per discriminator', async () => {
    const { createHash } = await import('node:crypto');
    const key = { rootKind: 'Pod', rootUid: 'abc', discriminator: 'startup' };
    expect(traceIdFor('cluster', key)).toBe(createHash('sha256').update('cluster/Pod/abc/startup').digest('hex').slice(0, 32));
    expect(spanIdFor('cluster', key, 'container.start', 'abc', 'app')).toBe(createHash('sha256').update('cluster/Pod/abc/startup/container.start/abc/app').digest('hex').slice(0, 16));
    expect(traceIdFor('cluster', { ...key, discriminator: 'other' })).not.toBe(traceIdFor('cluster', key));
    expect(traceIdFor('other-cluster', key)).not.toBe(traceIdFor('cluster', key));
  });

  it('builds finished spans with explicit times, parent, resource per component, truncated error messages', () => {
    const exporter = new InMemorySpanExporter();
    const spans = new SpanExport({ clusterName: 'prod', clusterUid: 'cu', processor: new SimpleSpanProcessor(exporter) });
    const trace = { rootKind: 'Pod', rootUid: 'p1', discriminator: 'startup' };
    spans.emit({ trace, name: 'pod.schedule', objectUid: 'p1', parent: { name: 'pod.startup', objectUid: 'p1' }, startMs: 1000, endMs: 2500, result: 'ok', attributes: {}, component: 'kube-scheduler' });
    spans.emit({ trace, name: 'pod.startup', objectUid: 'p1', startMs: 1000, endMs: 900, result: 'error', message: 'é'.repeat(200), attributes: {}, component: 'kubelet', nodeName: 'n1' });
    const [child, root] = exporter.getFinishedSpans();
    expect(child!.parentSpanContext?.spanId).toBe(root!.spanContext().spanId);
    expect(child!.spanContext().traceId).toBe(root!.spanContext().traceId);
    expect([child!.startTime, child!.endTime]).toEqual([[1, 0], [2, 500_000_000]]);
    expect(root!.endTime).toEqual(root!.startTime); // an end before the start is clamped, never negative
    expect(Buffer.byteLength(root!.status.message!)).toBe(256);
    expect(root!.resource.attributes).toMatchObject({ 'service.name': 'kubelet', 'k8s.node.name': 'n1', 'k8s.cluster.name': 'prod', 'k8s.cluster.uid': 'cu' });
    expect(child!.resource.attributes['service.name']).toBe('kube-scheduler');
  });
});

describe('configuration from the environment', () => {
  it('auto exports only with an OTLP endpoint set; OTEL_SDK_DISABLED=true always wins', () => {
    delete process.env.OTEL_EXPORTER_OTLP_ENDPOINT;
    delete process.env.OTEL_EXPORTER_OTLP_TRACES_ENDPOINT;
    delete process.env.OTEL_SDK_DISABLED;
    expect([spansWanted('auto'), spansWanted(true), spansWanted(false)]).toEqual([false, true, false]);
    process.env.OTEL_EXPORTER_OTLP_TRACES_ENDPOINT = 'http://collector:4318/v1/traces';
    expect(spansWanted('auto')).toBe(true);
    process.env.OTEL_SDK_DISABLED = ' TRUE ';
    expect([spansWanted('auto'), spansWanted(true)]).toEqual([false, false]);
  });
});

describe('bad input in messages', () => {
  it('parses Go durations of Pulled messages and refuses what is not one', () => {
    expect(pullSeconds('Successfully pulled image "a:1" in 1m2.5s (1m3s including waiting). Image size: 5 bytes.')).toBe(62.5);
    expect(pullSeconds('Successfully pulled image "a:1" in 845ms (900ms including waiting)')).toBeCloseTo(0.845);
    expect(pullSeconds('Container image "a:1" already present on machine')).toBeUndefined();
    expect(pullSeconds('Successfully pulled image "a:1" in soon')).toBeUndefined();
  });

  it('cuts UTF-8 at a character boundary', () => {
    expect(truncateUtf8('aé', 2)).toBe('a');
    expect(truncateUtf8('abc', 5)).toBe('abc');
  });
});
