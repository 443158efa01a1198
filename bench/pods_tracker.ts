/**
 * The node-local pod startup tracker over a pod watch stream: JSON.parse, PodStartupTracker (stage
 * histograms, restarts, disruptions), and every startup's spans built and handed to a
 * BatchSpanProcessor whose exporter discards them (the OTLP encoding and network are not measured).
 *
 *   node bench/pods_tracker.ts <watch.ndjson>
 */
import * as fs from 'node:fs';
import { Registry } from 'prom-client';
import { BatchSpanProcessor, type ReadableSpan, type SpanExporter } from '@opentelemetry/sdk-trace-base';
import { ClusterMetrics } from '../agent/cluster/cluster_metrics.ts';
import { PodStartupTracker, type Pod } from '../agent/cluster/pod_startup_tracker.ts';
import { SpanExport } from '../agent/cluster/span_export.ts';
import { reportResult } from './child.ts';
import { ReportWindow } from '../agent/cluster/report_window.ts';

const file = process.argv[2];
if (!file) {
  console.error('usage: pods_tracker.ts <watch.ndjson>');
  process.exit(2);
}
let exported = 0;
const discard: SpanExporter = {
  export(spans: ReadableSpan[], done) {
    exported += spans.length;
    done({ code: 0 });
  },
  shutdown: () => Promise.resolve(),
};
const registry = new Registry();
const spans = new SpanExport({ clusterName: 'bench', clusterUid: 'bench', processor: new BatchSpanProcessor(discard, { maxQueueSize: 65_536, maxExportBatchSize: 4096 }) });
const tracker = new PodStartupTracker({
  metrics: new ClusterMetrics(registry, false),
  spans,
  nodeName: 'node-a',
  window: new ReportWindow(ReportWindow.startingAt(Date.parse('2026-11-21T00:00:00Z')), { hold: false }),
  timeoutMs: 900_000,
  namespaceOnHistograms: false,
});
const text = fs.readFileSync(file, 'utf8');
let lines = 0;
for (let start = 0, nl = text.indexOf('\n'); nl !== -1; start = nl + 1, nl = text.indexOf('\n', start)) {
  const ev = JSON.parse(text.slice(start, nl)) as { type: string; object: Pod };
  if (ev.type === 'DELETED') tracker.onPodDeleted(ev.object);
  else tracker.onPod(ev.object);
  lines++;
}
await spans.shutdown();
const count = (await registry.getSingleMetric('k8s_pod_startup_duration_seconds')!.get()).values as { metricName?: string; value: number }[];
const startups = count.filter((v) => v.metricName === 'k8s_pod_startup_duration_seconds_count').reduce((a, v) => a + v.value, 0);
reportResult({ lines, bytes: Buffer.byteLength(text), extra: { startups, spans: exported, tracked: tracker.tracked } });
