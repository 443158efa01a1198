import { makeJob, makeNamespace, makePod, makeReplicaSet, uid, type FakeKubeApiServer, type FakeObject } from '../../agent/demo/kube_api_server.ts';

/**
 * A node's pods as a real cluster has them, created in a FakeKubeApiServer, with the resource
 * attributes the agent must give each pod's records: Deployments through ReplicaSets (one mid
 * rollout), a ReplicaSet of its own, StatefulSets, DaemonSets, Jobs of a CronJob and a Job of its
 * own, static pods (their log folder carries the config hash, the API shows a mirror pod) and bare
 * pods; plus pods of other nodes, which must never be looked at.
 */

export interface NodePod {
  pod: FakeObject;
  /** The uid in the pod's /var/log/pods folder name: the pod's uid, or a static pod's config hash. */
  logUid: string;
  /** What enrichment adds beyond the path metadata (`container.id`, restart count come from the path). */
  expected: Record<string, string | string[]>;
}

export function populateNodePods(fake: FakeKubeApiServer, nodeName: string, count = 200): NodePod[] {
  const pods: NodePod[] = [];
  const add = (input: Parameters<typeof makePod>[0], owners: Record<string, string>, logUid?: string) => {
    const pod = fake.create('pods', makePod({ uid: uid(), ...input, nodeName }));
    const m = pod.metadata;
    const labels = Object.fromEntries(Object.entries(m.labels ?? {}).map(([k, v]) => [`k8s.pod.label.${k}`, v]));
    pods.push({
      pod,
      logUid: logUid ?? m.uid!,
      expected: {
        'k8s.node.name': nodeName,
        'k8s.namespace.name': m.namespace!,
        'k8s.pod.name': m.name!,
        'k8s.pod.uid': m.uid!,
        'container.image.name': `registry.example.com/${m.namespace}/app`,
        'container.image.tags': ['1.4.2'],
        ...owners,
        ...labels,
      },
    });
  };
  for (const ns of ['shop', 'payments', 'search', 'monitoring', 'kube-system', 'batch']) fake.create('namespaces', makeNamespace(ns, { team: `${ns}-team` }));
  for (let d = 0; d < 12; d++) {
    const ns = ['shop', 'payments', 'search'][d % 3]!;
    const dep = { name: d === 0 ? 'checkout' : `svc-${d}`, uid: uid() };
    const hashes = d === 0 ? ['5f7c9d8b4', '6b8d7f9c5'] : [`7d4b9c${d}f8`];
    for (const [h, hash] of hashes.entries()) {
      const rs = fake.create('replicasets', makeReplicaSet(ns, `${dep.name}-${hash}`, dep));
      const owner = { apiVersion: 'apps/v1', kind: 'ReplicaSet', name: rs.metadata.name!, uid: rs.metadata.uid! };
      for (let i = 0; i < (d === 0 ? 4 : 8); i++) {
        add({ name: `${rs.metadata.name}-${h}x${i}q`, namespace: ns, nodeName, labels: { app: dep.name, 'pod-template-hash': hash }, owner }, {
          'k8s.replicaset.name': rs.metadata.name!,
          'k8s.deployment.name': dep.name,
        });
      }
    }
  }
  const lonely = fake.create('replicasets', makeReplicaSet('shop', 'lonely-rs', undefined));
  for (let i = 0; i < 3; i++) {
    add({ name: `lonely-rs-${i}`, namespace: 'shop', nodeName, owner: { apiVersion: 'apps/v1', kind: 'ReplicaSet', name: 'lonely-rs', uid: lonely.metadata.uid! } }, { 'k8s.replicaset.name': 'lonely-rs' });
  }
  for (const [s, ns] of ['search', 'payments', 'shop'].entries()) {
    const sts = { apiVersion: 'apps/v1', kind: 'StatefulSet', name: `db-${s}`, uid: uid() };
    for (let i = 0; i < 10; i++) add({ name: `db-${s}-${i}`, namespace: ns, nodeName, owner: sts, labels: { app: `db-${s}` } }, { 'k8s.statefulset.name': sts.name });
  }
  for (const name of ['kube-proxy', 'node-exporter', 'fluent-bit', 'csi-node', 'cilium']) {
    const ds = { apiVersion: 'apps/v1', kind: 'DaemonSet', name, uid: uid() };
    add({ name: `${name}-x7k2p`, namespace: name === 'node-exporter' ? 'monitoring' : 'kube-system', nodeName, owner: ds }, { 'k8s.daemonset.name': name });
  }
  const cron = { name: 'nightly-report', uid: uid() };
  for (let j = 0; j < 15; j++) {
    const job = fake.create('jobs', makeJob('batch', `nightly-report-2940${j}0`, cron));
    const owner = { apiVersion: 'batch/v1', kind: 'Job', name: job.metadata.name!, uid: job.metadata.uid! };
    add({ name: `${job.metadata.name}-abcd${j}`, namespace: 'batch', nodeName, owner, phase: 'Succeeded' }, { 'k8s.job.name': job.metadata.name!, 'k8s.cronjob.name': 'nightly-report' });
  }
  const migrate = fake.create('jobs', makeJob('shop', 'db-migrate', undefined));
  add({ name: 'db-migrate-q8z2x', namespace: 'shop', nodeName, owner: { apiVersion: 'batch/v1', kind: 'Job', name: 'db-migrate', uid: migrate.metadata.uid! } }, { 'k8s.job.name': 'db-migrate' });
  for (const name of ['etcd', 'kube-apiserver', 'kube-scheduler', 'haproxy']) {
    const hash = uid().replaceAll('-', '');
    const node = { apiVersion: 'v1', kind: 'Node', name: nodeName, uid: uid() };
    const annotations = { 'kubernetes.io/config.hash': hash, 'kubernetes.io/config.mirror': hash, 'kubernetes.io/config.source': 'file' };
    add({ name: `${name}-${nodeName}`, namespace: 'kube-system', nodeName, owner: node, annotations }, {}, hash);
  }
  for (let i = 0; pods.length < count; i++) add({ name: `debug-${i}`, namespace: 'shop', nodeName, labels: { 'app.kubernetes.io/name': 'debug', run: `debug-${i}` } }, {});
  for (let i = 0; i < 50; i++) {
    const rs = fake.create('replicasets', makeReplicaSet('shop', `elsewhere-${i}-5c6d7`, { name: `elsewhere-${i}`, uid: uid() }));
    const owner = { apiVersion: 'apps/v1', kind: 'ReplicaSet', name: rs.metadata.name!, uid: rs.metadata.uid! };
    fake.create('pods', makePod({ uid: uid(), name: `elsewhere-${i}-5c6d7-a`, namespace: 'shop', nodeName: `${nodeName}-other`, owner }));
  }
  return pods;
}
