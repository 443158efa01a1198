/**
 * Kubernetes API load of one node agent: a 10-minute simulated run (API time scaled, 1 API second =
 * BENCH_API_SECOND_MS real ms, default 20) of the agent's PodCache, the real list+watch and owner
 * lookup code, against a FakeKubeApiServer. 110 pods on the node churn as a busy node's do: a pod
 * of a Deployment replaced every 10 s, two rolling updates (a new ReplicaSet, its 10 pods replaced
 * one every 5 s), a CronJob starting a Job every minute, a status update every 2 s; and 500 pods on
 * other nodes churn 10 times faster, which this node must not pay for. Requests are counted by verb
 * and resource. Target: at most 60 requests in the 10 minutes.
 *
 * Env: BENCH_API_SECOND_MS (20).
 */
import { resolveConnection } from '../../agent/kube/connection.ts';
import { PodCache } from '../../agent/kube/pod_cache.ts';
import { createLogger } from '../../agent/log.ts';
import { SelfMetrics } from '../../agent/metrics.ts';
import { FakeKubeApiServer, makeJob, makePod, makeReplicaSet, uid, writeKubeconfig, type FakeObject } from '../../agent/demo/kube_api_server.ts';
import { formatTable, type Scenario, type ScenarioOutcome } from '../measure.ts';
import * as fs from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

const NODE = 'node-a';
const MINUTES = 10;
const REQUEST_TARGET = 60;

export const kubeApiLoad: Scenario = {
  name: 'kube-api-load',
  description: 'API requests of one node agent in a simulated 10-minute run with 110 pods churning',

  async run(ctx): Promise<ScenarioOutcome> {
    const secondMs = Number(ctx.env.BENCH_API_SECOND_MS ?? 20);
    const fake = new FakeKubeApiServer({ token: 't', secondMs });
    await fake.start();
    const dir = fs.mkdtempSync(join(tmpdir(), 'kta-bench-api-'));
    const log = createLogger('warn', () => {});
    const connection = (await resolveConnection({ mode: 'kubeconfig', kubeconfig: writeKubeconfig(dir, { server: fake.url, token: 't', insecure: true }), log }))!;

    // --- the node's 110 pods ---
    const live = new Map<string, FakeObject>(); // ns/name -> pod
    const addPod = (p: Parameters<typeof makePod>[0]) => live.set(`${p.namespace}/${p.name}`, fake.create('pods', makePod({ uid: uid(), ...p })));
    const delPod = (key: string) => {
      const [ns, name] = key.split('/') as [string, string];
      fake.delete('pods', ns, name);
      live.delete(key);
    };
    const deployments: { ns: string; name: string; uid: string; rs: FakeObject; revision: number }[] = [];
    let seq = 0;
    const rsOwner = (rs: FakeObject) => ({ apiVersion: 'apps/v1', kind: 'ReplicaSet', name: rs.metadata.name!, uid: rs.metadata.uid! });
    for (let d = 0; d < 8; d++) {
      const dep = { ns: ['shop', 'payments'][d % 2]!, name: `svc-${d}`, uid: uid(), revision: 1, rs: undefined as unknown as FakeObject };
      dep.rs = fake.create('replicasets', makeReplicaSet(dep.ns, `${dep.name}-r1`, { name: dep.name, uid: dep.uid }));
      deployments.push(dep);
      for (let i = 0; i < 10; i++) addPod({ name: `${dep.rs.metadata.name}-${++seq}`, namespace: dep.ns, nodeName: NODE, owner: rsOwner(dep.rs), labels: { app: dep.name } });
    }
    for (let s = 0; s < 2; s++) {
      const owner = { apiVersion: 'apps/v1', kind: 'StatefulSet', name: `db-${s}`, uid: uid() };
      for (let i = 0; i < 5; i++) addPod({ name: `db-${s}-${i}`, namespace: 'shop', nodeName: NODE, owner });
    }
    for (const name of ['kube-proxy', 'node-exporter', 'cilium', 'csi-node', 'fluent-bit']) {
      addPod({ name: `${name}-x`, namespace: 'kube-system', nodeName: NODE, owner: { apiVersion: 'apps/v1', kind: 'DaemonSet', name, uid: uid() } });
    }
    const cron = { name: 'report', uid: uid() };
    const jobPods: string[] = [];
    const startJob = () => {
      const job = fake.create('jobs', makeJob('batch', `report-${++seq}`, cron));
      const name = `${job.metadata.name}-p`;
      addPod({ name, namespace: 'batch', nodeName: NODE, owner: { apiVersion: 'batch/v1', kind: 'Job', name: job.metadata.name!, uid: job.metadata.uid! } });
      jobPods.push(`batch/${name}`);
      if (jobPods.length > 15) delPod(jobPods.shift()!);
    };
    for (let j = 0; j < 15; j++) startJob();
    // --- the rest of the cluster ---
    const elsewhere: string[] = [];
    for (let i = 0; i < 500; i++) {
      const name = `other-${i}`;
      fake.create('pods', makePod({ uid: uid(), name, namespace: 'shop', nodeName: `node-${(i % 20) + 1}` }));
      elsewhere.push(name);
    }
    const podsOnNode = live.size;
    const before = fake.requests.length;

    const metrics = new SelfMetrics('bench');
    const cache = new PodCache({ connection, nodeName: NODE, log }, metrics);
    const started = performance.now();
    cache.start();

    // --- 10 API minutes of churn, one API second per step ---
    const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
    let otherSeq = 0;
    for (let t = 1; t <= MINUTES * 60; t++) {
      await sleep(secondMs);
      if (t % 10 === 0) {
        const dep = deployments[(t / 10) % deployments.length]!;
        const victim = [...live.keys()].find((k) => k.includes(`/${dep.rs.metadata.name}-`));
        if (victim) delPod(victim);
        addPod({ name: `${dep.rs.metadata.name}-${++seq}`, namespace: dep.ns, nodeName: NODE, owner: rsOwner(dep.rs), labels: { app: dep.name } });
      }
      for (const [at, d] of [[180, 1], [420, 4]] as const) {
        const dep = deployments[d]!;
        if (t === at) dep.rs = fake.create('replicasets', makeReplicaSet(dep.ns, `${dep.name}-r${++dep.revision}`, { name: dep.name, uid: dep.uid }));
        if (t > at && t <= at + 50 && (t - at) % 5 === 0) {
          const old = [...live.keys()].find((k) => k.includes(`/${dep.name}-r${dep.revision - 1}-`));
          if (old) delPod(old);
          addPod({ name: `${dep.rs.metadata.name}-${++seq}`, namespace: dep.ns, nodeName: NODE, owner: rsOwner(dep.rs), labels: { app: dep.name } });
        }
      }
      if (t % 60 === 0) startJob();
      if (t % 2 === 0) {
        const keys = [...live.keys()];
        const [ns, name] = keys[t % keys.length]!.split('/') as [string, string];
        fake.modify('pods', ns, name, (o) => void ((o.metadata.annotations ??= {})['status-probe'] = String(t)));
      }
      // elsewhere: ten times the churn, on other nodes
      for (let k = 0; k < 10; k++) {
        const name = elsewhere[otherSeq % elsewhere.length]!;
        fake.delete('pods', 'shop', name);
        const fresh = `other-x${++otherSeq}`;
        fake.create('pods', makePod({ uid: uid(), name: fresh, namespace: 'shop', nodeName: `node-${(otherSeq % 20) + 1}` }));
        elsewhere[(otherSeq - 1) % elsewhere.length] = fresh;
      }
    }
    const wallSeconds = (performance.now() - started) / 1000;
    const known = cache.size;
    await cache.stop();
    connection.close();
    await fake.close();
    fs.rmSync(dir, { recursive: true, force: true });

    const requests = fake.requests.slice(before);
    const counts = new Map<string, number>();
    for (const r of requests) counts.set(`${r.verb} ${r.resource}`, (counts.get(`${r.verb} ${r.resource}`) ?? 0) + 1);
    const rows = [...counts].sort().map(([k, n]) => [k, String(n)]);
    const total = requests.length;
    const notes = [
      `${podsOnNode} pods on the node at the start (${known} at the end), 500 on other nodes; ${MINUTES} API minutes in ${wallSeconds.toFixed(1)} s (1 API s = ${secondMs} ms)`,
      '',
      ...formatTable(['request', 'count'], [...rows, ['total', String(total)]]).split('\n'),
      '',
      'watches end at timeoutSeconds (300-600 s) and resume from the last resourceVersion (bookmarks), without a relist;',
      'owner lookups are one metadata GET per new ReplicaSet or Job referenced by a pod of this node.',
    ];
    return {
      measurements: [],
      table: '',
      notes,
      targets: [{ description: `at most ${REQUEST_TARGET} API requests in ${MINUTES} minutes`, pass: total <= REQUEST_TARGET, detail: `${total} requests` }],
      errors: known === 0 ? ['the pod cache never synced'] : [],
    };
  },
};
