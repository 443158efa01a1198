import type { NodeSimulator } from './node_simulator.ts';
import { makeJob, makeNamespace, makePod, makeReplicaSet, type FakeKubeApiServer, type FakeObject } from './kube_api_server.ts';

/**
 * The simulated node's pods as the API server has them: labels, owners (through ReplicaSets and
 * Jobs, as controllers create them) and the annotations with which their owners steer the agent:
 * the web pod's `app` container is parsed as JSON, the worker's lines as logfmt, and the noisy
 * load generator is excluded. Kept in step with the simulator (its job pods come and go).
 */

interface Workload {
  match: RegExp;
  labels: Record<string, string>;
  annotations?: Record<string, string>;
  owner: { kind: 'Deployment' | 'StatefulSet' | 'DaemonSet' | 'CronJob'; name: string };
}

const WORKLOADS: Workload[] = [
  { match: /^web-/, labels: { app: 'web', tier: 'frontend' }, annotations: { 'telemetry-agent.io/parser-app': 'json' }, owner: { kind: 'Deployment', name: 'web' } },
  { match: /^checkout-/, labels: { app: 'checkout', tier: 'backend' }, owner: { kind: 'Deployment', name: 'checkout' } },
  { match: /^worker-/, labels: { app: 'worker' }, annotations: { 'telemetry-agent.io/parser': 'logfmt' }, owner: { kind: 'StatefulSet', name: 'worker' } },
  { match: /^coredns-/, labels: { 'k8s-app': 'kube-dns' }, owner: { kind: 'Deployment', name: 'coredns' } },
  { match: /^node-exporter-/, labels: { app: 'node-exporter' }, owner: { kind: 'DaemonSet', name: 'node-exporter' } },
  { match: /^report-/, labels: { app: 'report' }, owner: { kind: 'CronJob', name: 'report' } },
  { match: /^loadgen-/, labels: { app: 'loadgen' }, annotations: { 'telemetry-agent.io/exclude': 'true' }, owner: { kind: 'Deployment', name: 'loadgen' } },
];

/** The excluded pod the demo adds to the simulator: it writes a line every tick, none of which may reach an output. */
export const EXCLUDED_POD = { namespace: 'tools', name: 'loadgen-5f6d7c8b9-xk2p4', container: 'loadgen' };

export class NodePods {
  private readonly api: FakeKubeApiServer;
  private readonly sim: NodeSimulator;
  private readonly nodeName: string;
  /** namespace/name of the pods created in the API. */
  private readonly known = new Set<string>();

  constructor(api: FakeKubeApiServer, sim: NodeSimulator, nodeName: string) {
    this.api = api;
    this.sim = sim;
    this.nodeName = nodeName;
    for (const ns of ['default', 'shop', 'kube-system', 'monitoring', 'batch', 'tools', 'db']) {
      if (!api.get('namespaces', undefined, ns)) api.create('namespaces', makeNamespace(ns, { team: `${ns}-team` }));
    }
  }

  /**
   * Creates the API pods of new simulator pods and deletes those the simulator deleted. A pod whose
   * ReplicaSet exists already (checkout's, which the cluster story seeds) takes that one as owner.
   */
  sync(): void {
    const current = new Set<string>();
    for (const p of this.sim.listPods()) {
      const key = `${p.namespace}/${p.name}`;
      current.add(key);
      if (this.known.has(key)) continue;
      this.known.add(key);
      this.api.create('pods', this.podObject(p.namespace, p.name, p.uid, p.containers.map((c) => c.container)));
    }
    for (const key of this.known) {
      if (current.has(key)) continue;
      this.known.delete(key);
      const [ns, name] = key.split('/') as [string, string];
      this.api.delete('pods', ns, name);
    }
  }

  private podObject(namespace: string, name: string, uid: string, containers: string[]): FakeObject {
    const w = WORKLOADS.find((x) => x.match.test(name));
    let owner: { apiVersion: string; kind: string; name: string; uid: string } | undefined;
    if (w?.owner.kind === 'Deployment') {
      const rsName = name.replace(/-[^-]+$/, '');
      owner = { apiVersion: 'apps/v1', kind: 'ReplicaSet', name: rsName, uid: this.replicaSet(namespace, rsName, w.owner.name) };
    } else if (w?.owner.kind === 'CronJob') {
      const jobName = name.replace(/-[^-]+$/, '');
      owner = { apiVersion: 'batch/v1', kind: 'Job', name: jobName, uid: this.job(namespace, jobName, w.owner.name) };
    } else if (w) {
      owner = { apiVersion: 'apps/v1', kind: w.owner.kind, name: w.owner.name, uid: `owner-${w.owner.kind}-${w.owner.name}` };
    }
    return makePod({ name, namespace, nodeName: this.nodeName, uid, labels: w?.labels, annotations: w?.annotations, owner, containers });
  }

  private replicaSet(namespace: string, name: string, deployment: string): string {
    const existing = this.api.get('replicasets', namespace, name);
    if (existing) return existing.metadata.uid!;
    const rs = this.api.create('replicasets', makeReplicaSet(namespace, name, { name: deployment, uid: `deployment-${namespace}-${deployment}` }));
    return rs.metadata.uid!;
  }

  private job(namespace: string, name: string, cronJob: string): string {
    const existing = this.api.get('jobs', namespace, name);
    if (existing) return existing.metadata.uid!;
    return this.api.create('jobs', makeJob(namespace, name, { name: cronJob, uid: `cronjob-${namespace}-${cronJob}` })).metadata.uid!;
  }
}
