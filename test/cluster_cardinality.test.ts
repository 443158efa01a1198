import { afterEach, describe, expect, it } from 'vitest';
import { Registry } from 'prom-client';
import { ClusterMetrics } from '../agent/cluster/cluster_metrics.ts';
import { ImagePullTracker } from '../agent/cluster/image_pull_tracker.ts';
import { PodStartupTracker, type Pod } from '../agent/cluster/pod_startup_tracker.ts';
import { RolloutTracker } from '../agent/cluster/rollout_tracker.ts';
import { SpanExport } from '../agent/cluster/span_export.ts';
import { InMemorySpanExporter, SimpleSpanProcessor } from '@opentelemetry/sdk-trace-base';
import { occurrence, startupPod } from '../agent/demo/cluster_objects.ts';
import { promtoolCheck, S, T } from './helpers/cluster_replay.ts';
import { ReportWindow } from '../agent/cluster/report_window.ts';

const OWNERS = ['ReplicaSet', 'StatefulSet', 'DaemonSet', 'Job', 'Node', 'CustomThing'];

/** The bound README states for the node-local tracker's k8s_* series, whatever the churn. */
const NODE_LOCAL_SERIES_BOUND = 2600;

/** A sample's value from the registry (histograms list `_count`, `_sum`, `_bucket` under one metric). */
async function sample(registry: Registry, metric: string, name: string, labels: Record<string, string> = {}): Promise<number | undefined> {
  const values = (await registry.getSingleMetric(metric)!.get()).values as { value: number; labels: Record<string, unknown>; metricName?: string }[];
  return values.find((v) => v.metricName === name && Object.entries(labels).every(([k, want]) => v.labels[k] === want))?.value;
}

function seriesCount(text: string): number {
  return text.split('\n').filter((l) => l.startsWith('k8s_')).length;
}

let exporter: InMemorySpanExporter | undefined;
afterEach(() => exporter?.reset());

describe('cardinality: 10,000 pods churned', () => {
  it('keeps k8s_* series under the stated bound and forgets every pod', async (ctx) => {
    const registry = new Registry();
    const metrics = new ClusterMetrics(registry, false);
    exporter = new InMemorySpanExporter();
    const spans = new SpanExport({ clusterName: 'c', clusterUid: 'u', processor: new SimpleSpanProcessor(exporter) });
    const t = new PodStartupTracker({ metrics, spans, nodeName: 'node-a', window: new ReportWindow(ReportWindow.startingAt(T - 60 * S), { hold: false }), timeoutMs: 900 * S, namespaceOnHistograms: false });
    const reasons = ['OOMKilled', 'Error', 'Completed', 'Unknown'];
    for (let i = 0; i < 10_000; i++) {
      const created = T + i * S;
      const p = startupPod({ name: `app-${i}-abcde`, namespace: `ns-${i % 500}`, uid: `uid-${i}`, nodeName: 'node-a', t: { created } }) as unknown as Pod;
      p.metadata.ownerReferences = [{ apiVersion: 'v1', kind: OWNERS[i % OWNERS.length]!, name: `o-${i}`, uid: `o-${i}`, controller: true }];
      t.onPod(p);
      const ready = startupPod({ name: `app-${i}-abcde`, namespace: `ns-${i % 500}`, uid: `uid-${i}`, nodeName: 'node-a', t: { created, scheduled: created + S, readyToStart: created + 2 * S, started: created + 3 * S, ready: created + 4 * S, restartCount: 1, lastTerminated: reasons[i % 4]!, disruption: { reason: 'EvictionByEvictionAPI', at: created + 5 * S } } }) as unknown as Pod;
      ready.metadata.ownerReferences = p.metadata.ownerReferences;
      t.onPod(ready);
      t.onPodDeleted(ready);
    }
    const text = await registry.metrics();
    expect(await sample(registry, 'k8s_pod_startup_duration_seconds', 'k8s_pod_startup_duration_seconds_count', { owner_kind: 'Deployment' })).toBe(1667);
    const n = seriesCount(text);
    expect(n).toBeGreaterThan(100);
    expect(n).toBeLessThan(NODE_LOCAL_SERIES_BOUND);
    // namespaces past the cap (200) share `other`: 500 namespaces did not make 500 label values
    const namespaces = new Set([...text.matchAll(/^k8s_container_restarts_total\{namespace="([^"]+)"/gm)].map((m) => m[1]));
    expect(namespaces.size).toBe(201);
    expect(namespaces.has('other')).toBe(true);
    expect(text).not.toMatch(/uid-|app-\d/); // no per-object label values
    expect(t.tracked).toBe(0);
    expect(exporter.getFinishedSpans().filter((s) => s.name === 'pod.startup')).toHaveLength(10_000);
    promtoolCheck(ctx, text);
  });
});

describe('bad input', () => {
  const setup = () => {
    const registry = new Registry();
    const metrics = new ClusterMetrics(registry, false);
    exporter = new InMemorySpanExporter();
    const spans = new SpanExport({ clusterName: 'c', clusterUid: 'u', processor: new SimpleSpanProcessor(exporter) });
    return { registry, metrics, spans, exporter };
  };

  it('objects without uid, creationTimestamp or with unreadable times are ignored, others still tracked', async () => {
    const { registry, metrics, spans } = setup();
    const t = new PodStartupTracker({ metrics, spans, nodeName: 'node-a', window: new ReportWindow(ReportWindow.startingAt(T - 60 * S), { hold: false }), timeoutMs: 900 * S, namespaceOnHistograms: false });
    const good = startupPod({ name: 'a-1-x', namespace: 'n', uid: 'good', nodeName: 'node-a', t: { created: T, scheduled: T + S, readyToStart: T + 2 * S, started: T + 3 * S, ready: T + 4 * S } }) as unknown as Pod;
    const noUid = structuredClone(good);
    delete noUid.metadata.uid;
    const noTime = structuredClone(good);
    noTime.metadata.uid = 'no-time';
    delete noTime.metadata.creationTimestamp;
    const badTime = structuredClone(good);
    badTime.metadata.uid = 'bad-time';
    badTime.metadata.creationTimestamp = 'yesterday';
    for (const p of [noUid, noTime, badTime, good]) t.onPod(p);
    expect(await sample(registry, 'k8s_pod_startup_duration_seconds', 'k8s_pod_startup_duration_seconds_count')).toBe(1);
    expect(t.tracked).toBe(1);
  });

  it('an event whose involved object is gone (or never seen) changes nothing; a Pulled before its Pulling makes no span', () => {
    const { metrics, spans, exporter } = setup();
    const pods = new PodStartupTracker({ metrics, spans, nodeName: 'node-a', window: new ReportWindow(ReportWindow.startingAt(T), { hold: false }), timeoutMs: 900 * S, namespaceOnHistograms: false });
    const rollouts = new RolloutTracker({ metrics, spans, window: new ReportWindow(ReportWindow.startingAt(T), { hold: false }), timeoutGraceMs: 60 * S });
    const pulls = new ImagePullTracker({ spans, timeoutMs: 900 * S, clock: () => T + 3600 * S });
    const gone = { kind: 'Pod', namespace: 'n', name: 'gone', uid: 'gone-uid', fieldPath: 'spec.containers{app}' };
    for (const sink of [pods, rollouts, pulls]) {
      sink.onEvent(occurrence({ reason: 'Pulled', note: 'Successfully pulled image "x:1" in 1s (1s including waiting)', component: 'kubelet', regarding: gone, at: T + 5 * S }));
      sink.onEvent(occurrence({ reason: 'ScalingReplicaSet', note: 'Scaled up replica set web-1 from 0 to 1', component: 'deployment-controller', regarding: { kind: 'Deployment', name: 'web', uid: 'gone-d' }, at: T }));
    }
    // out of order: the Pulling arrives after its Pulled; it opens a pull that then times out in ERROR
    pulls.onEvent(occurrence({ reason: 'Pulling', note: 'Pulling image "x:1"', component: 'kubelet', regarding: gone, at: T + 4 * S }));
    pulls.sweep();
    expect(exporter.getFinishedSpans().map((s) => [s.name, s.status.code])).toEqual([['container.image_pull', 2]]);
    expect(pods.tracked).toBe(0);
  });
});
