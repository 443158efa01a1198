import { afterEach, describe, expect, it } from 'vitest';
import type { SharedPodCache } from '../agent/enrichment/shared_pod_cache.ts';
import { FakeKubeApiServer, makePod, uid, writeKubeconfig } from '../agent/demo/kube_api_server.ts';
import { AgentHarness, criLine, criTime, OUTPUT, SOURCE, type ConfigValue, type ContainerLog, type OutRecord } from './helpers/agent_harness.ts';
import { populateNodePods } from './helpers/node_pods_fixture.ts';
import { startupPod } from '../agent/demo/cluster_objects.ts';

/**
 * Enrichment of container records from the Kubernetes API, end to end: the real agent over
 * generated CRI log files, against the protocol-faithful fake API server.
 */

const NODE = 'test-node';
const cleanups: (() => Promise<void> | void)[] = [];
afterEach(async () => {
  for (const c of cleanups.splice(0).reverse()) await c();
});

async function setup(
  opts: {
    source?: Record<string, ConfigValue>;
    kubernetes?: Record<string, string>;
    fake?: ConstructorParameters<typeof FakeKubeApiServer>[0];
    moreSources?: Record<string, Record<string, ConfigValue>>;
  } = {},
) {
  const fake = new FakeKubeApiServer({ token: 'tok', ...opts.fake });
  await fake.start();
  cleanups.push(() => fake.close());
  const h = new AgentHarness({ source: opts.source, kubernetes: { mode: 'kubeconfig', kubeconfig: '', ...opts.kubernetes }, moreSources: opts.moreSources });
  cleanups.push(() => h.stop());
  const kubeconfig = writeKubeconfig(h.tree.root, { server: fake.url, token: 'tok', insecure: true });
  if (!opts.kubernetes?.kubeconfig) (h as unknown as { kubernetes: Record<string, string> }).kubernetes.kubeconfig = kubeconfig;
  return { fake, h };
}

function podCacheOf(h: AgentHarness): SharedPodCache {
  return (h.agent as unknown as { podCache: SharedPodCache }).podCache;
}

/** Lines `<tag>-0` … `<tag>-(n-1)` as CRI, F-tagged on stdout. */
function lines(tag: string, n: number, from = 0): string {
  let s = '';
  for (let i = from; i < from + n; i++) s += criLine(`${tag}-${i}`, { time: criTime(i + 1) });
  return s;
}

function pathResource(c: ContainerLog): Record<string, string> {
  return {
    'k8s.node.name': NODE,
    'k8s.namespace.name': c.namespace,
    'k8s.pod.name': c.pod,
    'k8s.pod.uid': c.uid,
    'k8s.container.name': c.container,
    'k8s.container.restart_count': '0',
    'container.id': c.id,
  };
}

function bodiesOf(records: OutRecord[], prefix: string): OutRecord[] {
  return records.filter((r) => typeof r.body === 'string' && r.body.startsWith(prefix));
}

describe('enrichment against the API', () => {
  it('gives every record of 200 pods of mixed owners its pod metadata', async () => {
    // A long wait: records go out as soon as their pod and owners are known, however busy the machine.
    const { fake, h } = await setup({ source: { kubernetes_metadata: { wait_for_pod: '30s' } } });
    const pods = populateNodePods(fake, NODE, 200);
    const byFile = new Map<string, { log: ContainerLog; expected: Record<string, unknown> }>();
    for (const [i, p] of pods.entries()) {
      const log = h.tree.container({ namespace: p.pod.metadata.namespace, pod: p.pod.metadata.name, uid: p.logUid, content: lines(`p${i}`, 3) });
      byFile.set(`p${i}`, { log, expected: { ...pathResource(log), ...p.expected } });
    }
    await h.start();
    const records = await h.waitForLines(600, 30_000);
    expect(records).toHaveLength(600);
    const kinds = new Set<string>();
    for (const r of records) {
      const tag = (r.body as string).split('-')[0]!;
      const want = byFile.get(tag)!;
      expect(r.resource, `record ${String(r.body)}`).toEqual(want.expected);
      for (const k of Object.keys(r.resource)) if (/^k8s\.(deployment|statefulset|daemonset|job|cronjob|replicaset)\.name$/.test(k)) kinds.add(k);
    }
    expect([...kinds].sort()).toEqual(['k8s.cronjob.name', 'k8s.daemonset.name', 'k8s.deployment.name', 'k8s.job.name', 'k8s.replicaset.name', 'k8s.statefulset.name']);
    // static pods: the folder carries the config hash, the record the mirror pod's uid
    const etcd = records.find((r) => r.resource['k8s.pod.name'] === `etcd-${NODE}`)!;
    expect(etcd.resource['k8s.pod.uid']).not.toBe(pods.find((p) => p.pod.metadata.name === `etcd-${NODE}`)!.logUid);
    expect(await h.metric('telemetry_agent_unenriched_records_total')).toBe(0); // present at 0 (issue 13: label sets pre-created), never incremented
    // API load: one node-scoped LIST and WATCH of pods, one GET per ReplicaSet/Job referenced here
    const podLists = fake.requests.filter((r) => r.resource === 'pods' && r.verb === 'list');
    expect(podLists.every((r) => r.query.get('fieldSelector') === `spec.nodeName=${NODE}`)).toBe(true);
    expect(fake.count({ verb: 'get', resource: 'replicasets' })).toBe(14);
    expect(fake.count({ verb: 'get', resource: 'jobs' })).toBe(16);
    expect(fake.count({ resource: 'namespaces' })).toBe(0);
  }, 60_000);

  it('adds selected annotations and namespace labels, with include and exclude globs', async () => {
    const { fake, h } = await setup({
      source: {
        kubernetes_metadata: {
          wait_for_pod: '30s',
          pod_labels: { include: ['app*', 'team'], exclude: ['app.kubernetes.io/*'] },
          pod_annotations: { include: ['example.com/*'] },
          namespace_labels: { include: ['team'] },
        },
      },
    });
    fake.create('namespaces', { metadata: { name: 'shop', labels: { team: 'checkout', env: 'prod' } } });
    const pod = fake.create(
      'pods',
      makePod({
        uid: uid(),
        name: 'web-1',
        namespace: 'shop',
        nodeName: NODE,
        labels: { app: 'web', 'app.kubernetes.io/name': 'web', team: 'a', tier: 'front' },
        annotations: { 'example.com/owner': 'alice', 'kubectl.kubernetes.io/last-applied-configuration': '{}' },
      }),
    );
    h.tree.container({ namespace: 'shop', pod: 'web-1', uid: pod.metadata.uid!, content: lines('a', 2) });
    await h.start();
    const records = await h.waitForLines(2);
    const r = records[0]!.resource;
    expect(Object.keys(r).filter((k) => k.startsWith('k8s.pod.label.') || k.startsWith('k8s.pod.annotation.') || k.startsWith('k8s.namespace.label.')).sort()).toEqual([
      'k8s.namespace.label.team',
      'k8s.pod.annotation.example.com/owner',
      'k8s.pod.label.app',
      'k8s.pod.label.team',
    ]);
    expect(r['k8s.namespace.label.team']).toBe('checkout');
    expect(fake.count({ verb: 'list', resource: 'namespaces' })).toBeGreaterThan(0);
  });

  it.each([
    ['500', { kind: 'status', status: 500 } as const],
    ['403', { kind: 'status', status: 403, reason: 'Forbidden', message: 'pods is forbidden' } as const],
  ])('keeps the log path flowing while the API answers %s, and enriches again once it is back', async (_name, fault) => {
    const { fake, h } = await setup();
    fake.failNext(1_000_000, fault);
    const pod = fake.create('pods', makePod({ uid: uid(), name: 'web-1', namespace: 'shop', nodeName: NODE }));
    const c = h.tree.container({ namespace: 'shop', pod: 'web-1', uid: pod.metadata.uid!, content: lines('down', 2000) });
    await h.start();
    // everything goes out with the path metadata while the API still refuses, counted
    const records = await h.waitForLines(2000);
    expect(fake.count({ resource: 'pods', verb: 'watch' })).toBe(0);
    for (const r of records) expect(r.resource).toEqual(pathResource(c));
    expect(await h.metric('telemetry_agent_unenriched_records_total', { source: SOURCE, reason: 'api_unavailable' })).toBe(2000);
    expect(await h.metric('telemetry_agent_output_records_total', { output: OUTPUT, status: 'sent' })).toBe(2000);

    fake.clearFaults();
    await h.waitFor('the pod watch to open', () => fake.activeWatches > 0, 20_000);
    const { appendFileSync } = await import('node:fs');
    appendFileSync(c.logPath, lines('up', 100));
    const all = await h.waitForLines(2100);
    const up = bodiesOf(all, 'up-');
    expect(up).toHaveLength(100);
    for (const r of up) expect(r.resource['container.image.name']).toBe('registry.example.com/shop/app');
  }, 60_000);

  it('sends records with path metadata when the API hangs, after wait_for_pod', async () => {
    const { fake, h } = await setup({ source: { kubernetes_metadata: { wait_for_pod: '300ms' } } });
    fake.failNext(1_000_000, { kind: 'hang' });
    const c = h.tree.container({ namespace: 'shop', pod: 'web-1', content: lines('hang', 50) });
    await h.start();
    const records = await h.waitForLines(50);
    for (const r of records) expect(r.resource).toEqual(pathResource(c));
    expect(await h.metric('telemetry_agent_unenriched_records_total', { source: SOURCE, reason: 'api_unavailable' })).toBe(50);
  });

  it('recovers from a watch stream broken mid-chunk and from 410 Gone, and enriches pods created meanwhile', async () => {
    const { fake, h } = await setup({ fake: { chunkBytes: 7, historySize: 5, expiredAs: 'status' }, source: { kubernetes_metadata: { wait_for_pod: '20s' } } });
    const first = fake.create('pods', makePod({ uid: uid(), name: 'web-1', namespace: 'shop', nodeName: NODE }));
    h.tree.container({ namespace: 'shop', pod: 'web-1', uid: first.metadata.uid!, content: lines('one', 3) });
    await h.start();
    await h.waitForLines(3);
    await h.waitFor('the pod watch to open', () => fake.activeWatches > 0);

    fake.breakWatches();
    const second = fake.create('pods', makePod({ uid: uid(), name: 'web-2', namespace: 'shop', nodeName: NODE }));
    h.tree.container({ namespace: 'shop', pod: 'web-2', uid: second.metadata.uid!, content: lines('two', 3) });
    const afterBreak = await h.waitForLines(6, 30_000);
    expect(bodiesOf(afterBreak, 'two-').map((r) => r.resource['container.image.name'])).toEqual(Array(3).fill('registry.example.com/shop/app'));

    // 410: the watch's resourceVersion falls out of the (5-event) history while it is cut
    await h.waitFor('the pod watch to reopen', () => fake.activeWatches > 0, 30_000);
    fake.breakWatches();
    for (let i = 0; i < 8; i++) fake.create('pods', makePod({ uid: uid(), name: `filler-${i}`, namespace: 'other', nodeName: `${NODE}-b` }));
    const third = fake.create('pods', makePod({ uid: uid(), name: 'web-3', namespace: 'shop', nodeName: NODE }));
    fake.compact();
    h.tree.container({ namespace: 'shop', pod: 'web-3', uid: third.metadata.uid!, content: lines('three', 3) });
    const after410 = await h.waitForLines(9, 30_000);
    expect(bodiesOf(after410, 'three-').map((r) => r.resource['container.image.name'])).toEqual(Array(3).fill('registry.example.com/shop/app'));
    expect(fake.requests.some((r) => r.resource === 'pods' && r.verb === 'watch' && r.status === 410)).toBe(true);
    expect(await h.metric('telemetry_agent_kube_watch_restarts_total', { resource: 'pods', reason: 'expired' })).toBeGreaterThanOrEqual(1);
    expect(await h.metric('telemetry_agent_unenriched_records_total')).toBe(0); // present at 0 (issue 13: label sets pre-created), never incremented
  }, 90_000);

  it('holds records of a pod created after its logs started until the pod is known', async () => {
    const { fake, h } = await setup({ source: { kubernetes_metadata: { wait_for_pod: '10s' } } });
    fake.create('pods', makePod({ uid: uid(), name: 'other', namespace: 'shop', nodeName: NODE }));
    const podUid = uid();
    h.tree.container({ namespace: 'shop', pod: 'late', uid: podUid, content: lines('late', 20) });
    await h.start();
    await h.waitFor('the pod watch to open', () => fake.activeWatches > 0);
    expect(h.records()).toHaveLength(0);
    fake.create('pods', makePod({ uid: podUid, name: 'late', namespace: 'shop', nodeName: NODE }));
    const records = await h.waitForLines(20);
    expect(records.map((r) => r.body)).toEqual(Array.from({ length: 20 }, (_, i) => `late-${i}`));
    for (const r of records) expect(r.resource['container.image.name']).toBe('registry.example.com/shop/app');
    expect(await h.metric('telemetry_agent_unenriched_records_total')).toBe(0); // present at 0 (issue 13: label sets pre-created), never incremented
  });

  it('enriches the last logs of a deleted pod during pod_grace_period, and counts them after it', async () => {
    const { fake, h } = await setup({ kubernetes: { pod_grace_period: '3s' }, source: { kubernetes_metadata: { wait_for_pod: '200ms' } } });
    const pod = fake.create('pods', makePod({ uid: uid(), name: 'gone', namespace: 'shop', nodeName: NODE, labels: { app: 'gone' } }));
    const c = h.tree.container({ namespace: 'shop', pod: 'gone', uid: pod.metadata.uid!, content: lines('alive', 2) });
    await h.start();
    await h.waitForLines(2);
    fake.delete('pods', 'shop', 'gone');
    await h.waitFor('the agent to see the deletion', () => podCacheOf(h).cache!.deletedAt(pod.metadata.uid!) !== undefined);
    const { appendFileSync } = await import('node:fs');
    appendFileSync(c.logPath, lines('last', 2, 2));
    const records = await h.waitForLines(4);
    for (const r of bodiesOf(records, 'last-')) expect(r.resource['k8s.pod.label.app']).toBe('gone');
    await h.waitFor('the grace period to pass', () => podCacheOf(h).cache!.byUid(pod.metadata.uid!) === undefined);
    appendFileSync(c.logPath, lines('later', 2, 4));
    const later = bodiesOf(await h.waitForLines(6), 'later-');
    for (const r of later) expect(r.resource).toEqual(pathResource(c));
    expect(await h.metric('telemetry_agent_unenriched_records_total', { source: SOURCE, reason: 'pod_unknown' })).toBe(2);
  });

  it('runs without pod metadata, saying why, when the kubeconfig names a missing file', async () => {
    const { h } = await setup({ kubernetes: { kubeconfig: '/nonexistent/kubeconfig' } });
    const c = h.tree.container({ namespace: 'shop', pod: 'web-1', content: lines('x', 5) });
    await h.start();
    const records = await h.waitForLines(5);
    for (const r of records) expect(r.resource).toEqual(pathResource(c));
    expect(h.logs.join('')).toContain('kubeconfig /nonexistent/kubeconfig does not exist');
    expect(await h.metric('telemetry_agent_unenriched_records_total', { source: SOURCE, reason: 'api_unavailable' })).toBe(5);
  });

  it('shares its one pod LIST and WATCH with the pod startup tracker (the base config runs both): one of each per node agent, startups and failures still measured', async () => {
    const { fake, h } = await setup({
      source: { kubernetes_metadata: { wait_for_pod: '30s' } },
      moreSources: { pods: { type: 'kubernetes_events', watch_events: false, signals: { trackers: ['pod_startup'], spans: false } } },
    });
    const now = Date.now();
    // a pod older than the agent, already Ready: its startup was reported by whoever ran before
    const old = fake.create('pods', startupPod({ name: 'old-1-a', namespace: 'shop', uid: uid(), nodeName: NODE, t: { created: now - 600_000, scheduled: now - 599_000, readyToStart: now - 598_000, started: now - 595_000, ready: now - 590_000 } }));
    const log = h.tree.container({ namespace: 'shop', pod: old.metadata.name!, uid: old.metadata.uid!, content: lines('old', 3) });
    await h.start();
    const records = await h.waitForLines(3, 30_000);
    expect(records.map((r) => r.resource['k8s.pod.name'])).toEqual([log.pod, log.pod, log.pod]);

    // created after the start: scheduled, containers started 3 s later, Ready 2 s after that
    const t0 = Math.floor(Date.now() / 1000) * 1000 + 1000;
    const web = { name: 'web-1-a', namespace: 'shop', uid: uid(), nodeName: NODE };
    fake.create('pods', startupPod({ ...web, t: { created: t0, scheduled: t0 + 1000 } }));
    const stuck = startupPod({ name: 'stuck-1-a', namespace: 'shop', uid: uid(), nodeName: NODE, t: { created: t0, scheduled: t0 + 1000, readyToStart: t0 + 2000, waiting: { reason: 'ImagePullBackOff', message: 'Back-off pulling image' } } });
    fake.create('pods', stuck);
    const ready = startupPod({ ...web, t: { created: t0, scheduled: t0 + 1000, readyToStart: t0 + 2000, started: t0 + 4000, ready: t0 + 6000 } });
    fake.update('pods', ready);
    await h.waitForMetric('k8s_pod_startup_duration_seconds_count', {}, 1);
    expect(await h.metric('k8s_pod_startup_duration_seconds_sum')).toBe(6);
    expect(await h.metric('k8s_pod_startup_stage_duration_seconds_sum', { stage: 'container_start' })).toBe(2); // conditions and container states survive the cache's slimming
    await h.waitForMetric('k8s_pod_startup_failures_total', { reason: 'ImagePull' }, 1);

    const pods = fake.requests.filter((r) => r.resource === 'pods');
    expect(pods.filter((r) => r.verb === 'list')).toHaveLength(1);
    expect(pods.filter((r) => r.verb === 'watch')).toHaveLength(1);
    expect(pods.every((r) => r.query.get('fieldSelector') === `spec.nodeName=${NODE}`)).toBe(true);
  }, 60_000);
});
