import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, afterEach, describe, expect, it } from 'vitest';
import { resolveConnection } from '../agent/kube/connection.ts';
import { PodCache, type PodCacheOptions, type WorkloadOwners } from '../agent/kube/pod_cache.ts';
import { createLogger } from '../agent/log.ts';
import { SelfMetrics } from '../agent/metrics.ts';
import {
  FakeKubeApiServer,
  makeJob,
  makeNamespace,
  makePod,
  makeReplicaSet,
  uid,
  writeKubeconfig,
  type FakeKubeApiServerOptions,
  type FakeObject,
} from '../agent/demo/kube_api_server.ts';
import { waitFor } from './helpers/child_agent.ts';

const dir = mkdtempSync(join(tmpdir(), 'kta-kube-pods-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));
const cleanups: (() => Promise<void> | void)[] = [];
afterEach(async () => {
  for (const c of cleanups.splice(0).reverse()) await c();
});

let seq = 0;
const NODE = 'node-a';

async function setup(fakeOpts: FakeKubeApiServerOptions = {}, opts: Partial<PodCacheOptions> = {}, start = true) {
  const fake = new FakeKubeApiServer({ token: 'tok', ...fakeOpts });
  await fake.start();
  const logs: string[] = [];
  const log = createLogger('debug', (l) => void logs.push(l));
  const file = writeKubeconfig(dir, { server: fake.url, token: 'tok', insecure: true }, `kubeconfig-${++seq}`);
  const conn = (await resolveConnection({ mode: 'kubeconfig', kubeconfig: file, log }))!;
  const metrics = new SelfMetrics('test');
  const cache = new PodCache(
    {
      connection: conn,
      nodeName: NODE,
      log,
      watch: { backoff: { initialMs: 20, maxMs: 200 } },
      ownerLookups: { retry: { initialMs: 20, maxMs: 200 } },
      ...opts,
    },
    metrics,
  );
  cleanups.push(async () => {
    await cache.stop();
    conn.close();
    await fake.close();
  });
  if (start) cache.start();
  return { fake, cache, metrics, logs };
}

interface Expected {
  pod: FakeObject;
  owners: WorkloadOwners;
}

/**
 * 200 pods on node-a as a real cluster has them: Deployments through ReplicaSets (one mid-rollout
 * with two ReplicaSets), StatefulSets, DaemonSets, Jobs of CronJobs, a Job of its own, bare pods and
 * static pods' mirror pods; plus pods, ReplicaSets and Jobs elsewhere in the cluster.
 */
function populate(fake: FakeKubeApiServer): { expected: Expected[]; referencedRs: number; referencedJobs: number; mirrorHash: string } {
  const expected: Expected[] = [];
  const add = (pod: FakeObject, owners: WorkloadOwners) => expected.push({ pod: fake.create('pods', pod), owners });
  for (const ns of ['shop', 'payments', 'search', 'monitoring', 'kube-system', 'batch']) fake.create('namespaces', makeNamespace(ns, { team: `${ns}-team` }));
  let referencedRs = 0;
  // Deployments: 12 of them, 8 pods each on this node; "checkout" is mid-rollout (two ReplicaSets)
  for (let d = 0; d < 12; d++) {
    const ns = ['shop', 'payments', 'search'][d % 3];
    const dep = { name: d === 0 ? 'checkout' : `svc-${d}`, uid: uid() };
    const hashes = d === 0 ? ['5f7c9d8b4', '6b8d7f9c5'] : [`7d4b9c${d}f8`];
    for (const [h, hash] of hashes.entries()) {
      const rs = fake.create('replicasets', makeReplicaSet(ns, `${dep.name}-${hash}`, dep));
      referencedRs++;
      const n = d === 0 ? 4 : 8;
      for (let i = 0; i < n; i++) {
        const owner = { apiVersion: 'apps/v1', kind: 'ReplicaSet', name: rs.metadata.name, uid: rs.metadata.uid! };
        add(makePod({ name: `${rs.metadata.name}-${h}x${i}q`, namespace: ns, nodeName: NODE, labels: { app: dep.name, 'pod-template-hash': hash }, owner }), {
          controller: { kind: 'ReplicaSet', name: rs.metadata.name, uid: rs.metadata.uid! },
          replicaset: rs.metadata.name,
          deployment: dep.name,
        });
      }
    }
  }
  // a ReplicaSet without a Deployment (created directly)
  const lonely = fake.create('replicasets', makeReplicaSet('shop', 'lonely-rs', undefined));
  referencedRs++;
  for (let i = 0; i < 3; i++) {
    add(makePod({ name: `lonely-rs-${i}`, namespace: 'shop', nodeName: NODE, owner: { apiVersion: 'apps/v1', kind: 'ReplicaSet', name: 'lonely-rs', uid: lonely.metadata.uid! } }), {
      controller: { kind: 'ReplicaSet', name: 'lonely-rs', uid: lonely.metadata.uid! },
      replicaset: 'lonely-rs',
    });
  }
  // StatefulSets: 3 x 10
  for (const [s, ns] of ['search', 'payments', 'shop'].entries()) {
    const sts = { apiVersion: 'apps/v1', kind: 'StatefulSet', name: `db-${s}`, uid: uid() };
    for (let i = 0; i < 10; i++) {
      add(makePod({ name: `db-${s}-${i}`, namespace: ns, nodeName: NODE, owner: sts }), { controller: { kind: sts.kind, name: sts.name, uid: sts.uid }, statefulset: sts.name });
    }
  }
  // DaemonSets: one pod each on this node
  for (const name of ['kube-proxy', 'node-exporter', 'fluent-bit', 'csi-node', 'cilium']) {
    const ds = { apiVersion: 'apps/v1', kind: 'DaemonSet', name, uid: uid() };
    add(makePod({ name: `${name}-x7k2p`, namespace: name === 'node-exporter' ? 'monitoring' : 'kube-system', nodeName: NODE, owner: ds }), {
      controller: { kind: 'DaemonSet', name, uid: ds.uid },
      daemonset: name,
    });
  }
  // Jobs of CronJobs, and one Job of its own
  let referencedJobs = 0;
  const cron = { name: 'nightly-report', uid: uid() };
  for (let j = 0; j < 15; j++) {
    const job = fake.create('jobs', makeJob('batch', `nightly-report-2940${j}0`, cron));
    referencedJobs++;
    add(makePod({ name: `${job.metadata.name}-abcd${j}`, namespace: 'batch', nodeName: NODE, owner: { apiVersion: 'batch/v1', kind: 'Job', name: job.metadata.name, uid: job.metadata.uid! }, phase: 'Succeeded' }), {
      controller: { kind: 'Job', name: job.metadata.name, uid: job.metadata.uid! },
      job: job.metadata.name,
      cronjob: 'nightly-report',
    });
  }
  const migrate = fake.create('jobs', makeJob('shop', 'db-migrate', undefined));
  referencedJobs++;
  add(makePod({ name: 'db-migrate-q8z2x', namespace: 'shop', nodeName: NODE, owner: { apiVersion: 'batch/v1', kind: 'Job', name: 'db-migrate', uid: migrate.metadata.uid! } }), {
    controller: { kind: 'Job', name: 'db-migrate', uid: migrate.metadata.uid! },
    job: 'db-migrate',
  });
  // static pods: the API shows mirror pods, owned by the Node, carrying the config hash
  let mirrorHash = '';
  for (const name of ['etcd', 'kube-apiserver', 'kube-scheduler', 'haproxy']) {
    const hash = uid().replaceAll('-', '');
    if (!mirrorHash) mirrorHash = hash;
    const node = { apiVersion: 'v1', kind: 'Node', name: NODE, uid: uid() };
    add(
      makePod({
        name: `${name}-${NODE}`,
        namespace: 'kube-system',
        nodeName: NODE,
        owner: node,
        annotations: { 'kubernetes.io/config.hash': hash, 'kubernetes.io/config.mirror': hash, 'kubernetes.io/config.source': 'file' },
      }),
      { controller: { kind: 'Node', name: NODE, uid: node.uid } },
    );
  }
  // bare pods, to reach 200
  for (let i = 0; expected.length < 200; i++) add(makePod({ name: `debug-${i}`, namespace: 'shop', nodeName: NODE }), {});
  // the rest of the cluster: never listed, never looked up
  for (let i = 0; i < 150; i++) {
    const rs = fake.create('replicasets', makeReplicaSet('shop', `elsewhere-${i}-5c6d7`, { name: `elsewhere-${i}`, uid: uid() }));
    fake.create('pods', makePod({ name: `elsewhere-${i}-5c6d7-a`, namespace: 'shop', nodeName: `node-${i % 3 === 0 ? 'b' : 'c'}`, owner: { apiVersion: 'apps/v1', kind: 'ReplicaSet', name: rs.metadata.name, uid: rs.metadata.uid! } }));
  }
  fake.create('jobs', makeJob('batch', 'elsewhere-job', cron));
  return { expected, referencedRs, referencedJobs, mirrorHash };
}

describe('PodCache: this node, indexed, with owners', () => {
  it('holds the 200 pods of this node by uid and namespace/name, slimmed, with their workloads', async () => {
    const { fake, cache } = await setup({}, {}, false);
    const { expected, referencedRs, referencedJobs, mirrorHash } = populate(fake);
    cache.start();
    await cache.whenSynced();
    expect(cache.size).toBe(200);
    await waitFor(
      'owner lookups',
      () => expected.every((e) => JSON.stringify(cache.ownersOf(cache.byUid(e.pod.metadata.uid!)!)) === JSON.stringify(e.owners)),
      10_000,
      20,
    );
    for (const e of expected) {
      const p = cache.byUid(e.pod.metadata.uid!)!;
      expect(p.metadata.name).toBe(e.pod.metadata.name);
      expect(cache.byName(e.pod.metadata.namespace!, e.pod.metadata.name)).toBe(p);
      expect(cache.ownersOf(p)).toEqual(e.owners);
      expect(p.metadata.managedFields).toBeUndefined();
      expect(p.spec!.nodeName).toBe(NODE);
      expect(p.spec).not.toHaveProperty('volumes');
      expect(p.status!.containerStatuses![0].containerID).toMatch(/^containerd:\/\/[0-9a-f]{64}$/);
    }
    // a static pod is found by the uid of its /var/log/pods directory: the config hash
    expect(cache.byUid(mirrorHash)!.metadata.name).toBe(`etcd-${NODE}`);
    // other nodes' pods are not here, and their ReplicaSets were never asked for
    expect(cache.byName('shop', 'elsewhere-0-5c6d7-a')).toBeUndefined();
    expect(fake.count({ verb: 'get', resource: 'replicasets' })).toBe(referencedRs);
    expect(fake.count({ verb: 'get', resource: 'jobs' })).toBe(referencedJobs);
    expect(fake.requests.filter((r) => r.verb === 'get').every((r) => r.accept.startsWith('application/json;as=PartialObjectMetadata;g=meta.k8s.io;v=v1'))).toBe(true);
    expect(fake.count({ verb: 'list' })).toBe(1);
    expect(fake.count({ verb: 'list', resource: 'replicasets' }) + fake.count({ verb: 'watch', resource: 'replicasets' })).toBe(0);
    expect(fake.count({ resource: 'namespaces' })).toBe(0); // not asked for
    expect(cache.namespaceLabels('shop')).toBeUndefined();
  });

  it('answers an unknown uid with undefined at once, and knows the pod as soon as the API shows it', async () => {
    const { fake, cache } = await setup();
    await cache.whenSynced();
    const id = uid();
    const t = performance.now();
    expect(cache.byUid(id)).toBeUndefined(); // logs of a pod the watch has not delivered yet
    expect(performance.now() - t).toBeLessThan(5);
    fake.create('pods', makePod({ name: 'fresh', namespace: 'shop', nodeName: NODE, uid: id }));
    const p = await waitFor('pod appears', () => cache.byUid(id), 5000, 5);
    expect(p.metadata.name).toBe('fresh');
  });

  it('keeps a deleted pod for the grace period (by uid, name and config hash), then forgets it and its owner', async () => {
    const { fake, cache } = await setup({}, { deletedGraceMs: 600 });
    const job = fake.create('jobs', makeJob('batch', 'once', { name: 'cron', uid: uid() }));
    const p = fake.create('pods', makePod({ name: 'once-x', namespace: 'batch', nodeName: NODE, owner: { apiVersion: 'batch/v1', kind: 'Job', name: 'once', uid: job.metadata.uid! } }));
    const sts0 = fake.create('pods', makePod({ name: 'db-0', namespace: 'shop', nodeName: NODE }));
    await cache.whenSynced();
    await waitFor('owner', () => cache.ownersOf(cache.byUid(p.metadata.uid!)!).cronjob === 'cron', 5000, 10);
    expect(cache.owners!.size).toBe(1);

    fake.delete('pods', 'batch', 'once-x');
    fake.delete('pods', 'shop', 'db-0');
    const db0 = fake.create('pods', makePod({ name: 'db-0', namespace: 'shop', nodeName: NODE })); // a StatefulSet recreates it
    await waitFor('deletes seen', () => cache.size === 1 && cache.byUid(db0.metadata.uid!) !== undefined, 5000, 10);
    const deletedAt = Date.now();
    // still there for its last log lines
    expect(cache.byUid(p.metadata.uid!)!.metadata.name).toBe('once-x');
    expect(cache.byName('batch', 'once-x')!.metadata.uid).toBe(p.metadata.uid);
    expect(cache.deletedAt(p.metadata.uid!)).toBeGreaterThan(0);
    expect(cache.ownersOf(cache.byUid(p.metadata.uid!)!).cronjob).toBe('cron');
    // the name now means the new pod; the old uid still finds the old one
    expect(cache.byName('shop', 'db-0')!.metadata.uid).toBe(db0.metadata.uid);
    expect(cache.byUid(sts0.metadata.uid!)!.metadata.uid).toBe(sts0.metadata.uid);
    expect(cache.deletedAt(db0.metadata.uid!)).toBeUndefined();

    await waitFor('grace over', () => cache.byUid(p.metadata.uid!) === undefined, 5000, 10);
    expect(Date.now() - deletedAt).toBeGreaterThanOrEqual(500);
    expect(cache.byName('batch', 'once-x')).toBeUndefined();
    expect(cache.byUid(sts0.metadata.uid!)).toBeUndefined();
    await waitFor('owner released', () => cache.owners!.size === 0, 5000, 20);
  });

  it('a pod deleted while the watch was away is found missing at the relist and kept for the grace period', async () => {
    const { fake, cache, metrics } = await setup({ expiredAs: 'event' }, { deletedGraceMs: 60_000 });
    const a = fake.create('pods', makePod({ name: 'a', namespace: 'shop', nodeName: NODE }));
    fake.create('pods', makePod({ name: 'b', namespace: 'shop', nodeName: NODE }));
    await cache.whenSynced();
    await waitFor('watch', () => fake.activeWatches === 1, 5000, 10);
    fake.breakWatches();
    fake.delete('pods', 'shop', 'a');
    fake.compact();
    await waitFor('relisted', () => fake.count({ verb: 'list' }) === 2 && cache.size === 1, 5000, 10);
    expect(cache.byUid(a.metadata.uid!)!.metadata.name).toBe('a');
    expect(cache.deletedAt(a.metadata.uid!)).toBeDefined();
    const m = await metrics.kubeWatchRestarts.get();
    expect(m.values.find((v) => v.labels.reason === 'expired')?.value).toBe(1);
  });

  it('retries a failed owner lookup; a ReplicaSet that is gone (404) or was replaced under the same name yields no Deployment', async () => {
    const { fake, cache } = await setup();
    const dep = { name: 'web', uid: uid() };
    const rs = fake.create('replicasets', makeReplicaSet('shop', 'web-abc12', dep));
    fake.failNext(2, { kind: 'status', status: 500 }, { verb: 'get', resource: 'replicasets' });
    const p = fake.create('pods', makePod({ name: 'web-abc12-x', namespace: 'shop', nodeName: NODE, owner: { apiVersion: 'apps/v1', kind: 'ReplicaSet', name: 'web-abc12', uid: rs.metadata.uid! } }));
    const gone = makePod({ name: 'gone-x', namespace: 'shop', nodeName: NODE, owner: { apiVersion: 'apps/v1', kind: 'ReplicaSet', name: 'gone-rs', uid: uid() } });
    fake.create('pods', gone);
    fake.create('replicasets', makeReplicaSet('shop', 'reused-rs', { name: 'other', uid: uid() }));
    const reused = makePod({ name: 'reused-x', namespace: 'shop', nodeName: NODE, owner: { apiVersion: 'apps/v1', kind: 'ReplicaSet', name: 'reused-rs', uid: uid() } });
    fake.create('pods', reused);
    await cache.whenSynced();
    const pod = () => cache.byUid(p.metadata.uid!)!;
    expect(cache.ownersOf(pod()).replicaset).toBe('web-abc12'); // known from the pod itself, at once
    await waitFor('deployment', () => cache.ownersOf(pod()).deployment === 'web', 5000, 10);
    expect(fake.count({ verb: 'get', resource: 'replicasets', status: 500 })).toBe(2);
    await waitFor('lookups settled', () => cache.owners!.size === 3 && fake.count({ verb: 'get', resource: 'replicasets' }) === 5, 5000, 10);
    const goneOwners = cache.ownersOf(cache.byName('shop', 'gone-x')!);
    expect(goneOwners).toEqual({ controller: goneOwners.controller, replicaset: 'gone-rs' });
    expect(cache.ownersOf(cache.byName('shop', 'reused-x')!).deployment).toBeUndefined();
  });

  it('watches namespace labels (metadata only) when asked', async () => {
    const { fake, cache } = await setup({}, { namespaceMetadata: true }, false);
    fake.create('namespaces', makeNamespace('shop', { team: 'checkout', 'pod-security.kubernetes.io/enforce': 'baseline' }));
    cache.start();
    await cache.whenSynced();
    expect(cache.namespaceLabels('shop')).toMatchObject({ team: 'checkout', 'kubernetes.io/metadata.name': 'shop' });
    expect(cache.namespaceLabels('nope')).toBeUndefined();
    const v = cache.version;
    fake.modify('namespaces', undefined, 'shop', (o) => void (o.metadata.labels!.team = 'payments'));
    await waitFor('label change', () => cache.namespaceLabels('shop')?.team === 'payments', 5000, 10);
    expect(cache.version).toBeGreaterThan(v);
    const nsList = fake.requests.find((r) => r.resource === 'namespaces' && r.verb === 'list')!;
    expect(nsList.accept).toContain('as=PartialObjectMetadataList');
  });
});

describe('PodCache: API load under churn', () => {
  it('110 pods on the node replaced continuously for 30 simulated minutes: requests per minute', async () => {
    // 1 API second = 5 ms: watch timeouts 300-600 s are 1.5-3 s, bookmarks every 60 s are 300 ms.
    const secondMs = 5;
    const minuteMs = 60 * secondMs;
    const { fake, cache, metrics } = await setup(
      { secondMs, historySize: 2000 },
      {
        deletedGraceMs: 5 * minuteMs,
        watch: { idleTimeoutMs: 150 * secondMs, backoff: { initialMs: 4, maxMs: 150 } },
      },
      false,
    );
    // 8 Deployments x 10 pods, 2 StatefulSets x 5, 5 DaemonSets, 15 bare/static pods = 110
    const deps = Array.from({ length: 8 }, (_, d) => ({ name: `svc-${d}`, uid: uid(), rs: '' as string, rsUid: '', gen: 0 }));
    const newRs = (d: (typeof deps)[number]) => {
      d.gen++;
      const rs = fake.create('replicasets', makeReplicaSet('shop', `${d.name}-${d.gen}f8c9d`, d));
      d.rs = rs.metadata.name;
      d.rsUid = rs.metadata.uid!;
    };
    let podSeq = 0;
    const podOf = (d: (typeof deps)[number]) =>
      makePod({ name: `${d.rs}-${(podSeq++).toString(36)}`, namespace: 'shop', nodeName: NODE, owner: { apiVersion: 'apps/v1', kind: 'ReplicaSet', name: d.rs, uid: d.rsUid }, phase: 'Pending' });
    const live: { name: string; dep: (typeof deps)[number] | undefined }[] = [];
    for (const d of deps) {
      newRs(d);
      for (let i = 0; i < 10; i++) live.push({ name: fake.create('pods', podOf(d)).metadata.name, dep: d });
    }
    for (let s = 0; s < 2; s++) for (let i = 0; i < 5; i++) fake.create('pods', makePod({ name: `db${s}-${i}`, namespace: 'shop', nodeName: NODE, owner: { apiVersion: 'apps/v1', kind: 'StatefulSet', name: `db${s}`, uid: uid() } }));
    for (let i = 0; i < 5; i++) fake.create('pods', makePod({ name: `ds${i}-x`, namespace: 'kube-system', nodeName: NODE, owner: { apiVersion: 'apps/v1', kind: 'DaemonSet', name: `ds${i}`, uid: uid() } }));
    for (let i = 0; i < 15; i++) fake.create('pods', makePod({ name: `bare-${i}`, namespace: 'shop', nodeName: NODE }));
    for (let i = 0; i < 300; i++) fake.create('pods', makePod({ name: `far-${i}`, namespace: 'shop', nodeName: 'node-z' }));
    const cron = { name: 'every-minute', uid: uid() };
    const jobs: string[] = [];

    cache.start();
    await cache.whenSynced();
    await waitFor('first owner lookups', () => fake.count({ verb: 'get' }) === deps.length && cache.owners!.controllerOf({ apiVersion: 'apps/v1', kind: 'ReplicaSet', name: deps[7].rs, uid: deps[7].rsUid }) !== undefined, 5000, 10);
    const before = fake.requests.length;
    const t0 = Date.now();
    const minutes = 30;
    let tick = 0;
    const pending: string[] = [];
    // every 6 API seconds: one Deployment pod replaced (new pod Pending, Running 6 s later), some
    // other-node traffic; every minute a CronJob's Job and pod; every 10 minutes a rollout (new ReplicaSet)
    while (Date.now() - t0 < minutes * minuteMs) {
      tick++;
      for (const name of pending.splice(0)) {
        fake.modify('pods', 'shop', name, (o) => void ((o.status as { phase: string }).phase = 'Running'));
      }
      const victim = live.splice(Math.floor(Math.random() * live.length), 1)[0];
      fake.delete('pods', 'shop', victim.name);
      const d = victim.dep ?? deps[0];
      const created = fake.create('pods', podOf(d)).metadata.name;
      live.push({ name: created, dep: d });
      pending.push(created);
      for (let i = 0; i < 5; i++) fake.modify('pods', 'shop', `far-${(tick * 5 + i) % 300}`, (o) => void (o.metadata.labels!.beat = String(tick)));
      if (tick % 10 === 0) {
        const job = fake.create('jobs', makeJob('batch', `every-minute-${tick}`, cron));
        fake.create('pods', makePod({ name: `${job.metadata.name}-p`, namespace: 'batch', nodeName: NODE, owner: { apiVersion: 'batch/v1', kind: 'Job', name: job.metadata.name, uid: job.metadata.uid! } }));
        jobs.push(job.metadata.name);
        if (jobs.length > 3) {
          const old = jobs.shift()!;
          fake.delete('pods', 'batch', `${old}-p`);
          fake.delete('jobs', 'batch', old);
        }
      }
      if (tick % 100 === 0) newRs(deps[(tick / 100) % deps.length]); // a rollout: new pods of that Deployment use the new ReplicaSet
      await new Promise((r) => setTimeout(r, Math.max(0, t0 + tick * 6 * secondMs - Date.now())));
    }
    const simulatedMinutes = (Date.now() - t0) / minuteMs;
    // the cache agrees with the server
    await waitFor(
      'cache converged',
      () => {
        const want = fake.list('pods').filter((p) => (p.spec as { nodeName: string }).nodeName === NODE);
        return cache.size === want.length && want.every((p) => cache.byUid(p.metadata.uid!)?.metadata.resourceVersion === p.metadata.resourceVersion);
      },
      5000,
      20,
    );
    const reqs = fake.requests.slice(before);
    const by = (verb: string, resource?: string) => reqs.filter((r) => r.verb === verb && (!resource || r.resource === resource)).length;
    const perMinute = (n: number) => Math.round((n / simulatedMinutes) * 100) / 100;
    const report = {
      simulatedMinutes: Math.round(simulatedMinutes * 10) / 10,
      podEventsOnNodePerMinute: perMinute(tick * 3),
      total: perMinute(reqs.length),
      podWatches: perMinute(by('watch', 'pods')),
      podLists: perMinute(by('list', 'pods')),
      replicaSetGets: perMinute(by('get', 'replicasets')),
      jobGets: perMinute(by('get', 'jobs')),
    };
    console.log(`kube API requests per simulated minute (110 pods on the node, churn): ${JSON.stringify(report)}`);
    const m = await metrics.kubeWatchRestarts.get();
    console.log(`watch restarts: ${JSON.stringify(m.values.map((v) => [v.labels.reason, v.value]))}`);
    expect(by('list', 'pods')).toBe(0); // never relisted: bookmarks kept the resourceVersion in the history
    expect(report.podWatches).toBeLessThan(0.3); // one watch per 300-600 s
    expect(report.total).toBeLessThan(2);
    expect(fake.errors).toEqual([]);
  });
});
