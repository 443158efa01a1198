import { spawnSync } from 'node:child_process';
import { describe, expect, it } from 'vitest';
import { EventMetrics, ownerKind, pulledSeconds } from '../agent/cluster/event_metrics.ts';
import { EventRules } from '../agent/cluster/event_rules.ts';
import type { EventOccurrence } from '../agent/cluster/observation.ts';
import { parseConfig } from '../agent/config/load.ts';
import { SelfMetrics } from '../agent/metrics.ts';
import { kubernetesEventsConfig } from '../agent/sources/kubernetes_events/config.ts';
import { requireTool } from './helpers/tools.ts';

function occurrence(o: Partial<EventOccurrence> & { reason: string; component: string }): EventOccurrence {
  return {
    uid: 'e1',
    namespace: 'shop',
    name: 'web-1.1',
    type: 'Normal',
    note: '',
    regarding: { kind: 'Pod', name: 'web-1', namespace: 'shop' },
    delta: 1,
    occurrences: 1,
    firstSeenMs: 0,
    lastSeenMs: 0,
    ...o,
  };
}

const noLookup = { get: () => Promise.resolve(undefined) };

function eventMetrics(overrides: Partial<ConstructorParameters<typeof EventMetrics>[1]> = {}) {
  const self = new SelfMetrics('test');
  const m = new EventMetrics(self.registry, {
    includeNamespaces: [],
    excludeNamespaces: [],
    maxReasonsPerComponent: 100,
    maxComponents: 100,
    seriesTtlMs: 24 * 3600_000,
    lookup: noLookup,
    ...overrides,
  });
  return { self, m };
}

/** Series lines of the k8s_* metrics in the exposition text. */
async function k8sSeries(self: SelfMetrics): Promise<string[]> {
  return (await self.registry.metrics()).split('\n').filter((l) => l.startsWith('k8s_'));
}

describe('event metrics: bounded label values (span-and-metric-model.md §1.2)', () => {
  it('10,000 distinct pods churned across 50 namespaces stay within the stated series bound', async () => {
    const { self, m } = eventMetrics();
    const kubelet = ['Scheduled', 'Pulling', 'Pulled', 'Created', 'Started', 'Killing', 'BackOff', 'Unhealthy'];
    for (let i = 0; i < 10_000; i++) {
      const ns = `team-${i % 50}`;
      const regarding = { kind: 'Pod', name: `app-${i}-${Math.random().toString(36).slice(2)}`, namespace: ns, uid: `uid-${i}` };
      for (const reason of kubelet) {
        const note = reason === 'Pulled' ? `Successfully pulled image "img:${i}" in ${(i % 90) / 10}s (1s including waiting). Image size: ${i} bytes.` : `${reason} for ${regarding.name}`;
        m.onEvent(occurrence({ uid: `${i}-${reason}`, namespace: ns, regarding, reason, note, component: reason === 'Scheduled' ? 'default-scheduler' : 'kubelet', type: reason === 'BackOff' || reason === 'Unhealthy' ? 'Warning' : 'Normal' }));
      }
      // per-instance CSI component names and an operator inventing reasons: normalised and capped
      m.onEvent(occurrence({ namespace: ns, regarding, reason: 'Provisioning', component: `ebs.csi.aws.com_ebs-csi-controller-${i}_${i}-uuid` }));
      m.onEvent(occurrence({ namespace: ns, regarding, reason: `Reconcile-${i}`, component: 'wild-operator', type: `Type${i}` }));
    }
    await m.settled();
    const lines = await k8sSeries(self);
    const events = lines.filter((l) => l.startsWith('k8s_events_total{'));
    // 50 namespaces x (8 kubelet/scheduler reasons + 1 CSI reason + wild-operator's 100 kept reasons and `other`)
    // is the worst case; the 100 kept reasons each came from 1-2 namespaces only
    expect(events.length).toBeLessThanOrEqual(50 * (8 + 1) + 100 * 2 + 50);
    expect(events.filter((l) => l.includes('component="wild-operator"') && l.includes('reason="other"'))).toHaveLength(50);
    expect(events.some((l) => l.includes('_ebs-csi'))).toBe(false);
    expect(events.every((l) => /type="(Normal|Warning|other)"/.test(l))).toBe(true);
    expect(lines.filter((l) => l.startsWith('k8s_image_pull_duration_seconds'))).toHaveLength(12 + 1 + 2);
    // the bound stated in the README for this cluster shape
    expect(lines.length).toBeLessThanOrEqual(1000);
    expect(lines.some((l) => /app-\d+|uid-\d+|img:/.test(l))).toBe(false);
  });

  it('namespace allow and drop lists', async () => {
    const { self, m } = eventMetrics({ includeNamespaces: ['prod-*', ''], excludeNamespaces: ['prod-sandbox'] });
    for (const ns of ['prod-a', 'prod-sandbox', 'dev', '']) m.onEvent(occurrence({ namespace: ns, reason: 'Started', component: 'kubelet' }));
    const events = (await k8sSeries(self)).filter((l) => l.startsWith('k8s_events_total{'));
    expect(events.map((l) => /namespace="([^"]*)"/.exec(l)![1]).sort()).toEqual(['', 'prod-a']);
  });

  it('label sets not incremented for series_ttl disappear from /metrics', async () => {
    let now = 1_000_000;
    const { self, m } = eventMetrics({ seriesTtlMs: 3600_000, now: () => now });
    m.onEvent(occurrence({ namespace: 'gone', reason: 'Started', component: 'kubelet' }));
    now += 1800_000;
    m.onEvent(occurrence({ namespace: 'live', reason: 'Started', component: 'kubelet' }));
    now += 1900_000;
    m.sweep();
    const events = (await k8sSeries(self)).filter((l) => l.startsWith('k8s_events_total{'));
    expect(events).toEqual(['k8s_events_total{namespace="live",kind="Pod",reason="Started",type="Normal",component="kubelet"} 1']);
  });

  it('/metrics with the event metrics passes `promtool check metrics`', async (ctx) => {
    const promtool = requireTool(ctx, 'promtool');
    const { self, m } = eventMetrics({
      lookup: {
        get: (kind) =>
          Promise.resolve(
            kind === 'Pod'
              ? { metadata: { name: 'p', labels: { 'pod-template-hash': 'x' }, ownerReferences: [{ apiVersion: 'apps/v1', kind: 'ReplicaSet', name: 'r', uid: 'u', controller: true }] }, spec: { volumes: [{ name: 'c', secret: {} }] } }
              : { metadata: { name: 'c', annotations: { 'volume.kubernetes.io/storage-provisioner': 'csi.example' } }, spec: { storageClassName: 'fast' } },
          ),
      },
    });
    m.onEvent(occurrence({ reason: 'Pulled', component: 'kubelet', note: 'Successfully pulled image "a" in 1.2s (1.2s including waiting). Image size: 1 bytes.' }));
    m.onEvent(occurrence({ reason: 'FailedScheduling', type: 'Warning', component: 'default-scheduler' }));
    m.onEvent(occurrence({ reason: 'ProvisioningFailed', type: 'Warning', component: 'csi.example_h_u', regarding: { kind: 'PersistentVolumeClaim', name: 'c', namespace: 'shop' } }));
    m.onEvent(occurrence({ reason: 'FailedMount', type: 'Warning', component: 'kubelet', note: 'MountVolume.SetUp failed for volume "c" : secret "s" not found' }));
    m.onEvent(occurrence({ reason: 'TaintManagerEviction', component: 'taint-eviction-controller', note: 'Marking for deletion Pod shop/web-1' }));
    new EventRules([{ kind: 'CephCluster', reason: '*', component: 'rook-*', type: '*', counter: { name: 'rook_events_total', help: 'Rook events.', labels: ['reason'] }, span_event: false }], self.registry, []).onEvent(
      occurrence({ reason: 'ReconcileFailed', component: 'rook-ceph-operator', regarding: { kind: 'CephCluster', name: 'ceph' } }),
    );
    await m.settled();
    const text = await self.registry.metrics();
    for (const name of ['k8s_events_total', 'k8s_image_pull_duration_seconds', 'k8s_pod_startup_failures_total', 'k8s_pvc_provisioning_failures_total', 'k8s_volume_mount_failures_total', 'k8s_pod_disruptions_total', 'rook_events_total']) {
      expect(text).toMatch(new RegExp(`^${name}(_count|_bucket)?\\{[^}]*\\} [1-9]`, 'm'));
    }
    const r = spawnSync(promtool, ['check', 'metrics'], { input: text, encoding: 'utf8', timeout: 30_000 });
    expect(r.error).toBeUndefined();
    expect(r.status, `promtool check metrics exited ${r.status}:\n${r.stdout}${r.stderr}`).toBe(0);
  });

  it('parses the pull time of Pulled messages across kubelet versions; cached images are not pulls', () => {
    expect(pulledSeconds('Successfully pulled image "nginx" in 1.5s (1.5s including waiting). Image size: 1 bytes.')).toBe(1.5);
    expect(pulledSeconds('Successfully pulled image "nginx" in 812ms (3s including waiting)')).toBeCloseTo(0.812);
    expect(pulledSeconds('Successfully pulled image "big" in 2m3.25s')).toBeCloseTo(123.25);
    expect(pulledSeconds('Container image "nginx" already present on machine')).toBeUndefined();
  });

  it('owner kind of a pod: a ReplicaSet with pod-template-hash is a Deployment; no pod is unknown', () => {
    const owner = (kind: string) => [{ apiVersion: 'apps/v1', kind, name: 'x', uid: 'u', controller: true }];
    expect(ownerKind({ metadata: { labels: { 'pod-template-hash': 'h' }, ownerReferences: owner('ReplicaSet') } })).toBe('Deployment');
    expect(ownerKind({ metadata: { ownerReferences: owner('StatefulSet') } })).toBe('StatefulSet');
    expect(ownerKind({ metadata: {} })).toBe('none');
    expect(ownerKind(undefined)).toBe('unknown');
  });
});

describe('user rules (issue 5 part 5)', () => {
  it('map kind/reason/component globs to a counter with chosen labels and to span events, without code', () => {
    const self = new SelfMetrics('test');
    const spanEvents: EventOccurrence[] = [];
    const cfg = kubernetesEventsConfig.parse({
      type: 'kubernetes_events',
      rules: [
        { kind: 'CephCluster', reason: 'Reconcile*', component: 'rook-ceph-*', counter: { name: 'rook_reconcile_total', labels: ['namespace', 'reason'] } },
        { kind: 'Volume', reason: 'Degraded', component: 'longhorn-*', span_event: true },
      ],
    });
    const rules = new EventRules(cfg.rules, self.registry, [{ onSpanEvent: (o) => spanEvents.push(o) }]);
    rules.onEvent(occurrence({ reason: 'ReconcileFailed', component: 'rook-ceph-operator', namespace: 'rook-ceph', delta: 3, regarding: { kind: 'CephCluster', name: 'c' } }));
    rules.onEvent(occurrence({ reason: 'ReconcileSucceeded', component: 'rook-ceph-operator', namespace: 'rook-ceph', regarding: { kind: 'CephCluster', name: 'c' } }));
    rules.onEvent(occurrence({ reason: 'ReconcileFailed', component: 'other-operator', regarding: { kind: 'CephCluster', name: 'c' } }));
    rules.onEvent(occurrence({ reason: 'Degraded', component: 'longhorn-manager', regarding: { kind: 'Volume', name: 'v' } }));
    return self.registry.metrics().then((text) => {
      expect(text.split('\n').filter((l) => l.startsWith('rook_reconcile_total'))).toEqual([
        'rook_reconcile_total{namespace="rook-ceph",reason="ReconcileFailed"} 3',
        'rook_reconcile_total{namespace="rook-ceph",reason="ReconcileSucceeded"} 1',
      ]);
      expect(spanEvents.map((o) => o.reason)).toEqual(['Degraded']);
    });
  });

  it('bad rules and lease timings are config errors naming the key', () => {
    const base = 'sources:\n  cluster:\n    type: kubernetes_events\n';
    expect(() => parseConfig(`${base}    rules: [{ reason: Failed }]\n`, 'agent.yaml', {})).toThrow(/sources\.cluster\.rules\[0\]: a rule needs a counter, span_event: true, or both/s);
    expect(() => parseConfig(`${base}    rules: [{ counter: { name: "bad name" } }]\n`, 'agent.yaml', {})).toThrow(/sources\.cluster\.rules\[0\]\.counter\.name: expected a Prometheus metric name/s);
    expect(() => parseConfig(`${base}    rules: [{ counter: { name: x_total, labels: [pod] } }]\n`, 'agent.yaml', {})).toThrow(/sources\.cluster\.rules\[0\]\.counter\.labels\[0\]: expected one of/);
    expect(() => parseConfig(`${base}    lease_duration: 10s\n    renew_deadline: 10s\n`, 'agent.yaml', {})).toThrow(/sources\.cluster\.renew_deadline: must be shorter than lease_duration/s);
    const ok = parseConfig(`${base}    leader_election: false\n`, 'agent.yaml', {});
    expect(ok.sources.cluster).toMatchObject({ type: 'kubernetes_events', leader_election: false, lease_duration: 15_000, renew_deadline: 10_000, retry_period: 2000 });
  });
});
