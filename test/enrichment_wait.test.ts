import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { parserByName } from '../agent/enrichment/body_parser.ts';
import { podMetadataConfig } from '../agent/enrichment/config.ts';
import { EnrichStage } from '../agent/enrichment/enrich_stage.ts';
import { SharedPodCache } from '../agent/enrichment/shared_pod_cache.ts';
import { KubeAccess } from '../agent/kube/kube_access.ts';
import { createLogger } from '../agent/log.ts';
import { SelfMetrics } from '../agent/metrics.ts';
import type { LogRecord } from '../agent/record.ts';
import { FakeKubeApiServer, makePod, uid, writeKubeconfig } from '../agent/demo/kube_api_server.ts';
import { metricValue } from './events_harness.ts';
import { waitFor } from './helpers/child_agent.ts';

/**
 * The cause of issue 10's defect 4 on the stage alone: `wait_for_pod` was counted from before the
 * Kubernetes client was even imported, so on a busy node (seconds to load the client) the startup
 * backlog went out without pod metadata, labelled `api_unavailable` though the API never was. The
 * real-API test under CPU load is in test/realk8s/enrichment.ts.
 */

const NODE = 'node-a';
const cleanups: (() => Promise<void> | void)[] = [];
afterEach(async () => {
  for (const c of cleanups.splice(0).reverse()) await c();
});

/** A KubeAccess whose connection takes `delayMs` to resolve, as loading @kubernetes/client-node does under load. */
function slowAccess(kubeconfig: string, delayMs: number): KubeAccess {
  const real = new KubeAccess({ mode: 'kubeconfig', kubeconfig }, createLogger('error'));
  cleanups.push(() => real.close());
  const slow = Object.create(real) as KubeAccess;
  slow.connection = () => new Promise((r) => setTimeout(r, delayMs)).then(() => real.connection());
  return slow;
}

/** The stage in front of a collecting emitter. */
function stageOver(pods: SharedPodCache, metrics: SelfMetrics, waitForPod: string): { stage: EnrichStage; out: LogRecord[] } {
  const out: LogRecord[] = [];
  const stage = new EnrichStage({
    source: 'c',
    inner: { emit: (records, _b, onAccepted) => (out.push(...records), onAccepted(), Promise.resolve()) },
    pods,
    metadata: podMetadataConfig.parse({ wait_for_pod: waitForPod }),
    parser: parserByName('none'),
    timestampFromBody: false,
    metrics,
    log: createLogger('error'),
  });
  return { stage, out };
}

describe('enrichment waits for the pod LIST, not for the agent to start (issue 10, defect 4)', () => {
  it('a connection that takes longer than wait_for_pod to resolve: the backlog waits for the first LIST and goes out enriched', async () => {
    const fake = new FakeKubeApiServer({ token: 't' });
    await fake.start();
    cleanups.push(() => fake.close());
    const dir = mkdtempSync(join(tmpdir(), 'kta-enrich-wait-'));
    cleanups.push(() => rmSync(dir, { recursive: true, force: true }));
    const pod = fake.create('pods', makePod({ uid: uid(), name: 'web-1', namespace: 'shop', nodeName: NODE, labels: { app: 'web' } }));
    const metrics = new SelfMetrics('t');
    const pods = new SharedPodCache({ kube: slowAccess(writeKubeconfig(dir, { server: fake.url, token: 't', insecure: true }), 1500), nodeName: NODE, deletedGraceMs: 60_000, namespaceMetadata: false, metrics, log: createLogger('error') });
    cleanups.push(() => pods.stop());
    const { stage, out } = stageOver(pods, metrics, '500ms');
    const resource = { 'k8s.node.name': NODE, 'k8s.namespace.name': 'shop', 'k8s.pod.name': 'web-1', 'k8s.pod.uid': pod.metadata.uid!, 'k8s.container.name': 'app', 'k8s.container.restart_count': '0' };
    const records: LogRecord[] = Array.from({ length: 10 }, (_, i) => ({ timestamp: new Date().toISOString(), observedTimestamp: new Date().toISOString(), body: `line ${i}`, attributes: {}, resource }));
    let accepted = false;
    await stage.emit(records, 100, () => (accepted = true));
    await waitFor('the backlog out', () => out.length === 10, 10_000, 20);
    expect(accepted).toBe(true);
    expect(out.every((r) => r.resource['k8s.pod.label.app'] === 'web')).toBe(true);
    for (const reason of ['api_unavailable', 'pod_unknown']) expect(await metricValue(metrics, 'telemetry_agent_unenriched_records_total', { source: 'c', reason })).toBe(0);
  });

  it('the first LIST out but not answered within wait_for_pod: the records go out with their path metadata as api_unavailable', async () => {
    const fake = new FakeKubeApiServer({ token: 't' });
    await fake.start();
    cleanups.push(() => fake.close());
    fake.failNext(1, { kind: 'stall' }, { verb: 'list', resource: 'pods' });
    const dir = mkdtempSync(join(tmpdir(), 'kta-enrich-wait-'));
    cleanups.push(() => rmSync(dir, { recursive: true, force: true }));
    const metrics = new SelfMetrics('t');
    const pods = new SharedPodCache({ kube: slowAccess(writeKubeconfig(dir, { server: fake.url, token: 't', insecure: true }), 0), nodeName: NODE, deletedGraceMs: 60_000, namespaceMetadata: false, metrics, log: createLogger('error') });
    cleanups.push(() => pods.stop());
    const { stage, out } = stageOver(pods, metrics, '300ms');
    const resource = { 'k8s.node.name': NODE, 'k8s.namespace.name': 'shop', 'k8s.pod.name': 'web-1', 'k8s.pod.uid': uid(), 'k8s.container.name': 'app' };
    await stage.emit([{ timestamp: '', observedTimestamp: '', body: 'x', attributes: {}, resource }], 1, () => {});
    await waitFor('sent unenriched', () => out.length === 1, 5000, 20);
    expect(await metricValue(metrics, 'telemetry_agent_unenriched_records_total', { source: 'c', reason: 'api_unavailable' })).toBe(1);
  });
});
